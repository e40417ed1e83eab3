//! Start-up and the life of a server node: open the data directory, start openraft, serve both gRPC
//! services on one port, form the cluster from the initial membership when the data directory is
//! new, and move leadership away on request.

use crate::agent_service::AgentApi;
use crate::cluster_service::{voters_by_progress, ClusterApi};
use crate::config::NodeConfig;
use crate::dispatcher::{self, Confirmer};
use crate::error::NodeError;
use crate::lock_service::{tick_leases, LockApi};
use crate::network::{lazy_channel, Network};
use crate::peers::Peers;
use crate::proposer::Proposer;
use crate::raft_service::RaftServer;
use crate::sessions::Sessions;
use cuttle_proto::v1::cluster_client::ClusterClient;
use cuttle_proto::v1::{TransferLeaderReply, TransferLeaderRequest};
use cuttle_raft::cluster::{LogStore, NodeId, StateMachine, TypeConfig};
use openraft::{BasicNode, Raft};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Status;

/// Milliseconds since the Unix epoch: the leader's clock for each batch.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A running node.
pub struct Node {
    /// Its Raft.
    pub raft: Raft<TypeConfig>,
    /// Its client API.
    pub api: ClusterApi,
}

/// Runs a node until `shutdown` completes.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    config.validate()?;
    let data_dir = |reason: String| NodeError::DataDir {
        dir: config.data_dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| data_dir(format!("cannot create it: {e}")))?;
    let sled_dir = config.data_dir.join("state");
    let db = sled::Config::new().path(&sled_dir).open().map_err(|e| {
        data_dir(format!(
            "cannot open the store ({e}); is another cuttle server using it?"
        ))
    })?;
    let store = LogStore::open(&db, &sled_dir).map_err(|e| data_dir(e.to_string()))?;
    let state_machine =
        StateMachine::open(&db, store.clone()).map_err(|e| data_dir(e.to_string()))?;
    let state = state_machine.applied().clone();
    let feed = state_machine.subscribe();
    let applied_index = state_machine.applied_index();
    let raft_config = Arc::new(config.raft_config()?);
    let raft = Raft::new(
        config.id,
        raft_config,
        Network { self_id: config.id },
        store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| NodeError::Listen {
            addr: config.listen.clone(),
            reason: e.to_string(),
        })?;
    let peers = Peers::default();
    let sessions = Sessions::default();
    let api = ClusterApi {
        sessions: sessions.clone(),
        id: config.id,
        raft: raft.clone(),
        proposer: Proposer::start(raft.clone(), wall_clock_ms),
        state: state.clone(),
        peers: peers.clone(),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        election_timeout_max: Duration::from_millis(config.election_timeout_max_ms),
        handing_over: Arc::new(tokio::sync::RwLock::new(())),
        leader_client: Arc::new(Mutex::new(None)),
    };
    let agents = AgentApi {
        api: api.clone(),
        sessions: sessions.clone(),
        confirmer: Confirmer::start(raft.clone()),
        lease_timeout: Duration::from_millis(config.agent_lease_timeout_ms),
        heartbeat_interval: Duration::from_millis(config.agent_heartbeat_interval_ms),
    };
    let locks = LockApi {
        api: api.clone(),
        applied_index,
        leader: Arc::new(Mutex::new(None)),
    };
    tokio::spawn(dispatcher::route(
        raft.clone(),
        feed,
        state.clone(),
        sessions.clone(),
    ));
    tokio::spawn(dispatcher::follow_leadership(
        raft.clone(),
        sessions.clone(),
    ));
    tokio::spawn(dispatcher::expire_leases(
        raft.clone(),
        state.clone(),
        sessions.clone(),
        api.proposer.clone(),
        Duration::from_millis(config.agent_lease_timeout_ms),
    ));
    tokio::spawn(tick_leases(api.clone()));
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(RaftServer::service(config.id, raft.clone()))
        .add_service(api.clone().service())
        .add_service(agents.service())
        .add_service(locks.service())
        .serve_with_incoming_shutdown(
            // The builder's tcp_nodelay applies only to listeners tonic binds itself: without it
            // on the accepted sockets, Nagle's algorithm held each small streamed message (a unit
            // dispatched to its agent) until the peer's delayed ACK, about 40 ms.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = serving_stopped.await;
            },
        );
    let server = tokio::spawn(server);
    tokio::spawn(peers.probe(raft.clone()));

    tokio::spawn(log_changes(raft.clone()));
    bootstrap(&raft, &config).await?;
    tracing::info!(id = config.id, listen = %config.listen, "serving");
    shutdown.await;
    tracing::info!(id = config.id, "shutting down");
    let _ = stop_serving.send(());
    let _ = server.await;
    raft.shutdown()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    db.flush_async()
        .await
        .map_err(|e| data_dir(e.to_string()))?;
    Ok(())
}

/// Logs, at info level, every election (a new term or leader), membership change, snapshot and log
/// compaction this node sees.
async fn log_changes(raft: Raft<TypeConfig>) {
    let mut metrics = raft.metrics();
    let mut last = metrics.borrow().clone();
    while metrics.changed().await.is_ok() {
        let now = metrics.borrow().clone();
        if now.current_term != last.current_term || now.current_leader != last.current_leader {
            tracing::info!(term = now.current_term, leader = ?now.current_leader, state = ?now.state, "election: leader changed");
        }
        if now.membership_config.log_id() != last.membership_config.log_id() {
            let voters: Vec<NodeId> = now.membership_config.membership().voter_ids().collect();
            let learners: Vec<NodeId> = now.membership_config.membership().learner_ids().collect();
            tracing::info!(?voters, ?learners, "membership changed");
        }
        if now.snapshot != last.snapshot {
            tracing::info!(last_included = ?now.snapshot.map(|l| l.index), "snapshot taken or installed");
        }
        if now.purged != last.purged {
            tracing::info!(purged_up_to = ?now.purged.map(|l| l.index), "log compacted");
        }
        last = now;
    }
}

/// Forms the cluster from `initial_cluster` when this node has no state yet. Every member does the
/// same with the same membership, which is safe; a node with state ignores the flag.
async fn bootstrap(raft: &Raft<TypeConfig>, config: &NodeConfig) -> Result<(), NodeError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if initialized {
        if !config.initial_cluster.is_empty() {
            tracing::info!("the data directory holds a cluster: initial_cluster is ignored");
        }
        return Ok(());
    }
    if config.initial_cluster.is_empty() {
        tracing::info!("no state and no initial_cluster: waiting to be added to a cluster");
        return Ok(());
    }
    let members: BTreeMap<NodeId, BasicNode> = config
        .initial_cluster
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("not allowed") || e.to_string().contains("NotAllowed") => {
            Ok(())
        }
        Err(e) => Err(NodeError::Raft(format!("cannot form the cluster: {e}"))),
    }
}

/// Moves leadership away from `from_id`, which must be the leader: writes wait, the leader stops
/// heartbeating, and once the followers' leases ran out the most up-to-date follower campaigns.
/// openraft 0.9 has no leader transfer of its own.
pub async fn transfer_leadership(
    api: &ClusterApi,
    from_id: NodeId,
) -> Result<TransferLeaderReply, Status> {
    let raft = &api.raft;
    let leader = raft.metrics().borrow().current_leader;
    if leader != Some(api.id) {
        return match leader {
            Some(l) if l != from_id => Ok(TransferLeaderReply { new_leader_id: l }),
            Some(l) => {
                let addr = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone());
                let channel = addr
                    .as_deref()
                    .and_then(lazy_channel)
                    .ok_or_else(|| Status::unavailable("leader address unknown"))?;
                let reply = ClusterClient::new(channel)
                    .transfer_leader(TransferLeaderRequest {
                        from_id,
                        campaign: false,
                    })
                    .await?;
                Ok(reply.into_inner())
            }
            None => Err(Status::unavailable(
                "no leader is known: nothing to move, retry once one is elected",
            )),
        };
    }
    if from_id != api.id {
        return Ok(TransferLeaderReply {
            new_leader_id: api.id,
        });
    }
    let Some((target, _)) = voters_by_progress(raft).into_iter().next() else {
        return Err(Status::failed_precondition(
            "this node is the only voter: add a node before moving leadership",
        ));
    };
    let target_addr = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&target)
        .map(|n| n.addr.clone());
    let channel = target_addr
        .as_deref()
        .and_then(lazy_channel)
        .ok_or_else(|| Status::internal("target address unknown"))?;
    let hold = api.handing_over.write().await;
    raft.runtime_config().heartbeat(false);
    raft.runtime_config().elect(false);
    // The followers' leader lease is the maximum election timeout; wait it out.
    tokio::time::sleep(api.election_timeout_max + Duration::from_millis(100)).await;
    let campaign = ClusterClient::new(channel)
        .transfer_leader(TransferLeaderRequest {
            from_id,
            campaign: true,
        })
        .await;
    let mut metrics = raft.metrics();
    let moved = tokio::time::timeout(api.request_timeout, async {
        loop {
            let leader = metrics.borrow().current_leader;
            if leader.is_some() && leader != Some(api.id) {
                return leader;
            }
            if metrics.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    raft.runtime_config().heartbeat(true);
    raft.runtime_config().elect(true);
    drop(hold);
    campaign?;
    match moved {
        Ok(Some(new_leader)) => Ok(TransferLeaderReply {
            new_leader_id: new_leader,
        }),
        _ => Err(Status::deadline_exceeded(format!(
            "node {target} did not take over within {} ms: leadership stays with node {}; retry",
            api.request_timeout.as_millis(),
            api.id
        ))),
    }
}
