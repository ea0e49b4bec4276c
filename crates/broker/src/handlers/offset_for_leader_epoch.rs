//! OffsetForLeaderEpoch: where a leader epoch ended, from the log's
//! leader-epoch cache. Clients use it to detect log truncation after a
//! leader change.

use std::sync::Arc;

use rill_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use rill_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::cluster::LEADER_EPOCH;
use crate::error_code;
use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let handle = shared.cluster.topic(&topic.topic);
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let index = requested.partition;
                    let Some(partition) = handle.as_ref().and_then(|t| t.partition(index)) else {
                        return answer(index, error_code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
                    };
                    // -1: the client does not know the current epoch.
                    let current = requested.current_leader_epoch;
                    if current != -1 && current > LEADER_EPOCH {
                        return answer(index, error_code::UNKNOWN_LEADER_EPOCH, -1, -1);
                    }
                    if current != -1 && current < LEADER_EPOCH {
                        return answer(index, error_code::FENCED_LEADER_EPOCH, -1, -1);
                    }
                    match partition.log.end_offset_for_epoch(requested.leader_epoch) {
                        Some((epoch, end)) => answer(index, error_code::NONE, epoch, end.0),
                        None => answer(index, error_code::NONE, -1, -1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult {
                topic: topic.topic,
                partitions,
                ..Default::default()
            }
        })
        .collect();
    OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    }
}

fn answer(partition: i32, code: i16, leader_epoch: i32, end_offset: i64) -> EpochEndOffset {
    EpochEndOffset {
        error_code: code,
        partition,
        leader_epoch,
        end_offset,
        ..Default::default()
    }
}
