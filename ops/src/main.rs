//! The `cuttle` binary: argument parsing, printing and exit codes; the commands' logic is in the
//! library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cuttle::cluster::{self, Endpoints};
use cuttle::server::{self, ServerArgs};
use cuttle::simulate::{self, LoadError};
use cuttle::Output;
use std::path::PathBuf;
use std::process::ExitCode;

/// cuttle, a highly available deployment orchestrator.
#[derive(Parser)]
#[command(name = "cuttle", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Replay a deployment scenario through the scheduling core with virtual time.
    ///
    /// Reads a TOML scenario (targets, deployments with their steps and variables, scripted
    /// events), runs it through the real scheduling core with a simulated clock and simulated
    /// agents, and prints a timeline per target, the deployments, what waited and why, and the
    /// makespan. See the files in ops/scenarios/ for examples of the format.
    ///
    /// Exit status: 0 when every deployment succeeded, 1 when some failed, were cancelled or never
    /// finished, 2 when the scenario or the arguments are not valid.
    #[command(after_long_help = SCENARIO_HELP)]
    Simulate(SimulateArgs),
    /// Run a server node of a cluster.
    ///
    /// With an empty data directory, the nodes form the cluster from --initial-cluster by
    /// themselves; starting the same command twice is harmless. Once the data directory holds
    /// state, it rules and --initial-cluster is ignored. Stops on SIGINT or SIGTERM.
    Server(ServerArgs),
    /// Measure a real cluster on this machine.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Run a target agent, or list the registered agents.
    ///
    /// The agent dials out to any server node, registers its target (environments, roles, tenants,
    /// capacity), runs the units the leader dispatches to it and reports back. Stops on SIGINT or
    /// SIGTERM, stopping its running units first.
    #[command(args_conflicts_with_subcommands = true)]
    Agent {
        #[command(subcommand)]
        command: Option<AgentCommand>,
        #[command(flatten)]
        run: cuttle::agent_cmd::AgentArgs,
    },
    /// A first look: a three-node cluster and six agents on this machine, the seeds' scenarios
    /// replayed on them with an account of what ran in parallel and what waited, then the
    /// cluster kept up until Ctrl-C (every other command finds it without --endpoints).
    Dev(cuttle::dev::DevArgs),
    /// Create and list releases.
    Release {
        #[command(subcommand)]
        command: cuttle::deploy::ReleaseCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Deploy a release to an environment: one task per tenant (one for an untenanted project),
    /// checked against the project's lifecycle; prints the task ids.
    ///
    /// Exit status with --follow: 0 only if every task succeeded.
    Deploy {
        #[command(flatten)]
        args: cuttle::deploy::DeployArgs,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Submit, list, show, follow and cancel tasks.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Apply a spec file (environments, tenants, lifecycles, variable sets, projects): checked as
    /// a whole first (every problem with its file, line, column and field), then applied in one
    /// step; applying the same file again changes nothing.
    Apply {
        /// The spec file (TOML).
        #[arg(short = 'f', long = "file", value_name = "SPEC.toml")]
        file: PathBuf,
        /// Only check the file; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How to print the result.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Every lock in use (target isolation, concurrency tags, step and named locks, the task cap,
    /// parallelism, agent capacity) with its holders and its queue in order.
    Locks {
        /// How to print it.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Named locks of the cluster, for scripts and operators.
    Lock {
        #[command(subcommand)]
        command: LockCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Look at and change the cluster's membership.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        endpoints: Endpoints,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Every registered agent: environments, roles, tenants, whether it is attached, what it runs.
    List {
        /// How to print it.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
        #[command(flatten)]
        endpoints: Endpoints,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Queue a task described in a TOML file (project, release, environment, tenant, variables,
    /// steps with roles, scripts, timeouts and locks); prints its id.
    Submit {
        /// The task file.
        #[arg(short = 'f', long = "file", value_name = "TASK.toml")]
        file: PathBuf,
        /// Follow its log until it ends; the exit status is then the task's outcome.
        #[arg(long)]
        follow: bool,
        /// How to print it.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Every task the cluster knows, oldest first, with why a queued task waits.
    List {
        /// Only tasks in this state.
        #[arg(long, value_parser = ["queued", "running", "succeeded", "failed", "cancelled"])]
        state: Option<String>,
        /// Only tasks of this project.
        #[arg(long)]
        project: Option<String>,
        /// How to print it.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// One task with every unit by step and target.
    Show {
        /// The task id.
        id: u64,
        /// How to print it.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// A task's log; with --follow, until the task ends (exit status 0 only if it succeeded).
    Logs {
        /// The task id.
        id: u64,
        /// Keep printing new lines until the task ends.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Cancel a queued or running task.
    Cancel {
        /// The task id.
        id: u64,
    },
}

#[derive(Subcommand)]
enum LockCommand {
    /// Take a named lock (FIFO, fenced, under a lease kept alive while the command runs), run the
    /// command with CUTTLE_FENCING_TOKEN set, release the lock when it ends. If the lease is lost
    /// the command is stopped. Exit status: the command's.
    Run(cuttle::agent_cmd::LockRunArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The whole suite (locks beside etcd, deploy, rush, scale), one scenario after the other,
    /// with the machine, the commands, the tables and the raw results written to one folder.
    All(cuttle::bench_all::AllBenchArgs),
    /// Durable commits per second and latency with several client counts on a three-node loopback
    /// cluster, and leader failover time (kill -9 of the leader until the first successful write).
    Cluster(cuttle::bench::ClusterBenchArgs),
    /// Target hand-off: the idle gap between one deployment's script and the next on a busy
    /// target, deployments per second, and how long dispatch stops when the leader is killed.
    Deploy(cuttle::bench_deploy::DeployBenchArgs),
    /// Seed 002's release rush (QA 1 -> Staging 4 -> Production 30 targets, 50 releases at once,
    /// an automatic lifecycle), without and with bypass, against the ideal makespan of the rules.
    Rush(cuttle::bench_rush::RushBenchArgs),
    /// A queue of 100,000 deployments over 1,000 targets: queueing rate as the queue grows, memory
    /// per node, snapshot size and times, a follower's restart to serving.
    Scale(cuttle::bench_scale::ScaleBenchArgs),
    /// Lock hand-off through the lock API beside etcd 3.4's v3 lock, fresh clusters in the same
    /// run: hand-offs/s, hand-off latency p50/p99, cuttle/etcd ratios. Exit status 3 when a mutual
    /// exclusion check fails.
    Locks(cuttle::bench_locks::LocksBenchArgs),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The leader, the term and every member with its role, matched log index and health.
    Status {
        /// How to print it.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its address, HOST:PORT (start it first with `cuttle server` and no --initial-cluster).
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
    },
    /// Remove a node from the membership.
    Remove {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// Move leadership away from a node before its maintenance.
    TransferLeader {
        /// The node to move leadership away from (the current leader).
        #[arg(long = "from")]
        from_id: u64,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The scenario file (TOML).
    #[arg(short = 'f', long = "file", value_name = "SCENARIO.toml")]
    file: PathBuf,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// The scenario format in brief, after `cuttle simulate --help`.
const SCENARIO_HELP: &str = r#"Scenario format (TOML; unknown fields are errors; times in virtual milliseconds):

  task_cap = 4                      # optional, default 10
  [[targets]]                       # registered at time 0
  name = "web01"
  environments = ["Production"]
  roles = ["web"]
  tenants = ["t1"]                  # optional
  capacity = 10                     # optional: units at once, default 10
  [[tasks]]                         # a deployment
  project = "shop"
  environment = "Production"        # or environments = [...]: one deployment each
  tenant = "t1"                     # optional; or tenants = [...]: one deployment each
  release = "1.0.0"                 # optional
  at_ms = 0                         # optional: submission time
  name = "shop-prod"                # optional: for events; default [tenant/]project/environment
  variables = { OctopusBypassDeploymentMutex = "True" }
      # also Cuttle.BypassDeploymentMutex, Cuttle.Action.MaxParallelism (or Octopus.Action...),
      # Cuttle.Acquire.MaxParallelism (or Octopus.Acquire...), Cuttle.Task.ConcurrencyTag
      # (or Octopus.Task...), Cuttle.Task.HoldTargets; quote dotted names in inline tables
  [[tasks.steps]]                   # run in order
  name = "deploy"
  roles = ["web"]
  duration_ms = 1000                # how long each unit runs
  package = "shop-web"              # optional: acquire it first; acquire_ms = how long
  lock = { name = "iis", scope = "target", capacity = 1 }   # optional step lock
  fail_on = ["web01"]               # optional: the unit on these targets exits 1
  [[events]]                        # optional; each does one thing
  at_ms = 1500
  cancel = "shop-prod"              # or agent_lost = "web01", or task_cap = 2

At one instant, unit ends are applied first, then submissions, then events."#;

/// Exit status for bad input or usage (clap uses it too).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cuttle::style::init();
    let long_running = matches!(
        cli.command,
        Commands::Server(_)
            | Commands::Dev(_)
            | Commands::Bench { .. }
            | Commands::Lock { .. }
            | Commands::Agent { command: None, .. }
    );
    if !long_running {
        // A command whose output is piped into `head` stops quietly when the pipe closes, as
        // Unix tools do; servers and agents keep Rust's default (EPIPE as an error on sockets).
        // SAFETY: setting a signal's disposition to its default, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Commands::Simulate(args) => match run_simulate(&args) {
            Ok(code) => code,
            Err(error) => {
                report(&error);
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Commands::Server(args) => match server::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                report(&error);
                ExitCode::from(EXIT_FAILED)
            }
        },
        Commands::Bench {
            command: BenchCommand::All(args),
        } => exit_with(cuttle::bench_all::run(&args).map(|()| ExitCode::SUCCESS)),
        Commands::Bench {
            command: BenchCommand::Scale(args),
        } => exit_with(cuttle::bench_scale::run(&args).map(|()| ExitCode::SUCCESS)),
        Commands::Bench {
            command: BenchCommand::Rush(args),
        } => exit_with(cuttle::bench_rush::run(&args).map(|()| ExitCode::SUCCESS)),
        Commands::Bench {
            command: BenchCommand::Deploy(args),
        } => exit_with(cuttle::bench_deploy::run(&args).map(|()| ExitCode::SUCCESS)),
        Commands::Bench {
            command: BenchCommand::Locks(args),
        } => exit_with(cuttle::bench_locks::run(&args).map(|clean| {
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        })),
        Commands::Bench {
            command: BenchCommand::Cluster(args),
        } => match cuttle::bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                report(&error);
                ExitCode::from(EXIT_FAILED)
            }
        },
        Commands::Agent { command, run } => {
            let result = match command {
                Some(AgentCommand::List { output, endpoints }) => with_runtime(
                    cuttle::agent_cmd::list(&endpoints, matches!(output, Output::Json)),
                ),
                None => cuttle::agent_cmd::run(&run),
            };
            exit_with(result.map(|()| ExitCode::SUCCESS))
        }
        Commands::Apply {
            file,
            dry_run,
            output,
            endpoints,
        } => match cuttle::spec::load(&file) {
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
            Ok(model) => exit_with(with_runtime(async move {
                let summary = cuttle::spec::summary(&model);
                let changed = if dry_run {
                    None
                } else {
                    Some(cuttle::spec::apply(&endpoints.client()?, model).await?)
                };
                match output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({"file": file.display().to_string(), "dry_run": dry_run, "changed": changed, "counts": summary})
                    ),
                    Output::Human => println!(
                        "{}: {} ({})",
                        file.display(),
                        match changed {
                            None => "valid, nothing applied (dry run)",
                            Some(true) => "applied",
                            Some(false) => "unchanged (already applied)",
                        },
                        summary
                            .iter()
                            .map(|(k, v)| format!("{v} {k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
                Ok(ExitCode::SUCCESS)
            })),
        },
        Commands::Locks { output, endpoints } => exit_with(with_runtime(async move {
            let locks = endpoints.client()?.read("locks").await?;
            match output {
                Output::Json => println!("{locks}"),
                Output::Human => print!("{}", cuttle::views::lock_table(&locks)),
            }
            Ok(ExitCode::SUCCESS)
        })),
        Commands::Dev(args) => exit_with(cuttle::dev::run(&args).map(outcome)),
        Commands::Release { command, endpoints } => {
            exit_with(with_runtime(cuttle::deploy::release(command, &endpoints)).map(outcome))
        }
        Commands::Deploy { args, endpoints } => {
            exit_with(with_runtime(cuttle::deploy::deploy(args, &endpoints)).map(outcome))
        }
        Commands::Task { command, endpoints } => {
            exit_with(with_runtime(run_task(command, endpoints)))
        }
        Commands::Lock {
            command: LockCommand::Run(args),
            endpoints,
        } => exit_with(with_runtime(async move {
            let code = cuttle::agent_cmd::lock_run(&args, &endpoints).await?;
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        })),
        Commands::Cluster { command, endpoints } => match run_cluster(command, &endpoints) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                report(&error);
                ExitCode::from(EXIT_FAILED)
            }
        },
    }
}

/// 0 when everything followed succeeded.
fn outcome(all_succeeded: bool) -> ExitCode {
    if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// Exit status when the cluster refused or could not serve a request.
const EXIT_FAILED: u8 = 1;

fn with_runtime<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn exit_with(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn run_task(command: TaskCommand, endpoints: Endpoints) -> anyhow::Result<ExitCode> {
    use cuttle::task;
    let client = endpoints.client()?;
    match command {
        TaskCommand::Submit {
            file,
            follow,
            output,
        } => {
            let (spec, payload) = task::load(&file)?;
            let (project, environment, tenant) = (
                spec.project.clone(),
                spec.environment.clone(),
                spec.tenant.clone(),
            );
            let id = task::submit(&client, spec, payload).await?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"tasks": [{"id": id, "project": project, "environment": environment, "tenant": tenant}]})
                ),
                Output::Human => println!("task {id} queued"),
            }
            if follow {
                let state = task::logs(&client, id, true, false).await?;
                return Ok(if state == "succeeded" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_FAILED)
                });
            }
        }
        TaskCommand::List {
            state,
            project,
            output,
        } => {
            let mut tasks: Vec<serde_json::Value> = client
                .read("tasks")
                .await?
                .as_array()
                .cloned()
                .unwrap_or_default();
            tasks.retain(|t| {
                state.as_deref().is_none_or(|s| t["state"] == s)
                    && project.as_deref().is_none_or(|p| t["project"] == p)
            });
            match output {
                Output::Json => println!("{}", serde_json::Value::Array(tasks)),
                Output::Human => print!("{}", cuttle::views::task_table(&tasks)),
            }
        }
        TaskCommand::Show { id, output } => {
            let view = client.read(&format!("task:{id}")).await?;
            match output {
                Output::Json => println!("{view}"),
                Output::Human => print!("{}", cuttle::views::task_detail(&view)),
            }
        }
        TaskCommand::Logs { id, follow, output } => {
            let state = task::logs(&client, id, follow, matches!(output, Output::Json)).await?;
            if follow && state != "succeeded" {
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        }
        TaskCommand::Cancel { id } => {
            task::cancel(&client, id).await?;
            println!("task {id}: cancel requested");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_cluster(command: ClusterCommand, endpoints: &Endpoints) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            ClusterCommand::Status { output } => {
                let view = cluster::status(endpoints).await?;
                match output {
                    Output::Human => print!("{}", cluster::status_text(&view)),
                    Output::Json => println!("{}", serde_json::to_string(&view)?),
                }
            }
            ClusterCommand::Add { id, addr } => {
                let reply = endpoints
                    .client()?
                    .add_node(id, &addr)
                    .await
                    .with_context(|| format!("cannot add node {id}"))?;
                println!(
                    "node {id} added; voters {:?}, learners {:?}",
                    reply.voters, reply.learners
                );
            }
            ClusterCommand::Remove { id } => {
                let reply = endpoints
                    .client()?
                    .remove_node(id)
                    .await
                    .with_context(|| format!("cannot remove node {id}"))?;
                println!(
                    "node {id} removed; voters {:?}, learners {:?}",
                    reply.voters, reply.learners
                );
            }
            ClusterCommand::TransferLeader { from_id } => {
                let reply = endpoints
                    .client()?
                    .transfer_leader(from_id)
                    .await
                    .context("cannot move leadership")?;
                println!("leader is now node {}", reply.new_leader_id);
            }
        }
        Ok(())
    })
}

fn run_simulate(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let scenario = simulate::load(&args.file)?;
    let result = simulate::simulate(&scenario)
        .with_context(|| format!("cannot simulate {}", args.file.display()))?;
    match args.output {
        Output::Human => print!("{}", simulate::report::human(&result)),
        Output::Json => println!("{}", result.to_json()),
    }
    Ok(if result.all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints an error to stderr: every problem of a scenario with its line, or the cause chain.
fn report(error: &anyhow::Error) {
    if let Some(LoadError::Invalid(diagnostics)) = error.downcast_ref::<LoadError>() {
        for diagnostic in diagnostics {
            eprintln!("error: {diagnostic}\n{}", diagnostic.snippet());
        }
        if diagnostics.len() > 1 {
            eprintln!("error: the scenario has {} problems", diagnostics.len());
        }
        return;
    }
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
