//! cuttle's wire formats: the `.proto` files and their generated code for every wire (node to
//! node, client to cluster, agent to cluster).
//!
//! Empty so far: the scheduling core (in `cuttle-raft`) has no wire yet. The protocol buffers arrive
//! with the replicated cluster, compiled with a vendored `protoc` so that a build needs only the
//! Rust toolchain.
