//! The scheduling core made durable and replicated: the openraft type configuration, the log
//! payload (a batch of commands), the sled-backed log store and the state machine that applies the
//! log to [`crate::sched::Scheduler`].
//!
//! Everything with I/O lives here, around the pure core: sled for the Raft log, the vote and the
//! snapshots; tokio for the blocking flushes. The network adapter lives in `cuttle-node`, which
//! owns the gRPC wire.
//!
//! # Durability
//! Nothing is acknowledged before it is durable. sled's `flush` writes and waits for the pages but
//! does not `fdatasync` (see `shared/notes/dependencies.md`), so after each flush the store also
//! calls `sync_data` on sled's data file. The log callback, `save_vote` and snapshot writes return
//! only after both.

// openraft's StorageError is the error type its storage traits prescribe; boxing it would only
// move the allocation.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod log_store;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use state_machine::StateMachine;
pub use types::{Batch, BatchResult, NodeId, TypeConfig};
