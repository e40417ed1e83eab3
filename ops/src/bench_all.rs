//! `cuttle bench all` (issue 7's suite): every scenario in one command, each in a child process
//! of this same binary (`cuttle bench locks|deploy|rush|scale`, with their defaults or the quick
//! set), one after the other so that they never share the machine. It writes, in one folder, each
//! scenario's tables (`SCENARIO.md`) and raw results (`SCENARIO.json`), `report.md` (the machine,
//! the commit, every command and its tables, ready for `docs/benchmarks.md`) and `results.json`
//! (the same as one document).

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The flags of `cuttle bench all`.
#[derive(clap::Args, Debug)]
pub struct AllBenchArgs {
    /// The folder for the results (created; files in it are replaced).
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The scenarios to run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "locks,deploy,rush,scale")]
    pub only: Vec<Scenario>,
    /// Shorter runs (one repetition, smaller bursts): a check that everything works, not figures
    /// to quote.
    #[arg(long)]
    pub quick: bool,
}

/// One scenario of the suite.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Lock hand-off beside etcd 3.4 (scenario 1).
    Locks,
    /// Target hand-off and failover under load (scenarios 2 and 5).
    Deploy,
    /// Seed 002's rush against its ideal makespan (scenario 4).
    Rush,
    /// 100,000 deployments over 1,000 targets (scenario 3).
    Scale,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Locks => "locks",
            Scenario::Deploy => "deploy",
            Scenario::Rush => "rush",
            Scenario::Scale => "scale",
        }
    }

    /// The scenario's own flags (without `--json`).
    fn flags(self, quick: bool) -> Vec<&'static str> {
        match (self, quick) {
            (Scenario::Locks, false) => vec![],
            (Scenario::Locks, true) => vec!["--seconds", "3", "--repeats", "1"],
            (Scenario::Deploy, false) => vec![],
            (Scenario::Deploy, true) => {
                vec!["--tasks", "200", "--repeats", "1", "--failover-trials", "1"]
            }
            (Scenario::Rush, false) => vec![],
            (Scenario::Rush, true) => vec!["--releases", "10", "--repeats", "1"],
            (Scenario::Scale, false) => vec![],
            (Scenario::Scale, true) => vec!["--tasks", "10000", "--chunks", "2"],
        }
    }
}

/// Runs the suite; fails on the first scenario that fails (its output so far is kept).
pub fn run(args: &AllBenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let machine = machine();
    let mut report = format!(
        "# cuttle benchmarks, {}\n\n{}\n",
        if args.quick { "quick run" } else { "full run" },
        machine_table(&machine)
    );
    let mut results = serde_json::Map::new();
    for scenario in &args.only {
        let name = scenario.name();
        let json_path = args.out.join(format!("{name}.json"));
        let flags = scenario.flags(args.quick);
        let shown = format!("cuttle bench {name} {}", flags.join(" "));
        eprintln!("== {shown}");
        let started = Instant::now();
        let output = Command::new(&exe)
            .arg("bench")
            .arg(name)
            .args(&flags)
            .arg("--json")
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot start `{shown}`"))?;
        let tables = String::from_utf8_lossy(&output.stdout).into_owned();
        let seconds = started.elapsed().as_secs_f64();
        write(&args.out.join(format!("{name}.md")), &tables)?;
        report += &format!("## {name}\n\n```sh\n{shown}\n```\n\n{tables}\n({seconds:.0} s)\n\n");
        write(&args.out.join("report.md"), &report)?;
        anyhow::ensure!(
            output.status.success(),
            "`{shown}` failed ({}); its tables so far are in {}",
            output.status,
            args.out.join(format!("{name}.md")).display()
        );
        let raw = std::fs::read_to_string(&json_path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .unwrap_or(serde_json::Value::Null);
        results.insert(
            name.to_string(),
            serde_json::json!({ "command": shown, "seconds": seconds, "results": raw }),
        );
    }
    let doc = serde_json::json!({ "machine": machine, "quick": args.quick, "scenarios": results });
    write(
        &args.out.join("results.json"),
        &serde_json::to_string_pretty(&doc)?,
    )?;
    println!("{report}");
    eprintln!(
        "wrote {} and {}",
        args.out.join("report.md").display(),
        args.out.join("results.json").display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// What every figure depends on: the processor, the cores, the memory, the kernel, the disk under
/// the temporary folder, the commit and the date.
fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown", str::trim)
        .to_string();
    let memory_kib = crate::bench_scale::kib_field("/proc/meminfo", "MemTotal:").unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    serde_json::json!({
        "cpu": cpu, "cores": cores, "memory_gib": memory_kib / (1 << 20), "kernel": kernel,
        "temp_dir": std::env::temp_dir(), "commit": commit, "date": date,
        "cluster": "three cuttle server processes on 127.0.0.1, durable writes (log fsynced before acknowledgement), default timings",
    })
}

fn machine_table(machine: &serde_json::Value) -> String {
    let mut table = String::from("| | |\n|---|---|\n");
    for key in [
        "cpu",
        "cores",
        "memory_gib",
        "kernel",
        "temp_dir",
        "commit",
        "date",
        "cluster",
    ] {
        let value = match &machine[key] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        table += &format!("| {key} | {value} |\n");
    }
    table
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}
