//! The demo `cuttle dev` replays on its agents: applies ops/demo/dev-spec.toml, creates and
//! deploys the seeds' releases in the seeds' order, follows the tasks until every one has ended
//! (noting why each waited), and prints the [`super::account`].

use super::account::{account, Observed};
use crate::deploy;
use anyhow::Context as _;
use cuttle_node::client::Client;
use cuttle_raft::ledger::Request;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The demo spec, built into the binary and written to the data directory for the user to read.
pub const SPEC: &str = include_str!("../../demo/dev-spec.toml");
/// How long the demo may take before it gives up waiting.
const DEMO_TIMEOUT_MS: u64 = 120_000;
/// Pause between polls.
const POLL_MS: u64 = 150;

fn titles() -> BTreeMap<String, String> {
    [
        ("web01", "seed 001: bypass True, True, False, True, True"),
        (
            "server1",
            "seeds 003/004: five tenants on one server, step b one at a time",
        ),
        ("qa-1", "seed 002: an automatic lifecycle, QA first"),
        ("staging-1", "seed 002: promoted to Staging by itself"),
        ("staging-2", "seed 002: the target-scoped Greeting"),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_string(), s.to_string()))
    .collect()
}

fn release(project: &str) -> Request {
    Request::CreateRelease {
        project: project.into(),
        version: "1.0".into(),
    }
}

fn deploy_request(project: &str, all_tenants: bool) -> Request {
    Request::Deploy {
        project: project.into(),
        release: "1.0".into(),
        environment: "Production".into(),
        tenants: Vec::new(),
        all_tenants,
    }
}

/// Runs the demo; returns whether every deployment succeeded.
pub async fn run(client: &Client, dir: &Path) -> anyhow::Result<bool> {
    let spec_file = dir.join("demo-spec.toml");
    std::fs::write(&spec_file, SPEC)
        .with_context(|| format!("cannot write {}", spec_file.display()))?;
    let model = crate::spec::parse(SPEC, "demo-spec.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::spec::apply(client, model).await?;
    println!("applied the demo spec ({})", spec_file.display());
    for p in [
        "project1", "project2", "project3", "project4", "project5", "hosted",
    ] {
        deploy::write(client, release(p), &format!("create release 1.0 of {p}")).await?;
    }
    let mut queued = Vec::new();
    for p in ["project1", "project2", "project3", "project4", "project5"] {
        queued
            .extend(deploy::write(client, deploy_request(p, false), &format!("deploy {p}")).await?);
    }
    println!("seed 001: deployed project1..project5 to web01 in that order");
    queued.extend(deploy::write(client, deploy_request("hosted", true), "deploy hosted").await?);
    println!("seeds 003/004: deployed hosted 1.0 to tenants T1..T5 on server1");
    queued.extend(deploy::write(client, release("shop"), "create release 1.0 of shop").await?);
    println!("seed 002: created shop 1.0; its lifecycle deploys it to QA, then Staging");
    println!("following {} tasks…", queued.len());
    let observed = watch(client).await?;
    print!("\n{}", account(&observed, &titles()));
    let all = observed.tasks.iter().all(|t| t["state"] == "succeeded");
    Ok(all)
}

fn ended(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

/// Polls until every task has ended, noting the first reason each task and unit waited.
async fn watch(client: &Client) -> anyhow::Result<Observed> {
    let start = Instant::now();
    let mut observed = Observed::default();
    let mut reported: BTreeSet<u64> = BTreeSet::new();
    loop {
        let tasks = client
            .read("tasks")
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in &tasks {
            let id = t["id"].as_u64().unwrap_or(0);
            let state = t["state"].as_str().unwrap_or("?");
            if let Some(why) = t["waiting_for"].as_str() {
                observed
                    .task_waits
                    .entry(id)
                    .or_insert_with(|| why.to_string());
            }
            if state == "running" {
                let view = client.read(&format!("task:{id}")).await?;
                for u in view["units"].as_array().into_iter().flatten() {
                    if let (Some(unit), Some(why)) = (u["id"].as_u64(), u["waiting_for"].as_str()) {
                        observed
                            .unit_waits
                            .entry(unit)
                            .or_insert_with(|| why.to_string());
                    }
                }
            }
            if ended(state) && reported.insert(id) {
                println!(
                    "  task {id} {}{} → {} {}",
                    t["project"].as_str().unwrap_or("?"),
                    t["tenant"]
                        .as_str()
                        .map(|t| format!("/{t}"))
                        .unwrap_or_default(),
                    t["environment"].as_str().unwrap_or("?"),
                    crate::style::state(state)
                );
            }
        }
        // A success queues the next phase's tasks in the same step as it ends, so once every
        // task has ended no promotion is still to come.
        if !tasks.is_empty()
            && tasks
                .iter()
                .all(|t| ended(t["state"].as_str().unwrap_or("")))
        {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_millis(DEMO_TIMEOUT_MS),
            "the demo did not finish in {DEMO_TIMEOUT_MS} ms: see `cuttle task list` and the logs"
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    let tasks = client
        .read("tasks")
        .await?
        .as_array()
        .cloned()
        .unwrap_or_default();
    for t in tasks {
        let id = t["id"].as_u64().unwrap_or(0);
        observed
            .tasks
            .push(client.read(&format!("task:{id}")).await?);
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_spec_is_valid() {
        let model = crate::spec::parse(super::SPEC, "demo-spec.toml").expect("valid");
        assert_eq!(model.projects.len(), 7);
    }
}
