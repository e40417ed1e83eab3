//! `cuttle-chaos`: runs the Jepsen-style harness (`run`), checks a recorded history again
//! (`check`), and removes network namespaces a killed harness left behind (`cleanup`).
//! Exit status: 0 every checker passed, 1 a checker failed, 2 the run could not be carried out.

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use cuttle_chaos::run::{NetMode, RunConfig};
use cuttle_chaos::schedule::Nemesis;
use cuttle_chaos::{check, history, net, procs, run};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "cuttle-chaos",
    version,
    about = "Fault-injection harness for cuttle"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start a cluster and agents, run the workload under faults, check the history, report.
    Run(RunArgs),
    /// Check a recorded history.jsonl again and print the verdicts.
    Check { history: PathBuf },
    /// Remove network namespaces of harness processes that no longer run.
    Cleanup,
    /// Print the fault plan a run would draw, as JSON, without running anything.
    Plan {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 5)]
        agents: usize,
        #[arg(long, default_value_t = 2)]
        lockers: usize,
        #[arg(long, default_value_t = 60)]
        time: u64,
        #[arg(long, default_value = "partition,kill,pause,agent")]
        nemesis: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Plan as without network namespaces (loopback).
        #[arg(long)]
        loopback: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value_t = 5)]
    agents: usize,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// kill, pause, partition, agent, rolling (comma-separated), or none.
    #[arg(long, default_value = "partition,kill,pause,agent")]
    nemesis: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The `cuttle` binary (default: beside this one).
    #[arg(long)]
    cuttle: Option<PathBuf>,
    /// Run folders are made here.
    #[arg(long, default_value = "chaos-runs")]
    out: PathBuf,
    /// auto (namespaces when root), netns, loopback.
    #[arg(long, default_value = "auto")]
    net: String,
    #[arg(long, default_value_t = 3)]
    task_cap: u32,
    /// Seconds after the final heal within which every task must end.
    #[arg(long, default_value_t = 90)]
    liveness_bound: u64,
    #[arg(long, default_value_t = 3)]
    submitters: u32,
    #[arg(long, default_value_t = 2)]
    lockers: u32,
    /// UNSAFE, for the self-test only: sets CUTTLE_UNSAFE_TEST_FAULT on the agents.
    #[arg(long)]
    unsafe_agent_fault: Option<String>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM set `stop`: the run heals, stops its processes, removes its namespaces.
fn stop_flag() -> Arc<AtomicBool> {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            flag.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    stop
}

fn config(args: RunArgs) -> anyhow::Result<RunConfig> {
    let cuttle = match args.cuttle {
        Some(path) => path,
        None => {
            let exe = std::env::current_exe().context("locating this binary")?;
            procs::cuttle_beside(&exe).with_context(|| {
                format!(
                    "no cuttle binary beside {}: build it (cargo build --release -p cuttle) or pass --cuttle PATH",
                    exe.display()
                )
            })?
        }
    };
    let net = match args.net.as_str() {
        "auto" => NetMode::Auto,
        "netns" => NetMode::Namespaces,
        "loopback" => NetMode::Loopback,
        other => bail!("--net {other}: use auto, netns or loopback"),
    };
    if args.nodes == 0 || args.agents == 0 {
        bail!("--nodes and --agents must be at least 1");
    }
    Ok(RunConfig {
        nodes: args.nodes,
        agents: args.agents,
        time: Duration::from_secs(args.time),
        nemeses: Nemesis::parse_list(&args.nemesis).map_err(anyhow::Error::msg)?,
        seed: args.seed,
        cuttle,
        out: args.out,
        unsafe_fault: args.unsafe_agent_fault,
        net,
        task_cap: args.task_cap,
        liveness_bound: Duration::from_secs(args.liveness_bound),
        submitters: args.submitters,
        lockers: args.lockers,
    })
}

fn print_verdicts(verdicts: &[check::Verdict]) {
    for v in verdicts {
        let word = if v.valid { "valid  " } else { "INVALID" };
        println!(
            "{word} {:<24} checked {:>5}, violations {}",
            v.checker, v.checked, v.violations
        );
        for offender in v.offenders.iter().take(5) {
            println!("        {offender}");
        }
        for note in &v.notes {
            println!("        ({note})");
        }
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("cuttle-chaos: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<bool> {
    match Cli::parse().command {
        Commands::Run(args) => {
            let config = config(args)?;
            let started = std::time::Instant::now();
            let outcome = run::run(&config, stop_flag())?;
            print_verdicts(&outcome.verdicts);
            println!(
                "run folder: {} ({} s, partitions {})",
                outcome.dir.display(),
                started.elapsed().as_secs(),
                if outcome.partitions {
                    "on"
                } else {
                    "off: not root, loopback network"
                }
            );
            Ok(outcome.valid)
        }
        Commands::Check { history: path } => {
            let events =
                history::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let verdicts = check::check_all(&events);
            print_verdicts(&verdicts);
            Ok(check::all_valid(&verdicts))
        }
        Commands::Plan {
            nodes,
            agents,
            lockers,
            time,
            nemesis,
            seed,
            loopback,
        } => {
            let nemeses = Nemesis::parse_list(&nemesis).map_err(anyhow::Error::msg)?;
            let plan = cuttle_chaos::schedule::plan(&cuttle_chaos::schedule::PlanInput {
                seed,
                time_ms: time * 1000,
                nemeses: &nemeses,
                nodes,
                agents,
                lockers,
                partitions: !loopback,
            });
            println!("{}", serde_json::to_string_pretty(&plan)?);
            Ok(true)
        }
        Commands::Cleanup => {
            for name in net::cleanup_stale() {
                println!("removed network namespace {name}");
            }
            Ok(true)
        }
    }
}
