//! What goes into the core (commands and the specs they carry) and what comes out (events and
//! rejections). These types are the core's whole interface with the shell; they carry names as
//! strings, while the state holds interned symbols.

use crate::sched::ids::{FencingToken, ReqId, TargetId, TaskId, UnitId};
use serde::{Deserialize, Serialize};

/// Default of `Cuttle.Action.MaxParallelism` and `Cuttle.Acquire.MaxParallelism`.
pub const PARALLELISM_DEFAULT: u32 = 10;
/// Default cluster task cap.
pub const TASK_CAP_DEFAULT: u32 = 10;
/// Most steps in one deployment process.
pub const STEPS_PER_TASK_MAX: usize = 256;
/// Most roles on one step or one target, environments and tenants on one target.
pub const LABELS_MAX: usize = 256;
/// Most targets one step may run on.
pub const TARGETS_PER_STEP_MAX: usize = 4_000;

/// One input of the state machine: a command and the leader's clock when it proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Milliseconds since the Unix epoch on the proposing leader. The core never reads a clock; it
    /// clamps this so that its own time never goes back.
    pub now_ms: u64,
    /// The command.
    pub command: Command,
}

/// A change to the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Registers a target, or updates it (and brings it back online) when the name is known.
    UpsertTarget(TargetSpec),
    /// Removes a target that runs and waits for nothing.
    RemoveTarget {
        /// The target's name.
        name: String,
    },
    /// The leader saw no heartbeat from this target's agent for the lease timeout: its waiting and
    /// running units fail (which fails their tasks), and it takes no new units until it registers
    /// again.
    AgentLost {
        /// The target's name.
        name: String,
    },
    /// Changes cluster settings at run time.
    SetSettings(SettingsPatch),
    /// Queues a task.
    SubmitTask(TaskSpec),
    /// Cancels a queued or running task.
    CancelTask {
        /// The task.
        task: TaskId,
    },
    /// An agent reports that it started a unit.
    UnitStarted {
        /// The unit.
        unit: UnitId,
        /// The attempt the agent was given.
        attempt: u32,
    },
    /// An agent reports a unit's end.
    UnitFinished {
        /// The unit.
        unit: UnitId,
        /// The attempt the agent was given.
        attempt: u32,
        /// The script's exit code; 0 is success.
        exit_code: i32,
    },
    /// A client asks for a named lock (`cuttle lock run`), held under a lease.
    AcquireLock(LockSpec),
    /// A client keeps its lock lease (held or waiting) alive.
    KeepAliveLock {
        /// The lock request returned by [`Event::LockQueued`].
        request: ReqId,
    },
    /// A client releases its lock, or stops waiting for it.
    ReleaseLock {
        /// The lock request.
        request: ReqId,
    },
    /// The leader's clock moved: expires lock leases.
    Tick,
}

/// A target as its agent registers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// Unique name.
    pub name: String,
    /// Environments it belongs to.
    pub environments: Vec<String>,
    /// Roles it has.
    pub roles: Vec<String>,
    /// Tenants it serves. A tenanted task runs only on targets that list its tenant.
    pub tenants: Vec<String>,
    /// How many units it runs at once (at least 1).
    pub capacity: u32,
}

/// Settings changed at run time; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsPatch {
    /// The cluster task cap (0 pauses admission).
    pub task_cap: Option<u32>,
    /// How many ended tasks the state keeps for views before forgetting the oldest.
    pub ended_tasks_retained: Option<u32>,
    /// Most tasks queued at once; a submit beyond it is refused.
    pub queued_tasks_max: Option<u32>,
}

/// Cluster settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// At most this many tasks run at once across the cluster.
    pub task_cap: u32,
    /// Ended tasks kept for views.
    pub ended_tasks_retained: u32,
    /// Most tasks queued at once.
    pub queued_tasks_max: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            task_cap: TASK_CAP_DEFAULT,
            ended_tasks_retained: 10_000,
            queued_tasks_max: 2_000_000,
        }
    }
}

/// One deployment to queue, with its variables already resolved for its environment and tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The project.
    pub project: String,
    /// The release (version) deployed.
    pub release: String,
    /// The environment deployed to.
    pub environment: String,
    /// The tenant, for a tenanted project.
    pub tenant: Option<String>,
    /// `Cuttle.Task.ConcurrencyTag`: tasks with the same tag never run together. `None` means the
    /// default, `project/environment` or `tenant/project/environment`.
    pub concurrency_tag: Option<String>,
    /// `Cuttle.BypassDeploymentMutex`, with its role- and target-scoped values.
    pub bypass: BypassRule,
    /// `Cuttle.Task.HoldTargets`: hold every target's isolation lock from admission to the end.
    pub hold_targets: bool,
    /// `Cuttle.Acquire.MaxParallelism`: package acquisitions of one step at once.
    pub acquire_max_parallelism: u32,
    /// The deployment process, run in order.
    pub steps: Vec<StepSpec>,
}

/// The bypass flag as resolved for a task: a value for the task and values scoped to roles or
/// targets. For a target, a target-scoped value wins over role-scoped ones, which win over the
/// default; when the target's roles give different values, bypass is off (the safe side).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BypassRule {
    /// The value without a role or target scope.
    pub default: bool,
    /// Values scoped to a role.
    pub roles: Vec<(String, bool)>,
    /// Values scoped to a target.
    pub targets: Vec<(String, bool)>,
}

impl TaskSpec {
    /// Checks everything about the spec that does not depend on the state (names, limits, step
    /// names, lock capacities within the process); submitting it can still be refused for reasons
    /// of state (a full queue, a lock used with another capacity).
    pub fn validate(&self) -> Result<(), Rejection> {
        crate::sched::validate::validate_spec(self).map(|_| ())
    }
}

impl BypassRule {
    /// The same value everywhere.
    pub fn always(value: bool) -> BypassRule {
        BypassRule {
            default: value,
            roles: Vec::new(),
            targets: Vec::new(),
        }
    }
}

/// One step of a deployment process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepSpec {
    /// The step's name, unique in its process.
    pub name: String,
    /// It runs on every target of the task's environment (and tenant) with one of these roles.
    pub roles: Vec<String>,
    /// `Cuttle.Action.MaxParallelism`: units of this step run at once.
    pub max_parallelism: u32,
    /// A package the step first acquires on each of its targets.
    pub package: Option<String>,
    /// A step lock each of its units takes.
    pub lock: Option<StepLockSpec>,
}

/// `lock = { name, scope, capacity }` on a step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepLockSpec {
    /// The lock's name; step locks and client locks with one name and scope are one lock.
    pub name: String,
    /// One lock per target, or one for the cluster.
    pub scope: LockScope,
    /// How many may hold it at once.
    pub capacity: u32,
}

/// Where a named lock lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LockScope {
    /// One lock per target.
    Target,
    /// One lock for the whole cluster.
    Cluster,
}

/// A client's request for a named lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockSpec {
    /// The lock's name.
    pub name: String,
    /// For a target-scoped lock, the target.
    pub target: Option<String>,
    /// How many may hold it at once; must match the lock's capacity while it exists.
    pub capacity: u32,
    /// Who asks (for views and audits).
    pub holder: String,
    /// The lease: without a keep-alive for this long, the request is dropped.
    pub ttl_ms: u64,
}

/// What a unit does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UnitKind {
    /// Acquire the step's package on the target.
    Acquire,
    /// Run the step's script on the target.
    Run,
}

/// How a unit ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitOutcome {
    /// Exit code 0.
    Succeeded,
    /// A non-zero exit code.
    Failed {
        /// The exit code.
        exit_code: i32,
    },
    /// Its agent was lost while it waited or ran.
    TargetLost,
    /// Never ran: its task failed or was cancelled first.
    Skipped,
    /// Ran and was stopped because its task failed or was cancelled.
    Cancelled,
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutcome {
    /// Every unit succeeded.
    Succeeded,
    /// A unit failed, or the task could not be planned.
    Failed {
        /// Why, in one sentence.
        reason: String,
    },
    /// Cancelled by a user.
    Cancelled,
}

/// A decision of the core, for the shell to carry out or report. More kinds may come: match with a
/// wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A target was registered or updated.
    TargetUpserted {
        /// The target.
        target: TargetId,
    },
    /// A target was removed.
    TargetRemoved {
        /// The target.
        target: TargetId,
    },
    /// A target's agent was declared lost.
    TargetLost {
        /// The target.
        target: TargetId,
    },
    /// Settings changed.
    SettingsChanged,
    /// A task was queued.
    TaskQueued {
        /// The new task's id.
        task: TaskId,
    },
    /// A task was admitted: it holds its concurrency tag and a slot under the cap.
    TaskStarted {
        /// The task.
        task: TaskId,
        /// The admission's fencing token.
        token: FencingToken,
    },
    /// A stage started and created this unit; it waits for its locks.
    UnitQueued {
        /// The unit.
        unit: UnitId,
        /// Its task.
        task: TaskId,
        /// Where it will run.
        target: TargetId,
        /// Index of its step in the process.
        step: u16,
        /// Acquire or run.
        kind: UnitKind,
    },
    /// A unit holds everything it needs: send it to its target's agent.
    UnitDispatched {
        /// The unit.
        unit: UnitId,
        /// Its task.
        task: TaskId,
        /// Where it runs.
        target: TargetId,
        /// Index of its step in the process.
        step: u16,
        /// Acquire or run.
        kind: UnitKind,
        /// The attempt, for idempotent dispatch.
        attempt: u32,
        /// Whether it holds its target exclusively.
        exclusive: bool,
        /// The grant's fencing token.
        token: FencingToken,
    },
    /// A dispatched unit must stop: tell its agent.
    UnitCancelRequested {
        /// The unit.
        unit: UnitId,
        /// Where it runs.
        target: TargetId,
    },
    /// A unit ended.
    UnitEnded {
        /// The unit.
        unit: UnitId,
        /// How.
        outcome: UnitOutcome,
    },
    /// A task ended and released everything it held.
    TaskEnded {
        /// The task.
        task: TaskId,
        /// How.
        outcome: TaskOutcome,
    },
    /// A client's lock request was queued.
    LockQueued {
        /// The request, for keep-alive and release.
        request: ReqId,
    },
    /// A client's lock request was granted.
    LockGranted {
        /// The request.
        request: ReqId,
        /// The grant's fencing token.
        token: FencingToken,
    },
    /// A client's lock request ended: released, or its lease expired.
    LockEnded {
        /// The request.
        request: ReqId,
        /// True when the lease expired rather than the client releasing it.
        expired: bool,
    },
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    /// A field of the command is not valid.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// The field, as a path (`steps[2].roles`).
        field: String,
        /// What is wrong and what would be right.
        problem: String,
    },
    /// No such task.
    #[error("unknown task {0}: it never existed or ended long enough ago to be forgotten")]
    UnknownTask(TaskId),
    /// No such unit.
    #[error("unknown unit {0}: it never existed or its task was forgotten")]
    UnknownUnit(UnitId),
    /// The unit has another attempt now.
    #[error("unit {unit} is at attempt {current}, not {reported}: the report is stale")]
    StaleAttempt {
        /// The unit.
        unit: UnitId,
        /// The attempt in the state.
        current: u32,
        /// The attempt reported.
        reported: u32,
    },
    /// No target of that name.
    #[error("unknown target {0:?}: register its agent first")]
    UnknownTarget(String),
    /// The target is still in use.
    #[error("target {name:?} is still used by {users} waiting or running units or whole-task holds: let them end, or cancel their tasks, before removing it")]
    TargetBusy {
        /// The target.
        name: String,
        /// Units and whole-task holds using it.
        users: usize,
    },
    /// Too many queued tasks.
    #[error(
        "the queue holds {limit} tasks, its limit: wait for tasks to end or raise queued_tasks_max"
    )]
    QueueFull {
        /// The limit.
        limit: u32,
    },
    /// The task has ended.
    #[error("task {0} has already ended")]
    TaskEnded(TaskId),
    /// A named lock exists with another capacity.
    #[error("lock {name:?} exists with capacity {existing}, not {requested}: use the same capacity as its other users")]
    LockCapacityMismatch {
        /// The lock.
        name: String,
        /// Its capacity.
        existing: u32,
        /// The capacity asked for.
        requested: u32,
    },
    /// No such lock request.
    #[error("unknown lock request {0:?}: it was released or its lease expired")]
    UnknownLockRequest(ReqId),
}
