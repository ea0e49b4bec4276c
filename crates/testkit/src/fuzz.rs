//! A harness for the coverage-guided fuzz target `fuzz/fuzz_targets/broker_request.rs`:
//! it feeds one frame at a time to the request decoder and the handlers of
//! a real broker state (a data directory under the system temp dir), with
//! no sockets, so the fuzzer explores parsing and handling, not TCP.
//! [`Harness::feed_run`] takes several frames as a pipelined client sends
//! them (queued as the connection queues them, so consecutive produce
//! requests with acks 0 or 1 are answered as one run) and can restart the
//! broker between them, so the
//! group coordinator replays `__consumer_offsets` from what earlier frames
//! wrote.

use std::path::PathBuf;
use std::time::Duration;

use rill_broker::BrokerConfig;
use rill_broker::socketless::State;

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    /// Whether dropping the harness removes its data directory.
    remove_on_drop: bool,
    state: State,
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
        let state =
            State::open(config, runtime.handle()).expect("the fuzz harness data directory opens");
        Harness {
            runtime,
            remove_on_drop: true,
            state,
            dir,
        }
    }

    /// Stops the broker cleanly and starts it again on the same data.
    fn restart(&mut self) {
        self.state.close();
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

    /// Answers `frames` in order as the connection would.
    fn answer(&mut self, frames: &[&[u8]]) {
        let patience = Duration::from_millis(200);
        self.runtime
            .block_on(self.state.answer_frames(frames, patience));
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
