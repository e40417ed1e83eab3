//! cuttle's replicated state.
//!
//! [`sched`] is the scheduling core: a pure, deterministic state machine (lock table, task queue,
//! caps) that every server node applies from the Raft log. The openraft storage and network
//! adapters that wrap it arrive with the cluster; they will live beside it in this crate and the core
//! will not depend on them (see `docs/ARCHITECTURE.md` and `tests/tidy.rs`).

#![warn(missing_docs)]

pub mod sched;
