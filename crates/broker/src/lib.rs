//! The Rill broker: the tokio edge around the log store and the codec.
//!
//! - [`config`]: settings from defaults, a TOML file, `RILL_*` variables, flags.
//! - `server`: [`Broker`] — listeners, shared state, explicit shutdown.
//! - `connection`: one client connection — framing, ordering, limits, writes.
//! - `response`: a response encoded and ready to send.
//! - `sendfile`: record bytes from log files to the socket with `sendfile(2)`.
//! - `handlers`: one file per Kafka API, the table of supported versions,
//!   the dispatch, and the queue of a connection's requests read ahead
//!   (from which the produce handler takes runs of pipelined requests).
//! - `clock`: the wall clock in Kafka's unit, milliseconds since the epoch.
//! - `cluster`: topics and partitions, and every change to them (records
//!   proposed to the controller quorum, then reconciled from the applied
//!   image); the broker's registration and heartbeats (`cluster/lifecycle`).
//! - `quorum`: the node's controller quorum opened (migration, formation, the
//!   cluster id); `peers` and `controller_listener`: the other voters reached
//!   and answered; `quorum_metrics`: the quorum's gauges.
//! - `partition`: one partition's appends and the high watermark they
//!   publish; `log_config`: a topic's log settings from its overrides.
//! - `partition_dirs`: each partition directory tagged with its topic's id;
//!   leftovers of deleted topics moved out of the way.
//! - `admin` and `metrics`: the admin HTTP server and Prometheus metrics.
//! - `groups`: the consumer-group coordinator (`rill_group`) wired to
//!   `__consumer_offsets`, delayed answers and a timer.
//! - `socketless`: a connection's request path without sockets, for the fuzz
//!   harness in rill-testkit.
//! - `error_code` (from rill-protocol): the Kafka error codes, used only at the protocol edge.

pub mod config;

mod admin;
mod clock;
mod cluster;
mod connection;
mod controller_listener;
use rill_protocol::error_code;
mod groups;
mod handlers;
mod log_config;
mod meta_properties;
mod metrics;
mod partition;
mod partition_dirs;
mod peers;
mod quorum;
mod quorum_metrics;
mod response;
mod sendfile;
mod server;
// Public for rill-testkit's fuzz harness only (the module says why).
#[doc(hidden)]
pub mod socketless;

pub use config::{BrokerConfig, ConfigError, ConfigSources};
pub use handlers::SUPPORTED_APIS;
pub use server::{Broker, StartError};
