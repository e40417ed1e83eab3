//! `cuttle task`: submit a task from a TOML file, list tasks, show one with its units, follow its
//! log, cancel it — against any node of the cluster.

use anyhow::{bail, Context as _};
use cuttle_node::client::Client;
use cuttle_raft::ledger::{Request, StepPayload, TaskPayload, Variable};
use cuttle_raft::sched::vars::{self, ScopedValue};
use cuttle_raft::sched::{Command, Event, LockScope, StepLockSpec, StepSpec, TaskId, TaskSpec};
use serde::Deserialize;
use std::time::Duration;

/// A task file: one deployment with its steps, scripts and variables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// The project.
    pub project: String,
    /// The release deployed.
    pub release: String,
    /// The environment.
    pub environment: String,
    /// The tenant, for a tenanted deployment.
    pub tenant: Option<String>,
    /// Variables: special ones (`Cuttle.BypassDeploymentMutex`, ...) steer scheduling; all reach
    /// the scripts.
    #[serde(default)]
    pub variables: Vec<FileVariable>,
    /// The steps, run in order.
    pub steps: Vec<FileStep>,
}

/// `[[variables]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVariable {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Masked in logs.
    #[serde(default)]
    pub sensitive: bool,
}

/// `[[steps]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStep {
    /// Name, unique in the task.
    pub name: String,
    /// Roles of the targets it runs on.
    pub roles: Vec<String>,
    /// The script (bash by default on the agent).
    #[serde(default)]
    pub script: String,
    /// Stop the script after this long (0: never).
    #[serde(default)]
    pub timeout_ms: u64,
    /// A package to acquire first, with the script that acquires it.
    pub package: Option<String>,
    /// The acquisition script.
    #[serde(default)]
    pub acquire_script: String,
    /// A step lock.
    pub lock: Option<FileLock>,
}

/// `lock = { name, scope, capacity }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLock {
    /// Name.
    pub name: String,
    /// `target` or `cluster`.
    #[serde(default = "target_scope")]
    pub scope: String,
    /// Holders at once.
    #[serde(default = "one")]
    pub capacity: u32,
}

fn target_scope() -> String {
    "target".into()
}

fn one() -> u32 {
    1
}

/// Reads a task file into what the cluster queues.
pub fn load(path: &std::path::Path) -> anyhow::Result<(TaskSpec, TaskPayload)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: TaskFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid task file", path.display()))?;
    build(file).with_context(|| format!("{} is not a valid task", path.display()))
}

/// Turns a task file into a spec and a payload, checking both.
pub fn build(file: TaskFile) -> anyhow::Result<(TaskSpec, TaskPayload)> {
    let scoped: Vec<ScopedValue> = file
        .variables
        .iter()
        .filter(|v| {
            let name = vars::canonical(&v.name);
            vars::NAMES.contains(&name)
        })
        .map(|v| ScopedValue::new(&v.name, &v.value))
        .collect();
    let special = vars::task_variables(&scoped)?;
    let mut steps = Vec::new();
    let mut payload = TaskPayload::default();
    for (index, step) in file.steps.into_iter().enumerate() {
        let lock = match step.lock {
            None => None,
            Some(lock) => Some(StepLockSpec {
                name: lock.name,
                scope: match lock.scope.as_str() {
                    "target" => LockScope::Target,
                    "cluster" => LockScope::Cluster,
                    other => bail!(
                        "steps[{index}].lock.scope = {other:?}: use \"target\" or \"cluster\""
                    ),
                },
                capacity: lock.capacity,
            }),
        };
        steps.push(StepSpec {
            name: step.name,
            roles: step.roles,
            max_parallelism: special.action_max_parallelism,
            package: step.package,
            lock,
        });
        payload.steps.push(StepPayload {
            script: step.script,
            acquire_script: step.acquire_script,
            timeout_ms: step.timeout_ms,
        });
    }
    payload.variables = file
        .variables
        .into_iter()
        .map(|v| Variable {
            name: v.name,
            value: v.value,
            sensitive: v.sensitive,
        })
        .collect();
    let spec = TaskSpec {
        project: file.project,
        release: file.release,
        environment: file.environment,
        tenant: file.tenant,
        concurrency_tag: special.concurrency_tag,
        bypass: special.bypass,
        hold_targets: special.hold_targets,
        acquire_max_parallelism: special.acquire_max_parallelism,
        steps,
    };
    spec.validate()?;
    payload.validate(&spec)?;
    Ok((spec, payload))
}

/// Queues a task; returns its id.
pub async fn submit(client: &Client, spec: TaskSpec, payload: TaskPayload) -> anyhow::Result<u64> {
    let (result, _) = client
        .write(Request::SubmitDeployment { spec, payload })
        .await
        .context("cannot submit the task")?;
    let events = result.context("the cluster refused the task")?;
    events
        .iter()
        .find_map(|e| match e {
            Event::TaskQueued { task } => Some(task.0),
            _ => None,
        })
        .context("the cluster accepted the task but named no id")
}

/// Cancels a task.
pub async fn cancel(client: &Client, id: u64) -> anyhow::Result<()> {
    let (result, _) = client
        .write(Command::CancelTask { task: TaskId(id) })
        .await
        .context("cannot cancel the task")?;
    result.with_context(|| format!("the cluster refused to cancel task {id}"))?;
    Ok(())
}

/// Prints a task's log; with `follow`, keeps printing until the task ends. Returns the task's final
/// (or current) state.
pub async fn logs(client: &Client, id: u64, follow: bool, json: bool) -> anyhow::Result<String> {
    let mut from = 0u64;
    loop {
        let page = client
            .read(&format!("task-log:{id}:{from}"))
            .await
            .with_context(|| format!("cannot read the log of task {id}"))?;
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        for line in &lines {
            if json {
                println!("{line}");
            } else {
                let unit = line["unit"]
                    .as_u64()
                    .map(|u| format!("unit {u}"))
                    .unwrap_or_else(|| "task".into());
                println!(
                    "{} {:<8} {:<6} {}",
                    format_ms(line["ts_ms"].as_u64().unwrap_or(0)),
                    unit,
                    line["stream"].as_str().unwrap_or(""),
                    line["text"].as_str().unwrap_or("")
                );
            }
        }
        from = page["next"].as_u64().unwrap_or(from);
        let state = page["state"].as_str().unwrap_or("").to_string();
        if !follow || (page["ended"].as_bool() == Some(true) && lines.is_empty()) {
            return Ok(state);
        }
        if lines.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
pub fn format_ms(ms: u64) -> String {
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}
