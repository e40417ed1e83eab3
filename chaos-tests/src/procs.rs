//! The processes of a run: `cuttle server` nodes and `cuttle agent`s, each in its own process
//! group and network namespace, with `PR_SET_PDEATHSIG` so that none outlives the harness; and
//! client commands (`cuttle task submit ...`) run from the clients' namespace with a deadline.
//!
//! Only processes started here are ever signalled, by pid or by the process group they lead.
//! Every start, stop, kill, pause and resume is recorded in the history.

use crate::history::Recorder;
use crate::net::Net;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The clients' host.
pub const CLIENT_HOST: &str = "client";

/// The port every node listens on in its own namespace.
pub const NODE_PORT: u16 = 7100;

/// A stopped process gets SIGKILL after this long.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The servers' timings: an agent lease of 3 s keeps faults and their recovery short.
pub const SERVER_FLAGS: &[&str] = &[
    "--agent-lease-timeout-ms",
    "3000",
    "--agent-heartbeat-interval-ms",
    "200",
];

/// One node or agent.
pub struct Proc {
    pub name: String,
    /// `HOST:PORT` for a node.
    pub addr: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
    /// For a node: whether it is a member of the cluster (spares are not until added).
    pub member: bool,
}

/// What a client command printed and how it ended.
#[derive(Debug)]
pub struct CliOutput {
    /// `None` when it was killed at its deadline.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Every process of a run.
pub struct Procs {
    pub cuttle: PathBuf,
    pub net: Net,
    pub dir: PathBuf,
    pub nodes: Vec<Proc>,
    pub agents: Vec<Proc>,
    pub recorder: Recorder,
    /// Extra environment of agents (the broken switch of the self-test).
    pub agent_env: Vec<(String, String)>,
    initial: String,
    /// Without namespaces: per agent, one proxy in front of each initial member.
    proxies: std::collections::BTreeMap<String, Vec<crate::proxy::Proxy>>,
}

/// The agent host names: `web01`, `web02`, ...
pub fn agent_names(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("web{i:02}")).collect()
}

/// The lock contenders' client hosts: `locker1`, `locker2`, ... Each has a namespace of its own,
/// so that one can be cut off from the cluster while the others go on.
pub fn locker_names(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("locker{i}")).collect()
}

/// The node host names: `n1`, `n2`, ...
pub fn node_names(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("n{i}")).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Runs the child in its own process group and kills it when the harness thread dies.
fn detach(command: &mut Command) {
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill on the pid of a child we own and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

impl Procs {
    /// Lays out `nodes` member nodes, `spares` spare nodes (ids after the members') and `agents`
    /// agents under `dir` (nothing started yet).
    pub fn new(
        cuttle: PathBuf,
        net: Net,
        dir: PathBuf,
        (nodes, spares): (usize, usize),
        agents: usize,
        recorder: Recorder,
    ) -> Procs {
        let node_procs: Vec<Proc> = node_names(nodes + spares)
            .into_iter()
            .enumerate()
            .map(|(index, name)| {
                let port = if net.can_partition() {
                    NODE_PORT
                } else {
                    free_port()
                };
                Proc {
                    addr: format!("{}:{port}", net.ip(&name)),
                    dir: dir.join("nodes").join(&name),
                    name,
                    child: None,
                    paused: false,
                    member: index < nodes,
                }
            })
            .collect();
        let initial = node_procs
            .iter()
            .take(nodes)
            .enumerate()
            .map(|(i, n)| format!("{}={}", i + 1, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        let agent_procs: Vec<Proc> = agent_names(agents)
            .into_iter()
            .map(|name| Proc {
                addr: String::new(),
                dir: dir.join("agents").join(&name),
                name,
                child: None,
                paused: false,
                member: false,
            })
            .collect();
        let _ = std::fs::create_dir_all(dir.join("logs"));
        let mut proxies = std::collections::BTreeMap::new();
        if !net.can_partition() {
            for agent in &agent_procs {
                let list: Vec<crate::proxy::Proxy> = node_procs
                    .iter()
                    .take(nodes)
                    .filter_map(|n| crate::proxy::Proxy::start(n.addr.clone()).ok())
                    .collect();
                proxies.insert(agent.name.clone(), list);
            }
        }
        Procs {
            cuttle,
            net,
            dir,
            nodes: node_procs,
            agents: agent_procs,
            recorder,
            agent_env: Vec::new(),
            initial,
            proxies,
        }
    }

    /// The initial members' addresses, for clients and agents.
    pub fn endpoints(&self) -> String {
        let members = self.initial.split(',').count();
        self.nodes
            .iter()
            .take(members)
            .map(|n| n.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What agent `name` dials: the members, or its own proxies in front of them.
    fn agent_endpoints(&self, name: &str) -> String {
        match self.proxies.get(name) {
            Some(list) => list
                .iter()
                .map(|p| p.addr.clone())
                .collect::<Vec<_>>()
                .join(","),
            None => self.endpoints(),
        }
    }

    /// Cuts agent `name` off from every node: by the network when it can be cut, else by its
    /// proxies.
    pub fn cut_agent(&mut self, name: &str) {
        if self.net.can_partition() {
            let nodes: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
            for node in nodes {
                let _ = self.net.cut(name, &node);
            }
        } else if let Some(list) = self.proxies.get(name) {
            list.iter().for_each(|p| p.cut());
        }
    }

    /// Heals every proxy.
    pub fn heal_proxies(&self) {
        self.proxies.values().flatten().for_each(|p| p.heal());
    }

    fn log(&self, name: &str) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs").join(format!("{name}.log")))
    }

    /// Starts (or restarts) node `index` (0-based, id `index + 1`) with the same command each
    /// time; a spare starts without `--initial-cluster` and waits to be added.
    pub fn start_node(&mut self, index: usize) -> std::io::Result<()> {
        let node = &self.nodes[index];
        if node.child.is_some() {
            return Ok(());
        }
        let members = self.initial.split(',').count();
        let mut command = self.net.command(&node.name, &self.cuttle);
        command
            .args(["server", "--id", &(index + 1).to_string()])
            .args(["--listen", &node.addr])
            .arg("--data-dir")
            .arg(&node.dir);
        if index < members {
            command.args(["--initial-cluster", &self.initial]);
        }
        command
            .args(SERVER_FLAGS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log(&node.name)?);
        detach(&mut command);
        let child = command.spawn()?;
        let name = node.name.clone();
        self.nodes[index].child = Some(child);
        self.nodes[index].paused = false;
        self.recorder.process(&name, "start");
        Ok(())
    }

    /// Starts (or restarts) agent `index`.
    pub fn start_agent(&mut self, index: usize) -> std::io::Result<()> {
        let agent = &self.agents[index];
        if agent.child.is_some() {
            return Ok(());
        }
        let role = format!("r{}", index % 3);
        let mut command = self.net.command(&agent.name, &self.cuttle);
        command
            .args(["agent", "--name", &agent.name])
            .args(["--endpoints", &self.agent_endpoints(&agent.name)])
            .args(["--env", "Production", "--role", "web", "--role", &role])
            .args(["--tenant", "t1", "--tenant", "t2", "--tenant", "t3"])
            .args(["--max-concurrency", "3", "--cancel-grace-ms", "2000"])
            .arg("--work-dir")
            .arg(&agent.dir)
            .envs(self.agent_env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log(&agent.name)?);
        detach(&mut command);
        let child = command.spawn()?;
        let name = agent.name.clone();
        self.agents[index].child = Some(child);
        self.agents[index].paused = false;
        self.recorder.process(&name, "start");
        Ok(())
    }

    fn find(&mut self, name: &str) -> Option<&mut Proc> {
        self.nodes
            .iter_mut()
            .chain(self.agents.iter_mut())
            .find(|p| p.name == name)
    }

    /// kill -9 of `name`, reaped.
    pub fn kill(&mut self, name: &str) {
        let recorder = self.recorder.clone();
        let Some(proc) = self.find(name) else { return };
        let Some(mut child) = proc.child.take() else {
            return;
        };
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        proc.paused = false;
        recorder.process(name, "kill");
    }

    /// SIGTERM to `name`, SIGKILL after [`STOP_GRACE`]; reaped.
    pub fn stop(&mut self, name: &str) {
        let recorder = self.recorder.clone();
        let Some(proc) = self.find(name) else { return };
        let Some(mut child) = proc.child.take() else {
            return;
        };
        if proc.paused {
            signal(&child, libc::SIGCONT);
            proc.paused = false;
        }
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    signal(&child, libc::SIGKILL);
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        recorder.process(name, "stop");
    }

    /// SIGSTOP (`pause`) or SIGCONT (`resume`) to `name`.
    pub fn pause(&mut self, name: &str, pause: bool) {
        let recorder = self.recorder.clone();
        let Some(proc) = self.find(name) else { return };
        let Some(child) = proc.child.as_ref() else {
            return;
        };
        if proc.paused == pause {
            return;
        }
        signal(child, if pause { libc::SIGSTOP } else { libc::SIGCONT });
        proc.paused = pause;
        recorder.process(name, if pause { "pause" } else { "resume" });
    }

    /// Brings every process back: resumes the paused, starts the dead.
    pub fn restore_all(&mut self) -> std::io::Result<()> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for name in &names {
            self.pause(name, false);
        }
        for index in 0..self.nodes.len() {
            if self.nodes[index].member {
                self.start_node(index)?;
            }
        }
        let names: Vec<String> = self.agents.iter().map(|a| a.name.clone()).collect();
        for name in &names {
            self.pause(name, false);
        }
        for index in 0..self.agents.len() {
            self.start_agent(index)?;
        }
        Ok(())
    }

    /// Stops every agent (they stop their units first), then every node.
    pub fn stop_all(&mut self) {
        let names: Vec<String> = self
            .agents
            .iter()
            .chain(self.nodes.iter())
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            self.stop(&name);
        }
    }

    /// The clients' side: `cuttle` commands from the clients' namespace against every node.
    pub fn clients(&self) -> Clients {
        self.clients_at(CLIENT_HOST)
    }

    /// The same from another client host (a lock contender's own namespace).
    pub fn clients_at(&self, host: &str) -> Clients {
        Clients {
            cuttle: self.cuttle.clone(),
            endpoints: self.endpoints(),
            nodes: self.nodes.len(),
            namespace: self.net.handle(host).map(std::sync::Arc::new),
        }
    }
}

/// Runs client commands; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct Clients {
    pub cuttle: PathBuf,
    pub endpoints: String,
    pub nodes: usize,
    namespace: Option<std::sync::Arc<std::fs::File>>,
}

impl Clients {
    /// `cuttle` in the clients' namespace with the endpoints set.
    pub fn command(&self) -> Command {
        let mut command = crate::net::command_in(self.namespace.as_deref(), &self.cuttle);
        command.env("CUTTLE_ENDPOINTS", &self.endpoints);
        command.env("NO_COLOR", "1");
        command
    }

    /// Runs `cuttle ARGS`, killed (its whole process group) after `limit`.
    pub fn cli(&self, args: &[&str], limit: Duration) -> CliOutput {
        let mut command = self.command();
        command.args(args);
        run_with_deadline(command, limit)
    }

    /// The leader's node index as the cluster reports it, asking with a short deadline.
    pub fn leader(&self) -> Option<usize> {
        let out = self.cli(
            &["cluster", "status", "--output", "json"],
            Duration::from_secs(5),
        );
        let json: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        let id = json["leader_id"].as_u64()?;
        (id >= 1 && id as usize <= self.nodes).then_some(id as usize - 1)
    }
}

/// Runs `command` with piped output in its own process group; kills the group at `limit`.
pub fn run_with_deadline(mut command: Command, limit: Duration) -> CliOutput {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    detach(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return CliOutput {
                code: None,
                stdout: String::new(),
                stderr: format!("could not start: {error}"),
            }
        }
    };
    let pgid = child.id() as libc::pid_t;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = |pipe: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            }
            text
        })
    };
    let out_thread = read(stdout);
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stderr {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        text
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code().or(Some(-1)),
            Err(_) => break None,
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: the group is led by our own unreaped child.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    CliOutput {
        code,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for proc in self.nodes.iter_mut().chain(self.agents.iter_mut()) {
            if let Some(mut child) = proc.child.take() {
                signal(&child, libc::SIGCONT);
                signal(&child, libc::SIGKILL);
                let _ = child.wait();
            }
        }
    }
}

/// The `cuttle` binary next to `exe` (`target/<profile>/cuttle` beside
/// `target/<profile>/cuttle-chaos` or `target/<profile>/deps/<test>`), if it exists.
pub fn cuttle_beside(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    [dir.join("cuttle"), dir.parent()?.join("cuttle")]
        .into_iter()
        .find(|p| p.is_file())
}
