//! Agents for the deployment benchmarks: real agents (the library `cuttle agent` runs, speaking
//! the real protocol, journaling and running scripts under bash) started as tasks of the bench
//! process, many per process, so that dozens of targets cost no dozens of processes. Each script
//! stamps its own start and end (bash's `$EPOCHREALTIME`, no fork) into a file per target, from
//! which the benchmarks read what ran when.

use anyhow::Context as _;
use cuttle_node::agent::AgentConfig;
use cuttle_node::client::Client;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the agents may take to attach.
const ATTACH_TIMEOUT_MS: u64 = 30_000;

/// One target to run.
pub(crate) struct TargetDef {
    pub name: String,
    pub environment: String,
    pub roles: Vec<String>,
}

/// Running agents; stopped by [`Agents::stop`].
pub(crate) struct Agents {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    count: usize,
}

impl Agents {
    /// Starts one agent per target on the current runtime, working under `dir`, each running
    /// `max_concurrency` units at once at most.
    pub(crate) fn start(
        targets: &[TargetDef],
        endpoints: &[String],
        dir: &Path,
        max_concurrency: u32,
    ) -> Agents {
        let (stop, _) = watch::channel(false);
        let handles = targets
            .iter()
            .map(|t| {
                let config = AgentConfig {
                    name: t.name.clone(),
                    endpoints: endpoints.to_vec(),
                    environments: vec![t.environment.clone()],
                    roles: t.roles.clone(),
                    work_dir: dir.join(&t.name),
                    max_concurrency,
                    cancel_grace_ms: 1_000,
                    ..AgentConfig::default()
                };
                let mut rx = stop.subscribe();
                tokio::spawn(async move {
                    let name = config.name.clone();
                    let shutdown = async move {
                        let _ = rx.wait_for(|s| *s).await;
                    };
                    if let Err(e) = cuttle_node::agent::run(config, shutdown).await {
                        eprintln!("bench agent {name} failed: {e}");
                    }
                })
            })
            .collect();
        Agents {
            stop,
            handles,
            count: targets.len(),
        }
    }

    /// Waits until every agent is attached to the leader.
    pub(crate) async fn attached(&self, client: &Client) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(agents) = client.read("agents").await {
                let n = agents
                    .as_array()
                    .map(|a| a.iter().filter(|a| a["connected"] == true).count())
                    .unwrap_or(0);
                if n == self.count {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_millis(ATTACH_TIMEOUT_MS),
                "the bench agents did not attach within {ATTACH_TIMEOUT_MS} ms"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every agent and waits for them.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// The script line that stamps `S` (before `body`) and `E` (after it) with the task id into
/// `STAMPS_DIR/<target>`.
pub(crate) fn stamped(stamps: &Path, body: &str) -> String {
    let file = format!("{}/$CUTTLE_TARGET", stamps.display());
    format!(
        "echo \"S $EPOCHREALTIME $CUTTLE_TASK_ID\" >> \"{file}\"; {body}; echo \"E $EPOCHREALTIME $CUTTLE_TASK_ID\" >> \"{file}\""
    )
}

/// One script run as its stamps tell: start and end in microseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stamp {
    pub task: u64,
    pub start_us: u64,
    pub end_us: u64,
}

fn micros(text: &str) -> Option<u64> {
    // `$EPOCHREALTIME` is seconds with six decimals (a locale may use a comma).
    let (s, us) = text.split_once(['.', ','])?;
    Some(s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?)
}

/// Parses one target's stamp file into runs in start order.
pub(crate) fn parse_stamps(text: &str) -> Vec<Stamp> {
    let mut starts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut runs = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(time), Some(task)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Some(time), Ok(task)) = (micros(time), task.parse::<u64>()) else {
            continue;
        };
        match kind {
            "S" => {
                starts.insert(task, time);
            }
            "E" => {
                if let Some(start_us) = starts.remove(&task) {
                    runs.push(Stamp {
                        task,
                        start_us,
                        end_us: time,
                    });
                }
            }
            _ => {}
        }
    }
    runs.sort_by_key(|r| r.start_us);
    runs
}

/// Every target's runs, from the stamp files in `dir`.
pub(crate) fn read_stamps(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<Stamp>>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path: PathBuf = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)?;
        out.insert(name, parse_stamps(&text));
    }
    Ok(out)
}

/// The idle gaps on one target, in milliseconds: each run's start less the previous run's end.
/// Overlapping runs (which exclusive units never are) give no gap.
pub(crate) fn gaps_ms(runs: &[Stamp]) -> Vec<f64> {
    runs.windows(2)
        .filter(|w| w[1].start_us >= w[0].end_us)
        .map(|w| (w[1].start_us - w[0].end_us) as f64 / 1000.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_pair_by_task_and_gaps_follow_start_order() {
        let text = "S 100.000100 1\nE 100.000900 1\nS 100.003900 2\nS 100.004000 3\nE 100.004500 2\nE 100.009000 3\ngarbage\nS 1,5 4\n";
        let runs = parse_stamps(text);
        assert_eq!(runs.len(), 3, "task 4 never ended");
        assert_eq!(
            runs[0],
            Stamp {
                task: 1,
                start_us: 100_000_100,
                end_us: 100_000_900
            }
        );
        // 2 and 3 overlap: only the gap from 1 to 2 counts.
        assert_eq!(gaps_ms(&runs), vec![3.0]);
    }
}
