//! The bookkeeping of what happened: the record of each unit, made the first time the unit is
//! seen, and the waits of tasks and units, opened when they start waiting and closed when they
//! stop, each with the core's own explanation of why.

use super::Sim;
use crate::simulate::result::{TaskRecord, UnitRecord, UnitResult, WaitRecord};
use cuttle_raft::sched::{Phase, TaskId, UnitId, UnitKind, UnitState};
use std::collections::BTreeSet;

impl Sim<'_> {
    /// Opens a wait for each task just queued that is still queued, and for each unit of a touched
    /// task that is seen for the first time and is waiting.
    pub(super) fn open_waits(&mut self, queued: Vec<TaskId>, touched: BTreeSet<TaskId>) {
        // A task waits from its submission, a unit from its creation; neither starts waiting later.
        for task in queued {
            let waiting = self
                .sched
                .task(task)
                .is_some_and(|t| t.phase == Phase::Queued);
            if waiting {
                let reason = self
                    .sched
                    .explain_task(task)
                    .map_or_else(|| "waiting".to_string(), |w| self.sched.describe(&w));
                self.open_task_waits.insert(task, self.waits.len());
                self.waits.push(WaitRecord {
                    at_ms: self.now,
                    until_ms: None,
                    task: task.0,
                    unit: None,
                    step: None,
                    target: None,
                    reason,
                });
            }
        }
        for task in touched {
            let Some(units) = self.sched.task(task).map(|t| t.units.clone()) else {
                continue;
            };
            let seen = self.units_seen.get(&task).copied().unwrap_or(0);
            for unit in units.iter().skip(seen) {
                let index = self.ensure_unit(*unit);
                let waiting = self
                    .sched
                    .unit(*unit)
                    .is_some_and(|u| u.state == UnitState::Waiting);
                if waiting && !self.open_unit_waits.contains_key(unit) {
                    let reason = self
                        .sched
                        .explain_unit(*unit)
                        .map_or_else(|| "waiting".to_string(), |w| self.sched.describe(&w));
                    let record = &self.units[index];
                    self.open_unit_waits.insert(*unit, self.waits.len());
                    self.waits.push(WaitRecord {
                        at_ms: self.now,
                        until_ms: None,
                        task: task.0,
                        unit: Some(unit.0),
                        step: Some(record.step.clone()),
                        target: Some(record.target.clone()),
                        reason,
                    });
                }
            }
            self.units_seen.insert(task, units.len());
        }
    }

    pub(super) fn task_record(&mut self, task: TaskId) -> Option<&mut TaskRecord> {
        self.task_index.get(&task).map(|i| &mut self.tasks[*i])
    }

    /// The record of a unit, made from the core's state the first time the unit is seen.
    pub(super) fn ensure_unit(&mut self, id: UnitId) -> usize {
        if let Some(index) = self.unit_index.get(&id) {
            return *index;
        }
        let unit = self
            .sched
            .unit(id)
            .expect("a unit in an event is in the state");
        let task = &self.tasks[self.task_index[&unit.task]];
        let deployment =
            &self.scenario.deployments[self.task_deployment[self.task_index[&unit.task]]];
        let record = UnitRecord {
            id: id.0,
            task: unit.task.0,
            project: task.project.clone(),
            environment: task.environment.clone(),
            tenant: task.tenant.clone(),
            step: deployment.spec.steps[unit.step as usize].name.clone(),
            kind: match unit.kind {
                UnitKind::Acquire => "acquire",
                UnitKind::Run => "run",
            }
            .to_string(),
            target: self
                .target_names
                .get(&unit.target)
                .cloned()
                .unwrap_or_default(),
            exclusive: unit.exclusive,
            created_ms: self.now,
            dispatched_ms: None,
            ended_ms: None,
            outcome: UnitResult::Unfinished,
            exit_code: None,
        };
        let index = self.units.len();
        self.units.push(record);
        self.unit_index.insert(id, index);
        index
    }

    pub(super) fn close_task_wait(&mut self, task: TaskId) {
        if let Some(i) = self.open_task_waits.remove(&task) {
            self.waits[i].until_ms = Some(self.now);
        }
    }

    pub(super) fn close_unit_wait(&mut self, unit: UnitId) {
        if let Some(i) = self.open_unit_waits.remove(&unit) {
            self.waits[i].until_ms = Some(self.now);
        }
    }
}
