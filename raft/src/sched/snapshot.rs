//! The snapshot encoding of the whole state: a magic string, a format version, and the state in
//! bincode 2 (standard configuration). A reader refuses a version it does not know instead of
//! misreading it. The body is written by `snapshot_encode.rs` and read by `snapshot_decode.rs`: the
//! same bytes as bincode's serde encoder writes for the state and its decoder reads, faster.

use crate::sched::snapshot_decode::In;
use crate::sched::state::Scheduler;
use crate::sched::table::FifoLockTable;

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"CUTTLESM";
/// The format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u16 = 1;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot.
    #[error("not a cuttle state snapshot: the first bytes are not {SNAPSHOT_MAGIC:?}")]
    BadMagic,
    /// Written by another version.
    #[error("snapshot format version {found} is not supported by this build (it reads version {SNAPSHOT_FORMAT_VERSION}): run a build that supports it")]
    UnsupportedVersion {
        /// The version in the snapshot.
        found: u16,
    },
    /// Damaged.
    #[error("snapshot body does not decode ({0}): the snapshot is damaged or truncated")]
    Decode(String),
    /// Bytes after the state.
    #[error("snapshot has {0} bytes after the state: the snapshot is damaged")]
    TrailingBytes(usize),
    /// Could not encode (only on a bug).
    #[error("snapshot could not be encoded: {0}")]
    Encode(String),
}

impl Scheduler<FifoLockTable> {
    /// Encodes the whole state.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut bytes = Vec::with_capacity(1 << 16);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        self.encode_into(&mut bytes)
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        Ok(bytes)
    }

    /// Decodes a state written by [`Scheduler::snapshot`].
    pub fn restore(bytes: &[u8]) -> Result<Scheduler, SnapshotError> {
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or(SnapshotError::BadMagic)?;
        if body.len() < 2 {
            return Err(SnapshotError::Decode("no format version".into()));
        }
        let found = u16::from_le_bytes([body[0], body[1]]);
        if found != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found });
        }
        let mut input = In::new(&body[2..]);
        let state = input
            .scheduler()
            .map_err(|e| SnapshotError::Decode(e.to_string()))?;
        let read = input.read();
        if read != body.len() - 2 {
            return Err(SnapshotError::TrailingBytes(body.len() - 2 - read));
        }
        Ok(state)
    }
}
