//! Encodings of everything this crate writes to disk: a two-byte format version, then bincode 2
//! (standard configuration). A reader refuses a version it does not know rather than misreading
//! it; a later format adds a decoder for the old version beside the new one.

use serde::{de::DeserializeOwned, Serialize};

/// The format of log entries, votes and snapshot metadata written by this build.
///
/// - 1: a log entry's batch holds core commands only.
/// - 2: a log entry's batch holds [`crate::ledger::Request`]s (core commands, deployments with
///   their payload, task log batches). Every other value encodes as in format 1.
pub const STORE_FORMAT_VERSION: u16 = 2;
/// The oldest format this build reads from disk.
pub const STORE_FORMAT_VERSION_OLDEST: u16 = 1;

/// A value that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Written by another version.
    #[error("stored format version {found} is not supported by this build (it reads version {STORE_FORMAT_VERSION}): upgrade this node")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// Damaged bytes.
    #[error("stored value does not decode ({0}): the data directory is damaged")]
    Decode(String),
    /// Could not encode (only on a bug).
    #[error("value could not be encoded: {0}")]
    Encode(String),
}

/// Encodes `value` with the format version in front.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut bytes = STORE_FORMAT_VERSION.to_le_bytes().to_vec();
    bincode::serde::encode_into_std_write(value, &mut bytes, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(bytes)
}

/// The format version in front of `bytes`.
pub fn version(bytes: &[u8]) -> Result<u16, CodecError> {
    if bytes.len() < 2 {
        return Err(CodecError::Decode("shorter than its format version".into()));
    }
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// Decodes what [`encode`] of this build wrote (messages between nodes: both ends must speak the
/// same format).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let found = version(bytes)?;
    if found != STORE_FORMAT_VERSION {
        return Err(CodecError::UnsupportedVersion { found });
    }
    decode_body(bytes)
}

/// Decodes a stored value whose encoding no format version has changed (votes, the committed
/// index, snapshot metadata), written by this build or an older one. Log entries changed: read
/// them with [`crate::cluster::types::decode_entry`].
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let found = version(bytes)?;
    if !(STORE_FORMAT_VERSION_OLDEST..=STORE_FORMAT_VERSION).contains(&found) {
        return Err(CodecError::UnsupportedVersion { found });
    }
    decode_body(bytes)
}

/// Decodes the bincode body after the version.
pub(crate) fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(&bytes[2..], bincode::config::standard())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != bytes.len() - 2 {
        return Err(CodecError::Decode(format!(
            "{} bytes after the value",
            bytes.len() - 2 - read
        )));
    }
    Ok(value)
}
