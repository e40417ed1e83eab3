//! The state machine openraft applies the log to: the scheduling core, the last applied log id and
//! membership, and the snapshots, kept in sled so that a restarted node starts from its last
//! snapshot and replays only the log after it.

use crate::cluster::codec;
use crate::cluster::log_store::LogStore;
use crate::cluster::types::{BatchResult, NodeId, TypeConfig};
use crate::sched::{Input, Scheduler};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, RwLock};

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// What the state machine holds, shared with the node's readers.
#[derive(Debug)]
pub struct Applied {
    /// The scheduling core.
    pub scheduler: Scheduler,
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, BasicNode>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The state machine. Cloning shares it.
#[derive(Clone)]
pub struct StateMachine {
    applied: Arc<RwLock<Applied>>,
    snapshots: sled::Tree,
    store: LogStore,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn snap_write(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachine {
    /// Opens the state machine: the last snapshot in `db` if there is one, else an empty state.
    /// `store` is used to make snapshot writes durable.
    pub fn open(
        db: &sled::Db,
        store: LogStore,
    ) -> std::result::Result<StateMachine, Box<dyn std::error::Error + Send + Sync>> {
        let snapshots = db.open_tree("snapshot")?;
        let applied = match snapshots.get("current")? {
            Some(bytes) => {
                let stored: StoredSnapshot = codec::decode(&bytes)?;
                Applied {
                    scheduler: Scheduler::restore(&stored.data)?,
                    last_applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership,
                }
            }
            None => Applied {
                scheduler: Scheduler::default(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        Ok(StateMachine {
            applied: Arc::new(RwLock::new(applied)),
            snapshots,
            store,
        })
    }

    /// The applied state, for reads. Hold the guard briefly: the state machine waits for it.
    pub fn applied(&self) -> &Arc<RwLock<Applied>> {
        &self.applied
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>> {
        match self.snapshots.get("current").map_err(sm_read)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(sm_read)?)),
            None => Ok(None),
        }
    }

    async fn save_snapshot(&self, stored: &StoredSnapshot) -> Result<()> {
        let bytes = codec::encode(stored).map_err(snap_write)?;
        self.snapshots
            .insert("current", bytes)
            .map_err(snap_write)?;
        self.store.sync().await.map_err(snap_write)?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (data, meta) = {
            let applied = self.applied.read().expect("state machine lock");
            let data = applied.scheduler.snapshot().map_err(snap_write)?;
            let id = match applied.last_applied {
                Some(log_id) => {
                    format!("{}-{}-{}", log_id.leader_id.term, log_id.index, data.len())
                }
                None => format!("empty-{}", data.len()),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id: id,
            };
            (data, meta)
        };
        let stored = StoredSnapshot { meta, data };
        self.save_snapshot(&stored).await?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let applied = self.applied.read().expect("state machine lock");
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut applied = self.applied.write().expect("state machine lock");
        let mut replies = Vec::new();
        let mut events = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let mut reply = BatchResult::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    reply.results.reserve(batch.commands.len());
                    for command in batch.commands {
                        let input = Input {
                            now_ms: batch.now_ms,
                            command,
                        };
                        let result = applied.scheduler.apply(input, &mut events);
                        reply
                            .results
                            .push(result.map(|()| std::mem::take(&mut events)));
                    }
                }
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let scheduler = Scheduler::restore(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored).await?;
        let mut applied = self.applied.write().expect("state machine lock");
        applied.scheduler = scheduler;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.stored_snapshot()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
