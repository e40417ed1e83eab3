//! `cuttle bench deploy`: how fast a busy target passes from one deployment to the next, and how
//! long dispatch stops when the leader dies.
//!
//! - **Target hand-off** (issue 7, scenario 2): a burst of single-step deployments (each script
//!   only stamps its start and end) queued at once on one target, or spread over many targets
//!   (each deployment on one of them). The idle gap on a target is the next script's start less
//!   the previous script's end, as the scripts stamp them: it covers the agent seeing the exit, its
//!   journal, the report, the Raft commit, the grant, the dispatch, the next journal entry and the
//!   spawn of bash. Also tasks finished per second, from the first start to the last end.
//! - **Failover under load** (scenario 5): the same burst on one target; once a third of it ran,
//!   kill -9 of the leader; the time from the kill to the next script's start. Each trial has a
//!   fresh cluster, and checks that every deployment ran exactly once.
//!
//! Three `cuttle server` processes on loopback (durable writes), agents in this process
//! ([`crate::bench_agents`]).

use crate::bench::{median, percentile, Cluster};
use crate::bench_agents::{gaps_ms, read_stamps, stamped, Agents, TargetDef};
use anyhow::Context as _;
use cuttle_node::client::Client;
use cuttle_raft::ledger::{Request, TaskPayload};
use cuttle_raft::sched::{BypassRule, Command, SettingsPatch, StepSpec, TaskSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a burst may take.
const BURST_TIMEOUT_MS: u64 = 600_000;

/// The flags of `cuttle bench deploy`.
#[derive(clap::Args, Debug)]
pub struct DeployBenchArgs {
    /// Deployments per burst.
    #[arg(long, default_value_t = 1000)]
    pub tasks: usize,
    /// Target counts, one burst each (deployments spread evenly, one target each).
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub targets: Vec<usize>,
    /// Bursts per target count; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Leader kills under load (fresh cluster each).
    #[arg(long, default_value_t = 5)]
    pub failover_trials: usize,
    /// The node the agents attach to first: the leader, or a follower (every message then
    /// crosses one relay more).
    #[arg(long, value_enum, default_value_t = AttachTo::Leader)]
    pub attach: AttachTo,
    #[command(flatten)]
    pub common: crate::bench::BenchCommon,
}

/// Where a benchmark's agents attach first.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachTo {
    Leader,
    Follower,
}

/// The cluster's endpoints in the order an agent tries them: the leader first, or last.
pub(crate) fn agent_endpoints(endpoints: &[String], leader: &str, attach: AttachTo) -> Vec<String> {
    let (mut first, rest): (Vec<String>, Vec<String>) =
        endpoints.iter().cloned().partition(|e| e == leader);
    match attach {
        AttachTo::Leader => {
            first.extend(rest);
            first
        }
        AttachTo::Follower => rest.into_iter().chain(first).collect(),
    }
}

/// One burst.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Burst {
    /// Targets.
    pub targets: usize,
    /// Deployments.
    pub tasks: usize,
    /// Idle gaps measured.
    pub gaps: usize,
    /// Gap percentiles, ms.
    pub gap_p50_ms: f64,
    /// 99th percentile.
    pub gap_p99_ms: f64,
    /// Largest gap.
    pub gap_max_ms: f64,
    /// Deployments finished per second, first script start to last script end.
    pub tasks_per_s: f64,
    /// First submission to the last script's end, ms.
    pub makespan_ms: f64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn target_name(i: usize) -> String {
    format!("t{i:03}")
}

/// A deployment whose one step runs on target `target` (each target has its own role).
fn deployment(i: usize, target: usize, stamps: &Path) -> Request {
    let spec = TaskSpec {
        project: format!("p{i}"),
        release: "1".into(),
        environment: "Bench".into(),
        tenant: None,
        concurrency_tag: None,
        bypass: BypassRule::default(),
        hold_targets: false,
        acquire_max_parallelism: 10,
        steps: vec![StepSpec {
            name: "deploy".into(),
            roles: vec![target_name(target)],
            max_parallelism: 10,
            package: None,
            lock: None,
        }],
    };
    Request::SubmitDeployment {
        spec,
        payload: TaskPayload::scripts([stamped(stamps, "true")]),
    }
}

/// A fresh cluster with `targets` agents, ready for `tasks` deployments at once.
struct Bench {
    cluster: Cluster,
    agents: Agents,
    client: Client,
    stamps: PathBuf,
}

async fn set_up(
    root: &Path,
    flags: &str,
    attach: AttachTo,
    targets: usize,
    tasks: usize,
) -> anyhow::Result<Bench> {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root)?;
    let stamps = root.join("stamps");
    std::fs::create_dir_all(&stamps)?;
    let cluster = Cluster::start(root, flags)?;
    let (_, leader) = cluster.leader().await?;
    let client = Client::new(&cluster.endpoints(), Duration::from_secs(10))?;
    let defs: Vec<TargetDef> = (0..targets)
        .map(|i| TargetDef {
            name: target_name(i),
            environment: "Bench".into(),
            roles: vec![target_name(i)],
        })
        .collect();
    let endpoints = agent_endpoints(&cluster.endpoints(), &leader, attach);
    let agents = Agents::start(&defs, &endpoints, &root.join("agents"), 1);
    agents.attached(&client).await?;
    let (result, _) = client
        .write(Command::SetSettings(SettingsPatch {
            task_cap: Some(tasks as u32),
            ..SettingsPatch::default()
        }))
        .await?;
    result.context("the cluster refused the task cap")?;
    Ok(Bench {
        cluster,
        agents,
        client,
        stamps,
    })
}

/// Submits the burst through concurrent clients.
async fn submit_all(bench: &Bench, tasks: usize, targets: usize) -> anyhow::Result<()> {
    let requests = (0..tasks)
        .rev()
        .map(|i| deployment(i, i % targets, &bench.stamps))
        .collect();
    crate::bench_scale::write_all(&bench.client, requests).await
}

/// Waits until every task has ended; fails unless all succeeded. Polls the small `summary` read
/// (the full task list, with an explanation per queued task, would load the leader it measures).
pub(crate) async fn drained(client: &Client, tasks: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let summary = client.read("summary").await?;
        let count = |field: &str| summary[field].as_u64().unwrap_or(0) as usize;
        if count("tasks") >= tasks && count("queued_tasks") == 0 && count("running_tasks") == 0 {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_millis(BURST_TIMEOUT_MS),
            "the burst did not finish in {BURST_TIMEOUT_MS} ms ({} queued, {} running)",
            count("queued_tasks"),
            count("running_tasks")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = client.read("tasks").await?;
    let list = list.as_array().cloned().unwrap_or_default();
    anyhow::ensure!(list.len() == tasks, "{} tasks, not {tasks}", list.len());
    let failed = list.iter().filter(|t| t["state"] != "succeeded").count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {tasks} deployments did not succeed"
    );
    Ok(())
}

/// Checks that every deployment ran once; returns all runs.
fn runs_once(
    stamps: &Path,
    tasks: usize,
) -> anyhow::Result<BTreeMap<String, Vec<crate::bench_agents::Stamp>>> {
    let runs = read_stamps(stamps)?;
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in runs.values().flatten() {
        *seen.entry(r.task).or_default() += 1;
    }
    anyhow::ensure!(
        seen.len() == tasks,
        "{} of {tasks} deployments ran",
        seen.len()
    );
    if let Some((task, n)) = seen.iter().find(|(_, n)| **n > 1) {
        anyhow::bail!("task {task} ran {n} times");
    }
    Ok(runs)
}

async fn burst(
    root: &Path,
    flags: &str,
    attach: AttachTo,
    targets: usize,
    tasks: usize,
) -> anyhow::Result<Burst> {
    let bench = set_up(root, flags, attach, targets, tasks)
        .await
        .context("cannot set up the cluster and agents")?;
    let start_us = now_us();
    submit_all(&bench, tasks, targets).await?;
    drained(&bench.client, tasks).await?;
    let runs = runs_once(&bench.stamps, tasks)?;
    bench.agents.stop().await;
    drop(bench.cluster);
    let mut gaps: Vec<f64> = runs.values().flat_map(|r| gaps_ms(r)).collect();
    gaps.sort_by(f64::total_cmp);
    let first = runs
        .values()
        .flatten()
        .map(|r| r.start_us)
        .min()
        .unwrap_or(0);
    let last = runs.values().flatten().map(|r| r.end_us).max().unwrap_or(0);
    Ok(Burst {
        targets,
        tasks,
        gaps: gaps.len(),
        gap_p50_ms: percentile(&gaps, 50.0),
        gap_p99_ms: percentile(&gaps, 99.0),
        gap_max_ms: gaps.last().copied().unwrap_or(0.0),
        tasks_per_s: tasks as f64 / ((last.saturating_sub(first)) as f64 / 1e6).max(1e-6),
        makespan_ms: last.saturating_sub(start_us) as f64 / 1000.0,
    })
}

/// One leader kill under load.
async fn failover(
    root: &Path,
    flags: &str,
    attach: AttachTo,
    tasks: usize,
) -> anyhow::Result<Failover> {
    let mut bench = set_up(root, flags, attach, 1, tasks)
        .await
        .context("cannot set up the cluster and agents")?;
    submit_all(&bench, tasks, 1).await?;
    let file = bench.stamps.join(target_name(0));
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().filter(|l| l.starts_with('E')).count() >= tasks / 3 {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "the burst stalled before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (leader, _) = bench.cluster.leader().await?;
    let killed_us = now_us();
    bench.cluster.kill(leader);
    // The first write that commits after the kill: a new leader serves.
    let survivors: Vec<String> = bench
        .cluster
        .endpoints()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 + 1 != leader)
        .map(|(_, a)| a)
        .collect();
    let probe = Client::new(&survivors, Duration::from_secs(2))?;
    let elected_us = loop {
        if let Ok((Ok(_), _)) = probe.write(Command::Tick).await {
            break now_us();
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "no leader within 120 s of the kill"
        );
    };
    let resumed_us = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let next = crate::bench_agents::parse_stamps(&text)
            .into_iter()
            .map(|r| r.start_us)
            .find(|s| *s > killed_us);
        if let Some(s) = next {
            break s;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "dispatch did not resume within 120 s of the kill"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    bench.cluster.spawn((leader - 1) as usize)?;
    drained(&bench.client, tasks)
        .await
        .context("after the leader was killed and restarted")?;
    runs_once(&bench.stamps, tasks)?;
    bench.agents.stop().await;
    Ok(Failover {
        elected_ms: (elected_us - killed_us) as f64 / 1000.0,
        resumed_ms: (resumed_us.max(elected_us) - killed_us) as f64 / 1000.0,
    })
}

/// One leader kill under load.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Failover {
    /// From the kill to the first committed write through a survivor.
    pub elected_ms: f64,
    /// From the kill to the next script start on the busy target.
    pub resumed_ms: f64,
}

/// Runs the benchmark and prints markdown tables.
pub fn run(args: &DeployBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.tasks >= 3, "--tasks must be at least 3");
    anyhow::ensure!(
        args.targets.iter().all(|t| (1..=args.tasks).contains(t)),
        "--targets must be between 1 and --tasks"
    );
    let root = std::env::temp_dir().join(format!("cuttle-bench-deploy-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut bursts: BTreeMap<usize, Vec<Burst>> = BTreeMap::new();
        for _ in 0..args.repeats {
            for &targets in &args.targets {
                let b = burst(&root, &args.common.server_flags, args.attach, targets, args.tasks).await?;
                eprintln!(
                    "{targets} targets: gap p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} tasks/s",
                    b.gap_p50_ms, b.gap_p99_ms, b.gap_max_ms, b.tasks_per_s
                );
                bursts.entry(targets).or_default().push(b);
            }
        }
        let mut failovers = Vec::new();
        for trial in 0..args.failover_trials {
            let f = failover(&root, &args.common.server_flags, args.attach, args.tasks.min(300))
                .await
                .with_context(|| format!("failover trial {trial}"))?;
            eprintln!(
                "failover trial {trial}: a new leader committed {:.0} ms after the kill, dispatch resumed after {:.0} ms",
                f.elected_ms, f.resumed_ms
            );
            failovers.push(f);
        }
        anyhow::Ok((bursts, failovers))
    });
    let _ = std::fs::remove_dir_all(&root);
    let (bursts, failovers) = result?;
    let attach = match args.attach {
        AttachTo::Leader => "the leader (no relay)",
        AttachTo::Follower => "a follower (every message relayed once more)",
    };
    println!("Agents attach to {attach}.");
    println!();
    println!(
        "| targets | deployments | runs | idle gap p50 ms | p99 ms | max ms | deployments/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (targets, runs) in &bursts {
        let col = |f: fn(&Burst) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        println!(
            "| {targets} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
            args.tasks,
            runs.len(),
            col(|b| b.gap_p50_ms),
            col(|b| b.gap_p99_ms),
            col(|b| b.gap_max_ms),
            col(|b| b.tasks_per_s)
        );
    }
    if !failovers.is_empty() {
        let stat = |f: fn(&Failover) -> f64| {
            let mut v: Vec<f64> = failovers.iter().map(f).collect();
            let max = v.iter().copied().fold(0.0, f64::max);
            (median(&mut v), max)
        };
        let (elected, elected_max) = stat(|f| f.elected_ms);
        let (resumed, resumed_max) = stat(|f| f.resumed_ms);
        println!();
        println!("| failover trials | new leader commits, median ms | max ms | dispatch resumes, median ms | max ms |");
        println!("|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {elected:.0} | {elected_max:.0} | {resumed:.0} | {resumed_max:.0} |",
            failovers.len()
        );
    }
    if let Some(path) = &args.common.json {
        let doc =
            serde_json::json!({"attach": args.attach, "bursts": bursts, "failover_ms": failovers});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
