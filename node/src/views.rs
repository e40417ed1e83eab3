//! Read views of the replicated state as JSON documents (the `Read` call): agents with their
//! sessions, one task with its units, a task's log from a line on. Field names are stable; they are
//! documented in `docs/cli.md`.

use crate::sessions::Sessions;
use cuttle_raft::cluster::state_machine::Applied;
use cuttle_raft::sched::{Phase, TaskId, TaskOutcome, UnitKind, UnitOutcome, UnitState};
use serde_json::{json, Value};
use tonic::Status;

/// Most log lines one read returns; read again from `next` for more.
pub const LOG_LINES_PER_READ_MAX: usize = 5_000;

fn parse_id(text: &str, what: &str) -> Result<u64, Status> {
    text.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "{what} {text:?} is not a number: give a task id such as 42"
        ))
    })
}

fn task_state(phase: &Phase) -> &'static str {
    match phase {
        Phase::Queued => "queued",
        Phase::Running { .. } => "running",
        Phase::Ended(TaskOutcome::Succeeded) => "succeeded",
        Phase::Ended(TaskOutcome::Failed { .. }) => "failed",
        Phase::Ended(TaskOutcome::Cancelled) => "cancelled",
    }
}

/// Every registered agent (target) with its labels, whether it is attached to the leader, and the
/// units it runs.
pub fn agents(state: &Applied, sessions: &Sessions) -> Value {
    let sched = state.scheduler();
    let names = sched.symbols();
    let list = |syms: &[cuttle_raft::sched::Sym]| -> Vec<&str> {
        syms.iter().map(|s| names.name(*s)).collect()
    };
    Value::Array(
        sched
            .targets()
            .map(|(id, t)| {
                let name = names.name(t.name);
                let running: Vec<Value> = sched
                    .units()
                    .filter(|u| u.target == id && u.is_active())
                    .map(|u| json!({"unit": u.id.0, "task": u.task.0, "attempt": u.attempt, "token": u.token.map(|t| t.0)}))
                    .collect();
                let session = sessions.view(name);
                json!({
                    "name": name,
                    "environments": list(&t.environments),
                    "roles": list(&t.roles),
                    "tenants": list(&t.tenants),
                    "capacity": t.capacity,
                    "online": t.online,
                    "connected": session.is_some(),
                    "last_contact_ms_ago": session.as_ref().map(|s| s.last_contact_ms_ago),
                    "refusals": session.as_ref().map(|s| s.refusals).unwrap_or(0),
                    "version": session.as_ref().map(|s| s.version.clone()),
                    "running": running,
                })
            })
            .collect(),
    )
}

/// One task with its units.
pub fn task(state: &Applied, id: &str) -> Result<Value, Status> {
    let id = TaskId(parse_id(id, "task id")?);
    let sched = state.scheduler();
    let names = sched.symbols();
    let task = sched.task(id).ok_or_else(|| {
        Status::not_found(format!(
            "unknown task {}: it never existed or was forgotten",
            id.0
        ))
    })?;
    let process = sched.process(task.process);
    let units: Vec<Value> = task
        .units
        .iter()
        .filter_map(|u| sched.unit(*u))
        .map(|u| {
            let (state, exit_code) = match &u.state {
                UnitState::Waiting => ("waiting", None),
                UnitState::Dispatched { .. } => ("dispatched", None),
                UnitState::Running { .. } => ("running", None),
                UnitState::Ended(UnitOutcome::Succeeded) => ("succeeded", Some(0)),
                UnitState::Ended(UnitOutcome::Failed { exit_code }) => ("failed", Some(*exit_code)),
                UnitState::Ended(UnitOutcome::TargetLost) => ("target-lost", None),
                UnitState::Ended(UnitOutcome::Skipped) => ("skipped", None),
                UnitState::Ended(UnitOutcome::Cancelled) => ("cancelled", None),
            };
            let step = process
                .and_then(|p| p.steps.get(u.step as usize))
                .map(|s| names.name(s.name))
                .unwrap_or("?");
            let target = sched
                .target(u.target)
                .map(|t| names.name(t.name))
                .unwrap_or("?");
            let waiting_for = sched.explain_unit(u.id).map(|w| sched.describe(&w));
            json!({
                "id": u.id.0,
                "step": step,
                "kind": match u.kind { UnitKind::Run => "run", UnitKind::Acquire => "acquire" },
                "target": target,
                "attempt": u.attempt,
                "state": state,
                "exit_code": exit_code,
                "exclusive": u.exclusive,
                "token": u.token.map(|t| t.0),
                "dispatched_ms": u.dispatched_ms,
                "ended_ms": u.ended_ms,
                "waiting_for": waiting_for,
            })
        })
        .collect();
    let reason = match &task.phase {
        Phase::Ended(TaskOutcome::Failed { reason }) => Some(reason.clone()),
        _ => None,
    };
    Ok(json!({
        "id": id.0,
        "project": names.name(task.project),
        "release": task.release.as_ref(),
        "environment": names.name(task.environment),
        "tenant": task.tenant.map(|t| names.name(t)),
        "state": task_state(&task.phase),
        "reason": reason,
        "submitted_ms": task.submitted_ms,
        "started_ms": task.started_ms,
        "ended_ms": task.ended_ms,
        "token": task.token.map(|t| t.0),
        "waiting_for": sched.explain_task(id).map(|w| sched.describe(&w)),
        "units": units,
    }))
}

/// A task's log from line `from` on (`ID:FROM`).
pub fn task_log(state: &Applied, query: &str) -> Result<Value, Status> {
    let (id, from) = query.split_once(':').unwrap_or((query, "0"));
    let id = TaskId(parse_id(id, "task id")?);
    let from = parse_id(from, "line number")? as usize;
    let sched = state.scheduler();
    let Some(task) = sched.task(id) else {
        return Err(Status::not_found(format!(
            "unknown task {}: it never existed or was forgotten",
            id.0
        )));
    };
    let log = state.replicated.log(id);
    let lines: Vec<Value> = log
        .map(|l| {
            l.lines
                .iter()
                .skip(from)
                .take(LOG_LINES_PER_READ_MAX)
                .map(|line| {
                    json!({
                        "ts_ms": line.ts_ms,
                        "unit": line.unit.map(|u| u.0),
                        "stream": line.stream.name(),
                        "text": line.text,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let total = log.map(|l| l.lines.len()).unwrap_or(0);
    Ok(json!({
        "task": id.0,
        "state": task_state(&task.phase),
        "ended": matches!(task.phase, Phase::Ended(_)),
        "next": (from + lines.len()).min(total.max(from)),
        "lines": lines,
        "dropped_lines": log.map(|l| l.dropped_lines).unwrap_or(0),
    }))
}

/// Every lock in use (concurrency tags, the task cap, targets, parallelism limits, step and named
/// locks, agent capacity) with its capacity, holders and queue in order.
pub fn locks(state: &Applied) -> Value {
    use cuttle_raft::sched::{LockKey, LockTable, Mode};
    let sched = state.scheduler();
    let party = |h: &cuttle_raft::sched::Holder| {
        json!({
            "request": h.request.0,
            "task": h.task.map(|t| t.0),
            "unit": h.unit.map(|u| u.0),
            "client": h.client,
            "mode": match h.mode { Mode::Exclusive => "exclusive".to_string(), Mode::Shared(w) => format!("shared:{w}") },
        })
    };
    Value::Array(
        sched
            .lock_table()
            .locks()
            .into_iter()
            .map(|key| {
                let kind = match key {
                    LockKey::Tag(_) => "concurrency-tag",
                    LockKey::TaskCap => "task-cap",
                    LockKey::Target(_) => "target",
                    LockKey::Parallelism(..) => "parallelism",
                    LockKey::Named(_, Some(_)) => "named-target",
                    LockKey::Named(_, None) => "named-cluster",
                    LockKey::AgentCapacity(_) => "agent-capacity",
                };
                let (holders, queue) = sched.lock_parties(key);
                json!({
                    "lock": sched.lock_name(key),
                    "kind": kind,
                    "capacity": sched.lock_table().capacity(key),
                    "holders": holders.iter().map(party).collect::<Vec<_>>(),
                    "queue": queue.iter().map(party).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// Every task the state holds, oldest first: id, project, release, environment, tenant, state,
/// times and, for a queued task, why it waits.
pub fn tasks(state: &Applied) -> Value {
    let sched = state.scheduler();
    let names = sched.symbols();
    Value::Array(
        sched
            .tasks()
            .map(|t| {
                let waiting_for = match t.phase {
                    Phase::Queued => sched.explain_task(t.id).map(|w| sched.describe(&w)),
                    _ => None,
                };
                json!({
                    "id": t.id.0,
                    "project": names.name(t.project),
                    "release": t.release.as_ref(),
                    "environment": names.name(t.environment),
                    "tenant": t.tenant.map(|s| names.name(s)),
                    "state": task_state(&t.phase),
                    "submitted_ms": t.submitted_ms,
                    "started_ms": t.started_ms,
                    "ended_ms": t.ended_ms,
                    "waiting_for": waiting_for,
                })
            })
            .collect(),
    )
}

/// Every project's releases, oldest first: version, creation time, deployments queued, where it
/// succeeded (per tenant), the lifecycle phase it has reached, and why an automatic deployment
/// could not be queued.
pub fn releases(state: &Applied) -> Value {
    use cuttle_raft::ledger::lifecycle::progress;
    let releases = state.replicated.releases();
    let model = state.replicated.model();
    let mut out = Vec::new();
    for project in releases.projects() {
        let lifecycle = model.project(project).and_then(|p| model.lifecycle_of(p));
        for r in releases.of_project(project) {
            let succeeded: Vec<Value> = r
                .succeeded
                .iter()
                .map(|(tenant, envs)| {
                    let phase = lifecycle.map(|l| {
                        let reached = progress(l, envs).reached;
                        l.phases
                            .get(reached)
                            .map(|p| p.name.clone())
                            .unwrap_or_else(|| "complete".into())
                    });
                    json!({"tenant": tenant, "environments": envs, "next_phase": phase})
                })
                .collect();
            out.push(json!({
                "project": project,
                "version": r.version,
                "created_ms": r.created_ms,
                "deployments": r.deployments,
                "succeeded": succeeded,
                "promotion_error": r.promotion_error,
            }));
        }
    }
    Value::Array(out)
}
