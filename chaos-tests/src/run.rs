//! One run end to end: the network and the processes, the task cap, the agents attached, the
//! workload under the fault plan, the final heal, quiescence, the final reads, the history, the
//! verdicts and the report, all in one folder.

use crate::check::{self, Verdict};
use crate::history::{self, now_us, Recorder};
use crate::net::{self, Net};
use crate::procs::{self, Clients, Procs, CLIENT_HOST};
use crate::schedule::{self, Nemesis, PlanInput};
use crate::{collect, nemesis, report, workload};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the hosts are networked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// Namespaces when root, loopback otherwise.
    Auto,
    Namespaces,
    Loopback,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub nodes: usize,
    pub agents: usize,
    pub time: Duration,
    pub nemeses: Vec<Nemesis>,
    pub seed: u64,
    pub cuttle: PathBuf,
    /// The run's folder is made inside.
    pub out: PathBuf,
    /// `CUTTLE_UNSAFE_TEST_FAULT` for the agents (the self-test's broken switch).
    pub unsafe_fault: Option<String>,
    pub net: NetMode,
    pub task_cap: u32,
    /// After the final heal every task must end within this.
    pub liveness_bound: Duration,
    pub submitters: u32,
    pub lockers: u32,
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    pub dir: PathBuf,
    pub verdicts: Vec<Verdict>,
    pub valid: bool,
    /// Whether links could be cut (partitions ran).
    pub partitions: bool,
}

/// Why a run could not be carried out (as opposed to a checker finding a violation).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        what: what.to_string(),
        source,
    }
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
fn wait(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn attached(clients: &Clients, count: usize) -> bool {
    let out = clients.cli(
        &["agent", "list", "--output", "json"],
        Duration::from_secs(5),
    );
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|j| {
            j.as_array().map(|a| {
                a.iter()
                    .filter(|x| x["connected"] == true && x["online"] == true)
                    .count()
            })
        })
        .is_some_and(|n| n == count)
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (civil-from-days, proleptic Gregorian calendar).
pub fn utc_stamp(unix_s: u64) -> String {
    let (days, rest) = ((unix_s / 86_400) as i64, unix_s % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// One spare node when the membership nemesis runs.
fn spares(config: &RunConfig) -> usize {
    usize::from(config.nemeses.contains(&Nemesis::Member))
}

fn network(config: &RunConfig) -> Result<Net, RunError> {
    let mut hosts = procs::node_names(config.nodes + spares(config));
    hosts.extend(procs::agent_names(config.agents));
    hosts.push(CLIENT_HOST.to_string());
    hosts.extend(procs::locker_names(config.lockers as usize));
    let use_namespaces = match config.net {
        NetMode::Loopback => false,
        NetMode::Namespaces => true,
        NetMode::Auto => net::namespaces_available(),
    };
    if !use_namespaces {
        return Ok(Net::loopback());
    }
    Net::namespaces(&hosts).map_err(|e| RunError::Setup(format!("network namespaces: {e}")))
}

/// Starts the nodes, sets the task cap, starts the agents and waits until they are attached.
fn bring_up(procs: &mut Procs, config: &RunConfig, dir: &Path) -> Result<(), RunError> {
    for index in 0..config.nodes {
        procs.start_node(index).map_err(io("starting a node"))?;
    }
    let clients = procs.clients();
    if !wait(Duration::from_secs(30), || clients.leader().is_some()) {
        return Err(RunError::Setup("no leader within 30 s; see logs/".into()));
    }
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        format!("[cluster]\ntask_cap = {}\n", config.task_cap),
    )
    .map_err(io("writing the spec"))?;
    let spec_text = spec.to_string_lossy().to_string();
    let mut refusal = String::new();
    let applied = wait(Duration::from_secs(30), || {
        let out = clients.cli(&["apply", "-f", &spec_text], Duration::from_secs(10));
        refusal = out.stderr;
        out.code == Some(0)
    });
    if !applied {
        return Err(RunError::Setup(format!("setting the task cap: {refusal}")));
    }
    procs.recorder.marker("task_cap", config.task_cap as u64);
    for index in 0..config.agents {
        procs.start_agent(index).map_err(io("starting an agent"))?;
    }
    if !wait(Duration::from_secs(30), || {
        attached(&clients, config.agents)
    }) {
        return Err(RunError::Setup(
            "the agents did not attach within 30 s".into(),
        ));
    }
    Ok(())
}

/// Carries out one run; `stop` (Ctrl-C) cuts the fault phase short and skips the liveness phase.
pub fn run(config: &RunConfig, stop: Arc<AtomicBool>) -> Result<Outcome, RunError> {
    let name = format!(
        "{}-seed{}-{}",
        utc_stamp(now_us() / 1_000_000),
        config.seed,
        std::process::id()
    );
    let dir = config.out.join(name);
    std::fs::create_dir_all(&dir).map_err(io("creating the run folder"))?;
    // Absolute, because the unit scripts run in the agents' work directories and stamp into
    // this folder: with a relative `--out` their stamps went nowhere and the stamp-based
    // checkers passed with nothing checked.
    let dir = std::fs::canonicalize(&dir).map_err(io("resolving the run folder"))?;
    let recorder = Recorder::default();
    let net = network(config)?;
    let partitions = net.can_partition();
    let mut procs = Procs::new(
        config.cuttle.clone(),
        net,
        dir.clone(),
        (config.nodes, spares(config)),
        config.agents,
        recorder.clone(),
    );
    if let Some(fault) = &config.unsafe_fault {
        procs
            .agent_env
            .push(("CUTTLE_UNSAFE_TEST_FAULT".into(), fault.clone()));
    }
    let plan = schedule::plan(&PlanInput {
        seed: config.seed,
        time_ms: config.time.as_millis() as u64,
        nemeses: &config.nemeses,
        nodes: config.nodes,
        agents: config.agents,
        lockers: config.lockers as usize,
        partitions,
    });
    let plan_json = serde_json::to_string_pretty(&plan).unwrap_or_default();
    std::fs::write(dir.join("plan.json"), plan_json).map_err(io("writing the plan"))?;
    bring_up(&mut procs, config, &dir)?;
    recorder.marker(
        "liveness_bound_ms",
        config.liveness_bound.as_millis() as u64,
    );
    recorder.marker("start", 0);
    let clients = procs.clients();
    let lockers = procs::locker_names(config.lockers as usize)
        .iter()
        .map(|host| procs.clients_at(host))
        .collect();
    let load = workload::Workload::new(clients.clone(), lockers, recorder.clone(), &dir)
        .map_err(io("preparing the workload"))?;
    let threads = load.start(config.seed, config.submitters, config.lockers);
    let began = Instant::now();
    nemesis::run(&mut procs, &plan, began, began + config.time, &stop);
    nemesis::sleep_until(began + config.time, &stop);
    load.stop.store(true, Ordering::SeqCst);
    if let Err(error) = nemesis::heal(&mut procs) {
        eprintln!("cuttle-chaos: final heal: {error}");
    }
    for thread in threads {
        let _ = thread.join();
    }
    recorder.marker("healed", 0);
    if !stop.load(Ordering::SeqCst) {
        collect::wait_quiescent(&clients, &recorder, Instant::now() + config.liveness_bound);
        collect::final_reads(&clients, &recorder);
    }
    procs.stop_all();
    let unreadable = collect::gather(&procs, &load.stamps, &recorder);
    recorder.marker("end", 0);
    drop(procs);
    let events = recorder.events();
    history::write(&dir.join("history.jsonl"), &events).map_err(io("writing the history"))?;
    let verdicts = check::check_all(&events);
    let valid = check::all_valid(&verdicts);
    let verdicts_json = serde_json::to_string_pretty(&verdicts).unwrap_or_default();
    std::fs::write(dir.join("verdicts.json"), verdicts_json).map_err(io("writing verdicts"))?;
    let title = format!(
        "cuttle chaos run: seed {}, {} nodes, {} agents, {} s, nemeses {:?}{}",
        config.seed,
        config.nodes,
        config.agents,
        config.time.as_secs(),
        config.nemeses,
        match &config.unsafe_fault {
            Some(f) => format!(", UNSAFE fault {f}"),
            None => String::new(),
        }
    );
    let html = report::html(&title, &events, &verdicts, &unreadable);
    std::fs::write(dir.join("report.html"), html).map_err(io("writing the report"))?;
    Ok(Outcome {
        dir,
        verdicts,
        valid,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_folders_are_named_by_utc_time() {
        assert_eq!(super::utc_stamp(0), "19700101T000000Z");
        assert_eq!(super::utc_stamp(951_782_400 + 3_661), "20000229T010101Z");
    }
}
