//! The client's one error type, and Kafka's error codes by name.

use std::io;

use thiserror::Error;

/// Everything that can go wrong in a client call.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot reach any of the brokers {brokers}: {source}")]
    NoBroker { brokers: String, source: io::Error },
    #[error("connection to {addr} failed: {source}")]
    Io { addr: String, source: io::Error },
    #[error("connection to {addr} closed")]
    Disconnected { addr: String },
    #[error("no answer from {addr} within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("broker {addr} sent bytes that are not a valid response: {reason}")]
    Protocol { addr: String, reason: String },
    #[error(
        "broker {addr} does not support {api} in a version this client speaks (client {client_min}..={client_max}, broker {broker:?})"
    )]
    UnsupportedVersion {
        addr: String,
        api: &'static str,
        client_min: i16,
        client_max: i16,
        broker: Option<(i16, i16)>,
    },
    #[error("{context}: {}", code_message(*code, message.as_deref()))]
    Kafka {
        context: String,
        code: i16,
        message: Option<String>,
    },
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' is not writable after {waited_ms} ms: {reason}")]
    TopicNotReady {
        topic: String,
        waited_ms: u64,
        reason: String,
    },
    #[error("partition {partition} of topic '{topic}' does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("no leader known for partition {partition} of topic '{topic}'")]
    NoLeader { topic: String, partition: i32 },
    #[error("broker {0} is not in the cluster metadata")]
    UnknownBroker(i32),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("cannot encode a record batch: {0}")]
    Build(#[from] rill_records::builder::BuildError),
    #[error("cannot decode a record batch: {0}")]
    Records(#[from] rill_records::record::RecordError),
    #[error("the producer is closed")]
    ProducerClosed,
    #[error("the consumer is closed")]
    ConsumerClosed,
    #[error("message not delivered within {timeout_ms} ms; last error: {last}")]
    DeliveryTimeout { timeout_ms: u64, last: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("consumer group '{group}': {reason}")]
    Group { group: String, reason: String },
}

impl Error {
    /// Whether retrying the same request later may succeed: the cluster moved
    /// a leader, a topic is still being created, or a connection dropped.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            Error::NoLeader { .. } | Error::UnknownTopic(_) => true,
            Error::Kafka { code, .. } => code::is_retriable(*code),
            _ => false,
        }
    }

    /// A Kafka error code with what the client was doing.
    pub fn kafka(context: impl Into<String>, code: i16, message: Option<String>) -> Error {
        Error::Kafka {
            context: context.into(),
            code,
            message,
        }
    }

    /// The Kafka error code, when the error came from a broker's answer.
    pub fn code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn code_message(code: i16, message: Option<&str>) -> String {
    match message {
        Some(message) if !message.is_empty() => {
            format!("{} ({code}): {message}", code::name(code))
        }
        _ => format!("{} ({code})", code::name(code)),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Kafka's error codes that the client acts on, and names for all common ones.
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const FENCED_INSTANCE_ID: i16 = 82;

    /// Kafka's own name for an error code.
    pub fn name(code: i16) -> &'static str {
        match code {
            -1 => "UNKNOWN_SERVER_ERROR",
            0 => "NONE",
            1 => "OFFSET_OUT_OF_RANGE",
            2 => "CORRUPT_MESSAGE",
            3 => "UNKNOWN_TOPIC_OR_PARTITION",
            4 => "INVALID_FETCH_SIZE",
            5 => "LEADER_NOT_AVAILABLE",
            6 => "NOT_LEADER_OR_FOLLOWER",
            7 => "REQUEST_TIMED_OUT",
            10 => "MESSAGE_TOO_LARGE",
            13 => "NETWORK_EXCEPTION",
            14 => "COORDINATOR_LOAD_IN_PROGRESS",
            15 => "COORDINATOR_NOT_AVAILABLE",
            16 => "NOT_COORDINATOR",
            17 => "INVALID_TOPIC_EXCEPTION",
            18 => "RECORD_LIST_TOO_LARGE",
            19 => "NOT_ENOUGH_REPLICAS",
            20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            21 => "INVALID_REQUIRED_ACKS",
            22 => "ILLEGAL_GENERATION",
            23 => "INCONSISTENT_GROUP_PROTOCOL",
            24 => "INVALID_GROUP_ID",
            25 => "UNKNOWN_MEMBER_ID",
            26 => "INVALID_SESSION_TIMEOUT",
            27 => "REBALANCE_IN_PROGRESS",
            28 => "INVALID_COMMIT_OFFSET_SIZE",
            35 => "UNSUPPORTED_VERSION",
            36 => "TOPIC_ALREADY_EXISTS",
            37 => "INVALID_PARTITIONS",
            38 => "INVALID_REPLICATION_FACTOR",
            40 => "INVALID_CONFIG",
            41 => "NOT_CONTROLLER",
            42 => "INVALID_REQUEST",
            45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            46 => "DUPLICATE_SEQUENCE_NUMBER",
            47 => "INVALID_PRODUCER_EPOCH",
            56 => "KAFKA_STORAGE_ERROR",
            59 => "UNKNOWN_PRODUCER_ID",
            68 => "NON_EMPTY_GROUP",
            69 => "GROUP_ID_NOT_FOUND",
            74 => "FENCED_LEADER_EPOCH",
            75 => "UNKNOWN_LEADER_EPOCH",
            79 => "MEMBER_ID_REQUIRED",
            82 => "FENCED_INSTANCE_ID",
            87 => "INVALID_RECORD",
            88 => "UNSTABLE_OFFSET_COMMIT",
            100 => "UNKNOWN_TOPIC_ID",
            _ => "UNKNOWN_ERROR_CODE",
        }
    }

    /// Kafka's list of errors after which the same request may succeed.
    pub fn is_retriable(code: i16) -> bool {
        matches!(
            code,
            2 | 3 | 5 | 6 | 7 | 13 | 14 | 15 | 16 | 19 | 20 | 56 | 74 | 75 | 88 | 100
        )
    }
}
