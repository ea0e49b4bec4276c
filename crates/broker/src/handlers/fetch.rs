//! Fetch: read each partition from the requested offset and answer with
//! file regions that the connection sends with `sendfile(2)`.
//!
//! Long poll: when fewer than `min_bytes` are available the request parks
//! until an append moves a requested partition's high watermark, the wait
//! runs out, or the broker shuts down. The watchers are subscribed before
//! reading, so an append between the read and the wait is never missed.
//!
//! Fetch sessions (KIP-227) are not kept: every answer says session id 0,
//! which tells clients to send full fetch requests, as Kafka does when its
//! session cache is full.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use rill_log::{Offset, ReadError};
use rill_protocol::Records;
use rill_protocol::messages::fetch_request::FetchTopic;
use rill_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::watch;

use crate::cluster::{Partition, TopicHandle};
use crate::error_code;
use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: FetchRequest,
    shutdown: &mut watch::Receiver<bool>,
) -> FetchResponse {
    if request.session_id != 0 {
        return FetchResponse {
            error_code: error_code::FETCH_SESSION_ID_NOT_FOUND,
            ..Default::default()
        };
    }
    let wait = Duration::from_millis(
        u64::try_from(request.max_wait_ms)
            .unwrap_or(0)
            .min(shared.config.fetch_max_wait_ms_limit),
    );
    let deadline = tokio::time::Instant::now() + wait;
    let response_max_bytes = request.max_bytes.clamp(0, shared.config.fetch_max_bytes);
    let min_bytes = request.min_bytes.max(0) as usize;
    let targets = resolve(shared, version, request.topics);
    let mut watchers: Vec<watch::Receiver<i64>> = targets
        .iter()
        .flat_map(|(_, topic, partitions)| {
            partitions.iter().filter_map(move |partition| {
                topic.as_ref()?;
                partition.as_ref().map(|p| p.high_watermark.subscribe())
            })
        })
        .collect();
    loop {
        for watcher in &mut watchers {
            watcher.borrow_and_update();
        }
        let (responses, bytes, has_error) = read_all(shared, version, &targets, response_max_bytes);
        let waited_enough = tokio::time::Instant::now() >= deadline;
        let stopping = *shutdown.borrow();
        if bytes >= min_bytes || has_error || waited_enough || stopping || watchers.is_empty() {
            return FetchResponse {
                responses,
                session_id: 0,
                ..Default::default()
            };
        }
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

/// A requested topic, its handle, and the partition of each requested entry
/// (in request order).
type Target = (
    FetchTopic,
    Option<Arc<TopicHandle>>,
    Vec<Option<Arc<Partition>>>,
);

/// Finds the topic and partition of each requested entry once, before any
/// waiting, so a long poll does not repeat the lookups.
fn resolve(shared: &Shared, version: i16, topics: Vec<FetchTopic>) -> Vec<Target> {
    topics
        .into_iter()
        .map(|fetch_topic| {
            let topic = if version >= 13 {
                shared
                    .cluster
                    .topic_by_id(rill_metadata::TopicId(*fetch_topic.topic_id.as_bytes()))
            } else {
                shared.cluster.topic(&fetch_topic.topic)
            };
            let partitions = fetch_topic
                .partitions
                .iter()
                .map(|fetch_partition| {
                    topic
                        .as_ref()
                        .and_then(|topic| topic.partition(fetch_partition.partition).cloned())
                })
                .collect();
            (fetch_topic, topic, partitions)
        })
        .collect()
}

fn read_all(
    shared: &Shared,
    version: i16,
    targets: &[Target],
    response_max_bytes: i32,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut remaining = response_max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut has_error = false;
    let mut responses = Vec::with_capacity(targets.len());
    for (fetch_topic, topic, partitions) in targets {
        let mut partition_responses = Vec::with_capacity(partitions.len());
        for (fetch_partition, partition) in fetch_topic.partitions.iter().zip(partitions) {
            let answer = match (topic, partition) {
                (Some(topic), Some(partition)) => {
                    let limit =
                        (fetch_partition.partition_max_bytes.max(0) as usize).min(remaining);
                    let (answer, offsets) =
                        read_partition(partition, fetch_partition.fetch_offset, limit, total == 0);
                    if let Some(Records::Files(regions)) = &answer.records {
                        let bytes: usize = regions.iter().map(|r| r.len as usize).sum();
                        total += bytes;
                        remaining = remaining.saturating_sub(bytes);
                        let metrics = shared.metrics.topic(&topic.name);
                        metrics.bytes_out.inc_by(bytes as u64);
                        metrics.messages_out.inc_by(offsets);
                    }
                    answer
                }
                (None, _) if version >= 13 => {
                    error(fetch_partition.partition, error_code::UNKNOWN_TOPIC_ID)
                }
                _ => error(
                    fetch_partition.partition,
                    error_code::UNKNOWN_TOPIC_OR_PARTITION,
                ),
            };
            has_error |= answer.error_code != error_code::NONE;
            partition_responses.push(answer);
        }
        responses.push(FetchableTopicResponse {
            topic: fetch_topic.topic.clone(),
            topic_id: fetch_topic.topic_id,
            partitions: partition_responses,
            ..Default::default()
        });
    }
    (responses, total, has_error)
}

/// Reads one partition. `first` is true while the response is still empty:
/// then one whole batch is sent even if it is larger than the limit, so a
/// consumer is never stuck behind a large batch (KIP-74). Later partitions
/// get only what fits. Also returns how many offsets the answer moves the
/// consumer on (the records it delivers, gaps of a compacted log included).
fn read_partition(
    partition: &Partition,
    fetch_offset: i64,
    limit: usize,
    first: bool,
) -> (PartitionData, u64) {
    let log = &partition.log;
    let high_watermark = log.high_watermark();
    if limit == 0 && !first {
        return (
            PartitionData {
                partition_index: partition.index,
                high_watermark: high_watermark.0,
                last_stable_offset: high_watermark.0,
                log_start_offset: log.log_start_offset().0,
                records: Some(Records::Bytes(Bytes::new())),
                ..Default::default()
            },
            0,
        );
    }
    let limit_u32 = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
    match log.read(Offset(fetch_offset), limit_u32, high_watermark) {
        Ok(info) => {
            let mut regions = info.slices;
            let bytes: usize = regions.iter().map(|r| r.len as usize).sum();
            if !first && bytes > limit {
                regions.clear();
            }
            let offsets = match info.next_offset {
                Some(next) if !regions.is_empty() => (next.0 - fetch_offset).max(0) as u64,
                _ => 0,
            };
            (
                PartitionData {
                    partition_index: partition.index,
                    error_code: error_code::NONE,
                    high_watermark: info.high_watermark.0,
                    last_stable_offset: info.high_watermark.0,
                    log_start_offset: info.log_start_offset.0,
                    records: Some(if regions.is_empty() {
                        Records::Bytes(Bytes::new())
                    } else {
                        Records::Files(regions)
                    }),
                    ..Default::default()
                },
                offsets,
            )
        }
        Err(ReadError::OffsetOutOfRange { .. }) => (
            PartitionData {
                partition_index: partition.index,
                error_code: error_code::OFFSET_OUT_OF_RANGE,
                high_watermark: high_watermark.0,
                last_stable_offset: high_watermark.0,
                log_start_offset: log.log_start_offset().0,
                records: Some(Records::Bytes(Bytes::new())),
                ..Default::default()
            },
            0,
        ),
        // Deleted (or the broker stopping) while the fetch waited: the
        // client refreshes its metadata, as after a leader move.
        Err(ReadError::Closed { .. }) => (
            error(partition.index, error_code::NOT_LEADER_OR_FOLLOWER),
            0,
        ),
        Err(failure) => {
            tracing::error!(partition = partition.index, error = %failure, "read failed");
            (
                PartitionData {
                    partition_index: partition.index,
                    error_code: error_code::KAFKA_STORAGE_ERROR,
                    high_watermark: -1,
                    records: Some(Records::Bytes(Bytes::new())),
                    ..Default::default()
                },
                0,
            )
        }
    }
}

fn error(partition: i32, code: i16) -> PartitionData {
    PartitionData {
        partition_index: partition,
        error_code: code,
        high_watermark: -1,
        records: Some(Records::Bytes(Bytes::new())),
        ..Default::default()
    }
}
