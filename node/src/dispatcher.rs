//! The leader's side of dispatch: it turns the core's decisions into messages for agents (a unit
//! to run, a unit to cancel), declares agents lost when their lease runs out, and confirms its own
//! leadership before it acknowledges an agent's heartbeat.
//!
//! Dispatch is state-driven, so a new leader carries on where the old one stopped: when an agent
//! attaches, its session first receives every unit the state holds as dispatched to it and not
//! ended (in fencing-token order); afterwards the dispatcher routes each new decision as its entry
//! is applied. A unit may therefore reach an agent twice; the agent runs each (unit, attempt) once.

use crate::proposer::{ProposeError, Proposer};
use crate::sessions::Sessions;
use cuttle_proto::v1::{server_message::Kind, CancelUnit, RunUnit, ServerMessage, Variable};
use cuttle_raft::cluster::state_machine::{Applied, AppliedEntry};
use cuttle_raft::cluster::{NodeId, TypeConfig};
use cuttle_raft::sched::{Command, Event, UnitId, UnitKind, UnitState};
use openraft::{Raft, ServerState};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;

/// The message that tells an agent to run `unit`, while the unit is dispatched or running.
pub fn run_message(applied: &Applied, unit: UnitId) -> Option<RunUnit> {
    let sched = applied.scheduler();
    let record = sched.unit(unit)?;
    if !record.is_active() {
        return None;
    }
    let task = sched.task(record.task)?;
    let names = sched.symbols();
    let step = sched
        .process(task.process)
        .and_then(|p| p.steps.get(record.step as usize))?;
    let payload = applied.replicated.payload(record.task);
    let step_payload = payload.and_then(|p| p.steps.get(record.step as usize));
    let (kind, script) = match record.kind {
        UnitKind::Run => ("run", step_payload.map(|s| s.script.clone())),
        UnitKind::Acquire => ("acquire", step_payload.map(|s| s.acquire_script.clone())),
    };
    let mut locks = vec!["target".to_string()];
    if let (UnitKind::Run, Some(lock)) = (record.kind, &step.lock) {
        locks.push(format!("lock:{}", names.name(lock.name)));
    }
    Some(RunUnit {
        unit: unit.0,
        attempt: record.attempt,
        task: record.task.0,
        project: names.name(task.project).to_string(),
        release: task.release.to_string(),
        environment: names.name(task.environment).to_string(),
        tenant: task
            .tenant
            .map(|t| names.name(t).to_string())
            .unwrap_or_default(),
        step: names.name(step.name).to_string(),
        step_index: record.step as u32,
        kind: kind.into(),
        exclusive: record.exclusive,
        token: record.token.map(|t| t.0).unwrap_or(0),
        locks,
        script: script.unwrap_or_default(),
        variables: applied
            .replicated
            .variables_for(record.task, record.target)
            .into_iter()
            .map(|v| Variable {
                name: v.name,
                value: v.value,
                sensitive: v.sensitive,
            })
            .collect(),
        timeout_ms: step_payload.map(|s| s.timeout_ms).unwrap_or(0),
        package: String::new(),
    })
}

/// Everything an agent attaching as `target` must receive: its dispatched and running units in
/// fencing-token order, then the cancels asked for them; with the index of the state read.
pub fn session_start(applied: &Applied, target: &str) -> (u64, Vec<ServerMessage>) {
    let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
    let sched = applied.scheduler();
    let Some(target) = sched.target_id(target) else {
        return (index, Vec::new());
    };
    let mut units: Vec<_> = sched
        .units()
        .filter(|u| u.target == target && u.is_active())
        .collect();
    units.sort_by_key(|u| u.token);
    let mut messages: Vec<ServerMessage> = units
        .iter()
        .filter_map(|u| run_message(applied, u.id))
        .map(|run| ServerMessage {
            kind: Some(Kind::Run(run)),
        })
        .collect();
    for unit in units {
        if let UnitState::Dispatched {
            cancel_requested: true,
        }
        | UnitState::Running {
            cancel_requested: true,
        } = unit.state
        {
            messages.push(cancel_message(unit.id, unit.attempt));
        }
    }
    (index, messages)
}

fn cancel_message(unit: UnitId, attempt: u32) -> ServerMessage {
    ServerMessage {
        kind: Some(Kind::Cancel(CancelUnit {
            unit: unit.0,
            attempt,
        })),
    }
}

/// Whether this node leads.
pub fn leads(raft: &Raft<TypeConfig>) -> bool {
    raft.metrics().borrow().state == ServerState::Leader
}

/// Routes each applied decision to the agent it concerns, while this node leads. A subscriber
/// that falls behind, or a state replaced by a snapshot, closes every session: the agents attach
/// again and receive the state afresh.
pub async fn route(
    raft: Raft<TypeConfig>,
    mut feed: broadcast::Receiver<Arc<AppliedEntry>>,
    state: Arc<RwLock<Applied>>,
    sessions: Sessions,
) {
    loop {
        let entry = match feed.recv().await {
            Ok(entry) => entry,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "dispatcher fell behind the log: agents re-attach");
                sessions.close_all_sessions();
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if entry.resync {
            sessions.close_all_sessions();
            continue;
        }
        if entry.events.is_empty() || !leads(&raft) {
            continue;
        }
        let applied = state.read().expect("state lock");
        let sched = applied.scheduler();
        for event in &entry.events {
            let (target, message) = match event {
                Event::UnitDispatched { unit, target, .. } => match run_message(&applied, *unit) {
                    Some(run) => (
                        *target,
                        ServerMessage {
                            kind: Some(Kind::Run(run)),
                        },
                    ),
                    None => continue,
                },
                Event::UnitCancelRequested { unit, target } => {
                    let Some(record) = sched.unit(*unit) else {
                        continue;
                    };
                    (*target, cancel_message(*unit, record.attempt))
                }
                Event::TargetLost { target } | Event::TargetRemoved { target } => {
                    if let Some(t) = sched.target(*target) {
                        sessions.close(sched.symbols().name(t.name));
                    }
                    continue;
                }
                _ => continue,
            };
            if let Some(t) = sched.target(target) {
                sessions.send(sched.symbols().name(t.name), (entry.index, message));
            }
        }
    }
}

/// Follows this node's role: a new leader starts every agent's lease afresh; a node that stops
/// leading closes its sessions so that agents attach to the new leader.
pub async fn follow_leadership(raft: Raft<TypeConfig>, sessions: Sessions) {
    let mut metrics = raft.metrics();
    let mut leading = false;
    loop {
        let now = metrics.borrow().state == ServerState::Leader;
        if now && !leading {
            sessions.became_leader();
        } else if !now && leading {
            sessions.close_all();
        }
        leading = now;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Declares lost, through Raft, every online target whose lease ran out on this leader.
pub async fn expire_leases(
    raft: Raft<TypeConfig>,
    state: Arc<RwLock<Applied>>,
    sessions: Sessions,
    proposer: Proposer,
    lease_timeout: Duration,
) {
    let period = (lease_timeout / 20).max(Duration::from_millis(20));
    loop {
        tokio::time::sleep(period).await;
        if !leads(&raft) {
            continue;
        }
        let now = Instant::now();
        let expired: Vec<String> = {
            let applied = state.read().expect("state lock");
            let sched = applied.scheduler();
            sched
                .targets()
                .filter(|(_, t)| t.online)
                .map(|(_, t)| sched.symbols().name(t.name).to_string())
                .filter(|name| sessions.lease_ran_out(name, lease_timeout, now))
                .collect()
        };
        for name in expired {
            // The list may be seconds old by now (each declaration waits for its commit, and
            // without a quorum that is long): look again, under the registration lock, so that an
            // agent that registered meanwhile keeps its new session and its units.
            let declared = {
                let _registration = sessions.registration().await;
                let still_expired =
                    leads(&raft) && sessions.lease_ran_out(&name, lease_timeout, Instant::now());
                if !still_expired {
                    continue;
                }
                tracing::warn!(agent = %name, lease_ms = lease_timeout.as_millis() as u64, "agent lease ran out: declaring it lost");
                sessions.close(&name);
                // Bounded, as registrations wait for this lock: a proposer queue that stays full
                // means no quorum, and the next round tries again.
                match tokio::time::timeout(
                    lease_timeout,
                    proposer.submit(Command::AgentLost { name: name.clone() }),
                )
                .await
                {
                    Ok(submitted) => submitted,
                    Err(_) => Err(ProposeError::Raft(
                        "the proposer's queue stayed full for a whole lease".into(),
                    )),
                }
            };
            let outcome = match declared {
                Ok(pending) => pending.await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::warn!(agent = %name, error = %e, "could not declare the agent lost");
            }
        }
    }
}

/// Confirms this node's leadership with a quorum on demand, and tells waiters the start of the
/// latest confirmation that succeeded: an agent heartbeat received before that instant was
/// received by a leader no newer leader had replaced yet.
#[derive(Clone)]
pub struct Confirmer {
    demand: Arc<Notify>,
    confirmed: watch::Receiver<Option<Instant>>,
}

impl Confirmer {
    /// Starts confirming for `raft`.
    pub fn start(raft: Raft<TypeConfig>) -> Confirmer {
        let demand = Arc::new(Notify::new());
        let (tx, confirmed) = watch::channel(None);
        let wanted = demand.clone();
        tokio::spawn(async move {
            loop {
                wanted.notified().await;
                let start = Instant::now();
                match raft.ensure_linearizable().await {
                    Ok(_) => {
                        tx.send_replace(Some(start));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Confirmer { demand, confirmed }
    }

    /// Waits (at most `limit`) until a confirmation that started after `received` succeeded.
    pub async fn confirmed_after(&self, received: Instant, limit: Duration) -> bool {
        let mut confirmed = self.confirmed.clone();
        let deadline = Instant::now() + limit;
        loop {
            if confirmed.borrow_and_update().is_some_and(|c| c >= received) {
                return true;
            }
            self.demand.notify_one();
            match tokio::time::timeout_at(deadline, confirmed.changed()).await {
                Ok(Ok(())) => continue,
                _ => return false,
            }
        }
    }
}

/// The id of the leader this node knows, if any.
pub fn known_leader(raft: &Raft<TypeConfig>) -> Option<NodeId> {
    raft.metrics().borrow().current_leader
}
