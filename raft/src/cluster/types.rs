//! The openraft type configuration: what a log entry carries (a [`Batch`] of commands proposed
//! together by the leader) and what applying it returns (one result per command).

use crate::sched::command::{Command, Event, Rejection};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A server node's id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// cuttle's openraft configuration.
    pub TypeConfig:
        D = Batch,
        R = BatchResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Most commands in one log entry.
pub const BATCH_COMMANDS_MAX: usize = 4_096;

/// Commands the leader proposes in one log entry, with the leader's clock when it proposed them.
/// openraft 0.9's leader appends one entry per write, so the node gathers the commands that arrive
/// while the previous write is in flight into one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Milliseconds since the Unix epoch on the proposing leader.
    pub now_ms: u64,
    /// The commands, applied in order.
    pub commands: Vec<Command>,
}

/// One result per command of a [`Batch`]: the events, or why it was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// In the order of the batch's commands.
    pub results: Vec<Result<Vec<Event>, Rejection>>,
}
