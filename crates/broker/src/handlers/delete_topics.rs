//! DeleteTopics, by name (v0–v5) or by name or id (v6+).

use std::sync::Arc;

use rill_protocol::Uuid;
use rill_protocol::messages::delete_topics_response::DeletableTopicResult;
use rill_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use crate::error_code;
use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // Each entry: the name if given, else the id.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::default()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let name = match name {
            Some(name) => Some(name),
            None => shared
                .cluster
                .topic_by_id(rill_metadata::TopicId(*id.as_bytes()))
                .map(|topic| topic.name.clone()),
        };
        let Some(name) = name else {
            responses.push(DeletableTopicResult {
                name: None,
                topic_id: id,
                error_code: error_code::UNKNOWN_TOPIC_ID,
                error_message: Some(format!("no topic has id {id}")),
                ..Default::default()
            });
            continue;
        };
        if rill_metadata::topic::is_internal(&name) {
            responses.push(DeletableTopicResult {
                name: Some(name.clone()),
                topic_id: id,
                error_code: error_code::INVALID_TOPIC_EXCEPTION,
                error_message: Some(format!("internal topic '{name}' cannot be deleted")),
                ..Default::default()
            });
            continue;
        }
        responses.push(match shared.cluster.delete_topic(&name).await {
            Ok(deleted_id) => DeletableTopicResult {
                name: Some(name),
                topic_id: Uuid::from_bytes(deleted_id.0),
                error_code: error_code::NONE,
                ..Default::default()
            },
            Err(failure) => DeletableTopicResult {
                name: Some(name),
                topic_id: id,
                error_code: failure.code,
                error_message: Some(failure.message),
                ..Default::default()
            },
        });
    }
    DeleteTopicsResponse {
        responses,
        ..Default::default()
    }
}
