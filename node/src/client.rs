//! A client of the cluster API that fails over between endpoints: it tries each endpoint in turn,
//! and the node that answers forwards the request to the leader.

use cuttle_proto::v1::cluster_client::ClusterClient;
use cuttle_proto::v1::locks_client::LocksClient;
use cuttle_proto::v1::*;
use cuttle_raft::cluster::codec;
use cuttle_raft::ledger::Request;
use cuttle_raft::sched::{Event, Rejection};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No endpoint was given.
    #[error("no endpoints: pass --endpoints HOST:PORT,... or set CUTTLE_ENDPOINTS")]
    NoEndpoints,
    /// An endpoint is malformed.
    #[error("endpoint {0:?} is not HOST:PORT")]
    BadEndpoint(String),
    /// Every endpoint failed; the last error is kept.
    #[error("{0}")]
    Unavailable(String),
    /// The cluster answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The reply could not be decoded.
    #[error("the reply does not decode: {0}")]
    Decode(String),
}

/// A connection to a cluster through any of its nodes.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<(String, ClusterClient<Channel>)>,
    channels: Vec<(String, Channel)>,
}

impl Client {
    /// A client for `endpoints` (`HOST:PORT` each); connects lazily.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let channels = endpoints
            .iter()
            .map(|addr| {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|_| ClientError::BadEndpoint(addr.clone()))?
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(timeout)
                    .tcp_nodelay(true);
                Ok((addr.clone(), endpoint.connect_lazy()))
            })
            .collect::<Result<Vec<(String, Channel)>, ClientError>>()?;
        let endpoints = channels
            .iter()
            .map(|(addr, channel)| {
                let client = ClusterClient::new(channel.clone())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20);
                (addr.clone(), client)
            })
            .collect();
        Ok(Client {
            endpoints,
            channels,
        })
    }

    /// Calls `call` on each endpoint in turn until one answers; an answer that is an error of the
    /// cluster (not of the connection) is returned at once.
    async fn each<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(ClusterClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        each_of(self.endpoints.iter().cloned(), call).await
    }

    /// Calls the lock API on each endpoint in turn until one answers.
    async fn each_lock<F, Fut>(&self, call: F) -> Result<LockState, ClientError>
    where
        F: FnMut(LocksClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<LockState>, tonic::Status>>,
    {
        let clients = self
            .channels
            .iter()
            .map(|(addr, channel)| (addr.clone(), LocksClient::new(channel.clone())));
        each_of(clients, call).await
    }

    /// Queues a request for a named lock.
    pub async fn lock_acquire(
        &self,
        request: AcquireLockRequest,
    ) -> Result<LockState, ClientError> {
        self.each_lock(|mut c| {
            let request = request.clone();
            async move { c.acquire(request).await }
        })
        .await
    }

    /// Waits up to `wait_ms` for a lock request to be granted or to end.
    pub async fn lock_wait(&self, request: u64, wait_ms: u64) -> Result<LockState, ClientError> {
        self.each_lock(|mut c| async move { c.wait(WaitLockRequest { request, wait_ms }).await })
            .await
    }

    /// Renews a lock request's lease.
    pub async fn lock_keep_alive(&self, request: u64) -> Result<LockState, ClientError> {
        self.each_lock(|mut c| async move { c.keep_alive(LockRequestRef { request }).await })
            .await
    }

    /// Releases a lock, or stops waiting for it.
    pub async fn lock_release(&self, request: u64) -> Result<LockState, ClientError> {
        self.each_lock(|mut c| async move { c.release(LockRequestRef { request }).await })
            .await
    }

    /// Applies a command; returns its result and the log index that carried it.
    pub async fn write(
        &self,
        request: impl Into<Request>,
    ) -> Result<(Result<Vec<Event>, Rejection>, u64), ClientError> {
        let bytes =
            codec::encode(&request.into()).map_err(|e| ClientError::Decode(e.to_string()))?;
        let reply = self
            .each(|mut c| {
                let command = bytes.clone();
                async move { c.write(WriteRequest { command }).await }
            })
            .await?;
        let result =
            codec::decode(&reply.result).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((result, reply.log_index))
    }

    /// The first endpoint's own progress (not forwarded): for tests and tools that watch one node.
    pub async fn ping_first(&self) -> Result<PingReply, ClientError> {
        let (addr, client) = &self.endpoints[0];
        let mut client = client.clone();
        client
            .ping(PingRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| ClientError::Unavailable(format!("{addr}: {}", s.message())))
    }

    /// The cluster's status, as its leader sees it when one is known.
    pub async fn status(&self) -> Result<StatusReply, ClientError> {
        self.each(|mut c| async move { c.status(StatusRequest {}).await })
            .await
    }

    /// A linearizable read.
    pub async fn read(&self, query: &str) -> Result<serde_json::Value, ClientError> {
        let reply = self
            .each(|mut c| {
                let query = query.to_string();
                async move { c.read(ReadRequest { query }).await }
            })
            .await?;
        serde_json::from_str(&reply.json).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Adds a node: as a learner, then, once caught up, as a voter.
    pub async fn add_node(&self, id: u64, addr: &str) -> Result<MembershipReply, ClientError> {
        self.each(|mut c| {
            let addr = addr.to_string();
            async move { c.add_node(AddNodeRequest { id, addr }).await }
        })
        .await
    }

    /// Removes a node.
    pub async fn remove_node(&self, id: u64) -> Result<MembershipReply, ClientError> {
        self.each(|mut c| async move { c.remove_node(RemoveNodeRequest { id }).await })
            .await
    }

    /// Moves leadership away from `from_id`.
    pub async fn transfer_leader(&self, from_id: u64) -> Result<TransferLeaderReply, ClientError> {
        self.each(|mut c| async move {
            c.transfer_leader(TransferLeaderRequest {
                from_id,
                campaign: false,
            })
            .await
        })
        .await
    }
}

/// Calls `call` on each `(address, client)` in turn until one answers; an answer that is an error
/// of the cluster (not of the connection) is returned at once.
async fn each_of<C, T, F, Fut>(
    clients: impl Iterator<Item = (String, C)>,
    mut call: F,
) -> Result<T, ClientError>
where
    F: FnMut(C) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut last = String::new();
    for (addr, client) in clients {
        match call(client).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) if is_connection_error(&status) => {
                last = format!("{addr}: {}", status.message());
            }
            Err(status) => return Err(ClientError::Refused(status.message().to_string())),
        }
    }
    Err(ClientError::Unavailable(format!(
        "no endpoint answered (last: {last})"
    )))
}

fn is_connection_error(status: &tonic::Status) -> bool {
    // A node that cannot reach a quorum answers Unavailable with its reason; keep that reason if no
    // other endpoint does better.
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    ) && !status.message().starts_with("no quorum")
        || status.code() == tonic::Code::DeadlineExceeded
}
