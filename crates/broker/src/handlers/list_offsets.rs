//! ListOffsets: the earliest offset, the latest, the one with the largest
//! timestamp, or the first whose timestamp is at least a given time.

use std::sync::Arc;

use rill_log::Offset;
use rill_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use rill_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::cluster::LEADER_EPOCH;
use crate::error_code;
use crate::server::Shared;

/// The special timestamps of a ListOffsets request.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
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
                    let Some(partition) = handle.as_ref().and_then(|t| t.partition(index)) else {
                        return error(index, error_code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    let log = &partition.log;
                    let found = match requested.timestamp {
                        // Uncommitted offsets are not visible; on one node
                        // the high watermark is the log end.
                        LATEST => Ok(Some((log.high_watermark(), -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                        // No tiered storage: nothing is tiered.
                        LATEST_TIERED => Ok(Some((Offset(log.log_start_offset().0 - 1), -1))),
                        MAX_TIMESTAMP => Ok(log.max_timestamp()),
                        timestamp if timestamp < 0 => {
                            return error(index, error_code::INVALID_REQUEST);
                        }
                        timestamp => log.offset_for_timestamp(timestamp),
                    };
                    match found {
                        Ok(Some((offset, timestamp))) => ListOffsetsPartitionResponse {
                            partition_index: index,
                            error_code: error_code::NONE,
                            old_style_offsets: if version == 0 { vec![offset.0] } else { Vec::new() },
                            timestamp,
                            offset: offset.0,
                            leader_epoch: LEADER_EPOCH,
                            ..Default::default()
                        },
                        // No record is that recent: Kafka answers offset -1.
                        Ok(None) => ListOffsetsPartitionResponse {
                            partition_index: index,
                            error_code: error_code::NONE,
                            timestamp: -1,
                            offset: -1,
                            ..Default::default()
                        },
                        Err(failure) => {
                            tracing::error!(topic = %topic.name, partition = index, error = %failure, "offset lookup failed");
                            error(index, error_code::KAFKA_STORAGE_ERROR)
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse {
                name: topic.name,
                partitions,
                ..Default::default()
            }
        })
        .collect();
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}

fn error(index: i32, code: i16) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse {
        partition_index: index,
        error_code: code,
        timestamp: -1,
        offset: -1,
        ..Default::default()
    }
}
