//! Any bytes as one request frame (header and body, without the size
//! prefix) to a real broker state: the request decoder and every handler
//! must answer or refuse without a panic, a hang or unbounded allocation.
//!
//! An input that starts with `RUN\0` is a pipelined run instead: frames, each
//! a 2-byte big-endian length and that many bytes, fed in order as one client
//! sends them (produce requests with acks 0 or 1 answered as one run, as the
//! connection gathers them); a length of 0 restarts the broker at that point
//! (at most twice per input), so the group coordinator replays what earlier
//! frames wrote to `__consumer_offsets`.
//!
//! Seeds: real frames captured from kcat, confluent-kafka, kafka-python and
//! KafkaJS (fuzz/seeds/broker/), and runs built from them.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use rill_testkit::fuzz::Harness;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

const RUN_MAGIC: &[u8] = b"RUN\0";
/// A restart reopens every log and replays the offsets topic: a few per
/// input reach the replay without slowing the fuzzer to a crawl.
const RESTARTS_MAX: usize = 2;

fuzz_target!(|data: &[u8]| {
    let mut harness = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let harness = harness.get_or_insert_with(Harness::new);
    match data.strip_prefix(RUN_MAGIC) {
        Some(run) => harness.feed_run(&split_run(run)),
        None => harness.feed(data),
    }
});

/// The frames of a run; `None` where the broker restarts.
fn split_run(mut rest: &[u8]) -> Vec<Option<&[u8]>> {
    let mut frames = Vec::new();
    let mut restarts = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        if len > 0 {
            frames.push(Some(frame));
        } else if restarts < RESTARTS_MAX {
            restarts += 1;
            frames.push(None);
        }
    }
    frames
}
