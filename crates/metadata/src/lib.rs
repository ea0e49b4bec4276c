//! Cluster metadata as an ordered log of records applied to a state machine
//! (BRIEF §6).
//!
//! - [`record`]: the records (a topic was created, a config changed, ...).
//! - [`state`]: the state machine they build: topics, ids, configs, the
//!   producer-id counter. Pure: applying the same records gives the same state.
//! - [`store`]: the durable log of records on one node, replayed on start.
//! - [`topic`]: topic names and topic configs: what is valid.
//!
//! Today one node writes the log; the cluster work replaces [`store`] with a
//! Raft-replicated log and keeps the records and the state machine as they are.

pub mod record;
pub mod state;
pub mod store;
pub mod topic;

pub use record::{MetadataRecord, TopicId};
pub use state::{ApplyError, ClusterState, Topic};
pub use store::{MetadataStore, StoreError};
