//! Cluster metadata as an ordered log of records applied to a state machine,
//! as KRaft keeps it: every node that applies the same records holds the
//! same state, which is what lets a Raft quorum replicate it.
//!
//! - [`record`]: the records (a topic was created, a broker registered, ...).
//! - [`state`]: the state machine they build: topics and their partitions'
//!   replicas and leaders, brokers, controllers, ids, configs, the
//!   producer-id counter. Pure: applying the same records gives the same state.
//! - [`partition`], [`broker`]: a partition's and a broker's part of the state.
//! - [`snapshot`]: a state as the records that rebuild it.
//! - [`entry`]: how a group of records is framed on disk.
//! - [`store`]: the durable log of records on one node, replayed on start.
//! - [`topic`]: topic names and topic configs: what is valid.
//! - [`id`]: topic ids and the other UUIDs.
//!
//! Today one node writes the log; the cluster work replaces [`store`] with a
//! Raft-replicated log and keeps the records and the state machine as they are.

pub mod broker;
pub mod entry;
pub mod id;
pub mod partition;
pub mod record;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod topic;

pub use broker::{Broker, Listener};
pub use id::{TopicId, Uuid};
pub use partition::Partition;
pub use record::MetadataRecord;
pub use state::{ApplyError, ClusterState, EPOCH_OF_ENTRY, Topic};
pub use store::{MetadataStore, StoreError};
