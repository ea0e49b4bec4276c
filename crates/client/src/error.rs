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
    #[error("message timestamp {0} is negative (leave it unset for the send time)")]
    NegativeTimestamp(i64),
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

/// Kafka's error codes (one list for the workspace, in rill-protocol).
pub mod code {
    pub use rill_protocol::error_code::*;
}
