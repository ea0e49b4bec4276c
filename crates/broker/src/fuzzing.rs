//! A harness for the coverage-guided fuzz target `fuzz/fuzz_targets/broker_request.rs`:
//! it feeds one frame at a time to the request decoder and the handlers of
//! a real broker state (a data directory under the system temp dir), with
//! no sockets, so the fuzzer explores parsing and handling, not TCP.
//! [`Harness::feed_run`] takes several frames as a pipelined client sends
//! them (queued as the connection queues them, so consecutive produce
//! requests with acks 0 or 1 are answered as one run) and can restart the broker between them, so the
//! group coordinator replays `__consumer_offsets` from what earlier frames
//! wrote. Compiled only with the `fuzzing` feature.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::handlers::{self, Queue};
use crate::server::Shared;

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    stop_tx: watch::Sender<bool>,
    /// Whether dropping the harness removes its data directory.
    remove_on_drop: bool,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    dir: PathBuf,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = std::env::temp_dir().join(format!("rill-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Harness::open(dir)
    }

    /// A broker on the data in `dir`, its group coordinator loading
    /// `__consumer_offsets` in the background as the server's does.
    fn open(dir: PathBuf) -> Harness {
        let config = BrokerConfig {
            data_dir: dir.clone(),
            // Parked fetches would only slow the fuzzer down.
            fetch_max_wait_ms_limit: 0,
            log_segment_index_bytes: 4096,
            log_segment_bytes: 1 << 20,
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the fuzz harness");
        let cluster = Cluster::open(&config).expect("the fuzz harness data directory opens");
        let shared = Arc::new(Shared::new(config, cluster, "127.0.0.1".to_string(), 9092));
        let (stop_tx, stop) = watch::channel(false);
        // The group coordinator's timers, as the server runs them.
        runtime.spawn(crate::groups::run(shared.clone(), stop.clone()));
        Harness {
            runtime,
            stop_tx,
            remove_on_drop: true,
            shared,
            stop,
            dir,
        }
    }

    /// Stops the broker cleanly and starts it again on the same data.
    fn restart(&mut self) {
        let _ = self.stop_tx.send(true);
        let _ = self.shared.cluster.shutdown();
        let reopened = Harness::open(self.dir.clone());
        let mut old = std::mem::replace(self, reopened);
        // The data now belongs to the new broker.
        old.remove_on_drop = false;
    }

    /// Feeds frames as one pipelined client sends them: they are queued
    /// as the connection queues them, so consecutive produce requests with
    /// acks 0 or 1 are answered as one run; `None` restarts the broker at
    /// that point, once the frames before it are answered.
    pub fn feed_run(&mut self, frames: &[Option<&[u8]>]) {
        for (i, part) in frames.split(|frame| frame.is_none()).enumerate() {
            if i > 0 {
                self.restart();
            }
            let part: Vec<&[u8]> = part.iter().flatten().copied().collect();
            self.answer(&part);
        }
    }

    /// Decodes `frame` (without its size prefix) as a request and answers it.
    pub fn feed(&mut self, frame: &[u8]) {
        self.answer(&[frame]);
    }

    /// Queues `frames` and answers them in order, skipping those that do
    /// not decode (where the connection would close).
    fn answer(&mut self, frames: &[&[u8]]) {
        let (sender, mut queue) = Queue::new(frames.len().max(1));
        // The harness has no read budget: every frame's share is empty.
        let budget = Arc::new(Semaphore::new(0));
        let empty = || budget.clone().try_acquire_many_owned(0).ok();
        for frame in frames {
            let (Some(own), Some(broker)) = (empty(), empty()) else {
                return;
            };
            let _ = sender.try_send((Bytes::copy_from_slice(frame), (own, broker)));
        }
        drop(sender);
        let shared = self.shared.clone();
        let stop = &mut self.stop;
        self.runtime.block_on(async move {
            while let Some(parsed) = queue.next().await {
                let Ok(request) = parsed else { continue };
                // Some requests wait by design (a JoinGroup until the
                // rebalance ends); the fuzzer only needs to know that they
                // do not misbehave.
                let _ = tokio::time::timeout(
                    Duration::from_millis(200),
                    handlers::handle(&shared, request, &mut queue, "/127.0.0.1", stop),
                )
                .await;
                queue.release_taken();
            }
        });
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
