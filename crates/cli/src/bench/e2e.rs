//! `rill bench e2e`: a producer at a fixed rate and a consumer in the same
//! process, each on a thread of its own as two applications would be: the
//! producer (its sending loop and its sender task) on the main thread's
//! single-threaded runtime, the consumer on another.
//!
//! Each payload starts with its send time (nanoseconds since a
//! process-local `Instant`; when the pace made it due, see `run_producer`)
//! and the run's id, so latency is receive − send on one monotonic clock,
//! and messages of other runs are told apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use rill_client::{AsyncConsumer, AsyncProducer, ConsumerConfig, Offset, TopicPartition};

use super::produce::{
    ProducerFlags, acks_name, compression_name, latency_what, producer_config, run_producer,
};
use super::{
    BySecond, Common, Latency, Pacer, SecondFigures, Stop, Summary, Ticker, ensure_topic,
    parse_rate, payload,
};
use crate::tools::Failure;

/// Send time (8 bytes) and run id (8 bytes) at the start of every payload.
const HEADER_BYTES: usize = 16;

/// Payloads cut from one allocation (50 KiB at the default 200 bytes).
const PAYLOADS_PER_CHUNK: usize = 256;

/// How long `poll` waits before the loop looks at the clock again.
const POLL_WAIT: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct E2eArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    producer: ProducerFlags,
    /// Wait this long to fill a batch before sending it; 0 sends as soon
    /// as the partition has no batch in flight
    #[arg(long, default_value_t = 0, value_name = "MS")]
    linger_ms: u64,
    /// Messages per second (required to be above 0: latency at an
    /// unbounded rate measures the queue, not the system)
    #[arg(short = 'r', long, default_value = "10000", value_parser = parse_rate)]
    rate: f64,
    /// Send for this long first without recording latencies (the client's
    /// start: first connections, first page faults); a --duration is
    /// measured after it, a --count includes it
    #[arg(long, value_name = "TIME", value_parser = super::parse_duration)]
    warmup: Option<Duration>,
    /// Fail when the producer has finished and no message arrived for this long
    #[arg(long, default_value = "10s", value_name = "TIME", value_parser = super::parse_duration)]
    idle_timeout: Duration,
}

pub async fn e2e(args: E2eArgs) -> Result<(), Failure> {
    let common = &args.common;
    let failure = common.failure();
    if args.rate <= 0.0 {
        return Err(Failure::usage("e2e needs a --rate above 0"));
    }
    if args.producer.size < HEADER_BYTES {
        return Err(Failure::usage(format!(
            "e2e needs --size of at least {HEADER_BYTES} bytes (send time and run id)"
        )));
    }
    let linger = Duration::from_millis(args.linger_ms);
    let config = producer_config(common, &args.producer, linger)?;
    let warmup = args.warmup.unwrap_or(Duration::ZERO);
    // Without --count or --duration: ten seconds.
    let duration = match (common.count, common.duration) {
        (None, None) => Some(Duration::from_secs(10)),
        (_, duration) => duration,
    }
    .map(|duration| duration + warmup);

    let producer = AsyncProducer::connect(config).await.map_err(&failure)?;
    let partitions = ensure_topic(common, producer.client(), args.producer.partitions).await?;

    let epoch = Instant::now();
    // Unique enough to tell this run's messages from another's on the topic.
    let clock_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    let run_id = (u64::from(std::process::id()) << 32) ^ clock_ns;
    let filler = payload(args.producer.size, run_id);
    let received = Arc::new(AtomicU64::new(0));
    // Until the producer starts, nothing is sent to measure.
    let measure_from_ns = Arc::new(AtomicU64::new(u64::MAX));
    // u64::MAX until the producer is done and says how many it sent.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let consumer = start_consumer(
        common.clone(),
        partitions,
        Receive {
            epoch,
            run_id,
            idle_timeout: args.idle_timeout,
            measure_from_ns: measure_from_ns.clone(),
            received: received.clone(),
            expected: expected.clone(),
        },
    )?;
    consumer
        .ready
        .await
        .map_err(|_| Failure::failed("the consumer thread stopped"))??;
    let ticker = Ticker::start(common.count, "messages", received.clone());

    let started = Instant::now();
    measure_from_ns.store(
        (started + warmup).duration_since(epoch).as_nanos() as u64,
        Ordering::Release,
    );
    let stop = Stop::new(common.count, duration, started);
    let pacer = Pacer {
        start: started,
        rate: args.rate,
    };
    let size = args.producer.size;
    // Payloads are cut from shared chunks: an allocation per message, freed
    // on the sender's thread, was the client's largest single cost (glibc's
    // arena lock), and the client shares the machine with the broker.
    let mut chunk = BytesMut::new();
    let sent = run_producer(
        &producer,
        &common.topic,
        stop,
        pacer,
        started + warmup,
        &AtomicU64::new(0),
        |at| {
            let sent_ns = at.duration_since(epoch).as_nanos() as u64;
            if chunk.capacity() < size {
                chunk = BytesMut::with_capacity(size * PAYLOADS_PER_CHUNK);
            }
            chunk.put_u64_le(sent_ns);
            chunk.put_u64_le(run_id);
            chunk.put_slice(&filler[HEADER_BYTES..]);
            chunk.split().freeze()
        },
    )
    .await
    .map_err(&failure)?;
    expected.store(sent.sent, Ordering::Relaxed);
    let consumed = consumer
        .done
        .await
        .map_err(|_| Failure::failed("the consumer thread panicked"))??;
    let elapsed = started.elapsed();
    drop(ticker);
    producer.close().await.map_err(&failure)?;
    let _ = consumer.thread.join();

    let flags = &args.producer;
    Summary {
        mode: "e2e",
        topic: common.topic.clone(),
        partitions,
        settings: vec![
            ("size", flags.size.into()),
            ("rate", args.rate.into()),
            ("acks", acks_name(flags.acks).into()),
            ("batch_size", flags.batch_size.into()),
            ("linger_ms", args.linger_ms.into()),
            ("warmup_s", warmup.as_secs_f64().into()),
            ("compression", compression_name(flags.compression).into()),
        ],
        messages: consumed.messages,
        bytes: consumed.bytes,
        elapsed,
        latencies: vec![
            (
                "latency_us",
                "end to end (send → receive)",
                consumed.latency,
            ),
            ("ack_latency_us", latency_what(flags.acks), sent.latency),
        ],
        by_second: consumed.by_second,
    }
    .print(common.json);
    Ok(())
}

type Reply<T> = tokio::sync::oneshot::Receiver<Result<T, Failure>>;

struct ConsumerThread {
    thread: std::thread::JoinHandle<()>,
    ready: Reply<()>,
    done: Reply<Consumed>,
}

/// Starts the consumer on a thread and runtime of its own: it answers
/// `ready` once it is positioned at the end of every partition (so nothing
/// older than the run is consumed), and
/// `done` when every message the producer sent has arrived.
fn start_consumer(
    common: Common,
    partitions: usize,
    run: Receive,
) -> Result<ConsumerThread, Failure> {
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            Failure::failed(format!("cannot start the consumer's runtime: {error}"))
        })?;
    let thread = std::thread::Builder::new()
        .name("e2e-consumer".into())
        .spawn(move || {
            runtime.block_on(async move {
                let failure = common.failure();
                let consumer = match positioned_consumer(&common, partitions).await {
                    Ok(consumer) => consumer,
                    Err(error) => {
                        let _ = ready_tx.send(Err(failure(error)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let consumed = receive(consumer.clone(), run).await;
                let closed = consumer.close().await;
                let _ = done_tx.send(consumed.and_then(|consumed| {
                    closed.map_err(&failure)?;
                    Ok(consumed)
                }));
            });
        })
        .map_err(|error| Failure::failed(format!("cannot start the consumer's thread: {error}")))?;
    Ok(ConsumerThread {
        thread,
        ready,
        done,
    })
}

/// A consumer of every partition of the topic, at its end.
async fn positioned_consumer(
    common: &Common,
    partitions: usize,
) -> Result<AsyncConsumer, rill_client::Error> {
    let consumer = AsyncConsumer::connect(ConsumerConfig {
        client: common.client_config(),
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign_topic(&common.topic).await?;
    consumer.seek_all(Offset::End)?;
    for partition in 0..partitions as i32 {
        consumer
            .position(&TopicPartition::new(&common.topic, partition))
            .await?;
    }
    Ok(consumer)
}

struct Receive {
    epoch: Instant,
    run_id: u64,
    idle_timeout: Duration,
    /// Messages sent (due, for a paced one) before this, in ns since
    /// `epoch`, are consumed but not measured: the warm-up. Set by the
    /// producer's side before its first send.
    measure_from_ns: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    expected: Arc<AtomicU64>,
}

struct Consumed {
    messages: u64,
    bytes: u64,
    latency: Latency,
    /// End-to-end latency by the second (since the run began) in which
    /// the message arrived.
    by_second: Vec<SecondFigures>,
}

/// Consumes until every message the producer sent has arrived.
async fn receive(consumer: AsyncConsumer, run: Receive) -> Result<Consumed, Failure> {
    let mut by_second = BySecond::new();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let mut last_arrival = Instant::now();
    loop {
        let expected = run.expected.load(Ordering::Relaxed);
        if messages >= expected {
            break;
        }
        let polled = consumer
            .poll(POLL_WAIT)
            .await
            .map_err(|error| Failure::failed(format!("the e2e consumer failed: {error}")))?;
        let now = Instant::now();
        if polled.is_empty() {
            if expected != u64::MAX && now.duration_since(last_arrival) > run.idle_timeout {
                return Err(Failure::failed(format!(
                    "only {messages} of {expected} messages arrived; none in the last {:?}",
                    run.idle_timeout
                )));
            }
            continue;
        }
        last_arrival = now;
        let now_ns = now.duration_since(run.epoch).as_nanos() as u64;
        let second = now_ns / 1_000_000_000;
        // Set before anything of this run is sent, so never stale here.
        let measure_from_ns = run.measure_from_ns.load(Ordering::Acquire);
        for message in &polled {
            let Some((sent_ns, run_id)) = header(message.payload()) else {
                continue;
            };
            if run_id != run.run_id {
                // Another run's message on the same topic.
                continue;
            }
            messages += 1;
            bytes += message.payload().len() as u64;
            if sent_ns < measure_from_ns {
                continue;
            }
            let took = Duration::from_nanos(now_ns.saturating_sub(sent_ns));
            by_second.record(second, took);
        }
        run.received.store(messages, Ordering::Relaxed);
    }
    let (latency, by_second) = by_second.finish();
    Ok(Consumed {
        messages,
        bytes,
        latency,
        by_second,
    })
}

/// The send time and run id at the start of a payload.
fn header(payload: &[u8]) -> Option<(u64, u64)> {
    let sent_ns = payload.get(0..8)?.try_into().ok().map(u64::from_le_bytes)?;
    let run_id = payload
        .get(8..16)?
        .try_into()
        .ok()
        .map(u64::from_le_bytes)?;
    Some((sent_ns, run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reads_what_the_producer_wrote() {
        let mut value = BytesMut::new();
        value.put_u64_le(123_456_789);
        value.put_u64_le(42);
        value.put_slice(b"filler");
        assert_eq!(header(&value), Some((123_456_789, 42)));
        assert_eq!(header(b"short"), None);
    }
}
