//! A connection's request path without sockets: a broker state on a data
//! directory, and the decode and answer steps `connection.rs` takes for each
//! frame. Public, and hidden from the docs, only because rill-testkit's fuzz
//! harness (a separate crate) drives them; not an API.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

pub use crate::cluster::OpenError;
pub use crate::handlers::produce::RUN_REQUESTS_MAX;
pub use crate::handlers::{FastProduce, Request};

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::handlers;
use crate::server::Shared;

/// The state every connection shares, with the group coordinator's timers
/// running as the server runs them; answers are computed and dropped.
pub struct State {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
}

impl State {
    /// Opens the data directory of `config`; the group coordinator loads
    /// `__consumer_offsets` and runs its timers on `runtime`.
    pub fn open(
        config: BrokerConfig,
        runtime: &tokio::runtime::Handle,
    ) -> Result<State, OpenError> {
        let cluster = Cluster::open(&config)?;
        let shared = Arc::new(Shared::new(config, cluster, "127.0.0.1".to_string(), 9092));
        let (stop_tx, stop) = watch::channel(false);
        runtime.spawn(crate::groups::run(shared.clone(), stop.clone()));
        Ok(State {
            shared,
            stop_tx,
            stop,
        })
    }

    /// Decodes a request frame (without its size prefix), or says why a
    /// connection would close.
    pub fn parse(&self, frame: Bytes) -> Result<Request, String> {
        handlers::parse(&self.shared, frame)
    }

    /// Answers one request as a client at 127.0.0.1 would be answered.
    pub async fn answer(&mut self, request: Request) {
        handlers::handle(&self.shared, request, "/127.0.0.1", &mut self.stop).await;
    }

    /// Answers a run of pipelined produce requests, as a connection gathers them.
    pub async fn answer_run(&self, run: Vec<FastProduce>) {
        handlers::handle_produce_run(&self.shared, run).await;
    }

    /// Stops the group coordinator's timers and closes the logs cleanly.
    pub fn close(&self) {
        let _ = self.stop_tx.send(true);
        let _ = self.shared.cluster.shutdown();
    }
}
