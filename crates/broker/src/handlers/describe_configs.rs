//! DescribeConfigs: a topic's configs (its overrides over the broker
//! defaults, each with its source) and the broker's own settings.

use std::sync::Arc;

use rill_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use rill_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use crate::error_code;
use crate::server::Shared;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Why a resource that is not a topic cannot have its configs altered.
pub fn not_alterable(resource_type: i8) -> (i16, String) {
    let message = if resource_type == RESOURCE_BROKER {
        "broker configs are static in Rill: set them in the config file, the environment or on the command line".to_string()
    } else {
        format!("resource type {resource_type} is not supported")
    };
    (error_code::INVALID_REQUEST, message)
}

/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

pub fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let keys = resource.configuration_keys.clone();
            let wanted = |name: &str| {
                keys.as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k == name))
            };
            let mut result = DescribeConfigsResult {
                error_code: error_code::NONE,
                error_message: None,
                resource_type: resource.resource_type,
                resource_name: resource.resource_name.clone(),
                ..Default::default()
            };
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => {
                    topic_configs(shared, &resource.resource_name, request.include_synonyms)
                }
                RESOURCE_BROKER => broker_configs(shared, &resource.resource_name),
                other => Err((
                    error_code::INVALID_REQUEST,
                    format!("resource type {other} is not supported"),
                )),
            };
            match entries {
                Ok(entries) => {
                    result.configs = entries
                        .into_iter()
                        .filter(|entry| wanted(&entry.name))
                        .map(|mut entry| {
                            if version == 0 {
                                entry.is_default = entry.config_source == DEFAULT_CONFIG;
                            }
                            entry
                        })
                        .collect();
                }
                Err((code, message)) => {
                    result.error_code = code;
                    result.error_message = Some(message);
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}

fn topic_configs(
    shared: &Shared,
    name: &str,
    include_synonyms: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    let topic = shared.cluster.topic(name).ok_or_else(|| {
        (
            error_code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic '{name}' does not exist"),
        )
    })?;
    let mut defaults = shared.config.topic_config_defaults();
    // A config set on the topic that has no broker default (one Rill accepts
    // and ignores, say) is described too, with its value as its own default.
    for (config, value) in &topic.overrides {
        if let Some(known) = rill_metadata::topic::known_topic_config_name(config) {
            defaults.entry(known).or_insert_with(|| value.clone());
        }
    }
    Ok(defaults
        .into_iter()
        .map(|(config, default)| {
            let (value, source) = match topic.overrides.get(config) {
                Some(value) => (value.clone(), DYNAMIC_TOPIC_CONFIG),
                None => (default.clone(), DEFAULT_CONFIG),
            };
            let mut synonyms = Vec::new();
            if include_synonyms {
                if source == DYNAMIC_TOPIC_CONFIG {
                    synonyms.push(DescribeConfigsSynonym {
                        name: config.to_string(),
                        value: Some(value.clone()),
                        source: DYNAMIC_TOPIC_CONFIG,
                        ..Default::default()
                    });
                }
                synonyms.push(DescribeConfigsSynonym {
                    name: config.to_string(),
                    value: Some(default),
                    source: DEFAULT_CONFIG,
                    ..Default::default()
                });
            }
            DescribeConfigsResourceResult {
                name: config.to_string(),
                value: Some(value),
                read_only: false,
                config_source: source,
                is_sensitive: false,
                synonyms,
                config_type: config_type(config),
                ..Default::default()
            }
        })
        .collect())
}

fn broker_configs(
    shared: &Shared,
    name: &str,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    let config = &shared.config;
    // "" is the cluster-wide default resource; Rill has no dynamic broker
    // configs, so it describes the same static settings.
    if !name.is_empty() && name != config.node_id.to_string() {
        return Err((
            error_code::INVALID_REQUEST,
            format!("this is broker {}, not `{name}`", config.node_id),
        ));
    }
    let optional = |value: Option<u64>| value.map_or(i64::MAX.to_string(), |v| v.to_string());
    let entries: Vec<(&str, String, i8)> = vec![
        ("node.id", config.node_id.to_string(), TYPE_INT),
        ("broker.id", config.node_id.to_string(), TYPE_INT),
        (
            "log.dirs",
            config.data_dir.display().to_string(),
            TYPE_STRING,
        ),
        (
            "listeners",
            format!("PLAINTEXT://{}", config.listen),
            TYPE_LIST,
        ),
        (
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}:{}",
                shared.advertised_host, shared.advertised_port
            ),
            TYPE_LIST,
        ),
        (
            "num.partitions",
            config.num_partitions.to_string(),
            TYPE_INT,
        ),
        ("default.replication.factor", "1".to_string(), TYPE_INT),
        (
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            TYPE_INT,
        ),
        (
            "message.max.bytes",
            config.message_max_bytes.to_string(),
            TYPE_INT,
        ),
        (
            "log.segment.bytes",
            config.log_segment_bytes.to_string(),
            TYPE_INT,
        ),
        ("log.roll.ms", config.log_segment_ms.to_string(), TYPE_LONG),
        (
            "log.retention.ms",
            config.log_retention_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "log.retention.bytes",
            config.log_retention_bytes.to_string(),
            TYPE_LONG,
        ),
        (
            "log.flush.interval.messages",
            optional(config.log_flush_messages),
            TYPE_LONG,
        ),
        (
            "log.flush.interval.ms",
            optional(config.log_flush_ms),
            TYPE_LONG,
        ),
        (
            "log.index.interval.bytes",
            config.log_index_interval_bytes.to_string(),
            TYPE_INT,
        ),
        (
            "log.message.timestamp.type",
            config.log_message_timestamp_type.clone(),
            TYPE_STRING,
        ),
        (
            "log.cleanup.policy",
            config.log_cleanup_policy.clone(),
            TYPE_LIST,
        ),
        (
            "fetch.max.bytes",
            config.fetch_max_bytes.to_string(),
            TYPE_INT,
        ),
        (
            "log.cleaner.enable",
            config.log_cleaner_enable.to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "log.cleaner.threads",
            config.log_cleaner_threads.to_string(),
            TYPE_INT,
        ),
        (
            "log.cleaner.dedupe.buffer.size",
            config.log_cleaner_dedupe_buffer_size.to_string(),
            TYPE_LONG,
        ),
        (
            "log.cleaner.io.max.bytes.per.second",
            config
                .log_cleaner_io_max_bytes_per_second
                .map_or_else(|| f64::MAX.to_string(), |rate| rate.to_string()),
            TYPE_DOUBLE,
        ),
        (
            "log.cleaner.backoff.ms",
            config.log_cleaner_backoff_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "log.cleaner.min.cleanable.ratio",
            config.log_cleaner_min_cleanable_ratio.to_string(),
            TYPE_DOUBLE,
        ),
        (
            "log.cleaner.min.compaction.lag.ms",
            config.log_cleaner_min_compaction_lag_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "log.cleaner.max.compaction.lag.ms",
            config.log_cleaner_max_compaction_lag_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "log.cleaner.delete.retention.ms",
            config.log_cleaner_delete_retention_ms.to_string(),
            TYPE_LONG,
        ),
    ];
    Ok(entries
        .into_iter()
        .map(|(name, value, config_type)| DescribeConfigsResourceResult {
            name: name.to_string(),
            value: Some(value),
            read_only: true,
            config_source: STATIC_BROKER_CONFIG,
            is_sensitive: false,
            config_type,
            ..Default::default()
        })
        .collect())
}

fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => TYPE_LIST,
        "message.timestamp.type" | "compression.type" => TYPE_STRING,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        "index.interval.bytes"
        | "max.message.bytes"
        | "segment.bytes"
        | "segment.index.bytes"
        | "min.insync.replicas" => TYPE_INT,
        _ => TYPE_LONG,
    }
}
