//! openraft's state machine: committed entries applied to a
//! [`ClusterState`], each proposer answered with what its batch did, and
//! every applied state published on a `watch` for whoever follows the
//! metadata (the broker's reconciler, request handlers). Snapshots are kept
//! by `snapshot_store.rs`; at start the newest one is loaded and openraft
//! applies the committed entries after it again.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rill_metadata::{ClusterState, snapshot};
use tokio::sync::watch;

use crate::codec::invalid;
use crate::snapshot_store::{self, SnapshotStore};
use crate::types::{
    Applied, Entry, LogId, RecordBatch, SnapshotMeta, StoredMembership, TypeConfig,
};

pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// An applied state: what followers of the metadata see.
#[derive(Debug, Clone)]
pub struct Published {
    /// The last entry applied; `None` before any.
    pub applied: Option<LogId>,
    pub image: Arc<ClusterState>,
}

struct Inner {
    applied: Option<LogId>,
    membership: StoredMembership,
    /// Shared with the published image: a batch is applied to a copy.
    state: Arc<ClusterState>,
    published: watch::Sender<Published>,
}

/// The state machine. Clones share it; its lock is never held across an
/// `await` or file IO.
#[derive(Clone)]
pub struct StateMachine {
    node_id: i32,
    inner: Arc<Mutex<Inner>>,
    snapshots: SnapshotStore,
}

impl StateMachine {
    /// Opens the snapshots of the raft directory `dir` (`snapshots/`) and
    /// starts from the newest. `node_id` is this node's broker id, which
    /// [`ClusterState::new`] needs.
    pub async fn open(dir: &Path, node_id: i32) -> io::Result<StateMachine> {
        let dir = dir.join("snapshots");
        let (snapshots, loaded) = tokio::task::spawn_blocking(move || SnapshotStore::open(&dir))
            .await
            .map_err(io::Error::other)??;
        let (applied, membership, state) = match loaded {
            Some((meta, records)) => (
                meta.last_log_id,
                meta.last_membership,
                snapshot::restore(node_id, &records).map_err(invalid)?,
            ),
            None => (
                None,
                StoredMembership::default(),
                ClusterState::new(node_id),
            ),
        };
        let state = Arc::new(state);
        let (published, _) = watch::channel(Published {
            applied,
            image: state.clone(),
        });
        Ok(StateMachine {
            node_id,
            inner: Arc::new(Mutex::new(Inner {
                applied,
                membership,
                state,
                published,
            })),
            snapshots,
        })
    }

    /// The applied state now and from now on.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.lock().published.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change to `Inner` is made on a copy and swapped in whole, so
        // a panic elsewhere cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one entry and says what it did.
    fn apply_entry(&self, entry: &Entry) -> Applied {
        let mut inner = self.lock();
        let mut refused = None;
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(RecordBatch(records)) => {
                // All or nothing: a batch that does not apply leaves the
                // state as it was, on every node alike.
                let mut next = ClusterState::clone(&inner.state);
                let index = entry.log_id.index;
                match records.iter().try_for_each(|r| next.apply_at(index, r)) {
                    Ok(()) => inner.state = Arc::new(next),
                    Err(e) => refused = Some(e.to_string()),
                }
            }
            EntryPayload::Membership(m) => {
                inner.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
        }
        inner.applied = Some(entry.log_id);
        publish(&inner);
        Applied {
            index: entry.log_id.index,
            refused,
        }
    }
}

fn publish(inner: &Inner) {
    inner.published.send_replace(Published {
        applied: inner.applied,
        image: inner.state.clone(),
    });
}

async fn blocking<T: Send + 'static>(
    io: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    // Snapshots are written with fsync and may be many MBs: never on an
    // async worker.
    tokio::task::spawn_blocking(io)
        .await
        .map_err(io::Error::other)?
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, state) = {
            let inner = self.lock();
            let meta = SnapshotMeta {
                last_log_id: inner.applied,
                last_membership: inner.membership.clone(),
            };
            (meta, inner.state.clone())
        };
        let snapshots = self.snapshots.clone();
        let saved = meta.clone();
        let bytes = blocking(move || {
            let bytes = snapshot_store::encode(&saved, &snapshot::records(&state))?;
            snapshots.save(&saved, &bytes)?;
            Ok(bytes)
        })
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.lock();
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let applied = self.apply_entry(&entry);
            if let Some(responder) = responder {
                responder.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        bytes: Vec<u8>,
    ) -> Result<(), io::Error> {
        let node_id = self.node_id;
        let snapshots = self.snapshots.clone();
        let saved = meta.clone();
        // Decoded and applied before anything changes: a snapshot that does
        // not rebuild a state is refused whole.
        let state = blocking(move || {
            let (_, records) = snapshot_store::decode(&bytes)?;
            let state = snapshot::restore(node_id, &records).map_err(invalid)?;
            snapshots.save(&saved, &snapshot_store::encode(&saved, &records)?)?;
            Ok(state)
        })
        .await?;
        let mut inner = self.lock();
        inner.state = Arc::new(state);
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        publish(&inner);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let snapshots = self.snapshots.clone();
        let current = blocking(move || snapshots.read_current()).await?;
        Ok(current.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
