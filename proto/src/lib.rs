//! cuttle's wire formats: the `.proto` files under `proto/` and the code generated from them for
//! every wire: node to node (`RaftService`) and client to cluster (`Cluster`). The agent API joins
//! them with the agents. [`etcd`] holds clients for the few calls of etcd's v3 API that the lock
//! benchmark (`cuttle bench locks`) makes against an etcd cluster.

#![allow(missing_docs)]

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("cuttle.v1");
}

/// A wire-compatible subset of etcd 3.4's v3 API (`proto/etcd/`), client side only: leases, `Put`
/// and the lock service, with etcd's own package names so that the gRPC paths match etcd's.
pub mod etcd {
    /// etcd's `etcdserverpb` package: `KV.Put` and the `Lease` service.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// etcd's `v3lockpb` package: the `Lock` service (`Lock`, `Unlock`).
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
}

#[cfg(test)]
mod tests {
    use super::etcd::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveResponse, ResponseHeader};
    use super::etcd::v3lockpb::{LockRequest, LockResponse};
    use prost::Message as _;

    /// The bytes etcd's own encoding gives (field number << 3 | wire type, then the value), so a
    /// wrong field number in `proto/etcd/` fails here rather than against a live etcd.
    #[test]
    fn etcd_messages_use_etcds_field_numbers() {
        let grant = LeaseGrantRequest { ttl: 10, id: 7 };
        assert_eq!(grant.encode_to_vec(), [0x08, 10, 0x10, 7]);
        let lock = LockRequest {
            name: b"a".to_vec(),
            lease: 5,
        };
        assert_eq!(lock.encode_to_vec(), [0x0a, 1, b'a', 0x10, 5]);
        // LockResponse { header { cluster_id 1, member_id 2, revision 3, raft_term 4 }, key "k" }.
        let reply =
            LockResponse::decode(&[0x0a, 8, 0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4, 0x12, 1, b'k'][..])
                .unwrap();
        let header = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        };
        assert_eq!(reply.header, Some(header));
        assert_eq!(reply.key, b"k");
        let alive = LeaseKeepAliveResponse::decode(&[0x10, 9, 0x18, 30][..]).unwrap();
        assert_eq!((alive.id, alive.ttl), (9, 30));
    }
}
