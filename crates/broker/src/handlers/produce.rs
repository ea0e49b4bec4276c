//! Produce: append each partition's record batches to its log, verbatim.
//!
//! The batches arrive as a slice of the request frame (no copy); the log
//! validates them (CRC, sizes, producer sequences), assigns offsets by
//! rewriting the header's base offset and writes them in one write. On a
//! single node the in-sync replica set is this broker, so an append is
//! committed at once: the high watermark moves and parked fetches wake.

use std::sync::Arc;

use rill_log::AppendError;
use rill_protocol::Records;
use rill_protocol::messages::produce_request::PartitionProduceData;
use rill_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use rill_protocol::messages::{ProduceRequest, ProduceResponse};

use super::now_ms;
use crate::cluster::TopicHandle;
use crate::error_code;
use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let now = now_ms();
    let refusal = refusal(version, &request);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = shared.cluster.topic(&topic_data.name);
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            partition_responses.push(match refusal {
                Some(code) => error(data.index, code, None),
                None => append(shared, topic.as_deref(), data, now).await,
            });
        }
        responses.push(TopicProduceResponse {
            name: topic_data.name,
            partition_responses,
            ..Default::default()
        });
    }
    if request.acks == 0 {
        return None;
    }
    Some(ProduceResponse {
        responses,
        ..Default::default()
    })
}

/// A reason to refuse the whole request, as a per-partition error code.
fn refusal(version: i16, request: &ProduceRequest) -> Option<i16> {
    if version < 3 {
        // Advertised only for librdkafka's compression check (see SUPPORTED_APIS).
        return Some(error_code::UNSUPPORTED_VERSION);
    }
    if request.transactional_id.is_some() {
        // Transactions are not implemented; refusing beats appending
        // transactional batches that no commit marker will ever resolve.
        return Some(error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    if !matches!(request.acks, -1..=1) {
        return Some(error_code::INVALID_REQUIRED_ACKS);
    }
    None
}

async fn append(
    shared: &Shared,
    topic: Option<&TopicHandle>,
    data: PartitionProduceData,
    now: i64,
) -> PartitionProduceResponse {
    let Some(topic) = topic else {
        return error(data.index, error_code::UNKNOWN_TOPIC_OR_PARTITION, None);
    };
    let Some(partition) = topic.partition(data.index) else {
        return error(data.index, error_code::UNKNOWN_TOPIC_OR_PARTITION, None);
    };
    let bytes = match data.records {
        Some(Records::Bytes(bytes)) if !bytes.is_empty() => bytes,
        _ => {
            return error(
                data.index,
                error_code::CORRUPT_MESSAGE,
                Some("the request carries no record batch".to_string()),
            );
        }
    };
    let appended = if topic.append_may_sync {
        let appending = partition.clone();
        let batches = bytes.clone();
        match tokio::task::spawn_blocking(move || appending.append(&batches, now)).await {
            Ok(appended) => appended,
            Err(failure) => {
                tracing::error!(topic = %topic.name, partition = data.index, error = %failure, "append task failed");
                return error(data.index, error_code::UNKNOWN_SERVER_ERROR, None);
            }
        }
    } else {
        // Without flush.messages an append is a write to the page cache:
        // short enough for an async worker, and it saves a thread hop.
        partition.append(&bytes, now)
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
            error(data.index, code, Some(failure.to_string()))
        }
    }
}

/// The Kafka error code a client expects for each way an append can fail.
fn append_error_code(error: &AppendError) -> i16 {
    match error {
        AppendError::InvalidBatch { .. }
        | AppendError::InvalidRecords { .. }
        | AppendError::Empty => error_code::CORRUPT_MESSAGE,
        AppendError::MissingKey { .. } => error_code::INVALID_RECORD,
        AppendError::TooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
        AppendError::OutOfOrderSequence { .. } => error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        AppendError::InvalidProducerEpoch { .. } => error_code::INVALID_PRODUCER_EPOCH,
        AppendError::OffsetOverflow { .. } => error_code::UNKNOWN_SERVER_ERROR,
        AppendError::Offline(_) | AppendError::Io(_) | AppendError::Corrupt(_) => {
            error_code::KAFKA_STORAGE_ERROR
        }
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
