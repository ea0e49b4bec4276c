//! Prints build and decode throughput of a 1,000-record batch for each codec.
//!
//! Run with `cargo run --release -p rill-records --example batch_throughput`.
//! The records are 100-byte values with 10-byte keys, half of them text and
//! half random, so every codec has something to compress and something not.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_records::batch::Compression;
use rill_records::builder::BatchBuilder;
use rill_records::record::decode_batch;

const RECORDS_PER_BATCH: usize = 1_000;
/// Measures each codec for at least this long.
const MEASURE_FOR: Duration = Duration::from_millis(500);

fn main() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random_byte = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as u8
    };
    let records: Vec<(Bytes, Bytes)> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            let key = Bytes::from(format!("key-{i:06}"));
            let text = format!("{{\"id\":{i},\"event\":\"click\",\"page\":\"/home\"}}");
            let mut value = text.into_bytes();
            value.extend((0..50).map(|_| random_byte()));
            value.resize(100, b' ');
            (key, Bytes::from(value))
        })
        .collect();
    let uncompressed_len: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();

    println!("codec   batch bytes  build MB/s  decode MB/s  (payload {uncompressed_len} bytes)");
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let build = || {
            let mut builder = BatchBuilder::new(codec);
            for (i, (key, value)) in records.iter().enumerate() {
                builder
                    .append(i as i64, Some(key.clone()), Some(value.clone()), Vec::new())
                    .expect("benchmark records fit a batch");
            }
            builder.build().expect("benchmark batch builds")
        };
        let batch = build();
        let build_rate = rate(uncompressed_len, || {
            std::hint::black_box(build());
        });
        let decode_rate = rate(uncompressed_len, || {
            std::hint::black_box(decode_batch(&batch, 1 << 20).expect("benchmark batch decodes"));
        });
        println!(
            "{:<7} {:>11}  {:>10.0}  {:>11.0}",
            rill_records::compression::codec_name(codec),
            batch.len(),
            build_rate,
            decode_rate
        );
    }
}

/// Payload megabytes per second over repeated runs of `f`.
fn rate(payload_len: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < MEASURE_FOR {
        f();
        runs += 1;
    }
    (payload_len as f64 * f64::from(runs)) / start.elapsed().as_secs_f64() / 1e6
}
