//! CreatePartitions: grow a topic to a larger partition count.

use std::sync::Arc;

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
        let outcome = if !assignments_ok {
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
