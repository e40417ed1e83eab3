//! The snapshot encoding of [`FifoLockTable`] (the decoder is in `table_decode.rs`), and its
//! equality.
//!
//! The bytes are exactly those of the table's earlier representation, whose `derive`d encoding was
//! a struct of `locks: BTreeMap<LockKey, Lock>`, `requests: BTreeMap<ReqId, Request>` (claims named
//! by key), `candidates` (a set of `ReqId`), `dirty: BTreeSet<LockKey>` and `last_id`. Lock ids do not
//! appear: the encoder walks the locks in key order and names claims by key, and the decoder numbers
//! the locks afresh in key order. Equality is likewise by content, not by slot.

use crate::sched::lock::{LockKey, Mode};
use crate::sched::table::FifoLockTable;
use crate::sched::table_store::{Claim, Entry, Lock, LockId, Request, Sorted};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

impl FifoLockTable {
    fn key_of(&self, id: LockId) -> LockKey {
        self.locks[id.slot()].key()
    }

    pub(crate) fn dirty_keys(&self) -> Vec<LockKey> {
        let mut keys: Vec<LockKey> = self
            .dirty
            .iter()
            .flatten()
            .map(|id| self.key_of(*id))
            .collect();
        keys.sort();
        keys
    }
}

impl Serialize for FifoLockTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut table = serializer.serialize_struct("FifoLockTable", 5)?;
        table.serialize_field("locks", &LocksOut(self))?;
        table.serialize_field("requests", &RequestsOut(self))?;
        table.serialize_field("candidates", &self.candidates)?;
        table.serialize_field("dirty", &KeysOut(self.dirty_keys()))?;
        table.serialize_field("last_id", &self.last_id)?;
        table.end()
    }
}

struct LocksOut<'a>(&'a FifoLockTable);

impl Serialize for LocksOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.live_locks()))?;
        for (key, id) in self.0.index.iter() {
            map.serialize_entry(&key, &LockOut(&self.0.locks[id.slot()]))?;
        }
        map.end()
    }
}

struct LockOut<'a>(&'a Lock);

impl Serialize for LockOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let lock = self.0;
        let mut out = serializer.serialize_struct("Lock", 7)?;
        out.serialize_field("capacity", &lock.capacity)?;
        out.serialize_field("refs", &lock.refs)?;
        out.serialize_field("held_weight", &lock.held_weight)?;
        out.serialize_field("held_exclusive", &lock.held_exclusive)?;
        out.serialize_field("holders", &SortedOut(&lock.holders, |m: &Mode| *m))?;
        let entry = |e: &Entry| EntryWire {
            mode: e.mode(),
            claim: e.claim,
            admissible: e.admissible,
        };
        out.serialize_field("queue", &SortedOut(&lock.queue, entry))?;
        out.serialize_field("flagged", &lock.flagged)?;
        out.end()
    }
}

/// A sorted map, each value shown as `show` makes it.
struct SortedOut<'a, V, F>(&'a Sorted<V>, F);

impl<V: Copy, T: Serialize, F: Fn(&V) -> T> Serialize for SortedOut<'_, V, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, value) in self.0.iter() {
            map.serialize_entry(&id, &(self.1)(value))?;
        }
        map.end()
    }
}

/// A queue entry as encoded.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Entry")]
pub(crate) struct EntryWire {
    pub mode: Mode,
    pub claim: u16,
    pub admissible: bool,
}

struct RequestsOut<'a>(&'a FifoLockTable);

impl Serialize for RequestsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let table = self.0;
        let mut map = serializer.serialize_map(Some(table.requests.len()))?;
        for (id, request) in table.requests.iter() {
            map.serialize_entry(&id, &RequestOut(table, request))?;
        }
        map.end()
    }
}

struct RequestOut<'a>(&'a FifoLockTable, &'a Request);

impl Serialize for RequestOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let RequestOut(table, request) = *self;
        let mut out = serializer.serialize_struct("Request", 4)?;
        out.serialize_field("claims", &ClaimsOut(table, &request.claims))?;
        out.serialize_field("entered", &request.entered)?;
        out.serialize_field("admissible", &request.admissible)?;
        out.serialize_field("held", &request.held)?;
        out.end()
    }
}

struct ClaimsOut<'a>(&'a FifoLockTable, &'a [Claim]);

impl Serialize for ClaimsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.1.len()))?;
        for claim in self.1 {
            seq.serialize_element(&ClaimWire {
                lock: self.0.key_of(claim.lock()),
                mode: claim.mode(),
            })?;
        }
        seq.end()
    }
}

/// A claim as encoded.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Claim")]
pub(crate) struct ClaimWire {
    pub lock: LockKey,
    pub mode: Mode,
}

/// Lock keys in order, encoded as a set.
struct KeysOut(Vec<LockKey>);

impl Serialize for KeysOut {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

impl PartialEq for FifoLockTable {
    /// Equal content: the same locks under the same keys with the same holders and queues, the same
    /// requests claiming the same keys, the same candidates and dirty keys. Slots do not matter.
    fn eq(&self, other: &Self) -> bool {
        let same_lock = |a: &Lock, b: &Lock| {
            a.capacity == b.capacity
                && a.refs == b.refs
                && a.held_weight == b.held_weight
                && a.held_exclusive == b.held_exclusive
                && a.flagged == b.flagged
                && a.holders.iter().eq(b.holders.iter())
                && a.queue.iter().eq(b.queue.iter())
        };
        let same_request = |a: &Request, b: &Request| {
            a.entered == b.entered
                && a.admissible == b.admissible
                && a.held == b.held
                && a.claims.len() == b.claims.len()
                && a.claims.iter().zip(b.claims.iter()).all(|(x, y)| {
                    x.weight == y.weight && self.key_of(x.lock()) == other.key_of(y.lock())
                })
        };
        self.live_locks() == other.live_locks()
            && self.index.iter().zip(other.index.iter()).all(|(a, b)| {
                a.0 == b.0 && same_lock(&self.locks[a.1.slot()], &other.locks[b.1.slot()])
            })
            && self.requests.len() == other.requests.len()
            && self
                .requests
                .iter()
                .zip(other.requests.iter())
                .all(|(a, b)| a.0 == b.0 && same_request(a.1, b.1))
            && self.candidates == other.candidates
            && self.dirty_keys() == other.dirty_keys()
            && self.last_id == other.last_id
    }
}

impl Eq for FifoLockTable {}
