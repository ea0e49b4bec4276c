//! The producer's settings.

use std::sync::Arc;
use std::time::Duration;

use rill_records::batch::Compression;

use crate::client::ClientConfig;
use crate::partitioner::{DefaultPartitioner, Partitioner};

/// The most batches of one partition on the wire at once: a connection
/// holds at most 64 requests in flight, and one write of this many rounds
/// must fit in it beside the other callers' requests.
pub const MAX_IN_FLIGHT_LIMIT: usize = 16;

/// How many brokers must have a message before it counts as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: no answer, no offsets (`acks=0`).
    None,
    /// The leader wrote it (`acks=1`).
    Leader,
    /// Every in-sync replica has it (`acks=all`).
    All,
}

impl Acks {
    pub(super) fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub acks: Acks,
    /// Idempotent producer (no duplicates from retries); takes effect with
    /// `Acks::All`, as in Kafka.
    pub idempotence: bool,
    pub compression: Compression,
    /// A batch closes when its records reach this many (uncompressed) bytes.
    pub batch_size: usize,
    /// A batch closes when its first record has waited this long.
    pub linger: Duration,
    /// Bytes of messages not yet acknowledged; `send` waits when it is full.
    pub buffer_memory: usize,
    /// Batches of one partition on the wire at once (Kafka's
    /// `max.in.flight.requests.per.connection`). More than one keeps a
    /// partition's pipe full when batches are small; order still holds,
    /// since a failed batch and everything after it are resent in order
    /// (with idempotence the broker's sequence check enforces it; without,
    /// a retry can land after a later batch, as in Kafka).
    pub max_in_flight: usize,
    /// The largest single message accepted.
    pub max_message_size: usize,
    /// Bytes of record batches in one Produce request (Kafka's
    /// `max.request.size`): a drain's batches for one broker are split into
    /// requests of at most this, and a larger batch goes alone. Without
    /// it a producer to thousands of partitions sent one request of every
    /// ready batch, tens of MiB that the broker must buffer whole.
    pub max_request_size: usize,
    /// First pause before a retry; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Give up on a message this long after it was sent.
    pub delivery_timeout: Duration,
    /// Ask the broker to create a topic it does not have on the first send
    /// (it does if its `auto_create_topics_enable` is on), as Kafka's
    /// producers do.
    pub auto_create_topics: bool,
    /// How long `send` waits for a topic to become writable (just created,
    /// or its leader moving) before failing (Kafka's `max.block.ms`).
    pub max_block: Duration,
    pub partitioner: Arc<dyn Partitioner>,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            idempotence: true,
            compression: Compression::None,
            // Larger than the Java client's 16 KiB: a batch grows while the
            // previous ones are on the wire, and stays under the broker's
            // 1 MiB limit.
            batch_size: 512 * 1024,
            linger: Duration::from_millis(5),
            buffer_memory: 32 << 20,
            max_in_flight: 5,
            max_message_size: 1 << 20,
            max_request_size: 1 << 20,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(120),
            auto_create_topics: true,
            max_block: Duration::from_secs(60),
            partitioner: Arc::new(DefaultPartitioner::default()),
        }
    }
}

impl ProducerConfig {
    pub fn new(brokers: &str) -> ProducerConfig {
        ProducerConfig {
            client: ClientConfig::new(brokers),
            ..ProducerConfig::default()
        }
    }
}
