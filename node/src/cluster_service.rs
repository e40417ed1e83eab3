//! The client API. Any node serves every call: a follower forwards writes, linearizable reads and
//! membership changes to the leader; a request that cannot be served within the configured time
//! fails with the reason (`no quorum: 1 of 3 nodes reachable`) instead of hanging.

use crate::network::lazy_channel;
use crate::peers::Peers;
use crate::proposer::{ProposeError, Proposer};
use cuttle_proto::v1::cluster_client::ClusterClient;
use cuttle_proto::v1::cluster_server::{Cluster, ClusterServer};
use cuttle_proto::v1::*;
use cuttle_raft::cluster::codec;
use cuttle_raft::cluster::state_machine::Applied as AppliedState;
use cuttle_raft::cluster::{NodeId, TypeConfig};
use cuttle_raft::ledger::Request as Replicated;
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The client API service of one node.
#[derive(Clone)]
pub struct ClusterApi {
    /// This node.
    pub id: NodeId,
    /// Its Raft.
    pub raft: Raft<TypeConfig>,
    /// Its write batcher.
    pub proposer: Proposer,
    /// Its state machine's state, for reads.
    pub state: Arc<RwLock<AppliedState>>,
    /// Member health.
    pub peers: Peers,
    /// How long a request may take.
    pub request_timeout: Duration,
    /// Election timeout (max), for leader transfer.
    pub election_timeout_max: Duration,
    /// Set while leadership is being handed over: writes wait.
    pub handing_over: Arc<tokio::sync::RwLock<()>>,
    /// A channel to the current leader, reused across forwarded calls.
    pub leader_client: Arc<Mutex<Option<LeaderClient>>>,
    /// The agents attached to this node while it leads.
    pub sessions: crate::sessions::Sessions,
}

/// A channel to a leader, with its id.
pub type LeaderClient = (NodeId, ClusterClient<Channel>);

/// Where a request should go.
enum Route {
    Here,
    Forward(ClusterClient<Channel>),
}

impl ClusterApi {
    /// The gRPC service.
    pub fn service(self) -> ClusterServer<ClusterApi> {
        ClusterServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// Waits until a leader is known (at most the rest of `deadline`), and routes to it.
    async fn route(&self, deadline: tokio::time::Instant) -> Result<Route, Status> {
        let mut metrics = self.raft.metrics();
        loop {
            let (leader, addr) = {
                let m = metrics.borrow();
                let leader = m.current_leader;
                let addr = leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.addr.clone())
                });
                (leader, addr)
            };
            match (leader, addr) {
                (Some(l), _) if l == self.id => return Ok(Route::Here),
                (Some(l), Some(addr)) => {
                    let mut cached = self.leader_client.lock().expect("leader client lock");
                    if cached.as_ref().is_none_or(|(id, _)| *id != l) {
                        let channel = lazy_channel(&addr).ok_or_else(|| {
                            Status::internal(format!("leader {l} has a malformed address {addr:?}"))
                        })?;
                        *cached = Some((l, ClusterClient::new(channel)));
                    }
                    return Ok(Route::Forward(
                        cached.as_ref().expect("set above").1.clone(),
                    ));
                }
                _ => {
                    if tokio::time::timeout_at(deadline, metrics.changed())
                        .await
                        .is_err()
                    {
                        return Err(self.no_quorum("no leader is known"));
                    }
                }
            }
        }
    }

    /// The leader's address when another node leads; `None` when this node does. Waits for a
    /// leader up to the request timeout.
    pub async fn leader_addr(&self) -> Result<Option<String>, Status> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let (leader, addr, state) = {
                let m = metrics.borrow();
                let addr = m.current_leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.addr.clone())
                });
                (m.current_leader, addr, m.state)
            };
            match (leader, addr) {
                (Some(l), _) if l == self.id && state == ServerState::Leader => return Ok(None),
                (Some(l), Some(addr)) if l != self.id => return Ok(Some(addr)),
                _ => {}
            }
            if tokio::time::timeout_at(deadline, metrics.changed())
                .await
                .is_err()
            {
                return Err(self.no_quorum("no leader is known"));
            }
        }
    }

    fn no_quorum(&self, what: &str) -> Status {
        let (reachable, members) = self.peers.reachable(&self.raft);
        Status::unavailable(format!(
            "no quorum: {reachable} of {members} nodes reachable ({what} after {} ms); a write may or may not have been applied: read before retrying",
            self.request_timeout.as_millis()
        ))
    }

    /// The leader did not answer a forwarded request: say whether a quorum is out of reach or only
    /// the leader is, and that the outcome of a write is unknown.
    fn forward_failed(&self, status: Status) -> Status {
        if !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ) || status.message().starts_with("no quorum")
        {
            return status;
        }
        let (reachable, members) = self.peers.reachable(&self.raft);
        if reachable * 2 <= members {
            return self.no_quorum("the leader did not answer");
        }
        let leader = self.raft.metrics().borrow().current_leader.unwrap_or(0);
        Status::unavailable(format!(
            "leader {leader} did not answer ({}); a new leader may be being elected: a write may or may not have been applied, read before retrying",
            status.message()
        ))
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.request_timeout
    }

    fn forwarded<T>(request: &Request<T>) -> bool {
        request.metadata().contains_key("cuttle-forwarded")
    }

    fn mark_forwarded<T>(message: T, deadline: tokio::time::Instant) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("cuttle-forwarded", "1".parse().expect("ascii"));
        request.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
        request
    }

    async fn write_here(
        &self,
        command: Replicated,
        deadline: tokio::time::Instant,
    ) -> Result<Option<WriteReply>, Status> {
        let _not_handing_over = self.handing_over.read().await;
        match tokio::time::timeout_at(deadline, self.proposer.propose(command)).await {
            Err(_) => Err(self.no_quorum("the write was not committed")),
            Ok(Ok((result, log_index))) => {
                let result = codec::encode(&result).map_err(|e| Status::internal(e.to_string()))?;
                Ok(Some(WriteReply { result, log_index }))
            }
            Ok(Err(ProposeError::NotLeader(_))) => Ok(None),
            Ok(Err(e)) => Err(Status::unavailable(e.to_string())),
        }
    }

    fn status_here(&self) -> StatusReply {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let role = if Some(*id) == m.current_leader {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                let matched_index = if *id == m.id {
                    m.last_log_index.unwrap_or(0)
                } else {
                    replication
                        .get(id)
                        .copied()
                        .flatten()
                        .map(|l| l.index)
                        .unwrap_or(0)
                };
                let healthy = *id == m.id || self.peers.healthy(*id);
                Member {
                    id: *id,
                    addr: node.addr.clone(),
                    role: role.into(),
                    matched_index,
                    healthy,
                }
            })
            .collect();
        StatusReply {
            node_id: m.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            members,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
        }
    }

    fn read_state(&self, query: &str) -> Result<String, Status> {
        let state = self.state.read().expect("state lock");
        let sched = state.scheduler();
        let value = match query {
            "summary" => serde_json::json!({
                "queued_tasks": sched.queued_tasks(),
                "running_tasks": sched.running_tasks(),
                "tasks": sched.tasks().count(),
                "targets": sched.targets().count(),
                "last_applied": state.last_applied.map(|l| l.index).unwrap_or(0),
            }),
            "tasks" => crate::views::tasks(&state),
            "targets" => serde_json::Value::Array(
                sched
                    .targets()
                    .map(|(id, t)| serde_json::json!({"id": id.0, "name": sched.symbols().name(t.name), "online": t.online}))
                    .collect(),
            ),
            "agents" => crate::views::agents(&state, &self.sessions),
            "locks" => crate::views::locks(&state),
            "releases" => crate::views::releases(&state),
            // A diagnostic for benchmarks: encodes and decodes the state as a snapshot would,
            // under the state lock (applying waits meanwhile).
            "snapshot-stats" => {
                let started = std::time::Instant::now();
                let bytes = state
                    .replicated
                    .snapshot()
                    .map_err(|e| Status::internal(e.to_string()))?;
                let encode_ms = started.elapsed().as_secs_f64() * 1000.0;
                let started = std::time::Instant::now();
                cuttle_raft::ledger::Replicated::restore(&bytes)
                    .map_err(|e| Status::internal(e.to_string()))?;
                let restore_ms = started.elapsed().as_secs_f64() * 1000.0;
                serde_json::json!({"bytes": bytes.len(), "encode_ms": encode_ms, "restore_ms": restore_ms})
            }
            "spec" => serde_json::to_value(state.replicated.model())
                .map_err(|e| Status::internal(e.to_string()))?,
            other => {
                if let Some(rest) = other.strip_prefix("task-log:") {
                    crate::views::task_log(&state, rest)?
                } else if let Some(id) = other.strip_prefix("task:") {
                    crate::views::task(&state, id)?
                } else {
                    return Err(Status::invalid_argument(format!(
                        "unknown query {other:?}: use summary, tasks, targets, agents, locks, releases, spec, snapshot-stats, task:ID or task-log:ID:FROM_LINE"
                    )));
                }
            }
        };
        Ok(value.to_string())
    }

    async fn change_membership(
        &self,
        request: &MembershipChange,
        deadline: tokio::time::Instant,
    ) -> Result<MembershipReply, Status> {
        let step = async {
            match request {
                MembershipChange::Add { id, addr } => {
                    let node = BasicNode { addr: addr.clone() };
                    retry_in_progress(|| self.raft.add_learner(*id, node.clone(), true)).await?;
                    retry_in_progress(|| {
                        self.raft
                            .change_membership(ChangeMembers::AddVoterIds([*id].into()), false)
                    })
                    .await?;
                }
                MembershipChange::Remove { id } => {
                    let m = self.raft.metrics().borrow().clone();
                    let is_voter = m
                        .membership_config
                        .membership()
                        .voter_ids()
                        .any(|v| v == *id);
                    if is_voter {
                        retry_in_progress(|| {
                            self.raft
                                .change_membership(ChangeMembers::RemoveVoters([*id].into()), false)
                        })
                        .await?;
                    }
                    let m = self.raft.metrics().borrow().clone();
                    if m.membership_config.membership().get_node(id).is_some() {
                        retry_in_progress(|| {
                            self.raft
                                .change_membership(ChangeMembers::RemoveNodes([*id].into()), false)
                        })
                        .await?;
                    }
                }
            }
            Ok::<(), Status>(())
        };
        match tokio::time::timeout_at(deadline, step).await {
            Err(_) => return Err(self.no_quorum("the membership change did not complete")),
            Ok(result) => result?,
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        Ok(MembershipReply { voters, learners })
    }
}

enum MembershipChange {
    Add { id: NodeId, addr: String },
    Remove { id: NodeId },
}

/// Retries a membership call while an earlier change is still being committed.
async fn retry_in_progress<F, Fut, T, E>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, openraft::error::RaftError<NodeId, E>>>,
    E: std::error::Error,
{
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let text = e.to_string();
                if text.contains("in progress") || text.contains("InProgress") {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                return Err(Status::failed_precondition(text));
            }
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let m = self.raft.metrics().borrow().clone();
        Ok(Response::new(PingReply {
            node_id: self.id,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            leader_id: m.current_leader.unwrap_or(0),
        }))
    }

    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        let forwarded = Self::forwarded(&request);
        let message = request.into_inner();
        let command: Replicated =
            codec::decode(&message.command).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let deadline = self.deadline();
        loop {
            match self.route(deadline).await? {
                Route::Here => {
                    if let Some(reply) = self.write_here(command.clone(), deadline).await? {
                        return Ok(Response::new(reply));
                    }
                    // Leadership moved while proposing: route again.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Route::Forward(_) if forwarded => {
                    return Err(Status::unavailable("this node is not the leader and the request was already forwarded once: retry"));
                }
                Route::Forward(mut leader) => {
                    let forwarded = leader.write(Self::mark_forwarded(message, deadline)).await;
                    return forwarded.map_err(|status| self.forward_failed(status));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.no_quorum("the write was not committed"));
            }
        }
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let here = self.status_here();
        if Self::forwarded(&request) || here.leader_id == self.id || here.leader_id == 0 {
            return Ok(Response::new(here));
        }
        // The leader's view has the replication progress; fall back to ours if it does not answer.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        if let Ok(Route::Forward(mut leader)) = self.route(deadline).await {
            if let Ok(reply) = leader
                .status(Self::mark_forwarded(StatusRequest {}, deadline))
                .await
            {
                return Ok(reply);
            }
        }
        Ok(Response::new(here))
    }

    async fn add_node(
        &self,
        request: Request<AddNodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let forwarded = Self::forwarded(&request);
        let message = request.into_inner();
        if message.id == 0 || message.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "add node {} at {:?}: give an id of 1 or more and an address HOST:PORT with an IP address",
                message.id, message.addr
            )));
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout * 12;
        match self.route(deadline).await? {
            Route::Here => {
                let change = MembershipChange::Add {
                    id: message.id,
                    addr: message.addr,
                };
                Ok(Response::new(
                    self.change_membership(&change, deadline).await?,
                ))
            }
            Route::Forward(_) if forwarded => Err(Status::unavailable("not the leader: retry")),
            Route::Forward(mut leader) => {
                leader
                    .add_node(Self::mark_forwarded(message, deadline))
                    .await
            }
        }
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let forwarded = Self::forwarded(&request);
        let message = request.into_inner();
        let deadline = tokio::time::Instant::now() + self.request_timeout * 2;
        match self.route(deadline).await? {
            Route::Here => {
                let m = self.raft.metrics().borrow().clone();
                if m.membership_config
                    .membership()
                    .get_node(&message.id)
                    .is_none()
                {
                    return Err(Status::not_found(format!(
                        "node {} is not a member: see cuttle cluster status",
                        message.id
                    )));
                }
                let change = MembershipChange::Remove { id: message.id };
                Ok(Response::new(
                    self.change_membership(&change, deadline).await?,
                ))
            }
            Route::Forward(_) if forwarded => Err(Status::unavailable("not the leader: retry")),
            Route::Forward(mut leader) => {
                leader
                    .remove_node(Self::mark_forwarded(message, deadline))
                    .await
            }
        }
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        let message = request.into_inner();
        if message.campaign {
            self.raft
                .trigger()
                .elect()
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            return Ok(Response::new(TransferLeaderReply {
                new_leader_id: self.id,
            }));
        }
        crate::server::transfer_leadership(self, message.from_id)
            .await
            .map(Response::new)
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        let forwarded = Self::forwarded(&request);
        let message = request.into_inner();
        let deadline = self.deadline();
        loop {
            match self.route(deadline).await? {
                Route::Here => {
                    let read =
                        tokio::time::timeout_at(deadline, self.raft.ensure_linearizable()).await;
                    match read {
                        Err(_) => {
                            return Err(
                                self.no_quorum("the read could not be confirmed by a quorum")
                            )
                        }
                        Ok(Ok(read_log_id)) => {
                            let json = self.read_state(&message.query)?;
                            let read_index = read_log_id.map(|l| l.index).unwrap_or(0);
                            return Ok(Response::new(ReadReply { json, read_index }));
                        }
                        Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                Route::Forward(_) if forwarded => {
                    return Err(Status::unavailable("not the leader: retry"))
                }
                Route::Forward(mut leader) => {
                    let forwarded = leader.read(Self::mark_forwarded(message, deadline)).await;
                    return forwarded.map_err(|status| self.forward_failed(status));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.no_quorum("the read was not confirmed"));
            }
        }
    }
}

/// The leader's view of which voters exist and how far each has replicated.
pub fn voters_by_progress(raft: &Raft<TypeConfig>) -> Vec<(NodeId, u64)> {
    let m = raft.metrics().borrow().clone();
    let replication: BTreeMap<NodeId, u64> = m
        .replication
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, l)| (id, l.map(|l| l.index).unwrap_or(0)))
        .collect();
    let mut voters: Vec<(NodeId, u64)> = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != m.id)
        .map(|id| (id, replication.get(&id).copied().unwrap_or(0)))
        .collect();
    voters.sort_by_key(|(id, index)| (std::cmp::Reverse(*index), *id));
    voters
}

/// Whether this node leads right now.
pub fn is_leader(raft: &Raft<TypeConfig>) -> bool {
    raft.metrics().borrow().state == ServerState::Leader
}
