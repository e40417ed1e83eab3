//! The event loop proper: time 0's setup, then each queued happening (a unit's end, a submission,
//! a scripted event) applied to the scheduling core at its virtual time, and the core's decisions
//! absorbed: the task and unit records updated, a dispatched unit's end queued, a unit the core
//! asks to stop ended at once. Making unit records and opening and closing waits is
//! [`super::record`]'s job.

use super::{
    Happening, Key, Sim, SimError, CANCELLED_EXIT_CODE, CLASS_SCRIPTED, CLASS_SUBMIT,
    CLASS_UNIT_END,
};
use crate::simulate::result::{ScriptedRecord, TaskRecord, TaskResult, UnitResult};
use crate::simulate::scenario::Action;
use cuttle_raft::sched::{
    Command, Event, SettingsPatch, TaskId, TaskOutcome, UnitId, UnitKind, UnitOutcome,
};
use std::collections::BTreeSet;

impl Sim<'_> {
    pub(super) fn apply(
        &mut self,
        command: Command,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<Event>, SimError> {
        self.sched
            .apply_one(self.now, command)
            .map_err(|rejection| SimError {
                at_ms: self.now,
                what: what(),
                rejection,
            })
    }

    /// Time 0: the task cap and the targets; then every submission and scripted event is queued.
    pub(super) fn setup(&mut self) -> Result<(), SimError> {
        if let Some(cap) = self.scenario.task_cap {
            self.apply(
                Command::SetSettings(SettingsPatch {
                    task_cap: Some(cap),
                    ..Default::default()
                }),
                || format!("set the task cap to {cap}"),
            )?;
        }
        for spec in &self.scenario.targets {
            let name = spec.name.clone();
            let events = self.apply(Command::UpsertTarget(spec.clone()), || {
                format!("register target {name}")
            })?;
            for event in events {
                if let Event::TargetUpserted { target } = event {
                    self.target_names.insert(target, spec.name.clone());
                }
            }
        }
        for (i, deployment) in self.scenario.deployments.iter().enumerate() {
            self.queue.insert(
                Key {
                    at_ms: deployment.at_ms,
                    class: CLASS_SUBMIT,
                    order: i as u64,
                },
                Happening::Submit(i),
            );
        }
        for (i, event) in self.scenario.events.iter().enumerate() {
            self.queue.insert(
                Key {
                    at_ms: event.at_ms,
                    class: CLASS_SCRIPTED,
                    order: i as u64,
                },
                Happening::Scripted(i),
            );
        }
        Ok(())
    }

    pub(super) fn run(&mut self) -> Result<(), SimError> {
        while let Some((key, happening)) = self.queue.pop_first() {
            self.now = key.at_ms;
            match happening {
                Happening::UnitEnd {
                    unit,
                    attempt,
                    exit_code,
                } => {
                    self.unit_ends.remove(&unit);
                    let events = self.apply(
                        Command::UnitFinished {
                            unit,
                            attempt,
                            exit_code,
                        },
                        || format!("record the end of unit {unit}"),
                    )?;
                    self.absorb(events);
                }
                Happening::Submit(i) => self.submit(i)?,
                Happening::Scripted(i) => self.scripted(i),
            }
        }
        Ok(())
    }

    fn submit(&mut self, index: usize) -> Result<(), SimError> {
        let deployment = &self.scenario.deployments[index];
        let events = self.apply(Command::SubmitTask(deployment.spec.clone()), || {
            format!("submit deployment {}", deployment.name)
        })?;
        if let Some(Event::TaskQueued { task }) = events.first() {
            let spec = &deployment.spec;
            self.task_index.insert(*task, self.tasks.len());
            self.task_deployment.push(index);
            self.tasks.push(TaskRecord {
                id: task.0,
                name: deployment.name.clone(),
                project: spec.project.clone(),
                release: spec.release.clone(),
                environment: spec.environment.clone(),
                tenant: spec.tenant.clone(),
                submitted_ms: self.now,
                started_ms: None,
                ended_ms: None,
                waited_ms: None,
                outcome: TaskResult::Unfinished,
                reason: None,
            });
        }
        self.absorb(events);
        Ok(())
    }

    /// Applies a scripted event. One the core refuses changes nothing, and is recorded so.
    fn scripted(&mut self, index: usize) {
        let event = &self.scenario.events[index];
        let (action, subject, result) = match &event.action {
            Action::Cancel { deployment } => {
                let name = self.scenario.deployments[*deployment].name.clone();
                let task = self
                    .task_deployment
                    .iter()
                    .position(|d| d == deployment)
                    .map(|i| TaskId(self.tasks[i].id));
                match task {
                    Some(task) => (
                        "cancel",
                        name,
                        self.sched
                            .apply_one(self.now, Command::CancelTask { task })
                            .map(|events| (format!("task {task} cancelled"), events))
                            .map_err(|rejection| rejection.to_string()),
                    ),
                    None => (
                        "cancel",
                        name,
                        Err("the deployment is not submitted yet".to_string()),
                    ),
                }
            }
            Action::AgentLost { target } => (
                "agent_lost",
                target.clone(),
                self.sched
                    .apply_one(
                        self.now,
                        Command::AgentLost {
                            name: target.clone(),
                        },
                    )
                    .map(|events| {
                        let units = events
                            .iter()
                            .filter(|e| matches!(e, Event::UnitEnded { .. }))
                            .count();
                        let effect = if events.is_empty() {
                            "already lost: no effect".to_string()
                        } else {
                            format!("target lost; {units} of its units ended")
                        };
                        (effect, events)
                    })
                    .map_err(|rejection| rejection.to_string()),
            ),
            Action::SetTaskCap { task_cap } => (
                "task_cap",
                task_cap.to_string(),
                self.sched
                    .apply_one(
                        self.now,
                        Command::SetSettings(SettingsPatch {
                            task_cap: Some(*task_cap),
                            ..Default::default()
                        }),
                    )
                    .map(|events| (format!("task cap set to {task_cap}"), events))
                    .map_err(|rejection| rejection.to_string()),
            ),
        };
        let effect = match result {
            Ok((effect, events)) => {
                self.absorb(events);
                effect
            }
            // A refused event changes nothing: a cancel of a task that has ended, say.
            Err(rejection) => format!("no effect: {rejection}"),
        };
        self.scripted.push(ScriptedRecord {
            at_ms: self.now,
            action: action.to_string(),
            subject,
            effect,
        });
    }

    /// Records the core's decisions and carries them out.
    fn absorb(&mut self, events: Vec<Event>) {
        let mut touched: BTreeSet<TaskId> = BTreeSet::new();
        let mut queued: Vec<TaskId> = Vec::new();
        for event in events {
            match event {
                Event::TaskQueued { task } => queued.push(task),
                Event::TaskStarted { task, .. } => {
                    let now = self.now;
                    if let Some(record) = self.task_record(task) {
                        record.started_ms = Some(now);
                        record.waited_ms = Some(now - record.submitted_ms);
                    }
                    self.close_task_wait(task);
                    touched.insert(task);
                }
                Event::UnitDispatched {
                    unit,
                    task,
                    target,
                    step,
                    kind,
                    attempt,
                    exclusive,
                    ..
                } => {
                    let index = self.ensure_unit(unit);
                    let now = self.now;
                    let record = &mut self.units[index];
                    record.dispatched_ms = Some(now);
                    record.exclusive = exclusive;
                    self.close_unit_wait(unit);
                    let behaviour = self
                        .task_index
                        .get(&task)
                        .and_then(|i| {
                            self.scenario.deployments[self.task_deployment[*i]]
                                .steps
                                .get(step as usize)
                        })
                        .cloned()
                        .unwrap_or_default();
                    let (duration, exit_code) = match kind {
                        UnitKind::Acquire => (behaviour.acquire_ms, 0),
                        UnitKind::Run => {
                            let fails = self
                                .target_names
                                .get(&target)
                                .is_some_and(|name| behaviour.fail_on.contains(name));
                            (behaviour.duration_ms, i32::from(fails))
                        }
                    };
                    self.schedule_end(unit, attempt, now.saturating_add(duration), exit_code);
                    touched.insert(task);
                }
                Event::UnitCancelRequested { unit, .. } => {
                    // The agent stops the unit at once.
                    if let Some(key) = self.unit_ends.remove(&unit) {
                        if let Some(Happening::UnitEnd { attempt, .. }) = self.queue.remove(&key) {
                            self.schedule_end(unit, attempt, self.now, CANCELLED_EXIT_CODE);
                        }
                    }
                }
                Event::UnitEnded { unit, outcome } => {
                    let index = self.ensure_unit(unit);
                    if let Some(key) = self.unit_ends.remove(&unit) {
                        self.queue.remove(&key);
                    }
                    let now = self.now;
                    let record = &mut self.units[index];
                    record.ended_ms = Some(now);
                    (record.outcome, record.exit_code) = match outcome {
                        UnitOutcome::Succeeded => (UnitResult::Succeeded, Some(0)),
                        UnitOutcome::Failed { exit_code } => (UnitResult::Failed, Some(exit_code)),
                        UnitOutcome::TargetLost => (UnitResult::TargetLost, None),
                        UnitOutcome::Skipped => (UnitResult::Skipped, None),
                        UnitOutcome::Cancelled => {
                            (UnitResult::Cancelled, Some(CANCELLED_EXIT_CODE))
                        }
                    };
                    let task = TaskId(record.task);
                    self.close_unit_wait(unit);
                    touched.insert(task);
                }
                Event::TaskEnded { task, outcome } => {
                    let now = self.now;
                    if let Some(record) = self.task_record(task) {
                        record.ended_ms = Some(now);
                        (record.outcome, record.reason) = match outcome {
                            TaskOutcome::Succeeded => (TaskResult::Succeeded, None),
                            TaskOutcome::Failed { reason } => (TaskResult::Failed, Some(reason)),
                            TaskOutcome::Cancelled => (TaskResult::Cancelled, None),
                        };
                    }
                    self.close_task_wait(task);
                }
                // Targets, settings and client locks: reported by the scripted event's effect, or
                // not part of a scenario.
                _ => {}
            }
        }
        self.open_waits(queued, touched);
    }

    fn schedule_end(&mut self, unit: UnitId, attempt: u32, at_ms: u64, exit_code: i32) {
        let key = Key {
            at_ms,
            class: CLASS_UNIT_END,
            order: unit.0,
        };
        self.queue.insert(
            key,
            Happening::UnitEnd {
                unit,
                attempt,
                exit_code,
            },
        );
        self.unit_ends.insert(unit, key);
    }
}
