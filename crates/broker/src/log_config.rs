//! A topic's log settings: its config overrides (Kafka's topic-level names)
//! over the broker's defaults, as the log crate takes them.

use std::collections::BTreeMap;

use rill_log::{LogConfig, TimestampType};

use crate::config::BrokerConfig;

/// The log settings of a topic: its overrides over the broker defaults.
/// Overrides were validated when they were set.
pub fn log_config(config: &BrokerConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let long = |name: &str, default: i64| -> i64 {
        overrides
            .get(name)
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(default)
    };
    let optional = |name: &str, default: Option<u64>| -> Option<u64> {
        match overrides
            .get(name)
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            Some(value) if value >= i64::MAX / 2 => None,
            Some(value) => u64::try_from(value).ok(),
            None => default,
        }
    };
    let timestamp_type = overrides
        .get("message.timestamp.type")
        .unwrap_or(&config.log_message_timestamp_type);
    let policy = overrides
        .get("cleanup.policy")
        .unwrap_or(&config.log_cleanup_policy);
    let has_policy = |name: &str| policy.split(',').any(|p| p.trim() == name);
    let ratio = overrides
        .get("min.cleanable.dirty.ratio")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| (0.0..=1.0).contains(r))
        .unwrap_or(config.log_cleaner_min_cleanable_ratio);
    LogConfig {
        segment_bytes: long("segment.bytes", config.log_segment_bytes as i64).max(1024) as u64,
        segment_ms: long("segment.ms", config.log_segment_ms),
        index_interval_bytes: long(
            "index.interval.bytes",
            config.log_index_interval_bytes as i64,
        )
        .clamp(0, u32::MAX as i64) as u32,
        segment_index_bytes: long("segment.index.bytes", config.log_segment_index_bytes as i64)
            .clamp(64, u32::MAX as i64) as u32,
        flush_messages: optional("flush.messages", config.log_flush_messages),
        flush_ms: optional("flush.ms", config.log_flush_ms),
        retention_ms: long("retention.ms", config.log_retention_ms),
        retention_bytes: long("retention.bytes", config.log_retention_bytes),
        max_message_bytes: long("max.message.bytes", config.message_max_bytes as i64)
            .clamp(0, i32::MAX as i64) as u32,
        message_timestamp_type: if timestamp_type == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        cleanup_delete: has_policy("delete"),
        cleanup_compact: has_policy("compact"),
        min_cleanable_dirty_ratio: ratio,
        min_compaction_lag_ms: long(
            "min.compaction.lag.ms",
            config.log_cleaner_min_compaction_lag_ms,
        ),
        max_compaction_lag_ms: long(
            "max.compaction.lag.ms",
            config.log_cleaner_max_compaction_lag_ms,
        ),
        delete_retention_ms: long(
            "delete.retention.ms",
            config.log_cleaner_delete_retention_ms,
        ),
    }
}
