//! The incremental lock table: grants in `O(log n)` per change, whatever the queue length.
//!
//! It implements the grant rule of [`crate::sched::lock`] without recomputing it from scratch:
//! each lock keeps its queue of entered requests with an *admissible* flag per entry, and the flagged
//! entries always form a prefix of the queue. A change to a lock (an entry joins or leaves, a holder
//! releases, the capacity changes) marks it dirty; recomputing a dirty lock walks its queue from the
//! head only as far as the admissible prefix reaches (old or new), so the cost is bounded by the
//! number of requests that are or were admissible there, not by the queue length. A flag change moves
//! its request forward (enter the next rank's queues, or become a grant candidate) or back (leave the
//! higher ranks' queues), which dirties those locks in turn. Dirty locks are recomputed lowest rank
//! first; since a request's membership at rank `r` depends only on ranks below `r`, this reaches the
//! same fixed point as [`crate::sched::reference::ReferenceLockTable`].

use crate::sched::ids::ReqId;
use crate::sched::lock::{ClaimSpec, LockKey, LockTable, Mode, Stuck};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most claims one request may hold (a whole-task hold claims each of its targets).
pub const CLAIMS_PER_REQUEST_MAX: usize = 4_096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    mode: Mode,
    /// Index of the claim in its request.
    claim: u16,
    admissible: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lock {
    capacity: u32,
    /// Requests (waiting or held) that name this lock; the lock is dropped at zero.
    refs: u32,
    held_weight: u64,
    held_exclusive: bool,
    holders: BTreeMap<ReqId, Mode>,
    queue: BTreeMap<ReqId, Entry>,
    /// Number of queue entries flagged admissible (always a prefix of the queue).
    flagged: u32,
}

impl Lock {
    fn new(capacity: u32) -> Lock {
        Lock {
            capacity,
            refs: 0,
            held_weight: 0,
            held_exclusive: false,
            holders: BTreeMap::new(),
            queue: BTreeMap::new(),
            flagged: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    lock: LockKey,
    mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Request {
    /// Sorted by lock key, which sorts them by rank.
    claims: Vec<Claim>,
    /// `claims[..entered]` are in their locks' queues.
    entered: u16,
    /// How many entered claims are flagged admissible.
    admissible: u16,
    held: bool,
}

/// The production lock table. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoLockTable {
    locks: BTreeMap<LockKey, Lock>,
    requests: BTreeMap<ReqId, Request>,
    /// Waiting requests admissible on every claim.
    candidates: BTreeSet<ReqId>,
    /// Locks to recompute; `LockKey` orders by rank, so the lowest rank comes first.
    dirty: BTreeSet<LockKey>,
    last_id: Option<ReqId>,
}

impl FifoLockTable {
    /// An empty table.
    pub fn new() -> FifoLockTable {
        FifoLockTable::default()
    }

    fn process_dirty(&mut self) {
        while let Some(key) = self.dirty.pop_first() {
            self.recompute(key);
        }
    }

    /// Recomputes the admissible prefix of one lock and applies the flag changes.
    fn recompute(&mut self, key: LockKey) {
        let Some(lock) = self.locks.get_mut(&key) else {
            return;
        };
        let mut changes: Vec<(ReqId, u16, bool)> = Vec::new();
        let mut weight = lock.held_weight;
        let mut exclusive = lock.held_exclusive;
        let mut open = true;
        let mut flagged_seen: u32 = 0;
        let flagged_before = lock.flagged;
        for (id, entry) in lock.queue.iter_mut() {
            if !open && flagged_seen == flagged_before {
                break;
            }
            if entry.admissible {
                flagged_seen += 1;
            }
            let admissible = open
                && match entry.mode {
                    Mode::Exclusive => weight == 0 && !exclusive,
                    Mode::Shared(w) => {
                        !exclusive && weight + u64::from(w) <= u64::from(lock.capacity)
                    }
                };
            if admissible {
                match entry.mode {
                    Mode::Exclusive => exclusive = true,
                    Mode::Shared(w) => weight += u64::from(w),
                }
            } else {
                open = false;
            }
            if admissible != entry.admissible {
                entry.admissible = admissible;
                if admissible {
                    lock.flagged += 1;
                } else {
                    lock.flagged -= 1;
                }
                changes.push((*id, entry.claim, admissible));
            }
        }
        debug_assert!(lock.flagged as usize <= lock.queue.len());
        for (id, claim, admissible) in changes {
            self.on_flag(id, claim, admissible);
        }
    }

    fn on_flag(&mut self, id: ReqId, claim: u16, admissible: bool) {
        let request = self.requests.get_mut(&id).expect("queued request exists");
        debug_assert!(claim < request.entered);
        if admissible {
            request.admissible += 1;
            debug_assert!(request.admissible <= request.entered);
            if request.admissible == request.entered {
                self.advance(id);
            }
            return;
        }
        request.admissible -= 1;
        self.candidates.remove(&id);
        let rank = request.claims[claim as usize].lock.rank();
        let keep = request.claims.partition_point(|c| c.lock.rank() <= rank) as u16;
        self.withdraw_from(id, keep);
    }

    /// Takes `id` out of the queues of `claims[keep..entered]`.
    fn withdraw_from(&mut self, id: ReqId, keep: u16) {
        let request = self.requests.get_mut(&id).expect("request exists");
        for claim in &request.claims[keep as usize..request.entered as usize] {
            let lock = self
                .locks
                .get_mut(&claim.lock)
                .expect("claimed lock exists");
            let entry = lock.queue.remove(&id).expect("entered claim is queued");
            if entry.admissible {
                lock.flagged -= 1;
                request.admissible -= 1;
            }
            self.dirty.insert(claim.lock);
        }
        request.entered = request.entered.min(keep);
    }

    /// Moves a request whose entered claims are all admissible to its next rank, or makes it a
    /// grant candidate when it has entered everything.
    fn advance(&mut self, id: ReqId) {
        let request = self.requests.get_mut(&id).expect("request exists");
        debug_assert_eq!(request.admissible, request.entered);
        let start = request.entered as usize;
        if start == request.claims.len() {
            self.candidates.insert(id);
            return;
        }
        let rank = request.claims[start].lock.rank();
        let end = start + request.claims[start..].partition_point(|c| c.lock.rank() == rank);
        for (index, claim) in request.claims.iter().enumerate().take(end).skip(start) {
            let lock = self
                .locks
                .get_mut(&claim.lock)
                .expect("claimed lock exists");
            let entry = Entry {
                mode: claim.mode,
                claim: index as u16,
                admissible: false,
            };
            let previous = lock.queue.insert(id, entry);
            debug_assert!(previous.is_none());
            self.dirty.insert(claim.lock);
        }
        request.entered = end as u16;
    }

    fn unref(&mut self, key: LockKey) {
        let lock = self.locks.get_mut(&key).expect("claimed lock exists");
        lock.refs -= 1;
        if lock.refs == 0 {
            assert!(
                lock.holders.is_empty() && lock.queue.is_empty(),
                "unreferenced lock {key:?} in use"
            );
            self.locks.remove(&key);
            self.dirty.remove(&key);
        }
    }

    fn grant(&mut self, id: ReqId) {
        let request = self.requests.get_mut(&id).expect("candidate exists");
        assert!(!request.held, "request {id:?} granted twice");
        assert_eq!(request.entered as usize, request.claims.len());
        assert_eq!(request.admissible, request.entered);
        request.held = true;
        request.entered = 0;
        request.admissible = 0;
        for claim in &request.claims {
            let lock = self
                .locks
                .get_mut(&claim.lock)
                .expect("claimed lock exists");
            let entry = lock.queue.remove(&id).expect("candidate is queued");
            assert!(
                entry.admissible,
                "candidate {id:?} not admissible on {:?}",
                claim.lock
            );
            lock.flagged -= 1;
            match claim.mode {
                Mode::Exclusive => {
                    assert!(
                        lock.holders.is_empty(),
                        "exclusive grant on held lock {:?}",
                        claim.lock
                    );
                    lock.held_exclusive = true;
                }
                Mode::Shared(w) => {
                    assert!(
                        !lock.held_exclusive,
                        "shared grant on exclusively held {:?}",
                        claim.lock
                    );
                    lock.held_weight += u64::from(w);
                    assert!(
                        lock.held_weight <= u64::from(lock.capacity),
                        "grant above capacity on {:?}",
                        claim.lock
                    );
                }
            }
            lock.holders.insert(id, claim.mode);
            self.dirty.insert(claim.lock);
        }
    }

    /// Recomputes every flag from scratch and checks the incremental state against it. For tests.
    pub fn audit(&self) -> Result<(), String> {
        if !self.dirty.is_empty() {
            return Err(format!("dirty locks at rest: {:?}", self.dirty));
        }
        for (key, lock) in &self.locks {
            let mut weight = 0u64;
            let mut exclusive = false;
            for (id, mode) in &lock.holders {
                let request = self
                    .requests
                    .get(id)
                    .ok_or(format!("holder {id:?} unknown"))?;
                if !request.held {
                    return Err(format!("holder {id:?} of {key:?} not marked held"));
                }
                match mode {
                    Mode::Exclusive => exclusive = true,
                    Mode::Shared(w) => weight += u64::from(*w),
                }
            }
            if exclusive && lock.holders.len() != 1 {
                return Err(format!("{key:?} held exclusively with other holders"));
            }
            if weight != lock.held_weight || exclusive != lock.held_exclusive {
                return Err(format!("{key:?} held weight out of step"));
            }
            let mut open = true;
            let mut flagged = 0;
            for (id, entry) in &lock.queue {
                let admissible = open
                    && match entry.mode {
                        Mode::Exclusive => weight == 0 && !exclusive,
                        Mode::Shared(w) => {
                            !exclusive && weight + u64::from(w) <= u64::from(lock.capacity)
                        }
                    };
                if admissible {
                    flagged += 1;
                    match entry.mode {
                        Mode::Exclusive => exclusive = true,
                        Mode::Shared(w) => weight += u64::from(w),
                    }
                } else {
                    open = false;
                }
                if admissible != entry.admissible {
                    return Err(format!(
                        "{key:?}: flag of {id:?} is {} not {admissible}",
                        entry.admissible
                    ));
                }
            }
            if flagged != lock.flagged {
                return Err(format!("{key:?}: flagged count out of step"));
            }
        }
        for (id, request) in &self.requests {
            if request.held {
                continue;
            }
            let mut admissible = 0;
            for claim in &request.claims[..request.entered as usize] {
                let entry = self.locks[&claim.lock]
                    .queue
                    .get(id)
                    .ok_or(format!("{id:?} not queued"))?;
                admissible += u16::from(entry.admissible);
            }
            for claim in &request.claims[request.entered as usize..] {
                if self.locks[&claim.lock].queue.contains_key(id) {
                    return Err(format!(
                        "{id:?} queued on {:?} before entering it",
                        claim.lock
                    ));
                }
            }
            if admissible != request.admissible {
                return Err(format!("{id:?}: admissible count out of step"));
            }
            let entered_all = request.entered as usize == request.claims.len();
            let group_done = request.entered == 0
                || request.entered as usize == request.claims.len()
                || request.claims[request.entered as usize - 1].lock.rank()
                    != request.claims[request.entered as usize].lock.rank();
            if !group_done {
                return Err(format!("{id:?} entered half a rank"));
            }
            if admissible == request.entered && !entered_all {
                return Err(format!("{id:?} admissible so far but did not advance"));
            }
            let candidate = entered_all && admissible == request.entered;
            if candidate != self.candidates.contains(id) {
                return Err(format!("{id:?}: candidate set out of step"));
            }
        }
        Ok(())
    }
}

impl LockTable for FifoLockTable {
    fn request(&mut self, id: ReqId, claims: &[ClaimSpec]) {
        assert!(
            self.last_id.is_none_or(|last| id > last),
            "request ids must increase"
        );
        assert!(!claims.is_empty() && claims.len() <= CLAIMS_PER_REQUEST_MAX);
        self.last_id = Some(id);
        let mut sorted: Vec<Claim> = claims
            .iter()
            .map(|c| Claim {
                lock: c.lock,
                mode: c.mode,
            })
            .collect();
        sorted.sort_by_key(|c| c.lock);
        assert!(
            sorted.windows(2).all(|w| w[0].lock != w[1].lock),
            "a request names a lock twice"
        );
        for spec in claims {
            if let Mode::Shared(w) = spec.mode {
                assert!(w > 0, "a shared claim weighs at least 1");
            }
            self.locks
                .entry(spec.lock)
                .or_insert_with(|| Lock::new(spec.capacity))
                .refs += 1;
        }
        self.requests.insert(
            id,
            Request {
                claims: sorted,
                entered: 0,
                admissible: 0,
                held: false,
            },
        );
        self.advance(id);
    }

    fn cancel(&mut self, id: ReqId) {
        let request = self
            .requests
            .get(&id)
            .expect("cancel of an unknown request");
        assert!(!request.held, "cancel of a granted request: release it");
        self.withdraw_from(id, 0);
        self.candidates.remove(&id);
        let request = self.requests.remove(&id).expect("request exists");
        for claim in &request.claims {
            self.unref(claim.lock);
        }
    }

    fn release(&mut self, id: ReqId) {
        let request = self
            .requests
            .remove(&id)
            .expect("release of an unknown request");
        assert!(request.held, "release of a waiting request: cancel it");
        for claim in &request.claims {
            let lock = self
                .locks
                .get_mut(&claim.lock)
                .expect("claimed lock exists");
            let mode = lock.holders.remove(&id).expect("holder is recorded");
            match mode {
                Mode::Exclusive => lock.held_exclusive = false,
                Mode::Shared(w) => lock.held_weight -= u64::from(w),
            }
            self.dirty.insert(claim.lock);
            self.unref(claim.lock);
        }
    }

    fn set_capacity(&mut self, key: LockKey, capacity: u32) {
        if let Some(lock) = self.locks.get_mut(&key) {
            if lock.capacity != capacity {
                lock.capacity = capacity;
                self.dirty.insert(key);
            }
        }
    }

    fn poll_grant(&mut self) -> Option<ReqId> {
        self.process_dirty();
        let id = self.candidates.pop_first()?;
        self.grant(id);
        self.process_dirty();
        Some(id)
    }

    fn is_waiting(&self, id: ReqId) -> bool {
        self.requests.get(&id).is_some_and(|r| !r.held)
    }

    fn is_held(&self, id: ReqId) -> bool {
        self.requests.get(&id).is_some_and(|r| r.held)
    }

    fn capacity(&self, key: LockKey) -> Option<u32> {
        self.locks.get(&key).map(|l| l.capacity)
    }

    fn holders(&self, key: LockKey) -> Vec<(ReqId, Mode)> {
        self.locks
            .get(&key)
            .map(|l| l.holders.iter().map(|(i, m)| (*i, *m)).collect())
            .unwrap_or_default()
    }

    fn queue(&self, key: LockKey) -> Vec<(ReqId, Mode)> {
        self.locks
            .get(&key)
            .map(|l| l.queue.iter().map(|(i, e)| (*i, e.mode)).collect())
            .unwrap_or_default()
    }

    fn stuck(&self, id: ReqId) -> Option<Stuck> {
        let request = self.requests.get(&id)?;
        if request.held {
            return None;
        }
        for claim in &request.claims[..request.entered as usize] {
            let lock = &self.locks[&claim.lock];
            if !lock.queue[&id].admissible {
                return Some(Stuck {
                    lock: claim.lock,
                    mode: claim.mode,
                    position: lock.queue.range(..=id).count(),
                    queue_len: lock.queue.len(),
                });
            }
        }
        None
    }

    fn len(&self) -> usize {
        self.requests.len()
    }
}
