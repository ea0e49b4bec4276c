//! OffsetCommit: acknowledged once the offsets are in `__consumer_offsets`.
//!
//! Offsets are kept only for partitions that exist: as Kafka does
//! (`KafkaApis.handleOffsetCommitRequest`), a topic or partition the cluster
//! does not have is answered UNKNOWN_TOPIC_OR_PARTITION here, before the
//! coordinator sees the request, and the rest of the request goes on.

use std::sync::Arc;

use rill_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use rill_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use rill_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::error_code;
use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    mut request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let unknown = take_unknown_partitions(shared, &mut request.topics);
    if request.topics.is_empty() && !unknown.is_empty() {
        // Nothing left for the coordinator: Kafka answers without asking it.
        return OffsetCommitResponse {
            topics: unknown,
            ..Default::default()
        };
    }
    let mut response = shared.groups.offset_commit(version, request).await;
    for topic in unknown {
        // One entry per topic, as Kafka's response builder makes.
        match response.topics.iter_mut().find(|t| t.name == topic.name) {
            Some(answered) => answered.partitions.extend(topic.partitions),
            None => response.topics.push(topic),
        }
    }
    response
}

/// Removes from `topics` every partition the cluster does not have, and
/// returns them answered UNKNOWN_TOPIC_OR_PARTITION. A topic left with no
/// partition is removed too.
fn take_unknown_partitions(
    shared: &Shared,
    topics: &mut Vec<OffsetCommitRequestTopic>,
) -> Vec<OffsetCommitResponseTopic> {
    let mut unknown = Vec::new();
    topics.retain_mut(|topic| {
        let handle = shared.cluster.topic(&topic.name);
        let mut missing = Vec::new();
        topic.partitions.retain(|partition| {
            let known = handle
                .as_ref()
                .is_some_and(|handle| handle.partition(partition.partition_index).is_some());
            if !known {
                missing.push(OffsetCommitResponsePartition {
                    partition_index: partition.partition_index,
                    error_code: error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    ..Default::default()
                });
            }
            known
        });
        if !missing.is_empty() {
            unknown.push(OffsetCommitResponseTopic {
                name: topic.name.clone(),
                partitions: missing,
                ..Default::default()
            });
        }
        !topic.partitions.is_empty()
    });
    unknown
}
