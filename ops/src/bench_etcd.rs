//! etcd's side of `cuttle bench locks`: making sure etcd is installed (`ops/bench/install-etcd.sh`),
//! a fresh three-member etcd cluster on loopback per run (free ports, data on disk, every other
//! flag etcd's default), its health, its counters after the run (`/metrics`, log warnings), and
//! the client that passes etcd's v3 lock around (`v3lockpb.Lock`, a lease per client kept alive
//! over `LeaseKeepAlive`), through the wire-compatible protos in `cuttle_proto::etcd`.

use crate::bench_locks::{contest, Contest, Hold, LockRun, LocksBenchArgs, LOCK_NAME};
use cuttle_proto::etcd::etcdserverpb::kv_client::KvClient;
use cuttle_proto::etcd::etcdserverpb::lease_client::LeaseClient;
use cuttle_proto::etcd::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
};
use cuttle_proto::etcd::v3lockpb::lock_client::LockClient;
use cuttle_proto::etcd::v3lockpb::{LockRequest, UnlockRequest};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::{Channel, Endpoint};

/// Whether the bench runs etcd beside cuttle.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdMode {
    /// Run etcd; install it first (apt, `ops/bench/install-etcd.sh`) when it is missing.
    Auto,
    /// Measure cuttle only.
    Skip,
}

/// The install script, embedded so that the bench finds it from any working directory.
const INSTALL_SCRIPT: &str = include_str!("../bench/install-etcd.sh");
/// Each client's lease, seconds, as in the anchor's method.
const LEASE_TTL_S: i64 = 10;
/// How often a client renews its lease (a third of the TTL).
const KEEPALIVE_EVERY: Duration = Duration::from_millis(3_333);

fn etcd_version() -> Option<String> {
    let out = Command::new("etcd").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| text.lines().next().unwrap_or("etcd").trim().to_string())
}

/// etcd's version line when etcd can run (installing it first in `Auto` mode when it is missing),
/// or why it cannot.
pub fn ensure(mode: EtcdMode) -> Result<String, String> {
    if mode == EtcdMode::Skip {
        return Err("skipped (--etcd skip)".into());
    }
    if let Some(version) = etcd_version() {
        return Ok(version);
    }
    eprintln!("etcd is not installed: installing it with ops/bench/install-etcd.sh (apt-get install etcd-server etcd-client)");
    let status = Command::new("sh")
        .args(["-c", INSTALL_SCRIPT, "install-etcd.sh"])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status();
    match status {
        Ok(s) if s.success() => etcd_version()
            .ok_or_else(|| "the install script succeeded but `etcd --version` still fails".into()),
        Ok(_) => Err(
            "etcd is missing and could not be installed (see the install script's message above)"
                .into(),
        ),
        Err(e) => Err(format!(
            "etcd is missing and the install script could not start: {e}"
        )),
    }
}

/// Three etcd members on loopback, killed (by the pids started here) when dropped.
pub(crate) struct EtcdCluster {
    children: Vec<Child>,
    /// `http://127.0.0.1:PORT` of each member's client port.
    pub endpoints: Vec<String>,
    logs: Vec<PathBuf>,
}

/// `n` distinct free ports: all bound at once, so that none is handed out twice.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

impl EtcdCluster {
    /// Starts `m1..m3` with data and logs under `dir` and `token` as the cluster token.
    pub fn start(dir: &Path, token: &str) -> anyhow::Result<EtcdCluster> {
        let ports = free_ports(6)?;
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let initial = (0..3)
            .map(|i| format!("m{}={}", i + 1, url(ports[3 + i])))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            children: Vec::new(),
            endpoints: (0..3).map(|i| url(ports[i])).collect(),
            logs: Vec::new(),
        };
        for i in 0..3 {
            let name = format!("m{}", i + 1);
            let log = dir.join(format!("{name}.log"));
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join(&name))
                .args(["--listen-client-urls", &url(ports[i])])
                .args(["--advertise-client-urls", &url(ports[i])])
                .args(["--listen-peer-urls", &url(ports[3 + i])])
                .args(["--initial-advertise-peer-urls", &url(ports[3 + i])])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", token])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn();
            cluster
                .children
                .push(child.map_err(|e| anyhow::anyhow!("cannot start etcd: {e}"))?);
            cluster.logs.push(log);
        }
        Ok(cluster)
    }

    /// Waits until a put through each member commits (what `etcdctl endpoint health` checks,
    /// done in-process), polling every 0.2 s.
    pub async fn wait_healthy(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let mut healthy = 0;
            for endpoint in &self.endpoints {
                let channel = Endpoint::from_shared(endpoint.clone())?
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_secs(1))
                    .connect_lazy();
                let put = PutRequest {
                    key: b"bench/health".to_vec(),
                    value: b"ok".to_vec(),
                    lease: 0,
                };
                if KvClient::new(channel).put(put).await.is_ok() {
                    healthy += 1;
                }
            }
            if healthy == self.endpoints.len() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let tail = std::fs::read_to_string(&self.logs[0]).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                anyhow::bail!("etcd is not healthy after 30 s; m1's log ends with: {tail:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The members' counters, summed, and the `took too long` warnings in their logs.
    pub async fn counters(&self) -> serde_json::Value {
        let sum = |text: &str, totals: &mut [f64; 6]| {
            totals[0] += metric_sum(text, "etcd_debugging_server_lease_expired_total");
            // Every member counts the first election once.
            totals[1] += (metric_sum(text, "etcd_server_leader_changes_seen_total") - 1.0).max(0.0);
            totals[2] += metric_sum(text, "etcd_server_proposals_failed_total");
            totals[3] += metric_sum(text, "etcd_server_slow_apply_total");
            totals[4] += metric_sum(text, "etcd_disk_wal_fsync_duration_seconds_count");
            totals[5] += metric_sum(text, "etcd_disk_wal_fsync_duration_seconds_sum");
        };
        let mut totals = [0.0; 6];
        let mut scraped = 0;
        for endpoint in &self.endpoints {
            if let Some(text) = scrape(endpoint).await {
                sum(&text, &mut totals);
                scraped += 1;
            }
        }
        let warnings: usize = self
            .logs
            .iter()
            .map(|l| {
                std::fs::read_to_string(l)
                    .unwrap_or_default()
                    .matches("took too long")
                    .count()
            })
            .sum();
        serde_json::json!({
            "members_scraped": scraped,
            "lease_expired": totals[0],
            "leader_changes_after_first": totals[1],
            "proposals_failed": totals[2],
            "slow_applies": totals[3],
            "wal_fsyncs": totals[4],
            "wal_fsync_mean_ms": if totals[4] > 0.0 { totals[5] / totals[4] * 1e3 } else { f64::NAN },
            "took_too_long": warnings,
        })
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// GET `/metrics` of one member (`http://HOST:PORT`), plain HTTP/1.0.
async fn scrape(endpoint: &str) -> Option<String> {
    let addr = endpoint.strip_prefix("http://")?;
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        Some(body)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()
        .flatten()
}

/// The sum over every label set of a Prometheus counter in a `/metrics` text; 0 when absent.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name{labels} value` or `name value`, not a longer name sharing the prefix.
            let rest = match rest.chars().next()? {
                '{' => &rest[rest.find('}')? + 1..],
                ' ' => rest,
                _ => return None,
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The etcd counters of a run in one table cell; empty for cuttle's runs.
pub fn describe_counters(server: &serde_json::Value) -> String {
    if server.is_null() {
        return String::new();
    }
    let n = |k: &str| server[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "WAL fsync mean {:.3} ms; leader changes {}, lease expiries {}, failed proposals {}, slow applies {}, took-too-long {}",
        n("wal_fsync_mean_ms"),
        n("leader_changes_after_first"),
        n("lease_expired"),
        n("proposals_failed"),
        n("slow_applies"),
        n("took_too_long"),
    )
}

/// Renews `lease` every [`KEEPALIVE_EVERY`] over one `LeaseKeepAlive` stream until aborted.
async fn keep_alive(mut leases: LeaseClient<Channel>, lease: i64, c: Arc<Contest>) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    // gRPC answers a bidirectional call only once the first request is on its way.
    if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
        return;
    }
    let mut replies = match leases
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(_) => {
            Contest::count(&c.keepalive_errors);
            return;
        }
    };
    loop {
        match replies.message().await {
            Ok(Some(reply)) if reply.ttl > 0 => {}
            Ok(Some(_)) => Contest::count(&c.lease_expiries),
            _ => {
                Contest::count(&c.keepalive_errors);
                return;
            }
        }
        tokio::time::sleep(KEEPALIVE_EVERY).await;
        if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
            return;
        }
    }
}

/// One etcd client: its own channel over all three members (balanced, as etcd's clients do), its
/// own lease, then lock and unlock until told to stop.
async fn etcd_client(endpoints: Vec<String>, c: Arc<Contest>) -> Vec<Hold> {
    let mut holds = Vec::new();
    let list = endpoints.into_iter().filter_map(|e| {
        Some(
            Endpoint::from_shared(e)
                .ok()?
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(30))
                .tcp_nodelay(true),
        )
    });
    let channel = Channel::balance_list(list);
    let mut leases = LeaseClient::new(channel.clone());
    let mut locks = LockClient::new(channel);
    let lease = loop {
        let grant = leases
            .lease_grant(LeaseGrantRequest {
                ttl: LEASE_TTL_S,
                id: 0,
            })
            .await;
        match grant {
            Ok(reply) => break reply.into_inner().id,
            Err(_) if !c.stopped() => {
                Contest::count(&c.acquire_errors);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return holds,
        }
    };
    let keeper = tokio::spawn(keep_alive(leases.clone(), lease, c.clone()));
    while !c.stopped() {
        let called_ms = c.now_ms();
        let request = LockRequest {
            name: LOCK_NAME.as_bytes().to_vec(),
            lease,
        };
        let reply = match locks.lock(request).await {
            Ok(reply) => reply.into_inner(),
            Err(_) => {
                Contest::count(&c.acquire_errors);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let granted_ms = c.now_ms();
        let release_issued_ms = c.hold();
        let unlocked = locks.unlock(UnlockRequest { key: reply.key }).await;
        let (released_ms, end_order) = match unlocked {
            Ok(u) => (Some(c.now_ms()), u.into_inner().header.map(|h| h.revision)),
            Err(_) => {
                Contest::count(&c.release_errors);
                (None, None)
            }
        };
        holds.push(Hold {
            order: reply.header.map(|h| h.revision).unwrap_or(0),
            end_order,
            called_ms,
            granted_ms,
            release_issued_ms,
            released_ms,
        });
    }
    keeper.abort();
    let _ = leases.lease_revoke(LeaseRevokeRequest { id: lease }).await;
    holds
}

/// A fresh etcd cluster under `dir`, one run, its counters, and the cluster stopped.
pub(crate) async fn etcd_once(
    dir: &Path,
    clients: usize,
    repeat: usize,
    args: &LocksBenchArgs,
) -> anyhow::Result<LockRun> {
    let token = format!(
        "cuttle-bench-{}-{}",
        std::process::id(),
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("run")
    );
    let cluster = EtcdCluster::start(dir, &token)?;
    cluster.wait_healthy().await?;
    let endpoints = cluster.endpoints.clone();
    let mut run = contest(
        "etcd",
        clients,
        repeat,
        Duration::from_millis(args.warmup_ms),
        Duration::from_secs(args.seconds),
        |_, c| etcd_client(endpoints.clone(), c),
    )
    .await?;
    run.server = cluster.counters().await;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP etcd_server_leader_changes_seen_total The number of leader changes seen.
# TYPE etcd_server_leader_changes_seen_total counter
etcd_server_leader_changes_seen_total 1
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 90
etcd_disk_wal_fsync_duration_seconds_sum 0.25
etcd_disk_wal_fsync_duration_seconds_count 100
etcd_server_proposals_failed_total{reason=\"a\"} 2
etcd_server_proposals_failed_total{reason=\"b\"} 3
etcd_server_proposals_failed_total_extra 7
";

    #[test]
    fn metric_sum_adds_label_sets_and_ignores_longer_names() {
        assert_eq!(
            metric_sum(METRICS, "etcd_server_proposals_failed_total"),
            5.0
        );
        assert_eq!(
            metric_sum(METRICS, "etcd_disk_wal_fsync_duration_seconds_count"),
            100.0
        );
        assert_eq!(
            metric_sum(METRICS, "etcd_server_leader_changes_seen_total"),
            1.0
        );
        assert_eq!(
            metric_sum(METRICS, "etcd_debugging_server_lease_expired_total"),
            0.0
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(6).unwrap();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }

    #[test]
    fn counters_of_cuttle_runs_print_nothing() {
        assert_eq!(describe_counters(&serde_json::Value::Null), "");
        let cell =
            describe_counters(&serde_json::json!({"wal_fsync_mean_ms": 0.5, "took_too_long": 2}));
        assert!(
            cell.contains("0.500 ms") && cell.contains("took-too-long 2"),
            "{cell}"
        );
    }
}
