//! After the faults: waiting for quiescence, the final reads of every task, and gathering what the
//! targets wrote (stamps, journals) into the history.

use crate::history::{
    now_us, parse_lock_stamp, parse_stamp, Event, FinalTask, FinalUnit, Recorder,
};
use crate::procs::{Clients, Procs};
use std::path::Path;
use std::time::{Duration, Instant};

/// Tasks read one by one (`task show`) at the end at most; beyond, only their states are kept.
pub const FINAL_SHOWS_MAX: usize = 2_000;
/// One read's deadline.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Every task the cluster lists, as `(id, state)`, or `None` when it could not be read.
pub fn task_states(clients: &Clients) -> Option<Vec<(u64, String)>> {
    let out = clients.cli(&["task", "list", "--output", "json"], READ_TIMEOUT);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    Some(
        json.as_array()?
            .iter()
            .filter_map(|t| Some((t["id"].as_u64()?, t["state"].as_str()?.to_string())))
            .collect(),
    )
}

fn ended(state: &str) -> bool {
    crate::check::lost::FINAL_STATES.contains(&state)
}

/// Polls until every task has ended or `deadline`; records `quiescent` (1 or 0).
pub fn wait_quiescent(clients: &Clients, recorder: &Recorder, deadline: Instant) -> bool {
    loop {
        if let Some(states) = task_states(clients) {
            if states.iter().all(|(_, s)| ended(s)) {
                recorder.marker("quiescent", 1);
                return true;
            }
        }
        if Instant::now() >= deadline {
            recorder.marker("quiescent", 0);
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Reads every task (with its units) into `Final` events.
pub fn final_reads(clients: &Clients, recorder: &Recorder) {
    let Some(states) = task_states(clients) else {
        return;
    };
    for (index, (id, state)) in states.into_iter().enumerate() {
        let mut task = FinalTask {
            t_us: now_us(),
            task: id,
            state,
            units: Vec::new(),
        };
        if index < FINAL_SHOWS_MAX {
            let out = clients.cli(
                &["task", "show", &id.to_string(), "--output", "json"],
                READ_TIMEOUT,
            );
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&out.stdout) {
                task.state = json["state"].as_str().unwrap_or(&task.state).to_string();
                task.units = json["units"]
                    .as_array()
                    .map(|units| {
                        units
                            .iter()
                            .map(|u| FinalUnit {
                                unit: u["id"].as_u64().unwrap_or(0),
                                attempt: u["attempt"].as_u64().unwrap_or(0) as u32,
                                target: u["target"].as_str().unwrap_or("").to_string(),
                                state: u["state"].as_str().unwrap_or("").to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
        }
        recorder.push(Event::Final(task));
    }
}

/// Adds the stamps of `stamps/` and every agent's journal to the history; returns lines that
/// could not be read (a torn last line of a killed script is possible and harmless).
pub fn gather(procs: &Procs, stamps: &Path, recorder: &Recorder) -> Vec<String> {
    let mut unreadable = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(stamps)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let locks = file.file_name().is_some_and(|n| n == "locks.log");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let event = if locks {
                parse_lock_stamp(line).map(Event::LockStamp)
            } else {
                parse_stamp(line).map(Event::Stamp)
            };
            match event {
                Ok(event) => recorder.push(event),
                Err(error) => unreadable.push(error.to_string()),
            }
        }
    }
    for agent in &procs.agents {
        let path = agent.dir.join("journal.jsonl");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(record) => recorder.push(Event::Journal {
                    agent: agent.name.clone(),
                    record,
                }),
                Err(error) => unreadable.push(format!("{}: {error}", path.display())),
            }
        }
    }
    unreadable
}
