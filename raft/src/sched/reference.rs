//! A deliberately simple lock table that recomputes every grant from scratch.
//!
//! It exists to be obviously right, not fast: `poll_grant` rebuilds every queue from the list of
//! requests, rank by rank, and applies the grant rule of [`crate::sched::lock`] directly. The
//! differential tests run the scheduler over it and over [`crate::sched::table::FifoLockTable`] and
//! require the same grants in the same order.

use crate::sched::ids::ReqId;
use crate::sched::lock::{ClaimSpec, LockKey, LockTable, Mode, Stuck};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Req {
    claims: Vec<ClaimSpec>,
    held: bool,
}

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceLockTable {
    requests: BTreeMap<ReqId, Req>,
    capacities: BTreeMap<LockKey, u32>,
}

/// The outcome of evaluating every queue: per request and lock, whether the request has entered
/// that lock's queue and whether it is admissible there.
struct Evaluation {
    entered: BTreeMap<(ReqId, LockKey), bool>,
    admissible: BTreeMap<(ReqId, LockKey), bool>,
}

impl ReferenceLockTable {
    /// An empty table.
    pub fn new() -> ReferenceLockTable {
        ReferenceLockTable::default()
    }

    fn evaluate(&self) -> Evaluation {
        let mut eval = Evaluation {
            entered: BTreeMap::new(),
            admissible: BTreeMap::new(),
        };
        for rank in 0..=5u8 {
            let mut locks: Vec<LockKey> = self
                .requests
                .values()
                .flat_map(|r| r.claims.iter().map(|c| c.lock))
                .filter(|l| l.rank() == rank)
                .collect();
            locks.sort();
            locks.dedup();
            for lock in locks {
                let capacity = u64::from(self.capacities[&lock]);
                let mut weight = 0u64;
                let mut exclusive = false;
                for req in self.requests.values().filter(|r| r.held) {
                    for claim in req.claims.iter().filter(|c| c.lock == lock) {
                        match claim.mode {
                            Mode::Exclusive => exclusive = true,
                            Mode::Shared(w) => weight += u64::from(w),
                        }
                    }
                }
                // The queue: waiting requests admissible on every claim of a lower rank, by id.
                let mut open = true;
                for (id, req) in self.requests.iter().filter(|(_, r)| !r.held) {
                    let Some(claim) = req.claims.iter().find(|c| c.lock == lock) else {
                        continue;
                    };
                    let entered = req
                        .claims
                        .iter()
                        .filter(|c| c.lock.rank() < rank)
                        .all(|c| eval.admissible[&(*id, c.lock)]);
                    eval.entered.insert((*id, lock), entered);
                    if !entered {
                        eval.admissible.insert((*id, lock), false);
                        continue;
                    }
                    let admissible = open
                        && match claim.mode {
                            Mode::Exclusive => weight == 0 && !exclusive,
                            Mode::Shared(w) => !exclusive && weight + u64::from(w) <= capacity,
                        };
                    if admissible {
                        match claim.mode {
                            Mode::Exclusive => exclusive = true,
                            Mode::Shared(w) => weight += u64::from(w),
                        }
                    } else {
                        open = false;
                    }
                    eval.admissible.insert((*id, lock), admissible);
                }
            }
        }
        eval
    }

    /// The claims of a request, as it made them.
    pub fn claims(&self, id: ReqId) -> Option<&[ClaimSpec]> {
        self.requests.get(&id).map(|r| r.claims.as_slice())
    }

    fn forget_unreferenced(&mut self) {
        let requests = &self.requests;
        self.capacities.retain(|lock, _| {
            requests
                .values()
                .any(|r| r.claims.iter().any(|c| c.lock == *lock))
        });
    }
}

impl LockTable for ReferenceLockTable {
    fn request(&mut self, id: ReqId, claims: &[ClaimSpec]) {
        assert!(self
            .requests
            .keys()
            .next_back()
            .is_none_or(|last| id > *last));
        for claim in claims {
            self.capacities.entry(claim.lock).or_insert(claim.capacity);
        }
        self.requests.insert(
            id,
            Req {
                claims: claims.to_vec(),
                held: false,
            },
        );
    }

    fn cancel(&mut self, id: ReqId) {
        let req = self
            .requests
            .remove(&id)
            .expect("cancel of an unknown request");
        assert!(!req.held);
        self.forget_unreferenced();
    }

    fn release(&mut self, id: ReqId) {
        let req = self
            .requests
            .remove(&id)
            .expect("release of an unknown request");
        assert!(req.held);
        self.forget_unreferenced();
    }

    fn set_capacity(&mut self, lock: LockKey, capacity: u32) {
        if let Some(c) = self.capacities.get_mut(&lock) {
            *c = capacity;
        }
    }

    fn poll_grant(&mut self) -> Option<ReqId> {
        let eval = self.evaluate();
        let id = self
            .requests
            .iter()
            .filter(|(_, r)| !r.held)
            .find(|(id, r)| r.claims.iter().all(|c| eval.admissible[&(**id, c.lock)]))
            .map(|(id, _)| *id)?;
        self.requests.get_mut(&id).expect("found above").held = true;
        Some(id)
    }

    fn is_waiting(&self, id: ReqId) -> bool {
        self.requests.get(&id).is_some_and(|r| !r.held)
    }

    fn is_held(&self, id: ReqId) -> bool {
        self.requests.get(&id).is_some_and(|r| r.held)
    }

    fn capacity(&self, lock: LockKey) -> Option<u32> {
        self.capacities.get(&lock).copied()
    }

    fn holders(&self, lock: LockKey) -> Vec<(ReqId, Mode)> {
        self.requests
            .iter()
            .filter(|(_, r)| r.held)
            .filter_map(|(id, r)| {
                r.claims
                    .iter()
                    .find(|c| c.lock == lock)
                    .map(|c| (*id, c.mode))
            })
            .collect()
    }

    fn queue(&self, lock: LockKey) -> Vec<(ReqId, Mode)> {
        let eval = self.evaluate();
        self.requests
            .iter()
            .filter(|(id, _)| eval.entered.get(&(**id, lock)).copied().unwrap_or(false))
            .filter_map(|(id, r)| {
                r.claims
                    .iter()
                    .find(|c| c.lock == lock)
                    .map(|c| (*id, c.mode))
            })
            .collect()
    }

    fn stuck(&self, id: ReqId) -> Option<Stuck> {
        let req = self.requests.get(&id)?;
        if req.held {
            return None;
        }
        let eval = self.evaluate();
        let mut claims = req.claims.clone();
        claims.sort_by_key(|c| c.lock);
        let claim = claims.iter().find(|c| !eval.admissible[&(id, c.lock)])?;
        let queue: Vec<ReqId> = eval
            .entered
            .iter()
            .filter(|((_, lock), entered)| *lock == claim.lock && **entered)
            .map(|((r, _), _)| *r)
            .collect();
        Some(Stuck {
            lock: claim.lock,
            mode: claim.mode,
            position: queue.iter().filter(|r| **r <= id).count(),
            queue_len: queue.len(),
        })
    }

    fn locks(&self) -> Vec<LockKey> {
        let locks: std::collections::BTreeSet<LockKey> = self
            .requests
            .values()
            .flat_map(|r| r.claims.iter().map(|c| c.lock))
            .collect();
        locks.into_iter().collect()
    }

    fn len(&self) -> usize {
        self.requests.len()
    }
}
