//! Gathers the writes that arrive while earlier ones are in flight into one log entry.
//!
//! openraft 0.9's leader appends (and flushes) one entry per `client_write`, so one command per entry
//! would cost one fsync per command. The proposer keeps at most [`WRITES_IN_FLIGHT_MAX`] entries in
//! flight and packs everything that queued meanwhile, up to [`BATCH_COMMANDS_MAX`] commands, into
//! the next one: throughput grows with the number of clients.
//!
//! Order: commands reach the log in the order they were queued, within an entry and across the
//! entries in flight (each entry is handed to openraft before the next is built). So a caller may
//! queue several commands without waiting for the first to commit ([`Proposer::submit`]) and know
//! that the log holds them in that order: an agent's `UnitStarted`, its output and its
//! `UnitFinished` ride the same Raft round instead of three in a row.

use cuttle_raft::cluster::types::BATCH_COMMANDS_MAX;
use cuttle_raft::cluster::{Batch, NodeId, TypeConfig};
use cuttle_raft::ledger::Request;
use cuttle_raft::sched::{Event, Rejection};
use openraft::error::ClientWriteError;
use openraft::Raft;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Entries proposed and not yet applied at once.
pub const WRITES_IN_FLIGHT_MAX: usize = 4;
/// Commands waiting for a batch; a write beyond it waits for room.
pub const QUEUED_COMMANDS_MAX: usize = 16_384;

/// A command's outcome once applied: its result and the index of its log entry.
pub type Applied = (Result<Vec<Event>, Rejection>, u64);

/// Why a proposal did not apply here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// This node is not (or no longer) the leader.
    #[error("not the leader; the leader is {0:?}")]
    NotLeader(Option<NodeId>),
    /// The proposer stopped (the node is shutting down).
    #[error("the node is shutting down")]
    Stopped,
    /// openraft failed.
    #[error("raft failed: {0}")]
    Raft(String),
}

type Reply = oneshot::Sender<Result<Applied, ProposeError>>;

/// The handle to the proposer task.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(Request, Reply)>,
}

impl Proposer {
    /// Starts the proposer for `raft`; `clock_ms` gives the leader's time for each batch.
    pub fn start(raft: Raft<TypeConfig>, clock_ms: fn() -> u64) -> Proposer {
        let (queue, commands) = mpsc::channel(QUEUED_COMMANDS_MAX);
        tokio::spawn(run(raft, commands, clock_ms));
        Proposer { queue }
    }

    /// Proposes one request and waits until it is applied.
    pub async fn propose(&self, request: impl Into<Request>) -> Result<Applied, ProposeError> {
        self.submit(request).await?.await
    }

    /// Queues one request and returns as soon as it holds its place in the log order, with the
    /// future of its outcome. Requests submitted one after the other by one caller reach the log
    /// in that order, whether or not the caller awaited the earlier outcomes.
    pub async fn submit(&self, request: impl Into<Request>) -> Result<Pending, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request.into(), reply))
            .await
            .map_err(|_| ProposeError::Stopped)?;
        Ok(Pending { answer })
    }
}

/// The outcome of a submitted request, once applied (or refused).
pub struct Pending {
    answer: oneshot::Receiver<Result<Applied, ProposeError>>,
}

impl std::future::Future for Pending {
    type Output = Result<Applied, ProposeError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| answer.map_err(|_| ProposeError::Stopped)?)
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    mut commands: mpsc::Receiver<(Request, Reply)>,
    clock_ms: fn() -> u64,
) {
    let in_flight = Arc::new(Semaphore::new(WRITES_IN_FLIGHT_MAX));
    while let Some(first) = commands.recv().await {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        // Everything that queued while we waited for a permit rides in this entry.
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX {
            match commands.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<Request>, Vec<Reply>) = batch.into_iter().unzip();
        // Handed to RaftCore here, in queue order; only the wait for the outcome runs apart.
        let sent = raft
            .client_write_ff(Batch {
                now_ms: clock_ms(),
                commands,
            })
            .await;
        let outcome = match sent {
            Ok(outcome) => outcome,
            Err(fatal) => {
                let error = ProposeError::Raft(fatal.to_string());
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                continue;
            }
        };
        tokio::spawn(async move {
            let result = outcome.await;
            drop(permit);
            match result {
                Ok(Ok(response)) => {
                    let index = response.log_id.index;
                    assert_eq!(
                        response.data.results.len(),
                        replies.len(),
                        "one result per command"
                    );
                    for (reply, result) in replies.into_iter().zip(response.data.results) {
                        let _ = reply.send(Ok((result, index)));
                    }
                }
                Ok(Err(error)) => {
                    let error = match error {
                        ClientWriteError::ForwardToLeader(f) => {
                            ProposeError::NotLeader(f.leader_id)
                        }
                        other => ProposeError::Raft(other.to_string()),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
                Err(_) => {
                    // RaftCore dropped the responder: it is shutting down.
                    for reply in replies {
                        let _ = reply.send(Err(ProposeError::Stopped));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::network::Network;
    use cuttle_raft::cluster::{LogStore, StateMachine};
    use cuttle_raft::sched::{Command, SettingsPatch};
    use openraft::BasicNode;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// A one-node cluster on a temporary directory: the real log store, state machine and openraft.
    async fn one_node(dir: &std::path::Path) -> Raft<TypeConfig> {
        let sled_dir = dir.join("state");
        let db = sled::Config::new().path(&sled_dir).open().unwrap();
        let store = LogStore::open(&db, &sled_dir).unwrap();
        let state_machine = StateMachine::open(&db, store.clone()).unwrap();
        let config = NodeConfig::default();
        let raft = Raft::new(
            1,
            Arc::new(config.raft_config().unwrap()),
            Network { self_id: 1 },
            store,
            state_machine,
        )
        .await
        .unwrap();
        let members = BTreeMap::from([(
            1,
            BasicNode {
                addr: "127.0.0.1:1".into(),
            },
        )]);
        raft.initialize(members).await.unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .current_leader(1, "the only node leads")
            .await
            .unwrap();
        raft
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_submitted_without_waiting_reach_the_log_in_submission_order() {
        let dir = tempfile::tempdir().unwrap();
        let raft = one_node(dir.path()).await;
        let proposer = Proposer::start(raft.clone(), || 1_000);
        // More commands than one entry holds, none awaited before the next is submitted: they
        // spread over several entries, several in flight at once.
        let count = 3 * BATCH_COMMANDS_MAX as u32;
        let mut pending = Vec::new();
        for cap in 1..=count {
            let patch = SettingsPatch {
                task_cap: Some(cap),
                ..SettingsPatch::default()
            };
            pending.push(proposer.submit(Command::SetSettings(patch)).await.unwrap());
        }
        let mut indexes = Vec::new();
        for outcome in pending {
            let (result, index) = outcome.await.unwrap();
            assert!(result.is_ok(), "{result:?}");
            indexes.push(index);
        }
        assert!(
            indexes.windows(2).all(|pair| pair[0] <= pair[1]),
            "log indexes out of submission order: {:?}",
            indexes.windows(2).find(|pair| pair[0] > pair[1])
        );
        let mut entries = indexes.clone();
        entries.dedup();
        assert!(
            entries.len() >= 3,
            "one entry holds at most BATCH_COMMANDS_MAX commands"
        );
        raft.shutdown().await.unwrap();
    }
}
