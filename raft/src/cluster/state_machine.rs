//! The state machine openraft applies the log to: the scheduling core, the last applied log id and
//! membership, and the snapshots, kept in sled so that a restarted node starts from its last
//! snapshot and replays only the log after it.

use crate::cluster::codec;
use crate::cluster::log_store::LogStore;
use crate::cluster::types::{BatchResult, NodeId, TypeConfig};
use crate::ledger::Replicated;
use crate::sched::{Event, Scheduler};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, watch};

/// Applied entries a subscriber may fall behind by before it must resynchronise from the state.
pub const APPLIED_FEED_ENTRIES_MAX: usize = 4_096;

/// What one applied log entry decided, for the node's observers (the leader's dispatcher, lock
/// waiters). Observers that fall behind, or see `resync`, read the state afresh.
#[derive(Clone, Debug)]
pub struct AppliedEntry {
    /// The entry's log index.
    pub index: u64,
    /// The events of its commands, in order (rejected commands have none).
    pub events: Vec<Event>,
    /// The state was replaced by a snapshot: everything may have changed.
    pub resync: bool,
}

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// What the state machine holds, shared with the node's readers.
#[derive(Debug)]
pub struct Applied {
    /// The scheduling core and the ledger.
    pub replicated: Replicated,
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

impl Applied {
    /// The scheduling core.
    pub fn scheduler(&self) -> &Scheduler {
        &self.replicated.scheduler
    }
}

/// The state machine. Cloning shares it.
#[derive(Clone)]
pub struct StateMachine {
    applied: Arc<RwLock<Applied>>,
    feed: broadcast::Sender<Arc<AppliedEntry>>,
    applied_index: watch::Sender<u64>,
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
                let stored: StoredSnapshot = codec::decode_stored(&bytes)?;
                Applied {
                    replicated: Replicated::restore(&stored.data)?,
                    last_applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership,
                }
            }
            None => Applied {
                replicated: Replicated::default(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(StateMachine {
            applied: Arc::new(RwLock::new(applied)),
            feed: broadcast::channel(APPLIED_FEED_ENTRIES_MAX).0,
            applied_index: watch::channel(index).0,
            snapshots,
            store,
        })
    }

    /// The applied state, for reads. Hold the guard briefly: the state machine waits for it.
    pub fn applied(&self) -> &Arc<RwLock<Applied>> {
        &self.applied
    }

    /// The decisions of every entry applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEntry>> {
        self.feed.subscribe()
    }

    /// The index of the last entry applied, updated after each apply.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    fn publish(&self, entry: AppliedEntry) {
        let index = entry.index;
        if self.feed.receiver_count() > 0 {
            let _ = self.feed.send(Arc::new(entry));
        }
        self.applied_index.send_replace(index);
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>> {
        match self.snapshots.get("current").map_err(sm_read)? {
            Some(bytes) => Ok(Some(codec::decode_stored(&bytes).map_err(sm_read)?)),
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
            let data = applied.replicated.snapshot().map_err(snap_write)?;
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
        let mut replies = Vec::new();
        let mut events = Vec::new();
        let observed = self.feed.receiver_count() > 0;
        for entry in entries {
            let mut reply = BatchResult::default();
            let mut entry_events = Vec::new();
            {
                let mut applied = self.applied.write().expect("state machine lock");
                applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) => {
                        reply.results.reserve(batch.commands.len());
                        for request in batch.commands {
                            let result =
                                applied.replicated.apply(batch.now_ms, request, &mut events);
                            if observed {
                                entry_events.extend(events.iter().cloned());
                            }
                            reply
                                .results
                                .push(result.map(|()| std::mem::take(&mut events)));
                        }
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    }
                }
            }
            self.publish(AppliedEntry {
                index: entry.log_id.index,
                events: entry_events,
                resync: false,
            });
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
        let replicated = Replicated::restore(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored).await?;
        {
            let mut applied = self.applied.write().expect("state machine lock");
            applied.replicated = replicated;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        self.publish(AppliedEntry {
            index: meta.last_log_id.map(|l| l.index).unwrap_or(0),
            events: Vec::new(),
            resync: true,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.stored_snapshot()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
