//! DeleteRecords: move a partition's log start offset forward. Offset -1
//! means "up to the high watermark".

use std::sync::Arc;

use rill_log::Offset;
use rill_metadata::topic::is_internal;
use rill_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use rill_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::error_code;
use crate::server::Shared;

/// Moving a log start fsyncs its checkpoint and unlinks segment files:
/// disk work that may block for as long as the disk takes, so it runs on a
/// blocking thread, never on an async worker (a fsync there would stall every
/// connection that worker serves), as an append that
/// may sync does.
pub async fn handle(shared: &Arc<Shared>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    // What the answer needs if the blocking task itself fails.
    let asked: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            let indexes = t.partitions.iter().map(|p| p.partition_index).collect();
            (t.name.clone(), indexes)
        })
        .collect();
    let working = Arc::clone(shared);
    match tokio::task::spawn_blocking(move || delete(&working, request)).await {
        Ok(response) => response,
        Err(failure) => {
            tracing::error!(error = %failure, "delete records task failed");
            failed(asked)
        }
    }
}

/// Every asked partition answered UNKNOWN_SERVER_ERROR.
fn failed(asked: Vec<(String, Vec<i32>)>) -> DeleteRecordsResponse {
    let topics = asked
        .into_iter()
        .map(|(name, indexes)| DeleteRecordsTopicResult {
            name,
            partitions: indexes
                .into_iter()
                .map(|index| DeleteRecordsPartitionResult {
                    partition_index: index,
                    low_watermark: -1,
                    error_code: error_code::UNKNOWN_SERVER_ERROR,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    DeleteRecordsResponse {
        topics,
        ..Default::default()
    }
}

fn delete(shared: &Arc<Shared>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let handle = shared.cluster.topic(&topic.name);
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let index = requested.partition_index;
                    let result = |code, low_watermark| DeleteRecordsPartitionResult {
                        partition_index: index,
                        low_watermark,
                        error_code: code,
                        ..Default::default()
                    };
                    // The group coordinator's records must stay (Kafka's
                    // ReplicaManager refuses this too).
                    if is_internal(&topic.name) {
                        return result(error_code::INVALID_TOPIC_EXCEPTION, -1);
                    }
                    let Some(partition) = handle.as_ref().and_then(|t| t.partition(index)) else {
                        return result(error_code::UNKNOWN_TOPIC_OR_PARTITION, -1);
                    };
                    let log = &partition.log;
                    let high_watermark = log.high_watermark();
                    let target = if requested.offset == -1 {
                        high_watermark
                    } else {
                        Offset(requested.offset)
                    };
                    if target.0 < 0 || target > high_watermark {
                        return result(error_code::OFFSET_OUT_OF_RANGE, -1);
                    }
                    match log.delete_records_before(target) {
                        Ok(start) => result(error_code::NONE, start.0),
                        Err(failure) => {
                            tracing::error!(topic = %topic.name, partition = index, error = %failure, "delete records failed");
                            result(error_code::KAFKA_STORAGE_ERROR, -1)
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult {
                name: topic.name,
                partitions,
                ..Default::default()
            }
        })
        .collect();
    DeleteRecordsResponse {
        topics,
        ..Default::default()
    }
}
