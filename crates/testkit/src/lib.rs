//! rill-testkit: a real Rill broker in-process, for testing applications
//! and Rill's own crates against it. No Docker, no JVM: a [`Broker`] listens
//! on an ephemeral port of 127.0.0.1, keeps its data in a temporary
//! directory, and is gone when dropped.
//!
//! ```no_run
//! let broker = rill_testkit::Broker::start().unwrap();
//! broker.create_topic("events", 3).unwrap();
//! let producer = rill_client::Producer::connect(&broker.bootstrap()).unwrap();
//! // ... produce, consume, and `broker.restart()` to test reconnection.
//! ```
//!
//! - `broker`: [`Broker`] — `start`, `create_topic`, `bootstrap`, `restart`.
//! - [`fuzz`]: the harness of the fuzz target
//!   `fuzz/fuzz_targets/broker_request.rs`, a broker state fed frames
//!   without sockets.
//!
//! It depends on rill-broker and not on rill-client, so that rill-client's
//! own tests can use it.

mod broker;
pub mod fuzz;

pub use broker::{Broker, Error, Result};
