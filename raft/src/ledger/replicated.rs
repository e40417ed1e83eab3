//! [`Replicated`]: the whole replicated state (the scheduling core and the ledger), the
//! [`Request`]s the log carries, and the snapshot envelope around both.

use crate::ledger::logs::{LogLine, TaskLog, LOG_BATCH_LINES_MAX, TASK_LOG_BYTES_DEFAULT};
use crate::ledger::model::Model;
use crate::ledger::payload::{TaskPayload, Variable};
use crate::ledger::releases::Releases;
use crate::ledger::target_vars::TargetVariables;
use crate::sched::command::{Command, Event, Input, Rejection, TaskOutcome, TaskSpec, UnitOutcome};
use crate::sched::ids::{TaskId, UnitId};
use crate::sched::snapshot::{SnapshotError, SNAPSHOT_MAGIC};
use crate::sched::Scheduler;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// First bytes of a snapshot of the whole replicated state.
pub const REPLICATED_MAGIC: &[u8; 8] = b"CUTTLERS";
/// The envelope format this build writes: 1 had no deployment model, 2 adds it, 3 adds releases
/// and per-target variables.
pub const REPLICATED_FORMAT_VERSION: u16 = 3;

mod deploy;

/// One entry of a log batch: a command for the core, or one that also touches the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A command for the scheduling core alone.
    Core(Command),
    /// Queues a task together with what its agents run.
    SubmitDeployment {
        /// The task, as the core schedules it.
        spec: TaskSpec,
        /// Its scripts and variables.
        payload: TaskPayload,
    },
    /// A batch of a unit's output, as its agent reported it.
    AppendLog {
        /// The unit.
        unit: UnitId,
        /// Its attempt.
        attempt: u32,
        /// The batch's number within the unit attempt (from 0); a batch already kept is ignored.
        seq: u64,
        /// The lines.
        lines: Vec<LogLine>,
    },
    /// Replaces the deployment model (`cuttle apply`): checked whole by the client first, applied
    /// in one entry, so a spec applies atomically; applying the same spec again changes nothing.
    ApplySpec(Model),
    /// Creates a release of a project (`cuttle release create`); when the first phase of the
    /// project's lifecycle is automatic, deploys it there (for every tenant of a tenanted project).
    CreateRelease {
        /// The project, as the model names it.
        project: String,
        /// The new release's version, unique in the project.
        version: String,
    },
    /// Deploys a release to an environment (`cuttle deploy`): one task per tenant, or one for an
    /// untenanted project, all queued or none; the lifecycle must have reached the environment.
    Deploy {
        /// The project.
        project: String,
        /// The release's version.
        release: String,
        /// The environment.
        environment: String,
        /// The tenants, for a tenanted project (empty otherwise, or with `all_tenants`).
        tenants: Vec<String>,
        /// Every tenant of the model, for a tenanted project.
        all_tenants: bool,
    },
}

impl From<Command> for Request {
    fn from(command: Command) -> Request {
        Request::Core(command)
    }
}

impl From<&Command> for Request {
    fn from(command: &Command) -> Request {
        Request::Core(command.clone())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Ledger {
    payloads: BTreeMap<TaskId, TaskPayload>,
    logs: BTreeMap<TaskId, TaskLog>,
    /// Ended tasks with a payload or a log, oldest first: forgotten with the core's retention.
    ended: VecDeque<TaskId>,
    task_log_bytes_max: u64,
    /// The deployment model last applied.
    model: Model,
    /// Releases, where they succeeded, and the deployments of them in flight.
    releases: Releases,
    /// The role- and target-scoped variables of deployments that have some.
    per_target: BTreeMap<TaskId, TargetVariables>,
}

/// The ledger as envelope format 2 wrote it.
#[derive(Deserialize)]
struct LedgerV2 {
    payloads: BTreeMap<TaskId, TaskPayload>,
    logs: BTreeMap<TaskId, TaskLog>,
    ended: VecDeque<TaskId>,
    task_log_bytes_max: u64,
    model: Model,
}

impl From<LedgerV2> for Ledger {
    fn from(old: LedgerV2) -> Ledger {
        Ledger {
            payloads: old.payloads,
            logs: old.logs,
            ended: old.ended,
            task_log_bytes_max: old.task_log_bytes_max,
            model: old.model,
            ..Ledger::default()
        }
    }
}

/// The ledger as envelope format 1 wrote it.
#[derive(Deserialize)]
struct LedgerV1 {
    payloads: BTreeMap<TaskId, TaskPayload>,
    logs: BTreeMap<TaskId, TaskLog>,
    ended: VecDeque<TaskId>,
    task_log_bytes_max: u64,
}

impl From<LedgerV1> for Ledger {
    fn from(old: LedgerV1) -> Ledger {
        Ledger {
            payloads: old.payloads,
            logs: old.logs,
            ended: old.ended,
            task_log_bytes_max: old.task_log_bytes_max,
            ..Ledger::default()
        }
    }
}

/// The replicated state: the scheduling core and the ledger beside it.
#[derive(Debug)]
pub struct Replicated {
    /// The scheduling core.
    pub scheduler: Scheduler,
    ledger: Ledger,
}

impl Default for Replicated {
    fn default() -> Replicated {
        Replicated::new(Scheduler::default())
    }
}

impl Replicated {
    /// The ledger empty beside `scheduler`.
    pub fn new(scheduler: Scheduler) -> Replicated {
        Replicated {
            scheduler,
            ledger: Ledger {
                task_log_bytes_max: TASK_LOG_BYTES_DEFAULT,
                ..Ledger::default()
            },
        }
    }

    /// Applies one request at the leader's time `now_ms`; `events` is cleared and receives the
    /// core's decisions. A rejected request changes nothing.
    pub fn apply(
        &mut self,
        now_ms: u64,
        request: Request,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        // The core's apply clears the buffer too; requests that apply several core commands
        // collect each one's events in a scratch buffer and append them.
        events.clear();
        let first = 0;
        match request {
            Request::Core(command) => self.scheduler.apply(Input { now_ms, command }, events)?,
            Request::SubmitDeployment { spec, payload } => {
                payload.validate(&spec)?;
                self.scheduler.apply(
                    Input {
                        now_ms,
                        command: Command::SubmitTask(spec),
                    },
                    events,
                )?;
                let task = events[first..]
                    .iter()
                    .find_map(|e| match e {
                        Event::TaskQueued { task } => Some(*task),
                        _ => None,
                    })
                    .expect("an accepted submission queues its task");
                self.ledger.payloads.insert(task, payload);
            }
            Request::AppendLog {
                unit,
                attempt,
                seq,
                lines,
            } => {
                if lines.len() > LOG_BATCH_LINES_MAX {
                    return Err(Rejection::Invalid {
                        field: "lines".into(),
                        problem: format!(
                            "a batch has {} lines; at most {LOG_BATCH_LINES_MAX}: send smaller batches",
                            lines.len()
                        ),
                    });
                }
                let record = self
                    .scheduler
                    .unit(unit)
                    .ok_or(Rejection::UnknownUnit(unit))?;
                if record.attempt != attempt {
                    return Err(Rejection::StaleAttempt {
                        unit,
                        current: record.attempt,
                        reported: attempt,
                    });
                }
                let task = record.task;
                let limit = self.ledger.task_log_bytes_max;
                let secrets = self
                    .ledger
                    .payloads
                    .get(&task)
                    .map(|p| p.secrets())
                    .unwrap_or_default();
                let log = self.ledger.logs.entry(task).or_default();
                if log.is_new_batch(unit, attempt, seq) {
                    log.append_batch(unit, attempt, seq, lines, &secrets, limit);
                }
            }
            Request::ApplySpec(model) => {
                if let Some(task_cap) = model.cluster.task_cap {
                    self.scheduler.apply(
                        Input {
                            now_ms,
                            command: Command::SetSettings(crate::sched::SettingsPatch {
                                task_cap: Some(task_cap),
                                ..Default::default()
                            }),
                        },
                        events,
                    )?;
                }
                self.ledger.model = model;
            }
            request @ (Request::CreateRelease { .. } | Request::Deploy { .. }) => {
                self.apply_release_request(now_ms, request, events)?
            }
        }
        // A success may promote a release, whose new tasks may start (and, without units, end)
        // at once: record until nothing more follows. Each round moves a release to a later
        // phase, so this ends.
        let mut from = first;
        loop {
            let promotions = self.record(now_ms, from, events);
            if promotions.is_empty() {
                break;
            }
            from = events.len();
            for promotion in promotions {
                self.promote(now_ms, promotion, events);
            }
        }
        Ok(())
    }

    /// Writes the cluster's own log lines for the decisions in `events[first..]`, records ended
    /// deployments on their releases, and forgets the ledger of tasks the core has forgotten.
    /// Returns the automatic deployments that successes ask for.
    fn record(&mut self, now_ms: u64, first: usize, events: &[Event]) -> Vec<deploy::Promotion> {
        let limit = self.ledger.task_log_bytes_max;
        let mut promotions = Vec::new();
        for event in &events[first..] {
            let (task, unit, text) = match event {
                Event::TaskStarted { task, token } => (
                    *task,
                    None,
                    format!("[cuttle] task started (admission token {})", token.0),
                ),
                Event::UnitDispatched {
                    unit,
                    task,
                    target,
                    step,
                    attempt,
                    exclusive,
                    token,
                    ..
                } => {
                    let text = format!(
                        "[cuttle] step {} dispatched to {} (unit {}, attempt {attempt}, token {}, {})",
                        self.step_name(*task, *step),
                        self.target_name(*target),
                        unit.0,
                        token.0,
                        if *exclusive { "exclusive" } else { "shared" }
                    );
                    (*task, Some(*unit), text)
                }
                Event::UnitEnded { unit, outcome } => {
                    let Some(record) = self.scheduler.unit(*unit) else {
                        continue;
                    };
                    let how = match outcome {
                        UnitOutcome::Succeeded => "succeeded".to_string(),
                        UnitOutcome::Failed { exit_code } => {
                            format!("failed with exit code {exit_code}")
                        }
                        UnitOutcome::TargetLost => "failed: its agent was lost".to_string(),
                        UnitOutcome::Skipped => "skipped".to_string(),
                        UnitOutcome::Cancelled => "cancelled".to_string(),
                    };
                    let text = format!(
                        "[cuttle] step {} on {} {how}",
                        self.step_name(record.task, record.step),
                        self.target_name(record.target)
                    );
                    (record.task, Some(*unit), text)
                }
                Event::TaskEnded { task, outcome } => {
                    let how = match outcome {
                        TaskOutcome::Succeeded => "succeeded".to_string(),
                        TaskOutcome::Failed { reason } => format!("failed: {reason}"),
                        TaskOutcome::Cancelled => "cancelled".to_string(),
                    };
                    self.ledger.ended.push_back(*task);
                    let succeeded = matches!(outcome, TaskOutcome::Succeeded);
                    promotions.extend(self.release_task_ended(*task, succeeded));
                    (*task, None, format!("[cuttle] task {how}"))
                }
                _ => continue,
            };
            if self.scheduler.task(task).is_some() {
                self.ledger
                    .logs
                    .entry(task)
                    .or_default()
                    .system(now_ms, unit, text, limit);
            }
        }
        let retained = self.scheduler.settings().ended_tasks_retained as usize;
        while self.ledger.ended.len() > retained {
            let task = self.ledger.ended.pop_front().expect("longer than retained");
            self.ledger.payloads.remove(&task);
            self.ledger.logs.remove(&task);
            self.ledger.per_target.remove(&task);
        }
        debug_assert!(self.ledger.payloads.len() <= self.scheduler.tasks().count() + retained);
        debug_assert!(self.ledger.releases.active_len() <= self.scheduler.tasks().count());
        promotions
    }

    fn step_name(&self, task: TaskId, step: u16) -> &str {
        let sched = &self.scheduler;
        sched
            .task(task)
            .and_then(|t| sched.process(t.process))
            .and_then(|p| p.steps.get(step as usize))
            .map(|s| sched.symbols().name(s.name))
            .unwrap_or("?")
    }

    fn target_name(&self, target: crate::sched::TargetId) -> &str {
        self.scheduler
            .target(target)
            .map(|t| self.scheduler.symbols().name(t.name))
            .unwrap_or("?")
    }

    /// The scripts and variables of a task, while the task is known.
    pub fn payload(&self, task: TaskId) -> Option<&TaskPayload> {
        self.ledger.payloads.get(&task)
    }

    /// The variables a unit of `task` on `target` sees: the task's, with the values scoped to
    /// the target's roles or name resolved for it.
    pub fn variables_for(&self, task: TaskId, target: crate::sched::TargetId) -> Vec<Variable> {
        let Some(payload) = self.ledger.payloads.get(&task) else {
            return Vec::new();
        };
        let (Some(scoped), Some(t)) = (
            self.ledger.per_target.get(&task),
            self.scheduler.target(target),
        ) else {
            return payload.variables.clone();
        };
        let names = self.scheduler.symbols();
        let roles: Vec<&str> = t.roles.iter().map(|r| names.name(*r)).collect();
        scoped.for_target(&payload.variables, names.name(t.name), &roles)
    }

    /// Releases and the deployments in flight.
    pub fn releases(&self) -> &Releases {
        &self.ledger.releases
    }

    /// A task's log, while the task is known.
    pub fn log(&self, task: TaskId) -> Option<&TaskLog> {
        self.ledger.logs.get(&task)
    }

    /// The deployment model last applied.
    pub fn model(&self) -> &Model {
        &self.ledger.model
    }

    /// Most bytes of text one task's log keeps.
    pub fn task_log_bytes_max(&self) -> u64 {
        self.ledger.task_log_bytes_max
    }

    /// Encodes the whole state: the envelope, the core's own snapshot, then the ledger.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let core = self.scheduler.snapshot()?;
        let mut bytes = Vec::with_capacity(core.len() + 4096);
        bytes.extend_from_slice(REPLICATED_MAGIC);
        bytes.extend_from_slice(&REPLICATED_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(core.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&core);
        bincode::serde::encode_into_std_write(
            &self.ledger,
            &mut bytes,
            bincode::config::standard(),
        )
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        Ok(bytes)
    }

    /// Decodes what [`Replicated::snapshot`] wrote, or a bare core snapshot (written before the
    /// ledger existed: the ledger starts empty).
    pub fn restore(bytes: &[u8]) -> Result<Replicated, SnapshotError> {
        if bytes.starts_with(SNAPSHOT_MAGIC) {
            return Ok(Replicated::new(Scheduler::restore(bytes)?));
        }
        let body = bytes
            .strip_prefix(REPLICATED_MAGIC.as_slice())
            .ok_or(SnapshotError::BadMagic)?;
        if body.len() < 10 {
            return Err(SnapshotError::Decode("shorter than its header".into()));
        }
        let found = u16::from_le_bytes([body[0], body[1]]);
        if !(1..=REPLICATED_FORMAT_VERSION).contains(&found) {
            return Err(SnapshotError::UnsupportedVersion { found });
        }
        let core_len = u64::from_le_bytes(body[2..10].try_into().expect("8 bytes")) as usize;
        let rest = &body[10..];
        if rest.len() < core_len {
            return Err(SnapshotError::Decode("the core's part is truncated".into()));
        }
        let scheduler = Scheduler::restore(&rest[..core_len])?;
        let decode_error = |e: bincode::error::DecodeError| SnapshotError::Decode(e.to_string());
        let config = bincode::config::standard();
        let (ledger, read) = if found == 1 {
            let (old, read): (LedgerV1, usize) =
                bincode::serde::decode_from_slice(&rest[core_len..], config)
                    .map_err(decode_error)?;
            (Ledger::from(old), read)
        } else if found == 2 {
            let (old, read): (LedgerV2, usize) =
                bincode::serde::decode_from_slice(&rest[core_len..], config)
                    .map_err(decode_error)?;
            (Ledger::from(old), read)
        } else {
            bincode::serde::decode_from_slice(&rest[core_len..], config).map_err(decode_error)?
        };
        if read != rest.len() - core_len {
            return Err(SnapshotError::TrailingBytes(rest.len() - core_len - read));
        }
        Ok(Replicated { scheduler, ledger })
    }
}
