//! The controller quorum's Raft, on openraft: the type configuration, the
//! log and snapshot storage on the node's raft directory, and the state
//! machine that applies committed metadata records to a
//! [`ClusterState`](rill_metadata::ClusterState). All openraft use stays in
//! this crate. No sockets: peers are reached through the network openraft is
//! given, which the broker provides.
//!
//! - [`types`]: the type configuration, the entry payload and the apply result.
//! - [`log_store`]: openraft's log storage; [`segments`] holds its entries.
//! - [`state_machine`]: entries applied to the cluster state, published.
//! - [`snapshot_store`]: snapshots of the state on disk.
//! - [`codec`]: the JSON shapes on disk; [`durable`]: files replaced whole.
//! - [`node`]: a node's Raft opened, proposed to, followed, caught up,
//!   stopped; [`migrate`]: a pre-quorum metadata log made its first snapshot.
//! - [`network`], [`wire`]: Raft's messages to peers over channels the
//!   broker provides, and their bytes.
//! - [`active`]: the active controller's task: broker sessions, fencing,
//!   leadership moved.
//! - [`logic`]: the active controller's decisions, pure (replica placement,
//!   broker sessions).

pub mod active;
pub mod codec;
pub mod describe;
pub mod durable;
pub mod log_store;
pub mod logic;
pub mod migrate;
pub mod network;
pub mod node;
pub mod segments;
pub mod snapshot_store;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use log_store::LogStore;
pub use node::{Node, NodeConfig, NodeError, ProposeError};
pub use state_machine::{Published, StateMachine};
pub use types::{Applied, RecordBatch, TypeConfig};

/// A node's Raft.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
