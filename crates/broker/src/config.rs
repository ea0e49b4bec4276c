//! Broker configuration: defaults, then a TOML file, then `RILL_*` environment
//! variables, then command-line flags (later sources win).
//!
//! Keys are flat snake_case names (`log_segment_bytes`), so the same key reads
//! the same in a file (`log_segment_bytes = 1048576`), in the environment
//! (`RILL_LOG_SEGMENT_BYTES=1048576`) and on the command line
//! (`--set log_segment_bytes=1048576`). Unknown keys are errors: a typo must
//! not silently run a broker with a default the operator meant to change.

mod quorum;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use quorum::Roles;

use rill_group::GroupConfig;
use serde::Deserialize;

/// Everything a broker needs to start.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's id in the cluster (Kafka's `node.id`).
    pub node_id: i32,
    /// Where partitions and cluster metadata are stored.
    pub data_dir: PathBuf,
    /// What this node runs: `broker,controller` (the default), `broker` or
    /// `controller` (KRaft's `process.roles`).
    pub roles: String,
    /// Address the controller listener binds (peers of the quorum reach
    /// this node there); defaults to this node's entry in the quorum.
    pub controller_listen: Option<String>,
    /// The controller quorum's voters as `ID@HOST:PORT,...` (KRaft's
    /// `controller.quorum.voters`); empty: this node alone.
    pub controller_quorum: String,
    /// A controller that hears no leader for this long (to twice this)
    /// calls an election (KRaft's `controller.quorum.election.timeout.ms`).
    pub controller_election_timeout_ms: u64,
    /// A broker whose heartbeats stop for this long is fenced: it leads
    /// nothing and is not offered to clients (Kafka's
    /// `broker.session.timeout.ms`).
    pub broker_session_timeout_ms: u64,
    /// How often a broker heartbeats to the active controller (Kafka's
    /// `broker.heartbeat.interval.ms`); less than the session timeout.
    pub broker_heartbeat_interval_ms: u64,
    /// Address the Kafka protocol listener binds.
    pub listen: String,
    /// `host:port` given to clients in Metadata answers; defaults to `listen`.
    pub advertised_listener: Option<String>,
    /// Address of the admin HTTP server (`/metrics`, `/health`, `/ready`).
    pub admin_listen: String,
    /// Open connections to the admin HTTP server; beyond this new ones are
    /// closed at once. A monitoring system needs a few; the limit keeps a
    /// flood of them from taking file descriptors the Kafka listener needs.
    pub admin_max_connections: usize,
    /// Time an admin HTTP request's head may take to arrive, counted from
    /// when the server starts waiting for it, so a client trickling header
    /// bytes (slowloris) or holding an idle connection is cut off.
    pub admin_request_timeout_ms: u64,
    /// Longest life of one admin HTTP connection, whatever it is doing: a
    /// client that stops reading an answer, or sends a body forever, holds
    /// its connection no longer than this.
    pub admin_connection_max_ms: u64,
    /// Create a topic when a client asks for its metadata or produces to it.
    pub auto_create_topics_enable: bool,
    /// Partitions of an auto-created topic, and of CreateTopics asking for -1.
    pub num_partitions: i32,
    /// Partitions the broker holds at most, over all topics; creations past
    /// it are refused with POLICY_VIOLATION. Unset: half the open-file limit
    /// (see `cluster::partition_limit`), since each partition holds a
    /// descriptor for its active segment.
    pub max_partitions: Option<usize>,
    /// Largest request frame accepted, checked before anything is allocated.
    /// Kafka's `socket.request.max.bytes`: large enough for a 100 MiB produce.
    pub socket_request_max_bytes: usize,
    /// Largest request frame of any API but Produce. Only Produce carries
    /// records; every other request is names, numbers and small metadata,
    /// so a client announcing a 100 MiB Metadata request is broken or
    /// hostile, and its connection is closed as soon as the frame's API key
    /// has arrived, before its body is read (as Kafka closes a connection
    /// whose frame passes its limit). 8 MiB leaves room for a SyncGroup
    /// carrying a large group's assignments.
    pub request_max_bytes_except_produce: usize,
    /// Bytes of requests read and not yet answered, across all connections
    /// (Kafka's `queued.max.request.bytes`): a connection waits for its
    /// share before reading a frame's body, so many clients sending large
    /// requests at once cannot hold more than this (a single frame larger
    /// than this waits until it is the only one).
    pub queued_max_request_bytes: usize,
    /// Open client connections; beyond this new ones are closed at once, so
    /// a connection storm cannot exhaust file descriptors.
    pub max_connections: usize,
    /// Requests read ahead of the one being answered on one connection.
    /// Kafka answers a connection's requests strictly in order; reading a few
    /// ahead keeps pipelined producers busy without buffering unboundedly.
    pub max_in_flight_requests_per_connection: usize,
    /// Bytes the requests read ahead on one connection, and those being
    /// answered, may hold together (a frame larger than this waits until
    /// the connection holds nothing else). Bounds a pipelining producer's
    /// share of the broker's memory; a few MiB keep the appends busy.
    pub max_queued_request_bytes_per_connection: usize,
    /// A connection that sends nothing for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Time allowed to receive one whole request once its first byte came, so
    /// a client trickling bytes cannot hold a frame buffer forever.
    pub request_receive_timeout_ms: u64,
    /// Largest Fetch response (Kafka's broker `fetch.max.bytes`).
    pub fetch_max_bytes: i32,
    /// Longest `max_wait_ms` a fetch may park for.
    pub fetch_max_wait_ms_limit: u64,

    // Log defaults; topics override them with Kafka's topic config names.
    pub log_segment_bytes: u64,
    pub log_segment_ms: i64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_flush_messages: Option<u64>,
    pub log_flush_ms: Option<u64>,
    pub log_index_interval_bytes: u32,
    pub log_segment_index_bytes: u32,
    pub message_max_bytes: u32,
    pub log_message_timestamp_type: String,
    pub log_cleanup_policy: String,
    /// Topic defaults for compaction (Kafka's `log.cleaner.*` names).
    pub log_cleaner_min_cleanable_ratio: f64,
    pub log_cleaner_min_compaction_lag_ms: i64,
    pub log_cleaner_max_compaction_lag_ms: i64,
    pub log_cleaner_delete_retention_ms: i64,
    // The cleaner itself.
    pub log_cleaner_enable: bool,
    pub log_cleaner_threads: usize,
    /// Memory for the cleaner's key maps, all threads together.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// Read+write rate of each cleaner thread; absent means unlimited.
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Pause when no log needs cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// How often segments past `retention.ms` or `retention.bytes` are
    /// looked for and deleted (Kafka's `log.retention.check.interval.ms`,
    /// 5 minutes there; a minute keeps disk use closer to the setting).
    pub log_retention_check_interval_ms: u64,
    /// `segment.bytes` of `__consumer_offsets` when it is created (Kafka's
    /// `offsets.topic.segment.bytes`).
    pub offsets_topic_segment_bytes: u64,
    /// Partitions of `__consumer_offsets` when it is created; an existing
    /// topic keeps its count (groups are placed by it).
    pub offsets_topic_num_partitions: i32,
    // The group coordinator, by Kafka's names; see rill_group::GroupConfig.
    pub group_initial_rebalance_delay_ms: i64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_max_size: usize,
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_heartbeat_interval_ms: i32,
    pub offsets_retention_minutes: i64,
    pub offsets_retention_check_interval_ms: i64,
    pub offset_metadata_max_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let group = GroupConfig::default();
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from("./rill-data"),
            roles: "broker,controller".to_string(),
            controller_listen: None,
            controller_quorum: String::new(),
            controller_election_timeout_ms: 1000,
            broker_session_timeout_ms: 9000,
            broker_heartbeat_interval_ms: 2000,
            listen: "127.0.0.1:9092".to_string(),
            advertised_listener: None,
            admin_listen: "127.0.0.1:9644".to_string(),
            admin_max_connections: 32,
            admin_request_timeout_ms: 10_000,
            admin_connection_max_ms: 60_000,
            auto_create_topics_enable: true,
            num_partitions: 1,
            max_partitions: None,
            socket_request_max_bytes: 100 * 1024 * 1024,
            request_max_bytes_except_produce: 8 * 1024 * 1024,
            // Two of the largest requests (`socket_request_max_bytes`) and
            // room besides: a few hundred MiB is what a broker may spend on
            // requests in flight, not 4,096 connections times their share.
            queued_max_request_bytes: 256 * 1024 * 1024,
            max_connections: 4096,
            max_in_flight_requests_per_connection: 16,
            max_queued_request_bytes_per_connection: 8 * 1024 * 1024,
            connections_max_idle_ms: 10 * 60 * 1000,
            request_receive_timeout_ms: 30_000,
            fetch_max_bytes: 55 * 1024 * 1024,
            fetch_max_wait_ms_limit: 30_000,
            log_segment_bytes: 1024 * 1024 * 1024,
            log_segment_ms: 7 * 24 * 3600 * 1000,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_flush_messages: None,
            log_flush_ms: None,
            log_index_interval_bytes: 4096,
            log_segment_index_bytes: 10 * 1024 * 1024,
            // Kafka's default: 1 MiB of records plus the 12-byte log overhead.
            message_max_bytes: 1024 * 1024 + 12,
            log_message_timestamp_type: "CreateTime".to_string(),
            log_cleanup_policy: "delete".to_string(),
            log_cleaner_min_cleanable_ratio: 0.5,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            log_cleaner_delete_retention_ms: 24 * 3600 * 1000,
            log_cleaner_enable: true,
            log_cleaner_threads: 1,
            log_cleaner_dedupe_buffer_size: 128 * 1024 * 1024,
            log_cleaner_io_max_bytes_per_second: None,
            log_cleaner_backoff_ms: 15_000,
            log_retention_check_interval_ms: 60_000,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_topic_num_partitions: group.offsets_topic_partitions,
            group_initial_rebalance_delay_ms: group.initial_rebalance_delay_ms,
            group_min_session_timeout_ms: group.session_timeout_min_ms,
            group_max_session_timeout_ms: group.session_timeout_max_ms,
            group_max_size: group.group_size_max,
            group_consumer_session_timeout_ms: group.consumer_session_timeout_ms,
            group_consumer_heartbeat_interval_ms: group.consumer_heartbeat_interval_ms,
            offsets_retention_minutes: group.offsets_retention_ms / 60_000,
            offsets_retention_check_interval_ms: group.offsets_retention_check_interval_ms,
            offset_metadata_max_bytes: group.offset_metadata_bytes_max,
        }
    }
}

/// Why a configuration could not be loaded; each names the source and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Setting { key: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The layered sources of a configuration, lowest precedence first.
#[derive(Debug, Default)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    /// `(KEY, value)` pairs from the environment, e.g. `("RILL_NODE_ID", "3")`.
    pub env: Vec<(String, String)>,
    /// `key=value` settings from the command line, highest precedence.
    pub overrides: Vec<(String, String)>,
}

impl BrokerConfig {
    /// Builds a configuration from its layered sources.
    pub fn load(sources: &ConfigSources) -> Result<BrokerConfig, ConfigError> {
        let mut table = match &sources.file {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        for (name, value) in &sources.env {
            let Some(key) = name.strip_prefix("RILL_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // RILL_BROKERS and RILL_LOG are for the client tools and the log
            // filter, not broker settings.
            if matches!(key.as_str(), "brokers" | "log") {
                continue;
            }
            table.insert(key, parse_scalar(value));
        }
        for (key, value) in &sources.overrides {
            table.insert(key.clone(), parse_scalar(value));
        }
        let config: BrokerConfig =
            BrokerConfig::deserialize(toml::Value::Table(table)).map_err(|error| {
                let message = error.message().to_string();
                // Name the environment variable when that is where an
                // unknown key came from: nobody looks for a typo in a file
                // they never wrote.
                let from_env = sources.env.iter().find(|(name, _)| {
                    name.strip_prefix("RILL_").is_some_and(|key| {
                        message.contains(&format!("`{}`", key.to_ascii_lowercase()))
                    })
                });
                match from_env {
                    Some((name, _)) => ConfigError::Setting {
                        key: name.clone(),
                        message: format!(
                            "the environment variable is not a Rill setting ({message})"
                        ),
                    },
                    None => ConfigError::Setting {
                        key: "config".to_string(),
                        message,
                    },
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Setting {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if self.node_id < 0 {
            return invalid("node_id", "must be zero or positive");
        }
        if self.num_partitions < 1 {
            return invalid("num_partitions", "must be at least 1");
        }
        if !(10..=60_000).contains(&self.controller_election_timeout_ms) {
            return invalid(
                "controller_election_timeout_ms",
                "must be between 10 and 60000",
            );
        }
        if self.broker_heartbeat_interval_ms == 0
            || self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms
            || self.broker_session_timeout_ms > 3_600_000
        {
            return invalid(
                "broker_heartbeat_interval_ms",
                "must be at least 1 and less than broker_session_timeout_ms (at most an hour)",
            );
        }
        self.validate_quorum()?;
        if self.socket_request_max_bytes < 1024 || self.socket_request_max_bytes > i32::MAX as usize
        {
            return invalid(
                "socket_request_max_bytes",
                "must be between 1024 and 2147483647",
            );
        }
        if self.request_max_bytes_except_produce < 1024
            || self.request_max_bytes_except_produce > i32::MAX as usize
        {
            return invalid(
                "request_max_bytes_except_produce",
                "must be between 1024 and 2147483647",
            );
        }
        if self.queued_max_request_bytes == 0 || self.queued_max_request_bytes > i32::MAX as usize {
            return invalid(
                "queued_max_request_bytes",
                "must be between 1 and 2147483647",
            );
        }
        if self.max_partitions == Some(0) {
            return invalid("max_partitions", "must be at least 1");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.admin_max_connections == 0 {
            return invalid("admin_max_connections", "must be at least 1");
        }
        // A day at most: hyper adds the timeout to the clock, which must
        // not overflow, and no admin request needs longer.
        const ADMIN_TIMEOUT_MS_MAX: u64 = 24 * 3600 * 1000;
        for (key, value) in [
            ("admin_request_timeout_ms", self.admin_request_timeout_ms),
            ("admin_connection_max_ms", self.admin_connection_max_ms),
        ] {
            if !(1..=ADMIN_TIMEOUT_MS_MAX).contains(&value) {
                return invalid(key, "must be between 1 and 86400000 (a day)");
            }
        }
        if self.max_in_flight_requests_per_connection == 0 {
            return invalid(
                "max_in_flight_requests_per_connection",
                "must be at least 1",
            );
        }
        if self.max_queued_request_bytes_per_connection == 0
            || self.max_queued_request_bytes_per_connection > i32::MAX as usize
        {
            return invalid(
                "max_queued_request_bytes_per_connection",
                "must be between 1 and 2147483647",
            );
        }
        if self.fetch_max_bytes < 1 {
            return invalid("fetch_max_bytes", "must be positive");
        }
        if self.log_retention_check_interval_ms == 0 {
            return invalid("log_retention_check_interval_ms", "must be positive");
        }
        if self.log_segment_bytes < 1024 {
            return invalid("log_segment_bytes", "must be at least 1024");
        }
        if self.offsets_topic_segment_bytes < 1024 {
            return invalid("offsets_topic_segment_bytes", "must be at least 1024");
        }
        if !(1..=10_000).contains(&self.offsets_topic_num_partitions) {
            return invalid(
                "offsets_topic_num_partitions",
                "must be between 1 and 10000",
            );
        }
        if self.group_min_session_timeout_ms < 1 {
            return invalid("group_min_session_timeout_ms", "must be positive");
        }
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms {
            return invalid(
                "group_max_session_timeout_ms",
                "must be at least group_min_session_timeout_ms",
            );
        }
        if self.group_max_size == 0 {
            return invalid("group_max_size", "must be at least 1");
        }
        for (key, value) in [
            (
                "group_consumer_session_timeout_ms",
                i64::from(self.group_consumer_session_timeout_ms),
            ),
            (
                "group_consumer_heartbeat_interval_ms",
                i64::from(self.group_consumer_heartbeat_interval_ms),
            ),
            ("offsets_retention_minutes", self.offsets_retention_minutes),
            (
                "offsets_retention_check_interval_ms",
                self.offsets_retention_check_interval_ms,
            ),
        ] {
            if value < 1 {
                return invalid(key, "must be positive");
            }
        }
        if self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms {
            return invalid(
                "group_consumer_heartbeat_interval_ms",
                "must be below group_consumer_session_timeout_ms",
            );
        }
        if self.group_initial_rebalance_delay_ms < 0 {
            return invalid(
                "group_initial_rebalance_delay_ms",
                "must be zero or positive",
            );
        }
        // The topic defaults follow the topic configs' own rules.
        let ratio = self.log_cleaner_min_cleanable_ratio.to_string();
        for (key, topic_key, value) in [
            (
                "log_cleanup_policy",
                "cleanup.policy",
                self.log_cleanup_policy.as_str(),
            ),
            (
                "log_cleaner_min_cleanable_ratio",
                "min.cleanable.dirty.ratio",
                &ratio,
            ),
        ] {
            if let Err(message) = rill_metadata::topic::validate_topic_config(topic_key, value) {
                return invalid(key, &message);
            }
        }
        if self.log_cleaner_threads == 0 || self.log_cleaner_threads > 64 {
            return invalid("log_cleaner_threads", "must be between 1 and 64");
        }
        if self.log_cleaner_dedupe_buffer_size < 1024 * 1024 {
            return invalid("log_cleaner_dedupe_buffer_size", "must be at least 1048576");
        }
        for (key, value) in [
            (
                "log_cleaner_min_compaction_lag_ms",
                self.log_cleaner_min_compaction_lag_ms,
            ),
            (
                "log_cleaner_delete_retention_ms",
                self.log_cleaner_delete_retention_ms,
            ),
        ] {
            if value < 0 {
                return invalid(key, "must be zero or positive");
            }
        }
        if self.log_cleaner_max_compaction_lag_ms < 1 {
            return invalid("log_cleaner_max_compaction_lag_ms", "must be positive");
        }
        if !matches!(
            self.log_message_timestamp_type.as_str(),
            "CreateTime" | "LogAppendTime"
        ) {
            return invalid(
                "log_message_timestamp_type",
                "must be CreateTime or LogAppendTime",
            );
        }
        Ok(())
    }

    /// The group coordinator's settings.
    pub fn group_config(&self) -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            session_timeout_min_ms: self.group_min_session_timeout_ms,
            session_timeout_max_ms: self.group_max_session_timeout_ms,
            group_size_max: self.group_max_size,
            offset_metadata_bytes_max: self.offset_metadata_max_bytes,
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval_ms: self.offsets_retention_check_interval_ms,
            consumer_session_timeout_ms: self.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
            offsets_topic_partitions: self.offsets_topic_num_partitions,
            ..GroupConfig::default()
        }
    }

    /// The address advertised to clients.
    pub fn advertised(&self) -> &str {
        self.advertised_listener.as_deref().unwrap_or(&self.listen)
    }

    /// The broker-level default for each Kafka topic config, by its Kafka name.
    pub fn topic_config_defaults(&self) -> BTreeMap<&'static str, String> {
        let optional = |value: Option<u64>| match value {
            Some(value) => value.to_string(),
            // Kafka's "never" for both flush settings.
            None => i64::MAX.to_string(),
        };
        BTreeMap::from([
            ("cleanup.policy", self.log_cleanup_policy.clone()),
            (
                "delete.retention.ms",
                self.log_cleaner_delete_retention_ms.to_string(),
            ),
            (
                "max.compaction.lag.ms",
                self.log_cleaner_max_compaction_lag_ms.to_string(),
            ),
            (
                "min.cleanable.dirty.ratio",
                self.log_cleaner_min_cleanable_ratio.to_string(),
            ),
            (
                "min.compaction.lag.ms",
                self.log_cleaner_min_compaction_lag_ms.to_string(),
            ),
            ("flush.messages", optional(self.log_flush_messages)),
            ("flush.ms", optional(self.log_flush_ms)),
            (
                "index.interval.bytes",
                self.log_index_interval_bytes.to_string(),
            ),
            ("max.message.bytes", self.message_max_bytes.to_string()),
            (
                "message.timestamp.type",
                self.log_message_timestamp_type.clone(),
            ),
            ("retention.bytes", self.log_retention_bytes.to_string()),
            ("retention.ms", self.log_retention_ms.to_string()),
            ("segment.bytes", self.log_segment_bytes.to_string()),
            (
                "segment.index.bytes",
                self.log_segment_index_bytes.to_string(),
            ),
            ("segment.ms", self.log_segment_ms.to_string()),
        ])
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.message().to_string(),
        })
}

/// Reads an environment or command-line value as the TOML scalar it looks
/// like, so `RILL_NODE_ID=3` is an integer and `RILL_LISTEN=a:1` a string.
fn parse_scalar(value: &str) -> toml::Value {
    if let Ok(integer) = value.parse::<i64>() {
        return toml::Value::Integer(integer);
    }
    // Ratios (`0.5`); not words like `nan` or `inf`, which stay strings.
    if value.contains('.')
        && let Ok(float) = value.parse::<f64>()
        && float.is_finite()
    {
        return toml::Value::Float(float);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_cleaner_settings_reach_their_configs_and_are_checked() {
        let load = |pairs: &[(&str, &str)]| {
            BrokerConfig::load(&ConfigSources {
                overrides: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ConfigSources::default()
            })
        };
        let config = load(&[
            ("group_min_session_timeout_ms", "1000"),
            ("group_max_size", "7"),
            ("offsets_retention_minutes", "2"),
            ("log_cleaner_min_cleanable_ratio", "0.25"),
        ])
        .unwrap();
        let group = config.group_config();
        assert_eq!(group.session_timeout_min_ms, 1000);
        assert_eq!(group.group_size_max, 7);
        assert_eq!(group.offsets_retention_ms, 120_000);
        assert_eq!(
            config.topic_config_defaults()["min.cleanable.dirty.ratio"],
            "0.25"
        );
        for bad in [
            [
                ("group_max_session_timeout_ms", "10"),
                ("group_min_session_timeout_ms", "20"),
            ],
            [
                ("group_consumer_heartbeat_interval_ms", "50000"),
                ("group_consumer_session_timeout_ms", "45000"),
            ],
            [
                ("log_cleaner_min_cleanable_ratio", "2"),
                ("group_max_size", "1"),
            ],
            [("log_cleanup_policy", "shred"), ("group_max_size", "1")],
            [
                ("offsets_topic_num_partitions", "0"),
                ("group_max_size", "1"),
            ],
        ] {
            assert!(
                matches!(load(&bad), Err(ConfigError::Setting { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn later_sources_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        std::fs::write(
            &path,
            "node_id = 1\nlisten = \"127.0.0.1:1\"\nnum_partitions = 3\n",
        )
        .unwrap();
        let sources = ConfigSources {
            file: Some(path),
            env: vec![
                ("RILL_NODE_ID".into(), "2".into()),
                ("RILL_LISTEN".into(), "127.0.0.1:2".into()),
                ("RILL_BROKERS".into(), "ignored:1".into()),
                ("HOME".into(), "/root".into()),
            ],
            overrides: vec![("node_id".into(), "3".into())],
        };
        let config = BrokerConfig::load(&sources).unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.listen, "127.0.0.1:2");
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.admin_listen, "127.0.0.1:9644");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let typo = ConfigSources {
            overrides: vec![("log_segmnt_bytes".into(), "1".into())],
            ..Default::default()
        };
        let error = BrokerConfig::load(&typo).unwrap_err().to_string();
        assert!(error.contains("log_segmnt_bytes"), "{error}");

        let env_typo = ConfigSources {
            env: vec![("RILL_LISTN".into(), "127.0.0.1:1".into())],
            ..Default::default()
        };
        let error = BrokerConfig::load(&env_typo).unwrap_err().to_string();
        assert!(error.contains("RILL_LISTN"), "{error}");

        let bad = ConfigSources {
            overrides: vec![("num_partitions".into(), "0".into())],
            ..Default::default()
        };
        let error = BrokerConfig::load(&bad).unwrap_err().to_string();
        assert!(error.contains("num_partitions"), "{error}");
    }

    #[test]
    fn request_budgets_come_from_the_environment_and_are_checked() {
        let env = |pairs: &[(&str, &str)]| {
            BrokerConfig::load(&ConfigSources {
                env: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ConfigSources::default()
            })
        };
        let config = env(&[
            ("RILL_QUEUED_MAX_REQUEST_BYTES", "1048576"),
            ("RILL_REQUEST_MAX_BYTES_EXCEPT_PRODUCE", "65536"),
        ])
        .unwrap();
        assert_eq!(config.queued_max_request_bytes, 1 << 20);
        assert_eq!(config.request_max_bytes_except_produce, 1 << 16);
        for (key, value) in [
            ("RILL_QUEUED_MAX_REQUEST_BYTES", "0"),
            ("RILL_REQUEST_MAX_BYTES_EXCEPT_PRODUCE", "10"),
        ] {
            let error = env(&[(key, value)]).unwrap_err().to_string();
            assert!(error.contains(&key[5..].to_ascii_lowercase()), "{error}");
        }
    }
}
