//! Kafka's error codes: the numbers an answer carries and their names.
//!
//! One list for the whole workspace (broker, coordinator, client). Errors
//! inside Rill are typed; they become these numbers only at the protocol
//! edge. The names are Kafka's own (`org.apache.kafka.common.protocol.Errors`),
//! so logs and messages match what Kafka users search for.

macro_rules! error_codes {
    ($($name:ident = $code:expr,)*) => {
        $(pub const $name: i16 = $code;)*

        /// Every code this list knows, with its name.
        pub const ALL: &[(i16, &str)] = &[$(($code, stringify!($name)),)*];
    };
}

error_codes! {
    UNKNOWN_SERVER_ERROR = -1,
    NONE = 0,
    OFFSET_OUT_OF_RANGE = 1,
    CORRUPT_MESSAGE = 2,
    UNKNOWN_TOPIC_OR_PARTITION = 3,
    INVALID_FETCH_SIZE = 4,
    LEADER_NOT_AVAILABLE = 5,
    NOT_LEADER_OR_FOLLOWER = 6,
    REQUEST_TIMED_OUT = 7,
    MESSAGE_TOO_LARGE = 10,
    OFFSET_METADATA_TOO_LARGE = 12,
    NETWORK_EXCEPTION = 13,
    COORDINATOR_LOAD_IN_PROGRESS = 14,
    COORDINATOR_NOT_AVAILABLE = 15,
    NOT_COORDINATOR = 16,
    INVALID_TOPIC_EXCEPTION = 17,
    RECORD_LIST_TOO_LARGE = 18,
    NOT_ENOUGH_REPLICAS = 19,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20,
    INVALID_REQUIRED_ACKS = 21,
    ILLEGAL_GENERATION = 22,
    INCONSISTENT_GROUP_PROTOCOL = 23,
    INVALID_GROUP_ID = 24,
    UNKNOWN_MEMBER_ID = 25,
    INVALID_SESSION_TIMEOUT = 26,
    REBALANCE_IN_PROGRESS = 27,
    INVALID_COMMIT_OFFSET_SIZE = 28,
    UNSUPPORTED_VERSION = 35,
    TOPIC_ALREADY_EXISTS = 36,
    INVALID_PARTITIONS = 37,
    INVALID_REPLICATION_FACTOR = 38,
    INVALID_CONFIG = 40,
    NOT_CONTROLLER = 41,
    INVALID_REQUEST = 42,
    POLICY_VIOLATION = 44,
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    DUPLICATE_SEQUENCE_NUMBER = 46,
    INVALID_PRODUCER_EPOCH = 47,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
    KAFKA_STORAGE_ERROR = 56,
    UNKNOWN_PRODUCER_ID = 59,
    NON_EMPTY_GROUP = 68,
    GROUP_ID_NOT_FOUND = 69,
    FETCH_SESSION_ID_NOT_FOUND = 70,
    FENCED_LEADER_EPOCH = 74,
    UNKNOWN_LEADER_EPOCH = 75,
    STALE_BROKER_EPOCH = 77,
    MEMBER_ID_REQUIRED = 79,
    GROUP_MAX_SIZE_REACHED = 81,
    FENCED_INSTANCE_ID = 82,
    GROUP_SUBSCRIBED_TO_TOPIC = 86,
    INVALID_RECORD = 87,
    UNSTABLE_OFFSET_COMMIT = 88,
    UNKNOWN_TOPIC_ID = 100,
    DUPLICATE_BROKER_REGISTRATION = 101,
    INCONSISTENT_CLUSTER_ID = 104,
    FENCED_MEMBER_EPOCH = 110,
    UNRELEASED_INSTANCE_ID = 111,
    UNSUPPORTED_ASSIGNOR = 112,
    STALE_MEMBER_EPOCH = 113,
    INVALID_REGULAR_EXPRESSION = 128,
}

/// Kafka's own name for an error code (`UNKNOWN_ERROR_CODE` for one this
/// list lacks).
pub fn name(code: i16) -> &'static str {
    ALL.iter()
        .find(|(known, _)| *known == code)
        .map_or("UNKNOWN_ERROR_CODE", |(_, name)| name)
}

/// Whether Kafka counts the error as retriable: the same request may
/// succeed later (a leader moved, a coordinator is loading, a topic is
/// being created).
pub fn is_retriable(code: i16) -> bool {
    matches!(
        code,
        CORRUPT_MESSAGE
            | UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REQUEST_TIMED_OUT
            | NETWORK_EXCEPTION
            | COORDINATOR_LOAD_IN_PROGRESS
            | COORDINATOR_NOT_AVAILABLE
            | NOT_COORDINATOR
            | NOT_ENOUGH_REPLICAS
            | NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | KAFKA_STORAGE_ERROR
            | FETCH_SESSION_ID_NOT_FOUND
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
            | UNSTABLE_OFFSET_COMMIT
            | UNKNOWN_TOPIC_ID
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_named() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, name) in ALL {
            assert!(seen.insert(*code), "{name} repeats code {code}");
        }
        assert_eq!(super::name(STALE_MEMBER_EPOCH), "STALE_MEMBER_EPOCH");
        assert_eq!(super::name(UNKNOWN_SERVER_ERROR), "UNKNOWN_SERVER_ERROR");
        assert_eq!(super::name(9999), "UNKNOWN_ERROR_CODE");
        assert!(is_retriable(NOT_COORDINATOR));
        assert!(!is_retriable(INVALID_RECORD));
    }
}
