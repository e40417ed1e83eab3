//! Errors of the server node, each saying what happened and what to do.

/// Why a node could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is not valid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be used.
    #[error("data directory {dir}: {reason}")]
    DataDir {
        /// The directory.
        dir: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// openraft refused to start.
    #[error("raft could not start: {0}")]
    Raft(String),
}
