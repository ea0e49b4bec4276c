//! Produce: append each partition's record batches to its log, verbatim.
//!
//! The request is read in place (`ProduceFrame`: nothing allocated, topic
//! names and batches borrowed from the frame); the log
//! validates them (CRC, sizes, producer sequences), assigns offsets by
//! rewriting the header's base offset and writes them in one write. On a
//! single node the in-sync replica set is this broker, so an append is
//! committed at once: the high watermark moves and parked fetches wake.
//!
//! Every produce request goes through [`handle_run`]. One with acks 0 or 1
//! takes with it the produce requests with acks 0 or 1 that the client has
//! already pipelined behind it (those in the connection's queue, in order,
//! up to [`RUN_REQUESTS_MAX`]): a run, answered together. Any other produce
//! request is a run of one.

use std::collections::HashMap;
use std::sync::Arc;

use rill_log::AppendError;
use rill_metadata::topic::is_internal;
use rill_protocol::messages::ProduceResponse;
use rill_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use rill_protocol::produce::ProducePartition;
use rill_protocol::{ApiKey, ProduceFrame, ResponseBody};
use rill_records::batch::BatchIter;

use super::{Queue, Request};
use crate::clock::now_ms;
use crate::cluster::TopicHandle;
use crate::error_code;
use crate::response::Response;
use crate::server::Shared;

/// Answers a produce request and the run it starts (see the module's
/// note): one answer per request, in order, `None` where the client
/// expects none (acks=0).
pub async fn handle(
    shared: &Arc<Shared>,
    correlation_id: i32,
    version: i16,
    request: ProduceFrame,
    queue: &mut Queue,
) -> Vec<Option<Response>> {
    let fast = is_fast(&request);
    let mut ids = vec![(correlation_id, version)];
    let mut run = vec![(version, request)];
    while fast && run.len() < RUN_REQUESTS_MAX {
        let Some(next) = queue.try_take(Joining::from_request) else {
            break;
        };
        ids.push((next.correlation_id, next.version));
        run.push((next.version, next.request));
    }
    let bodies = handle_run(shared, run).await;
    debug_assert_eq!(bodies.len(), ids.len());
    ids.into_iter()
        .zip(bodies)
        .map(|((correlation_id, version), body)| {
            let body = ResponseBody::Produce(body?);
            Response::answer(correlation_id, ApiKey::Produce, version, &body)
        })
        .collect()
}

/// Whether a produce request is answered without waiting on anything but
/// this broker's own work (acks 0 or 1), and so may join a run.
pub fn is_fast(request: &ProduceFrame) -> bool {
    request.acks() == 0 || request.acks() == 1
}

/// A request queued behind a fast one that joins its run.
struct Joining {
    correlation_id: i32,
    version: i16,
    request: ProduceFrame,
}

impl Joining {
    /// A fast produce request joins; any other is given back.
    // The request comes back by value, as it came: one per call, moved, as
    // `Request` itself is (see its note on size).
    #[allow(clippy::result_large_err)]
    fn from_request(request: Request) -> Result<Joining, Request> {
        match request {
            Request::Produce {
                header,
                version,
                body,
            } if is_fast(&body) => Ok(Joining {
                correlation_id: header.correlation_id,
                version,
                request: body,
            }),
            other => Err(other),
        }
    }
}

/// A reason to refuse the whole request, as a per-partition error code.
fn refusal(version: i16, request: &ProduceFrame) -> Option<i16> {
    if version < 3 {
        // Advertised only for librdkafka's compression check (see SUPPORTED_APIS).
        return Some(error_code::UNSUPPORTED_VERSION);
    }
    if request.transactional_id().is_some() {
        // Transactions are not implemented; refusing beats appending
        // transactional batches that no commit marker will ever resolve.
        return Some(error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    if !matches!(request.acks(), -1..=1) {
        return Some(error_code::INVALID_REQUIRED_ACKS);
    }
    None
}

async fn append(
    shared: &Shared,
    topic: Option<&TopicHandle>,
    data: ProducePartition<'_>,
    now: i64,
) -> PartitionProduceResponse {
    let Some(topic) = topic else {
        return error(data.index, error_code::UNKNOWN_TOPIC_OR_PARTITION, None);
    };
    let Some(partition) = topic.partition(data.index) else {
        return error(data.index, error_code::UNKNOWN_TOPIC_OR_PARTITION, None);
    };
    let bytes = match data.records {
        Some(bytes) if !bytes.is_empty() => bytes,
        _ => {
            return error(
                data.index,
                error_code::CORRUPT_MESSAGE,
                Some("the request carries no record batch".to_string()),
            );
        }
    };
    let appended = if topic.append_may_sync {
        // flush.messages: the answer waits for the group commit that makes
        // the batches durable, awaited here, not on a blocked thread.
        partition.append_synced(bytes, now).await
    } else {
        // Without flush.messages an append is a write to the page cache:
        // short enough for an async worker, and it saves a thread hop.
        partition.append(bytes, now)
    };
    match appended {
        Ok(info) => {
            let metrics = shared.metrics.topic(&topic.name);
            metrics.bytes_in.inc_by(bytes.len() as u64);
            metrics.messages_in.inc_by(info.record_count);
            PartitionProduceResponse {
                index: data.index,
                error_code: error_code::NONE,
                base_offset: info.base_offset.0,
                log_append_time_ms: info.log_append_time_ms,
                log_start_offset: info.log_start_offset.0,
                ..Default::default()
            }
        }
        Err(failure) => {
            let code = append_error_code(&failure);
            if code == error_code::KAFKA_STORAGE_ERROR {
                tracing::error!(topic = %topic.name, partition = data.index, error = %failure, "append failed");
            } else {
                tracing::debug!(topic = %topic.name, partition = data.index, error = %failure, "append refused");
            }
            let mut answer = error(data.index, code, Some(failure.to_string()));
            if let AppendError::MissingKey { records, .. } = &failure {
                record_errors(&mut answer, &topic.name, records);
            }
            answer
        }
    }
}

/// KIP-467: a batch refused for some of its records names them (by index in
/// the batch), so a client fails those records and reports the rest as
/// refused with them, as Kafka's `LogValidator` does for keyless records on a
/// compacted topic.
fn record_errors(answer: &mut PartitionProduceResponse, topic: &str, records: &[usize]) {
    let reason = format!(
        "Compacted topic cannot accept message without key in topic partition {topic}-{}.",
        answer.index
    );
    answer.record_errors = records
        .iter()
        .map(|&index| BatchIndexAndErrorMessage {
            batch_index: i32::try_from(index).unwrap_or(i32::MAX),
            batch_index_error_message: Some(reason.clone()),
            ..Default::default()
        })
        .collect();
    answer.error_message = Some(format!(
        "{} record(s) rejected: {} (first at batch index {})",
        records.len(),
        reason,
        records.first().copied().unwrap_or(0)
    ));
}

/// The Kafka error code a client expects for each way an append can fail.
fn append_error_code(error: &AppendError) -> i16 {
    match error {
        AppendError::InvalidBatch { .. }
        | AppendError::InvalidRecords { .. }
        | AppendError::Empty => error_code::CORRUPT_MESSAGE,
        // Kafka answers INVALID_RECORD (not retriable) for records it cannot
        // read out of a batch; one that inflates past the limit never will be.
        AppendError::MissingKey { .. }
        | AppendError::InvalidRecord { .. }
        | AppendError::InflatesTooLarge { .. } => error_code::INVALID_RECORD,
        AppendError::TooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
        AppendError::OutOfOrderSequence { .. } => error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        AppendError::InvalidProducerEpoch { .. } => error_code::INVALID_PRODUCER_EPOCH,
        AppendError::OffsetOverflow { .. } => error_code::UNKNOWN_SERVER_ERROR,
        AppendError::Offline(_)
        | AppendError::Io(_)
        | AppendError::Corrupt(_)
        | AppendError::NoSpace { .. } => error_code::KAFKA_STORAGE_ERROR,
        // The partition was closed under us (deleted or shutting down): the
        // client refreshes its metadata and retries.
        AppendError::Closed { .. } => error_code::NOT_LEADER_OR_FOLLOWER,
    }
}

fn error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: code,
        base_offset: -1,
        error_message: message,
        ..Default::default()
    }
}

/// Where a partition's data sits in a run (request, topic, partition).
type Entry<'a> = ((usize, usize, usize), ProducePartition<'a>);

/// A partition (topic name, index) and its data from each request, in order.
type PartitionEntries<'a> = ((&'a str, i32), Vec<Entry<'a>>);

/// The most requests answered as one run, and the most bytes appended in
/// one write by a run: bounds the work done before any answer is written.
const RUN_REQUESTS_MAX: usize = 64;
const RUN_BYTES_MAX: usize = 1 << 20;

/// A run of pipelined produce requests from one connection, each with acks
/// 0 or 1, answered exactly as if handled one by one in order, but with the
/// batches that consecutive requests carry for the same partition appended
/// in one write: a producer sending one small batch per request otherwise
/// costs the broker one `writev(2)` per message.
///
/// A partition's batches are merged only when every one of them is plain
/// (no producer id: an idempotent batch needs the log's per-batch duplicate
/// check) and the log need not fsync; otherwise, or when the merged append
/// is refused (the log is then unchanged), they are appended one request
/// at a time, in order, so each request gets its own answer.
async fn handle_run(
    shared: &Arc<Shared>,
    requests: Vec<(i16, ProduceFrame)>,
) -> Vec<Option<ProduceResponse>> {
    let now = now_ms();
    let mut run = SortedRun::with_capacity(requests.len());
    for (r, (version, request)) in requests.iter().enumerate() {
        run.add_request(r, *version, request);
    }
    let SortedRun {
        mut answers,
        by_partition,
        ..
    } = run;
    append_run(shared, &by_partition, &mut answers, now).await;
    answers
        .into_iter()
        .zip(&requests)
        .map(|(responses, (_, request))| {
            (request.acks() != 0).then(|| ProduceResponse {
                responses,
                ..Default::default()
            })
        })
        .collect()
}

/// A run of requests sorted out: answers in the requests' shape, filled in
/// by [`append_run`], and each partition's batches in request order.
struct SortedRun<'a> {
    answers: Vec<Vec<TopicProduceResponse>>,
    /// (request, topic, partition) → data, by partition.
    by_partition: Vec<PartitionEntries<'a>>,
    /// Where each partition is in `by_partition`: a request may name
    /// thousands of partitions.
    position: HashMap<(&'a str, i32), usize>,
}

impl<'a> SortedRun<'a> {
    fn with_capacity(requests: usize) -> SortedRun<'a> {
        SortedRun {
            answers: Vec::with_capacity(requests),
            by_partition: Vec::new(),
            position: HashMap::new(),
        }
    }

    /// Adds request number `r`: its answer's shape, with the refused
    /// partitions answered, and its batches to append.
    fn add_request(&mut self, r: usize, version: i16, request: &'a ProduceFrame) {
        let refusal = refusal(version, request);
        let mut topics: Vec<TopicProduceResponse> = Vec::with_capacity(request.topics().len());
        // A topic that names no partition gets no answer, as in Kafka.
        let mut topic_index = None;
        for data in request.partitions() {
            if topic_index != Some(data.topic_index) {
                topic_index = Some(data.topic_index);
                topics.push(TopicProduceResponse {
                    name: data.topic.to_owned(),
                    ..Default::default()
                });
            }
            let t = topics.len() - 1;
            let partitions = &mut topics[t].partition_responses;
            let p = partitions.len();
            match refusal {
                Some(code) => partitions.push(error(data.index, code, None)),
                // Only the broker writes internal topics; a client's batch
                // in `__consumer_offsets` would be replayed by the group
                // coordinator at the next start. Kafka's ReplicaManager
                // answers INVALID_TOPIC_EXCEPTION.
                None if is_internal(data.topic) => partitions.push(error(
                    data.index,
                    error_code::INVALID_TOPIC_EXCEPTION,
                    Some(format!("cannot append to internal topic {}", data.topic)),
                )),
                None => {
                    partitions.push(error(data.index, error_code::UNKNOWN_SERVER_ERROR, None));
                    self.add_entry((r, t, p), data);
                }
            }
        }
        self.answers.push(topics);
    }

    /// Files `data` under its partition, after that partition's earlier
    /// entries.
    fn add_entry(&mut self, at: (usize, usize, usize), data: ProducePartition<'a>) {
        let key = (data.topic, data.index);
        match self.position.get(&key) {
            Some(&i) => self.by_partition[i].1.push((at, data)),
            None => {
                self.position.insert(key, self.by_partition.len());
                self.by_partition.push((key, vec![(at, data)]));
            }
        }
    }
}

/// Appends a run's batches, each partition's merged where it can be, and
/// puts each result in its place in `answers`.
async fn append_run(
    shared: &Shared,
    by_partition: &[PartitionEntries<'_>],
    answers: &mut [Vec<TopicProduceResponse>],
    now: i64,
) {
    let topics: Vec<_> = by_partition
        .iter()
        .map(|((name, _), _)| shared.cluster.topic(name))
        .collect();
    // Appends run together: each runs its append at the first poll, in
    // order, then those that wait for a sync (flush.messages) wait for the
    // same group-commit round rather than one round after another.
    let mut appends = Vec::new();
    for ((_, entries), topic) in by_partition.iter().zip(&topics) {
        let merged = match topic.as_deref() {
            Some(topic) => append_merged(shared, topic, entries, now),
            None => None,
        };
        match merged {
            Some(results) => {
                for (((r, t, p), _), result) in entries.iter().zip(results) {
                    answers[*r][*t].partition_responses[*p] = result;
                }
            }
            None => {
                for &(at, data) in entries {
                    let topic = topic.as_deref();
                    appends.push(async move { (at, append(shared, topic, data, now).await) });
                }
            }
        }
    }
    for ((r, t, p), result) in futures_util::future::join_all(appends).await {
        answers[r][t].partition_responses[p] = result;
    }
}

/// Appends several requests' batches for one partition in one write, and
/// gives each request its base offset; `None` when they must go one by one
/// (see [`handle_run`]).
fn append_merged(
    shared: &Shared,
    topic: &TopicHandle,
    entries: &[Entry<'_>],
    now: i64,
) -> Option<Vec<PartitionProduceResponse>> {
    if entries.len() < 2 || topic.append_may_sync {
        return None;
    }
    let index = entries[0].1.index;
    let partition = topic.partition(index)?;
    let mut parts = Vec::with_capacity(entries.len());
    let mut total = 0;
    for (_, data) in entries {
        let bytes = data.records?;
        // Offsets each request's batches take, and whether all are plain.
        let mut span = 0i64;
        let mut seen = 0;
        for item in BatchIter::new(bytes) {
            let (_, view) = item.ok()?;
            if view.producer_id() >= 0 {
                return None;
            }
            span += i64::from(view.last_offset_delta()) + 1;
            seen += view.total_len();
        }
        if bytes.is_empty() || seen != bytes.len() {
            return None;
        }
        total += bytes.len();
        parts.push((bytes, span));
    }
    if total > RUN_BYTES_MAX {
        return None;
    }
    // Written as they are, without a copy into one buffer.
    let batches: Vec<&[u8]> = parts.iter().map(|(bytes, _)| *bytes).collect();
    // Refused (an invalid batch, a keyless record on a compacted topic…):
    // the log is unchanged, and one-by-one appends give each request its
    // own error.
    let info = partition.append(&batches, now).ok()?;
    let metrics = shared.metrics.topic(&topic.name);
    metrics.bytes_in.inc_by(total as u64);
    metrics.messages_in.inc_by(info.record_count);
    let mut base = info.base_offset.0;
    Some(
        parts
            .iter()
            .map(|(_, span)| {
                let answer = PartitionProduceResponse {
                    index,
                    error_code: error_code::NONE,
                    base_offset: base,
                    log_append_time_ms: info.log_append_time_ms,
                    log_start_offset: info.log_start_offset.0,
                    ..Default::default()
                };
                base += span;
                answer
            })
            .collect(),
    )
}
