//! Test support: a cluster of real `cuttle server` processes on 127.0.0.1 with ports picked at run
//! time, data directories in a temporary directory, and waits on conditions (never fixed sleeps).
//! Only the processes started here are signalled, by pid.

#![allow(dead_code)]

pub mod agents;

use cuttle_node::client::Client;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The runtime each multi-process test runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub extra: Vec<String>,
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Node>,
    pub initial: String,
}

impl Cluster {
    /// Starts `n` nodes forming one cluster; `extra` flags go to every node.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let addrs: BTreeMap<u64, String> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let initial = addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            tmp,
            nodes: BTreeMap::new(),
            initial,
        };
        for (id, addr) in addrs {
            let dir = cluster.tmp.path().join(format!("node{id}"));
            let extra = extra.iter().map(|s| s.to_string()).collect();
            cluster.nodes.insert(
                id,
                Node {
                    id,
                    addr,
                    dir,
                    child: None,
                    extra,
                },
            );
            cluster.spawn(id, true);
        }
        cluster
    }

    /// Starts (or restarts) node `id`; `initial` passes --initial-cluster.
    pub fn spawn(&mut self, id: u64, initial: bool) {
        let node = self.nodes.get_mut(&id).expect("known node");
        assert!(node.child.is_none(), "node {id} already runs");
        let log =
            std::fs::File::create(self.tmp.path().join(format!("node{id}.log"))).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle"));
        command
            .args(["server", "--id", &id.to_string(), "--listen", &node.addr])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(&node.extra)
            .stdout(Stdio::null())
            .stderr(log);
        if initial {
            command.args(["--initial-cluster", &self.initial]);
        }
        node.child = Some(command.spawn().expect("start cuttle server"));
    }

    /// Adds a node process (not yet a member) with a fresh data directory.
    pub fn spawn_new(&mut self, id: u64, extra: &[&str]) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        let dir = self.tmp.path().join(format!("node{id}"));
        let extra = extra.iter().map(|s| s.to_string()).collect();
        self.nodes.insert(
            id,
            Node {
                id,
                addr: addr.clone(),
                dir,
                child: None,
                extra,
            },
        );
        self.spawn(id, false);
        addr
    }

    fn signal(&mut self, id: u64, signal: &str) {
        let node = self.nodes.get_mut(&id).expect("known node");
        let child = node.child.as_ref().expect("node runs");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        self.signal(id, "-KILL");
        let mut child = self.nodes.get_mut(&id).unwrap().child.take().unwrap();
        child.wait().expect("reap");
    }

    /// SIGTERM, and waits for the node to stop.
    pub fn stop(&mut self, id: u64) {
        self.signal(id, "-TERM");
        let mut child = self.nodes.get_mut(&id).unwrap().child.take().unwrap();
        let status = child.wait().expect("reap");
        assert!(
            status.success(),
            "node {id} stopped with {status}: {}",
            self.log(id)
        );
    }

    /// SIGSTOP: the node stops answering, as behind a partition.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, "-STOP");
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) {
        self.signal(id, "-CONT");
    }

    pub fn addr(&self, id: u64) -> String {
        self.nodes[&id].addr.clone()
    }

    /// A client of the nodes `ids`.
    pub fn client(&self, ids: &[u64]) -> Client {
        let endpoints: Vec<String> = ids.iter().map(|id| self.addr(*id)).collect();
        Client::new(&endpoints, Duration::from_secs(15)).expect("client")
    }

    /// A client of every node that runs.
    pub fn client_all(&self) -> Client {
        let ids: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect();
        self.client(&ids)
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("node{id}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Waits until `check` returns `Some`, polling; panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader as the nodes `ids` report it, once they agree on one that is among `ids`.
pub async fn leader_among(cluster: &Cluster, ids: &[u64]) -> u64 {
    wait_for("a leader", Duration::from_secs(20), || async {
        let mut seen = None;
        for id in ids {
            let ping = cluster.client(&[*id]).ping_first().await.ok()?;
            if ping.leader_id == 0
                || !ids.contains(&ping.leader_id)
                || seen.is_some_and(|l| l != ping.leader_id)
            {
                return None;
            }
            seen = Some(ping.leader_id);
        }
        seen
    })
    .await
}

/// Writes one new target after another through `client` until finished; remembers which writes
/// were acknowledged and which failed.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(
        client: Client,
        prefix: &str,
        command: fn(&str) -> cuttle_raft::sched::Command,
    ) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, w, f, prefix) = (
            stop.clone(),
            written.clone(),
            failures.clone(),
            prefix.to_string(),
        );
        let task = tokio::spawn(async move {
            let mut i = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("{prefix}{i}");
                match client.write(command(&name)).await {
                    Ok((Ok(_), _)) => w.lock().unwrap().push(name),
                    other => f.lock().unwrap().push(format!("{name}: {other:?}")),
                }
                i += 1;
            }
        });
        Load {
            stop,
            written,
            failures,
            task,
        }
    }

    /// Acknowledged writes so far.
    pub fn count(&self) -> usize {
        self.written.lock().unwrap().len()
    }

    /// Waits until `more` further writes were acknowledged.
    pub async fn progress(&self, more: usize, what: &str) {
        let goal = self.count() + more;
        wait_for(what, Duration::from_secs(15), || async {
            (self.count() >= goal).then_some(())
        })
        .await;
    }

    /// Stops; returns the acknowledged writes and the failures.
    pub async fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("load task");
        let written = self.written.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (written, failures)
    }
}
