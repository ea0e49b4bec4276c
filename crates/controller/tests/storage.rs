//! openraft's own storage test suite, against the log store and the state
//! machine on a fresh directory per case.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use rill_controller::{LogStore, StateMachine, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = LogStore::open(dir.path()).await.expect("log opens");
        let sm = StateMachine::open(&dir.path().join("snapshots"), 0)
            .await
            .expect("state machine opens");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).await.expect("the suite passes");
}
