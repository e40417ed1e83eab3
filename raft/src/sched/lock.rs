//! The vocabulary of the lock table: what a lock is, how a request claims it, and the one interface
//! that both lock tables (the incremental [`crate::sched::table::FifoLockTable`] and the
//! deliberately simple [`crate::sched::reference::ReferenceLockTable`]) implement.
//!
//! Every limit cuttle enforces is a lock with a capacity and a FIFO queue: the concurrency tag, the
//! cluster task cap, the target isolation lock, a step's parallelism, step locks and named locks,
//! and an agent's capacity. A request claims one or more locks and is granted all of them at once or
//! none (it waits holding nothing).
//!
//! # The grant rule
//! Each lock has a capacity `C` (the total shared weight it admits) and a queue of the requests that
//! have *entered* it, ordered by request id (ids increase with time, so this is arrival order).
//! Walking a queue from its head, an entry is *admissible* on that lock when
//! - it is exclusive, no one holds the lock and it is the first entry; or
//! - it is shared with weight `w`, no one holds the lock exclusively, no entry before it is
//!   exclusive, and `held weight + weight of all entries before it + w <= C`;
//!
//! and the walk stops at the first entry that is not admissible: nothing after it is admissible,
//! because nothing overtakes a waiting request. Every entry before a request thus reserves its share,
//! whether or not it is blocked elsewhere.
//!
//! # Ranks: which queues a request enters
//! Claims are ordered by the [`rank`](LockKey::rank) of their lock. A request enters the queues of
//! its claims of rank `r` only while it is admissible on all its claims of lower rank; when it loses
//! that (an earlier request entered ahead of it, or a capacity shrank) it leaves the higher queues
//! again. A request is granted when it has entered all its claims and is admissible on each.
//! Among grantable requests the smallest id is granted first.
//!
//! Ranks make the wait graph acyclic (see the module documentation of [`crate::sched`]): a task
//! waiting for its concurrency tag does not hold back a cap slot, and a unit waiting for a target
//! that another task holds does not hold back a step lock or an agent slot that the holding task's own
//! units need.

use crate::sched::ids::{ReqId, Sym, TargetId, TaskId};
use serde::{Deserialize, Serialize};

/// Which lock. The variant order is the rank order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockKey {
    /// Rank 0: a concurrency tag (default `project/environment` or `tenant/project/environment`).
    Tag(Sym),
    /// Rank 1: the cluster-wide task cap.
    TaskCap,
    /// Rank 2: a target's isolation lock (exclusive for a normal unit, shared under bypass).
    Target(TargetId),
    /// Rank 3: the parallelism of one stage of one task (`Cuttle.Action.MaxParallelism`, or
    /// `Cuttle.Acquire.MaxParallelism` for package acquisition).
    Parallelism(TaskId, u16),
    /// Rank 4: a named lock, used by step locks and by clients (`cuttle lock run`); scoped to one
    /// target or to the whole cluster.
    Named(Sym, Option<TargetId>),
    /// Rank 5: the number of units an agent runs at once.
    AgentCapacity(TargetId),
}

impl LockKey {
    /// The rank: a request enters higher-rank queues only while admissible on all lower ranks.
    pub fn rank(&self) -> u8 {
        match self {
            LockKey::Tag(_) => 0,
            LockKey::TaskCap => 1,
            LockKey::Target(_) => 2,
            LockKey::Parallelism(..) => 3,
            LockKey::Named(..) => 4,
            LockKey::AgentCapacity(_) => 5,
        }
    }
}

/// How a claim holds its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Alone: no other holder at all.
    Exclusive,
    /// Together with other shared holders, up to the lock's capacity in total weight.
    Shared(u32),
}

impl Mode {
    /// One shared permit.
    pub const PERMIT: Mode = Mode::Shared(1);
}

/// One lock a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimSpec {
    /// The lock.
    pub lock: LockKey,
    /// Exclusive or shared.
    pub mode: Mode,
    /// The lock's capacity if this claim creates it. A lock exists while any request names it;
    /// while it exists, its capacity changes only through [`LockTable::set_capacity`].
    pub capacity: u32,
}

/// Where a waiting request is stuck: its first claim that is not admissible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// The lock it waits for.
    pub lock: LockKey,
    /// How it wants it.
    pub mode: Mode,
    /// 1-based position in that lock's queue.
    pub position: usize,
    /// Number of requests in that lock's queue.
    pub queue_len: usize,
}

/// What every lock table does. Implementations must be deterministic: the same calls give the same
/// answers on every replica.
pub trait LockTable {
    /// Adds a waiting request. `id` must be larger than every id used before, and `claims` must name
    /// distinct locks with shared weights of at least 1: the scheduler guarantees both, and a
    /// violation panics.
    fn request(&mut self, id: ReqId, claims: &[ClaimSpec]);
    /// Withdraws a waiting request.
    fn cancel(&mut self, id: ReqId);
    /// Releases a granted request's locks.
    fn release(&mut self, id: ReqId);
    /// Changes a lock's capacity if it exists (a shrink never revokes what is held).
    fn set_capacity(&mut self, lock: LockKey, capacity: u32);
    /// Grants the grantable request with the smallest id, if any.
    fn poll_grant(&mut self) -> Option<ReqId>;
    /// Whether `id` is a request that waits.
    fn is_waiting(&self, id: ReqId) -> bool;
    /// Whether `id` is a request that holds its locks.
    fn is_held(&self, id: ReqId) -> bool;
    /// The capacity of a lock, if it exists.
    fn capacity(&self, lock: LockKey) -> Option<u32>;
    /// The holders of a lock, by id.
    fn holders(&self, lock: LockKey) -> Vec<(ReqId, Mode)>;
    /// The requests in a lock's queue, in order (those that have entered it).
    fn queue(&self, lock: LockKey) -> Vec<(ReqId, Mode)>;
    /// Where a waiting request is stuck, if it waits.
    fn stuck(&self, id: ReqId) -> Option<Stuck>;
    /// Every lock some request holds or waits for, in key order.
    fn locks(&self) -> Vec<LockKey>;
    /// Number of requests (waiting or held).
    fn len(&self) -> usize;
    /// Whether there are no requests.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
