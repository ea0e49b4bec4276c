//! `rill consume TOPIC`: print messages, alone or as a group member.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use rill_client::{AsyncConsumer, ConsumerConfig, GroupProtocol, Message, Offset, TopicPartition};

use crate::tools::{Brokers, Failure, progress, run};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// The value only, one per line
    Plain,
    /// Key, separator, value
    Kv,
    /// One JSON object per line with topic, partition, offset, timestamp,
    /// key, value and headers
    Json,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read
    topic: String,
    /// Where to start: beginning, end, an OFFSET, or @TIMESTAMP_MS.
    /// With a group it applies only where the group has no committed offset
    #[arg(short = 'o', long, default_value = "beginning", value_parser = parse_offset)]
    offset: Offset,
    /// Stop after this many messages
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// Stop at the end of every partition instead of waiting for more
    #[arg(short = 'e', long)]
    exit: bool,
    /// Consume as a member of this group (committing offsets)
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Read only these partitions (repeatable; not with --group)
    #[arg(short = 'p', long = "partition", conflicts_with = "group")]
    partitions: Vec<i32>,
    /// Output format
    #[arg(short = 'f', long, value_enum, default_value = "plain")]
    format: Format,
    /// Read through N message streams (the paper's API), each on its own
    /// thread; JSON lines then say which stream a message came through
    #[arg(long, value_name = "N", conflicts_with_all = ["partitions", "exit"])]
    streams: Option<usize>,
    /// With --group: how long the group waits for a silent member before
    /// handing its partitions to others
    #[arg(long, default_value_t = 45_000, value_name = "MS")]
    session_timeout_ms: u64,
    /// With --group: the group protocol, `classic` (JoinGroup/SyncGroup) or
    /// `consumer` (KIP-848, the broker assigns; Kafka's group.protocol)
    #[arg(long, value_enum, default_value = "classic")]
    group_protocol: Protocol,
    /// Separator between key and value with --format kv
    #[arg(
        short = 'K',
        long = "key-separator",
        default_value = "\t",
        value_name = "SEP"
    )]
    key_separator: String,
    #[command(flatten)]
    brokers: Brokers,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Protocol {
    Classic,
    Consumer,
}

/// The consumer settings both ways of consuming share.
fn consumer_config(args: &ConsumeArgs, reset: Offset) -> ConsumerConfig {
    ConsumerConfig {
        client: args.brokers.client_config(),
        group_id: args.group.clone(),
        auto_offset_reset: reset,
        fetch_max_wait: Duration::from_millis(200),
        heartbeat_interval: Duration::from_secs(1),
        auto_commit_interval: Duration::from_secs(1),
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        group_protocol: match args.group_protocol {
            Protocol::Classic => GroupProtocol::Classic,
            Protocol::Consumer => GroupProtocol::Consumer,
        },
        ..ConsumerConfig::default()
    }
}

/// `beginning`, `end`, an offset, or `@` and a timestamp in milliseconds.
pub fn parse_offset(text: &str) -> Result<Offset, String> {
    match text {
        "beginning" | "earliest" | "start" => Ok(Offset::Beginning),
        "end" | "latest" => Ok(Offset::End),
        _ => {
            if let Some(timestamp) = text.strip_prefix('@') {
                return timestamp
                    .parse::<i64>()
                    .ok()
                    .filter(|&ms| ms >= 0)
                    .map(Offset::Timestamp)
                    .ok_or_else(|| format!("`{text}` is not @TIMESTAMP_MS"));
            }
            text.parse::<i64>()
                .ok()
                .filter(|&offset| offset >= 0)
                .map(Offset::At)
                .ok_or_else(|| {
                    format!("`{text}` is not beginning, end, an offset or @TIMESTAMP_MS")
                })
        }
    }
}

pub fn main(args: ConsumeArgs) -> ExitCode {
    if matches!(args.group_protocol, Protocol::Consumer) && args.group.is_none() {
        eprintln!("rill: --group-protocol applies to a group: give one with --group");
        return ExitCode::from(2);
    }
    match args.streams {
        Some(n) => match consume_streams(&args, n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("rill: {}", failure.message);
                ExitCode::from(failure.code)
            }
        },
        None => run(consume(args)),
    }
}

/// `--streams N`: the paper's `create_message_streams`, one thread per
/// stream, until `--count` messages were printed (or forever).
fn consume_streams(args: &ConsumeArgs, n: usize) -> Result<(), Failure> {
    let brokers = &args.brokers;
    let failure = |error| Failure::from_client(error, brokers);
    if n == 0 {
        return Err(Failure::usage("--streams must be at least 1"));
    }
    let reset = match args.offset {
        Offset::Beginning | Offset::End => args.offset,
        _ => {
            return Err(Failure::usage(
                "--streams starts at beginning or end (or the group's offsets)",
            ));
        }
    };
    let consumer = rill_client::Consumer::new(consumer_config(args, reset)).map_err(failure)?;
    let streams = consumer
        .create_message_streams(&args.topic, n)
        .map_err(failure)?;
    let printed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let count = args.count;
    let format = args.format;
    let separator = args.key_separator.clone();
    for (index, mut stream) in streams.into_iter().enumerate() {
        let printed = printed.clone();
        let done = done.clone();
        let separator = separator.clone();
        std::thread::spawn(move || {
            while let Some(message) = stream.next() {
                let number = printed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if count.is_some_and(|count| number >= count) {
                    // Past the count: not printed, so not committed either.
                    stream.give_back();
                    let _ = done.send(());
                    return;
                }
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                let written = match format {
                    Format::Json => write_json(&mut out, &message, Some(index)),
                    _ => write_message(&mut out, &message, format, &separator),
                };
                if written.and_then(|()| out.flush()).is_err() {
                    let _ = done.send(());
                    return;
                }
                if count.is_some_and(|count| number + 1 >= count) {
                    let _ = done.send(());
                }
            }
        });
    }
    drop(done);
    // Returns when the count is reached; without a count, never.
    let _ = finished.recv();
    consumer.close().map_err(failure)
}

async fn consume(args: ConsumeArgs) -> Result<(), Failure> {
    let brokers = &args.brokers;
    let failure = |error| Failure::from_client(error, brokers);
    let reset = match args.offset {
        Offset::At(_) | Offset::Timestamp(_) => Offset::Beginning,
        other => other,
    };
    let consumer = AsyncConsumer::connect(consumer_config(&args, reset))
        .await
        .map_err(failure)?;
    let topic = consumer
        .client()
        .topic(&args.topic)
        .await
        .map_err(failure)?;
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic]).await.map_err(failure)?;
    } else {
        let partitions: Vec<TopicPartition> = if args.partitions.is_empty() {
            topic
                .partitions
                .iter()
                .map(|p| TopicPartition::new(&args.topic, p.partition))
                .collect()
        } else {
            args.partitions
                .iter()
                .map(|&p| TopicPartition::new(&args.topic, p))
                .collect()
        };
        consumer.assign(partitions).await.map_err(failure)?;
        if matches!(args.offset, Offset::At(_) | Offset::Timestamp(_)) {
            consumer.seek_all(args.offset).map_err(failure)?;
        }
    }
    // With --exit: where each partition ended when we started.
    let ends: BTreeMap<i32, i64> = if args.exit {
        rill_client::AdminClient::from_client(consumer.client().clone())
            .list_offsets(&args.topic, Offset::End)
            .await
            .map_err(failure)?
    } else {
        BTreeMap::new()
    };

    let bar = progress(args.count, "messages");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed: u64 = 0;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    'consuming: loop {
        if args.count.is_some_and(|count| printed >= count) {
            break;
        }
        if args.exit && at_end(&consumer, &ends).await {
            break;
        }
        let messages = tokio::select! {
            polled = consumer.poll(Duration::from_millis(200)) => polled.map_err(failure)?,
            _ = &mut interrupt => break,
        };
        for message in &messages {
            if args.count.is_some_and(|count| printed >= count) {
                break;
            }
            if write_message(&mut out, message, args.format, &args.key_separator).is_err() {
                // The reader went away (`| head`): stop quietly.
                break 'consuming;
            }
            printed += 1;
            bar.inc(1);
        }
        if out.flush().is_err() {
            break;
        }
    }
    bar.finish_and_clear();
    let _ = out.flush();
    consumer.close().await.map_err(failure)
}

/// Whether every assigned partition has reached where it ended at start.
async fn at_end(consumer: &AsyncConsumer, ends: &BTreeMap<i32, i64>) -> bool {
    for tp in consumer.assignment() {
        let end = ends.get(&tp.partition).copied().unwrap_or(0);
        match consumer.position(&tp).await {
            Ok(position) if position >= end => {}
            _ => return false,
        }
    }
    !consumer.assignment().is_empty()
}

fn write_message(
    out: &mut impl Write,
    message: &Message,
    format: Format,
    separator: &str,
) -> std::io::Result<()> {
    match format {
        Format::Plain => {
            out.write_all(message.payload())?;
            out.write_all(b"\n")
        }
        Format::Kv => {
            out.write_all(message.key().map_or(&[][..], |k| k.as_ref()))?;
            out.write_all(separator.as_bytes())?;
            out.write_all(message.payload())?;
            out.write_all(b"\n")
        }
        Format::Json => write_json(out, message, None),
    }
}

fn write_json(
    out: &mut impl Write,
    message: &Message,
    stream: Option<usize>,
) -> std::io::Result<()> {
    let text = |bytes: Option<&bytes::Bytes>| match bytes {
        Some(bytes) => serde_json::Value::String(String::from_utf8_lossy(bytes).into()),
        None => serde_json::Value::Null,
    };
    let headers: Vec<serde_json::Value> = message
        .headers()
        .iter()
        .map(|h| serde_json::json!({"key": h.key, "value": text(h.value.as_ref())}))
        .collect();
    let mut object = serde_json::json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": message.timestamp(),
        "key": text(message.key()),
        "value": text(message.value()),
        "headers": headers,
    });
    if let Some(stream) = stream {
        object["stream"] = serde_json::json!(stream);
    }
    writeln!(out, "{object}")
}
