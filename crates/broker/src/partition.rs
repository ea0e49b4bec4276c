//! One partition as the hot paths use it: appends that commit (on one
//! node the high watermark follows the log end, or the sync round under
//! `flush.messages`) and the watch channel that wakes parked fetches.

use std::sync::Arc;

use rill_log::{AppendError, AppendInfo, Batches, Log, OfflineDir, Offset};
use tokio::sync::watch;

/// One partition served by this broker.
pub struct Partition {
    pub index: i32,
    pub log: Arc<Log>,
    /// The high watermark, published after every append so that parked
    /// fetches wake up (the value is the new high watermark).
    pub high_watermark: watch::Sender<i64>,
}

/// The leader epoch stamped into every batch. One node never changes
/// leader, so the epoch stays 0 until replication brings elections.
pub const LEADER_EPOCH: i32 = 0;

impl Partition {
    /// Appends record batches and commits them: on one node the in-sync
    /// replica set is this broker, so the high watermark moves to the log
    /// end at once and parked fetches wake. When the log may fsync
    /// (`TopicHandle::append_may_sync`) callers use `append_synced` instead,
    /// which shares the sync with concurrent appends.
    pub fn append<'a>(
        &self,
        batches: impl Into<Batches<'a>>,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let info = self.log.append(batches, LEADER_EPOCH, now_ms)?;
        self.log.set_high_watermark(self.log.log_end_offset());
        self.publish_high_watermark();
        Ok(info)
    }

    /// Appends as [`Partition::append`] for a log whose flush policy may ask
    /// for a sync (`flush.messages`): returns once the batches are durable,
    /// awaiting the data directory's group-commit round without holding a
    /// thread. The high watermark moves only then (an append whose flush is
    /// not due returns at once, and may move it past an earlier append still
    /// waiting: as in Kafka, the high watermark is not tied to fsync).
    pub async fn append_synced(
        self: &Arc<Self>,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.append_then_sync(batches, now_ms)?.wait().await
    }

    /// The first half of [`Partition::append_synced`], for a caller that
    /// holds a lock while it appends (the group coordinator): writes the
    /// batches and queues their sync, and returns at once; the caller awaits
    /// [`Durable::wait`] after letting go of its lock, so others need not
    /// wait out the sync round behind it.
    pub fn append_then_sync(
        self: &Arc<Self>,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<Durable, AppendError> {
        let (durable, wait) = tokio::sync::oneshot::channel();
        let done = Box::new(move |result| {
            let _ = durable.send(result);
        });
        let info = self
            .log
            .append_with_sync(batches, LEADER_EPOCH, now_ms, done)?;
        Ok(Durable {
            partition: self.clone(),
            wait,
            info,
        })
    }

    async fn await_durable(
        &self,
        wait: tokio::sync::oneshot::Receiver<Result<(), OfflineDir>>,
    ) -> Result<(), AppendError> {
        match wait.await {
            Ok(result) => result.map_err(AppendError::Offline),
            Err(_) => Err(self.syncer_gone()),
        }
    }

    /// The syncer dropped a request without an answer (it cannot, short of
    /// a panic): the append is not known durable, so it fails.
    fn syncer_gone(&self) -> AppendError {
        AppendError::Offline(OfflineDir {
            dir: self.log.dir().to_path_buf(),
            reason: "the syncer ended without syncing".into(),
        })
    }

    /// Publishes the log's high watermark to waiting fetches.
    pub fn publish_high_watermark(&self) {
        let high_watermark = self.log.high_watermark().0;
        self.high_watermark.send_replace(high_watermark);
    }
}

/// An append written and waiting for its sync round
/// ([`Partition::append_then_sync`]).
pub struct Durable {
    partition: Arc<Partition>,
    wait: tokio::sync::oneshot::Receiver<Result<(), OfflineDir>>,
    info: AppendInfo,
}

impl Durable {
    /// Returns once the append is durable (or its sync failed), then lets
    /// fetches see it.
    pub async fn wait(self) -> Result<AppendInfo, AppendError> {
        self.partition.await_durable(self.wait).await?;
        let end = Offset(self.info.last_offset.0 + 1);
        self.partition.log.raise_high_watermark(end);
        self.partition.publish_high_watermark();
        Ok(self.info)
    }
}
