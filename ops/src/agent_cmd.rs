//! `cuttle agent` (run a target agent, list agents) and `cuttle lock run`: argument parsing into
//! the library's configuration, and the human and JSON views.

use crate::cluster::Endpoints;
use crate::lock_run::{self, LockRun};
use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::time::Duration;

/// `cuttle agent --name ... --endpoints ... --env ... --role ... --work-dir ...`.
#[derive(clap::Args, Debug, Default)]
pub struct AgentArgs {
    /// The target's name, unique in the cluster.
    #[arg(long)]
    pub name: Option<String>,
    /// Server nodes to dial, HOST:PORT,...; any of them will do.
    #[arg(
        long,
        env = "CUTTLE_ENDPOINTS",
        value_delimiter = ',',
        value_name = "HOST:PORT,..."
    )]
    pub endpoints: Vec<String>,
    /// An environment the target belongs to (repeat for several).
    #[arg(long = "env", value_name = "ENV")]
    pub environments: Vec<String>,
    /// A role the target has (repeat for several).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// A tenant the target serves (repeat for several).
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// Where units get their working directories, and where the journal is kept.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Units run at once.
    #[arg(long, default_value_t = 1)]
    pub max_concurrency: u32,
    /// The shell scripts run under (`SHELL -c SCRIPT`).
    #[arg(long, default_value = "bash")]
    pub shell: String,
    /// After SIGTERM, how long a cancelled script has before SIGKILL, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub cancel_grace_ms: u64,
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(args: &AgentArgs) -> anyhow::Result<()> {
    let (Some(name), Some(work_dir)) = (args.name.clone(), args.work_dir.clone()) else {
        bail!("cuttle agent needs --name NAME and --work-dir DIR (and --endpoints, --env, --role); or use `cuttle agent list`");
    };
    let config = cuttle_node::agent::AgentConfig {
        name,
        endpoints: args.endpoints.clone(),
        environments: args.environments.clone(),
        roles: args.roles.clone(),
        tenants: args.tenants.clone(),
        journal_path: None,
        work_dir,
        max_concurrency: args.max_concurrency,
        shell: args.shell.clone(),
        cancel_grace_ms: args.cancel_grace_ms,
    };
    config.validate()?;
    crate::server::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        cuttle_node::agent::run(config, crate::server::shutdown_signal()).await?;
        Ok(())
    })
}

/// `cuttle agent list`.
pub async fn list(endpoints: &Endpoints, json: bool) -> anyhow::Result<()> {
    let agents = endpoints
        .client()?
        .read("agents")
        .await
        .context("cannot list the agents")?;
    if json {
        println!("{agents}");
        return Ok(());
    }
    let join = |v: &serde_json::Value| -> String {
        let items: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        if items.is_empty() {
            "-".into()
        } else {
            items.join(",")
        }
    };
    println!(
        "{:<16} {:<16} {:<12} {:<12} {:<9} {:<6} RUNNING",
        "NAME", "ENVIRONMENTS", "ROLES", "TENANTS", "CONNECTED", "ONLINE"
    );
    for a in agents.as_array().into_iter().flatten() {
        let running: Vec<String> = a["running"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| format!("task {} unit {}", u["task"], u["unit"]))
            .collect();
        println!(
            "{:<16} {:<16} {:<12} {:<12} {:<9} {:<6} {}",
            a["name"].as_str().unwrap_or(""),
            join(&a["environments"]),
            join(&a["roles"]),
            join(&a["tenants"]),
            if a["connected"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            if a["online"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            if running.is_empty() {
                "-".into()
            } else {
                running.join(", ")
            }
        );
    }
    Ok(())
}

/// `cuttle lock run NAME [--capacity N] [--scope target|cluster] [--ttl 30s] -- COMMAND...`.
#[derive(clap::Args, Debug)]
pub struct LockRunArgs {
    /// The lock's name. Step locks with the same name and scope are the same lock.
    pub name: String,
    /// How many may hold it at once (must match the lock's other users).
    #[arg(long, default_value_t = 1)]
    pub capacity: u32,
    /// One lock per target (`target`), or one for the cluster (`cluster`).
    #[arg(long, default_value = "cluster", value_parser = ["target", "cluster"])]
    pub scope: String,
    /// The target of a target-scoped lock; inside a unit it defaults to the unit's own target
    /// (CUTTLE_TARGET).
    #[arg(long, env = "CUTTLE_TARGET")]
    pub target: Option<String>,
    /// The lease: if the cluster hears nothing for this long the lock is released and the command
    /// stopped. Units: ms, s, m (`30s`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Who holds it, shown in `cuttle locks` (default: user@host:pid).
    #[arg(long)]
    pub holder: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Parses `250ms`, `30s`, `5m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use 250ms, 30s or 5m"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        _ => return Err(format!("{text:?} has unit {unit:?}: use ms, s or m")),
    };
    if ms == 0 {
        return Err("a lease of 0 would expire at once: give at least 1ms".into());
    }
    Ok(Duration::from_millis(ms))
}

/// Runs `cuttle lock run`; returns the command's exit code.
pub async fn lock_run(args: &LockRunArgs, endpoints: &Endpoints) -> anyhow::Result<i32> {
    let target = match args.scope.as_str() {
        "target" => Some(args.target.clone().context(
            "--scope target needs --target NAME (inside a unit, CUTTLE_TARGET is used)",
        )?),
        _ => None,
    };
    let holder = args.holder.clone().unwrap_or_else(|| {
        format!(
            "{}@{}:{}",
            std::env::var("USER").unwrap_or_else(|_| "user".into()),
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into()),
            std::process::id()
        )
    });
    let run = LockRun {
        name: args.name.clone(),
        capacity: args.capacity,
        target,
        ttl: args.ttl,
        holder,
        command: args.command.clone(),
        stop_grace: Duration::from_secs(5),
    };
    lock_run::run(&endpoints.client()?, &run).await
}
