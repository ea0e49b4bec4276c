//! Metadata: the brokers (this one), and each topic's partitions with their
//! leader (this broker). Asking for a topic that does not exist creates it
//! when `auto_create_topics_enable` is on and the client allows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use rill_protocol::messages::{MetadataRequest, MetadataResponse};
use rill_protocol::{InlineVec, Uuid};

use crate::cluster::TopicHandle;
use crate::error_code;
use crate::server::Shared;

/// Kafka's ACL operation codes, as bits of an "authorized operations" set.
const READ: i32 = 3;
const WRITE: i32 = 4;
const CREATE: i32 = 5;
const DELETE: i32 = 6;
const ALTER: i32 = 7;
const DESCRIBE: i32 = 8;
const CLUSTER_ACTION: i32 = 9;
const DESCRIBE_CONFIGS: i32 = 10;
const ALTER_CONFIGS: i32 = 11;
const IDEMPOTENT_WRITE: i32 = 12;

/// Rill has no authorizer, so a client may do everything that applies to a
/// topic, as Kafka answers without one. (Kafka's "not requested" value,
/// i32::MIN, is the default; clients that ask and get it back fail, e.g.
/// kafka-python's admin client.)
pub const TOPIC_OPERATIONS: i32 = (1 << READ)
    | (1 << WRITE)
    | (1 << CREATE)
    | (1 << DELETE)
    | (1 << ALTER)
    | (1 << DESCRIBE)
    | (1 << DESCRIBE_CONFIGS)
    | (1 << ALTER_CONFIGS);

/// Everything that applies to the cluster resource.
pub const CLUSTER_OPERATIONS: i32 = (1 << CREATE)
    | (1 << ALTER)
    | (1 << DESCRIBE)
    | (1 << CLUSTER_ACTION)
    | (1 << DESCRIBE_CONFIGS)
    | (1 << ALTER_CONFIGS)
    | (1 << IDEMPOTENT_WRITE);

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let node_id = shared.config.node_id;
    // v0 asks for every topic with an empty list; later versions with null.
    let wanted = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    let topics = match wanted {
        None => shared
            .cluster
            .topics()
            .iter()
            .map(|topic| describe(topic, node_id))
            .collect(),
        Some(requested) => {
            let mut answers = Vec::with_capacity(requested.len());
            for topic in requested {
                let answer = match (&topic.name, topic.topic_id) {
                    (Some(name), _) => {
                        lookup_or_create(shared, name, request.allow_auto_topic_creation).await
                    }
                    (None, id) if id != Uuid::default() => {
                        match shared
                            .cluster
                            .topic_by_id(rill_metadata::TopicId(*id.as_bytes()))
                        {
                            Some(handle) => describe(&handle, node_id),
                            None => MetadataResponseTopic {
                                error_code: error_code::UNKNOWN_TOPIC_ID,
                                topic_id: id,
                                ..Default::default()
                            },
                        }
                    }
                    (None, _) => MetadataResponseTopic {
                        error_code: error_code::INVALID_REQUEST,
                        ..Default::default()
                    },
                };
                answers.push(answer);
            }
            answers
        }
    };
    let mut topics: Vec<MetadataResponseTopic> = topics;
    if request.include_topic_authorized_operations {
        for topic in &mut topics {
            if topic.error_code == error_code::NONE {
                topic.topic_authorized_operations = TOPIC_OPERATIONS;
            }
        }
    }
    MetadataResponse {
        cluster_authorized_operations: if request.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            i32::MIN
        },
        brokers: shared
            .cluster
            .live_brokers(&shared.advertised_host, shared.advertised_port)
            .into_iter()
            .map(|(node_id, host, port, rack)| MetadataResponseBroker {
                node_id,
                host,
                port,
                rack,
                ..Default::default()
            })
            .collect(),
        cluster_id: Some(shared.cluster.cluster_id().to_string()),
        controller_id: shared.cluster.active_controller(),
        topics,
        ..Default::default()
    }
}

async fn lookup_or_create(
    shared: &Arc<Shared>,
    name: &str,
    client_allows_creation: bool,
) -> MetadataResponseTopic {
    let node_id = shared.config.node_id;
    if let Some(topic) = shared.cluster.topic(name) {
        return describe(&topic, node_id);
    }
    let error = |code| MetadataResponseTopic {
        error_code: code,
        name: Some(name.to_string()),
        ..Default::default()
    };
    if !(client_allows_creation && shared.config.auto_create_topics_enable) {
        return error(error_code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    match shared
        .cluster
        .create_topic(name, -1, -1, BTreeMap::new(), false)
        .await
    {
        Ok(topic) => describe(&topic, node_id),
        // Another request created it between the lookup and the create.
        Err(failure) if failure.code == error_code::TOPIC_ALREADY_EXISTS => {
            match shared.cluster.topic(name) {
                Some(topic) => describe(&topic, node_id),
                None => error(error_code::UNKNOWN_TOPIC_OR_PARTITION),
            }
        }
        Err(failure) => error(failure.code),
    }
}

pub fn describe(topic: &TopicHandle, node_id: i32) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: error_code::NONE,
        name: Some(topic.name.clone()),
        topic_id: Uuid::from_bytes(topic.id.0),
        is_internal: topic.internal,
        partitions: topic
            .partitions
            .iter()
            .map(|partition| MetadataResponsePartition {
                error_code: error_code::NONE,
                partition_index: partition.index,
                leader_id: node_id,
                leader_epoch: 0,
                replica_nodes: InlineVec::from_slice(&[node_id]),
                isr_nodes: InlineVec::from_slice(&[node_id]),
                offline_replicas: InlineVec::new(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
