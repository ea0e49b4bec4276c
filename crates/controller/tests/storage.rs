//! openraft's own storage test suite, against the log store and the state
//! machine on a fresh directory per case; then what a reopen keeps and
//! what it refuses.

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{EntryPayload, StorageError};
use rill_controller::types::{Entry, Vote, log_id};
use rill_controller::{LogStore, StateMachine, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = LogStore::open(dir.path()).await.expect("log opens");
        let sm = StateMachine::open(dir.path(), 0)
            .await
            .expect("state machine opens");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).await.expect("the suite passes");
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Blank,
    }
}

#[tokio::test]
async fn the_log_store_keeps_vote_entries_purge_and_commit_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    let vote = Vote::new_committed(3, 1);
    log.save_vote(&vote).await.unwrap();
    log.blocking_append((1..=6).map(blank)).await.unwrap();
    log.purge(log_id(1, 4)).await.unwrap();
    log.blocking_append((7..=10).map(blank)).await.unwrap();
    log.save_committed(Some(log_id(1, 8))).await.unwrap();
    log.truncate_after(Some(log_id(1, 9))).await.unwrap();
    drop(log);

    let mut log = LogStore::open(dir.path()).await.unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
    assert_eq!(state.last_log_id, Some(log_id(1, 9)));
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, [5, 6, 7, 8, 9]);
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 8)));
}

#[tokio::test]
async fn a_commit_point_past_the_log_or_unreadable_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    log.blocking_append((1..=3).map(blank)).await.unwrap();
    log.save_committed(Some(log_id(1, 7))).await.unwrap();
    drop(log);
    let mut log = LogStore::open(dir.path()).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), None);
    drop(log);
    std::fs::write(dir.path().join("committed"), b"\0\0\0").unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), None);
}

#[tokio::test]
async fn a_damaged_vote_or_snapshot_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path()).await.unwrap();
    log.save_vote(&Vote::new(2, 1)).await.unwrap();
    drop(log);
    let path = dir.path().join("vote");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let error = LogStore::open(dir.path()).await.err().expect("refused");
    assert!(error.to_string().contains("vote is damaged"), "{error}");

    let snapshot = dir
        .path()
        .join("snapshots/00000000000000000005-00000000000000000001.snapshot");
    std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
    std::fs::write(&snapshot, b"not a snapshot").unwrap();
    let error = StateMachine::open(dir.path(), 0)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("is damaged"), "{error}");
}
