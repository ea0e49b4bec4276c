//! CreateTopics: validate, write the topic to the metadata log, open its
//! partitions. Replication factor is 1 until the cluster work.

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_protocol::Uuid;
use rill_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use rill_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use crate::error_code;
use crate::server::Shared;

/// Kafka's config source code for a topic override.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut configs = BTreeMap::new();
        let mut null_config = None;
        for config in &topic.configs {
            match &config.value {
                Some(value) => {
                    configs.insert(config.name.clone(), value.clone());
                }
                None => null_config = Some(config.name.clone()),
            }
        }
        let outcome = if let Some(name) = null_config {
            Err((
                error_code::INVALID_CONFIG,
                format!("config `{name}` has a null value"),
            ))
        } else if !topic.assignments.is_empty() {
            assignments_check(shared, &topic.assignments, topic.num_partitions)
        } else {
            Ok(topic.num_partitions)
        };
        let outcome = match outcome {
            Ok(partitions) => shared
                .cluster
                .create_topic(
                    &topic.name,
                    partitions,
                    topic.replication_factor,
                    configs,
                    request.validate_only,
                )
                .await
                .map_err(|failure| (failure.code, failure.message)),
            Err(failure) => Err(failure),
        };
        results.push(match outcome {
            Ok(created) => CreatableTopicResult {
                name: topic.name,
                topic_id: Uuid::from_bytes(created.id.0),
                error_code: error_code::NONE,
                error_message: None,
                num_partitions: if request.validate_only {
                    topic.num_partitions.max(shared.config.num_partitions)
                } else {
                    created.partitions.len() as i32
                },
                replication_factor: 1,
                configs: (version >= 5).then(|| effective_configs(shared, &created.overrides)),
                ..Default::default()
            },
            Err((code, message)) => CreatableTopicResult {
                name: topic.name,
                error_code: code,
                error_message: Some(message),
                ..Default::default()
            },
        });
    }
    CreateTopicsResponse {
        topics: results,
        ..Default::default()
    }
}

/// Manual assignments may only name this broker, once per partition.
fn assignments_check(
    shared: &Shared,
    assignments: &[rill_protocol::messages::create_topics_request::CreatableReplicaAssignment],
    num_partitions: i32,
) -> Result<i32, (i16, String)> {
    if num_partitions != -1 {
        return Err((
            error_code::INVALID_REQUEST,
            "give either a partition count or assignments, not both".to_string(),
        ));
    }
    let node_id = shared.config.node_id;
    for (expected, assignment) in assignments.iter().enumerate() {
        if assignment.partition_index != expected as i32 {
            return Err((
                error_code::INVALID_PARTITIONS,
                "assignments must cover partitions 0..n in order".to_string(),
            ));
        }
        if assignment.broker_ids[..] != [node_id] {
            return Err((
                error_code::INVALID_REPLICATION_FACTOR,
                format!(
                    "this cluster has one broker, {node_id}; each partition must be assigned to it alone"
                ),
            ));
        }
    }
    Ok(assignments.len() as i32)
}

fn effective_configs(
    shared: &Shared,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    shared
        .config
        .topic_config_defaults()
        .into_iter()
        .map(|(name, default)| {
            let (value, source) = match overrides.get(name) {
                Some(value) => (value.clone(), DYNAMIC_TOPIC_CONFIG),
                None => (default, DEFAULT_CONFIG),
            };
            CreatableTopicConfigs {
                name: name.to_string(),
                value: Some(value),
                read_only: false,
                config_source: source,
                is_sensitive: false,
                ..Default::default()
            }
        })
        .collect()
}
