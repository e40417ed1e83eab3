//! The cuttle server node and target agent: gRPC services, the leader's dispatcher, agent sessions.
//!
//! Empty so far: the scheduling core they will wrap lives in `cuttle-raft::sched`; the server and
//! the agent arrive with the replicated cluster and the agent protocol.
