//! openraft's network over gRPC, server side: decodes a peer's message, hands it to the local Raft,
//! and sends the whole result back, errors included.

use crate::network::RAFT_MESSAGE_BYTES_MAX;
use cuttle_proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use cuttle_proto::v1::RaftPayload;
use cuttle_raft::cluster::codec;
use cuttle_raft::cluster::{NodeId, TypeConfig};
use openraft::Raft;
use tonic::{Request, Response, Status};

/// The server side of the node-to-node wire.
pub struct RaftServer {
    id: NodeId,
    raft: Raft<TypeConfig>,
}

impl RaftServer {
    /// A service for `raft`, which runs as node `id`.
    pub fn service(id: NodeId, raft: Raft<TypeConfig>) -> RaftServiceServer<RaftServer> {
        RaftServiceServer::new(RaftServer { id, raft })
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
    }

    fn open<T: serde::de::DeserializeOwned>(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<T, Status> {
        let message = request.into_inner();
        if message.to_node != self.id {
            return Err(Status::failed_precondition(format!(
                "node {} sent a message for node {} to node {}: check the member addresses",
                message.from_node, message.to_node, self.id
            )));
        }
        codec::decode(&message.payload).map_err(|e| Status::invalid_argument(e.to_string()))
    }

    fn seal<T: serde::Serialize>(&self, result: &T) -> Result<Response<RaftPayload>, Status> {
        let payload = codec::encode(result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftPayload {
            from_node: self.id,
            to_node: 0,
            payload,
        }))
    }
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.open(request)?;
        let result = self.raft.append_entries(rpc).await;
        self.seal(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.open(request)?;
        let result = self.raft.vote(rpc).await;
        self.seal(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.open(request)?;
        let result = self.raft.install_snapshot(rpc).await;
        self.seal(&result)
    }
}
