//! The unit lifecycle: dispatch on grant, the agent's start and end reports (idempotent by unit
//! and attempt), loss of a target, and how a unit's end moves its task on: to the next stage, or to
//! stopping (waiting units skipped, dispatched ones asked to stop) and, once nothing runs, the end.

use crate::sched::command::{Event, Rejection, TaskOutcome, UnitOutcome};
use crate::sched::ids::{FencingToken, TaskId, UnitId};
use crate::sched::lock::LockTable;
use crate::sched::state::{Phase, Scheduler, Unit, UnitState};
use crate::sched::validate::invalid;

impl<L: LockTable> Scheduler<L> {
    pub(crate) fn unit_granted(
        &mut self,
        id: UnitId,
        token: FencingToken,
        events: &mut Vec<Event>,
    ) {
        let unit = self.units.get_mut(&id).expect("granted unit exists");
        assert_eq!(unit.state, UnitState::Waiting, "unit {id} granted twice");
        unit.state = UnitState::Dispatched {
            cancel_requested: false,
        };
        unit.token = Some(token);
        unit.dispatched_ms = Some(self.now_ms);
        events.push(Event::UnitDispatched {
            unit: id,
            task: unit.task,
            target: unit.target,
            step: unit.step,
            kind: unit.kind,
            attempt: unit.attempt,
            exclusive: unit.exclusive,
            token,
        });
    }

    fn known_unit(&self, id: UnitId, attempt: u32) -> Result<&Unit, Rejection> {
        let unit = self.units.get(&id).ok_or(Rejection::UnknownUnit(id))?;
        if unit.attempt != attempt {
            return Err(Rejection::StaleAttempt {
                unit: id,
                current: unit.attempt,
                reported: attempt,
            });
        }
        if unit.state == UnitState::Waiting {
            return Err(invalid(
                "unit",
                format!("unit {id} was never dispatched, so it cannot have started or ended"),
            ));
        }
        Ok(unit)
    }

    pub(crate) fn unit_started(&mut self, id: UnitId, attempt: u32) -> Result<(), Rejection> {
        self.known_unit(id, attempt)?;
        let unit = self.units.get_mut(&id).expect("known");
        if let UnitState::Dispatched { cancel_requested } = unit.state {
            unit.state = UnitState::Running { cancel_requested };
        }
        Ok(())
    }

    pub(crate) fn unit_finished(
        &mut self,
        id: UnitId,
        attempt: u32,
        exit_code: i32,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let unit = self.known_unit(id, attempt)?;
        let cancel_requested = match unit.state {
            UnitState::Dispatched { cancel_requested }
            | UnitState::Running { cancel_requested } => cancel_requested,
            // Reported again (to a new leader, say): recorded once already.
            UnitState::Ended(_) => return Ok(()),
            UnitState::Waiting => unreachable!("checked by known_unit"),
        };
        let outcome = match (exit_code, cancel_requested) {
            (0, _) => UnitOutcome::Succeeded,
            (_, true) => UnitOutcome::Cancelled,
            (code, false) => UnitOutcome::Failed { exit_code: code },
        };
        self.locks.release(unit.request);
        self.unit_ended(id, outcome, events);
        Ok(())
    }

    /// The unit's target was lost: a waiting unit stops waiting, a dispatched one is taken as dead
    /// (its agent fenced itself when it lost its lease).
    pub(crate) fn unit_lost(&mut self, id: UnitId, events: &mut Vec<Event>) {
        let unit = &self.units[&id];
        match unit.state {
            UnitState::Waiting => self.locks.cancel(unit.request),
            UnitState::Dispatched { .. } | UnitState::Running { .. } => {
                self.locks.release(unit.request)
            }
            UnitState::Ended(_) => unreachable!("ended units leave target_units"),
        }
        self.unit_ended(id, UnitOutcome::TargetLost, events);
    }

    /// Records a unit's end, and moves its task on: to its next stage, or to stopping.
    pub(crate) fn unit_ended(&mut self, id: UnitId, outcome: UnitOutcome, events: &mut Vec<Event>) {
        let now = self.now_ms;
        let unit = self.units.get_mut(&id).expect("unit exists");
        assert!(
            !matches!(unit.state, UnitState::Ended(_)),
            "unit {id} ended twice"
        );
        unit.state = UnitState::Ended(outcome.clone());
        unit.ended_ms = Some(now);
        let (task_id, target, request) = (unit.task, unit.target, unit.request);
        self.target_units.remove(&(target, id));
        self.owners.remove(&request);
        events.push(Event::UnitEnded {
            unit: id,
            outcome: outcome.clone(),
        });
        let failure = match &outcome {
            UnitOutcome::Succeeded | UnitOutcome::Skipped | UnitOutcome::Cancelled => None,
            UnitOutcome::Failed { exit_code } => Some(format!(
                "unit {id} on {} failed with exit code {exit_code}",
                self.symbols.name(self.targets[&target].name)
            )),
            UnitOutcome::TargetLost => Some(format!(
                "target {} was lost while unit {id} waited or ran",
                self.symbols.name(self.targets[&target].name)
            )),
        };
        let task = self.tasks.get_mut(&task_id).expect("unit's task exists");
        let Phase::Running {
            stage,
            open_units,
            stopping,
        } = &mut task.phase
        else {
            unreachable!("unit {id} ended while its task is not running")
        };
        *open_units -= 1;
        let stage = *stage;
        if let (Some(reason), None) = (failure, &stopping) {
            *stopping = Some(TaskOutcome::Failed { reason });
            self.stop_units(task_id, events);
        }
        self.settle(task_id, stage, events);
    }

    /// Ends a stopping task or starts the next stage once no unit of the stage is open.
    pub(crate) fn settle(&mut self, id: TaskId, stage: u16, events: &mut Vec<Event>) {
        let Phase::Running {
            open_units,
            stopping,
            ..
        } = &self.tasks[&id].phase
        else {
            return;
        };
        if *open_units > 0 {
            return;
        }
        match stopping.clone() {
            Some(outcome) => self.end_task(id, outcome, events),
            None => self.start_stage(id, stage + 1, events),
        }
    }

    /// Skips the stage's waiting units and asks the dispatched ones to stop.
    pub(crate) fn stop_units(&mut self, id: TaskId, events: &mut Vec<Event>) {
        let units = self.tasks[&id].units.clone();
        for unit_id in units {
            let unit = &self.units[&unit_id];
            match unit.state {
                UnitState::Waiting => {
                    self.locks.cancel(unit.request);
                    self.unit_ended(unit_id, UnitOutcome::Skipped, events);
                }
                UnitState::Dispatched {
                    cancel_requested: false,
                }
                | UnitState::Running {
                    cancel_requested: false,
                } => {
                    let target = unit.target;
                    let unit = self.units.get_mut(&unit_id).expect("exists");
                    match &mut unit.state {
                        UnitState::Dispatched { cancel_requested }
                        | UnitState::Running { cancel_requested } => *cancel_requested = true,
                        _ => unreachable!("matched above"),
                    }
                    events.push(Event::UnitCancelRequested {
                        unit: unit_id,
                        target,
                    });
                }
                _ => {}
            }
        }
    }
}
