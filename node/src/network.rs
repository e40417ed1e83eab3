//! openraft's network over gRPC, client side: one lazily connected channel per peer. A dead peer is
//! reported as `Unreachable`, so openraft backs off instead of retrying at once.

use cuttle_proto::v1::raft_service_client::RaftServiceClient;
use cuttle_proto::v1::RaftPayload;
use cuttle_raft::cluster::codec;
use cuttle_raft::cluster::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Largest gRPC message between nodes (a batch of entries, a snapshot chunk).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Makes one [`Peer`] per target node.
#[derive(Clone)]
pub struct Network {
    /// This node's id, sent with every message.
    pub self_id: NodeId,
}

/// The connection to one peer.
pub struct Peer {
    self_id: NodeId,
    target: NodeId,
    client: Option<RaftServiceClient<Channel>>,
    addr: String,
}

/// A lazily connecting channel to `addr` (`HOST:PORT`), or `None` when the address is malformed.
pub fn lazy_channel(addr: &str) -> Option<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).ok()?;
    Some(
        endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .connect_lazy(),
    )
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let client = lazy_channel(&node.addr).map(|channel| {
            RaftServiceClient::new(channel)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        });
        Peer {
            self_id: self.self_id,
            target,
            client,
            addr: node.addr.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WireError(String);

impl Peer {
    /// Sends one message and decodes the remote result.
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Kind,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let network = |message: String| RPCError::Network(NetworkError::new(&WireError(message)));
        let Some(client) = self.client.as_mut() else {
            return Err(network(format!(
                "node {} has a malformed address {:?}",
                self.target, self.addr
            )));
        };
        let payload = codec::encode(request).map_err(|e| network(e.to_string()))?;
        let mut message = tonic::Request::new(RaftPayload {
            from_node: self.self_id,
            to_node: self.target,
            payload,
        });
        message.set_timeout(option.hard_ttl());
        let reply = match kind {
            Kind::Append => client.append_entries(message).await,
            Kind::Vote => client.vote(message).await,
            Kind::Snapshot => client.install_snapshot(message).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                RPCError::Unreachable(Unreachable::new(&WireError(status.message().to_string())))
            }
            _ => network(format!("{}: {}", status.code(), status.message())),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&reply.into_inner().payload).map_err(|e| network(e.to_string()))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Kind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}
