//! `rill bench consume`: one consumer reads a topic from the beginning,
//! its partitions assigned (default) or handed out by a consumer group.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rill_client::{AdminClient, AsyncConsumer, ConsumerConfig, Offset, TopicPartition};

use super::{Common, Stop, Summary, Ticker};
use crate::tools::Failure;

/// How long `poll` waits before the loop looks at the clock again.
const POLL_WAIT: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Consume as a member of this group instead of assigning partitions.
    /// Nothing is committed, so every run starts from the beginning (unless
    /// the group already has offsets committed by another client)
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Read only these partitions (repeatable; default all; not with --group)
    #[arg(long = "partition", value_name = "N", conflicts_with = "group")]
    partitions: Vec<i32>,
    /// Most bytes one fetch response may carry (Kafka's fetch.max.bytes)
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    fetch_max_bytes: i32,
    /// Most bytes one fetch may carry per partition
    /// (Kafka's max.partition.fetch.bytes)
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    partition_max_bytes: i32,
    /// Longest the broker may hold a fetch waiting for data
    #[arg(long, default_value_t = 500, value_name = "MS")]
    fetch_max_wait_ms: u64,
    /// Start each partition this many messages before its end instead of at
    /// the beginning (reads the newest data; not with --group)
    #[arg(long, value_name = "N", conflicts_with = "group")]
    last: Option<u64>,
    /// Fail when no message arrived for this long before the count was reached
    #[arg(long, default_value = "10s", value_name = "TIME", value_parser = super::parse_duration)]
    idle_timeout: Duration,
}

pub async fn consume(args: ConsumeArgs) -> Result<(), Failure> {
    let common = &args.common;
    let failure = common.failure();
    if args.fetch_max_bytes < 1 || args.partition_max_bytes < 1 {
        return Err(Failure::usage(
            "--fetch-max-bytes and --partition-max-bytes must be at least 1",
        ));
    }
    let consumer = AsyncConsumer::connect(ConsumerConfig {
        client: common.client_config(),
        group_id: args.group.clone(),
        auto_offset_reset: Offset::Beginning,
        enable_auto_commit: false,
        fetch_max_wait: Duration::from_millis(args.fetch_max_wait_ms),
        fetch_max_bytes: args.fetch_max_bytes,
        partition_max_bytes: args.partition_max_bytes,
        ..ConsumerConfig::default()
    })
    .await
    .map_err(&failure)?;
    let topic = consumer
        .client()
        .topic(&common.topic)
        .await
        .map_err(&failure)?;
    let partitions: Vec<i32> = if args.partitions.is_empty() {
        topic.partitions.iter().map(|p| p.partition).collect()
    } else {
        for &partition in &args.partitions {
            if !topic.partitions.iter().any(|p| p.partition == partition) {
                return Err(Failure::usage(format!(
                    "topic '{}' has no partition {partition} (it has {})",
                    common.topic,
                    topic.partitions.len()
                )));
            }
        }
        args.partitions.clone()
    };

    // Without --count or --duration: what the partitions hold now (from
    // the starting point).
    let count = match (common.count, common.duration) {
        (None, None) => {
            let held = held(&consumer, &common.topic, &partitions, args.last)
                .await
                .map_err(&failure)?;
            if held == 0 {
                return Err(Failure::failed(format!(
                    "topic '{}' is empty; fill it first, e.g. with `rill bench produce -t {}`",
                    common.topic, common.topic
                )));
            }
            Some(held)
        }
        (count, _) => count,
    };
    match &args.group {
        Some(_) => consumer
            .subscribe(&[&common.topic])
            .await
            .map_err(&failure)?,
        None => consumer
            .assign(
                partitions
                    .iter()
                    .map(|&p| TopicPartition::new(&common.topic, p))
                    .collect(),
            )
            .await
            .map_err(&failure)?,
    }
    if let Some(last) = args.last {
        let admin = AdminClient::from_client(consumer.client().clone());
        let ends = admin
            .list_offsets(&common.topic, Offset::End)
            .await
            .map_err(&failure)?;
        for &partition in &partitions {
            let end = ends.get(&partition).copied().unwrap_or(0);
            let start = end
                .saturating_sub(i64::try_from(last).unwrap_or(i64::MAX))
                .max(0);
            consumer
                .seek(
                    &TopicPartition::new(&common.topic, partition),
                    Offset::At(start),
                )
                .map_err(&failure)?;
        }
    }

    let counter = Arc::new(AtomicU64::new(0));
    let ticker = Ticker::start(count, "messages", counter.clone());
    let started = Instant::now();
    let stop = Stop::new(count, common.duration, started);
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let mut last_arrival = started;
    let mut ended = started;
    loop {
        let now = Instant::now();
        if stop.reached(messages, now) {
            break;
        }
        let polled = consumer.poll(POLL_WAIT).await.map_err(&failure)?;
        ended = Instant::now();
        if polled.is_empty() {
            if count.is_some() && ended.duration_since(last_arrival) > args.idle_timeout {
                return Err(Failure::failed(format!(
                    "only {messages} of {} messages arrived; none in the last {:?}",
                    count.unwrap_or_default(),
                    args.idle_timeout
                )));
            }
            continue;
        }
        last_arrival = ended;
        // Past the count, a poll's tail is not counted.
        let wanted = count.map_or(u64::MAX, |count| count - messages);
        for message in polled.iter().take(wanted.min(usize::MAX as u64) as usize) {
            messages += 1;
            bytes += (message.payload().len() + message.key().map_or(0, |key| key.len())) as u64;
        }
        counter.store(messages, Ordering::Relaxed);
    }
    drop(ticker);
    consumer.close().await.map_err(&failure)?;

    let mut settings = vec![
        ("fetch_max_bytes", args.fetch_max_bytes.into()),
        ("partition_max_bytes", args.partition_max_bytes.into()),
        ("fetch_max_wait_ms", args.fetch_max_wait_ms.into()),
    ];
    if let Some(group) = &args.group {
        settings.insert(0, ("group", group.clone().into()));
    }
    if let Some(last) = args.last {
        settings.push(("last", last.into()));
    }
    Summary {
        mode: "consume",
        topic: common.topic.clone(),
        partitions: partitions.len(),
        settings,
        messages,
        bytes,
        elapsed: ended.duration_since(started),
        latencies: Vec::new(),
        by_second: Vec::new(),
    }
    .print(common.json);
    Ok(())
}

/// Messages the partitions hold now: end offset − start offset, summed,
/// counting at most `last` per partition when given.
async fn held(
    consumer: &AsyncConsumer,
    topic: &str,
    partitions: &[i32],
    last: Option<u64>,
) -> Result<u64, rill_client::Error> {
    let admin = AdminClient::from_client(consumer.client().clone());
    let starts = admin.list_offsets(topic, Offset::Beginning).await?;
    let ends = admin.list_offsets(topic, Offset::End).await?;
    Ok(partitions
        .iter()
        .map(|p| {
            let start = starts.get(p).copied().unwrap_or(0);
            let end = ends.get(p).copied().unwrap_or(start);
            ((end - start).max(0) as u64).min(last.unwrap_or(u64::MAX))
        })
        .sum())
}
