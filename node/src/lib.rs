//! The cuttle server node: it opens the replicated state (`cuttle-raft`), runs openraft over the
//! gRPC wire (`cuttle-proto`), and serves the client API. Any node accepts any request: writes and
//! linearizable reads go to the leader, forwarded when needed.
//!
//! # Map
//! - [`config`]: the one configuration struct, validated at start-up.
//! - [`network`]: openraft's network over gRPC (client side); [`raft_service`]: its server side.
//! - [`proposer`]: gathers the writes that arrive while one is in flight into one log entry.
//! - [`cluster_service`]: the client API (writes, reads, status, membership).
//! - [`peers`]: who answers: the probe behind member health and the no-quorum error.
//! - [`server`]: start-up: storage, openraft, bootstrap, the gRPC server.
//! - [`sessions`]: the leader's attached agents and their leases; [`dispatcher`]: units and cancels
//!   routed to agents, leases expired, leadership confirmed for heartbeat acknowledgements;
//!   [`agent_service`]: the agents' stream (served on the leader, relayed by followers).
//! - [`lock_service`]: named locks for any program (acquire, wait, keep alive, release).
//! - [`views`]: the JSON documents of reads (agents, a task with its units, a task's log).
//! - [`client`]: a client of the cluster API that fails over between endpoints.
//! - [`agent`]: the target agent: attaches to any node, runs the units it is sent behind a local
//!   fencing guard and journal, and stops them itself when it loses the leader.

pub mod agent;
pub mod agent_service;
pub mod client;
pub mod cluster_service;
pub mod config;
pub mod dispatcher;
pub mod error;
pub mod lock_service;
pub mod network;
pub mod peers;
pub mod proposer;
pub mod raft_service;
pub mod server;
pub mod sessions;
pub mod views;

pub use config::NodeConfig;
pub use error::NodeError;
