//! The lock API (`Locks`): named locks of the cluster's lock table for any program — FIFO, fenced
//! and held under a lease the caller keeps alive. The leader serves every call (a follower
//! forwards it once); waiting for a grant is a long poll on the leader's applied state. The
//! leader also proposes the clock ticks that expire leases.

use crate::cluster_service::ClusterApi;
use crate::dispatcher::leads;
use crate::network::lazy_channel;
use crate::proposer::ProposeError;
use cuttle_proto::v1::locks_client::LocksClient;
use cuttle_proto::v1::locks_server::{Locks, LocksServer};
use cuttle_proto::v1::*;
use cuttle_raft::cluster::state_machine::Applied;
use cuttle_raft::sched::{Command, LockSpec, ReqId};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Longest a `Wait` call holds on.
pub const LOCK_WAIT_MS_MAX: u64 = 30_000;
/// How often the leader moves the core's clock while client locks exist, expiring leases.
pub const LEASE_TICK_MS: u64 = 200;

/// The lock API of one node.
#[derive(Clone)]
pub struct LockApi {
    /// The node's client API.
    pub api: ClusterApi,
    /// The index of the last applied entry, to wake waiters.
    pub applied_index: watch::Receiver<u64>,
    /// A channel to the leader, reused across forwarded calls.
    pub leader: Arc<Mutex<Option<(String, Channel)>>>,
}

/// A request's state as the leader's applied state has it.
pub fn lock_state(applied: &Applied, request: u64) -> LockState {
    let sched = applied.scheduler();
    let id = ReqId(request);
    match sched.client_lock(id) {
        None => LockState {
            request,
            state: "ended".into(),
            ..LockState::default()
        },
        Some(lock) => match lock.token {
            Some(token) => LockState {
                request,
                state: "granted".into(),
                token: token.0,
                ..LockState::default()
            },
            None => {
                let wait = sched.explain_request(id);
                LockState {
                    request,
                    state: "queued".into(),
                    position: wait.as_ref().map(|w| w.position as u32).unwrap_or(0),
                    waiting_for: wait.map(|w| sched.describe(&w)).unwrap_or_default(),
                    ..LockState::default()
                }
            }
        },
    }
}

enum Route {
    Here,
    Forward(LocksClient<Channel>),
}

impl LockApi {
    /// The gRPC service.
    pub fn service(self) -> LocksServer<LockApi> {
        LocksServer::new(self)
    }

    async fn route<T>(&self, request: &Request<T>) -> Result<Route, Status> {
        match self.api.leader_addr().await? {
            None => Ok(Route::Here),
            Some(_) if request.metadata().contains_key("cuttle-forwarded") => {
                Err(Status::unavailable(
                    "this node is not the leader and the call was already forwarded: retry",
                ))
            }
            Some(addr) => {
                let mut cached = self.leader.lock().expect("leader channel lock");
                if cached.as_ref().is_none_or(|(a, _)| *a != addr) {
                    let channel = lazy_channel(&addr).ok_or_else(|| {
                        Status::internal(format!("leader address {addr:?} is malformed"))
                    })?;
                    *cached = Some((addr, channel));
                }
                Ok(Route::Forward(LocksClient::new(
                    cached.as_ref().expect("set above").1.clone(),
                )))
            }
        }
    }

    fn forwarded<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("cuttle-forwarded", "1".parse().expect("ascii"));
        request
    }

    async fn propose(&self, command: Command) -> Result<(), Status> {
        let proposed =
            tokio::time::timeout(self.api.request_timeout, self.api.proposer.propose(command))
                .await;
        match proposed {
            Err(_) => Err(Status::unavailable(
                "the cluster did not commit in time (no quorum?): the outcome is unknown, read the lock's state before retrying",
            )),
            Ok(Ok((Ok(_), _))) => Ok(()),
            Ok(Ok((Err(rejection), _))) => Err(Status::failed_precondition(rejection.to_string())),
            Ok(Err(ProposeError::NotLeader(_))) => {
                Err(Status::unavailable("leadership moved: retry"))
            }
            Ok(Err(e)) => Err(Status::unavailable(e.to_string())),
        }
    }

    fn is_queued(&self, request: u64) -> bool {
        let applied = self.api.state.read().expect("state lock");
        applied
            .scheduler()
            .client_lock(ReqId(request))
            .is_some_and(|lock| lock.token.is_none())
    }

    fn state_of(&self, request: u64) -> LockState {
        let applied = self.api.state.read().expect("state lock");
        lock_state(&applied, request)
    }
}

#[tonic::async_trait]
impl Locks for LockApi {
    async fn acquire(
        &self,
        request: Request<AcquireLockRequest>,
    ) -> Result<Response<LockState>, Status> {
        if let Route::Forward(mut leader) = self.route(&request).await? {
            return leader.acquire(self.forwarded(request.into_inner())).await;
        }
        let message = request.into_inner();
        let spec = LockSpec {
            name: message.name,
            target: (!message.target.is_empty()).then_some(message.target),
            capacity: message.capacity,
            holder: message.holder,
            ttl_ms: message.ttl_ms,
        };
        let proposed = tokio::time::timeout(
            self.api.request_timeout,
            self.api.proposer.propose(Command::AcquireLock(spec)),
        )
        .await;
        let events = match proposed {
            Err(_) => return Err(Status::unavailable("the cluster did not commit in time (no quorum?): the request may be queued and will expire with its lease")),
            Ok(Ok((Ok(events), _))) => events,
            Ok(Ok((Err(rejection), _))) => return Err(Status::invalid_argument(rejection.to_string())),
            Ok(Err(ProposeError::NotLeader(_))) => return Err(Status::unavailable("leadership moved: retry")),
            Ok(Err(e)) => return Err(Status::unavailable(e.to_string())),
        };
        let request = events
            .iter()
            .find_map(|e| match e {
                cuttle_raft::sched::Event::LockQueued { request } => Some(request.0),
                _ => None,
            })
            .ok_or_else(|| Status::internal("an accepted lock request has an id"))?;
        Ok(Response::new(self.state_of(request)))
    }

    async fn wait(&self, request: Request<WaitLockRequest>) -> Result<Response<LockState>, Status> {
        if let Route::Forward(mut leader) = self.route(&request).await? {
            return leader.wait(self.forwarded(request.into_inner())).await;
        }
        let message = request.into_inner();
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(message.wait_ms.min(LOCK_WAIT_MS_MAX));
        let mut applied = self.applied_index.clone();
        loop {
            applied.borrow_and_update();
            // Every applied entry wakes every waiter: look only at whether this request is still
            // queued, and build its explanation (queue position, sentence) only to answer.
            if !self.is_queued(message.request) || !leads(&self.api.raft) {
                break;
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        Ok(Response::new(self.state_of(message.request)))
    }

    async fn keep_alive(
        &self,
        request: Request<LockRequestRef>,
    ) -> Result<Response<LockState>, Status> {
        if let Route::Forward(mut leader) = self.route(&request).await? {
            return leader
                .keep_alive(self.forwarded(request.into_inner()))
                .await;
        }
        let id = request.into_inner().request;
        match self
            .propose(Command::KeepAliveLock { request: ReqId(id) })
            .await
        {
            Ok(()) | Err(_) if self.state_of(id).state == "ended" => Ok(Response::new(LockState {
                request: id,
                state: "ended".into(),
                expired: true,
                ..LockState::default()
            })),
            Ok(()) => Ok(Response::new(self.state_of(id))),
            Err(status) => Err(status),
        }
    }

    async fn release(
        &self,
        request: Request<LockRequestRef>,
    ) -> Result<Response<LockState>, Status> {
        if let Route::Forward(mut leader) = self.route(&request).await? {
            return leader.release(self.forwarded(request.into_inner())).await;
        }
        let id = request.into_inner().request;
        match self
            .propose(Command::ReleaseLock { request: ReqId(id) })
            .await
        {
            Ok(()) => {}
            // Already released or expired: releasing is done either way.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {}
            Err(status) => return Err(status),
        }
        Ok(Response::new(LockState {
            request: id,
            state: "ended".into(),
            ..LockState::default()
        }))
    }
}

/// While this node leads and client locks exist, moves the core's clock so leases expire.
pub async fn tick_leases(api: ClusterApi) {
    loop {
        tokio::time::sleep(Duration::from_millis(LEASE_TICK_MS)).await;
        if !leads(&api.raft) {
            continue;
        }
        let any = {
            let applied = api.state.read().expect("state lock");
            let any = applied.scheduler().client_locks().next().is_some();
            any
        };
        if any {
            let _ = tokio::time::timeout(api.request_timeout, api.proposer.propose(Command::Tick))
                .await;
        }
    }
}
