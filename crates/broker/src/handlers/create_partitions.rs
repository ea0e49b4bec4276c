//! CreatePartitions: grow a topic to a larger partition count.

use std::sync::Arc;

use rill_metadata::topic::is_internal;
use rill_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use rill_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use crate::error_code;
use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let node_id = shared.config.node_id;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let assignments_ok = topic
            .assignments
            .as_ref()
            .is_none_or(|assignments| assignments.iter().all(|a| a.broker_ids[..] == [node_id]));
        let outcome = if is_internal(&topic.name) {
            // Groups are placed in `__consumer_offsets` by its partition
            // count, so a new count would move every group away from its
            // committed offsets. Kafka's broker leaves this check to its
            // tools (kafka-topics refuses to change an internal topic's
            // partition count); Rill refuses it here, for every client.
            Err((
                error_code::INVALID_TOPIC_EXCEPTION,
                format!(
                    "the number of partitions of the internal topic {} cannot be changed",
                    topic.name
                ),
            ))
        } else if !assignments_ok {
            Err((
                error_code::INVALID_REPLICATION_FACTOR,
                format!(
                    "this cluster has one broker, {node_id}; new partitions must be assigned to it alone"
                ),
            ))
        } else {
            shared
                .cluster
                .create_partitions(&topic.name, topic.count, request.validate_only)
                .await
                .map_err(|failure| (failure.code, failure.message))
        };
        let (error_code, error_message) = super::error_fields(outcome);
        results.push(CreatePartitionsTopicResult {
            name: topic.name,
            error_code,
            error_message,
            ..Default::default()
        });
    }
    CreatePartitionsResponse {
        results,
        ..Default::default()
    }
}
