//! The Jepsen-style harness: real server and agent processes, injected faults, a recorded history,
//! and checkers that read only that history.
//!
//! Empty so far: it needs the server and agents, which do not exist yet. Until then the scheduling
//! core's safety is checked by property and differential tests in `raft/tests/`.
