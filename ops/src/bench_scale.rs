//! `cuttle bench scale` (issue 7, scenario 3): a three-node cluster with 200 projects' worth of
//! targets (1,000 targets over 3 environments, each project's role on 5 of them) and a queue of
//! 100,000 deployments. It measures the rate at which the queue grows, chunk by chunk (admission
//! cost as the queue grows), each node's memory, the snapshot's size and its encode and restore
//! times, the time a killed follower takes from its restart to serving (applied up to the leader's
//! log), and then the time to dispatch and run the whole queue once 1,000 light agents attach
//! ([`crate::bench_light_agents`]: the real protocol, no scripts). While the queue is built the
//! targets are registered directly (`UpsertTarget`), without agents: the units of admitted
//! deployments stay dispatched, which is what a queue that long looks like (the agent lease is set
//! to an hour so that the agent-less targets are not declared lost).

use crate::bench::{BenchCommon, Cluster};
use crate::bench_light_agents::{LightAgents, LightTarget};
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
/// Units one target runs at once.
const TARGET_CAPACITY: u32 = 10;
/// How often the dispatch phase reads the queue's length.
const DISPATCH_POLL_MS: u64 = 500;

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
    /// How long the dispatch phase may take before the run fails, in seconds.
    #[arg(long, default_value_t = 900)]
    pub dispatch_timeout_s: u64,
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
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// The number after `key` in a `/proc` file of `key value kB` lines (`/proc/PID/status`,
/// `/proc/meminfo`).
pub(crate) fn kib_field(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
    })
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
        let light: Vec<LightTarget> = (0..args.targets)
            .map(|k| LightTarget {
                name: format!("t{k:04}"),
                environment: ENVIRONMENTS[k % ENVIRONMENTS.len()].into(),
                role: format!("p{:03}", (k / ENVIRONMENTS.len()) % args.projects),
                capacity: TARGET_CAPACITY,
            })
            .collect();
        let targets = light
            .iter()
            .map(|t| {
                Request::Core(Command::UpsertTarget(TargetSpec {
                    name: t.name.clone(),
                    environments: vec![t.environment.clone()],
                    roles: vec![t.role.clone()],
                    tenants: Vec::new(),
                    capacity: t.capacity,
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
        let dispatch = dispatch_all(&cluster, &client, &light, args).await?;
        anyhow::Ok((
            rates, summary, rss_before, rss_after, stats, stats_ms, serving_ms, dispatch,
        ))
    });
    let _ = std::fs::remove_dir_all(&root);
    let (rates, summary, rss_before, rss_after, stats, stats_ms, serving_ms, dispatch) = result?;
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
    println!();
    println!("Times from the first agent's connection: every agent welcomed, a tenth of the deployments ended, all ended.");
    println!();
    println!("| agents | all welcomed s | deployments dispatched and run | units | a tenth ended s | all ended s | deployments/s | units/s | node RSS at the end MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {:.1} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {} |",
        dispatch.agents,
        dispatch.attach_s,
        dispatch.deployments,
        dispatch.units_run,
        dispatch.first_tenth_s,
        dispatch.all_s,
        dispatch.deployments as f64 / dispatch.all_s,
        dispatch.units_run as f64 / dispatch.all_s,
        dispatch
            .rss_end_mib
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    if let Some(path) = &args.common.json {
        let doc = serde_json::json!({
            "rates_per_s": rates, "summary": summary, "rss_before_mib": rss_before,
            "rss_after_mib": rss_after, "snapshot": stats, "restart_to_serving_ms": serving_ms,
            "dispatch": {
                "agents": dispatch.agents, "attach_s": dispatch.attach_s,
                "deployments": dispatch.deployments, "first_tenth_s": dispatch.first_tenth_s,
                "all_s": dispatch.all_s, "units_run": dispatch.units_run,
                "rss_end_mib": dispatch.rss_end_mib,
            },
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// What the dispatch phase measured.
struct Dispatch {
    agents: usize,
    /// From the first agent's connection to the last one's Welcome.
    attach_s: f64,
    /// Deployments that were waiting (queued or dispatched) when the agents attached.
    deployments: u64,
    /// Until a tenth of them had ended.
    first_tenth_s: f64,
    /// Until every one had ended.
    all_s: f64,
    /// Units the agents ran (a deployment has one unit per target of its project's role in its
    /// environment), each exactly once.
    units_run: u64,
    rss_end_mib: Vec<f64>,
}

/// Attaches a light agent per target and times the queue's way to empty; fails if a deployment
/// does not succeed or a unit runs twice.
async fn dispatch_all(
    cluster: &Cluster,
    client: &Client,
    targets: &[LightTarget],
    args: &ScaleBenchArgs,
) -> anyhow::Result<Dispatch> {
    let waiting = |summary: &serde_json::Value| {
        summary["queued_tasks"].as_u64().unwrap_or(0)
            + summary["running_tasks"].as_u64().unwrap_or(0)
    };
    let before = client.read("summary").await?;
    let deployments = waiting(&before);
    let started = Instant::now();
    let mut agents = LightAgents::start(targets, &cluster.endpoints()).await?;
    let attach_s = started.elapsed().as_secs_f64();
    eprintln!("{} light agents attached in {attach_s:.1} s", targets.len());
    let deadline = started + Duration::from_secs(args.dispatch_timeout_s);
    let mut first_tenth_s = None;
    let all_s = loop {
        agents.check()?;
        let summary = client.read("summary").await?;
        let left = waiting(&summary);
        let elapsed = started.elapsed().as_secs_f64();
        if first_tenth_s.is_none() && left <= deployments - deployments / 10 {
            first_tenth_s = Some(elapsed);
        }
        if left == 0 {
            break elapsed;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} of {deployments} deployments still waiting after {} s",
            args.dispatch_timeout_s
        );
        tokio::time::sleep(Duration::from_millis(DISPATCH_POLL_MS)).await;
    };
    let units_run = agents.ran.units();
    let (duplicates, retries) = (agents.ran.duplicates(), agents.ran.retries());
    let rss_end_mib = (1..=3)
        .map(|id| cluster.pid(id).map_or(f64::NAN, rss_mib))
        .collect();
    agents.stop().await;
    let summary = client.read("summary").await?;
    eprintln!("dispatched and ran {deployments} deployments in {all_s:.1} s; summary {summary}");
    anyhow::ensure!(
        duplicates == 0 && retries == 0,
        "{duplicates} units were sent twice and {retries} were run again after a failed attempt"
    );
    Ok(Dispatch {
        agents: targets.len(),
        attach_s,
        deployments,
        first_tenth_s: first_tenth_s.unwrap_or(all_s),
        all_s,
        units_run,
        rss_end_mib,
    })
}
