//! The scheduler's state and its entry point, [`Scheduler::apply`].
//!
//! This file owns the records (targets, tasks, units, client locks) and the command dispatch; the
//! task lifecycle lives in `tasks.rs`, targets and settings in `targets.rs`, client locks in
//! `client_locks.rs`, and the read-only views in `explain.rs`.

use crate::sched::command::{
    Command, Event, Input, Rejection, Settings, TaskOutcome, UnitKind, UnitOutcome,
};
use crate::sched::dense::DenseMap;
use crate::sched::ids::{FencingToken, ReqId, Sym, Symbols, TargetId, TaskId, UnitId};
use crate::sched::lock::LockTable;
use crate::sched::processes::ProcessIds;
use crate::sched::table::FifoLockTable;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A registered target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Its name.
    pub name: Sym,
    /// Environments it belongs to (sorted).
    pub environments: Vec<Sym>,
    /// Roles (sorted).
    pub roles: Vec<Sym>,
    /// Tenants (sorted).
    pub tenants: Vec<Sym>,
    /// Units at once.
    pub capacity: u32,
    /// False after [`Command::AgentLost`] until it registers again.
    pub online: bool,
}

/// A step lock with interned names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepLock {
    /// The lock's name.
    pub name: Sym,
    /// Per target (true) or cluster-wide.
    pub per_target: bool,
    /// Capacity.
    pub capacity: u32,
}

/// A step with interned names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Step {
    /// Its name.
    pub name: Sym,
    /// Roles it runs on (sorted).
    pub roles: Vec<Sym>,
    /// Units at once.
    pub max_parallelism: u32,
    /// Whether it acquires a package first.
    pub package: bool,
    /// Its step lock.
    pub lock: Option<StepLock>,
}

/// A deployment process shared by every task that runs the same steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The steps.
    pub steps: Vec<Step>,
    /// Tasks that use it; it is forgotten at zero.
    pub refs: u32,
}

/// Where a task is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for admission.
    Queued,
    /// Admitted.
    Running {
        /// The stage that runs (a packaged step has an acquire stage before its run stage).
        stage: u16,
        /// Units of the stage that have not ended.
        open_units: u32,
        /// Set when the task is failing or cancelling: it ends when `open_units` reaches zero.
        stopping: Option<TaskOutcome>,
    },
    /// Ended.
    Ended(TaskOutcome),
}

/// A task's bypass rule with interned names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bypass {
    /// The value without scope.
    pub default: bool,
    /// Role-scoped values.
    pub roles: Vec<(Sym, bool)>,
    /// Target-scoped values.
    pub targets: Vec<(Sym, bool)>,
}

/// A task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// Its admission request (tag, cap and held targets) while queued or running.
    pub request: ReqId,
    /// The project.
    pub project: Sym,
    /// The release.
    #[serde(deserialize_with = "crate::sched::wire::boxed_str")]
    pub release: Box<str>,
    /// The environment.
    pub environment: Sym,
    /// The tenant.
    pub tenant: Option<Sym>,
    /// The concurrency tag.
    pub tag: Sym,
    /// The process it runs.
    pub process: u32,
    /// The bypass rule.
    pub bypass: Bypass,
    /// Whether it holds its targets for its whole run.
    pub hold_targets: bool,
    /// Package acquisitions at once.
    pub acquire_max_parallelism: u32,
    /// Targets per step, fixed at admission (at submission for a whole-task hold).
    pub plan: Vec<Vec<TargetId>>,
    /// Where it is.
    pub phase: Phase,
    /// Units of the current and past stages.
    pub units: Vec<UnitId>,
    /// Fencing token of its admission.
    pub token: Option<FencingToken>,
    /// When it was queued, started and ended (leader clock, ms).
    pub submitted_ms: u64,
    /// When it started.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
}

/// Where a unit is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitState {
    /// Waiting for its locks.
    Waiting,
    /// Granted and sent to its agent.
    Dispatched {
        /// Whether a cancel was asked for.
        cancel_requested: bool,
    },
    /// Its agent reported the start.
    Running {
        /// Whether a cancel was asked for.
        cancel_requested: bool,
    },
    /// Ended.
    Ended(UnitOutcome),
}

/// A unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Its id.
    pub id: UnitId,
    /// Its task.
    pub task: TaskId,
    /// Its step.
    pub step: u16,
    /// Acquire or run.
    pub kind: UnitKind,
    /// Its target.
    pub target: TargetId,
    /// Its lock request while waiting or holding.
    pub request: ReqId,
    /// The attempt.
    pub attempt: u32,
    /// Whether it takes its target exclusively.
    pub exclusive: bool,
    /// Where it is.
    pub state: UnitState,
    /// Its grant's token.
    pub token: Option<FencingToken>,
    /// When it was granted and ended (leader clock, ms).
    pub dispatched_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
}

impl Unit {
    /// Dispatched to its agent and not yet ended: it holds its locks and may be running.
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            UnitState::Dispatched { .. } | UnitState::Running { .. }
        )
    }
}

/// A client's named-lock request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientLock {
    /// The lock's name.
    pub name: Sym,
    /// The target of a target-scoped lock.
    pub target: Option<TargetId>,
    /// Who asked.
    #[serde(deserialize_with = "crate::sched::wire::boxed_str")]
    pub holder: Box<str>,
    /// The lease length.
    pub ttl_ms: u64,
    /// When the lease runs out.
    pub expires_ms: u64,
    /// The grant's token once held.
    pub token: Option<FencingToken>,
}

/// Users of a lock name (tasks whose steps declare it, clients that asked for it) and the capacity
/// they agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedLockUse {
    /// The capacity every user declared.
    pub capacity: u32,
    /// Tasks and client requests using the name.
    pub users: u32,
}

/// Who owns a lock request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// A task's admission.
    Task(TaskId),
    /// A unit.
    Unit(UnitId),
    /// A client's named lock.
    Client,
}

/// Everything the replicas agree on. Serialised whole into snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduler<L = FifoLockTable> {
    pub(crate) now_ms: u64,
    pub(crate) settings: Settings,
    pub(crate) symbols: Symbols,
    pub(crate) locks: L,
    pub(crate) next_request: u64,
    pub(crate) next_task: u64,
    pub(crate) next_unit: u64,
    pub(crate) next_token: u64,
    pub(crate) next_target: u32,
    pub(crate) targets: DenseMap<TargetId, Target>,
    pub(crate) target_by_name: BTreeMap<Sym, TargetId>,
    /// (environment, role) -> targets, for planning.
    pub(crate) targets_by_env_role: BTreeSet<(Sym, Sym, TargetId)>,
    /// Units waiting or holding on each target.
    pub(crate) target_units: BTreeSet<(TargetId, UnitId)>,
    pub(crate) processes: DenseMap<u32, Process>,
    pub(crate) process_ids: ProcessIds,
    pub(crate) next_process: u32,
    /// Tasks by id, inline in their pages (see [`DenseMap`]): admitting or forgetting a task
    /// touches its page slot and nothing else of the map, and a task costs no allocation of its
    /// own. An id whose neighbours are gone keeps its page (64 tasks' worth) alive until it goes.
    pub(crate) tasks: DenseMap<TaskId, Task>,
    pub(crate) units: DenseMap<UnitId, Unit>,
    pub(crate) owners: DenseMap<ReqId, Owner>,
    pub(crate) client_locks: BTreeMap<ReqId, ClientLock>,
    pub(crate) named_locks: BTreeMap<Sym, NamedLockUse>,
    pub(crate) lease_expiry: BTreeSet<(u64, ReqId)>,
    pub(crate) queued_tasks: u32,
    pub(crate) running_tasks: u32,
    pub(crate) ended_tasks: VecDeque<TaskId>,
    /// Vectors of forgotten tasks for the next admitted ones (not part of the state).
    #[serde(skip)]
    pub(crate) spare: Spare,
}

/// The plan and unit vectors of the last few forgotten tasks, reused by the next admitted tasks
/// (one task is forgotten for about every one admitted): their allocations change hands instead
/// of being freed and made again. Only capacity is kept, never content that could be seen: a
/// vector is filled afresh before use. Not part of the state: skipped by the snapshot, equal
/// whatever it holds, empty after a restore.
#[derive(Clone, Default)]
pub(crate) struct Spare {
    pub(crate) plans: Vec<Vec<Vec<TargetId>>>,
    pub(crate) units: Vec<Vec<UnitId>>,
}

impl Spare {
    /// Most vectors of each kind kept.
    const MAX: usize = 16;

    /// Keeps a forgotten task's vectors if there is room.
    pub(crate) fn keep(&mut self, plan: Vec<Vec<TargetId>>, units: &mut Vec<UnitId>) {
        if plan.capacity() > 0 && self.plans.len() < Spare::MAX {
            self.plans.push(plan);
        }
        if units.capacity() > 0 && self.units.len() < Spare::MAX {
            units.clear();
            self.units.push(std::mem::take(units));
        }
    }
}

impl PartialEq for Spare {
    fn eq(&self, _: &Spare) -> bool {
        true
    }
}

impl Eq for Spare {}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spare")
    }
}

impl<L: LockTable + Default> Default for Scheduler<L> {
    fn default() -> Self {
        Scheduler::new(Settings::default())
    }
}

impl<L: LockTable + Default> Scheduler<L> {
    /// An empty state with the given settings.
    pub fn new(settings: Settings) -> Self {
        Scheduler {
            now_ms: 0,
            settings,
            symbols: Symbols::default(),
            locks: L::default(),
            next_request: 1,
            next_task: 1,
            next_unit: 1,
            next_token: 1,
            next_target: 0,
            targets: DenseMap::new(),
            target_by_name: BTreeMap::new(),
            targets_by_env_role: BTreeSet::new(),
            target_units: BTreeSet::new(),
            processes: DenseMap::new(),
            process_ids: ProcessIds::default(),
            next_process: 0,
            tasks: DenseMap::new(),
            units: DenseMap::new(),
            owners: DenseMap::new(),
            client_locks: BTreeMap::new(),
            named_locks: BTreeMap::new(),
            lease_expiry: BTreeSet::new(),
            queued_tasks: 0,
            running_tasks: 0,
            ended_tasks: VecDeque::new(),
            spare: Spare::default(),
        }
    }
}

impl<L: LockTable> Scheduler<L> {
    /// Applies one command. On `Err` nothing changed. On `Ok`, `events` received the decisions in
    /// the order they were made (it is cleared first).
    pub fn apply(&mut self, input: Input, events: &mut Vec<Event>) -> Result<(), Rejection> {
        events.clear();
        // Leaders' clocks differ; the state's time never goes back.
        self.now_ms = self.now_ms.max(input.now_ms);
        match input.command {
            Command::UpsertTarget(spec) => self.upsert_target(spec, events)?,
            Command::RemoveTarget { name } => self.remove_target(&name, events)?,
            Command::AgentLost { name } => self.agent_lost(&name, events)?,
            Command::SetSettings(patch) => self.set_settings(patch, events)?,
            Command::SubmitTask(spec) => self.submit(spec, events)?,
            Command::CancelTask { task } => self.cancel_task(task, events)?,
            Command::UnitStarted { unit, attempt } => self.unit_started(unit, attempt)?,
            Command::UnitFinished {
                unit,
                attempt,
                exit_code,
            } => self.unit_finished(unit, attempt, exit_code, events)?,
            Command::AcquireLock(spec) => self.acquire_lock(spec, events)?,
            Command::KeepAliveLock { request } => self.keep_alive_lock(request)?,
            Command::ReleaseLock { request } => self.release_lock(request, false, events)?,
            Command::Tick => self.expire_leases(events),
        }
        self.grant_all(events);
        self.forget_old_tasks();
        Ok(())
    }

    /// Applies a command with a fresh event buffer; a convenience for tests and tools.
    pub fn apply_one(&mut self, now_ms: u64, command: Command) -> Result<Vec<Event>, Rejection> {
        let mut events = Vec::new();
        self.apply(Input { now_ms, command }, &mut events)?;
        Ok(events)
    }

    /// Grants everything grantable, in request order, and carries out each grant.
    fn grant_all(&mut self, events: &mut Vec<Event>) {
        while let Some(request) = self.locks.poll_grant() {
            let token = FencingToken(self.next_token);
            self.next_token += 1;
            match self.owners.get(&request).copied() {
                Some(Owner::Task(task)) => self.task_granted(task, token, events),
                Some(Owner::Unit(unit)) => self.unit_granted(unit, token, events),
                Some(Owner::Client) => self.client_lock_granted(request, token, events),
                None => unreachable!("granted request {request:?} has no owner"),
            }
        }
    }

    pub(crate) fn new_request(&mut self, owner: Owner) -> ReqId {
        let id = ReqId(self.next_request);
        self.next_request += 1;
        self.owners.insert(id, owner);
        id
    }

    /// Interns names after checking them; `field` names the command field for the error.
    pub(crate) fn intern_checked(&mut self, field: &str, name: &str) -> Result<Sym, Rejection> {
        check_name(field, name)?;
        if self.symbols.get(name).is_none() && !self.symbols.has_room(1) {
            return Err(Rejection::Invalid {
                field: field.into(),
                problem: "the state holds the most distinct names it can: reuse existing names"
                    .into(),
            });
        }
        Ok(self.symbols.intern(name))
    }

    /// The current time of the state (the largest leader time seen).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The symbol table.
    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// The lock table.
    pub fn lock_table(&self) -> &L {
        &self.locks
    }

    /// A task.
    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    /// All tasks the state remembers, by id.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// A unit.
    pub fn unit(&self, id: UnitId) -> Option<&Unit> {
        self.units.get(&id)
    }

    /// All units the state remembers, by id.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.values()
    }

    /// A target.
    pub fn target(&self, id: TargetId) -> Option<&Target> {
        self.targets.get(&id)
    }

    /// A target by name.
    pub fn target_id(&self, name: &str) -> Option<TargetId> {
        self.symbols
            .get(name)
            .and_then(|s| self.target_by_name.get(&s).copied())
    }

    /// All targets.
    pub fn targets(&self) -> impl Iterator<Item = (TargetId, &Target)> {
        self.targets.iter()
    }

    /// A process.
    pub fn process(&self, id: u32) -> Option<&Process> {
        self.processes.get(&id)
    }

    /// A client lock request.
    pub fn client_lock(&self, request: ReqId) -> Option<&ClientLock> {
        self.client_locks.get(&request)
    }

    /// All client lock requests, by id.
    pub fn client_locks(&self) -> impl Iterator<Item = (ReqId, &ClientLock)> {
        self.client_locks.iter().map(|(id, lock)| (*id, lock))
    }

    /// Tasks queued.
    pub fn queued_tasks(&self) -> u32 {
        self.queued_tasks
    }

    /// Tasks running.
    pub fn running_tasks(&self) -> u32 {
        self.running_tasks
    }

    /// Who owns a lock request.
    pub fn owner(&self, request: ReqId) -> Option<Owner> {
        self.owners.get(&request).copied()
    }
}

/// Checks a name: not empty, printable, not too long.
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), Rejection> {
    check_name_at(name, || field.to_string())
}

/// [`check_name`] for a field whose name is built (`steps[3].name`): built only on failure.
pub(crate) fn check_name_at(name: &str, field: impl FnOnce() -> String) -> Result<(), Rejection> {
    let problem = if name.is_empty() {
        "is empty; give a name".to_string()
    } else if name.len() > crate::sched::ids::NAME_BYTES_MAX {
        format!(
            "is {} bytes long; names are at most {} bytes",
            name.len(),
            crate::sched::ids::NAME_BYTES_MAX
        )
    } else if !printable_ascii(name.as_bytes()) && name.chars().any(char::is_control) {
        "contains a control character; use printable characters".to_string()
    } else {
        return Ok(());
    };
    Err(Rejection::Invalid {
        field: field(),
        problem: format!("{name:?} {problem}"),
    })
}

/// Whether every byte is printable ASCII (0x20 to 0x7e), eight bytes at a time: a byte is below
/// 0x20 when subtracting 0x20 borrows into its top bit while its own top bit is clear, and above
/// 0x7e when adding 1 carries into its top bit or its top bit is set (the exact word tests of
/// "Bit Twiddling Hacks", `hasless` and `hasmore`). Padding bytes are 'A'.
#[inline]
fn printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let bad = |w: u64| (w.wrapping_sub(ONES * 0x20) & !w) | (w.wrapping_add(ONES) | w);
    let mut words = bytes.chunks_exact(8);
    let mut any = 0u64;
    for word in &mut words {
        any |= bad(u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let word = rest
            .iter()
            .rev()
            .fold(u64::from_le_bytes([b'A'; 8]), |w, b| w << 8 | u64::from(*b));
        any |= bad(word);
    }
    any & HIGH == 0
}

#[cfg(test)]
mod printable_tests {
    use super::printable_ascii;

    #[test]
    fn printable_ascii_agrees_with_a_byte_loop() {
        let slow = |b: &[u8]| b.iter().all(|c| (0x20..0x7f).contains(c));
        for len in 0..20 {
            for bad in 0..=255u8 {
                for at in 0..len.max(1) {
                    let mut bytes = vec![b'a'; len];
                    if len > 0 {
                        bytes[at] = bad;
                    }
                    assert_eq!(printable_ascii(&bytes), slow(&bytes), "{bytes:?}");
                }
            }
        }
        for c in 0x20..0x7fu8 {
            assert!(printable_ascii(&[c; 11]));
        }
    }
}
