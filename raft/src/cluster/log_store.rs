//! The Raft log, the vote and the committed index in sled, made durable before openraft hears that a
//! write is done.
//!
//! Layout: tree `log` maps the big-endian index (so that key order is index order) to the encoded
//! entry; tree `meta` holds `vote`, `committed` and `last_purged`. Every value is encoded by
//! [`crate::cluster::codec`].

use crate::cluster::codec;
use crate::cluster::types::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use std::fmt::Debug;
use std::fs::File;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The log store. Cloning shares it (openraft takes one handle to write and more to read).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// sled's data file, for `fdatasync` after each flush.
    data_file: File,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// Opens the log in `db`, whose files are in `dir`.
    pub fn open(db: &sled::Db, dir: &Path) -> std::io::Result<LogStore> {
        let log = db.open_tree("log").map_err(std::io::Error::other)?;
        let meta = db.open_tree("meta").map_err(std::io::Error::other)?;
        let data_file = File::open(dir.join("db"))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                db: db.clone(),
                log,
                meta,
                data_file,
            }),
        })
    }

    /// Makes every write so far durable: sled's flush, then `fdatasync` of its data file. Both in
    /// one blocking call: one thread hop per append instead of two (sled's own flush
    /// thread, then a blocking-pool thread), which is on the commit path of every write.
    pub async fn sync(&self) -> std::io::Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.db.flush().map_err(std::io::Error::other)?;
            inner.data_file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.inner.meta.get(key).map_err(read_err)? {
            Some(bytes) => Ok(Some(codec::decode_stored(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = codec::encode(value).map_err(write_err)?;
        self.inner.meta.insert(key, bytes).map_err(write_err)?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>> {
        match self.inner.log.last().map_err(read_err)? {
            Some((_, bytes)) => {
                let entry: Entry<TypeConfig> =
                    crate::cluster::types::decode_entry(&bytes).map_err(read_err)?;
                Ok(Some(*entry.get_log_id()))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.inner.log.range(index_key(start)..) {
            let (key, bytes) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| read_err(std::fmt::Error))?,
            );
            if !range.contains(&index) {
                break;
            }
            let entry: Entry<TypeConfig> =
                crate::cluster::types::decode_entry(&bytes).map_err(read_err)?;
            debug_assert_eq!(entry.get_log_id().index, index);
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta("last_purged")?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        self.put_meta("vote", vote)?;
        self.sync()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        // Not flushed on its own: a committed index lost in a crash is learnt again from the leader.
        self.put_meta("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(write_err)?;
            batch.insert(&index_key(entry.get_log_id().index), bytes);
        }
        self.inner.log.apply_batch(batch).map_err(write_err)?;
        // The entries are readable now; they are acknowledged only once durable.
        let result = self.sync().await;
        let failed = result
            .as_ref()
            .err()
            .map(|e| write_err(std::io::Error::new(e.kind(), e.to_string())));
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for item in self.inner.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(write_err)?;
            batch.remove(key);
        }
        self.inner.log.apply_batch(batch).map_err(write_err)?;
        self.sync().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        // Record the purge point first, so that an empty log still knows its last id.
        self.put_meta("last_purged", &log_id)?;
        let mut batch = sled::Batch::default();
        for item in self.inner.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(write_err)?;
            batch.remove(key);
        }
        self.inner.log.apply_batch(batch).map_err(write_err)?;
        self.sync().await.map_err(write_err)?;
        Ok(())
    }
}
