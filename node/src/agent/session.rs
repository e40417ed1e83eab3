//! The agent's connection loop and its reactions: it attaches to a server node, says `Hello`,
//! heartbeats, fences itself when the leader falls silent, runs what the fencing guard admits,
//! cancels on request, and reports through the outbox. Between sessions it backs off, and keeps
//! journaling and queueing the ends of units that were running.
//!
//! One task owns all of the agent's state (guard, journal, outbox, running units, lease); runner
//! tasks talk to it through one channel. So the order of decisions is the order of events, and a
//! unit's end is entered in the guard, then journaled, then reported: the cluster can never hear
//! of an end before the guard has let go of the unit.

use crate::agent::connect::{attach, Backoff, NEXT_ENDPOINT_MS};
use crate::agent::fence::{Admission, Fence, FenceInput};
use crate::agent::journal::{JournalHandle, Record, Replay, UnitRecord};
use crate::agent::lease::Lease;
use crate::agent::outbox::{Outbox, Report};
use crate::agent::runner::{system_line, Launcher, RunnerEvent, Stop};
use crate::agent::{AgentConfig, AgentError, Clock};
use cuttle_proto::v1::{agent_message, server_message};
use cuttle_proto::v1::{AgentMessage, Heartbeat, Hello, RunUnit, ServerMessage, UnitRef};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;

/// A session that lasted this long after its `Welcome` resets the backoff.
pub const SESSION_LASTED_MS: u64 = 10_000;
/// At shutdown, once every unit has stopped, unacknowledged reports are given this long.
pub const SHUTDOWN_FLUSH_MS: u64 = 2_000;
/// Runner events waiting for the agent; a runner with more waits (and so does its script's output).
pub const RUNNER_EVENTS_MAX: usize = 1_024;
/// The reason given to units stopped because the agent shuts down.
pub const SHUTDOWN_REASON: &str = "cancelled: the agent is shutting down";

/// A unit this agent runs.
#[derive(Debug)]
struct Running {
    record: UnitRecord,
    stop: mpsc::UnboundedSender<Stop>,
}

/// How a session ended.
enum SessionEnd {
    /// The agent shut down.
    Done,
    /// The session is gone; try again. `lasted` counts from the `Welcome`.
    Lost { reason: String, lasted: Duration },
}

/// Everything the agent knows, owned by the one task that runs [`Agent::run`].
pub(crate) struct Agent {
    config: Arc<AgentConfig>,
    fence: Fence,
    journal: JournalHandle,
    outbox: Outbox,
    running: BTreeMap<(u64, u32), Running>,
    launcher: Arc<dyn Launcher>,
    clock: Arc<dyn Clock>,
    events_tx: mpsc::Sender<RunnerEvent>,
    /// The lease of the current (or last) session; `None` before the first `Welcome` and after
    /// fencing, when no unit may start.
    lease: Option<Lease>,
    heartbeat_seq: u64,
    shutting_down: bool,
    /// Once shutting down and idle: when to give up on unacknowledged reports.
    flush_until: Option<Instant>,
    backoff: Backoff,
    /// The last of the journal records written beside the work rather than before it (`spawned`,
    /// `end`; each write waits for the one before): awaited, and the journal synced, before the
    /// agent stops, so that a clean stop leaves a complete and durable journal.
    journal_writes: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// The agent after its journal was replayed; the ends it found are queued for reporting.
    pub(crate) fn new(
        config: AgentConfig,
        fence: Fence,
        journal: JournalHandle,
        replay: Replay,
        launcher: Arc<dyn Launcher>,
        clock: Arc<dyn Clock>,
    ) -> (Agent, mpsc::Receiver<RunnerEvent>) {
        let (events_tx, events_rx) = mpsc::channel(RUNNER_EVENTS_MAX);
        let mut outbox = Outbox::new();
        for ended in replay.recent_ends {
            let finished = Report::Finished {
                unit: ended.unit,
                attempt: ended.attempt,
                exit_code: ended.exit_code,
                reason: ended.reason,
            };
            outbox.push(finished, clock.wall_ms());
        }
        let seed = clock.wall_ms() ^ u64::from(std::process::id()).rotate_left(32);
        let agent = Agent {
            config: Arc::new(config),
            fence,
            journal,
            outbox,
            running: BTreeMap::new(),
            launcher,
            clock,
            events_tx,
            lease: None,
            heartbeat_seq: 0,
            shutting_down: false,
            flush_until: None,
            backoff: Backoff::new(seed),
            journal_writes: None,
        };
        (agent, events_rx)
    }

    /// Runs until `shutdown` turns true and every unit has stopped.
    pub(crate) async fn run(
        mut self,
        mut events_rx: mpsc::Receiver<RunnerEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let endpoints = self.config.endpoints.clone();
        for attempt in 0usize.. {
            if self.is_done() {
                break;
            }
            let endpoint = &endpoints[attempt % endpoints.len()];
            match self.session(endpoint, &mut events_rx, &mut shutdown).await {
                SessionEnd::Done => break,
                SessionEnd::Lost { reason, lasted } => {
                    tracing::warn!(endpoint = %endpoint, "session ended: {reason}");
                    if lasted >= Duration::from_millis(SESSION_LASTED_MS) {
                        self.backoff.reset();
                    }
                }
            }
            // Try every node in turn before backing off: after a leader dies, the next node to
            // answer is usually the new leader or one that relays to it.
            let delay = if (attempt + 1) % endpoints.len() != 0 {
                Duration::from_millis(NEXT_ENDPOINT_MS)
            } else {
                self.backoff.next_delay()
            };
            let waited = self
                .idle(tokio::time::sleep(delay), &mut events_rx, &mut shutdown)
                .await;
            if waited.is_none() {
                break;
            }
        }
        if let Some(last) = self.journal_writes.take() {
            let _ = last.await;
        }
        if let Err(error) = self.journal.sync().await {
            tracing::error!("{error}");
        }
        tracing::info!(reports_unacknowledged = self.outbox.len(), "agent stopped");
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.shutting_down && self.running.is_empty()
    }

    /// Runs `work` while keeping the agent's duties between sessions: runner events, the fence
    /// deadline, shutdown. `None` when the agent finished shutting down first.
    async fn idle<F: Future>(
        &mut self,
        work: F,
        events_rx: &mut mpsc::Receiver<RunnerEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            if self.is_done() {
                return None;
            }
            let fence_at = self.lease.as_ref().map(Lease::fence_at);
            tokio::select! {
                output = &mut work => return Some(output),
                Some(event) = events_rx.recv() => self.on_runner_event(event).await,
                _ = sleep_until(fence_at), if fence_at.is_some() => self.fence_self(),
                _ = stop_requested(shutdown), if !self.shutting_down => self.begin_shutdown(),
            }
        }
    }

    async fn session(
        &mut self,
        endpoint: &str,
        events_rx: &mut mpsc::Receiver<RunnerEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let opened_at = self.clock.now();
        let (tx, outbound) = mpsc::unbounded_channel();
        let _ = tx.send(self.hello());
        let attached = self.idle(attach(endpoint.to_string(), outbound), events_rx, shutdown);
        let (mut inbound, welcome) = match attached.await {
            None => return SessionEnd::Done,
            Some(Err(reason)) => return lost(reason, Duration::ZERO),
            Some(Ok(attached)) => attached,
        };
        let lease = match Lease::new(&welcome, opened_at) {
            Ok(lease) => lease,
            Err(reason) => return lost(reason, Duration::ZERO),
        };
        tracing::info!(
            endpoint,
            leader = welcome.leader_id,
            "attached to the cluster"
        );
        let welcomed_at = self.clock.now();
        let mut heartbeat = tokio::time::interval(lease.heartbeat_interval());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.lease = Some(lease);
        self.outbox.rewind();
        loop {
            self.pump(&tx);
            let lasted = self.clock.now().saturating_duration_since(welcomed_at);
            if self.is_done()
                && (self.outbox.is_empty()
                    || self.flush_until.is_some_and(|t| self.clock.now() >= t))
            {
                return SessionEnd::Done;
            }
            let fence_at = self.lease.as_ref().map(Lease::fence_at);
            let flush_until = self.flush_until;
            tokio::select! {
                message = inbound.next() => match message {
                    Some(Ok(message)) => self.on_server_message(message).await,
                    Some(Err(status)) => return lost(format!("the stream failed: {status}"), lasted),
                    None => return lost("the server closed the stream".into(), lasted),
                },
                Some(event) = events_rx.recv() => self.on_runner_event(event).await,
                _ = heartbeat.tick() => self.send_heartbeat(&tx),
                _ = sleep_until(fence_at), if fence_at.is_some() => {
                    self.fence_self();
                    return lost("fenced: the leader did not acknowledge heartbeats in time".into(), lasted);
                }
                _ = stop_requested(shutdown), if !self.shutting_down => self.begin_shutdown(),
                _ = sleep_until(flush_until), if flush_until.is_some() => {}
            }
        }
    }

    fn hello(&self) -> AgentMessage {
        let config = &self.config;
        let running = self
            .fence
            .running()
            .map(|(unit, attempt)| UnitRef { unit, attempt });
        let hello = Hello {
            name: config.name.clone(),
            environments: config.environments.clone(),
            roles: config.roles.clone(),
            tenants: config.tenants.clone(),
            capacity: config.max_concurrency,
            version: env!("CARGO_PKG_VERSION").to_string(),
            running: running.collect(),
        };
        AgentMessage {
            kind: Some(agent_message::Kind::Hello(hello)),
        }
    }

    /// Sends what the outbox lets go now.
    fn pump(&mut self, tx: &mpsc::UnboundedSender<AgentMessage>) {
        while let Some(message) = self.outbox.next_to_send() {
            if tx.send(message).is_err() {
                break;
            }
        }
    }

    fn send_heartbeat(&mut self, tx: &mpsc::UnboundedSender<AgentMessage>) {
        self.heartbeat_seq += 1;
        let seq = self.heartbeat_seq;
        // Taken before the send: the lease may only count from an instant before the leader saw it.
        let sent_at = self.clock.now();
        let heartbeat = Heartbeat {
            seq,
            refusals: self.fence.refusals(),
        };
        let _ = tx.send(AgentMessage {
            kind: Some(agent_message::Kind::Heartbeat(heartbeat)),
        });
        if let Some(lease) = &mut self.lease {
            lease.heartbeat_sent(seq, sent_at);
        }
    }

    async fn on_server_message(&mut self, message: ServerMessage) {
        match message.kind {
            Some(server_message::Kind::Run(run)) => self.on_run(run).await,
            Some(server_message::Kind::HeartbeatAck(ack)) => {
                if let Some(lease) = &mut self.lease {
                    lease.acked(ack.seq);
                }
            }
            Some(server_message::Kind::ReportAck(ack)) => self.outbox.ack(ack.report_id),
            Some(server_message::Kind::Cancel(cancel)) => {
                if let Some(running) = self.running.get(&(cancel.unit, cancel.attempt)) {
                    tracing::info!(
                        unit = cancel.unit,
                        attempt = cancel.attempt,
                        "cancel requested"
                    );
                    let stop = Stop {
                        reason: "cancelled".into(),
                        grace_ms: self.config.cancel_grace_ms,
                    };
                    let _ = running.stop.send(stop);
                }
            }
            Some(server_message::Kind::Welcome(_)) => tracing::warn!("ignoring a second Welcome"),
            None => tracing::warn!("ignoring a server message of a kind this agent does not know"),
        }
    }

    /// Appends `record` without waiting for it and without an fsync of its own (see the callers
    /// and the journal's format for why that is safe).
    fn journal_beside(&mut self, record: Record) {
        let journal = self.journal.clone();
        // Each write waits for the one before, so that the lines keep their order (a fast script's
        // `end` never lands before its `spawned`).
        let previous = self.journal_writes.take();
        self.journal_writes = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Err(error) = journal.append_unsynced(record).await {
                tracing::error!("{error}");
            }
        }));
    }

    async fn on_run(&mut self, run: RunUnit) {
        let (unit, attempt) = (run.unit, run.attempt);
        if self.shutting_down {
            tracing::info!(unit, attempt, "not starting a unit while shutting down");
            return;
        }
        let now = self.clock.now();
        if !self.lease.as_ref().is_some_and(|lease| lease.is_valid(now)) {
            // Not seen by the guard: the leader sends it again after the next attach if it still stands.
            tracing::warn!(unit, attempt, "not starting a unit without a valid lease");
            return;
        }
        let record = UnitRecord::of(&run, &self.config.name);
        match self.fence.admit(&FenceInput::from(&run)) {
            Admission::Duplicate => tracing::debug!(unit, attempt, "ignoring a unit seen before"),
            Admission::Refuse(reason) => {
                tracing::warn!(unit, attempt, "{reason}");
                let refused = Record::Refused {
                    ts_ms: self.clock.wall_ms(),
                    unit: record,
                    reason: reason.clone(),
                };
                if let Err(error) = self.journal.append(refused).await {
                    tracing::error!(unit, "{error}");
                }
                let finished = Report::Finished {
                    unit,
                    attempt,
                    exit_code: -1,
                    reason,
                };
                self.outbox.push(finished, self.clock.wall_ms());
            }
            Admission::Run => self.start(run, record).await,
        }
    }

    async fn start(&mut self, run: RunUnit, record: UnitRecord) {
        let (unit, attempt) = (run.unit, run.attempt);
        let start = Record::Start {
            ts_ms: self.clock.wall_ms(),
            unit: record.clone(),
        };
        if let Err(error) = self.journal.append(start).await {
            // Unjournaled, a restarted agent could neither kill it nor remember its token.
            let reason = format!("not started: {error}");
            self.fail_start(record, reason, false).await;
            return;
        }
        match self.launcher.launch(run, self.events_tx.clone()) {
            Ok(launched) => {
                if let Some(pgid) = launched.pgid {
                    let spawned = Record::Spawned {
                        ts_ms: self.clock.wall_ms(),
                        unit,
                        attempt,
                        pgid,
                    };
                    // Not awaited: the script already runs, and the session goes on to the next
                    // message. Should the agent die first, its restart finds the unit's process
                    // groups by their environment instead (`process::unit_groups`).
                    self.journal_beside(spawned);
                }
                self.outbox
                    .push(Report::Started { unit, attempt }, self.clock.wall_ms());
                self.running.insert(
                    (unit, attempt),
                    Running {
                        record,
                        stop: launched.stop,
                    },
                );
            }
            Err(reason) => self.fail_start(record, reason, true).await,
        }
    }

    /// A unit the guard admitted could not start: it ends at once with exit code -1.
    async fn fail_start(&mut self, record: UnitRecord, reason: String, journaled: bool) {
        let (unit, attempt) = (record.unit, record.attempt);
        tracing::error!(unit, attempt, "{reason}");
        self.fence.finish(unit, attempt);
        if journaled {
            let end = Record::End {
                ts_ms: self.clock.wall_ms(),
                unit: record,
                exit_code: -1,
                reason: reason.clone(),
            };
            if let Err(error) = self.journal.append(end).await {
                tracing::error!(unit, "{error}");
            }
        }
        let lines = vec![system_line(reason.clone())];
        self.outbox.push(
            Report::Output {
                unit,
                attempt,
                lines,
            },
            self.clock.wall_ms(),
        );
        self.outbox.push(
            Report::Finished {
                unit,
                attempt,
                exit_code: -1,
                reason,
            },
            self.clock.wall_ms(),
        );
    }

    async fn on_runner_event(&mut self, event: RunnerEvent) {
        let now_ms = self.clock.wall_ms();
        match event {
            RunnerEvent::Output {
                unit,
                attempt,
                lines,
            } => {
                self.outbox.push(
                    Report::Output {
                        unit,
                        attempt,
                        lines,
                    },
                    now_ms,
                );
            }
            RunnerEvent::Finished {
                unit,
                attempt,
                exit_code,
                reason,
            } => {
                self.fence.finish(unit, attempt);
                if let Some(running) = self.running.remove(&(unit, attempt)) {
                    let end = Record::End {
                        ts_ms: now_ms,
                        unit: running.record,
                        exit_code,
                        reason: reason.clone(),
                    };
                    // The report does not wait for this record, nor the record for an fsync: the
                    // report is the target's hand-off to the next unit. If the machine dies before
                    // the record is durable, the agent's restart finds
                    // the unit started and not ended, treats it as interrupted (its process group
                    // is gone) and reports an end the cluster ignores, having recorded this one;
                    // the start record, durable before the spawn, still keeps the unit from
                    // running twice.
                    self.journal_beside(end);
                }
                tracing::info!(unit, attempt, exit_code, reason = %reason, "unit ended");
                self.outbox.push(
                    Report::Finished {
                        unit,
                        attempt,
                        exit_code,
                        reason,
                    },
                    now_ms,
                );
                if self.is_done() {
                    self.flush_until =
                        Some(self.clock.now() + Duration::from_millis(SHUTDOWN_FLUSH_MS));
                }
            }
        }
    }

    /// No confirmed contact with the leader for too long: stop everything, start nothing.
    fn fence_self(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let silent_ms = lease.silent_for(self.clock.now()).as_millis();
        let reason = format!("fenced: no contact with the leader for {silent_ms} ms");
        let grace_ms = self
            .config
            .cancel_grace_ms
            .min(lease.kill_grace().as_millis() as u64);
        tracing::warn!(units = self.running.len(), "{reason}: stopping every unit");
        for running in self.running.values() {
            let _ = running.stop.send(Stop {
                reason: reason.clone(),
                grace_ms,
            });
        }
    }

    fn begin_shutdown(&mut self) {
        tracing::info!(
            units = self.running.len(),
            "shutting down: stopping every unit"
        );
        self.shutting_down = true;
        for running in self.running.values() {
            let stop = Stop {
                reason: SHUTDOWN_REASON.into(),
                grace_ms: self.config.cancel_grace_ms,
            };
            let _ = running.stop.send(stop);
        }
        if self.is_done() {
            self.flush_until = Some(self.clock.now() + Duration::from_millis(SHUTDOWN_FLUSH_MS));
        }
    }
}

fn lost(reason: String, lasted: Duration) -> SessionEnd {
    SessionEnd::Lost { reason, lasted }
}

/// Completes once shutdown is asked for (never, if nobody can ask any more).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
