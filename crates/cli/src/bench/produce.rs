//! `rill bench produce`: N producers, each its own connection, sending as
//! fast as `--rate` allows; latency is send → acknowledgement.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_client::{Acks, AsyncProducer, Compression, DeliveryFuture, Message, ProducerConfig};

use super::timer::FineTimer;
use super::{Common, Latency, Pacer, Stop, Summary, Ticker, ensure_topic, parse_rate, payload};
use crate::tools::Failure;

/// Deliveries awaited at once per producer. The producer's buffer memory
/// (32 MiB, ~150,000 messages of 200 B) usually binds first; this bounds
/// the queue of timestamps when messages are tiny.
const DELIVERIES_IN_FLIGHT_MAX: usize = 200_000;

/// Deliveries not yet answered, oldest first, with their send times (none
/// for a warm-up message, whose latency is not recorded).
type Pending = VecDeque<(Option<Instant>, DeliveryFuture)>;

/// Sends between two looks at which deliveries are answered.
const HARVEST_EVERY: u64 = 16;

/// The shortest sleep of a paced loop that has sent everything due, and the
/// longest it sends without a pause when behind. Together they make a
/// paced run's load what its rate says, rather than bursts; both measured
/// with `rill bench e2e` at 1.46 M msg/s.
///
/// - On tokio's timer the loop slept at least ~1.06 ms (its 1 ms tick,
///   rounded up), so 2 ms of messages went out at once: p50 ~2 ms. Waking
///   every 0.5 ms (a timerfd, `FineTimer`) halves the bursts; 0.25 ms cost
///   the broker 40 % more CPU for more, smaller requests.
/// - The producer and its sender share one thread in `rill bench e2e`. A
///   loop that fell behind sent until the producer's buffer memory (32 MiB,
///   ~100 ms of messages) was full before the sender could write one
///   request, so one stall made 20-40 ms of latency. Yielding after 0.25 ms
///   of sending lets the sender take what is ready, as Kafka's sender
///   thread would.
const PAUSE_MIN: Duration = Duration::from_micros(500);
const BURST_MAX: Duration = Duration::from_micros(250);

/// Producers at most: each is a connection and a task.
const PRODUCERS_MAX: usize = 1024;

/// The largest message size accepted: the broker's default message limit.
pub(super) const MESSAGE_BYTES_MAX: usize = 1 << 20;

/// Flags that shape how messages are produced (shared with `e2e`).
#[derive(clap::Args, Clone)]
pub struct ProducerFlags {
    /// Payload size of each message in bytes
    #[arg(
        short = 's',
        long = "size",
        default_value_t = 200,
        value_name = "BYTES"
    )]
    pub size: usize,
    /// Acknowledgements to wait for: 0 (none), 1 (leader) or all (-1)
    #[arg(
        short = 'a',
        long,
        default_value = "1",
        allow_negative_numbers = true,
        value_parser = crate::produce::parse_acks
    )]
    pub acks: Acks,
    /// A batch closes when its records reach this many bytes (uncompressed);
    /// 1 sends every message in its own batch
    #[arg(long, default_value_t = 512 * 1024, value_name = "BYTES")]
    pub batch_size: usize,
    /// Compression codec: none, gzip, snappy, lz4 or zstd
    #[arg(short = 'z', long, default_value = "none", value_parser = crate::produce::parse_compression)]
    pub compression: Compression,
    /// Batches of one partition on the wire at once (Kafka's
    /// max.in.flight.requests.per.connection)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_in_flight: usize,
    /// Bytes of batches in one Produce request (Kafka's max.request.size)
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_request_size: usize,
    /// Create the topic with this many partitions if it does not exist
    /// [default: 1]
    #[arg(short = 'p', long, value_name = "N")]
    pub partitions: Option<i32>,
}

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    producer: ProducerFlags,
    /// Wait this long to fill a batch before sending it
    #[arg(long, default_value_t = 5, value_name = "MS")]
    linger_ms: u64,
    /// Messages per second across all producers; 0 is no limit
    #[arg(short = 'r', long, default_value = "0", allow_negative_numbers = true, value_parser = parse_rate)]
    rate: f64,
    /// Concurrent producers, each with its own connection
    #[arg(short = 'P', long, default_value_t = 1, value_name = "N")]
    producers: usize,
}

/// Checks the producer flags and builds the client settings.
pub(super) fn producer_config(
    common: &Common,
    flags: &ProducerFlags,
    linger: Duration,
) -> Result<ProducerConfig, Failure> {
    if flags.size > MESSAGE_BYTES_MAX {
        return Err(Failure::usage(format!(
            "--size must be at most {MESSAGE_BYTES_MAX} bytes (the broker's default message limit)"
        )));
    }
    if flags.batch_size == 0 {
        return Err(Failure::usage("--batch-size must be at least 1"));
    }
    if flags.max_request_size == 0 {
        return Err(Failure::usage("--max-request-size must be at least 1"));
    }
    if !(1..=rill_client::MAX_IN_FLIGHT_LIMIT).contains(&flags.max_in_flight) {
        return Err(Failure::usage(format!(
            "--max-in-flight must be between 1 and {}",
            rill_client::MAX_IN_FLIGHT_LIMIT
        )));
    }
    Ok(ProducerConfig {
        client: common.client_config(),
        acks: flags.acks,
        compression: flags.compression,
        batch_size: flags.batch_size,
        max_in_flight: flags.max_in_flight,
        max_request_size: flags.max_request_size,
        linger,
        ..ProducerConfig::default()
    })
}

pub(super) fn acks_name(acks: Acks) -> &'static str {
    match acks {
        Acks::None => "0",
        Acks::Leader => "1",
        Acks::All => "all",
    }
}

pub(super) fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

pub async fn produce(args: ProduceArgs) -> Result<(), Failure> {
    let common = &args.common;
    let failure = common.failure();
    if args.producers == 0 || args.producers > PRODUCERS_MAX {
        return Err(Failure::usage(format!(
            "--producers must be between 1 and {PRODUCERS_MAX}"
        )));
    }
    if args.producer.size == 0 {
        return Err(Failure::usage("--size must be at least 1 byte"));
    }
    let linger = Duration::from_millis(args.linger_ms);
    let config = producer_config(common, &args.producer, linger)?;
    // Without --count or --duration: a million messages.
    let count = match (common.count, common.duration) {
        (None, None) => Some(1_000_000),
        (count, _) => count,
    };
    let mut producers = Vec::with_capacity(args.producers);
    for _ in 0..args.producers {
        producers.push(
            AsyncProducer::connect(config.clone())
                .await
                .map_err(&failure)?,
        );
    }
    let partitions = ensure_topic(common, producers[0].client(), args.producer.partitions).await?;
    let value = payload(args.producer.size, 0x5eed);
    let counter = Arc::new(AtomicU64::new(0));
    let ticker = Ticker::start(count, "messages", counter.clone());

    let started = Instant::now();
    let n = args.producers as u64;
    let runs = producers.iter().enumerate().map(|(index, producer)| {
        // The count and rate are split evenly; the first producers take
        // the remainder of the count.
        let share = count.map(|count| count / n + u64::from((index as u64) < count % n));
        let stop = Stop::new(share, common.duration, started);
        let pacer = Pacer {
            start: started,
            rate: args.rate / n as f64,
        };
        run_producer(
            producer,
            &common.topic,
            stop,
            pacer,
            started,
            &counter,
            |_| value.clone(),
        )
    });
    // The send loops run on this thread, as in an application calling
    // `send` from its own thread; the runtime's workers run the producers'
    // senders and connections.
    let runs = futures_util::future::try_join_all(runs)
        .await
        .map_err(&failure)?;
    let mut latency = Latency::new();
    let mut messages = 0;
    for run in &runs {
        messages += run.sent;
        latency.merge(&run.latency);
    }
    let elapsed = started.elapsed();
    drop(ticker);
    for producer in &producers {
        producer.close().await.map_err(&failure)?;
    }

    let flags = &args.producer;
    Summary {
        mode: "produce",
        topic: common.topic.clone(),
        partitions,
        settings: vec![
            ("size", flags.size.into()),
            ("acks", acks_name(flags.acks).into()),
            ("batch_size", flags.batch_size.into()),
            ("max_in_flight", flags.max_in_flight.into()),
            ("max_request_size", flags.max_request_size.into()),
            ("linger_ms", args.linger_ms.into()),
            ("compression", compression_name(flags.compression).into()),
            ("producers", args.producers.into()),
            ("rate", args.rate.into()),
        ],
        messages,
        bytes: messages * flags.size as u64,
        elapsed,
        latencies: vec![("latency_us", latency_what(flags.acks), latency)],
        by_second: Vec::new(),
    }
    .print(common.json);
    Ok(())
}

/// What "latency" means for these acks.
pub(super) fn latency_what(acks: Acks) -> &'static str {
    match acks {
        // Nothing comes back: the delivery resolves once the request is
        // written to the socket.
        Acks::None => "send → written to the socket (acks=0)",
        _ => "send → ack",
    }
}

pub(super) struct ProducerRun {
    pub sent: u64,
    pub latency: Latency,
}

/// Sends messages until `stop`, at the pace of `pacer`, recording each
/// one's send → acknowledgement time; `value(at)` makes the payload of a
/// message sent at `at`.
///
/// A paced message is sent at the time it was due, not when the loop got
/// to it: a loop that falls behind (waiting for buffer memory, a late
/// wake-up, a slow `send`) then shows in the latencies instead of hiding
/// from them (coordinated omission), and the messages due by one clock
/// read go out without a clock read each (one per message was a twentieth
/// of the e2e client's sending thread). An unpaced message's send time is
/// the call to `send`. Messages sent before `measure_from` (a warm-up)
/// are sent and awaited, and their latencies not recorded.
pub(super) async fn run_producer(
    producer: &AsyncProducer,
    topic: &str,
    stop: Stop,
    pacer: Pacer,
    measure_from: Instant,
    counter: &AtomicU64,
    mut value: impl FnMut(Instant) -> Bytes,
) -> Result<ProducerRun, rill_client::Error> {
    let mut latency = Latency::new();
    let mut pending: Pending = VecDeque::new();
    let mut sent: u64 = 0;
    let mut now = Instant::now();
    // Each record's timestamp is the moment it was due (or created, when
    // unpaced), on the wall clock: reckoned from this one reading rather
    // than read per message by the producer, which costs a clock read
    // (23-35 ns here) per message.
    let wall_at_now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    let clock_start = now;
    let timer = FineTimer::new();
    let mut yield_at = now + BURST_MAX;
    loop {
        let at = match pacer.due(sent) {
            None => {
                now = Instant::now();
                now
            }
            Some(due) => {
                if due > now {
                    // Everything due by the last clock read is sent.
                    now = Instant::now();
                    if due <= now && now >= yield_at {
                        // Behind for a while: let the sender take what is
                        // ready before going on.
                        tokio::task::yield_now().await;
                        now = Instant::now();
                        yield_at = now + BURST_MAX;
                    }
                    if due > now && !stop.reached(sent, now) {
                        let wake = due.max(now + PAUSE_MIN);
                        wait_until(&timer, wake, &mut pending, &mut latency).await?;
                        now = Instant::now();
                        yield_at = now + BURST_MAX;
                        continue;
                    }
                }
                due
            }
        };
        // `now` may be a burst old: the deadline is seen up to one burst
        // late, and a loop that is behind still reads the clock whenever
        // the next message's due time passes it.
        if stop.reached(sent, now) {
            break;
        }
        let timestamp =
            wall_at_now_ms + at.saturating_duration_since(clock_start).as_millis() as i64;
        let delivery = producer
            .send(topic, Message::new(value(at)).at(timestamp))
            .await?;
        pending.push_back(((at >= measure_from).then_some(at), delivery));
        sent += 1;
        counter.fetch_add(1, Ordering::Relaxed);
        // Every few sends is often enough to keep `pending` short, and an
        // answer is then recorded at most that many sends late (µs).
        if sent.is_multiple_of(HARVEST_EVERY) {
            harvest(&mut pending, &mut latency)?;
        }
        if pending.len() >= DELIVERIES_IN_FLIGHT_MAX
            && let Some((sent_at, oldest)) = pending.pop_front()
        {
            oldest.await?;
            latency.record_sent(sent_at, Instant::now());
        }
    }
    producer.flush().await?;
    for (sent_at, delivery) in pending {
        delivery.await?;
        latency.record_sent(sent_at, Instant::now());
    }
    Ok(ProducerRun { sent, latency })
}

/// Records every delivery at the front that is already answered, without
/// waiting. Deliveries are answered in order per partition, so the first
/// unanswered one ends the scan; with several partitions an answer queued
/// behind another partition's pending one is recorded late, overstating
/// its latency by at most that other answer's wait.
fn harvest(pending: &mut Pending, latency: &mut Latency) -> Result<(), rill_client::Error> {
    let mut context = Context::from_waker(Waker::noop());
    let mut now = None;
    while let Some((sent_at, delivery)) = pending.front_mut() {
        match Pin::new(delivery).poll(&mut context) {
            Poll::Pending => break,
            Poll::Ready(result) => {
                result?;
                // No clock read for a warm-up message.
                if let Some(sent_at) = *sent_at {
                    let now = *now.get_or_insert_with(Instant::now);
                    latency.record(now.saturating_duration_since(sent_at));
                }
                pending.pop_front();
            }
        }
    }
    Ok(())
}

/// Sleeps until `due`, recording acknowledgements as they arrive.
async fn wait_until(
    timer: &FineTimer,
    due: Instant,
    pending: &mut Pending,
    latency: &mut Latency,
) -> Result<(), rill_client::Error> {
    let sleep = timer.sleep_until(due);
    tokio::pin!(sleep);
    loop {
        let Some((sent_at, delivery)) = pending.front_mut() else {
            sleep.await;
            return Ok(());
        };
        tokio::select! {
            result = delivery => {
                result?;
                latency.record_sent(*sent_at, Instant::now());
                pending.pop_front();
                // The rest of the batch is answered too: one clock read
                // for all of them rather than one each.
                harvest(pending, latency)?;
            }
            () = &mut sleep => return Ok(()),
        }
    }
}
