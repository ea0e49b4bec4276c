//! DescribeQuorum (KIP-595, KIP-853): the controller quorum of
//! `__cluster_metadata`-0 as its leader sees it, asked of the leader
//! wherever the request arrives (Kafka's brokers forward it alike).

use std::sync::Arc;

use rill_protocol::Uuid;
use rill_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use rill_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use crate::error_code;
use crate::server::Shared;

/// The name Kafka gives the metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    shared: &Arc<Shared>,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let asks_for_metadata = request.topics.len() == 1
        && request.topics[0].topic_name == METADATA_TOPIC
        && request.topics[0].partitions.len() == 1
        && request.topics[0].partitions[0].partition_index == 0;
    if !asks_for_metadata {
        return refused(request);
    }
    let info = shared.cluster.describe_quorum().await;
    let now_ms = crate::clock::now_ms();
    let at = |ago: Option<u64>| ago.map_or(-1, |ago| now_ms - ago as i64);
    let voters = info
        .voters
        .iter()
        .map(|voter| ReplicaState {
            replica_id: voter.id as i32,
            replica_directory_id: Uuid::default(),
            // An index is an offset; the log end is one past it.
            log_end_offset: voter.matched.map_or(-1, |index| index as i64 + 1),
            last_fetch_timestamp: at(voter.last_contact_ms),
            last_caught_up_timestamp: at(voter.last_contact_ms),
            ..Default::default()
        })
        .collect();
    let partition = PartitionData {
        partition_index: 0,
        error_code: error_code::NONE,
        leader_id: info.leader.map_or(-1, |leader| leader as i32),
        leader_epoch: i32::try_from(info.term).unwrap_or(i32::MAX),
        high_watermark: info.committed.map_or(0, |index| index as i64 + 1),
        current_voters: voters,
        ..Default::default()
    };
    let nodes = shared
        .cluster
        .controller_endpoints()
        .into_iter()
        .map(|(node_id, host, port)| Node {
            node_id,
            listeners: vec![Listener {
                name: "CONTROLLER".to_string(),
                host,
                port,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    DescribeQuorumResponse {
        error_code: error_code::NONE,
        topics: vec![TopicData {
            topic_name: METADATA_TOPIC.to_string(),
            partitions: vec![partition],
            ..Default::default()
        }],
        nodes,
        ..Default::default()
    }
}

/// Every partition asked for other than the metadata log's, refused as
/// Kafka does.
fn refused(request: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| TopicData {
            topic_name: topic.topic_name,
            partitions: topic
                .partitions
                .into_iter()
                .map(|p| PartitionData {
                    partition_index: p.partition_index,
                    error_code: error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    leader_id: -1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    DescribeQuorumResponse {
        error_code: error_code::NONE,
        topics,
        ..Default::default()
    }
}
