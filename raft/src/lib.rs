//! cuttle's replicated state.
//!
//! [`sched`] is the scheduling core: a pure, deterministic state machine (lock table, task queue,
//! caps) that every server node applies from the Raft log. [`ledger`] keeps beside it what agents
//! run (scripts, variables) and report (task logs). [`cluster`] wraps it for openraft: the
//! log payload, the sled log store and the state machine. The core does not depend on them (see
//! `docs/ARCHITECTURE.md` and `tests/tidy.rs`).

#![warn(missing_docs)]

pub mod cluster;
pub mod ledger;
pub mod sched;
