//! `cuttle bench scale` (issue 7, scenario 3, in part): a three-node cluster with 200 projects'
//! worth of targets (1,000 targets over 3 environments, each project's role on 5 of them) and a
//! queue of 100,000 deployments. It measures the rate at which the queue grows, chunk by chunk
//! (admission cost as the queue grows), each node's memory, the snapshot's size and its encode and
//! restore times, and the time a killed follower takes from its restart to serving (applied up to
//! the leader's log). Targets are registered directly (`UpsertTarget`), without agents: the units
//! of admitted deployments stay dispatched, which is what a queue that long looks like (the agent
//! lease is set to an hour so that the agent-less targets are not declared lost).

use crate::bench::{BenchCommon, Cluster};
use anyhow::Context as _;
use cuttle_node::client::Client;
use cuttle_raft::ledger::{Request, TaskPayload};
use cuttle_raft::sched::{BypassRule, Command, SettingsPatch, StepSpec, TargetSpec, TaskSpec};
use std::time::{Duration, Instant};

const ENVIRONMENTS: [&str; 3] = ["Dev", "Test", "Production"];
/// The servers' agent lease: an hour, longer than any run.
const AGENT_LEASE_MS: u64 = 3_600_000;
/// Submissions in flight at once.
const SUBMITTERS: usize = 32;

/// The flags of `cuttle bench scale`.
#[derive(clap::Args, Debug)]
pub struct ScaleBenchArgs {
    /// Targets, spread over the three environments.
    #[arg(long, default_value_t = 1000)]
    pub targets: usize,
    /// Projects; each has its own role on `targets / projects` targets.
    #[arg(long, default_value_t = 200)]
    pub projects: usize,
    /// Deployments queued.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: usize,
    /// Chunks the queue is measured in.
    #[arg(long, default_value_t = 10)]
    pub chunks: usize,
    #[command(flatten)]
    pub common: BenchCommon,
}

fn deployment(i: usize, projects: usize) -> Request {
    let project = i % projects;
    let spec = TaskSpec {
        project: format!("p{project:03}"),
        release: format!("{}", i / projects),
        environment: ENVIRONMENTS[(i / projects) % ENVIRONMENTS.len()].into(),
        tenant: None,
        concurrency_tag: None,
        bypass: BypassRule::default(),
        hold_targets: false,
        acquire_max_parallelism: 10,
        steps: vec![StepSpec {
            name: "deploy".into(),
            roles: vec![format!("p{project:03}")],
            max_parallelism: 10,
            package: None,
            lock: None,
        }],
    };
    Request::SubmitDeployment {
        spec,
        payload: TaskPayload::scripts(["true"]),
    }
}

/// Proposes every request, `SUBMITTERS` at a time; fails on the first refusal.
pub(crate) async fn write_all(client: &Client, requests: Vec<Request>) -> anyhow::Result<()> {
    let mut workers = tokio::task::JoinSet::new();
    let shared = std::sync::Arc::new(std::sync::Mutex::new(requests));
    for _ in 0..SUBMITTERS {
        let client = client.clone();
        let shared = shared.clone();
        workers.spawn(async move {
            loop {
                let next = shared.lock().expect("queue lock").pop();
                let Some(request) = next else {
                    return anyhow::Ok(());
                };
                let (result, _) = client.write(request).await?;
                result.context("the cluster refused a request")?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs the benchmark and prints markdown tables.
pub fn run(args: &ScaleBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.projects >= 1 && args.targets >= args.projects,
        "--targets must be at least --projects"
    );
    anyhow::ensure!(
        args.chunks >= 1 && args.tasks >= args.chunks,
        "--tasks must be at least --chunks"
    );
    let root = std::env::temp_dir().join(format!("cuttle-bench-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        // The targets have no agents: a long agent lease keeps the leader from declaring them
        // lost (and failing their units) while the queue is measured.
        let flags = format!(
            "--agent-lease-timeout-ms {AGENT_LEASE_MS} {}",
            args.common.server_flags
        );
        let mut cluster = Cluster::start(&root, &flags)?;
        let (leader, _) = cluster.leader().await?;
        let client = Client::new(&cluster.endpoints(), Duration::from_secs(30))?;
        let rss_before: Vec<f64> = (1..=3)
            .map(|id| cluster.pid(id).map_or(f64::NAN, rss_mib))
            .collect();
        let targets = (0..args.targets)
            .map(|k| {
                Request::Core(Command::UpsertTarget(TargetSpec {
                    name: format!("t{k:04}"),
                    environments: vec![ENVIRONMENTS[k % ENVIRONMENTS.len()].into()],
                    roles: vec![format!("p{:03}", (k / ENVIRONMENTS.len()) % args.projects)],
                    tenants: Vec::new(),
                    capacity: 10,
                }))
            })
            .collect();
        write_all(&client, targets).await?;
        let (result, _) = client
            .write(Command::SetSettings(SettingsPatch {
                task_cap: Some(1_000),
                queued_tasks_max: Some(args.tasks as u32 * 2),
                ..SettingsPatch::default()
            }))
            .await?;
        result.context("the cluster refused the settings")?;
        let chunk = args.tasks / args.chunks;
        let mut rates = Vec::new();
        for c in 0..args.chunks {
            let requests: Vec<Request> = (c * chunk..(c + 1) * chunk)
                .rev()
                .map(|i| deployment(i, args.projects))
                .collect();
            let started = Instant::now();
            write_all(&client, requests).await?;
            let rate = chunk as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "queued {} deployments: {rate:.0} per second in this chunk",
                (c + 1) * chunk
            );
            rates.push(rate);
        }
        let summary = client.read("summary").await?;
        let rss_after: Vec<f64> = (1..=3)
            .map(|id| cluster.pid(id).map_or(f64::NAN, rss_mib))
            .collect();
        let started = Instant::now();
        let stats = client.read("snapshot-stats").await?;
        let stats_ms = started.elapsed().as_secs_f64() * 1000.0;
        // Restart to serving: kill -9 a follower, start it again, and time until it has applied
        // everything the leader had logged when it was killed.
        let follower = (1..=3).find(|id| *id != leader).expect("three nodes");
        let target_index = client.status().await?.last_log_index;
        cluster.kill(follower);
        let restarted = Instant::now();
        cluster.spawn((follower - 1) as usize)?;
        let alone = Client::new(
            &[cluster.endpoints()[(follower - 1) as usize].clone()],
            Duration::from_secs(2),
        )?;
        let serving_ms = loop {
            if let Ok(ping) = alone.ping_first().await {
                if ping.last_applied >= target_index {
                    break restarted.elapsed().as_secs_f64() * 1000.0;
                }
            }
            anyhow::ensure!(
                restarted.elapsed() < Duration::from_secs(300),
                "the restarted node did not catch up in 300 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        anyhow::Ok((
            rates, summary, rss_before, rss_after, stats, stats_ms, serving_ms,
        ))
    });
    let _ = std::fs::remove_dir_all(&root);
    let (rates, summary, rss_before, rss_after, stats, stats_ms, serving_ms) = result?;
    println!("| chunk (deployments queued before it) | deployments queued per second |");
    println!("|---:|---:|");
    let chunk = args.tasks / args.chunks;
    for (c, rate) in rates.iter().enumerate() {
        println!("| {} | {rate:.0} |", c * chunk);
    }
    println!();
    println!(
        "queued {} and running {} deployments over {} targets; tasks held {}",
        summary["queued_tasks"], summary["running_tasks"], summary["targets"], summary["tasks"]
    );
    println!("| node | RSS before MiB | RSS after MiB |");
    println!("|---:|---:|---:|");
    for id in 0..3 {
        println!(
            "| {} | {:.0} | {:.0} |",
            id + 1,
            rss_before[id],
            rss_after[id]
        );
    }
    println!();
    println!(
        "snapshot: {} bytes, encode {:.0} ms, restore {:.0} ms (the read took {stats_ms:.0} ms); a killed follower served again {serving_ms:.0} ms after its restart",
        stats["bytes"],
        stats["encode_ms"].as_f64().unwrap_or(f64::NAN),
        stats["restore_ms"].as_f64().unwrap_or(f64::NAN)
    );
    if let Some(path) = &args.common.json {
        let doc = serde_json::json!({
            "rates_per_s": rates, "summary": summary, "rss_before_mib": rss_before,
            "rss_after_mib": rss_after, "snapshot": stats, "restart_to_serving_ms": serving_ms,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
