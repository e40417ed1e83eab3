//! `cuttle bench rush`: seed 002's release rush. QA (one target) -> Staging (four) -> Production
//! (thirty), an automatic lifecycle, 200 projects of which 50 get a release at the same moment,
//! each deployment one step that sleeps a little on every target of its environment. The makespan
//! (first release created to the last script's end) is compared with the ideal makespan of the
//! same rules: the real replicated state machine driven on virtual time with every script taking
//! exactly its sleep and nothing else ([`ideal_makespan_ms`]). The ratio shows what the cluster
//! itself costs. With and without the bypass variable, to show what bypass buys.

use crate::bench::{median, Cluster};
use crate::bench_agents::{read_stamps, stamped, Agents, TargetDef};
use anyhow::Context as _;
use cuttle_node::client::Client;
use cuttle_raft::ledger::model::{
    ClusterSettings, Environment, Lifecycle, Model, Phase, Project, Step, VariableDef, VariableSet,
};
use cuttle_raft::ledger::{Replicated, Request};
use cuttle_raft::sched::{Command, Event, TargetSpec};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Projects in the model.
const PROJECTS: usize = 200;
/// Units one target runs at once (its agent's capacity): enough for every shared deployment.
const TARGET_CAPACITY: u32 = 64;

/// The flags of `cuttle bench rush`.
#[derive(clap::Args, Debug)]
pub struct RushBenchArgs {
    /// Releases created at once (one each for the first N projects).
    #[arg(long, default_value_t = 50)]
    pub releases: usize,
    /// How long each deployment's script sleeps on each target, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub step_ms: u64,
    /// Runs per variant (without and with bypass); the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[command(flatten)]
    pub common: crate::bench::BenchCommon,
}

/// The targets: (name, environment).
fn targets() -> Vec<(String, &'static str)> {
    let mut out = vec![("qa-0".to_string(), "QA")];
    out.extend((0..4).map(|i| (format!("stg-{i}"), "Staging")));
    out.extend((0..30).map(|i| (format!("prod-{i:02}"), "Production")));
    out
}

/// The rush's model; `script` is each step's script.
pub fn model(bypass: bool, script: &str) -> Model {
    let env = |name: &str| Environment {
        name: name.into(),
        description: None,
    };
    let phase = |name: &str| Phase {
        name: name.into(),
        environments: vec![name.into()],
        automatic: true,
    };
    let projects = (0..PROJECTS)
        .map(|i| Project {
            name: format!("p{i:03}"),
            lifecycle: Some("rush".into()),
            tenanted: false,
            variable_sets: if bypass {
                vec!["bypass".into()]
            } else {
                Vec::new()
            },
            // Every target of an environment at once (the default limit is 10): the rush then
            // measures target hand-offs, not the parallelism limit.
            variables: vec![VariableDef {
                name: "Octopus.Action.MaxParallelism".into(),
                value: "30".into(),
                ..VariableDef::default()
            }],
            steps: vec![Step {
                name: "deploy".into(),
                roles: vec!["rush".into()],
                script: script.into(),
                package: None,
                acquire_script: String::new(),
                timeout_ms: 0,
                lock: None,
            }],
        })
        .collect();
    Model {
        cluster: ClusterSettings {
            task_cap: Some(1_000),
        },
        environments: vec![env("Production"), env("QA"), env("Staging")],
        tenants: Vec::new(),
        lifecycles: vec![Lifecycle {
            name: "rush".into(),
            phases: vec![phase("QA"), phase("Staging"), phase("Production")],
        }],
        variable_sets: vec![VariableSet {
            name: "bypass".into(),
            variables: vec![VariableDef {
                name: "OctopusBypassDeploymentMutex".into(),
                value: "True".into(),
                ..VariableDef::default()
            }],
        }],
        projects,
    }
}

fn create(i: usize) -> Request {
    Request::CreateRelease {
        project: format!("p{i:03}"),
        version: "1.0".into(),
    }
}

/// The makespan of the rush under the cluster's own rules with zero overhead: the replicated
/// state machine on virtual time, every unit taking exactly `step_ms` from its dispatch.
pub fn ideal_makespan_ms(bypass: bool, releases: usize, step_ms: u64) -> anyhow::Result<u64> {
    let mut state = Replicated::default();
    let mut events = Vec::new();
    let mut pending: VecDeque<Request> = VecDeque::new();
    pending.push_back(Request::ApplySpec(model(bypass, "sleep")));
    for (name, environment) in targets() {
        pending.push_back(Request::Core(Command::UpsertTarget(TargetSpec {
            name,
            environments: vec![environment.into()],
            roles: vec!["rush".into()],
            tenants: Vec::new(),
            capacity: TARGET_CAPACITY,
        })));
    }
    pending.extend((0..releases).map(create));
    let mut running: BinaryHeap<Reverse<(u64, u64, u32)>> = BinaryHeap::new();
    let mut now_ms = 0;
    let mut ended = 0usize;
    loop {
        while let Some(request) = pending.pop_front() {
            state
                .apply(now_ms, request, &mut events)
                .map_err(|r| anyhow::anyhow!("the ideal run refused a request: {r}"))?;
            for event in &events {
                match event {
                    Event::UnitDispatched { unit, attempt, .. } => {
                        pending.push_back(Request::Core(Command::UnitStarted {
                            unit: *unit,
                            attempt: *attempt,
                        }));
                        running.push(Reverse((now_ms + step_ms, unit.0, *attempt)));
                    }
                    Event::TaskEnded { .. } => ended += 1,
                    _ => {}
                }
            }
        }
        let Some(Reverse((at, unit, attempt))) = running.pop() else {
            break;
        };
        now_ms = at;
        pending.push_back(Request::Core(Command::UnitFinished {
            unit: cuttle_raft::sched::UnitId(unit),
            attempt,
            exit_code: 0,
        }));
    }
    anyhow::ensure!(
        ended == releases * 3,
        "the ideal run ended {ended} deployments, not {}",
        releases * 3
    );
    Ok(now_ms)
}

/// One real rush.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rush {
    /// Whether the projects had the bypass variable.
    pub bypass: bool,
    /// Releases created at once.
    pub releases: usize,
    /// First release requested to the last script's end.
    pub makespan_ms: f64,
    /// The same rules with zero overhead.
    pub ideal_ms: f64,
}

async fn rush(root: &Path, args: &RushBenchArgs, bypass: bool) -> anyhow::Result<Rush> {
    let _ = std::fs::remove_dir_all(root);
    let stamps = root.join("stamps");
    std::fs::create_dir_all(&stamps)?;
    let cluster = Cluster::start(root, &args.common.server_flags)?;
    let (_, leader) = cluster.leader().await?;
    let client = Client::new(&cluster.endpoints(), Duration::from_secs(10))?;
    let defs: Vec<TargetDef> = targets()
        .into_iter()
        .map(|(name, environment)| TargetDef {
            name,
            environment: environment.into(),
            roles: vec!["rush".into()],
        })
        .collect();
    // The agents list the leader first (as `cuttle bench deploy` does by default).
    let endpoints = crate::bench_deploy::agent_endpoints(
        &cluster.endpoints(),
        &leader,
        crate::bench_deploy::AttachTo::Leader,
    );
    let agents = Agents::start(&defs, &endpoints, &root.join("agents"), TARGET_CAPACITY);
    agents.attached(&client).await?;
    let sleep = format!("sleep {}", args.step_ms as f64 / 1000.0);
    let (result, _) = client
        .write(Request::ApplySpec(model(bypass, &stamped(&stamps, &sleep))))
        .await?;
    result.context("the cluster refused the rush's spec")?;
    let start_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut creators = tokio::task::JoinSet::new();
    for i in 0..args.releases {
        let client = client.clone();
        creators.spawn(async move {
            let (result, _) = client.write(create(i)).await?;
            result.with_context(|| format!("the cluster refused release 1.0 of p{i:03}"))?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = creators.join_next().await {
        done??;
    }
    crate::bench_deploy::drained(&client, args.releases * 3).await?;
    agents.stop().await;
    drop(cluster);
    let runs = read_stamps(&stamps)?;
    let units: usize = runs.values().map(Vec::len).sum();
    let expected = args.releases * (1 + 4 + 30);
    anyhow::ensure!(units == expected, "{units} scripts ran, not {expected}");
    let last = runs
        .values()
        .flatten()
        .map(|r| r.end_us)
        .max()
        .unwrap_or(start_us);
    Ok(Rush {
        bypass,
        releases: args.releases,
        makespan_ms: (last - start_us) as f64 / 1000.0,
        ideal_ms: ideal_makespan_ms(bypass, args.releases, args.step_ms)? as f64,
    })
}

/// Runs the benchmark and prints a markdown table.
pub fn run(args: &RushBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=PROJECTS).contains(&args.releases),
        "--releases must be between 1 and {PROJECTS}"
    );
    let root = std::env::temp_dir().join(format!("cuttle-bench-rush-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut runs: BTreeMap<bool, Vec<Rush>> = BTreeMap::new();
        for _ in 0..args.repeats {
            for bypass in [false, true] {
                let r = rush(&root, args, bypass).await?;
                eprintln!(
                    "bypass {bypass}: makespan {:.0} ms, ideal {:.0} ms, ratio {:.3}",
                    r.makespan_ms,
                    r.ideal_ms,
                    r.makespan_ms / r.ideal_ms
                );
                runs.entry(bypass).or_default().push(r);
            }
        }
        anyhow::Ok(runs)
    });
    let _ = std::fs::remove_dir_all(&root);
    let runs = result?;
    println!("| bypass | releases | runs | makespan, median ms | ideal ms | makespan / ideal (median of runs) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (bypass, list) in &runs {
        let mut makespans: Vec<f64> = list.iter().map(|r| r.makespan_ms).collect();
        let mut ratios: Vec<f64> = list.iter().map(|r| r.makespan_ms / r.ideal_ms).collect();
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.3} |",
            if *bypass { "on" } else { "off" },
            args.releases,
            list.len(),
            median(&mut makespans),
            list[0].ideal_ms,
            median(&mut ratios)
        );
    }
    if let Some(path) = &args.common.json {
        std::fs::write(path, serde_json::to_string_pretty(&runs)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ideal_rush_pipelines_exclusive_deployments_and_bypass_shares_targets() {
        // Without bypass, QA runs the releases one after another, and each later environment
        // follows one step behind: (releases + 2) steps.
        assert_eq!(super::ideal_makespan_ms(false, 5, 100).unwrap(), 700);
        // With bypass every target runs them together: three steps.
        assert_eq!(super::ideal_makespan_ms(true, 5, 100).unwrap(), 300);
    }
}
