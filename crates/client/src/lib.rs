//! rill-client: Rill's own Kafka client, async at the core, with the
//! paper's blocking API on top. It speaks the Kafka protocol, so it works
//! against Rill and against any Kafka-compatible broker.
//!
//! - `conn`: one connection: framing, correlation ids, pipelining, versions.
//! - `client`: bootstrap, connections per broker, the metadata cache.
//! - `message`: `Message` and `MessageSet`.
//! - `topic_partition`: `TopicPartition`, the one name of a partition.
//! - `partitioner`: murmur2 as in the Java client, sticky for keyless.
//! - `producer`: `AsyncProducer` (batching, idempotence, retries) and the
//!   paper's blocking `Producer::send(topic, MessageSet)`; inside it,
//!   `accumulator` (batches per partition), `sender` (the task that sends
//!   them, answers, retries) and `blocking` (the paper's facade).
//! - `consumer`: `AsyncConsumer` (assign, seek, pause, poll, commit) and the
//!   paper's `Consumer::create_message_streams(topic, n)`, over `fetcher`
//!   (partition positions and the pipelined fetch task) with its settings
//!   in `consumer_config`.
//! - `group`: the classic group protocol (join, sync, heartbeat, commit),
//!   with the leader's `assignor`s (range, cooperative-sticky).
//! - `group_consumer`: the KIP-848 consumer group protocol (heartbeat and
//!   reconcile; the coordinator assigns).
//! - `requests`: the stateless requests the above share: find coordinator,
//!   offset commit, fetch committed offsets, list offsets (`Offset`).
//! - `member_task`: the background task of a group member.
//! - `admin`: topics, configs, offsets, groups.
//!
//! Imports between modules run one way (`a -> b`: `a` uses `b`; `client`,
//! `error` and `topic_partition` are used throughout and left out):
//!
//! ```text
//! admin          -> group, requests
//! consumer       -> group, group_consumer, fetcher, consumer_config, requests
//! group          -> assignor, fetcher, member_task, requests
//! group_consumer -> fetcher, member_task, requests
//! fetcher        -> consumer_config, requests, message
//! consumer_config -> assignor, requests
//! producer       -> partitioner, message, hash, clock
//! requests, assignor, member_task, partitioner -> (nothing above)
//! ```
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
mod quorum;
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
pub use quorum::{QuorumDescription, VoterState};
pub use requests::Offset;
pub use rill_records::batch::Compression;
pub use topic_partition::TopicPartition;
