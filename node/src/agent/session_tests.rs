//! Tests of the whole agent against a fake leader: an in-process tonic `Agents` server on
//! 127.0.0.1 that welcomes, sends units, and acknowledges heartbeats and reports as told.

use crate::agent::journal::{Record, UnitRecord, INTERRUPTED_REASON};
use crate::agent::{self, AgentConfig};
use cuttle_proto::v1::agent_message::Kind as AgentKind;
use cuttle_proto::v1::agents_server::{Agents, AgentsServer};
use cuttle_proto::v1::server_message::Kind as ServerKind;
use cuttle_proto::v1::*;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::StreamExt;

#[derive(Default)]
struct LeaderState {
    /// What the agent sent, per session, in order.
    sessions: Vec<Vec<AgentMessage>>,
    to_agent: Option<mpsc::UnboundedSender<Result<ServerMessage, tonic::Status>>>,
    close: Option<oneshot::Sender<()>>,
    ack_heartbeats: bool,
    ack_reports: bool,
    welcome: Welcome,
}

/// The fake leader: one `Attach` at a time, driven by the test.
#[derive(Clone)]
struct FakeLeader(Arc<Mutex<LeaderState>>);

#[tonic::async_trait]
impl Agents for FakeLeader {
    type AttachStream =
        tokio_stream::wrappers::UnboundedReceiverStream<Result<ServerMessage, tonic::Status>>;

    async fn attach(
        &self,
        request: tonic::Request<tonic::Streaming<AgentMessage>>,
    ) -> Result<tonic::Response<Self::AttachStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let (close_tx, mut close_rx) = oneshot::channel();
        let index = {
            let mut state = self.0.lock().unwrap();
            state.sessions.push(Vec::new());
            state.to_agent = Some(tx.clone());
            state.close = Some(close_tx);
            state.sessions.len() - 1
        };
        let leader = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut close_rx => break,
                    message = inbound.next() => match message {
                        Some(Ok(message)) => leader.receive(index, message, &tx),
                        _ => break,
                    },
                }
            }
            let mut state = leader.0.lock().unwrap();
            if state.sessions.len() - 1 == index {
                state.to_agent = None;
            }
        });
        Ok(tonic::Response::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
    }
}

impl FakeLeader {
    fn receive(
        &self,
        index: usize,
        message: AgentMessage,
        tx: &mpsc::UnboundedSender<Result<ServerMessage, tonic::Status>>,
    ) {
        let mut state = self.0.lock().unwrap();
        let reply = match &message.kind {
            Some(AgentKind::Hello(_)) => Some(ServerKind::Welcome(state.welcome)),
            Some(AgentKind::Heartbeat(h)) if state.ack_heartbeats => {
                Some(ServerKind::HeartbeatAck(HeartbeatAck { seq: h.seq }))
            }
            _ if state.ack_reports => {
                report_id(&message).map(|report_id| ServerKind::ReportAck(ReportAck { report_id }))
            }
            _ => None,
        };
        state.sessions[index].push(message);
        if let Some(kind) = reply {
            let _ = tx.send(Ok(ServerMessage { kind: Some(kind) }));
        }
    }

    async fn start(lease_timeout_ms: u64) -> (FakeLeader, String) {
        let state = LeaderState {
            ack_heartbeats: true,
            ack_reports: true,
            welcome: Welcome {
                leader_id: 1,
                lease_timeout_ms,
                heartbeat_interval_ms: 100,
            },
            ..LeaderState::default()
        };
        let leader = FakeLeader(Arc::new(Mutex::new(state)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let service = AgentsServer::new(leader.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (leader, addr)
    }

    fn send(&self, kind: ServerKind) {
        let state = self.0.lock().unwrap();
        let tx = state.to_agent.as_ref().expect("a session is open");
        tx.send(Ok(ServerMessage { kind: Some(kind) })).unwrap();
    }

    fn close_session(&self) {
        let mut state = self.0.lock().unwrap();
        state.to_agent = None;
        if let Some(close) = state.close.take() {
            let _ = close.send(());
        }
    }

    fn set(&self, change: impl FnOnce(&mut LeaderState)) {
        change(&mut self.0.lock().unwrap());
    }

    fn sessions(&self) -> Vec<Vec<AgentMessage>> {
        self.0.lock().unwrap().sessions.clone()
    }

    /// The `UnitFinished` reports received for `unit`, in all sessions.
    fn finished(&self, unit: u64) -> Vec<UnitFinished> {
        let sessions = self.sessions();
        let all = sessions.iter().flatten();
        all.filter_map(|m| match &m.kind {
            Some(AgentKind::Finished(f)) if f.unit == unit => Some(f.clone()),
            _ => None,
        })
        .collect()
    }
}

fn report_id(message: &AgentMessage) -> Option<u64> {
    match &message.kind {
        Some(AgentKind::Started(m)) => Some(m.report_id),
        Some(AgentKind::Output(m)) => Some(m.report_id),
        Some(AgentKind::Finished(m)) => Some(m.report_id),
        _ => None,
    }
}

/// (report id, kind, unit) of each report in `messages`.
fn reports(messages: &[AgentMessage]) -> Vec<(u64, &'static str, u64)> {
    messages
        .iter()
        .filter_map(|m| match &m.kind {
            Some(AgentKind::Started(s)) => Some((s.report_id, "started", s.unit)),
            Some(AgentKind::Output(o)) => Some((o.report_id, "output", o.unit)),
            Some(AgentKind::Finished(f)) => Some((f.report_id, "finished", f.unit)),
            _ => None,
        })
        .collect()
}

fn run_unit(unit: u64, token: u64, script: &str) -> ServerKind {
    ServerKind::Run(RunUnit {
        unit,
        attempt: 1,
        task: 1,
        project: "shop".into(),
        release: "1.0".into(),
        environment: "Production".into(),
        step: "deploy".into(),
        kind: "run".into(),
        exclusive: true,
        token,
        locks: vec!["target".into()],
        script: script.into(),
        ..RunUnit::default()
    })
}

fn config(work_dir: &Path, addr: &str) -> AgentConfig {
    AgentConfig {
        name: "web01".into(),
        endpoints: vec![addr.to_string()],
        environments: vec!["Production".into()],
        roles: vec!["web".into()],
        work_dir: work_dir.to_path_buf(),
        cancel_grace_ms: 2_000,
        ..AgentConfig::default()
    }
}

/// A running agent and the way to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
}

fn start_agent(config: AgentConfig) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(agent::run(config, async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn shut_down(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        result.expect("the agent stops").unwrap().unwrap();
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn journal(work_dir: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(work_dir.join("journal.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_runs_and_its_reports_arrive_in_order_with_report_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, addr) = FakeLeader::start(5_000).await;
    let agent = start_agent(config(dir.path(), &addr));
    wait_until("the hello", || {
        leader.sessions().first().is_some_and(|s| !s.is_empty())
    })
    .await;
    let Some(AgentKind::Hello(hello)) = leader.sessions()[0][0].kind.clone() else {
        panic!("the first message is Hello");
    };
    assert_eq!((hello.name.as_str(), hello.capacity), ("web01", 1));
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert!(hello.running.is_empty());
    leader.send(run_unit(1, 10, "echo hello; echo oops >&2"));
    wait_until("the end of unit 1", || !leader.finished(1).is_empty()).await;
    let session = &leader.sessions()[0];
    let reports = reports(session);
    let ids: Vec<u64> = reports.iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        (1..=reports.len() as u64).collect::<Vec<_>>(),
        "{reports:?}"
    );
    assert_eq!(reports.first().unwrap().1, "started");
    assert_eq!(reports.last().unwrap().1, "finished");
    let outputs: Vec<&UnitOutput> = session
        .iter()
        .filter_map(|m| match &m.kind {
            Some(AgentKind::Output(o)) => Some(o),
            _ => None,
        })
        .collect();
    let seqs: Vec<u64> = outputs.iter().map(|o| o.seq).collect();
    assert_eq!(seqs, (0..outputs.len() as u64).collect::<Vec<_>>());
    let texts: Vec<(i32, &str)> = outputs
        .iter()
        .flat_map(|o| &o.lines)
        .map(|l| (l.stream, l.text.as_str()))
        .collect();
    assert!(
        texts.contains(&(LogStream::Stdout as i32, "hello")),
        "{texts:?}"
    );
    assert!(
        texts.contains(&(LogStream::Stderr as i32, "oops")),
        "{texts:?}"
    );
    assert_eq!(leader.finished(1)[0].exit_code, 0);
    assert!(session
        .iter()
        .any(|m| matches!(m.kind, Some(AgentKind::Heartbeat(_)))));
    agent.shut_down().await;
    let events: Vec<&'static str> = journal(dir.path())
        .iter()
        .map(|r| match r {
            Record::Start { .. } => "start",
            Record::Spawned { .. } => "spawned",
            Record::End { .. } => "end",
            Record::Refused { .. } => "refused",
        })
        .collect();
    assert_eq!(events, vec!["start", "spawned", "end"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_unit_is_ignored_and_a_refused_one_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, addr) = FakeLeader::start(5_000).await;
    let agent = start_agent(config(dir.path(), &addr));
    wait_until("a session", || !leader.sessions().is_empty()).await;
    wait_until("the welcome", || leader.sessions()[0].len() >= 2).await;
    leader.send(run_unit(1, 10, "echo one; sleep 30"));
    leader.send(run_unit(1, 10, "echo one; sleep 30"));
    // Busy with an exclusive unit: another is refused, and one with an older token too.
    leader.send(run_unit(2, 11, "echo two"));
    wait_until("the refusal of unit 2", || !leader.finished(2).is_empty()).await;
    let refusal = &leader.finished(2)[0];
    assert_eq!(refusal.exit_code, -1);
    assert!(
        refusal
            .reason
            .starts_with("refused: unit 2 needs the target alone"),
        "{}",
        refusal.reason
    );
    leader.send(ServerKind::Cancel(CancelUnit {
        unit: 1,
        attempt: 1,
    }));
    wait_until("the end of unit 1", || !leader.finished(1).is_empty()).await;
    leader.send(run_unit(3, 9, "echo stale"));
    wait_until("the refusal of unit 3", || !leader.finished(3).is_empty()).await;
    assert_eq!(
        leader.finished(3)[0].reason,
        "refused: fencing token 9 is older than token 10 already accepted for lock target"
    );
    // Unit 1 again, after its end: still a duplicate. Unit 4 after it proves it was handled.
    leader.send(run_unit(1, 10, "echo one"));
    leader.send(run_unit(4, 12, "echo four"));
    wait_until("the end of unit 4", || !leader.finished(4).is_empty()).await;
    let unit_one = leader.finished(1);
    assert_eq!(unit_one.len(), 1, "{unit_one:?}");
    assert_eq!(
        (unit_one[0].exit_code, unit_one[0].reason.as_str()),
        (143, "cancelled")
    );
    let session = &leader.sessions()[0];
    let starts = reports(session)
        .iter()
        .filter(|r| r.1 == "started" && r.2 == 1)
        .count();
    assert_eq!(starts, 1);
    let heartbeats: Vec<&Heartbeat> = session
        .iter()
        .filter_map(|m| match &m.kind {
            Some(AgentKind::Heartbeat(h)) => Some(h),
            _ => None,
        })
        .collect();
    assert!(heartbeats.windows(2).all(|w| w[0].seq < w[1].seq));
    wait_until("a heartbeat counting both refusals", || {
        leader.sessions()[0]
            .iter()
            .any(|m| matches!(&m.kind, Some(AgentKind::Heartbeat(h)) if h.refusals == 2))
    })
    .await;
    agent.shut_down().await;
    let refused = journal(dir.path())
        .iter()
        .filter(|r| matches!(r, Record::Refused { .. }))
        .count();
    assert_eq!(refused, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattach_resends_unacknowledged_reports_first() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, addr) = FakeLeader::start(5_000).await;
    leader.set(|s| s.ack_reports = false);
    let agent = start_agent(config(dir.path(), &addr));
    wait_until("the welcome", || {
        leader.sessions().first().is_some_and(|s| s.len() >= 2)
    })
    .await;
    leader.send(run_unit(1, 10, "echo hello"));
    wait_until("the end of unit 1", || !leader.finished(1).is_empty()).await;
    let first = reports(&leader.sessions()[0]);
    leader.set(|s| s.ack_reports = true);
    leader.close_session();
    wait_until("a second session", || leader.sessions().len() >= 2).await;
    wait_until("the resent reports", || {
        reports(&leader.sessions()[1]).len() >= first.len()
    })
    .await;
    // The leader sends the unit again, as a real one does for units it has not seen end.
    leader.send(run_unit(1, 10, "echo hello"));
    leader.send(run_unit(2, 11, "echo two"));
    wait_until("the end of unit 2", || !leader.finished(2).is_empty()).await;
    let second = reports(&leader.sessions()[1]);
    assert_eq!(
        second[..first.len()],
        first[..],
        "resent in order, with the same ids"
    );
    let fresh = &second[first.len()..];
    assert!(
        fresh.iter().all(|r| r.2 == 2),
        "unit 1 was not run again: {fresh:?}"
    );
    let ids: Vec<u64> = second.iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=second.len() as u64).collect::<Vec<_>>());
    assert!(matches!(
        leader.sessions()[1][0].kind,
        Some(AgentKind::Hello(_))
    ));
    agent.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fences_itself_when_heartbeats_go_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let lease_timeout_ms = 800;
    let (leader, addr) = FakeLeader::start(lease_timeout_ms).await;
    let agent = start_agent(config(dir.path(), &addr));
    wait_until("the welcome", || {
        leader.sessions().first().is_some_and(|s| s.len() >= 2)
    })
    .await;
    leader.send(run_unit(
        1,
        10,
        "trap '' TERM; echo up; while true; do sleep 0.05; done",
    ));
    let has_line = |leader: &FakeLeader, text: &str| {
        leader.sessions().iter().flatten().any(|m| match &m.kind {
            Some(AgentKind::Output(o)) => o.lines.iter().any(|l| l.text == text),
            _ => false,
        })
    };
    wait_until("the unit's first line", || has_line(&leader, "up")).await;
    // The leader goes silent from here: no more acks, so no more lease.
    leader.set(|s| s.ack_heartbeats = false);
    let silent_from_ms = agent::wall_ms();
    wait_until("the fenced end of unit 1", || {
        !leader.finished(1).is_empty()
    })
    .await;
    let finished = &leader.finished(1)[0];
    assert!(
        finished
            .reason
            .starts_with("fenced: no contact with the leader for "),
        "{}",
        finished.reason
    );
    assert_eq!(
        finished.exit_code, 137,
        "the script ignores SIGTERM, so SIGKILL ended it"
    );
    let end_ms = journal(dir.path())
        .iter()
        .find_map(|r| match r {
            Record::End { ts_ms, unit, .. } if unit.unit == 1 => Some(*ts_ms),
            _ => None,
        })
        .expect("the end is journaled");
    assert!(
        end_ms < silent_from_ms + lease_timeout_ms,
        "stopped {} ms after the last ack: later than the lease",
        end_ms - silent_from_ms
    );
    assert!(
        leader.sessions().len() >= 2,
        "the fenced agent dropped its session and re-attached"
    );
    agent.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reports_interrupted_units_and_recent_ends() {
    let dir = tempfile::tempdir().unwrap();
    let record = |unit| UnitRecord {
        unit,
        attempt: 1,
        token: unit,
        locks: vec!["target".into()],
        ..UnitRecord::default()
    };
    let lines = [
        Record::Start {
            ts_ms: 1,
            unit: record(1),
        },
        Record::End {
            ts_ms: 2,
            unit: record(1),
            exit_code: 0,
            reason: String::new(),
        },
        Record::Start {
            ts_ms: 3,
            unit: record(2),
        },
    ];
    let text: String = lines
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(dir.path().join("journal.jsonl"), text).unwrap();
    let (leader, addr) = FakeLeader::start(5_000).await;
    let agent = start_agent(config(dir.path(), &addr));
    wait_until("both ends", || {
        !leader.finished(1).is_empty() && !leader.finished(2).is_empty()
    })
    .await;
    assert_eq!(leader.finished(1)[0].exit_code, 0);
    let interrupted = &leader.finished(2)[0];
    assert_eq!(
        (interrupted.exit_code, interrupted.reason.as_str()),
        (-2, INTERRUPTED_REASON)
    );
    // The replayed token still fences: a grant older than unit 2's is refused.
    leader.send(run_unit(3, 1, "true"));
    wait_until("the refusal", || !leader.finished(3).is_empty()).await;
    assert!(leader.finished(3)[0]
        .reason
        .starts_with("refused: fencing token 1"));
    agent.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_running_units_and_journals_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, addr) = FakeLeader::start(5_000).await;
    let agent = start_agent(config(dir.path(), &addr));
    wait_until("the welcome", || {
        leader.sessions().first().is_some_and(|s| s.len() >= 2)
    })
    .await;
    leader.send(run_unit(1, 10, "sleep 30"));
    wait_until("the start", || {
        reports(&leader.sessions()[0])
            .iter()
            .any(|r| r.1 == "started")
    })
    .await;
    agent.shut_down().await;
    let end = journal(dir.path()).into_iter().find_map(|r| match r {
        Record::End {
            exit_code, reason, ..
        } => Some((exit_code, reason)),
        _ => None,
    });
    assert_eq!(
        end,
        Some((143, agent::session::SHUTDOWN_REASON.to_string()))
    );
    assert_eq!(
        leader.finished(1).len(),
        1,
        "the last report went out before the agent stopped"
    );
}
