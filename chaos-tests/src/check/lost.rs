//! Nothing lost, nothing run twice: acknowledged submissions end, each (unit, attempt) runs at
//! most once (a unit dispatched again after its agent was lost is a new attempt and may run
//! again), and every unit of a task the cluster calls succeeded really ran to its end.

use super::intervals::UnitRun;
use super::{Findings, Verdict};
use crate::history::{Event, OpPhase};
use std::collections::{BTreeMap, BTreeSet};

/// The final states of tasks.
pub const FINAL_STATES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// Every acknowledged submission, and every task the cluster knows, reaches a final state.
pub fn acknowledged_tasks_end(history: &[Event]) -> Verdict {
    let mut findings = Findings::new(
        "acknowledged-tasks-end",
        "every acknowledged deployment, and every task the cluster reports, reaches a final state",
    );
    let finals: BTreeMap<u64, &str> = history
        .iter()
        .filter_map(|e| match e {
            Event::Final(task) => Some((task.task, task.state.as_str())),
            _ => None,
        })
        .collect();
    let acknowledged: BTreeSet<u64> = history
        .iter()
        .filter_map(|e| match e {
            Event::Op(op) if op.f == "submit" && op.phase == OpPhase::Ok => op.task,
            _ => None,
        })
        .collect();
    let all: BTreeSet<u64> = acknowledged.iter().chain(finals.keys()).copied().collect();
    findings.checked(all.len());
    for task in all {
        match finals.get(&task) {
            None => findings.violation(format!(
                "task {task} was acknowledged but the cluster no longer reports it"
            )),
            Some(state) if !FINAL_STATES.contains(state) => {
                findings.violation(format!("task {task} is still {state} after the run"))
            }
            Some(_) => {}
        }
    }
    findings.verdict()
}

/// No (unit, attempt) starts twice, on the targets (stamps) or in the agents' journals.
pub fn no_attempt_runs_twice(runs: &[UnitRun], history: &[Event]) -> Verdict {
    let mut findings = Findings::new(
        "no-attempt-runs-twice",
        "each (unit, attempt) runs at most once",
    );
    findings.checked(runs.len());
    for run in runs.iter().filter(|r| r.starts > 1) {
        findings.violation(format!("{} started {} times", run.describe(), run.starts));
    }
    let mut journal_starts: BTreeMap<(u64, u64), Vec<&str>> = BTreeMap::new();
    for event in history {
        let Event::Journal { agent, record } = event else {
            continue;
        };
        if record["event"] != "start" {
            continue;
        }
        let key = (
            record["unit"].as_u64().unwrap_or(0),
            record["attempt"].as_u64().unwrap_or(0),
        );
        journal_starts.entry(key).or_default().push(agent);
    }
    for ((unit, attempt), agents) in journal_starts {
        if agents.len() > 1 {
            findings.violation(format!(
                "journals record {} starts of unit {unit} attempt {attempt} (agents {})",
                agents.len(),
                agents.join(", ")
            ));
        }
    }
    findings.verdict()
}

/// Every unit that the cluster reports succeeded has a run on its target that stamped its end.
pub fn succeeded_units_ran(runs: &[UnitRun], history: &[Event]) -> Verdict {
    let mut findings = Findings::new(
        "succeeded-units-ran",
        "every unit reported succeeded ran its script to the end on its target",
    );
    let ran: BTreeMap<(u64, u32), &UnitRun> =
        runs.iter().map(|r| ((r.unit, r.attempt), r)).collect();
    for event in history {
        let Event::Final(task) = event else { continue };
        for unit in task.units.iter().filter(|u| u.state == "succeeded") {
            findings.checked(1);
            match ran.get(&(unit.unit, unit.attempt)) {
                Some(run) if run.end_stamped => {}
                Some(run) => findings.violation(format!(
                    "task {} reports unit {} attempt {} succeeded, but its script never stamped an end: {}",
                    task.task, unit.unit, unit.attempt, run.describe()
                )),
                None => findings.violation(format!(
                    "task {} reports unit {} attempt {} on {} succeeded, but it never ran there",
                    task.task, unit.unit, unit.attempt, unit.target
                )),
            }
        }
    }
    findings.verdict()
}
