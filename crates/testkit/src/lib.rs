//! rill-testkit: a real Rill broker in-process, for testing applications
//! and Rill's own crates against it. No Docker, no JVM: a [`Broker`] listens
//! on an ephemeral port of 127.0.0.1, keeps its data in a temporary
//! directory, and is gone when dropped.
//!
//! ```no_run
//! let mut broker = rill_testkit::Broker::start().unwrap();
//! broker.create_topic("events", 3).unwrap();
//! let bootstrap = broker.bootstrap(); // "127.0.0.1:PORT", for the client under test
//! // ... the client produces and consumes through `bootstrap` ...
//! broker.restart().unwrap(); // same port and data: the client must reconnect
//! ```
//!
//! - `broker`: [`Broker`] — `start`, `create_topic`, `bootstrap`, `restart`.
//! - [`fuzz`]: the harness of the fuzz target
//!   `fuzz/fuzz_targets/broker_request.rs`, a broker state fed frames
//!   without sockets.
//!
//! It depends on rill-broker and not on rill-client (not even for its own
//! tests), so that rill-client's tests can use it.

mod broker;
pub mod fuzz;

pub use broker::{Broker, Error, Result};
