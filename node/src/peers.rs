//! Who answers: every node pings the other members every [`PROBE_INTERVAL_MS`] and remembers when
//! each last answered. This is what `cluster status` calls health, and what the no-quorum error
//! counts.

use crate::network::lazy_channel;
use cuttle_proto::v1::cluster_client::ClusterClient;
use cuttle_proto::v1::PingRequest;
use cuttle_raft::cluster::{NodeId, TypeConfig};
use openraft::Raft;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often members are pinged.
pub const PROBE_INTERVAL_MS: u64 = 300;
/// A member that answered within this long is healthy.
pub const HEALTHY_WITHIN_MS: u64 = 1_500;

/// When each member last answered a ping.
#[derive(Clone, Default)]
pub struct Peers {
    last_answer: Arc<Mutex<BTreeMap<NodeId, Instant>>>,
}

impl Peers {
    /// Whether `id` answered recently.
    pub fn healthy(&self, id: NodeId) -> bool {
        let answers = self.last_answer.lock().expect("peers lock");
        answers
            .get(&id)
            .is_some_and(|t| t.elapsed() < Duration::from_millis(HEALTHY_WITHIN_MS))
    }

    /// Members (this node included) that answered recently, out of all members.
    pub fn reachable(&self, raft: &Raft<TypeConfig>) -> (usize, usize) {
        let metrics = raft.metrics().borrow().clone();
        let members: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let reachable = members
            .iter()
            .filter(|id| **id == metrics.id || self.healthy(**id))
            .count();
        (reachable, members.len())
    }

    /// Pings every other member forever.
    pub async fn probe(self, raft: Raft<TypeConfig>) {
        let mut clients: BTreeMap<NodeId, (String, ClusterClient<tonic::transport::Channel>)> =
            BTreeMap::new();
        loop {
            let metrics = raft.metrics().borrow().clone();
            let nodes: Vec<(NodeId, String)> = metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != metrics.id)
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect();
            let mut pings = Vec::new();
            for (id, addr) in nodes {
                let stale = clients.get(&id).is_none_or(|(a, _)| *a != addr);
                if stale {
                    let Some(channel) = lazy_channel(&addr) else {
                        continue;
                    };
                    clients.insert(id, (addr.clone(), ClusterClient::new(channel)));
                }
                let mut client = clients[&id].1.clone();
                let answers = self.last_answer.clone();
                pings.push(tokio::spawn(async move {
                    let mut request = tonic::Request::new(PingRequest {});
                    request.set_timeout(Duration::from_millis(PROBE_INTERVAL_MS));
                    if client.ping(request).await.is_ok() {
                        answers
                            .lock()
                            .expect("peers lock")
                            .insert(id, Instant::now());
                    }
                }));
            }
            for ping in pings {
                let _ = ping.await;
            }
            tokio::time::sleep(Duration::from_millis(PROBE_INTERVAL_MS)).await;
        }
    }
}
