//! `rill produce TOPIC`: one message per input line.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use rill_client::{Acks, AsyncProducer, Compression, DeliveryFuture, Message, ProducerConfig};

use crate::tools::{Brokers, Failure, key_value, progress, run};

/// Deliveries awaited at once: enough to keep batches full, few enough
/// that a failure is reported soon after it happens.
const DELIVERIES_IN_FLIGHT_MAX: usize = 100_000;

/// The longest input line accepted; the broker's default message limit is
/// 1 MiB, so a longer line could never be sent.
const LINE_BYTES_MAX: usize = 1 << 20;

#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to
    topic: String,
    /// Split each line at the first SEP: key before, value after
    #[arg(short = 'K', long = "key-separator", value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every message (repeatable)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Compression codec: none, gzip, snappy, lz4 or zstd
    #[arg(short = 'z', long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Acknowledgements to wait for: 0 (none), 1 (leader) or all
    #[arg(short = 'a', long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Write every message to this partition instead of choosing by key
    #[arg(short = 'p', long)]
    partition: Option<i32>,
    /// Read lines from this file instead of stdin
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Wait this long to fill a batch before sending it
    #[arg(long, default_value_t = 5, value_name = "MS")]
    linger_ms: u64,
    #[command(flatten)]
    brokers: Brokers,
}

pub(crate) fn parse_compression(text: &str) -> Result<Compression, String> {
    match text {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "unknown codec `{other}`; use none, gzip, snappy, lz4 or zstd"
        )),
    }
}

pub(crate) fn parse_acks(text: &str) -> Result<Acks, String> {
    match text {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        other => Err(format!("acks must be 0, 1 or all, not `{other}`")),
    }
}

pub fn main(args: ProduceArgs) -> ExitCode {
    run(produce(args))
}

async fn produce(args: ProduceArgs) -> Result<(), Failure> {
    let headers = args
        .headers
        .iter()
        .map(|header| key_value(header))
        .collect::<Result<Vec<_>, _>>()?;
    let (input, length): (Box<dyn Read + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|error| {
                Failure::usage(format!("cannot open {}: {error}", path.display()))
            })?;
            let length = file.metadata().ok().map(|m| m.len());
            (Box::new(file), length)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let input = BufReader::with_capacity(1 << 20, input);
    let brokers = &args.brokers;
    let failure = |error| Failure::from_client(error, brokers);
    let config = ProducerConfig {
        client: brokers.client_config(),
        acks: args.acks,
        compression: args.compression,
        linger: std::time::Duration::from_millis(args.linger_ms),
        // A typo must not create a topic: the CLI says the topic is missing
        // and how to create it.
        auto_create_topics: false,
        ..ProducerConfig::default()
    };
    let producer = AsyncProducer::connect(config).await.map_err(failure)?;
    // Say that the topic is missing before reading any input.
    let topic = producer
        .client()
        .topic(&args.topic)
        .await
        .map_err(failure)?;
    if let Some(partition) = args.partition
        && !topic.partitions.iter().any(|p| p.partition == partition)
    {
        return Err(Failure::usage(format!(
            "topic '{}' has no partition {partition} (it has {})",
            args.topic,
            topic.partitions.len()
        )));
    }

    let bar = progress(
        length,
        if length.is_some() {
            "bytes"
        } else {
            "messages"
        },
    );
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let (lines, mut lines_rx) = tokio::sync::mpsc::channel::<Vec<Vec<u8>>>(16);
    // Reading stdin blocks, so it happens on its own thread.
    let reader = std::thread::spawn(move || read_lines(input, lines));
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut sent: u64 = 0;
    while let Some(chunk) = lines_rx.recv().await {
        for line in chunk {
            let read_bytes = line.len() as u64 + 1;
            let (key, value) = match separator.and_then(|sep| split(&line, sep)) {
                Some((key, value)) => (Some(key.to_vec()), value.to_vec()),
                None => (None, line),
            };
            let mut message = match key {
                Some(key) => Message::with_key(key, value),
                None => Message::new(value),
            };
            for (key, value) in &headers {
                message = message.header(key.clone(), value.clone().into_bytes());
            }
            if let Some(partition) = args.partition {
                message = message.to_partition(partition);
            }
            pending.push_back(producer.send(&args.topic, message).await.map_err(failure)?);
            sent += 1;
            bar.inc(if length.is_some() { read_bytes } else { 1 });
            if pending.len() >= DELIVERIES_IN_FLIGHT_MAX
                && let Some(oldest) = pending.pop_front()
            {
                oldest.await.map_err(failure)?;
            }
        }
    }
    let read = reader
        .join()
        .map_err(|_| Failure::failed("the input reader panicked"))?;
    for delivery in pending {
        delivery.await.map_err(failure)?;
    }
    producer.close().await.map_err(failure)?;
    bar.finish_and_clear();
    read?;
    if std::io::stderr().is_terminal() {
        eprintln!("produced {sent} message(s) to '{}'", args.topic);
    }
    Ok(())
}

/// Lines travel to the producer in chunks of this many, so the channel is
/// not crossed once per line; a terminal user's single lines still go at once.
const LINES_PER_CHUNK: usize = 1024;

fn read_lines(
    mut input: BufReader<Box<dyn Read + Send>>,
    lines: tokio::sync::mpsc::Sender<Vec<Vec<u8>>>,
) -> Result<(), Failure> {
    let mut number = 0u64;
    let mut chunk = Vec::with_capacity(LINES_PER_CHUNK);
    loop {
        let mut line = Vec::new();
        let read = Read::take(&mut input, LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|error| Failure::failed(format!("cannot read the input: {error}")))?;
        if read == 0 {
            if !chunk.is_empty() {
                let _ = lines.blocking_send(chunk);
            }
            return Ok(());
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > LINE_BYTES_MAX {
            return Err(Failure::usage(format!(
                "line {number} is longer than {LINE_BYTES_MAX} bytes"
            )));
        }
        chunk.push(line);
        // Send when the chunk is full or the input has nothing buffered, so
        // interactive input is not held back waiting for more lines.
        if (chunk.len() >= LINES_PER_CHUNK || input.buffer().is_empty())
            && lines.blocking_send(std::mem::take(&mut chunk)).is_err()
        {
            return Ok(());
        }
    }
}

fn split<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if separator.is_empty() {
        return None;
    }
    line.windows(separator.len())
        .position(|window| window == separator)
        .map(|at| (&line[..at], &line[at + separator.len()..]))
}
