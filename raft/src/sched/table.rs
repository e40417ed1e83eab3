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
//!
//! # Why the order of work does not matter
//! The flags of a lock are a function of its holders, its capacity and its queue; its queue at rank
//! `r` is a function of the flags at ranks below `r`. So the state at rest is unique, however the
//! work is ordered, provided that every lock whose flags may be stale is dirty. Recomputing a lock of
//! rank `r` only moves requests into or out of queues of rank above `r`, so the dirty locks of one
//! rank may be taken in any order (they are taken last-marked first). Two shortcuts keep flags up
//! to date without a recomputation, so the lock need not be marked:
//! - entering a lock that is not dirty (its flags are up to date): if its queue was empty, the new
//!   entry is admissible exactly when it fits beside the holders; if the new entry goes to the tail
//!   behind an entry that is not admissible, it is not admissible either, and no other flag moves;
//! - granting: an admissible entry moves from the queue to the holders with its weight, so the
//!   entries after it see the same weight ahead of them, and those before it still fit (it fitted
//!   after them).
//!
//! # Representation
//! Locks live in a slab (`Vec<Lock>` with a free list) and are named inside the table by their
//! slot, a [`LockId`]: claims, queues and the dirty lists hold ids, so following a claim to its
//! lock is one indexed load. The key of a lock is looked up (in [`LockIndex`]) only when a request
//! is made or a lock is asked about by key. Requests are in a [`DenseMap`] by id. The records are
//! in `table_store.rs`; the snapshot encoding, which is exactly that of the earlier B-tree
//! representation, is in `table_serde.rs`.

use crate::sched::dense::DenseMap;
use crate::sched::ids::ReqId;
use crate::sched::lock::{ClaimSpec, LockKey, LockTable, Mode, Stuck};
use crate::sched::table_candidates::Candidates;
use crate::sched::table_store::{
    Claim, Claims, Entry, Lock, LockId, LockIndex, Request, LOCK_IDS_MAX,
};

/// Most claims one request may hold (a whole-task hold claims each of its targets).
pub const CLAIMS_PER_REQUEST_MAX: usize = 4_096;

/// Number of lock ranks (see [`LockKey::rank`]).
pub(crate) const RANKS: usize = 6;

/// Dirty locks, one list per rank.
pub(crate) type Dirty = [Vec<LockId>; RANKS];

/// The production lock table. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct FifoLockTable {
    pub(crate) locks: Vec<Lock>,
    /// Free slots of `locks`, reused last-freed first.
    pub(crate) free: Vec<LockId>,
    pub(crate) index: LockIndex,
    pub(crate) requests: DenseMap<ReqId, Request>,
    /// Waiting requests admissible on every claim.
    pub(crate) candidates: Candidates,
    /// Locks to recompute, by rank; a lock is listed at most once (its `dirty` flag).
    pub(crate) dirty: Dirty,
    pub(crate) last_id: Option<ReqId>,
    /// Scratch space for `recompute`, kept to avoid an allocation per call.
    pub(crate) changes: Vec<(ReqId, u16, bool)>,
}

pub(crate) fn mark_dirty(dirty: &mut Dirty, lock: &mut Lock, id: LockId) {
    if !lock.dirty {
        lock.dirty = true;
        dirty[lock.key().rank() as usize].push(id);
    }
}

/// Whether a request is a grant candidate: waiting, entered everywhere, admissible everywhere.
fn is_candidate(request: &Request) -> bool {
    !request.held
        && request.entered as usize == request.claims.len()
        && request.admissible == request.entered
}

/// Takes `id` out of the queues of `claims[keep..entered]`.
fn withdraw_from(
    request: &mut Request,
    id: ReqId,
    keep: u16,
    locks: &mut [Lock],
    dirty: &mut Dirty,
) {
    for claim in &request.claims[keep as usize..request.entered as usize] {
        let lock = &mut locks[claim.lock().slot()];
        let entry = lock.queue.remove(id).expect("entered claim is queued");
        if entry.admissible {
            lock.flagged -= 1;
            request.admissible -= 1;
        }
        mark_dirty(dirty, lock, claim.lock());
    }
    request.entered = request.entered.min(keep);
}

/// Whether an entry of `weight` (see [`pack`](crate::sched::table_store::pack)) fits a lock with
/// nothing queued ahead of it.
fn fits_alone(lock: &Lock, weight: u32) -> bool {
    match weight {
        0 => lock.held_weight == 0 && !lock.held_exclusive,
        w => !lock.held_exclusive && lock.held_weight + u64::from(w) <= u64::from(lock.capacity),
    }
}

/// Enters request `id` into a lock's queue; returns whether the entry is admissible.
///
/// A lock that is not dirty has correct flags. Then the new entry's flag is known at once when the
/// queue was empty (it is admissible if it fits beside the holders) or when it goes to the tail
/// behind an entry that is not admissible (it is not admissible either), and the flags of the
/// others do not change. Otherwise the entry starts not admissible and the lock is marked dirty.
fn enter(lock: &mut Lock, lock_id: LockId, id: ReqId, entry: Entry, dirty: &mut Dirty) -> bool {
    if !lock.dirty {
        if lock.queue.is_empty() {
            let admissible = fits_alone(lock, entry.weight);
            lock.queue.insert(
                id,
                Entry {
                    admissible,
                    ..entry
                },
            );
            lock.flagged = u32::from(admissible);
            return admissible;
        }
        let behind_a_waiter = (lock.flagged as usize) < lock.queue.len()
            && lock.queue.last_id().is_some_and(|last| last < id);
        if behind_a_waiter {
            lock.queue.insert(id, entry);
            return false;
        }
    }
    let previous = lock.queue.insert(id, entry);
    debug_assert!(previous.is_none());
    mark_dirty(dirty, lock, lock_id);
    false
}

/// Moves a request whose entered claims are all admissible on to its next rank (and on, while it
/// is admissible at once on all of a rank's claims), or makes it a grant candidate when it has
/// entered everything.
fn advance(
    request: &mut Request,
    id: ReqId,
    locks: &mut [Lock],
    dirty: &mut Dirty,
    candidates: &mut Candidates,
) {
    loop {
        debug_assert_eq!(request.admissible, request.entered);
        let start = request.entered as usize;
        if start == request.claims.len() {
            candidates.insert(id);
            return;
        }
        let rank = request.claims[start].rank();
        let end = start + request.claims[start..].partition_point(|c| c.rank() == rank);
        for index in start..end {
            let claim = request.claims[index];
            let entry = Entry {
                weight: claim.weight,
                claim: index as u16,
                admissible: false,
            };
            let lock = &mut locks[claim.lock().slot()];
            if enter(lock, claim.lock(), id, entry, dirty) {
                request.admissible += 1;
            }
        }
        request.entered = end as u16;
        if request.admissible != request.entered {
            return;
        }
    }
}

impl FifoLockTable {
    /// An empty table.
    pub fn new() -> FifoLockTable {
        FifoLockTable::default()
    }

    /// Number of locks in use.
    pub(crate) fn live_locks(&self) -> usize {
        self.locks.len() - self.free.len()
    }

    fn process_dirty(&mut self) {
        while let Some(list) = self.dirty.iter_mut().find(|list| !list.is_empty()) {
            let id = list.pop().expect("not empty");
            self.locks[id.slot()].dirty = false;
            self.recompute(id);
        }
    }

    /// Recomputes the admissible prefix of one lock and applies the flag changes.
    fn recompute(&mut self, id: LockId) {
        let lock = &mut self.locks[id.slot()];
        if lock.queue.is_empty() {
            return;
        }
        let changes = &mut self.changes;
        debug_assert!(changes.is_empty());
        let capacity = u64::from(lock.capacity);
        let mut weight = lock.held_weight;
        let mut exclusive = lock.held_exclusive;
        let mut open = true;
        let mut flagged_seen: u32 = 0;
        let flagged_before = lock.flagged;
        let mut flagged = lock.flagged;
        for (request, entry) in lock.queue.iter_mut() {
            if !open && flagged_seen == flagged_before {
                break;
            }
            if entry.admissible {
                flagged_seen += 1;
            }
            let admissible = open
                && match entry.weight {
                    0 => weight == 0 && !exclusive,
                    w => !exclusive && weight + u64::from(w) <= capacity,
                };
            if admissible {
                match entry.weight {
                    0 => exclusive = true,
                    w => weight += u64::from(w),
                }
            } else {
                open = false;
            }
            if admissible != entry.admissible {
                entry.admissible = admissible;
                if admissible {
                    flagged += 1;
                } else {
                    flagged -= 1;
                }
                changes.push((request, entry.claim, admissible));
            }
        }
        lock.flagged = flagged;
        debug_assert!(lock.flagged as usize <= lock.queue.len());
        // Flag changes only move requests at higher ranks, never recompute: `changes` stays ours.
        for i in 0..self.changes.len() {
            let (request, claim, admissible) = self.changes[i];
            self.on_flag(request, claim, admissible);
        }
        self.changes.clear();
    }

    fn on_flag(&mut self, id: ReqId, claim: u16, admissible: bool) {
        let request = self.requests.get_mut(&id).expect("queued request exists");
        debug_assert!(claim < request.entered);
        if admissible {
            request.admissible += 1;
            debug_assert!(request.admissible <= request.entered);
            if request.admissible == request.entered {
                advance(
                    request,
                    id,
                    &mut self.locks,
                    &mut self.dirty,
                    &mut self.candidates,
                );
            }
            return;
        }
        if is_candidate(request) {
            self.candidates.remove(&id);
        }
        request.admissible -= 1;
        let rank = request.claims[claim as usize].rank();
        let keep = request.claims.partition_point(|c| c.rank() <= rank) as u16;
        withdraw_from(request, id, keep, &mut self.locks, &mut self.dirty);
    }

    /// A slot for a new lock: the last freed one, or a new one.
    fn new_lock(&mut self, key: LockKey, capacity: u32) -> LockId {
        let id = match self.free.pop() {
            Some(id) => {
                let lock = &mut self.locks[id.slot()];
                debug_assert!(lock.key.is_none() && lock.refs == 0);
                lock.key = Some(key);
                lock.capacity = capacity;
                id
            }
            None => {
                let slot = u32::try_from(self.locks.len()).unwrap_or(u32::MAX);
                assert!(slot < LOCK_IDS_MAX, "fewer than 2^29 locks");
                let id = LockId(slot);
                self.locks.push(Lock::new(key, capacity));
                id
            }
        };
        self.index.insert(key, id);
        id
    }

    fn unref(&mut self, id: LockId) {
        let lock = &mut self.locks[id.slot()];
        lock.refs -= 1;
        if lock.refs > 0 {
            return;
        }
        let key = lock.key();
        assert!(
            lock.holders.is_empty() && lock.queue.is_empty(),
            "unreferenced lock {key:?} in use"
        );
        if lock.dirty {
            let list = &mut self.dirty[key.rank() as usize];
            let at = list.iter().position(|d| *d == id).expect("dirty is listed");
            list.swap_remove(at);
        }
        // Keep small buffers for the next lock in this slot; drop large ones.
        let mut holders = std::mem::take(&mut lock.holders);
        let mut queue = std::mem::take(&mut lock.queue);
        holders.clear();
        queue.clear();
        *lock = Lock {
            holders,
            queue,
            ..Lock::default()
        };
        self.index.remove(key);
        self.free.push(id);
    }

    fn grant(&mut self, id: ReqId) {
        let request = self.requests.get_mut(&id).expect("candidate exists");
        assert!(!request.held, "request {id:?} granted twice");
        assert_eq!(request.entered as usize, request.claims.len());
        assert_eq!(request.admissible, request.entered);
        request.held = true;
        request.entered = 0;
        request.admissible = 0;
        for claim in request.claims.iter() {
            let lock = &mut self.locks[claim.lock().slot()];
            let entry = lock.queue.remove(id).expect("candidate is queued");
            assert!(
                entry.admissible,
                "candidate {id:?} not admissible on {:?}",
                lock.key
            );
            lock.flagged -= 1;
            match claim.mode() {
                Mode::Exclusive => {
                    assert!(
                        lock.holders.is_empty(),
                        "exclusive grant on held lock {:?}",
                        lock.key
                    );
                    lock.held_exclusive = true;
                }
                Mode::Shared(w) => {
                    assert!(
                        !lock.held_exclusive,
                        "shared grant on exclusively held {:?}",
                        lock.key
                    );
                    lock.held_weight += u64::from(w);
                    assert!(
                        lock.held_weight <= u64::from(lock.capacity),
                        "grant above capacity on {:?}",
                        lock.key
                    );
                }
            }
            // Moving an admissible entry to the holders changes no other flag: the entries before
            // it still fit (it fitted after them), and those after it see the same weight ahead.
            lock.holders.insert(id, claim.mode());
        }
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
        let sorted_copy;
        let specs = if claims.windows(2).all(|w| w[0].lock < w[1].lock) {
            claims
        } else {
            let mut copy = claims.to_vec();
            copy.sort_by_key(|c| c.lock);
            assert!(
                copy.windows(2).all(|w| w[0].lock != w[1].lock),
                "a request names a lock twice"
            );
            sorted_copy = copy;
            &sorted_copy[..]
        };
        for spec in specs {
            if let Mode::Shared(w) = spec.mode {
                assert!(w > 0, "a shared claim weighs at least 1");
            }
        }
        let claims: Claims = specs
            .iter()
            .map(|spec| {
                let lock = match self.index.get(spec.lock) {
                    Some(lock) => lock,
                    None => self.new_lock(spec.lock, spec.capacity),
                };
                self.locks[lock.slot()].refs += 1;
                Claim::new(lock, spec.lock.rank(), spec.mode)
            })
            .collect();
        let mut request = Request {
            claims,
            entered: 0,
            admissible: 0,
            held: false,
        };
        advance(
            &mut request,
            id,
            &mut self.locks,
            &mut self.dirty,
            &mut self.candidates,
        );
        self.requests.insert(id, request);
    }

    fn cancel(&mut self, id: ReqId) {
        let request = self
            .requests
            .get(&id)
            .expect("cancel of an unknown request");
        assert!(!request.held, "cancel of a granted request: release it");
        let mut request = self.requests.remove(&id).expect("request exists");
        if is_candidate(&request) {
            self.candidates.remove(&id);
        }
        withdraw_from(&mut request, id, 0, &mut self.locks, &mut self.dirty);
        for claim in request.claims.iter() {
            self.unref(claim.lock());
        }
    }

    fn release(&mut self, id: ReqId) {
        let request = self
            .requests
            .remove(&id)
            .expect("release of an unknown request");
        assert!(request.held, "release of a waiting request: cancel it");
        for claim in request.claims.iter() {
            let lock = &mut self.locks[claim.lock().slot()];
            let mode = lock.holders.remove(id).expect("holder is recorded");
            match mode {
                Mode::Exclusive => lock.held_exclusive = false,
                Mode::Shared(w) => lock.held_weight -= u64::from(w),
            }
            mark_dirty(&mut self.dirty, lock, claim.lock());
            self.unref(claim.lock());
        }
    }

    fn set_capacity(&mut self, key: LockKey, capacity: u32) {
        if let Some(id) = self.index.get(key) {
            let lock = &mut self.locks[id.slot()];
            if lock.capacity != capacity {
                lock.capacity = capacity;
                mark_dirty(&mut self.dirty, lock, id);
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
        self.index.get(key).map(|id| self.locks[id.slot()].capacity)
    }

    fn holders(&self, key: LockKey) -> Vec<(ReqId, Mode)> {
        self.index
            .get(key)
            .map(|id| {
                let lock = &self.locks[id.slot()];
                lock.holders.iter().map(|(i, m)| (i, *m)).collect()
            })
            .unwrap_or_default()
    }

    fn queue(&self, key: LockKey) -> Vec<(ReqId, Mode)> {
        self.index
            .get(key)
            .map(|id| {
                let lock = &self.locks[id.slot()];
                lock.queue.iter().map(|(i, e)| (i, e.mode())).collect()
            })
            .unwrap_or_default()
    }

    fn stuck(&self, id: ReqId) -> Option<Stuck> {
        let request = self.requests.get(&id)?;
        if request.held {
            return None;
        }
        for claim in &request.claims[..request.entered as usize] {
            let lock = &self.locks[claim.lock().slot()];
            let entry = lock.queue.get(id).expect("entered claim is queued");
            if !entry.admissible {
                return Some(Stuck {
                    lock: lock.key(),
                    mode: claim.mode(),
                    position: lock.queue.position(id),
                    queue_len: lock.queue.len(),
                });
            }
        }
        None
    }

    fn locks(&self) -> Vec<LockKey> {
        let mut locks: Vec<LockKey> = self
            .locks
            .iter()
            .filter(|l| l.refs > 0)
            .filter_map(|l| l.key)
            .collect();
        locks.sort();
        locks
    }

    fn len(&self) -> usize {
        self.requests.len()
    }
}
