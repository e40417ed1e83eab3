//! `cuttle dev`: a first look without set-up. It starts a three-node cluster and a handful of
//! agents as child processes of this one, under one data directory; writes the endpoints where
//! every other command finds them; applies the demo spec and replays the seeds' scenarios
//! ([`demo`]); prints what ran in parallel, what waited and why ([`account`]); and keeps the
//! cluster up until Ctrl-C, when it stops every child it started (agents first).
//!
//! Each run starts from an empty cluster: the data directory is cleared of what an earlier run
//! left (only a directory this command made, recognised by its marker file, is ever cleared).

pub mod account;
pub mod demo;

use crate::cluster::dev_endpoint_files;
use anyhow::Context as _;
use cuttle_node::client::Client;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The data directory when --data-dir is not given, under the current directory.
pub const DATA_DIR_DEFAULT: &str = ".cuttle-dev";
/// Marks a directory as made by `cuttle dev`, so that a later run may clear it.
const MARKER: &str = "CUTTLE-DEV";
/// How long the cluster and agents may take to come up.
const START_TIMEOUT_MS: u64 = 30_000;
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE_MS: u64 = 5_000;

/// The flags of `cuttle dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Where the nodes, agents and logs live; cleared at start when an earlier `cuttle dev` made it.
    #[arg(long, value_name = "DIR", default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
    /// Start the cluster and agents only: apply nothing, run nothing.
    #[arg(long)]
    pub no_demo: bool,
    /// Stop everything and exit once the demo's account is printed (exit status 0 only if every
    /// demo deployment succeeded), instead of running until Ctrl-C.
    #[arg(long)]
    pub exit_after_demo: bool,
}

/// One agent the dev cluster runs: a target of the demo.
pub struct AgentDef {
    /// Target name.
    pub name: &'static str,
    /// Its environment.
    pub environment: &'static str,
    /// Its role.
    pub role: &'static str,
    /// Its tenants.
    pub tenants: &'static [&'static str],
    /// Units at once.
    pub max_concurrency: u32,
}

/// The demo's targets (see ops/demo/dev-spec.toml).
pub const AGENTS: &[AgentDef] = &[
    AgentDef {
        name: "web01",
        environment: "Production",
        role: "mutex-demo",
        tenants: &[],
        max_concurrency: 5,
    },
    AgentDef {
        name: "server1",
        environment: "Production",
        role: "app",
        tenants: &["T1", "T2", "T3", "T4", "T5"],
        max_concurrency: 10,
    },
    AgentDef {
        name: "qa-1",
        environment: "QA",
        role: "shop",
        tenants: &[],
        max_concurrency: 2,
    },
    AgentDef {
        name: "staging-1",
        environment: "Staging",
        role: "shop",
        tenants: &[],
        max_concurrency: 2,
    },
    AgentDef {
        name: "staging-2",
        environment: "Staging",
        role: "shop",
        tenants: &[],
        max_concurrency: 2,
    },
    AgentDef {
        name: "prod-1",
        environment: "Production",
        role: "shop",
        tenants: &[],
        max_concurrency: 2,
    },
];

/// A child process this command started.
struct Process {
    what: String,
    child: Child,
}

/// Every child, stopped (agents first) when dropped, so an error or a panic leaves none behind.
struct Children {
    agents: Vec<Process>,
    servers: Vec<Process>,
}

impl Children {
    fn pids(&self) -> Vec<u32> {
        self.agents
            .iter()
            .chain(&self.servers)
            .map(|p| p.child.id())
            .collect()
    }

    /// SIGTERM to each, then SIGKILL to those still running after the grace.
    fn stop(&mut self) {
        for group in [&mut self.agents, &mut self.servers] {
            for p in group.iter() {
                // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
                unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
            for p in group.iter_mut() {
                loop {
                    match p.child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() >= deadline => {
                            eprintln!("{} did not stop in time: killing it", p.what);
                            let _ = p.child.kill();
                            let _ = p.child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
            group.clear();
        }
    }

    /// Children that exited by themselves since the last call (each reported once).
    fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for group in [&mut self.agents, &mut self.servers] {
            group.retain_mut(|p| match p.child.try_wait() {
                Ok(Some(status)) => {
                    out.push(format!("{} exited ({status})", p.what));
                    false
                }
                _ => true,
            });
        }
        out
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `cuttle ARGS` with its output in `log`, in a process group of its own (so that Ctrl-C
/// on the terminal reaches this command alone, which stops the children in order), and told to
/// stop if this command dies.
fn spawn(what: String, args: &[String], log: &Path) -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("cannot find the cuttle executable")?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    Ok(Process { what, child })
}

fn free_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot pick a port")?;
    Ok(listener.local_addr()?.to_string())
}

/// Clears what an earlier run left in `dir`, or refuses a directory this command did not make.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        anyhow::ensure!(
            dir.join(MARKER).exists(),
            "{} exists and was not made by `cuttle dev`: choose another --data-dir, or remove it",
            dir.display()
        );
        for sub in ["nodes", "agents", "logs"] {
            let path = dir.join(sub);
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot clear {}", path.display()))?;
            }
        }
    }
    for sub in ["nodes", "agents", "logs"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "made by `cuttle dev`; a later `cuttle dev` clears nodes/, agents/ and logs/ here\n",
    )?;
    Ok(())
}

async fn wait_for_leader(client: &Client) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(status) = client.status().await {
            if status.leader_id != 0 && status.members.iter().all(|m| m.healthy) {
                return Ok(());
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_millis(START_TIMEOUT_MS),
            "the cluster has no leader after {START_TIMEOUT_MS} ms: see the node logs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_agents(client: &Client) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(agents) = client.read("agents").await {
            let connected = agents
                .as_array()
                .map(|list| list.iter().filter(|a| a["connected"] == true).count())
                .unwrap_or(0);
            if connected == AGENTS.len() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_millis(START_TIMEOUT_MS),
            "not every agent attached after {START_TIMEOUT_MS} ms: see the agent logs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the endpoints where the other commands look; returns the files written.
fn write_endpoints(dir: &Path, endpoints: &[String]) -> Vec<PathBuf> {
    let text = endpoints.join(",") + "\n";
    let mut files = vec![dir.join("endpoints")];
    files.extend(dev_endpoint_files().into_iter().skip(1));
    let mut written = Vec::new();
    for file in files {
        if let Some(parent) = file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::write(&file, &text).is_ok() {
            written.push(file);
        }
    }
    written
}

/// Runs `cuttle dev`; returns whether the demo (if run) succeeded.
pub fn run(args: &DevArgs) -> anyhow::Result<bool> {
    crate::style::init();
    let dir = &args.data_dir;
    prepare(dir)?;
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect::<Result<_, _>>()?;
    let initial = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Children {
        agents: Vec::new(),
        servers: Vec::new(),
    };
    for (i, addr) in addrs.iter().enumerate() {
        let id = i + 1;
        let args: Vec<String> = vec![
            "server".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.clone(),
            "--initial-cluster".into(),
            initial.clone(),
            "--data-dir".into(),
            dir.join(format!("nodes/node{id}")).display().to_string(),
        ];
        let log = dir.join(format!("logs/node{id}.log"));
        children
            .servers
            .push(spawn(format!("server node {id}"), &args, &log)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let client = Client::new(&addrs, Duration::from_secs(10))?;
        wait_for_leader(&client).await?;
        let endpoint_files = write_endpoints(dir, &addrs);
        for agent in AGENTS {
            let mut args: Vec<String> = vec![
                "agent".into(),
                "--name".into(),
                agent.name.into(),
                "--endpoints".into(),
                addrs.join(","),
                "--env".into(),
                agent.environment.into(),
                "--role".into(),
                agent.role.into(),
                "--max-concurrency".into(),
                agent.max_concurrency.to_string(),
                "--work-dir".into(),
                dir.join(format!("agents/{}", agent.name))
                    .display()
                    .to_string(),
            ];
            for tenant in agent.tenants {
                args.extend(["--tenant".to_string(), tenant.to_string()]);
            }
            let log = dir.join(format!("logs/agent-{}.log", agent.name));
            children
                .agents
                .push(spawn(format!("agent {}", agent.name), &args, &log)?);
        }
        std::fs::write(
            dir.join("children"),
            children
                .pids()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
                + "\n",
        )?;
        wait_for_agents(&client).await?;
        println!(
            "cluster up: 3 nodes at {} and {} agents; logs in {}",
            addrs.join(", "),
            AGENTS.len(),
            dir.join("logs").display()
        );
        let succeeded = if args.no_demo {
            true
        } else {
            demo::run(&client, dir).await?
        };
        println!();
        println!("endpoints: {}", addrs.join(","));
        for file in &endpoint_files {
            println!(
                "  written to {}: other commands use them without --endpoints",
                file.display()
            );
        }
        println!("try: cuttle task list · cuttle locks · cuttle agent list · cuttle release list");
        if !args.no_demo {
            println!("     cuttle deploy --project shop --release 1.0 --env Production --follow");
        }
        if args.exit_after_demo {
            return Ok::<bool, anyhow::Error>(succeeded);
        }
        println!("cuttle dev is running; Ctrl-C stops it");
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        let shutdown = crate::server::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = poll.tick() => {
                    for what in children.exited() {
                        eprintln!("warning: {what}; see {}", dir.join("logs").display());
                    }
                }
            }
        }
        Ok(succeeded)
    });
    println!("stopping the agents and nodes…");
    children.stop();
    for file in dev_endpoint_files()
        .into_iter()
        .skip(1)
        .chain([dir.join("endpoints")])
    {
        // Only remove what points at this run's cluster: another `cuttle dev` may have taken over.
        if std::fs::read_to_string(&file).is_ok_and(|t| t.trim() == addrs.join(",")) {
            let _ = std::fs::remove_file(&file);
        }
    }
    println!("stopped");
    outcome
}
