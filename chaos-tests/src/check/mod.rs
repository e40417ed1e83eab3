//! The checkers: pure functions from a history to verdicts. Each states one property, says whether
//! the history keeps it, and names the operations or runs that break it.
//!
//! - [`safety`]: exclusive units alone on their target; one task per concurrency tag at a time;
//!   step and named locks within capacity; running tasks within the task cap.
//! - [`fifo`]: on each target, no unit is granted ahead of an older one when either is exclusive.
//! - [`lost`]: every acknowledged submission reaches a final state; no (unit, attempt) runs twice;
//!   every unit of a succeeded task ran to its end.
//! - [`fencing`]: tokens rise strictly per lock as each agent saw them, and per named lock as its
//!   holders saw them.
//! - [`liveness`]: after the final heal, everything queued ended within the stated bound.
//! - [`lock_linear`]: the named locks linearize as semaphores with rising tokens, checked with
//!   the generic search of [`wgl`].

pub mod fencing;
pub mod fifo;
pub mod intervals;
pub mod liveness;
pub mod lock_linear;
pub mod lost;
pub mod safety;
pub mod wgl;

use crate::history::Event;
use serde::{Deserialize, Serialize};

/// At most this many offending items are listed per verdict (the count is always exact).
pub const OFFENDERS_LISTED_MAX: usize = 50;

/// One checker's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The checker, e.g. `exclusive-alone`.
    pub checker: String,
    /// The property, in one sentence.
    pub property: String,
    pub valid: bool,
    /// How many things were checked (runs, tasks, tokens), so that a vacuous pass shows.
    pub checked: usize,
    /// How many violations were found.
    pub violations: usize,
    /// The first [`OFFENDERS_LISTED_MAX`] violations, each naming what broke the property.
    pub offenders: Vec<String>,
    /// What the checker wants to say besides (for example the size of a search).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Collects violations for one verdict.
#[derive(Debug)]
pub struct Findings {
    checker: &'static str,
    property: &'static str,
    checked: usize,
    violations: usize,
    offenders: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    pub fn new(checker: &'static str, property: &'static str) -> Findings {
        Findings {
            checker,
            property,
            checked: 0,
            violations: 0,
            offenders: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn checked(&mut self, count: usize) {
        self.checked += count;
    }

    pub fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.offenders.len() < OFFENDERS_LISTED_MAX {
            self.offenders.push(what);
        }
    }

    /// Adds a note (at most [`OFFENDERS_LISTED_MAX`] are kept).
    pub fn note(&mut self, what: String) {
        if self.notes.len() < OFFENDERS_LISTED_MAX {
            self.notes.push(what);
        }
    }

    pub fn verdict(self) -> Verdict {
        Verdict {
            checker: self.checker.to_string(),
            property: self.property.to_string(),
            valid: self.violations == 0,
            checked: self.checked,
            violations: self.violations,
            offenders: self.offenders,
            notes: self.notes,
        }
    }
}

/// Runs every checker on `history`.
pub fn check_all(history: &[Event]) -> Vec<Verdict> {
    let runs = intervals::unit_runs(history);
    let holds = intervals::lock_holds(history);
    vec![
        safety::exclusive_alone(&runs),
        safety::tags_never_overlap(&runs),
        safety::locks_within_capacity(&runs, &holds),
        safety::task_cap(&runs, history),
        fifo::fifo_per_target(&runs),
        lost::acknowledged_tasks_end(history),
        lost::no_attempt_runs_twice(&runs, history),
        lost::succeeded_units_ran(&runs, history),
        fencing::agent_tokens_rise(history),
        fencing::lock_tokens_rise(&holds),
        liveness::queued_work_ends(history),
        lock_linear::locks_linearizable(history, &runs),
    ]
}

/// Whether every verdict holds.
pub fn all_valid(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.valid)
}
