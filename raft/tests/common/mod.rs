//! Test support: a scheduler driven by hand, with builders for targets and tasks.

#![allow(dead_code)]

use cuttle_raft::sched::*;

/// A task spec with one step per `(name, role)`.
pub fn task(project: &str, env: &str, steps: &[(&str, &str)]) -> TaskSpec {
    TaskSpec {
        project: project.into(),
        release: "1.0.0".into(),
        environment: env.into(),
        tenant: None,
        concurrency_tag: None,
        bypass: BypassRule::default(),
        hold_targets: false,
        acquire_max_parallelism: PARALLELISM_DEFAULT,
        steps: steps
            .iter()
            .map(|(name, role)| StepSpec {
                name: (*name).into(),
                roles: vec![(*role).into()],
                max_parallelism: PARALLELISM_DEFAULT,
                package: None,
                lock: None,
            })
            .collect(),
    }
}

pub fn target(
    name: &str,
    envs: &[&str],
    roles: &[&str],
    tenants: &[&str],
    capacity: u32,
) -> TargetSpec {
    TargetSpec {
        name: name.into(),
        environments: envs.iter().map(|s| s.to_string()).collect(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        tenants: tenants.iter().map(|s| s.to_string()).collect(),
        capacity,
    }
}

/// A scheduler, a clock, and every event so far.
pub struct Harness<L: LockTable + Default = FifoLockTable> {
    pub sched: Scheduler<L>,
    pub now_ms: u64,
    pub events: Vec<Event>,
}

impl<L: LockTable + Default> Default for Harness<L> {
    fn default() -> Self {
        Harness {
            sched: Scheduler::default(),
            now_ms: 1_000,
            events: Vec::new(),
        }
    }
}

impl<L: LockTable + Default> Harness<L> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn apply(&mut self, command: Command) -> Result<Vec<Event>, Rejection> {
        self.now_ms += 1;
        let events = self.sched.apply_one(self.now_ms, command)?;
        self.events.extend(events.iter().cloned());
        Ok(events)
    }

    pub fn ok(&mut self, command: Command) -> Vec<Event> {
        self.apply(command).expect("command accepted")
    }

    pub fn add_target(&mut self, spec: TargetSpec) -> TargetId {
        match self.ok(Command::UpsertTarget(spec))[..] {
            [Event::TargetUpserted { target }] => target,
            ref other => panic!("unexpected events {other:?}"),
        }
    }

    pub fn submit(&mut self, spec: TaskSpec) -> TaskId {
        let events = self.ok(Command::SubmitTask(spec));
        match events.first() {
            Some(Event::TaskQueued { task }) => *task,
            other => panic!("unexpected events {other:?}"),
        }
    }

    /// Units dispatched and not ended, by id.
    pub fn active_units(&self) -> Vec<&Unit> {
        self.sched.units().filter(|u| u.is_active()).collect()
    }

    /// Tasks whose units are active right now, sorted.
    pub fn active_tasks(&self) -> Vec<TaskId> {
        let mut tasks: Vec<TaskId> = self.active_units().iter().map(|u| u.task).collect();
        tasks.sort();
        tasks.dedup();
        tasks
    }

    /// The active unit of a task (exactly one expected).
    pub fn active_unit_of(&self, task: TaskId) -> UnitId {
        let units: Vec<UnitId> = self
            .active_units()
            .iter()
            .filter(|u| u.task == task)
            .map(|u| u.id)
            .collect();
        assert_eq!(units.len(), 1, "task {task} has active units {units:?}");
        units[0]
    }

    pub fn finish(&mut self, unit: UnitId, exit_code: i32) -> Vec<Event> {
        let attempt = self.sched.unit(unit).expect("unit").attempt;
        self.ok(Command::UnitFinished {
            unit,
            attempt,
            exit_code,
        })
    }

    /// Finishes the one active unit of a task with success.
    pub fn finish_task_unit(&mut self, task: TaskId) -> Vec<Event> {
        let unit = self.active_unit_of(task);
        self.finish(unit, 0)
    }

    pub fn phase(&self, task: TaskId) -> Phase {
        self.sched.task(task).expect("task").phase.clone()
    }

    pub fn explain_task_units(&self, task: TaskId) -> Vec<String> {
        self.sched
            .units()
            .filter(|u| u.task == task && u.state == UnitState::Waiting)
            .map(|u| {
                self.sched.describe(
                    &self
                        .sched
                        .explain_unit(u.id)
                        .expect("waiting unit explains"),
                )
            })
            .collect()
    }

    pub fn step_name(&self, unit: &Unit) -> String {
        let task = self.sched.task(unit.task).unwrap();
        let process = self.sched.process(task.process).unwrap();
        self.sched
            .symbols()
            .name(process.steps[unit.step as usize].name)
            .to_string()
    }
}
pub mod checked;
pub mod workload;
