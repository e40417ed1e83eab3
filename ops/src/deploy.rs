//! `cuttle release create|list` and `cuttle deploy`: the requests that turn the applied model into
//! tasks (the cluster checks the lifecycle and resolves the variables), and what they print.

use crate::cluster::Endpoints;
use crate::follow;
use crate::task::format_ms;
use crate::Output;
use anyhow::Context as _;
use cuttle_node::client::Client;
use cuttle_raft::ledger::Request;
use cuttle_raft::sched::Event;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// `cuttle release ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Create a release of a project; when the first phase of its lifecycle is automatic, it is
    /// deployed there at once (to every tenant of a tenanted project) and the tasks are printed.
    #[command(disable_version_flag = true)]
    Create {
        /// The project, as the applied spec names it.
        #[arg(long)]
        project: String,
        /// The new release's version, unique in the project (e.g. 1.4.2).
        #[arg(long)]
        version: String,
        /// Follow the automatic deployments until they end; the exit status is then 0 only if all
        /// of them succeeded.
        #[arg(long)]
        follow: bool,
        /// How to print the result.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Every release, oldest first per project, with where it succeeded and its next phase.
    List {
        /// Only this project's releases.
        #[arg(long)]
        project: Option<String>,
        /// How to print them.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
}

/// The flags of `cuttle deploy`.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The project.
    #[arg(long)]
    pub project: String,
    /// The release's version.
    #[arg(long)]
    pub release: String,
    /// The environment; its lifecycle phase must have been reached.
    #[arg(long = "env", value_name = "ENVIRONMENT")]
    pub environment: String,
    /// A tenant to deploy to (tenanted projects); repeat for several.
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// Every tenant of the spec (tenanted projects).
    #[arg(long, conflicts_with = "tenants")]
    pub all_tenants: bool,
    /// Show live progress until the tasks end; the exit status is then 0 only if all succeeded.
    #[arg(long)]
    pub follow: bool,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

/// The tasks a request queued, as `{"id", "project", "environment", "tenant"}` objects.
async fn queued(client: &Client, events: &[Event]) -> anyhow::Result<Vec<Value>> {
    let ids: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskQueued { task } => Some(task.0),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Reads are linearizable: every task the write queued is in the list.
    let tasks = client
        .read("tasks")
        .await
        .context("cannot read the queued tasks")?;
    let mut out = Vec::new();
    for id in ids {
        let task = tasks
            .as_array()
            .and_then(|list| list.iter().find(|t| t["id"] == id))
            .with_context(|| format!("task {id} was queued but is not in the task list"))?;
        out.push(json!({
            "id": id,
            "project": task["project"],
            "release": task["release"],
            "environment": task["environment"],
            "tenant": task["tenant"],
        }));
    }
    Ok(out)
}

pub(crate) async fn write(
    client: &Client,
    request: Request,
    what: &str,
) -> anyhow::Result<Vec<Value>> {
    let (result, _) = client
        .write(request)
        .await
        .with_context(|| format!("cannot {what}"))?;
    let events = result.with_context(|| format!("the cluster refused to {what}"))?;
    queued(client, &events).await
}

fn print_tasks(tasks: &[Value], output: Output, extra: Value) {
    match output {
        Output::Json => {
            let mut doc = extra;
            doc["tasks"] = Value::Array(tasks.to_vec());
            println!("{doc}");
        }
        Output::Human => {
            for t in tasks {
                let tenant = t["tenant"]
                    .as_str()
                    .map(|t| format!(" for {t}"))
                    .unwrap_or_default();
                println!(
                    "task {} queued: {} {} to {}{tenant}",
                    t["id"],
                    t["project"].as_str().unwrap_or("?"),
                    t["release"].as_str().unwrap_or("?"),
                    t["environment"].as_str().unwrap_or("?"),
                );
            }
        }
    }
}

async fn finish(
    client: &Client,
    tasks: &[Value],
    follow_them: bool,
    output: Output,
) -> anyhow::Result<bool> {
    if !follow_them || tasks.is_empty() {
        return Ok(true);
    }
    let ids: Vec<u64> = tasks.iter().filter_map(|t| t["id"].as_u64()).collect();
    follow::follow(client, &ids, output == Output::Json).await
}

/// `cuttle release ...`; returns whether everything it followed succeeded.
pub async fn release(command: ReleaseCommand, endpoints: &Endpoints) -> anyhow::Result<bool> {
    let client = endpoints.client()?;
    match command {
        ReleaseCommand::Create {
            project,
            version,
            follow,
            output,
        } => {
            let what = format!("create release {version} of {project}");
            let request = Request::CreateRelease {
                project: project.clone(),
                version: version.clone(),
            };
            let tasks = write(&client, request, &what).await?;
            if output == Output::Human {
                println!("release {version} of {project} created");
            }
            print_tasks(
                &tasks,
                output,
                json!({"project": project, "version": version}),
            );
            finish(&client, &tasks, follow, output).await
        }
        ReleaseCommand::List { project, output } => {
            let mut releases: Vec<Value> = client
                .read("releases")
                .await?
                .as_array()
                .cloned()
                .unwrap_or_default();
            releases.retain(|r| project.as_deref().is_none_or(|p| r["project"] == p));
            match output {
                Output::Json => println!("{}", json!({"releases": releases})),
                Output::Human => print!("{}", release_table(&releases)),
            }
            Ok(true)
        }
    }
}

/// `cuttle deploy`; returns whether everything it followed succeeded.
pub async fn deploy(args: DeployArgs, endpoints: &Endpoints) -> anyhow::Result<bool> {
    let client = endpoints.client()?;
    let what = format!(
        "deploy release {} of {} to {}",
        args.release, args.project, args.environment
    );
    let request = Request::Deploy {
        project: args.project.clone(),
        release: args.release.clone(),
        environment: args.environment.clone(),
        tenants: args.tenants.clone(),
        all_tenants: args.all_tenants,
    };
    let tasks = write(&client, request, &what).await?;
    print_tasks(&tasks, args.output, json!({}));
    finish(&client, &tasks, args.follow, args.output).await
}

/// `cuttle release list`: one row per release and tenant.
pub fn release_table(releases: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:<10} {:<12} {:<6} {:<10} {:<24} NEXT PHASE",
        "PROJECT", "VERSION", "CREATED", "TASKS", "TENANT", "SUCCEEDED IN"
    );
    for r in releases {
        let head = format!(
            "{:<18} {:<10} {:<12} {:<6}",
            r["project"].as_str().unwrap_or("?"),
            r["version"].as_str().unwrap_or("?"),
            r["created_ms"].as_u64().map(format_ms).unwrap_or_default(),
            r["deployments"].as_u64().unwrap_or(0)
        );
        let succeeded = r["succeeded"].as_array().cloned().unwrap_or_default();
        if succeeded.is_empty() {
            let _ = writeln!(out, "{head} {:<10} {:<24} -", "-", "-");
        }
        for s in succeeded {
            let envs: Vec<&str> = s["environments"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{head} {:<10} {:<24} {}",
                s["tenant"].as_str().unwrap_or("-"),
                envs.join(","),
                s["next_phase"].as_str().unwrap_or("-")
            );
        }
        if let Some(error) = r["promotion_error"].as_str() {
            let _ = writeln!(out, "    automatic deployment failed: {error}");
        }
    }
    out
}
