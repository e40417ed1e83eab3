//! Agent processes for tests (`cuttle agent` from the built binary, logs and work directories in
//! the cluster's temporary directory) and a TCP proxy on 127.0.0.1 that can cut an agent off from
//! every node and heal it again.

#![allow(dead_code)]

use super::Cluster;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

/// One agent process.
pub struct Agent {
    pub name: String,
    pub work_dir: PathBuf,
    pub log: PathBuf,
    pub endpoints: Vec<String>,
    pub args: Vec<String>,
    pub child: Option<Child>,
}

impl Agent {
    /// Starts agent `name` (environment Production, role web unless `args` add more) dialing
    /// `endpoints`.
    pub fn start(cluster: &Cluster, name: &str, endpoints: Vec<String>, args: &[&str]) -> Agent {
        let work_dir = cluster.tmp.path().join(format!("agent-{name}"));
        let log = cluster.tmp.path().join(format!("agent-{name}.log"));
        let mut agent = Agent {
            name: name.into(),
            work_dir,
            log,
            endpoints,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        agent.spawn();
        agent
    }

    /// Starts (or restarts) the process.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent {} already runs", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["agent", "--name", &self.name])
            .args(["--endpoints", &self.endpoints.join(",")])
            .arg("--work-dir")
            .arg(&self.work_dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cuttle agent");
        self.child = Some(child);
    }

    /// kill -9 of the agent process (its scripts die with it).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("agent runs");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The journal's records.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.work_dir.join("journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP proxy in front of one node. While cut, it closes every connection it carries and refuses
/// new ones, as if the network between the agent and that node were down.
#[derive(Clone)]
pub struct Proxy {
    pub addr: String,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    /// Starts a proxy to `upstream`; must run inside a tokio runtime.
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap().to_string();
        let proxy = Proxy {
            addr,
            cut: Arc::new(AtomicBool::new(false)),
            connections: Arc::new(Mutex::new(Vec::new())),
        };
        let me = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if me.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                me.connections.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
