//! What a simulation returns, and its JSON form (`cuttle simulate --output json`).
//!
//! # JSON document (format version 1)
//! Times are virtual milliseconds from the start of the scenario. Field names and meanings are
//! stable within a format version; new fields may be added.
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "makespan_ms": 4500,          // when the last deployment ended (0 if none ended)
//!   "all_succeeded": true,        // every deployment ended succeeded
//!   "task_cap": 10,               // the task cap at the start
//!   "peak_running_tasks": 5,      // most deployments admitted (under the task cap) at one time
//!   "peak_active_tasks": 2,       // most deployments with a unit running at one time
//!   "tasks": [{                   // one per deployment, in submission order
//!     "id": 1,                    // the core's task id ("task 1" in wait reasons)
//!     "name": "project1/Production",
//!     "project": "project1", "release": "1.0.0", "environment": "Production",
//!     "tenant": null,             // or the tenant's name
//!     "submitted_ms": 0, "started_ms": 0, "ended_ms": 1000,   // null when it never did
//!     "waited_ms": 0,             // started_ms - submitted_ms; null if never started
//!     "outcome": "succeeded",     // succeeded | failed | cancelled | unfinished
//!     "reason": null              // for failed: why, in one sentence
//!   }],
//!   "units": [{                   // every unit the core created, by id
//!     "id": 1, "task": 1,
//!     "project": "project1", "environment": "Production", "tenant": null,
//!     "step": "deploy",
//!     "kind": "run",              // run | acquire (a package acquisition)
//!     "target": "web01",
//!     "exclusive": false,         // whether it held its target alone
//!     "created_ms": 0,            // when its stage started
//!     "dispatched_ms": 0,         // null if it never ran
//!     "ended_ms": 1000,           // null if it never ended
//!     "outcome": "succeeded",     // succeeded | failed | cancelled | skipped | target_lost | unfinished
//!     "exit_code": 0              // null when no script exit was reported
//!   }],
//!   "targets": [{                 // in scenario order
//!     "name": "web01",
//!     "units": [1, 2],            // ids of the units that ran on it, by dispatch time
//!     "peak_units": 2             // most units running on it at one time
//!   }],
//!   "waits": [{                   // every task or unit that waited, when it began waiting
//!     "at_ms": 0, "until_ms": 2000,   // until admitted, dispatched or ended; null if never
//!     "task": 3,
//!     "unit": 3, "step": "deploy", "target": "web01",   // null for a task waiting for admission
//!     "reason": "waiting for target web01: tasks 1 and 2 hold it shared (position 1 of 3)"
//!   }],
//!   "events": [{                  // scripted events, in the order they happened
//!     "at_ms": 1500, "action": "cancel",   // cancel | agent_lost | task_cap
//!     "subject": "project4/Production",    // the deployment, the target, or the new cap
//!     "effect": "task 4 cancelled"
//!   }]
//! }
//! ```
//!
//! Intervals are half-open: a unit that ends at 1000 and one dispatched at 1000 did not overlap.

use serde::Serialize;

/// The version of the JSON document.
pub const FORMAT_VERSION: u32 = 1;

/// Everything a simulation found. See the module documentation for its JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimResult {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// When the last deployment ended.
    pub makespan_ms: u64,
    /// Every deployment succeeded.
    pub all_succeeded: bool,
    /// The task cap at the start.
    pub task_cap: u32,
    /// Most deployments admitted (holding a slot under the task cap) at one time.
    pub peak_running_tasks: usize,
    /// Most deployments with a unit running at one time.
    pub peak_active_tasks: usize,
    /// Deployments, in submission order.
    pub tasks: Vec<TaskRecord>,
    /// Units, by id.
    pub units: Vec<UnitRecord>,
    /// Targets, in scenario order.
    pub targets: Vec<TargetRecord>,
    /// Waits, in the order they began.
    pub waits: Vec<WaitRecord>,
    /// Scripted events, in the order they happened.
    pub events: Vec<ScriptedRecord>,
}

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskResult {
    /// Every unit succeeded.
    Succeeded,
    /// A unit failed, its target was lost, or it could not be planned.
    Failed,
    /// Cancelled by a scripted event.
    Cancelled,
    /// Still queued or running when nothing more could happen (a task cap of 0, say).
    Unfinished,
}

/// How a unit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitResult {
    /// Exit code 0.
    Succeeded,
    /// A non-zero exit code.
    Failed,
    /// Stopped because its task failed or was cancelled.
    Cancelled,
    /// Never ran: its task failed or was cancelled first.
    Skipped,
    /// Its target's agent was lost.
    TargetLost,
    /// Never ended.
    Unfinished,
}

/// One deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskRecord {
    /// The core's task id.
    pub id: u64,
    /// The deployment's name in the scenario.
    pub name: String,
    /// Project.
    pub project: String,
    /// Release.
    pub release: String,
    /// Environment.
    pub environment: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Submitted (queued).
    pub submitted_ms: u64,
    /// Admitted.
    pub started_ms: Option<u64>,
    /// Ended.
    pub ended_ms: Option<u64>,
    /// Time from submission to admission.
    pub waited_ms: Option<u64>,
    /// How it ended.
    pub outcome: TaskResult,
    /// Why it failed.
    pub reason: Option<String>,
}

/// One unit: one step (or package acquisition) of one deployment on one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitRecord {
    /// The core's unit id.
    pub id: u64,
    /// Its task's id.
    pub task: u64,
    /// Project.
    pub project: String,
    /// Environment.
    pub environment: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Step name.
    pub step: String,
    /// `run` or `acquire`.
    pub kind: String,
    /// Target name.
    pub target: String,
    /// Whether it held its target alone.
    pub exclusive: bool,
    /// When its stage started.
    pub created_ms: u64,
    /// When it was dispatched.
    pub dispatched_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// How it ended.
    pub outcome: UnitResult,
    /// Its exit code, when one was reported.
    pub exit_code: Option<i32>,
}

/// One target's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetRecord {
    /// Name.
    pub name: String,
    /// Units dispatched to it, by dispatch time (then id).
    pub units: Vec<u64>,
    /// Most units running on it at once.
    pub peak_units: usize,
}

/// A task waiting for admission, or a unit waiting for its locks, from when it began to wait.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WaitRecord {
    /// When it began waiting.
    pub at_ms: u64,
    /// When it stopped waiting (admitted, dispatched, skipped or cancelled).
    pub until_ms: Option<u64>,
    /// The task.
    pub task: u64,
    /// The unit, for a unit.
    pub unit: Option<u64>,
    /// The unit's step.
    pub step: Option<String>,
    /// The unit's target.
    pub target: Option<String>,
    /// The core's explanation when it began waiting.
    pub reason: String,
}

/// A scripted event and what it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScriptedRecord {
    /// When.
    pub at_ms: u64,
    /// `cancel`, `agent_lost` or `task_cap`.
    pub action: String,
    /// The deployment, the target, or the new cap.
    pub subject: String,
    /// What it did, in words.
    pub effect: String,
}

impl SimResult {
    /// The JSON document, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the result serialises")
    }
}
