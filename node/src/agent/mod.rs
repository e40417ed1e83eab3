//! The target agent: the process on a deployment target that dials out to the cluster, holds one
//! `Attach` stream (`proto/cuttle/v1/agent.proto`), and runs the units the leader sends it.
//!
//! It owns the agent's configuration ([`AgentConfig`]) and its entry point ([`run`]).
//!
//! # Map
//! - [`fence`]: the fencing guard, pure: stale tokens, exclusivity and capacity, checked locally.
//! - [`journal`]: the local journal (JSON lines; a start is fsynced before its process is spawned) and its replay.
//! - [`script`]: what a script sees: its folder, `#{Name}` substitution, environment, masking.
//! - [`runner`]: runs one unit: its process group, its output in batches, stopping it.
//! - [`process`]: process groups: signalling them, recognising a crashed agent's leftovers.
//! - [`lease`]: the agent's side of its lease, pure: when it must fence itself.
//! - [`outbox`]: reports numbered, resent until acknowledged, bounded, pure.
//! - [`connect`]: opening `Attach` on one server node; the backoff between attempts.
//! - [`session`]: the connection loop that ties them together.
//!
//! # Guarantees
//!
//! - A unit starts only after its start is durable in the journal, while the agent's lease is
//!   valid, and if the fencing guard admits it.
//! - An agent that lost contact with the leader stops its units before the leader can declare it
//!   lost (see [`lease`]); a killed agent takes its scripts down (`PR_SET_PDEATHSIG`), and a
//!   restarted one kills what is left of them and reports them ended.
//! - Every report reaches the cluster at least once; the cluster records each once.

pub mod connect;
pub mod fence;
pub mod journal;
pub mod lease;
pub mod outbox;
pub mod process;
pub mod runner;
pub mod script;
pub mod session;

use serde::Deserialize;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything an agent needs to start. Times are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The target's name, as deployments refer to it.
    pub name: String,
    /// Server nodes, `HOST:PORT` each; any of them serves the agent.
    pub endpoints: Vec<String>,
    /// The environments the target belongs to.
    pub environments: Vec<String>,
    /// The target's roles.
    pub roles: Vec<String>,
    /// The tenants the target serves (none: it serves untenanted deployments only).
    pub tenants: Vec<String>,
    /// The units' working folders live under `<work_dir>/units`; the journal too by default.
    pub work_dir: PathBuf,
    /// Units run at once at most (the target's agent capacity).
    pub max_concurrency: u32,
    /// The shell that runs scripts as `<shell> -c <script>`.
    pub shell: String,
    /// After SIGTERM, a stopped unit's process group gets SIGKILL after this long.
    pub cancel_grace_ms: u64,
    /// The journal; `<work_dir>/journal.jsonl` when not given.
    pub journal_path: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            name: String::new(),
            endpoints: Vec::new(),
            environments: Vec::new(),
            roles: Vec::new(),
            tenants: Vec::new(),
            work_dir: PathBuf::new(),
            max_concurrency: 1,
            shell: "bash".to_string(),
            cancel_grace_ms: 10_000,
            journal_path: None,
        }
    }
}

/// What is wrong with an [`AgentConfig`], and what would be right.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("name is empty: give the target's name, as deployments refer to it (--name web01)")]
    NameEmpty,
    #[error("no endpoints: give at least one server node as HOST:PORT (--endpoints 10.0.0.1:7101,10.0.0.2:7101 or CUTTLE_ENDPOINTS)")]
    NoEndpoints,
    #[error("endpoint {0:?} is not HOST:PORT: write it like 10.0.0.1:7101 or cuttle1.example.com:7101, without a scheme")]
    BadEndpoint(String),
    #[error("no environments: give at least one environment this target belongs to (--environment Production)")]
    NoEnvironments,
    #[error(
        "no roles: give at least one role, or no step will ever run on this target (--role web)"
    )]
    NoRoles,
    #[error("{field} has an empty entry (number {number}): remove it or give a name")]
    EmptyEntry { field: &'static str, number: usize },
    #[error("max_concurrency is 0: give 1 (one unit at a time, the default) or more")]
    NoConcurrency,
    #[error("work_dir is missing: give a directory for the journal and the units' working folders (--work-dir DIR)")]
    NoWorkDir,
    #[error("shell is empty: give the program that runs scripts as SHELL -c SCRIPT, such as bash")]
    NoShell,
}

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("agent configuration file {file}: {reason}")]
    ConfigFile { file: String, reason: String },
    #[error("work directory {dir}: {reason}")]
    WorkDir { dir: PathBuf, reason: String },
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

impl AgentConfig {
    /// Reads a TOML configuration; fields it leaves out keep their defaults.
    pub fn from_toml(text: &str, file: &str) -> Result<AgentConfig, AgentError> {
        toml::from_str(text).map_err(|e| AgentError::ConfigFile {
            file: file.to_string(),
            reason: e.to_string(),
        })
    }

    /// Checks the configuration as a whole; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::NameEmpty);
        }
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        if let Some(bad) = self.endpoints.iter().find(|e| !is_host_port(e)) {
            return Err(ConfigError::BadEndpoint(bad.clone()));
        }
        if self.environments.is_empty() {
            return Err(ConfigError::NoEnvironments);
        }
        if self.roles.is_empty() {
            return Err(ConfigError::NoRoles);
        }
        let lists = [
            ("environments", &self.environments),
            ("roles", &self.roles),
            ("tenants", &self.tenants),
        ];
        for (field, list) in lists {
            if let Some(index) = list.iter().position(|entry| entry.trim().is_empty()) {
                return Err(ConfigError::EmptyEntry {
                    field,
                    number: index + 1,
                });
            }
        }
        if self.max_concurrency == 0 {
            return Err(ConfigError::NoConcurrency);
        }
        if self.work_dir.as_os_str().is_empty() {
            return Err(ConfigError::NoWorkDir);
        }
        if self.shell.trim().is_empty() {
            return Err(ConfigError::NoShell);
        }
        Ok(())
    }

    /// The journal's file.
    pub fn journal_file(&self) -> PathBuf {
        self.journal_path
            .clone()
            .unwrap_or_else(|| self.work_dir.join("journal.jsonl"))
    }

    /// What the runner needs.
    pub fn runner_config(&self) -> runner::RunnerConfig {
        runner::RunnerConfig {
            agent_name: self.name.clone(),
            endpoints: self.endpoints.clone(),
            work_dir: self.work_dir.clone(),
            shell: self.shell.clone(),
            cancel_grace_ms: self.cancel_grace_ms,
        }
    }
}

/// `HOST:PORT` with a non-empty host (a name, an IPv4 address or a bracketed IPv6 address) and a
/// port from 1 to 65535.
fn is_host_port(endpoint: &str) -> bool {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && !host.contains(['/', '@', ' ', '\t'])
        && (host.starts_with('[') == host.ends_with(']'))
        && (host.starts_with('[') || !host.contains(':'));
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// The agent's clocks: monotonic time for leases and timers, wall time for stamps. The edge a
/// simulator replaces (with tokio's paused time for the monotonic side).
pub trait Clock: Send + Sync {
    fn now(&self) -> tokio::time::Instant;
    /// Milliseconds since the Unix epoch.
    fn wall_ms(&self) -> u64;
}

/// The real clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    fn wall_ms(&self) -> u64 {
        wall_ms()
    }
}

/// Milliseconds since the Unix epoch on this machine (0 if the clock is before it).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the agent until `shutdown` completes: it then stops running units as a cancel would
/// (SIGTERM, SIGKILL after `cancel_grace_ms`), journals their ends, gives the cluster a moment to
/// acknowledge the last reports, and returns. Errors are start-up errors (configuration, work
/// directory, journal); losing the cluster is not an error, the agent keeps trying.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config.validate()?;
    let launcher = Arc::new(runner::ProcessLauncher::new(config.runner_config()));
    run_with(config, launcher, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with its edges given: what starts units and what tells the time.
pub async fn run_with(
    config: AgentConfig,
    launcher: Arc<dyn runner::Launcher>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config.validate()?;
    std::fs::create_dir_all(&config.work_dir).map_err(|e| AgentError::WorkDir {
        dir: config.work_dir.clone(),
        reason: format!("cannot create it: {e}"),
    })?;
    let mut fence = fence::Fence::new(config.max_concurrency);
    let (journal, replay) =
        journal::Journal::open(&config.journal_file(), &mut fence, clock.wall_ms())?;
    tracing::info!(
        name = %config.name,
        journal = %journal.path().display(),
        interrupted = replay.interrupted.len(),
        groups_killed = replay.groups_killed.len(),
        "agent starting"
    );
    let journal = journal::JournalHandle::new(journal);
    let (agent, events_rx) = session::Agent::new(config, fence, journal, replay, launcher, clock);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = agent.run(events_rx, stop_rx);
    tokio::pin!(agent);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut agent => return result,
        _ = &mut shutdown => {
            let _ = stop_tx.send(true);
        }
    }
    agent.await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AgentConfig {
        AgentConfig {
            name: "web01".into(),
            endpoints: vec![
                "127.0.0.1:7101".into(),
                "cuttle2.example.com:7101".into(),
                "[::1]:7101".into(),
            ],
            environments: vec!["Production".into()],
            roles: vec!["web".into()],
            work_dir: "/var/lib/cuttle-agent".into(),
            ..AgentConfig::default()
        }
    }

    #[test]
    fn defaults_are_those_documented() {
        let config = AgentConfig::default();
        assert_eq!(config.max_concurrency, 1);
        assert_eq!(config.shell, "bash");
        assert_eq!(config.cancel_grace_ms, 10_000);
        assert_eq!(
            valid().journal_file(),
            PathBuf::from("/var/lib/cuttle-agent/journal.jsonl")
        );
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn each_mistake_is_named_with_what_would_be_right() {
        type Mistake = fn(&mut AgentConfig);
        let cases: Vec<(Mistake, ConfigError)> = vec![
            (|c| c.name = " ".into(), ConfigError::NameEmpty),
            (|c| c.endpoints.clear(), ConfigError::NoEndpoints),
            (
                |c| c.endpoints.push("http://a:1".into()),
                ConfigError::BadEndpoint("http://a:1".into()),
            ),
            (
                |c| c.endpoints.push("a".into()),
                ConfigError::BadEndpoint("a".into()),
            ),
            (
                |c| c.endpoints.push("a:0".into()),
                ConfigError::BadEndpoint("a:0".into()),
            ),
            (
                |c| c.endpoints.push("::1:7".into()),
                ConfigError::BadEndpoint("::1:7".into()),
            ),
            (|c| c.environments.clear(), ConfigError::NoEnvironments),
            (|c| c.roles.clear(), ConfigError::NoRoles),
            (
                |c| c.tenants = vec!["a".into(), "".into()],
                ConfigError::EmptyEntry {
                    field: "tenants",
                    number: 2,
                },
            ),
            (|c| c.max_concurrency = 0, ConfigError::NoConcurrency),
            (|c| c.work_dir = PathBuf::new(), ConfigError::NoWorkDir),
            (|c| c.shell = String::new(), ConfigError::NoShell),
        ];
        for (mistake, expected) in cases {
            let mut config = valid();
            mistake(&mut config);
            assert_eq!(config.validate(), Err(expected));
        }
        let message = ConfigError::NoConcurrency.to_string();
        assert!(message.contains("max_concurrency is 0") && message.contains("give 1"));
    }

    #[test]
    fn a_toml_file_fills_the_config_and_unknown_keys_are_refused() {
        let text = "name = \"web01\"\nendpoints = [\"127.0.0.1:7101\"]\nenvironments = [\"Production\"]\nroles = [\"web\"]\nwork_dir = \"/tmp/a\"\nmax_concurrency = 3\n";
        let config = AgentConfig::from_toml(text, "agent.toml").unwrap();
        assert_eq!(config.max_concurrency, 3);
        assert_eq!(config.shell, "bash");
        let error = AgentConfig::from_toml("nmae = \"x\"", "agent.toml").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("agent configuration file agent.toml:"),
            "{error}"
        );
    }
}
