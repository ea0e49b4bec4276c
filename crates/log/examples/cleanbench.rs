//! The log cleaner's benchmark: compaction throughput (MB/s of dirty log
//! processed) with many distinct keys and a low live ratio, and how much a
//! running clean slows appends to another log on the same disk.
//!
//! `cargo run --release -p rill-log --example cleanbench -- [--dir D]
//!   [--keys 1000000] [--rounds 10] [--codec none|zstd] [--seconds 5]`
//!
//! Every key is written `--rounds` times in a shuffled order per round, so
//! the live share of the log is 1/rounds (10% by default). Records are a
//! 16-byte key and an 80-byte value, 100 to a batch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_log::{Log, LogConfig, OffsetMap};
use rill_records::batch::Compression;
use rill_records::builder::BatchBuilder;

const MB: f64 = 1e6;
const RECORDS_PER_BATCH: usize = 100;
const VALUE_BYTES: usize = 80;

struct Args {
    dir: PathBuf,
    keys: u64,
    rounds: u64,
    codec: Compression,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: std::env::temp_dir().join("rill-cleanbench"),
        keys: 1_000_000,
        rounds: 10,
        codec: Compression::None,
        seconds: 5,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{} needs a number", pair[0]))
        };
        match pair[0].as_str() {
            "--dir" => args.dir = PathBuf::from(value),
            "--keys" => args.keys = number()?.max(1),
            "--rounds" => args.rounds = number()?.max(1),
            "--seconds" => args.seconds = number()?.max(1),
            "--codec" => {
                args.codec = match value {
                    "none" => Compression::None,
                    "zstd" => Compression::Zstd,
                    "lz4" => Compression::Lz4,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    _ => return Err(format!("unknown codec {value}")),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 20,
        cleanup_compact: true,
        cleanup_delete: false,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn batch(keys: &[u64], round: u64, codec: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec);
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    for key in keys {
        let key = Bytes::from(format!("key-{key:012}").into_bytes());
        let mut value = value.to_vec();
        value[..8].copy_from_slice(&round.to_be_bytes());
        builder
            .append(now_ms(), Some(key), Some(Bytes::from(value)), Vec::new())
            .expect("record fits");
    }
    builder.build().expect("batch builds")
}

/// Writes every key `rounds` times; returns the log and the bytes written.
fn write_dirty_log(dir: &Path, args: &Args) -> (Log, u64) {
    let _ = std::fs::remove_dir_all(dir);
    let log = Log::open(dir, config()).expect("log opens");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut order: Vec<u64> = (0..args.keys).collect();
    let mut bytes = 0u64;
    for round in 0..args.rounds {
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for chunk in order.chunks(RECORDS_PER_BATCH) {
            let batch = batch(chunk, round, args.codec);
            bytes += batch.len() as u64;
            log.append(&batch, 0, now_ms()).expect("append");
        }
    }
    (log, bytes)
}

/// Appends the same batch to `log` until `stop`; returns bytes per second.
fn append_rate(log: &Log, batch: &[u8], stop: &AtomicBool, seconds: u64) -> f64 {
    let started = Instant::now();
    let mut bytes = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(seconds) {
        log.append(batch, 0, now_ms()).expect("append");
        bytes += batch.len() as u64;
    }
    bytes as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("cleanbench: {message}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&args.dir).expect("bench directory");
    println!(
        "cleanbench: {} keys x {} rounds (live ratio {:.0}%), codec {:?}, dir {}",
        args.keys,
        args.rounds,
        100.0 / args.rounds as f64,
        args.codec,
        args.dir.display()
    );

    // 1. One clean of the whole dirty log, alone on the machine.
    let started = Instant::now();
    let (log, written) = write_dirty_log(&args.dir.join("dirty-0"), &args);
    let write_secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {:.0} MB in {} segments at {:.0} MB/s",
        written as f64 / MB,
        log.segment_count(),
        written as f64 / MB / write_secs
    );
    let mut map = OffsetMap::with_memory(128 << 20);
    let started = Instant::now();
    let stats = log
        .clean(now_ms(), &mut map, &mut |_| true)
        .expect("clean")
        .expect("the log is dirty");
    let secs = started.elapsed().as_secs_f64();
    let clean_rate = stats.dirty_bytes as f64 / MB / secs;
    println!(
        "clean: {:.0} MB dirty in {:.2} s = {:.0} MB/s of dirty log (target >= 100: {}), \
         {:.2} M records/s; read {:.0} MB, wrote {:.0} MB, removed {} of {} records, \
         segments {} -> {}, map {} of {} keys",
        stats.dirty_bytes as f64 / MB,
        secs,
        clean_rate,
        if clean_rate >= 100.0 { "met" } else { "MISSED" },
        stats.records_read as f64 / 1e6 / secs,
        stats.bytes_read as f64 / MB,
        stats.bytes_written as f64 / MB,
        stats.records_removed,
        stats.records_read,
        stats.segments_before,
        stats.segments_after,
        map.len(),
        map.capacity(),
    );
    log.close().expect("close");
    drop(log);

    // 2. Appends to another log, alone and while a clean runs.
    let (dirty, _) = write_dirty_log(&args.dir.join("dirty-1"), &args);
    let target = Log::open(&args.dir.join("produce-0"), LogConfig::default()).expect("log opens");
    let keys: Vec<u64> = (0..RECORDS_PER_BATCH as u64).collect();
    let produce_batch = batch(&keys, 0, args.codec);
    let never = AtomicBool::new(false);
    let alone = append_rate(&target, &produce_batch, &never, args.seconds);
    let cleaning = AtomicBool::new(true);
    let (with_cleaner, clean_secs) = std::thread::scope(|scope| {
        let cleaner = scope.spawn(|| {
            let started = Instant::now();
            let mut map = OffsetMap::with_memory(128 << 20);
            dirty
                .clean(now_ms(), &mut map, &mut |_| true)
                .expect("clean");
            cleaning.store(false, Ordering::Relaxed);
            started.elapsed().as_secs_f64()
        });
        // Appends only while the clean runs (at most --seconds).
        let started = Instant::now();
        let mut bytes = 0u64;
        while cleaning.load(Ordering::Relaxed)
            && started.elapsed() < Duration::from_secs(args.seconds)
        {
            target.append(&produce_batch, 0, now_ms()).expect("append");
            bytes += produce_batch.len() as u64;
        }
        let rate = bytes as f64 / started.elapsed().as_secs_f64();
        (rate, cleaner.join().expect("cleaner thread"))
    });
    let ratio = with_cleaner / alone;
    println!(
        "append while cleaning: {:.0} MB/s vs {:.0} MB/s alone = {:.2} (target >= 0.80: {}); \
         the concurrent clean took {:.2} s",
        with_cleaner / MB,
        alone / MB,
        ratio,
        if ratio >= 0.8 { "met" } else { "MISSED" },
        clean_secs
    );
    drop(dirty);
    drop(target);
    let _ = std::fs::remove_dir_all(&args.dir);
}
