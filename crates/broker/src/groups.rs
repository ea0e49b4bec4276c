//! The glue between the group coordinator (`rill_group`, a state machine
//! with no IO) and the broker: one mutex around it, reply channels for the
//! answers it delays (JoinGroup, SyncGroup), the internal topic
//! `__consumer_offsets` its records are kept in, the replay of that topic at
//! startup, and a timer task that advances its clock.
//!
//! Every record the coordinator emits is appended while the mutex is held,
//! so the topic holds them in the order the state machine made them; an
//! append is a short write to the page cache. With `flush.messages` set the
//! append also queues a sync with the directory's group commit, awaited only
//! after the mutex is let go (`Durable::wait`); an offset commit is answered
//! only after its records are durable.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rill_group::error_code::NOT_COORDINATOR;
use rill_group::{
    ClientInfo, CommitPlan, Completion, Coordinator, GroupConfig, GroupRecord, Reply, Token,
};
use rill_log::Offset;
use rill_protocol::messages::{
    JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use rill_records::batch::{BatchIter, Compression};
use rill_records::builder::BatchBuilder;
use rill_records::record::decode_batch;
use tokio::sync::{oneshot, watch};

use crate::clock::now_ms;
use crate::cluster::{Cluster, Durable, Partition, TopicHandle};
use crate::metrics::Metrics;
use crate::server::Shared;

/// The internal topic that holds committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often the coordinator's clock advances: session timeouts and
/// rebalance deadlines are seconds long, so 100 ms is precise enough and
/// costs nothing.
const TICK_MS: u64 = 100;
/// How long to wait before trying again to load `__consumer_offsets` after
/// a failure (a full or offline disk): long enough not to flood the log.
const LOAD_RETRY: Duration = Duration::from_secs(5);
/// Bytes read from `__consumer_offsets` per step of the replay.
const REPLAY_READ_BYTES: u32 = 1024 * 1024;
/// Largest decompressed records section of one stored batch: the limit
/// produce checks every batch against. The coordinator writes uncompressed
/// batches of a few KiB; a batch past this (written before the check
/// existed, or by hand) is skipped rather than inflated.
const REPLAY_BATCH_BYTES_MAX: usize = rill_records::compression::INFLATED_BYTES_MAX;

#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("cannot create {OFFSETS_TOPIC}: {0}")]
    CreateTopic(String),
    #[error("cannot replay {OFFSETS_TOPIC} partition {partition}: {message}")]
    Replay { partition: i32, message: String },
}

enum Waiter {
    /// The request's version, for an error answer at shutdown.
    Join(i16, oneshot::Sender<JoinGroupResponse>),
    Sync(oneshot::Sender<SyncGroupResponse>),
}

struct Inner {
    coordinator: Coordinator,
    waiting: HashMap<Token, Waiter>,
}

/// The coordinator as the handlers use it.
pub struct Groups {
    inner: Mutex<Inner>,
    /// `__consumer_offsets`, once loaded.
    topic: OnceLock<Arc<TopicHandle>>,
}

impl Groups {
    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until [`run`]
    /// has loaded `__consumer_offsets`.
    pub fn new() -> Groups {
        Groups {
            inner: Mutex::new(Inner {
                coordinator: Coordinator::loading(GroupConfig::default(), 0),
                waiting: HashMap::new(),
            }),
            topic: OnceLock::new(),
        }
    }

    /// At shutdown: the clock stops, so JoinGroups and SyncGroups still
    /// waiting for a rebalance would never be answered and their
    /// connections would hold the shutdown. They get NOT_COORDINATOR (the
    /// client looks for the coordinator again, as when Kafka moves a group),
    /// and later requests COORDINATOR_LOAD_IN_PROGRESS.
    fn stop(&self) {
        let mut inner = self.lock();
        inner.coordinator = Coordinator::loading(GroupConfig::default(), 0);
        for (_, waiter) in inner.waiting.drain() {
            match waiter {
                Waiter::Join(version, tx) => {
                    let _ = tx.send(rill_group::join_error(version, NOT_COORDINATOR, ""));
                }
                Waiter::Sync(tx) => {
                    let _ = tx.send(SyncGroupResponse {
                        error_code: NOT_COORDINATOR,
                        ..Default::default()
                    });
                }
            }
        }
    }

    /// Whether `__consumer_offsets` is loaded and group requests are served.
    pub fn is_loaded(&self) -> bool {
        self.lock().coordinator.is_loaded()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the state is still the
        // best there is, so carry on with it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `call` on the coordinator, then answers completed waiters and
    /// appends the records it queued.
    pub fn with<R>(&self, call: impl FnOnce(&mut Coordinator) -> R) -> R {
        let mut inner = self.lock();
        let result = call(&mut inner.coordinator);
        let waits = self.settle(&mut inner);
        drop(inner);
        finish_in_background(waits);
        result
    }

    /// Answers completed waiters and appends the records the coordinator
    /// queued; returns the appends still waiting for their sync round (under
    /// a flush policy), for the caller to finish once it has let go of the
    /// lock.
    fn settle(&self, inner: &mut Inner) -> Vec<Durable> {
        for completion in inner.coordinator.take_completions() {
            let token = completion.token();
            // A waiter is missing when its client went away: nothing to do.
            match (inner.waiting.remove(&token), completion) {
                (Some(Waiter::Join(_, tx)), Completion::Join(_, response)) => {
                    let _ = tx.send(response);
                }
                (Some(Waiter::Sync(tx)), Completion::Sync(_, response)) => {
                    let _ = tx.send(response);
                }
                _ => {}
            }
        }
        let records = inner.coordinator.take_records();
        if records.is_empty() {
            return Vec::new();
        }
        self.append(&records).unwrap_or_else(|error| {
            tracing::error!(%error, "cannot persist group changes");
            Vec::new()
        })
    }

    pub async fn join_group(
        &self,
        version: i16,
        request: JoinGroupRequest,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        let member_id = request.member_id.clone();
        let receiver = {
            let mut inner = self.lock();
            let client = ClientInfo {
                client_id,
                client_host,
            };
            let reply = inner
                .coordinator
                .join_group(version, request, client, now_ms());
            let receiver = match reply {
                Reply::Now(response) => Err(response),
                Reply::Pending(token) => {
                    let (tx, rx) = oneshot::channel();
                    inner.waiting.insert(token, Waiter::Join(version, tx));
                    Ok(rx)
                }
            };
            let waits = self.settle(&mut inner);
            drop(inner);
            finish_in_background(waits);
            receiver
        };
        match receiver {
            Err(response) => response,
            Ok(rx) => rx.await.unwrap_or_else(|_| {
                rill_group::join_error(
                    version,
                    rill_group::error_code::COORDINATOR_NOT_AVAILABLE,
                    &member_id,
                )
            }),
        }
    }

    pub async fn sync_group(&self, version: i16, request: SyncGroupRequest) -> SyncGroupResponse {
        let receiver = {
            let mut inner = self.lock();
            let reply = inner.coordinator.sync_group(version, request, now_ms());
            let receiver = match reply {
                Reply::Now(response) => Err(response),
                Reply::Pending(token) => {
                    let (tx, rx) = oneshot::channel();
                    inner.waiting.insert(token, Waiter::Sync(tx));
                    Ok(rx)
                }
            };
            let waits = self.settle(&mut inner);
            drop(inner);
            finish_in_background(waits);
            receiver
        };
        match receiver {
            Err(response) => response,
            Ok(rx) => rx.await.unwrap_or_else(|_| SyncGroupResponse {
                error_code: rill_group::error_code::COORDINATOR_NOT_AVAILABLE,
                ..Default::default()
            }),
        }
    }

    /// OffsetCommit: answered only after the commit's records are appended.
    pub async fn offset_commit(
        &self,
        version: i16,
        request: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let (plan, commit, others) = {
            let mut inner = self.lock();
            let now = now_ms();
            let plan: CommitPlan = inner.coordinator.offset_commit(version, request, now);
            let commit = match self.append(&plan.records) {
                Ok(waits) => match inner.coordinator.apply(&plan.records, now) {
                    Ok(()) => Some(waits),
                    Err(error) => {
                        tracing::error!(%error, "cannot apply a commit the coordinator built");
                        None
                    }
                },
                Err(error) => {
                    tracing::error!(%error, "cannot persist an offset commit");
                    None
                }
            };
            let others = self.settle(&mut inner);
            (plan, commit, others)
        };
        // The coordinator's lock is free while the commit's sync round runs
        // (under a flush policy), so other groups' requests go on and their
        // commits share the round. The commit is applied already, as
        // Kafka's coordinator applies a write before it is committed; its
        // answer waits for durability.
        finish_in_background(others);
        let Some(waits) = commit else {
            return plan.failed();
        };
        for wait in waits {
            if let Err(error) = wait.wait().await {
                tracing::error!(%error, "an offset commit did not become durable");
                return plan.failed();
            }
        }
        plan.response
    }

    /// Appends records to their partitions of `__consumer_offsets`, one
    /// uncompressed batch per partition. Under a flush policy each append is
    /// written and its sync queued, and the returned waits end once they are
    /// durable: the caller awaits them after letting go of the coordinator's
    /// lock, which is held here.
    fn append(&self, records: &[GroupRecord]) -> Result<Vec<Durable>, String> {
        let now = now_ms();
        let mut by_partition: BTreeMap<i32, Vec<&GroupRecord>> = BTreeMap::new();
        for record in records {
            by_partition
                .entry(record.partition)
                .or_default()
                .push(record);
        }
        // Worked out once per call, not per partition: this runs under the
        // coordinator's lock.
        let topic = self.topic.get();
        let may_sync = topic.is_some_and(|topic| topic.append_may_sync);
        let mut waits = Vec::new();
        for (index, records) in by_partition {
            let appended = topic
                .and_then(|topic| topic.partition(index))
                .ok_or_else(|| format!("{OFFSETS_TOPIC} has no partition {index}"))
                .and_then(|partition| append_batch(partition, &records, now, may_sync));
            match appended {
                Ok(durable) => waits.extend(durable),
                Err(error) => {
                    // The partitions before this one are written: let their
                    // syncs finish, so fetches see them once durable.
                    finish_in_background(waits);
                    return Err(error);
                }
            }
        }
        Ok(waits)
    }
}

/// Appends `records` to one partition of `__consumer_offsets` as one
/// uncompressed batch; under a flush policy, returns its queued sync.
fn append_batch(
    partition: &Arc<Partition>,
    records: &[&GroupRecord],
    now: i64,
    may_sync: bool,
) -> Result<Option<Durable>, String> {
    let mut builder = BatchBuilder::new(Compression::None);
    for record in records {
        builder
            .append(
                now,
                Some(record.key.clone()),
                record.value.clone(),
                Vec::new(),
            )
            .map_err(|error| error.to_string())?;
    }
    let batch = builder.build().map_err(|error| error.to_string())?;
    if may_sync {
        let durable = partition.append_then_sync(&batch, now);
        Ok(Some(durable.map_err(|error| error.to_string())?))
    } else {
        partition
            .append(&batch, now)
            .map_err(|error| error.to_string())?;
        Ok(None)
    }
}

/// Finishes appends whose answers do not wait for them (group membership
/// records: their waiters were answered when the coordinator decided), so
/// their data becomes visible to fetches once durable.
fn finish_in_background(waits: Vec<Durable>) {
    if waits.is_empty() {
        return;
    }
    let finish = async move {
        for wait in waits {
            if let Err(error) = wait.wait().await {
                tracing::error!(%error, "group changes did not become durable");
            }
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(finish);
        }
        // Every caller runs on the broker's runtime; without one the data
        // is still synced by its round, only not yet shown to fetches.
        Err(_) => tracing::warn!("group changes appended outside a runtime"),
    }
}

/// Loads `__consumer_offsets` (creating it on first start), then advances
/// the coordinator's clock until the broker stops. Loading runs while the
/// broker already serves other requests, as in Kafka: group requests are
/// answered COORDINATOR_LOAD_IN_PROGRESS meanwhile and clients retry.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        match load(&shared.cluster, &shared.metrics).await {
            Ok((coordinator, topic)) => {
                tracing::info!(
                    groups = coordinator.group_count(),
                    "group coordinator loaded"
                );
                let _ = shared.groups.topic.set(topic);
                shared.groups.lock().coordinator = coordinator;
                break;
            }
            Err(error) => tracing::error!(%error, "cannot load the group coordinator; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LOAD_RETRY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
    let mut interval = tokio::time::interval(Duration::from_millis(TICK_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => shared.groups.with(|coordinator| coordinator.tick(now_ms())),
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    shared.groups.stop();
}

async fn load(
    cluster: &Cluster,
    metrics: &Metrics,
) -> Result<(Coordinator, Arc<TopicHandle>), GroupsError> {
    let mut config = cluster.config().group_config();
    let topic = match cluster.topic(OFFSETS_TOPIC) {
        Some(topic) => {
            // Groups were placed by the existing partition count.
            let existing = topic.partitions.len() as i32;
            if existing != config.offsets_topic_partitions {
                tracing::warn!(
                    existing,
                    configured = config.offsets_topic_partitions,
                    "{OFFSETS_TOPIC} keeps its partition count"
                );
                config.offsets_topic_partitions = existing;
            }
            topic
        }
        None => {
            // Compacted, so only each group's latest offsets and metadata
            // stay; segments small enough (Kafka's 100 MiB) that the
            // cleaner gets closed segments to work on.
            let configs = BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    cluster.config().offsets_topic_segment_bytes.to_string(),
                ),
            ]);
            let partitions = config.offsets_topic_partitions;
            cluster
                .create_topic(OFFSETS_TOPIC, partitions, -1, configs, false)
                .await
                .map_err(|error| GroupsError::CreateTopic(error.message))?
        }
    };
    // The seed only has to differ between runs so that member ids of this
    // run never repeat those of an earlier one.
    let seed = now_ms() as u64 ^ u64::from(std::process::id()).rotate_left(32);
    let coordinator = Coordinator::loading(config, seed);
    let replaying = topic.clone();
    let (mut coordinator, skipped) =
        tokio::task::spawn_blocking(move || replay(coordinator, &replaying))
            .await
            .map_err(|error| GroupsError::Replay {
                partition: -1,
                message: error.to_string(),
            })??;
    if skipped > 0 {
        tracing::error!(
            skipped,
            "{OFFSETS_TOPIC} holds batches that cannot be decoded; they were skipped \
             (rill_group_replay_skipped_batches)"
        );
        metrics.group_replay_skipped_batches.inc_by(skipped);
    }
    coordinator.finish_loading();
    Ok((coordinator, topic))
}

/// Feeds every record of `__consumer_offsets` to the coordinator, oldest
/// first, partition by partition; returns it with the number of batches it
/// had to skip. Only a failure to read the disk fails the load (and it is
/// tried again): bytes that cannot be decoded are skipped and counted, so
/// one bad batch never keeps every group from loading.
fn replay(
    mut coordinator: Coordinator,
    topic: &TopicHandle,
) -> Result<(Coordinator, u64), GroupsError> {
    let now = now_ms();
    let mut skipped = 0;
    for partition in &topic.partitions {
        let fail = |message: String| GroupsError::Replay {
            partition: partition.index,
            message,
        };
        let log = &partition.log;
        let end = log.log_end_offset();
        let mut next = log.log_start_offset();
        'partition: while next < end {
            let info = log
                .read(next, REPLAY_READ_BYTES, end)
                .map_err(|error| fail(error.to_string()))?;
            if info.slices.is_empty() {
                break;
            }
            for slice in &info.slices {
                let mut bytes = vec![0u8; slice.len as usize];
                slice
                    .file
                    .read_exact_at(&mut bytes, slice.position)
                    .map_err(|error| fail(error.to_string()))?;
                let replayed = replay_batches(&mut coordinator, &bytes, now, next);
                skipped += replayed.skipped;
                match replayed.next {
                    Some(after) => next = after,
                    None => {
                        // No batch boundary to go on from: the rest of this
                        // partition is lost to the coordinator, not the
                        // other partitions.
                        tracing::error!(
                            partition = partition.index, offset = %next,
                            "cannot find the next batch of {OFFSETS_TOPIC}; the rest of this partition is skipped"
                        );
                        break 'partition;
                    }
                }
            }
        }
    }
    Ok((coordinator, skipped))
}

/// What [`replay_batches`] got through.
struct Replayed {
    /// The offset after the last batch, or `None` when the bytes stop
    /// making sense as batches (a header that cannot be read).
    next: Option<Offset>,
    skipped: u64,
}

/// Replays the batches in `bytes`, skipping (and counting) each one that
/// cannot be decoded.
fn replay_batches(coordinator: &mut Coordinator, bytes: &[u8], now: i64, next: Offset) -> Replayed {
    let mut replayed = Replayed {
        next: Some(next),
        skipped: 0,
    };
    // Batches may be compacted: offsets have gaps, and a batch may hold no
    // record at all; `next` follows each batch's last offset slot.
    for item in BatchIter::new(bytes) {
        let view = match item {
            Ok((_, view)) => view,
            Err(error) => {
                tracing::warn!(%error, "skipping an unreadable batch header in {OFFSETS_TOPIC}");
                replayed.skipped += 1;
                replayed.next = None;
                return replayed;
            }
        };
        // Past this batch even if it is skipped, and always forward, so a
        // batch with a nonsensical header cannot make the replay go round.
        let current = replayed.next.unwrap_or(next);
        replayed.next = Some(Offset(
            view.last_offset()
                .saturating_add(1)
                .max(current.0.saturating_add(1)),
        ));
        let decoded = match decode_batch(view.bytes(), REPLAY_BATCH_BYTES_MAX) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(
                    offset = view.base_offset(), %error,
                    "skipping a batch of {OFFSETS_TOPIC} that cannot be decoded"
                );
                replayed.skipped += 1;
                continue;
            }
        };
        if decoded.is_control {
            continue;
        }
        for record in decoded.iter() {
            let Some(key) = &record.record.key else {
                continue;
            };
            let value: Option<&Bytes> = record.record.value.as_ref();
            if let Err(error) = coordinator.load(key, value.map(|v| v.as_ref()), now) {
                // One unreadable record must not keep every other group
                // from loading; it is reported and skipped.
                tracing::warn!(offset = record.offset, %error, "skipping a record of {OFFSETS_TOPIC}");
            }
        }
    }
    replayed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_offset: i64, compression: Compression, value: Vec<u8>) -> Vec<u8> {
        let mut builder = BatchBuilder::new(compression).base_offset(base_offset);
        builder
            .append(
                0,
                Some(Bytes::from_static(b"not-a-group-key")),
                Some(value.into()),
                Vec::new(),
            )
            .unwrap();
        builder.build().unwrap()
    }

    #[test]
    fn a_batch_that_cannot_be_decoded_is_skipped_and_the_replay_goes_on() {
        // A batch inflating past the limit (as produce refuses now, but an
        // older log may hold), then a good one behind it.
        let mut bytes = batch(
            3,
            Compression::Zstd,
            vec![0; rill_records::compression::INFLATED_BYTES_MAX + 1],
        );
        bytes.extend_from_slice(&batch(4, Compression::None, b"fine".to_vec()));
        let mut coordinator = Coordinator::loading(GroupConfig::default(), 0);

        let replayed = replay_batches(&mut coordinator, &bytes, 0, Offset(3));

        assert_eq!(replayed.skipped, 1);
        assert_eq!(replayed.next, Some(Offset(5)));
    }

    #[test]
    fn bytes_that_are_not_batches_stop_the_partition_not_the_load() {
        let mut coordinator = Coordinator::loading(GroupConfig::default(), 0);

        let replayed = replay_batches(&mut coordinator, &[0xff; 80], 0, Offset(7));

        assert_eq!(replayed.skipped, 1);
        assert_eq!(replayed.next, None);
    }
}
