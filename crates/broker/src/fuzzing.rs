//! A harness for the coverage-guided fuzz target `fuzz/fuzz_targets/broker_request.rs`:
//! it feeds one frame at a time to the request decoder and the handlers of
//! a real broker state (a data directory under the system temp dir), with
//! no sockets, so the fuzzer explores parsing and handling, not TCP.
//! Compiled only with the `fuzzing` feature.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::handlers;
use crate::server::Shared;

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    _stop: watch::Sender<bool>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    dir: PathBuf,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = std::env::temp_dir().join(format!("rill-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
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
            _stop: stop_tx,
            shared,
            stop,
            dir,
        }
    }

    /// Decodes `frame` (without its size prefix) as a request and answers it.
    pub fn feed(&mut self, frame: &[u8]) {
        let frame = Bytes::copy_from_slice(frame);
        let Ok(request) = handlers::parse(&self.shared, frame) else {
            return;
        };
        let shared = self.shared.clone();
        let stop = &mut self.stop;
        // Some requests wait by design (a JoinGroup until the rebalance
        // ends); the fuzzer only needs to know that they do not misbehave.
        self.runtime.block_on(async move {
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                handlers::handle(&shared, request, "/127.0.0.1", stop),
            )
            .await;
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
