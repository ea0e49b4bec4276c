//! A connection's request path without sockets: a broker state on a data
//! directory, and the decode and answer steps `connection.rs` takes for each
//! frame. Public, and hidden from the docs, only because rill-testkit's fuzz
//! harness (a separate crate) drives them; not an API.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};

pub use crate::cluster::OpenError;

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::handlers::{self, Queue};
use crate::server::Shared;

/// The state every connection shares, with the group coordinator's timers
/// running as the server runs them; answers are computed and dropped.
pub struct State {
    runtime: tokio::runtime::Handle,
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
        let cluster = runtime.block_on(Cluster::open(&config))?;
        let shared = Arc::new(Shared::new(config, cluster, "127.0.0.1".to_string(), 9092));
        let (stop_tx, stop) = watch::channel(false);
        runtime.spawn(crate::groups::run(shared.clone(), stop.clone()));
        Ok(State {
            runtime: runtime.clone(),
            shared,
            stop_tx,
            stop,
        })
    }

    /// Queues `frames` (each without its size prefix) as a connection
    /// queues a pipelined client's requests, and answers them in order, so
    /// consecutive produce requests with acks 0 or 1 are answered as one
    /// run; frames that do not decode (where a connection would close) are
    /// skipped. Answers are computed and dropped. Some requests wait by
    /// design (a JoinGroup until the rebalance ends), so each gets at most
    /// `patience`: the fuzzer only needs to know that they do not misbehave.
    pub async fn answer_frames(&mut self, frames: &[&[u8]], patience: Duration) {
        let (sender, mut queue) = Queue::new(frames.len().max(1));
        // No read budget here: every frame's share is empty.
        let budget = Arc::new(Semaphore::new(0));
        let empty = || budget.clone().try_acquire_many_owned(0).ok();
        for frame in frames {
            let (Some(own), Some(broker)) = (empty(), empty()) else {
                return;
            };
            let _ = sender.try_send((Bytes::copy_from_slice(frame), (own, broker)));
        }
        drop(sender);
        while let Some(parsed) = queue.next().await {
            let Ok(request) = parsed else { continue };
            let handled = handlers::handle(
                &self.shared,
                request,
                &mut queue,
                "/127.0.0.1",
                &mut self.stop,
            );
            let _ = tokio::time::timeout(patience, handled).await;
            queue.release_taken();
        }
    }

    /// Stops the group coordinator's timers and closes the logs cleanly.
    pub fn close(&self) {
        let _ = self.stop_tx.send(true);
        let _ = self.runtime.block_on(self.shared.cluster.shutdown());
    }
}
