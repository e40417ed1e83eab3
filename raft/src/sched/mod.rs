//! The scheduling core: the deterministic state machine every server node applies from the Raft
//! log. It takes [`Input`]s (a command and the leader's time) and returns [`Event`]s (decisions);
//! it does no I/O, reads no clock, draws no random number and never awaits, so the same log gives
//! byte-identical state on every replica, and a test can drive it with plain function calls.
//!
//! # Map
//! - [`ids`]: identifiers and the symbol table (every name interned once).
//! - [`command`]: the interface: commands, specs, events, rejections, limits.
//! - [`lock`]: the one lock mechanism every rule is built on, and its grant rule.
//! - [`table`]: the incremental lock table; [`reference`]: the from-scratch one it is tested against.
//! - [`state`]: the records and [`Scheduler::apply`]; `tasks`, `units`, `targets`, `client_locks`:
//!   the lifecycles; [`explain`]: why something waits; [`snapshot`]: the versioned encoding.
//!
//! # Every rule is a lock
//! | rule | lock | rank | mode and capacity |
//! |---|---|---|---|
//! | same concurrency tag never together | `Tag(tag)` | 0 | exclusive |
//! | cluster task cap | `TaskCap` | 1 | 1 permit of `task_cap` |
//! | one process per target (bypass: share it) | `Target(t)` | 2 | exclusive, or 1 permit of unbounded |
//! | whole-task hold | `Target(t)` for each target, in the admission | 2 | exclusive |
//! | action / acquire parallelism | `Parallelism(task, stage)` | 3 | 1 permit of the limit |
//! | step locks and client named locks | `Named(name, target?)` | 4 | 1 permit of the capacity |
//! | agent capacity | `AgentCapacity(t)` | 5 | 1 permit of the capacity |
//!
//! A task's admission request claims ranks 0 and 1 (and 2 for a whole-task hold); a unit's request
//! claims ranks 2 to 5; a client's request claims one rank-4 lock. Each request is granted all its
//! claims at once or waits holding nothing. The grant rule is in [`lock`].
//!
//! # Why nothing deadlocks
//! Holders are of three kinds. A unit holds its locks until its agent reports the end or is declared
//! lost, which happens without the unit waiting for anything in the table (scripts end, time out,
//! or their agent's lease runs out). A client holds a named lock until it releases it or its lease
//! runs out. A task holds its admission (tag, cap slot, held targets) until its units have ended, so
//! a task waits for its own unit requests; that is the only way a holder waits for a request.
//!
//! Give every waiting request its *stuck rank*: the rank of the lowest claim it is not admissible
//! on. A request stuck at rank `r` is in queues of rank `<= r` only. It waits for (a) holders of
//! the lock it is stuck on and (b) requests ahead of it in that lock's queue, which have entered that
//! queue and so are stuck at a rank `>= r`. Follow any chain of waits: through (b) the stuck rank
//! never falls; through (a) to a task, the task waits for its units, which are stuck at rank `>= 2`,
//! while the task was waited for at rank 0 or 1 (tag, cap) or rank 2 (a held target, and the units
//! of a whole-task hold claim no rank-2 lock, so they are stuck at rank `>= 3`). So along a cycle the
//! stuck rank never falls and rises at every step through a task: a cycle has only (b) steps at one
//! rank. But (b) steps go to strictly smaller request ids, because every request's claims of one
//! rank share its one id: no cycle. The oldest request at the highest stuck rank waits only for
//! holders that end by themselves, so it is granted once they do, and by induction every request is.
//!
//! # Why nothing starves
//! A request is overtaken on a lock only by requests that fit beside it and everything ahead of it
//! (every entry reserves its share), so once it has entered a queue, later requests never delay
//! it there. It can leave a higher queue only when something ahead of it on a lower rank changes:
//! an older request entering ahead (finitely many are older) or a capacity shrinking (an operator's
//! act). Between such events it moves forward as holders end. So every queued task is admitted and
//! every unit dispatched, provided units end and clients release.
//!
//! Two consequences worth knowing: a task waiting for its concurrency tag does not reserve a slot
//! under the cap (it could not use one), so tasks with free tags run meanwhile; and a unit waiting
//! for a target another task holds whole does not reserve the step lock or agent slot that the
//! holding task's units need.

pub mod client_locks;
pub mod command;
mod dense;
pub mod explain;
pub mod ids;
pub mod lock;
mod names;
mod plans;
mod processes;
#[cfg(test)]
mod random_state;
pub mod reference;
pub mod snapshot;
mod snapshot_decode;
mod snapshot_encode;
pub mod state;
pub mod table;
mod table_audit;
mod table_candidates;
mod table_decode;
mod table_serde;
mod table_store;
mod targets;
mod tasks;
mod units;
mod validate;
pub mod vars;
mod wire;

pub use command::*;
pub use explain::{Holder, Wait};
pub use ids::{FencingToken, ReqId, Sym, TargetId, TaskId, UnitId};
pub use lock::{ClaimSpec, LockKey, LockTable, Mode, Stuck};
pub use reference::ReferenceLockTable;
pub use state::{Owner, Phase, Scheduler, Task, Unit, UnitState};
pub use table::FifoLockTable;
pub use validate::default_tag;
