//! `cuttle server`: the configuration of a node from a TOML file and flags (flags win), and running
//! it until SIGINT or SIGTERM.

use anyhow::Context as _;
use cuttle_node::NodeConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The flags of `cuttle server`; each overrides the same setting of the file.
#[derive(clap::Args, Debug, Default)]
pub struct ServerArgs {
    /// A TOML file with the same settings (id, listen, data_dir, initial_cluster, heartbeat_interval_ms,
    /// election_timeout_min_ms, election_timeout_max_ms, request_timeout_ms, snapshot_after_entries,
    /// log_entries_kept_after_snapshot).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id (1 or more).
    #[arg(long)]
    pub id: Option<u64>,
    /// Address to listen on and to be reached at, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Directory for the log, the vote and the snapshots.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Members of a new cluster, `1=HOST:PORT,2=HOST:PORT,...`; ignored once the data directory
    /// holds state.
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub initial_cluster: Option<String>,
    /// How often the leader heartbeats.
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Shortest election timeout.
    #[arg(long, value_name = "MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Longest election timeout.
    #[arg(long, value_name = "MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// A client request that cannot be served within this time fails.
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Take a snapshot after this many log entries.
    #[arg(long, value_name = "N")]
    pub snapshot_after_entries: Option<u64>,
    /// Log entries kept behind a snapshot.
    #[arg(long, value_name = "N")]
    pub log_entries_kept_after_snapshot: Option<u64>,
    /// An agent not heard from for this long is declared lost (default 15000).
    #[arg(long, value_name = "MS")]
    pub agent_lease_timeout_ms: Option<u64>,
    /// How often agents heartbeat (default 1000).
    #[arg(long, value_name = "MS")]
    pub agent_heartbeat_interval_ms: Option<u64>,
}

/// Parses `1=HOST:PORT,2=HOST:PORT`.
pub fn parse_members(text: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut members = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("initial cluster member {part:?} is not ID=HOST:PORT (for example 1=127.0.0.1:7101)"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("initial cluster member {part:?}: {id:?} is not a node id"))?;
        if members.insert(id, addr.trim().to_string()).is_some() {
            anyhow::bail!("initial cluster names node {id} twice: give each member once");
        }
    }
    Ok(members)
}

/// The node's configuration: the file's, then the flags over it, validated.
pub fn config(args: &ServerArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            NodeConfig::from_toml(&text, &path.display().to_string())?
        }
        None => NodeConfig::default(),
    };
    if let Some(id) = args.id {
        config.id = id;
    }
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(members) = &args.initial_cluster {
        config.initial_cluster = parse_members(members)?;
    }
    let numbers = [
        (
            args.heartbeat_interval_ms,
            &mut config.heartbeat_interval_ms,
        ),
        (
            args.election_timeout_min_ms,
            &mut config.election_timeout_min_ms,
        ),
        (
            args.election_timeout_max_ms,
            &mut config.election_timeout_max_ms,
        ),
        (args.request_timeout_ms, &mut config.request_timeout_ms),
        (
            args.snapshot_after_entries,
            &mut config.snapshot_after_entries,
        ),
        (
            args.log_entries_kept_after_snapshot,
            &mut config.log_entries_kept_after_snapshot,
        ),
        (
            args.agent_lease_timeout_ms,
            &mut config.agent_lease_timeout_ms,
        ),
        (
            args.agent_heartbeat_interval_ms,
            &mut config.agent_heartbeat_interval_ms,
        ),
    ];
    for (flag, setting) in numbers {
        if let Some(value) = flag {
            *setting = value;
        }
    }
    config.validate()?;
    Ok(config)
}

/// Logs to stderr, filtered by `CUTTLE_LOG` (default `info,openraft=warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUTTLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs a node until SIGINT or SIGTERM.
pub fn run(args: &ServerArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(cuttle_node::server::run(config, shutdown_signal()))?;
    Ok(())
}
