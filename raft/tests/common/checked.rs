//! A lock table that runs the incremental table and the reference table side by side, requires the
//! same answer from both for every call, and tracks each request's life so that a lock granted
//! twice, released twice, or released without being held fails the test at once.

use cuttle_raft::sched::*;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Waiting,
    Held,
    Released,
    Cancelled,
}

#[derive(Default)]
pub struct Checked {
    pub fast: FifoLockTable,
    pub reference: ReferenceLockTable,
    pub life: BTreeMap<ReqId, Life>,
    /// Every grant, in order.
    pub grants: Vec<ReqId>,
}

impl Checked {
    fn step(&mut self, id: ReqId, from: Life, to: Life) {
        let life = self
            .life
            .get_mut(&id)
            .unwrap_or_else(|| panic!("{id:?} was never requested"));
        assert_eq!(*life, from, "{id:?} is {life:?}, cannot become {to:?}");
        *life = to;
    }

    /// Both tables explain every waiting request the same way, and the incremental one is
    /// consistent with a recomputation from scratch.
    pub fn check(&self) {
        self.fast
            .audit()
            .expect("incremental lock table consistent");
        for (id, life) in &self.life {
            if *life == Life::Waiting {
                assert_eq!(
                    self.fast.stuck(*id),
                    self.reference.stuck(*id),
                    "explanations of {id:?} differ"
                );
            }
        }
    }

    /// Requests that are not released or cancelled.
    pub fn outstanding(&self) -> usize {
        self.life
            .values()
            .filter(|l| matches!(l, Life::Waiting | Life::Held))
            .count()
    }
}

/// The grant of `id` overtakes no earlier waiter it conflicts with: on each lock it claims, the
/// holders, every request queued ahead of it, and it together fit the lock (an exclusive claim
/// needs an empty lock and an empty queue ahead).
fn no_overtaking(before: &ReferenceLockTable, id: ReqId) {
    for claim in before.claims(id).expect("granted request exists") {
        let capacity = u64::from(before.capacity(claim.lock).expect("claimed lock exists"));
        let ahead: Vec<(ReqId, Mode)> = before
            .queue(claim.lock)
            .into_iter()
            .take_while(|(r, _)| *r < id)
            .collect();
        let all: Vec<Mode> = before
            .holders(claim.lock)
            .into_iter()
            .chain(ahead.iter().copied())
            .map(|(_, m)| m)
            .collect();
        let fits = match claim.mode {
            Mode::Exclusive => all.is_empty(),
            Mode::Shared(w) => {
                !all.contains(&Mode::Exclusive)
                    && all
                        .iter()
                        .map(|m| {
                            if let Mode::Shared(v) = m {
                                u64::from(*v)
                            } else {
                                0
                            }
                        })
                        .sum::<u64>()
                        + u64::from(w)
                        <= capacity
            }
        };
        assert!(
            fits,
            "grant of {id:?} on {:?} overtakes waiting {ahead:?}",
            claim.lock
        );
    }
}

impl LockTable for Checked {
    fn request(&mut self, id: ReqId, claims: &[ClaimSpec]) {
        assert!(
            self.life.insert(id, Life::Waiting).is_none(),
            "{id:?} requested twice"
        );
        self.fast.request(id, claims);
        self.reference.request(id, claims);
    }

    fn cancel(&mut self, id: ReqId) {
        self.step(id, Life::Waiting, Life::Cancelled);
        self.fast.cancel(id);
        self.reference.cancel(id);
    }

    fn release(&mut self, id: ReqId) {
        self.step(id, Life::Held, Life::Released);
        self.fast.release(id);
        self.reference.release(id);
    }

    fn set_capacity(&mut self, lock: LockKey, capacity: u32) {
        self.fast.set_capacity(lock, capacity);
        self.reference.set_capacity(lock, capacity);
    }

    fn poll_grant(&mut self) -> Option<ReqId> {
        let before = self.reference.clone();
        let fast = self.fast.poll_grant();
        let reference = self.reference.poll_grant();
        assert_eq!(
            fast, reference,
            "the incremental and the reference table grant differently"
        );
        if let Some(id) = fast {
            no_overtaking(&before, id);
            self.step(id, Life::Waiting, Life::Held);
            self.grants.push(id);
        }
        fast
    }

    fn is_waiting(&self, id: ReqId) -> bool {
        self.fast.is_waiting(id)
    }

    fn is_held(&self, id: ReqId) -> bool {
        self.fast.is_held(id)
    }

    fn capacity(&self, lock: LockKey) -> Option<u32> {
        let fast = self.fast.capacity(lock);
        assert_eq!(fast, self.reference.capacity(lock));
        fast
    }

    fn holders(&self, lock: LockKey) -> Vec<(ReqId, Mode)> {
        self.fast.holders(lock)
    }

    fn queue(&self, lock: LockKey) -> Vec<(ReqId, Mode)> {
        let fast = self.fast.queue(lock);
        assert_eq!(
            fast,
            self.reference.queue(lock),
            "queues of {lock:?} differ"
        );
        fast
    }

    fn stuck(&self, id: ReqId) -> Option<Stuck> {
        self.fast.stuck(id)
    }

    fn locks(&self) -> Vec<LockKey> {
        let fast = self.fast.locks();
        assert_eq!(
            fast,
            self.reference.locks(),
            "both tables list the same locks"
        );
        fast
    }

    fn len(&self) -> usize {
        self.fast.len()
    }
}
