//! The agent API (`Agents.Attach`): one bidirectional stream per agent. On the leader it is a
//! session (registration through Raft, the units to run, heartbeat acknowledgements, reports
//! proposed in order without waiting for each other and acknowledged in order once committed); on a follower the stream is relayed to the
//! leader, so an agent may dial any node.

use crate::cluster_service::ClusterApi;
use crate::dispatcher::{session_start, Confirmer};
use crate::proposer::{Pending, ProposeError};
use crate::sessions::{Sessions, SESSION_QUEUE_MESSAGES_MAX};
use cuttle_proto::v1::agent_message::Kind as In;
use cuttle_proto::v1::agents_client::AgentsClient;
use cuttle_proto::v1::agents_server::{Agents, AgentsServer};
use cuttle_proto::v1::server_message::Kind as Out;
use cuttle_proto::v1::*;
use cuttle_raft::ledger::{
    LogLine as StoredLine, LogStream as StoredStream, Request as Replicated,
};
use cuttle_raft::sched::{Command, TargetSpec, UnitId};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// How long a relaying node tries to connect to the leader before it deems it unreachable.
const LEADER_CONNECT_TIMEOUT_MS: u64 = 300;

/// Reports from one agent waiting to be proposed; a full queue holds the agent's stream back.
pub const SESSION_REPORTS_MAX: usize = 1_024;

/// The agent API of one node.
#[derive(Clone)]
pub struct AgentApi {
    /// The node's client API (Raft, proposer, state).
    pub api: ClusterApi,
    /// The leader's sessions.
    pub sessions: Sessions,
    /// Leadership confirmation for heartbeat acknowledgements.
    pub confirmer: Confirmer,
    /// The agents' lease.
    pub lease_timeout: Duration,
    /// How often agents heartbeat.
    pub heartbeat_interval: Duration,
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

impl AgentApi {
    /// The gRPC service.
    pub fn service(self) -> AgentsServer<AgentApi> {
        AgentsServer::new(self)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20)
    }

    /// A connection to the leader, or `None` when this node leads. While the leader this node
    /// knows cannot be reached (it died and the election is under way), waits for the next one
    /// instead of failing: the agent then attaches as soon as a leader serves, rather than after
    /// its backoff.
    async fn leader_channel(&self) -> Result<Option<Channel>, Status> {
        let deadline = tokio::time::Instant::now() + self.api.request_timeout;
        let mut metrics = self.api.raft.metrics();
        loop {
            let Some(leader) = self.api.leader_addr().await? else {
                return Ok(None);
            };
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{leader}"))
                .map_err(|_| Status::internal(format!("leader address {leader:?} is malformed")))?
                .connect_timeout(Duration::from_millis(LEADER_CONNECT_TIMEOUT_MS))
                .tcp_nodelay(true)
                // A leader cut off mid-session must end the relayed stream, so the agent moves on.
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(2));
            match endpoint.connect().await {
                Ok(channel) => return Ok(Some(channel)),
                Err(e) => {
                    tracing::debug!(%leader, error = %e, "the leader is unreachable: waiting for the next")
                }
            }
            // Wait for news of another leader (or until the deadline), then look again.
            loop {
                if tokio::time::timeout_at(deadline, metrics.changed())
                    .await
                    .is_err()
                {
                    return Err(Status::unavailable(format!(
                        "the leader at {leader} is unreachable and no other leader emerged: attach again"
                    )));
                }
                if self.api.leader_addr().await?.as_deref() != Some(leader.as_str()) {
                    break;
                }
            }
        }
    }

    async fn relay(
        &self,
        channel: Channel,
        mut inbound: Streaming<AgentMessage>,
    ) -> Result<ServerStream, Status> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if tx.send(message).await.is_err() {
                    break;
                }
            }
        });
        let mut request = Request::new(ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("cuttle-forwarded", "1".parse().expect("ascii"));
        let upstream = AgentsClient::new(channel)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20)
            .attach(request)
            .await?;
        Ok(Box::pin(upstream.into_inner()))
    }

    async fn serve(&self, mut inbound: Streaming<AgentMessage>) -> Result<ServerStream, Status> {
        let first = tokio::time::timeout(self.api.request_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within the request timeout"))??;
        let Some(AgentMessage {
            kind: Some(In::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message of a session must be Hello (name, environments, roles, tenants, capacity)",
            ));
        };
        let name = hello.name.clone();
        let spec = TargetSpec {
            name: hello.name,
            environments: hello.environments,
            roles: hello.roles,
            tenants: hello.tenants,
            capacity: hello.capacity,
        };
        // The registration restarts the lease and takes its place in the log under the
        // registration lock, so that no `AgentLost` decided on the old lease lands after it.
        let deadline = Instant::now() + self.api.request_timeout;
        let registered = {
            let _registration = tokio::time::timeout_at(deadline, self.sessions.registration())
                .await
                .map_err(|_| {
                    Status::unavailable(
                        "the leader is still declaring lost agents (no quorum?): attach again",
                    )
                })?;
            self.sessions.touch(&name);
            self.submit(Command::UpsertTarget(spec).into(), deadline)
                .await?
        };
        match self.outcome(registered, deadline).await? {
            Ok(_) => {}
            Err(rejection) => {
                return Err(Status::invalid_argument(format!(
                    "agent {name:?} cannot register: {rejection}"
                )))
            }
        }
        let (tx, mut rx) = mpsc::channel(SESSION_QUEUE_MESSAGES_MAX);
        let id = self.sessions.attach(&name, tx, hello.version);
        tracing::info!(agent = %name, session = id, "agent attached");
        let (scan_index, backlog) = {
            let applied = self.api.state.read().expect("state lock");
            session_start(&applied, &name)
        };
        let (out, out_rx) = mpsc::channel::<Result<ServerMessage, Status>>(256);
        let welcome = ServerMessage {
            kind: Some(Out::Welcome(Welcome {
                leader_id: self.api.id,
                lease_timeout_ms: self.lease_timeout.as_millis() as u64,
                heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            })),
        };
        out.send(Ok(welcome)).await.ok();
        for message in backlog {
            out.send(Ok(message)).await.ok();
        }
        // Writer: everything routed to the session after the scan, in order.
        let writer_out = out.clone();
        tokio::spawn(async move {
            while let Some((index, message)) = rx.recv().await {
                if index != 0 && index <= scan_index {
                    continue;
                }
                if writer_out.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            let _ = writer_out
                .send(Err(Status::unavailable(
                    "session closed by the cluster (leadership moved, lease lost or replaced): attach again",
                )))
                .await;
        });
        // Reports are proposed in the order the agent sent them, without waiting for one to commit
        // before proposing the next (the proposer keeps their order in the log), and acknowledged
        // in that order once committed: a unit's output and its end ride the same Raft round.
        let (reports, mut report_rx) = mpsc::channel::<AgentMessage>(SESSION_REPORTS_MAX);
        let (proposed, mut proposed_rx) = mpsc::channel::<(u64, Pending)>(SESSION_REPORTS_MAX);
        let me = self.clone();
        let reporter_name = name.clone();
        tokio::spawn(async move {
            while let Some(report) = report_rx.recv().await {
                if !me.sessions.is_current(&reporter_name, id) {
                    return;
                }
                let Some((report_id, request)) = me.request_of(&reporter_name, report) else {
                    continue;
                };
                let deadline = Instant::now() + me.api.request_timeout;
                let pending = match me.submit(request, deadline).await {
                    Ok(pending) => pending,
                    Err(status) => {
                        tracing::info!(agent = %reporter_name, error = %status.message(), "report not recorded: closing the session");
                        me.sessions.detach(&reporter_name, id);
                        return;
                    }
                };
                if proposed.send((report_id, pending)).await.is_err() {
                    return;
                }
            }
        });
        let me = self.clone();
        let acker_name = name.clone();
        tokio::spawn(async move {
            while let Some((report_id, pending)) = proposed_rx.recv().await {
                if !me.acknowledge(&acker_name, id, report_id, pending).await {
                    me.sessions.detach(&acker_name, id);
                    return;
                }
            }
        });
        // Reader: heartbeats are answered at once (after a leadership confirmation); reports queue.
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let received = Instant::now();
                if !me.sessions.is_current(&name, id) {
                    break;
                }
                match message.kind {
                    Some(In::Heartbeat(beat)) => {
                        me.sessions.heard(&name, id, Some(beat.refusals));
                        let me = me.clone();
                        let name = name.clone();
                        tokio::spawn(async move {
                            if me
                                .confirmer
                                .confirmed_after(received, me.lease_timeout)
                                .await
                            {
                                let ack = ServerMessage {
                                    kind: Some(Out::HeartbeatAck(HeartbeatAck { seq: beat.seq })),
                                };
                                me.sessions.send(&name, (0, ack));
                            }
                        });
                    }
                    Some(In::Hello(_)) | None => {
                        tracing::warn!(agent = %name, "unexpected message in a session: ignored");
                    }
                    Some(_) => {
                        me.sessions.heard(&name, id, None);
                        if reports.send(message).await.is_err() {
                            break;
                        }
                    }
                }
            }
            me.sessions.detach(&name, id);
            tracing::info!(agent = %name, session = id, "agent detached");
        });
        Ok(Box::pin(ReceiverStream::new(out_rx)))
    }

    /// Queues a request for the log, waiting for room in the proposer's queue until `deadline`.
    async fn submit(&self, request: Replicated, deadline: Instant) -> Result<Pending, Status> {
        match tokio::time::timeout_at(deadline, self.api.proposer.submit(request)).await {
            Err(_) => Err(Status::unavailable(
                "the cluster did not take the request in time (no quorum?): retry",
            )),
            Ok(submitted) => submitted.map_err(|e| Status::unavailable(e.to_string())),
        }
    }

    /// Waits for a submitted request's outcome until `deadline`.
    async fn outcome(
        &self,
        pending: Pending,
        deadline: Instant,
    ) -> Result<Result<Vec<cuttle_raft::sched::Event>, cuttle_raft::sched::Rejection>, Status> {
        match tokio::time::timeout_at(deadline, pending).await {
            Err(_) => Err(Status::unavailable(
                "the cluster did not commit in time: retry",
            )),
            Ok(Ok((result, _index))) => Ok(result),
            Ok(Err(ProposeError::NotLeader(_))) => {
                Err(Status::unavailable("leadership moved: attach again"))
            }
            Ok(Err(e)) => Err(Status::unavailable(e.to_string())),
        }
    }

    /// The replicated request that records one report, with the report's id; `None` for a
    /// message that is no report.
    fn request_of(&self, name: &str, report: AgentMessage) -> Option<(u64, Replicated)> {
        Some(match report.kind {
            Some(In::Started(s)) => (
                s.report_id,
                Command::UnitStarted {
                    unit: UnitId(s.unit),
                    attempt: s.attempt,
                }
                .into(),
            ),
            Some(In::Finished(f)) => {
                if !f.reason.is_empty() {
                    tracing::info!(agent = name, unit = f.unit, attempt = f.attempt, exit_code = f.exit_code, reason = %f.reason, "unit ended abnormally");
                }
                (
                    f.report_id,
                    Command::UnitFinished {
                        unit: UnitId(f.unit),
                        attempt: f.attempt,
                        exit_code: f.exit_code,
                    }
                    .into(),
                )
            }
            Some(In::Output(o)) => (
                o.report_id,
                Replicated::AppendLog {
                    unit: UnitId(o.unit),
                    attempt: o.attempt,
                    seq: o.seq,
                    lines: o
                        .lines
                        .into_iter()
                        .map(|l| StoredLine {
                            ts_ms: l.ts_ms,
                            unit: None,
                            stream: match LogStream::try_from(l.stream) {
                                Ok(LogStream::Stderr) => StoredStream::Stderr,
                                Ok(LogStream::System) => StoredStream::System,
                                _ => StoredStream::Stdout,
                            },
                            text: l.text,
                        })
                        .collect(),
                },
            ),
            _ => return None,
        })
    }

    /// Waits until one proposed report is committed and acknowledges it; false when the session
    /// must end (the report is kept by the agent and sent again after it re-attaches).
    async fn acknowledge(&self, name: &str, id: u64, report_id: u64, pending: Pending) -> bool {
        match self
            .outcome(pending, Instant::now() + self.api.request_timeout)
            .await
        {
            Ok(result) => {
                if let Err(rejection) = result {
                    // Stale or duplicate reports are expected after a reconnect.
                    tracing::debug!(agent = name, report_id, %rejection, "report refused");
                }
                let ack = ServerMessage {
                    kind: Some(Out::ReportAck(ReportAck { report_id })),
                };
                self.sessions.send(name, (0, ack));
                self.sessions.is_current(name, id)
            }
            Err(status) => {
                tracing::info!(agent = name, error = %status.message(), "report not recorded: closing the session");
                false
            }
        }
    }
}

#[tonic::async_trait]
impl Agents for AgentApi {
    type AttachStream = ServerStream;

    async fn attach(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let forwarded = request.metadata().contains_key("cuttle-forwarded");
        let inbound = request.into_inner();
        if forwarded && self.api.leader_addr().await?.is_some() {
            return Err(Status::unavailable(
                "this node is not the leader and the session was already relayed once: attach again",
            ));
        }
        let stream = match self.leader_channel().await? {
            None => self.serve(inbound).await?,
            Some(channel) => self.relay(channel, inbound).await?,
        };
        Ok(Response::new(stream))
    }
}
