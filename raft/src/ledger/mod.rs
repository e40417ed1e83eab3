//! The deployment ledger: what the cluster replicates beside the scheduling core — what the
//! agents need to run a task (its scripts and variables) and what they report back (its log). Like
//! the core it is pure and deterministic (no I/O, no clock, no hash-map iteration); the state
//! machine applies [`Request`]s to a [`Replicated`] state, which is the core plus this ledger.
//!
//! The core schedules by names, ids and locks only and stays small and fast; payloads and logs are
//! kept here, keyed by the task id the core assigns, and forgotten when the core forgets the task.

pub mod lifecycle;
pub mod logs;
pub mod model;
pub mod payload;
pub mod releases;
pub mod replicated;
pub mod resolve;
pub mod target_vars;

pub use logs::{LogLine, LogStream, TaskLog, LOG_LINE_BYTES_MAX, TASK_LOG_BYTES_DEFAULT};
pub use payload::{StepPayload, TaskPayload, Variable};
pub use replicated::{Replicated, Request, REPLICATED_MAGIC};
