//! The openraft type configuration: what a log entry carries (a [`Batch`] of commands proposed
//! together by the leader) and what applying it returns (one result per command).

use crate::cluster::codec::{self, CodecError};
use crate::ledger::Request;
use crate::sched::command::{Command, Event, Rejection};
use openraft::{Entry, EntryPayload};
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
    /// The requests, applied in order.
    pub commands: Vec<Request>,
}

openraft::declare_raft_types!(
    /// The configuration of store format 1, kept to read the log entries it wrote.
    pub TypeConfigV1:
        D = BatchV1,
        R = BatchResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A batch as store format 1 wrote it: core commands only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchV1 {
    /// Milliseconds since the Unix epoch on the proposing leader.
    pub now_ms: u64,
    /// The commands, applied in order.
    pub commands: Vec<Command>,
}

impl From<BatchV1> for Batch {
    fn from(old: BatchV1) -> Batch {
        Batch {
            now_ms: old.now_ms,
            commands: old.commands.into_iter().map(Request::Core).collect(),
        }
    }
}

/// Decodes a stored log entry written by this build or by an older format.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, CodecError> {
    match codec::version(bytes)? {
        codec::STORE_FORMAT_VERSION => codec::decode_body(bytes),
        1 => {
            let old: Entry<TypeConfigV1> = codec::decode_body(bytes)?;
            let payload = match old.payload {
                EntryPayload::Blank => EntryPayload::Blank,
                EntryPayload::Normal(batch) => EntryPayload::Normal(batch.into()),
                EntryPayload::Membership(m) => EntryPayload::Membership(m),
            };
            Ok(Entry {
                log_id: old.log_id,
                payload,
            })
        }
        found => Err(CodecError::UnsupportedVersion { found }),
    }
}

/// One result per command of a [`Batch`]: the events, or why it was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// In the order of the batch's commands.
    pub results: Vec<Result<Vec<Event>, Rejection>>,
}
