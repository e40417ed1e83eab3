//! A client of the cluster API that fails over between endpoints: it tries each endpoint in turn,
//! and the node that answers forwards the request to the leader.

use cuttle_proto::v1::cluster_client::ClusterClient;
use cuttle_proto::v1::*;
use cuttle_raft::cluster::codec;
use cuttle_raft::sched::{Command, Event, Rejection};
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
}

impl Client {
    /// A client for `endpoints` (`HOST:PORT` each); connects lazily.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let endpoints = endpoints
            .iter()
            .map(|addr| {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|_| ClientError::BadEndpoint(addr.clone()))?
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(timeout)
                    .tcp_nodelay(true);
                let client = ClusterClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20);
                Ok((addr.clone(), client))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Client { endpoints })
    }

    /// Calls `call` on each endpoint in turn until one answers; an answer that is an error of the
    /// cluster (not of the connection) is returned at once.
    async fn each<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(ClusterClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = String::new();
        for (addr, client) in &self.endpoints {
            match call(client.clone()).await {
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

    /// Applies a command; returns its result and the log index that carried it.
    pub async fn write(
        &self,
        command: &Command,
    ) -> Result<(Result<Vec<Event>, Rejection>, u64), ClientError> {
        let bytes = codec::encode(command).map_err(|e| ClientError::Decode(e.to_string()))?;
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

fn is_connection_error(status: &tonic::Status) -> bool {
    // A node that cannot reach a quorum answers Unavailable with its reason; keep that reason if no
    // other endpoint does better.
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    ) && !status.message().starts_with("no quorum")
        || status.code() == tonic::Code::DeadlineExceeded
}
