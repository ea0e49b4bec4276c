//! What makes a topic name and a topic config valid.

/// Kafka's limit: a partition directory is `<topic>-<partition>`, and 249
/// leaves room for the suffix within the usual 255-byte file-name limit.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// Kafka's internal topics (`Topic.INTERNAL_TOPICS`): the brokers write
/// them, clients only read them. A user may still create other topics
/// whose names start with `__`, as in Kafka; those are ordinary topics.
pub const INTERNAL_TOPICS: [&str; 3] = [
    "__consumer_offsets",
    "__transaction_state",
    "__share_group_state",
];

/// Whether `name` is one of Kafka's internal topics: clients may not
/// produce to it, delete its records, delete it or add partitions to it.
pub fn is_internal(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Checks a topic name against Kafka's rules, with the reason when invalid.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name `{name}` is not allowed"));
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(format!(
            "topic name is {} characters long; the limit is {TOPIC_NAME_LENGTH_MAX}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{}` contains `{}`; only ASCII letters, digits, '.', '_' and '-' are allowed",
            name.escape_debug(),
            bad.escape_debug()
        ));
    }
    Ok(())
}

/// The kind of value a topic config takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// A non-negative integer (bytes, messages, milliseconds) or, where
    /// `allows_minus_one`, -1 for "unlimited".
    Long {
        allows_minus_one: bool,
        min: i64,
    },
    CleanupPolicy,
    TimestampType,
    /// A fraction between 0 and 1.
    Ratio,
    /// Accepted and stored for client compatibility; Rill does not act on it.
    Passive,
    /// A config Kafka 3.x still accepts but that means nothing here (the
    /// reason says why): accepted, stored, reported by DescribeConfigs, and
    /// logged as ignored where it is set, so a tool or script written for
    /// Kafka keeps working. `values` checks the value's shape all the same.
    Ignored {
        values: IgnoredValues,
        reason: &'static str,
    },
}

/// The shape of an ignored config's value, as Kafka checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredValues {
    Bool,
    Long,
    /// Any text (a version such as `3.0-IV1`, a list of replicas).
    Text,
}

const NO_REPLICAS: &str = "one node has no other replica to elect or throttle";
const NO_TIERED_STORAGE: &str = "Rill has no tiered storage";
const NO_RECOMPRESSION: &str = "the broker stores batches as produced and never recompresses";
const NO_BROKER_CLOCK_CHECK: &str = "record timestamps are not checked against the broker's clock";

/// The Kafka 3.x topic configs Rill accepts and ignores, and why.
const IGNORED_TOPIC_CONFIGS: &[(&str, IgnoredValues, &str)] = &[
    (
        "compression.gzip.level",
        IgnoredValues::Long,
        NO_RECOMPRESSION,
    ),
    (
        "compression.lz4.level",
        IgnoredValues::Long,
        NO_RECOMPRESSION,
    ),
    (
        "compression.zstd.level",
        IgnoredValues::Long,
        NO_RECOMPRESSION,
    ),
    (
        "file.delete.delay.ms",
        IgnoredValues::Long,
        "a deleted segment's files are removed as soon as no read holds them",
    ),
    (
        "follower.replication.throttled.replicas",
        IgnoredValues::Text,
        NO_REPLICAS,
    ),
    (
        "leader.replication.throttled.replicas",
        IgnoredValues::Text,
        NO_REPLICAS,
    ),
    (
        "local.retention.bytes",
        IgnoredValues::Long,
        NO_TIERED_STORAGE,
    ),
    ("local.retention.ms", IgnoredValues::Long, NO_TIERED_STORAGE),
    (
        "message.downconversion.enable",
        IgnoredValues::Bool,
        "Rill serves no Fetch version old enough to need down-conversion",
    ),
    (
        "message.format.version",
        IgnoredValues::Text,
        "record batch format v2 is the only format (Kafka ignores it too since 3.0, KIP-724)",
    ),
    (
        "message.timestamp.after.max.ms",
        IgnoredValues::Long,
        NO_BROKER_CLOCK_CHECK,
    ),
    (
        "message.timestamp.before.max.ms",
        IgnoredValues::Long,
        NO_BROKER_CLOCK_CHECK,
    ),
    (
        "message.timestamp.difference.max.ms",
        IgnoredValues::Long,
        NO_BROKER_CLOCK_CHECK,
    ),
    (
        "preallocate",
        IgnoredValues::Bool,
        "segment files are not preallocated",
    ),
    (
        "remote.log.copy.disable",
        IgnoredValues::Bool,
        NO_TIERED_STORAGE,
    ),
    (
        "remote.log.delete.on.disable",
        IgnoredValues::Bool,
        NO_TIERED_STORAGE,
    ),
    (
        "remote.storage.enable",
        IgnoredValues::Bool,
        NO_TIERED_STORAGE,
    ),
    (
        "segment.jitter.ms",
        IgnoredValues::Long,
        "segments roll at segment.ms, without jitter",
    ),
    (
        "unclean.leader.election.enable",
        IgnoredValues::Bool,
        NO_REPLICAS,
    ),
];

/// The topic config `name` as Rill knows it: its `'static` spelling and
/// its kind, an ignored one included.
fn lookup(name: &str) -> Option<(&'static str, ConfigKind)> {
    let known = TOPIC_CONFIGS.iter().find(|(known, _)| *known == name);
    known.copied().or_else(|| {
        IGNORED_TOPIC_CONFIGS
            .iter()
            .find(|(known, _, _)| *known == name)
            .map(|&(known, values, reason)| (known, ConfigKind::Ignored { values, reason }))
    })
}

/// Why Rill ignores the topic config `name`, if it is one it accepts and
/// ignores; the caller logs it where the config is set.
pub fn ignored_topic_config(name: &str) -> Option<&'static str> {
    match lookup(name)?.1 {
        ConfigKind::Ignored { reason, .. } => Some(reason),
        _ => None,
    }
}

/// The `'static` spelling of the topic config `name`, if Rill knows it.
pub fn known_topic_config_name(name: &str) -> Option<&'static str> {
    lookup(name).map(|(known, _)| known)
}

/// The kind of the topic config `name`, if Rill knows it.
pub fn topic_config_kind(name: &str) -> Option<ConfigKind> {
    lookup(name).map(|(_, kind)| kind)
}

/// The topic configs Rill knows, by Kafka name.
pub const TOPIC_CONFIGS: &[(&str, ConfigKind)] = &[
    ("cleanup.policy", ConfigKind::CleanupPolicy),
    ("compression.type", ConfigKind::Passive),
    (
        "delete.retention.ms",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 0,
        },
    ),
    (
        "flush.messages",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 1,
        },
    ),
    (
        "flush.ms",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 0,
        },
    ),
    (
        "index.interval.bytes",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 0,
        },
    ),
    (
        "max.compaction.lag.ms",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 1,
        },
    ),
    (
        "max.message.bytes",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 0,
        },
    ),
    ("message.timestamp.type", ConfigKind::TimestampType),
    ("min.cleanable.dirty.ratio", ConfigKind::Ratio),
    (
        "min.compaction.lag.ms",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 0,
        },
    ),
    ("min.insync.replicas", ConfigKind::Passive),
    (
        "retention.bytes",
        ConfigKind::Long {
            allows_minus_one: true,
            min: 0,
        },
    ),
    (
        "retention.ms",
        ConfigKind::Long {
            allows_minus_one: true,
            min: 0,
        },
    ),
    (
        "segment.bytes",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 14,
        },
    ),
    (
        "segment.index.bytes",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 8,
        },
    ),
    (
        "segment.ms",
        ConfigKind::Long {
            allows_minus_one: false,
            min: 1,
        },
    ),
];

/// Checks one topic config, with the reason when it is unknown or invalid.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let Some(kind) = topic_config_kind(name) else {
        return Err(format!("unknown topic config `{name}`"));
    };
    match kind {
        ConfigKind::Long {
            allows_minus_one,
            min,
        } => {
            let number: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{name}` must be an integer, not `{value}`"))?;
            if number == -1 && allows_minus_one {
                return Ok(());
            }
            if number < min {
                return Err(format!("`{name}` must be at least {min}, not {number}"));
            }
            Ok(())
        }
        ConfigKind::CleanupPolicy => {
            let valid = value
                .split(',')
                .map(str::trim)
                .all(|policy| policy == "delete" || policy == "compact");
            if valid && !value.trim().is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "`cleanup.policy` must be delete, compact or both, not `{value}`"
                ))
            }
        }
        ConfigKind::TimestampType => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!(
                "`message.timestamp.type` must be CreateTime or LogAppendTime, not `{value}`"
            )),
        },
        ConfigKind::Ratio => match value.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
            _ => Err(format!(
                "`{name}` must be a number between 0 and 1, not `{value}`"
            )),
        },
        ConfigKind::Passive => Ok(()),
        ConfigKind::Ignored { values, .. } => match values {
            IgnoredValues::Bool if !matches!(value.trim(), "true" | "false") => {
                Err(format!("`{name}` must be true or false, not `{value}`"))
            }
            IgnoredValues::Long if value.trim().parse::<i64>().is_err() => {
                Err(format!("`{name}` must be an integer, not `{value}`"))
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v2_eu-1").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name("ünï").is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn topic_configs() {
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        assert!(validate_topic_config("retention.ms", "x").is_err());
        assert!(validate_topic_config("segment.bytes", "-1").is_err());
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "0.1").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "NaN").is_err());
        assert!(validate_topic_config("no.such.thing", "1").is_err());
        // Accepted and ignored, as Kafka 3.x accepts them, with their shape checked.
        assert!(validate_topic_config("message.format.version", "2.8-IV1").is_ok());
        assert!(validate_topic_config("preallocate", "true").is_ok());
        assert!(validate_topic_config("preallocate", "yes").is_err());
        assert!(validate_topic_config("segment.jitter.ms", "x").is_err());
        assert!(ignored_topic_config("message.format.version").is_some());
        assert!(ignored_topic_config("retention.ms").is_none());
    }
}
