//! The task lifecycle: submission, admission, stages and units, failure, cancellation, and
//! forgetting old tasks.
//!
//! A task's admission request claims its concurrency tag (exclusive), a slot under the task cap,
//! and, for a whole-task hold, every target's isolation lock (exclusive). Once admitted it runs its
//! stages in order: a step with a package has an acquire stage before its run stage. Each stage
//! creates one unit per planned target, whose request claims the target's isolation lock (unless
//! the task holds its targets), the stage's parallelism, the step lock, and a slot of the agent.

use crate::sched::command::{
    Event, Rejection, StepSpec, TaskOutcome, TaskSpec, UnitKind, TARGETS_PER_STEP_MAX,
};
use crate::sched::ids::{FencingToken, Sym, TargetId, TaskId, UnitId};
use crate::sched::lock::{ClaimSpec, LockKey, LockTable, Mode};
use crate::sched::processes::StepKey;
use crate::sched::state::{
    Bypass, NamedLockUse, Owner, Phase, Process, Scheduler, Step, StepLock, Task, Unit, UnitState,
};
use crate::sched::validate::{default_tag_of, invalid, validate_spec};

/// Removes repeats from a sorted slice, keeping the first of each; returns the new length.
fn dedup_sorted(items: &mut [Sym]) -> usize {
    let mut len = 0;
    for i in 0..items.len() {
        if len == 0 || items[len - 1] != items[i] {
            items[len] = items[i];
            len += 1;
        }
    }
    len
}

impl<L: LockTable> Scheduler<L> {
    /// Checks that `specs`, submitted one after another now, would all be accepted: the room in
    /// the queue and for new names, and each spec's own validity. Lets a request that queues
    /// several tasks (a deployment to several tenants) apply all or nothing.
    pub fn check_submissions(&self, specs: &[TaskSpec]) -> Result<(), Rejection> {
        let room = self
            .settings
            .queued_tasks_max
            .saturating_sub(self.queued_tasks);
        if specs.len() > room as usize {
            return Err(Rejection::QueueFull {
                limit: self.settings.queued_tasks_max,
            });
        }
        let mut names = 0;
        for spec in specs {
            names += validate_spec(spec)?;
        }
        if !self.symbols.has_room(names) {
            return Err(invalid(
                "project",
                "the state holds the most distinct names it can",
            ));
        }
        Ok(())
    }

    pub(crate) fn submit(
        &mut self,
        spec: TaskSpec,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        if self.queued_tasks >= self.settings.queued_tasks_max {
            return Err(Rejection::QueueFull {
                limit: self.settings.queued_tasks_max,
            });
        }
        let names = validate_spec(&spec)?;
        if !self.symbols.has_room(names) {
            return Err(invalid(
                "project",
                "the state holds the most distinct names it can",
            ));
        }
        let hold_plan = if spec.hold_targets {
            Some(self.check_hold_plan(&spec)?)
        } else {
            None
        };
        self.check_step_lock_capacities(&spec)?;
        // Validated: from here on nothing fails. Names are interned in a fixed order (project,
        // environment, tenant, tag, bypass, steps), which numbers new symbols.
        let project = self.symbols.intern_owned(spec.project);
        let environment = self.symbols.intern_owned(spec.environment);
        let tenant = spec.tenant.map(|t| self.symbols.intern_owned(t));
        let tag = match spec.concurrency_tag {
            Some(tag) => self.symbols.intern_owned(tag),
            // Found by the three symbols when a task of the same deployment was submitted before
            // (since the state was built or restored); else built from their text and recorded.
            // The same symbol either way.
            None => match self.symbols.default_tag(project, environment, tenant) {
                Some(tag) => tag,
                None => {
                    let symbols = &self.symbols;
                    let name = default_tag_of(
                        tenant.map(|t| symbols.name(t)),
                        symbols.name(project),
                        symbols.name(environment),
                    );
                    let tag = self.symbols.intern_owned(name);
                    self.symbols
                        .record_default_tag(project, environment, tenant, tag);
                    tag
                }
            },
        };
        let bypass = Bypass {
            default: spec.bypass.default,
            roles: spec
                .bypass
                .roles
                .iter()
                .map(|(r, v)| (self.symbols.intern(r), *v))
                .collect(),
            targets: spec
                .bypass
                .targets
                .iter()
                .map(|(t, v)| (self.symbols.intern(t), *v))
                .collect(),
        };
        let process = match self.known_process(&spec.steps) {
            Some(id) => {
                self.processes.get_mut(&id).expect("known process").refs += 1;
                id
            }
            None => {
                let steps: Vec<Step> = spec.steps.iter().map(|s| self.intern_step(s)).collect();
                self.process_for(steps)
            }
        };
        self.count_task_locks(process, 1);
        let id = TaskId(self.next_task);
        self.next_task += 1;
        let request = self.new_request(Owner::Task(id));
        let mut task = Task {
            id,
            request,
            project,
            release: spec.release.into_boxed_str(),
            environment,
            tenant,
            tag,
            process,
            bypass,
            hold_targets: spec.hold_targets,
            acquire_max_parallelism: spec.acquire_max_parallelism,
            plan: Vec::new(),
            phase: Phase::Queued,
            units: Vec::new(),
            token: None,
            submitted_ms: self.now_ms,
            started_ms: None,
            ended_ms: None,
        };
        let admission = [
            ClaimSpec {
                lock: LockKey::Tag(tag),
                mode: Mode::Exclusive,
                capacity: 1,
            },
            ClaimSpec {
                lock: LockKey::TaskCap,
                mode: Mode::PERMIT,
                capacity: self.settings.task_cap,
            },
        ];
        let mut with_targets = Vec::new();
        if let Some(plan) = hold_plan {
            // A whole-task hold claims its targets with its admission, so they are fixed now.
            task.plan = plan;
            let mut held: Vec<TargetId> = task.plan.iter().flatten().copied().collect();
            held.sort();
            held.dedup();
            with_targets.extend(admission);
            with_targets.extend(held.into_iter().map(|t| ClaimSpec {
                lock: LockKey::Target(t),
                mode: Mode::Exclusive,
                capacity: u32::MAX,
            }));
        }
        let claims = if with_targets.is_empty() {
            &admission[..]
        } else {
            &with_targets[..]
        };
        self.tasks.insert(id, task);
        self.queued_tasks += 1;
        self.locks.request(request, claims);
        events.push(Event::TaskQueued { task: id });
        Ok(())
    }

    /// A whole-task hold's targets, fixed at submission; refused when they exceed the limits, since
    /// the admission must claim every one of them.
    fn check_hold_plan(&self, spec: &TaskSpec) -> Result<Vec<Vec<TargetId>>, Rejection> {
        let plan = self.plan_spec(spec);
        for (step, targets) in spec.steps.iter().zip(&plan) {
            if targets.len() > TARGETS_PER_STEP_MAX {
                return Err(invalid(
                    "hold_targets",
                    format!(
                        "step {} matches {} targets; a step runs on at most {TARGETS_PER_STEP_MAX}",
                        step.name,
                        targets.len()
                    ),
                ));
            }
        }
        let mut held: Vec<TargetId> = plan.iter().flatten().copied().collect();
        held.sort();
        held.dedup();
        let held_max = crate::sched::table::CLAIMS_PER_REQUEST_MAX - 2;
        if held.len() > held_max {
            return Err(invalid(
                "hold_targets",
                format!("the task would hold {} targets; a whole-task hold takes at most {held_max}: split the deployment or drop Cuttle.Task.HoldTargets", held.len()),
            ));
        }
        Ok(plan)
    }

    /// Counts a task in (`delta` 1) or out (-1) of the users of its step locks' names.
    fn count_task_locks(&mut self, process: u32, delta: i32) {
        let mut names: Vec<(Sym, u32)> = self.processes[&process]
            .steps
            .iter()
            .filter_map(|s| s.lock.as_ref())
            .map(|l| (l.name, l.capacity))
            .collect();
        names.sort();
        names.dedup();
        for (name, capacity) in names {
            self.count_lock_user(name, capacity, delta);
        }
    }

    /// Counts one user of a lock name in or out; the name's capacity is fixed while it has users.
    pub(crate) fn count_lock_user(&mut self, name: Sym, capacity: u32, delta: i32) {
        let used = self
            .named_locks
            .entry(name)
            .or_insert(NamedLockUse { capacity, users: 0 });
        assert_eq!(used.capacity, capacity, "lock capacity checked before use");
        if delta > 0 {
            used.users += 1;
        } else {
            used.users -= 1;
            if used.users == 0 {
                self.named_locks.remove(&name);
            }
        }
    }

    fn intern_step(&mut self, spec: &StepSpec) -> Step {
        let mut roles: Vec<Sym> = spec.roles.iter().map(|r| self.symbols.intern(r)).collect();
        roles.sort();
        roles.dedup();
        Step {
            name: self.symbols.intern(&spec.name),
            roles,
            max_parallelism: spec.max_parallelism,
            package: spec.package.is_some(),
            lock: spec.lock.as_ref().map(|l| StepLock {
                name: self.symbols.intern(&l.name),
                per_target: l.scope == crate::sched::command::LockScope::Target,
                capacity: l.capacity,
            }),
        }
    }

    /// The process that runs exactly these steps, if there is one, found without interning or
    /// allocating: its names are all interned already. Processes of up to 4 steps of up to 8
    /// roles are looked up this way; others (and new ones) go through `intern_step` and
    /// `process_for`, which find them too.
    fn known_process(&self, specs: &[StepSpec]) -> Option<u32> {
        const STEPS: usize = 4;
        const ROLES: usize = 8;
        if specs.len() > STEPS || specs.iter().any(|s| s.roles.len() > ROLES) {
            return None;
        }
        let mut roles = [[Sym(0); ROLES]; STEPS];
        let mut counts = [0; STEPS];
        for (i, spec) in specs.iter().enumerate() {
            for (j, role) in spec.roles.iter().enumerate() {
                roles[i][j] = self.symbols.get(role)?;
            }
            let sorted = &mut roles[i][..spec.roles.len()];
            sorted.sort_unstable();
            counts[i] = dedup_sorted(sorted);
        }
        let mut keys = [None; STEPS];
        for (i, spec) in specs.iter().enumerate() {
            let lock = match &spec.lock {
                None => None,
                Some(l) => Some((
                    self.symbols.get(&l.name)?,
                    l.scope == crate::sched::command::LockScope::Target,
                    l.capacity,
                )),
            };
            keys[i] = Some(StepKey {
                name: self.symbols.get(&spec.name)?,
                roles: &roles[i][..counts[i]],
                max_parallelism: spec.max_parallelism,
                package: spec.package.is_some(),
                lock,
            });
        }
        let keys = keys[..specs.len()].iter().map(|k| k.expect("set above"));
        self.process_ids.find(keys, &self.processes)
    }

    /// Shares one process record among the tasks that run the same steps.
    fn process_for(&mut self, steps: Vec<Step>) -> u32 {
        if let Some(id) = self.process_ids.get(&steps, &self.processes) {
            self.processes.get_mut(&id).expect("indexed process").refs += 1;
            return id;
        }
        let id = self.next_process;
        self.next_process += 1;
        self.process_ids.insert(steps.clone(), id);
        self.processes.insert(id, Process { steps, refs: 1 });
        id
    }

    /// The stage's step and kind; `None` past the last stage.
    pub(crate) fn stage_of(&self, process: u32, stage: u16) -> Option<(u16, UnitKind)> {
        let mut index = 0u16;
        for (step_index, step) in self.processes[&process].steps.iter().enumerate() {
            if step.package {
                if index == stage {
                    return Some((step_index as u16, UnitKind::Acquire));
                }
                index += 1;
            }
            if index == stage {
                return Some((step_index as u16, UnitKind::Run));
            }
            index += 1;
        }
        None
    }

    pub(crate) fn task_granted(
        &mut self,
        id: TaskId,
        token: FencingToken,
        events: &mut Vec<Event>,
    ) {
        let now = self.now_ms;
        let task = self.tasks.get_mut(&id).expect("granted task exists");
        assert_eq!(task.phase, Phase::Queued, "task {id} admitted twice");
        task.phase = Phase::Running {
            stage: 0,
            open_units: 0,
            stopping: None,
        };
        task.token = Some(token);
        task.started_ms = Some(now);
        self.queued_tasks -= 1;
        self.running_tasks += 1;
        events.push(Event::TaskStarted { task: id, token });
        let task = &self.tasks[&id];
        // The plan and the unit list reuse the vectors of a forgotten task when there are some.
        let units = self.spare.units.pop().unwrap_or_default();
        if !task.hold_targets {
            let mut plan = self.spare.plans.pop().unwrap_or_default();
            self.plan_into(task, &mut plan);
            self.tasks.get_mut(&id).expect("exists").plan = plan;
        }
        let task = self.tasks.get_mut(&id).expect("exists");
        debug_assert!(task.units.is_empty());
        task.units = units;
        if let Some(reason) = self.unplannable(id) {
            self.end_task(id, TaskOutcome::Failed { reason }, events);
            return;
        }
        self.start_stage(id, 0, events);
    }

    /// Why a task's plan cannot run: a step without targets, or with too many.
    fn unplannable(&self, id: TaskId) -> Option<String> {
        let task = &self.tasks[&id];
        let steps = &self.processes[&task.process].steps;
        for (step, targets) in steps.iter().zip(&task.plan) {
            let name = self.symbols.name(step.name);
            if targets.is_empty() {
                let roles: Vec<&str> = step.roles.iter().map(|r| self.symbols.name(*r)).collect();
                let tenant = task
                    .tenant
                    .map(|t| format!(" serving tenant {}", self.symbols.name(t)))
                    .unwrap_or_default();
                return Some(format!(
                    "step {name} has no online target with role {} in environment {}{tenant}",
                    roles.join(" or "),
                    self.symbols.name(task.environment)
                ));
            }
            if targets.len() > TARGETS_PER_STEP_MAX {
                return Some(format!(
                    "step {name} matches {} targets; a step runs on at most {TARGETS_PER_STEP_MAX}",
                    targets.len()
                ));
            }
        }
        None
    }

    fn bypass_for(&self, task: &Task, target: TargetId) -> bool {
        let target = &self.targets[&target];
        if let Some((_, value)) = task
            .bypass
            .targets
            .iter()
            .find(|(name, _)| *name == target.name)
        {
            return *value;
        }
        let mut scoped = task
            .bypass
            .roles
            .iter()
            .filter(|(role, _)| target.roles.binary_search(role).is_ok())
            .peekable();
        if scoped.peek().is_some() {
            // Roles disagreeing means exclusive: the safe side.
            return scoped.all(|(_, value)| *value);
        }
        task.bypass.default
    }

    /// Creates the units of a stage, or ends the task after its last stage.
    pub(crate) fn start_stage(&mut self, id: TaskId, stage: u16, events: &mut Vec<Event>) {
        let task = &self.tasks[&id];
        let Some((step_index, kind)) = self.stage_of(task.process, stage) else {
            self.end_task(id, TaskOutcome::Succeeded, events);
            return;
        };
        let step_index_usize = step_index as usize;
        let targets = &task.plan[step_index_usize];
        if let Some(gone) = targets
            .iter()
            .find(|t| !self.targets.get(t).is_some_and(|t| t.online))
        {
            let reason = match self.targets.get(gone) {
                Some(t) => format!("target {} is lost", self.symbols.name(t.name)),
                None => format!(
                    "a target of step {} was removed",
                    self.symbols
                        .name(self.processes[&task.process].steps[step_index_usize].name)
                ),
            };
            self.end_task(id, TaskOutcome::Failed { reason }, events);
            return;
        }
        let step = &self.processes[&task.process].steps[step_index_usize];
        let parallelism = match kind {
            UnitKind::Acquire => task.acquire_max_parallelism,
            UnitKind::Run => step.max_parallelism,
        };
        let step_lock = step.lock.clone();
        let hold = task.hold_targets;
        let count = targets.len();
        self.tasks
            .get_mut(&id)
            .expect("exists")
            .units
            .reserve_exact(count);
        for i in 0..count {
            let task = &self.tasks[&id];
            let target = task.plan[step_index_usize][i];
            let exclusive = !self.bypass_for(task, target);
            let unit_id = UnitId(self.next_unit);
            self.next_unit += 1;
            let request = self.new_request(Owner::Unit(unit_id));
            // At most four claims, in key order: target, parallelism, step lock, agent slot.
            let mut claims = [ClaimSpec {
                lock: LockKey::TaskCap,
                mode: Mode::PERMIT,
                capacity: 0,
            }; 4];
            let mut n = 0;
            let mut claim = |claim: ClaimSpec| {
                claims[n] = claim;
                n += 1;
            };
            if !hold {
                let mode = if exclusive {
                    Mode::Exclusive
                } else {
                    Mode::PERMIT
                };
                claim(ClaimSpec {
                    lock: LockKey::Target(target),
                    mode,
                    capacity: u32::MAX,
                });
            }
            claim(ClaimSpec {
                lock: LockKey::Parallelism(id, stage),
                mode: Mode::PERMIT,
                capacity: parallelism,
            });
            if let (UnitKind::Run, Some(lock)) = (kind, &step_lock) {
                let scope = lock.per_target.then_some(target);
                claim(ClaimSpec {
                    lock: LockKey::Named(lock.name, scope),
                    mode: Mode::PERMIT,
                    capacity: lock.capacity,
                });
            }
            claim(ClaimSpec {
                lock: LockKey::AgentCapacity(target),
                mode: Mode::PERMIT,
                capacity: self.targets[&target].capacity,
            });
            self.units.insert(
                unit_id,
                Unit {
                    id: unit_id,
                    task: id,
                    step: step_index,
                    kind,
                    target,
                    request,
                    attempt: 1,
                    exclusive: exclusive || hold,
                    state: UnitState::Waiting,
                    token: None,
                    dispatched_ms: None,
                    ended_ms: None,
                },
            );
            self.target_units.insert((target, unit_id));
            events.push(Event::UnitQueued {
                unit: unit_id,
                task: id,
                target,
                step: step_index,
                kind,
            });
            self.locks.request(request, &claims[..n]);
            let task = self.tasks.get_mut(&id).expect("exists");
            task.units.push(unit_id);
        }
        let task = self.tasks.get_mut(&id).expect("exists");
        task.phase = Phase::Running {
            stage,
            open_units: count as u32,
            stopping: None,
        };
    }

    pub(crate) fn cancel_task(
        &mut self,
        id: TaskId,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let task = self.tasks.get_mut(&id).ok_or(Rejection::UnknownTask(id))?;
        match &mut task.phase {
            Phase::Ended(_) => Err(Rejection::TaskEnded(id)),
            Phase::Queued => {
                let request = task.request;
                self.locks.cancel(request);
                self.end_task(id, TaskOutcome::Cancelled, events);
                Ok(())
            }
            Phase::Running {
                stopping, stage, ..
            } => {
                let stage = *stage;
                if stopping.is_none() {
                    *stopping = Some(TaskOutcome::Cancelled);
                }
                self.stop_units(id, events);
                self.settle(id, stage, events);
                Ok(())
            }
        }
    }

    /// Ends a task: releases (or withdraws) its admission and remembers it among the ended tasks.
    pub(crate) fn end_task(&mut self, id: TaskId, outcome: TaskOutcome, events: &mut Vec<Event>) {
        let now = self.now_ms;
        let task = self.tasks.get_mut(&id).expect("task exists");
        match task.phase {
            Phase::Queued => self.queued_tasks -= 1,
            Phase::Running { open_units, .. } => {
                assert_eq!(open_units, 0, "task {id} ended with open units");
                self.locks.release(task.request);
                self.running_tasks -= 1;
            }
            Phase::Ended(_) => unreachable!("task {id} ended twice"),
        }
        self.owners.remove(&task.request);
        let process = task.process;
        task.phase = Phase::Ended(outcome.clone());
        task.ended_ms = Some(now);
        events.push(Event::TaskEnded { task: id, outcome });
        self.count_task_locks(process, -1);
        self.ended_tasks.push_back(id);
        // Old tasks are forgotten at the end of the command (`apply`), never while a loop over a
        // task's units may still be running.
    }

    /// Forgets the oldest ended tasks beyond the retention setting, with their units.
    pub(crate) fn forget_old_tasks(&mut self) {
        while self.ended_tasks.len() > self.settings.ended_tasks_retained as usize {
            let id = self.ended_tasks.pop_front().expect("non-empty");
            let task = self.tasks.get_mut(&id).expect("ended task exists");
            // The task ended long ago, so its parts are likely out of the caches: read one word
            // of each at once, so that their misses overlap instead of coming one by one as the
            // parts are freed.
            std::hint::black_box((
                task.release.as_bytes().first().copied(),
                task.plan.first().map(Vec::len),
                task.units.first().copied(),
            ));
            let process_id = task.process;
            let plan = std::mem::take(&mut task.plan);
            let mut units = std::mem::take(&mut task.units);
            for unit in &units {
                self.units.delete(unit);
            }
            self.tasks.delete(&id);
            self.spare.keep(plan, &mut units);
            let process = self
                .processes
                .get_mut(&process_id)
                .expect("task's process exists");
            process.refs -= 1;
            if process.refs == 0 {
                let process = self.processes.remove(&process_id).expect("exists");
                self.process_ids.remove(&process.steps, process_id);
            }
        }
    }
}
