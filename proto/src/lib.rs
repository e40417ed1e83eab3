//! cuttle's wire formats: the `.proto` files under `proto/` and the code generated from them for
//! every wire: node to node (`RaftService`) and client to cluster (`Cluster`). The agent API joins
//! them with the agents.

#![allow(missing_docs)]

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("cuttle.v1");
}
