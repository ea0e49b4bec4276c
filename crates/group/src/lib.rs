//! rill-group: the consumer-group coordinator as a state machine.
//!
//! No sockets, no tokio, no files, no clock: requests (the generated
//! `rill_protocol` message types) and the time (`now_ms`) go in; responses,
//! delayed answers and records to persist come out. The broker owns the IO.
//!
//! - `coordinator`: [`Coordinator`] — the groups, tokens for delayed
//!   answers, the outgoing record queue, replay (`load`).
//! - `classic`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and `tick`
//!   (session expiry, rebalance deadlines, the initial rebalance delay).
//! - `offsets`: OffsetCommit (two-step: plan, then `apply` after the append),
//!   OffsetFetch, OffsetDelete, offset retention.
//! - `consumer`: the KIP-848 protocol — ConsumerGroupHeartbeat and
//!   ConsumerGroupDescribe, server-side uniform and range assignors.
//! - `admin`: ListGroups, DescribeGroups, DeleteGroups, FindCoordinator.
//! - `group`: one group's data and the rules that read it (protocol
//!   selection, fencing).
//! - `record`: the key/value records of `__consumer_offsets` and their
//!   bytes (Kafka's layout; docs/FORMAT.md), `partition_for`.
//! - `config`: [`GroupConfig`], every limit with its reason.
//! - `error_code` (re-exported from rill-protocol): the Kafka error codes the answers carry.
//!
//! Delayed answers: JoinGroup waits for the rebalance and SyncGroup for the
//! leader's assignment. Such a call returns [`Reply::Pending`] with a
//! [`Token`]; the answer arrives later as a [`Completion`] from
//! [`Coordinator::take_completions`], after any later call or
//! [`Coordinator::tick`]. The broker keeps token → reply channel, drains
//! completions after every call, and calls `tick` every ~100 ms.
//!
//! Persistence: every change that must survive a restart becomes a
//! [`GroupRecord`] (key, value or tombstone, and its `__consumer_offsets`
//! partition). Offset commits are returned in a [`CommitPlan`] and applied
//! only after the broker appended them; group changes are applied at once
//! and queued ([`Coordinator::take_records`]). At startup the broker replays
//! every record through [`Coordinator::load`] before serving group requests.

mod admin;
mod classic;
mod config;
mod consumer;
mod coordinator;
pub use rill_protocol::error_code;
mod group;
mod offsets;
pub mod record;

pub use admin::{CoordinatorNode, find_coordinator};
pub use classic::join_error;
pub use config::GroupConfig;
pub use consumer::TopicLookup;
pub use coordinator::{ClientInfo, Completion, Coordinator, LoadError, Reply};
pub use group::{GroupState, Token};
pub use offsets::CommitPlan;
pub use record::{GroupRecord, RecordError, partition_for};
