//! rill-client: Rill's own Kafka client, async at the core, with the
//! paper's blocking API on top. It speaks the Kafka protocol, so it works
//! against Rill and against any Kafka-compatible broker.
//!
//! - `conn`: one connection: framing, correlation ids, pipelining, versions.
//! - `client`: bootstrap, connections per broker, the metadata cache.
//! - `message`: `Message` and `MessageSet`.
//! - `partitioner`: murmur2 as in the Java client, sticky for keyless.
//! - `producer`: `AsyncProducer` (batching, idempotence, retries) and the
//!   paper's blocking `Producer::send(topic, MessageSet)`.
//! - `consumer`: `AsyncConsumer` (assign, seek, pause, pipelined fetches,
//!   groups) and the paper's `Consumer::create_message_streams(topic, n)`.
//! - `admin`: topics, configs, offsets, groups.
//!
//! A real Rill broker in-process, to test against, is in rill-testkit.

mod admin;
mod assignor;
mod client;
mod clock;
mod conn;
mod consumer;
mod consumer_config;
mod error;
mod fetcher;
mod group;
mod group_consumer;
pub mod hash;
mod member_task;
mod message;
mod partitioner;
mod producer;
mod requests;
mod topic_partition;

pub use admin::{
    AdminClient, ConfigEntry, GroupDescription, GroupListing, GroupMemberDescription, NewTopic,
};
pub use assignor::Assignor;
pub use client::{BrokerInfo, Client, ClientConfig, Metadata, PartitionInfo, TopicInfo};
pub use consumer::{AsyncConsumer, Consumer, MessageStream};
pub use consumer_config::{ConsumerConfig, GroupProtocol};
pub use error::{Error, Result, code};
pub use message::{Header, Message, MessageSet};
pub use partitioner::{DefaultPartitioner, Partitioner, key_partition, murmur2};
pub use producer::{
    Acks, AsyncProducer, DeliveryFuture, MAX_IN_FLIGHT_LIMIT, Producer, ProducerConfig,
    RecordMetadata, SendFuture,
};
pub use requests::Offset;
pub use rill_records::batch::Compression;
pub use topic_partition::TopicPartition;
