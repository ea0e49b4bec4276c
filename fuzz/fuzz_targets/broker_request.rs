//! Any bytes as one request frame (header and body, without the size
//! prefix) to a real broker state: the request decoder and every handler
//! must answer or refuse without a panic, a hang or unbounded allocation.
//! Seeds: real frames captured from kcat, confluent-kafka, kafka-python and
//! KafkaJS (fuzz/seeds/broker/).

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use rill_broker::fuzzing::Harness;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fuzz_target!(|frame: &[u8]| {
    let mut harness = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    harness.get_or_insert_with(Harness::new).feed(frame);
});
