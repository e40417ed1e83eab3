//! The server's configuration: one struct, read from a TOML file and command-line flags (flags win),
//! and validated as a whole at start-up.

use crate::error::NodeError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything a server node needs to start. Times are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's id (at least 1).
    pub id: u64,
    /// Address to listen on, `HOST:PORT`; also the address other nodes and clients use.
    pub listen: String,
    /// Where the log, the vote and the snapshots live.
    pub data_dir: PathBuf,
    /// The members of a new cluster, id to address. Used only while the data directory is empty.
    pub initial_cluster: BTreeMap<u64, String>,
    /// How often the leader heartbeats; also openraft's hard timeout for one replication RPC.
    pub heartbeat_interval_ms: u64,
    /// Shortest time without a leader before a follower campaigns.
    pub election_timeout_min_ms: u64,
    /// Longest time without a leader before a follower campaigns.
    pub election_timeout_max_ms: u64,
    /// A client request that cannot be served within this time fails (for example without a quorum).
    pub request_timeout_ms: u64,
    /// Take a snapshot after this many log entries since the last one.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind a snapshot, for followers that lag a little.
    pub log_entries_kept_after_snapshot: u64,
    /// An agent not heard from for this long is declared lost: its units fail and their locks are
    /// released. Agents stop their own units a safety margin (a quarter of it) earlier.
    pub agent_lease_timeout_ms: u64,
    /// How often agents heartbeat.
    pub agent_heartbeat_interval_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            id: 0,
            listen: String::new(),
            data_dir: PathBuf::new(),
            initial_cluster: BTreeMap::new(),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            request_timeout_ms: 5_000,
            snapshot_after_entries: 10_000,
            log_entries_kept_after_snapshot: 1_000,
            agent_lease_timeout_ms: 15_000,
            agent_heartbeat_interval_ms: 1_000,
        }
    }
}

impl NodeConfig {
    /// Reads a TOML configuration file; fields it leaves out keep their defaults.
    pub fn from_toml(text: &str, file: &str) -> Result<NodeConfig, NodeError> {
        toml::from_str(text).map_err(|e| NodeError::Config(format!("{file}: {e}")))
    }

    /// Checks the configuration as a whole; every problem names the field and what would be valid.
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |message: String| Err(NodeError::Config(message));
        if self.id == 0 {
            return bad("id is missing or 0: give this node an id of 1 or more (--id N)".into());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(format!(
                "listen = {:?} is not HOST:PORT with an IP address, such as 127.0.0.1:7101",
                self.listen
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad(
                "data_dir is missing: give a directory for the log and snapshots (--data-dir DIR)"
                    .into(),
            );
        }
        for (id, addr) in &self.initial_cluster {
            if *id == 0 {
                return bad("initial_cluster has id 0: member ids start at 1".into());
            }
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!(
                    "initial_cluster member {id} = {addr:?} is not HOST:PORT with an IP address"
                ));
            }
        }
        if !self.initial_cluster.is_empty() && !self.initial_cluster.contains_key(&self.id) {
            return bad(format!(
                "initial_cluster does not list this node's id {}: list every member, this one included",
                self.id
            ));
        }
        if self.heartbeat_interval_ms < 10 {
            return bad(format!(
                "heartbeat_interval_ms = {} is too short: use 10 or more",
                self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_min_ms < 2 * self.heartbeat_interval_ms {
            return bad(format!(
                "election_timeout_min_ms = {} is shorter than two heartbeats ({} ms): followers would campaign while the leader is healthy",
                self.election_timeout_min_ms,
                2 * self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return bad(format!(
                "election_timeout_max_ms = {} must be larger than election_timeout_min_ms = {}",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        if self.request_timeout_ms < self.election_timeout_max_ms {
            return bad(format!(
                "request_timeout_ms = {} is shorter than an election ({} ms): requests would fail during every failover",
                self.request_timeout_ms, self.election_timeout_max_ms
            ));
        }
        if self.snapshot_after_entries == 0 {
            return bad("snapshot_after_entries is 0: use 1 or more".into());
        }
        if self.agent_heartbeat_interval_ms < 10 {
            return bad(format!(
                "agent_heartbeat_interval_ms = {} is too short: use 10 or more",
                self.agent_heartbeat_interval_ms
            ));
        }
        if self.agent_lease_timeout_ms < 4 * self.agent_heartbeat_interval_ms {
            return bad(format!(
                "agent_lease_timeout_ms = {} is shorter than four agent heartbeats ({} ms each): one late heartbeat would stop an agent's units; use at least {}",
                self.agent_lease_timeout_ms,
                self.agent_heartbeat_interval_ms,
                4 * self.agent_heartbeat_interval_ms
            ));
        }
        if self.agent_lease_timeout_ms < 2 * self.election_timeout_max_ms {
            return bad(format!(
                "agent_lease_timeout_ms = {} is shorter than two elections ({} ms): every failover would declare agents lost; use at least {}",
                self.agent_lease_timeout_ms,
                self.election_timeout_max_ms,
                2 * self.election_timeout_max_ms
            ));
        }
        Ok(())
    }

    /// openraft's configuration derived from this one.
    pub fn raft_config(&self) -> Result<openraft::Config, NodeError> {
        let config = openraft::Config {
            cluster_name: "cuttle".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.heartbeat_interval_ms.max(1_000),
            max_payload_entries: 300,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.log_entries_kept_after_snapshot,
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> NodeConfig {
        NodeConfig {
            id: 1,
            listen: "127.0.0.1:7101".into(),
            data_dir: "/tmp/x".into(),
            initial_cluster: [(1, "127.0.0.1:7101".to_string())].into(),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn a_good_config_passes() {
        good().validate().unwrap();
        good().raft_config().unwrap();
    }

    #[test]
    fn nonsense_is_refused_with_what_would_be_right() {
        let cases: Vec<(NodeConfig, &str)> = vec![
            (NodeConfig { id: 0, ..good() }, "invalid configuration: id is missing or 0: give this node an id of 1 or more (--id N)"),
            (NodeConfig { election_timeout_min_ms: 150, ..good() }, "invalid configuration: election_timeout_min_ms = 150 is shorter than two heartbeats (200 ms): followers would campaign while the leader is healthy"),
            (NodeConfig { election_timeout_max_ms: 400, ..good() }, "invalid configuration: election_timeout_max_ms = 400 must be larger than election_timeout_min_ms = 400"),
            (NodeConfig { listen: "localhost".into(), ..good() }, "invalid configuration: listen = \"localhost\" is not HOST:PORT with an IP address, such as 127.0.0.1:7101"),
            (NodeConfig { initial_cluster: [(2, "127.0.0.1:1".to_string())].into(), ..good() }, "invalid configuration: initial_cluster does not list this node's id 1: list every member, this one included"),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn toml_with_an_unknown_field_is_refused() {
        let err = NodeConfig::from_toml("id = 1\nlisten_addr = \"x\"\n", "node.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "invalid configuration: node.toml: TOML parse error at line 2, column 1"
            ),
            "{err}"
        );
        assert!(err.contains("unknown field `listen_addr`"), "{err}");
    }
}
