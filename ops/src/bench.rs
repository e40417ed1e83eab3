//! `cuttle bench cluster`: durable commits per second and their latency on a three-node loopback
//! cluster of real `cuttle server` processes, and leader failover time (kill -9 of the leader until
//! the first successful write), reported as medians over repeated runs.

use anyhow::Context as _;
use cuttle_node::client::Client;
use cuttle_raft::sched::Command;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The flags every benchmark on a loopback cluster shares.
#[derive(clap::Args, Debug)]
pub struct BenchCommon {
    /// Extra flags for every server, e.g. "--election-timeout-min-ms 300 --election-timeout-max-ms 600".
    #[arg(
        long,
        value_name = "FLAGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub server_flags: String,
    /// Also write the raw results here, as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The flags of `cuttle bench cluster`.
#[derive(clap::Args, Debug)]
pub struct ClusterBenchArgs {
    /// Concurrent clients, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub clients: Vec<usize>,
    /// Measured seconds per run (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Runs per client count; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Contending clients for the lock hand-off runs (through the lock API), one run each; empty
    /// to skip them.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub lock_clients: Vec<usize>,
    /// Leader kills to time.
    #[arg(long, default_value_t = 20)]
    pub failover_trials: usize,
    #[command(flatten)]
    pub common: crate::bench::BenchCommon,
}

pub(crate) struct Server {
    id: u64,
    addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three `cuttle server` processes on loopback, killed when dropped.
pub(crate) struct Cluster {
    servers: Vec<Server>,
    initial: String,
    flags: Vec<String>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    pub(crate) fn start(root: &Path, flags: &str) -> anyhow::Result<Cluster> {
        let mut servers = Vec::new();
        for id in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port()?);
            servers.push(Server {
                id,
                addr,
                dir: root.join(format!("node{id}")),
                child: None,
            });
        }
        let initial = servers
            .iter()
            .map(|s| format!("{}={}", s.id, s.addr))
            .collect::<Vec<_>>()
            .join(",");
        let flags = flags.split_whitespace().map(str::to_string).collect();
        let mut cluster = Cluster {
            servers,
            initial,
            flags,
        };
        for index in 0..3 {
            cluster.spawn(index)?;
        }
        Ok(cluster)
    }

    pub(crate) fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let exe = std::env::current_exe()?;
        let server = &mut self.servers[index];
        let child = std::process::Command::new(exe)
            .args([
                "server",
                "--id",
                &server.id.to_string(),
                "--listen",
                &server.addr,
                "--initial-cluster",
                &self.initial,
            ])
            .arg("--data-dir")
            .arg(&server.dir)
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start cuttle server")?;
        server.child = Some(child);
        Ok(())
    }

    pub(crate) fn kill(&mut self, id: u64) {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.id == id)
            .expect("known server");
        if let Some(mut child) = server.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id of node `id`, while it runs.
    pub(crate) fn pid(&self, id: u64) -> Option<u32> {
        self.servers
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.child.as_ref())
            .map(|c| c.id())
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.addr.clone()).collect()
    }

    /// Waits for a leader; returns its id and address.
    pub(crate) async fn leader(&self) -> anyhow::Result<(u64, String)> {
        let client = Client::new(&self.endpoints(), Duration::from_secs(2))?;
        let start = Instant::now();
        loop {
            if let Ok(status) = client.status().await {
                if let Some(m) = status
                    .members
                    .iter()
                    .find(|m| m.id == status.leader_id && status.leader_id != 0)
                {
                    if status.members.iter().all(|m| m.healthy) {
                        return Ok((m.id, m.addr.clone()));
                    }
                }
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "no healthy cluster with a leader after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One throughput run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Run {
    /// Concurrent clients.
    pub clients: usize,
    /// Commits per second.
    pub writes_per_s: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Failed writes.
    pub errors: usize,
}

/// The `p`th percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (see [`crate::bench_locks_report::median`]).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    crate::bench_locks_report::median(values)
}

async fn throughput(endpoints: Vec<String>, clients: usize, seconds: u64) -> anyhow::Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let client = Client::new(&endpoints, Duration::from_secs(10))?;
        let (stop, measuring) = (stop.clone(), measuring.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                // A tick is a real, durable command that leaves the state as it is.
                let ok = matches!(client.write(Command::Tick).await, Ok((Ok(_), _)));
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(started.elapsed().as_secs_f64() * 1e3);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (latencies, e) = worker.await?;
        all.extend(latencies);
        errors += e;
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok(Run {
        clients,
        writes_per_s: all.len() as f64 / window,
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
        errors,
    })
}

/// Kills the leader, times the first successful write through the survivors, restarts the node.
async fn failover_trial(cluster: &mut Cluster) -> anyhow::Result<f64> {
    let (leader, _) = cluster.leader().await?;
    let survivors: Vec<String> = cluster
        .servers
        .iter()
        .filter(|s| s.id != leader)
        .map(|s| s.addr.clone())
        .collect();
    let client = Client::new(&survivors, Duration::from_millis(500))?;
    client.write(Command::Tick).await.ok();
    let killed_at = Instant::now();
    cluster.kill(leader);
    loop {
        if let Ok((Ok(_), _)) = client.write(Command::Tick).await {
            break;
        }
        anyhow::ensure!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no write succeeded within 30 s of the kill"
        );
    }
    let elapsed = killed_at.elapsed().as_secs_f64() * 1e3;
    let index = cluster
        .servers
        .iter()
        .position(|s| s.id == leader)
        .expect("known");
    cluster.spawn(index)?;
    cluster.leader().await?;
    Ok(elapsed)
}

/// Runs the benchmark and prints markdown tables.
pub fn run(args: &ClusterBenchArgs) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("cuttle-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut cluster = Cluster::start(&root, &args.common.server_flags)?;
        let (_, leader_addr) = cluster.leader().await?;
        let mut endpoints = vec![leader_addr.clone()];
        endpoints.extend(
            cluster
                .endpoints()
                .into_iter()
                .filter(|a| *a != leader_addr),
        );
        let mut runs: BTreeMap<usize, Vec<Run>> = BTreeMap::new();
        for _ in 0..args.repeats {
            for clients in &args.clients {
                let run = throughput(endpoints.clone(), *clients, args.seconds).await?;
                eprintln!(
                    "{clients} clients: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms",
                    run.writes_per_s, run.p50_ms, run.p99_ms
                );
                runs.entry(*clients).or_default().push(run);
            }
        }
        let mut lock_runs: BTreeMap<usize, Vec<crate::bench_locks::LockRun>> = BTreeMap::new();
        for repeat in 0..args.repeats {
            for clients in &args.lock_clients {
                let run = crate::bench_locks::handoffs(&endpoints, *clients, args.seconds, repeat)
                    .await?;
                eprintln!(
                    "{clients} lock clients: {:.0} hand-offs/s, p50 {:.2} ms, p99 {:.2} ms",
                    run.handoffs_per_s, run.handoff_p50_ms, run.handoff_p99_ms
                );
                lock_runs.entry(*clients).or_default().push(run);
            }
        }
        let mut failovers = Vec::new();
        for trial in 0..args.failover_trials {
            let ms = failover_trial(&mut cluster).await?;
            eprintln!("failover {}: {ms:.0} ms", trial + 1);
            failovers.push(ms);
        }
        anyhow::Ok((runs, lock_runs, failovers))
    });
    let _ = std::fs::remove_dir_all(&root);
    let (runs, lock_runs, mut failovers) = result?;
    println!("| clients | runs | writes/s (median) | p50 ms | p99 ms | errors |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (clients, list) in &runs {
        let mut w: Vec<f64> = list.iter().map(|r| r.writes_per_s).collect();
        let mut p50: Vec<f64> = list.iter().map(|r| r.p50_ms).collect();
        let mut p99: Vec<f64> = list.iter().map(|r| r.p99_ms).collect();
        let errors: usize = list.iter().map(|r| r.errors).sum();
        println!(
            "| {clients} | {} | {:.0} | {:.2} | {:.2} | {errors} |",
            list.len(),
            median(&mut w),
            median(&mut p50),
            median(&mut p99)
        );
    }
    if !lock_runs.is_empty() {
        println!(
            "\n| lock clients | runs | hand-offs/s (median) | hand-off p50 ms | p99 ms | errors |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for (clients, list) in &lock_runs {
            let mut h: Vec<f64> = list.iter().map(|r| r.handoffs_per_s).collect();
            let mut p50: Vec<f64> = list.iter().map(|r| r.handoff_p50_ms).collect();
            let mut p99: Vec<f64> = list.iter().map(|r| r.handoff_p99_ms).collect();
            let errors: usize = list.iter().map(|r| r.errors).sum();
            println!(
                "| {clients} | {} | {:.0} | {:.2} | {:.2} | {errors} |",
                list.len(),
                median(&mut h),
                median(&mut p50),
                median(&mut p99)
            );
        }
    }
    if !failovers.is_empty() {
        let max = failovers.iter().cloned().fold(0.0, f64::max);
        println!("\n| failover trials | median ms | max ms |\n|---:|---:|---:|\n| {} | {:.0} | {max:.0} |", failovers.len(), median(&mut failovers));
    }
    if let Some(path) = &args.common.json {
        let json =
            serde_json::json!({"runs": runs, "lock_runs": lock_runs, "failover_ms": failovers});
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
