//! The discrete-event loop: a queue of timed happenings, each applied to the real scheduling core
//! with the virtual time, and what the core decides recorded.
//!
//! # Order of simultaneous happenings
//! The queue is ordered by `(time, class, order)`:
//! 1. **unit ends** (class 0), by unit id (the order the core created the units);
//! 2. **submissions** (class 1), by their place in the scenario;
//! 3. **scripted events** (class 2), by their place in the scenario.
//!
//! So at one instant, work that finished by then releases its locks first, then new deployments
//! queue, then the operator's events act on the state that results (a cancel can name a deployment
//! submitted at the same instant). A unit of zero duration ends at the instant it is dispatched,
//! before the submissions and events of that instant that are still to come.
//!
//! # What units do
//! A dispatched unit ends `duration_ms` later (`acquire_ms` for a package acquisition) with exit
//! code 0, or 1 on a target its step lists in `fail_on`. When the core asks a running unit to stop
//! (its task failed or was cancelled), the agent stops it at once: it ends at that instant with
//! exit code [`CANCELLED_EXIT_CODE`]. A lost agent's units are ended by the core; they report
//! nothing.
//!
//! # Layout
//! This file holds the public API ([`simulate`], [`SimError`]) and the simulator's state; `run`
//! is the event loop, `record` the bookkeeping of unit records and waits, and `finish` the summing
//! up into a [`SimResult`].

mod finish;
mod record;
mod run;

use crate::simulate::result::{ScriptedRecord, SimResult, TaskRecord, UnitRecord, WaitRecord};
use crate::simulate::scenario::Scenario;
use cuttle_raft::sched::{Rejection, Scheduler, TargetId, TaskId, UnitId};
use std::collections::BTreeMap;

/// The exit code a simulated agent reports for a unit it stopped on request.
pub const CANCELLED_EXIT_CODE: i32 = 130;

/// The scheduling core refused a command the simulation needed. A scenario from
/// [`load`](crate::simulate::load) never causes one; a hand-built one may.
#[derive(Debug, thiserror::Error)]
#[error("at {at_ms} ms the scheduling core refused to {what}")]
pub struct SimError {
    /// Virtual time.
    pub at_ms: u64,
    /// What the simulation asked, in words.
    pub what: String,
    /// The core's answer.
    #[source]
    pub rejection: Rejection,
}

/// Runs a scenario through the scheduling core to its end, and returns what happened.
pub fn simulate(scenario: &Scenario) -> Result<SimResult, SimError> {
    let mut sim = Sim::new(scenario);
    sim.setup()?;
    sim.run()?;
    Ok(sim.finish())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at_ms: u64,
    class: u8,
    order: u64,
}

const CLASS_UNIT_END: u8 = 0;
const CLASS_SUBMIT: u8 = 1;
const CLASS_SCRIPTED: u8 = 2;

#[derive(Clone, Copy, Debug)]
enum Happening {
    UnitEnd {
        unit: UnitId,
        attempt: u32,
        exit_code: i32,
    },
    Submit(usize),
    Scripted(usize),
}

struct Sim<'a> {
    scenario: &'a Scenario,
    sched: Scheduler,
    now: u64,
    queue: BTreeMap<Key, Happening>,
    /// The queued end of each dispatched unit.
    unit_ends: BTreeMap<UnitId, Key>,
    target_names: BTreeMap<TargetId, String>,
    tasks: Vec<TaskRecord>,
    task_index: BTreeMap<TaskId, usize>,
    /// Deployment index of each task record.
    task_deployment: Vec<usize>,
    units: Vec<UnitRecord>,
    unit_index: BTreeMap<UnitId, usize>,
    /// How many of each task's units were seen.
    units_seen: BTreeMap<TaskId, usize>,
    waits: Vec<WaitRecord>,
    open_task_waits: BTreeMap<TaskId, usize>,
    open_unit_waits: BTreeMap<UnitId, usize>,
    scripted: Vec<ScriptedRecord>,
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario) -> Sim<'a> {
        Sim {
            scenario,
            sched: Scheduler::default(),
            now: 0,
            queue: BTreeMap::new(),
            unit_ends: BTreeMap::new(),
            target_names: BTreeMap::new(),
            tasks: Vec::new(),
            task_index: BTreeMap::new(),
            task_deployment: Vec::new(),
            units: Vec::new(),
            unit_index: BTreeMap::new(),
            units_seen: BTreeMap::new(),
            waits: Vec::new(),
            open_task_waits: BTreeMap::new(),
            open_unit_waits: BTreeMap::new(),
            scripted: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::result::TaskResult;
    use crate::simulate::scenario::parse;

    const TARGET: &str =
        "[[targets]]\nname = \"web01\"\nenvironments = [\"P\"]\nroles = [\"web\"]\n";

    fn task(project: &str, at_ms: u64, steps: &str) -> String {
        format!("[[tasks]]\nproject = \"{project}\"\nenvironment = \"P\"\nat_ms = {at_ms}\n{steps}")
    }

    fn step(name: &str, duration_ms: u64, extra: &str) -> String {
        format!("[[tasks.steps]]\nname = \"{name}\"\nroles = [\"web\"]\nduration_ms = {duration_ms}\n{extra}")
    }

    fn run(text: &str) -> SimResult {
        simulate(&parse(text, "t.toml").expect("valid scenario")).expect("simulates")
    }

    #[test]
    fn unit_ends_come_before_submissions_at_the_same_instant() {
        let text = format!(
            "{TARGET}{}{}",
            task("a", 0, &step("s", 1000, "")),
            task("b", 1000, &step("s", 1000, ""))
        );
        let result = run(&text);
        assert_eq!(result.units[1].dispatched_ms, Some(1000));
        assert!(
            result.waits.is_empty(),
            "b never waits: a's unit ended first"
        );
        assert_eq!(result.makespan_ms, 2000);
    }

    #[test]
    fn acquire_then_run_and_zero_durations() {
        let text = format!(
            "{TARGET}{}",
            task(
                "a",
                0,
                &format!(
                    "{}{}",
                    step("s", 300, "package = \"pkg\"\nacquire_ms = 200\n"),
                    step("t", 0, "")
                )
            )
        );
        let result = run(&text);
        let spans: Vec<(&str, Option<u64>, Option<u64>)> = result
            .units
            .iter()
            .map(|u| (u.kind.as_str(), u.dispatched_ms, u.ended_ms))
            .collect();
        assert_eq!(
            spans,
            [
                ("acquire", Some(0), Some(200)),
                ("run", Some(200), Some(500)),
                ("run", Some(500), Some(500))
            ]
        );
        assert!(result.all_succeeded);
    }

    #[test]
    fn a_cancel_after_the_end_has_no_effect() {
        let text = format!(
            "{TARGET}{}[[events]]\nat_ms = 5000\ncancel = \"a/P\"\n",
            task("a", 0, &step("s", 1000, ""))
        );
        let result = run(&text);
        assert_eq!(
            result.events[0].effect,
            "no effect: task 1 has already ended"
        );
        assert!(result.all_succeeded);
    }

    #[test]
    fn a_task_cap_of_0_leaves_tasks_unfinished() {
        let text = format!(
            "task_cap = 0\n{TARGET}{}",
            task("a", 0, &step("s", 1000, ""))
        );
        let result = run(&text);
        assert_eq!(result.tasks[0].outcome, TaskResult::Unfinished);
        assert!(!result.all_succeeded);
        assert_eq!(result.waits[0].until_ms, None);
        assert_eq!(result.makespan_ms, 0);
    }
}
