//! Decoding a [`FifoLockTable`] from a snapshot (the encoding is described in `table_serde.rs`).
//!
//! Locks are pushed into the slab as they are read, numbered in the order they come (key order),
//! and requests are read straight into their final form, each claim's key resolved to its lock
//! there and then: no intermediate copy of the table is built. That needs the locks before the
//! requests, so the table is read from formats that give a struct's fields in order, as bincode
//! (the snapshot format) does. (Formats that name fields, like JSON, could not hold the table
//! before either: its `locks` map is keyed by an enum.)

use crate::sched::dense::DenseMap;
use crate::sched::ids::ReqId;
use crate::sched::lock::{LockKey, Mode};
use crate::sched::table::{mark_dirty, FifoLockTable};
use crate::sched::table_serde::{ClaimWire, EntryWire};
use crate::sched::table_store::{
    pack, Claim, Claims, Entry, Lock, LockId, LockIndex, Request, Sorted, LOCK_IDS_MAX,
};
use crate::sched::wire::{cautious, Pairs};
use serde::de::{DeserializeSeed, Error, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeSet;
use std::fmt;

const TABLE_FIELDS: &[&str] = &["locks", "requests", "candidates", "dirty", "last_id"];
const REQUEST_FIELDS: &[&str] = &["claims", "entered", "admissible", "held"];

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = EntryWire::deserialize(deserializer)?;
        Ok(Entry {
            weight: pack(wire.mode),
            claim: wire.claim,
            admissible: wire.admissible,
        })
    }
}

/// A lock as encoded.
#[derive(Deserialize)]
#[serde(rename = "Lock")]
struct LockWire {
    capacity: u32,
    refs: u32,
    held_weight: u64,
    held_exclusive: bool,
    holders: Pairs<ReqId, Mode>,
    queue: Pairs<ReqId, Entry>,
    flagged: u32,
}

/// The slab and the index being filled.
#[derive(Default)]
struct Locks {
    slab: Vec<Lock>,
    index: LockIndex,
}

impl Locks {
    fn push<E: Error>(&mut self, key: LockKey, lock: LockWire) -> Result<(), E> {
        if self.index.get(key).is_some() {
            return Err(E::custom(format!("lock {key:?} is encoded twice")));
        }
        let slot = u32::try_from(self.slab.len()).unwrap_or(u32::MAX);
        if slot >= LOCK_IDS_MAX {
            return Err(E::custom("more locks than a table holds"));
        }
        self.slab.push(Lock {
            key: Some(key),
            capacity: lock.capacity,
            refs: lock.refs,
            held_weight: lock.held_weight,
            held_exclusive: lock.held_exclusive,
            dirty: false,
            flagged: lock.flagged,
            holders: Sorted::from_sorted(lock.holders.0),
            queue: Sorted::from_sorted(lock.queue.0),
        });
        self.index.insert(key, LockId(slot));
        Ok(())
    }
}

/// Reads the `locks` map into a [`Locks`].
struct LocksSeed;

impl<'de> DeserializeSeed<'de> for LocksSeed {
    type Value = Locks;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Locks, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LocksSeed {
    type Value = Locks;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of locks")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Locks, A::Error> {
        let mut locks = Locks::default();
        locks.slab.reserve_exact(cautious::<Lock>(map.size_hint()));
        while let Some((key, lock)) = map.next_entry::<LockKey, LockWire>()? {
            locks.push(key, lock)?;
        }
        Ok(locks)
    }
}

fn resolve<E: Error>(index: &LockIndex, id: ReqId, claim: &ClaimWire) -> Result<Claim, E> {
    let lock = index.get(claim.lock).ok_or_else(|| {
        E::custom(format!(
            "request {id:?} claims {:?}, which the table does not hold",
            claim.lock
        ))
    })?;
    Ok(Claim::new(lock, claim.lock.rank(), claim.mode))
}

/// Reads the `requests` map, resolving claims against the locks already read.
struct RequestsSeed<'a>(&'a LockIndex);

impl<'de> DeserializeSeed<'de> for RequestsSeed<'_> {
    type Value = DenseMap<ReqId, Request>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestsSeed<'_> {
    type Value = DenseMap<ReqId, Request>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of requests")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut requests = DenseMap::new();
        while let Some(id) = map.next_key::<ReqId>()? {
            let request = map.next_value_seed(RequestSeed(self.0, id))?;
            if requests.insert(id, request).is_some() {
                return Err(A::Error::custom(format!("request {id:?} is encoded twice")));
            }
        }
        Ok(requests)
    }
}

/// Reads one request in order (claims, entered, admissible, held).
struct RequestSeed<'a>(&'a LockIndex, ReqId);

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Request;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Request, D::Error> {
        deserializer.deserialize_struct("Request", REQUEST_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Request;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Request, A::Error> {
        let RequestSeed(index, id) = self;
        let missing = |i| A::Error::invalid_length(i, &"a request of 4 fields");
        let claims = seq
            .next_element_seed(ClaimsSeed(index, id))?
            .ok_or_else(|| missing(0))?;
        Ok(Request {
            claims,
            entered: seq.next_element()?.ok_or_else(|| missing(1))?,
            admissible: seq.next_element()?.ok_or_else(|| missing(2))?,
            held: seq.next_element()?.ok_or_else(|| missing(3))?,
        })
    }
}

/// Reads a request's claims, resolved, without an intermediate `Vec`.
struct ClaimsSeed<'a>(&'a LockIndex, ReqId);

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Claims, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of claims")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Claims, A::Error> {
        let ClaimsSeed(index, id) = self;
        let mut error = None;
        let claims = std::iter::from_fn(|| match seq.next_element::<ClaimWire>() {
            Ok(Some(claim)) => match resolve(index, id, &claim) {
                Ok(claim) => Some(claim),
                Err(e) => {
                    error = Some(e);
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                error = Some(e);
                None
            }
        })
        .collect();
        match error {
            Some(e) => Err(e),
            None => Ok(claims),
        }
    }
}

impl<'de> Deserialize<'de> for FifoLockTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("FifoLockTable", TABLE_FIELDS, TableVisitor)
    }
}

struct TableVisitor;

/// The fields after `requests`.
struct Rest {
    candidates: BTreeSet<ReqId>,
    dirty: BTreeSet<LockKey>,
    last_id: Option<ReqId>,
}

fn assemble(locks: Locks, requests: DenseMap<ReqId, Request>, rest: Rest) -> FifoLockTable {
    let mut table = FifoLockTable {
        locks: locks.slab,
        index: locks.index,
        requests,
        candidates: rest.candidates.into(),
        last_id: rest.last_id,
        ..FifoLockTable::default()
    };
    // A dirty key without a lock was dropped from the table; there is nothing to recompute.
    for key in rest.dirty {
        if let Some(id) = table.index.get(key) {
            mark_dirty(&mut table.dirty, &mut table.locks[id.slot()], id);
        }
    }
    table
}

impl<'de> Visitor<'de> for TableVisitor {
    type Value = FifoLockTable;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a lock table")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FifoLockTable, A::Error> {
        let missing = |i| A::Error::invalid_length(i, &"a lock table of 5 fields");
        let locks = seq
            .next_element_seed(LocksSeed)?
            .ok_or_else(|| missing(0))?;
        let requests = seq
            .next_element_seed(RequestsSeed(&locks.index))?
            .ok_or_else(|| missing(1))?;
        let rest = Rest {
            candidates: seq.next_element()?.ok_or_else(|| missing(2))?,
            dirty: seq.next_element()?.ok_or_else(|| missing(3))?,
            last_id: seq.next_element()?.ok_or_else(|| missing(4))?,
        };
        Ok(assemble(locks, requests, rest))
    }
}
