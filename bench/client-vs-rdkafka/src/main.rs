//! Rill's own client against librdkafka (through the `rdkafka` crate) on
//! the same running broker, in the same run: producer and consumer msgs/s
//! for fixed-size messages on one partition. A program that prints numbers,
//! not a test. It starts nothing itself; `bench/client-vs-librdkafka.sh`
//! starts a broker and runs it.
//!
//! Each round produces N messages with each client, each into a new topic,
//! the client that goes first alternating by round; then each round
//! consumes one topic (the one librdkafka wrote in round 1, so both
//! consumers read the same batches) from the beginning with each client.
//!
//! Settings, the same for both clients where they have the knob:
//! - producer: acks=1, idempotence off, no compression, linger 5 ms,
//!   batches of up to `--batch-bytes` (1,000,000), 32 MiB of messages
//!   waiting for acknowledgement at most;
//! - consumer: partition assigned and read from the beginning, no group
//!   joined,
//!   fetch.max.bytes 16 MiB, max.partition.fetch.bytes 1 MiB, fetch wait
//!   500 ms, fetch.min.bytes 1.

use std::collections::VecDeque;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::topic_partition_list::{Offset as RdOffset, TopicPartitionList};
use rill_client::{
    Acks, AdminClient, AsyncConsumer, AsyncProducer, ClientConfig, Compression, ConsumerConfig,
    DeliveryFuture, Message, NewTopic, Offset, ProducerConfig, TopicPartition,
};

const USAGE: &str = "\
usage: rill-client-vs-rdkafka --brokers HOST:PORT [--messages N] [--size BYTES]
                              [--rounds N] [--batch-bytes BYTES] [--topic-prefix NAME]

Produces then consumes N messages of BYTES each with rill-client and with
librdkafka (rdkafka crate), alternating, on topics NAME-<round>-<client>
(one partition each, deleted at the end). Prints each figure, the best and
median per client, and the ratio rill/rdkafka.
  --messages      messages per run [default: 5000000]
  --size          payload bytes per message [default: 200]
  --rounds        runs per client and side [default: 3]
  --batch-bytes   producer batch size (batch.size) [default: 1000000]
  --topic-prefix  [default: cvr-<pid>]";

/// Bytes of messages a producer holds before `send` waits: rill-client's
/// default `buffer_memory`, given to librdkafka as
/// `queue.buffering.max.kbytes` so both apply the same back-pressure.
const BUFFER_BYTES: usize = 32 << 20;

/// rill-client deliveries awaited at once, as in `rill bench produce`: the
/// 32 MiB buffer (~160,000 messages of 200 B) binds first at that size;
/// this bounds the queue when messages are tiny.
const DELIVERIES_IN_FLIGHT_MAX: usize = 200_000;

/// librdkafka's message-count limit on its queue, set above what
/// `BUFFER_BYTES` holds so the byte limit binds, as for rill-client.
const RDKAFKA_QUEUE_MESSAGES_MAX: usize = 1_000_000;

const LINGER: Duration = Duration::from_millis(5);
const FETCH_MAX_BYTES: i32 = 16 << 20;
const PARTITION_FETCH_MAX_BYTES: i32 = 1 << 20;
const FETCH_WAIT: Duration = Duration::from_millis(500);

/// How long `poll` waits before the loop looks at the clock again.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// A consumer that got nothing for this long fails the run.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// librdkafka's flush at the end of a producer run, at most.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

struct Args {
    brokers: String,
    messages: u64,
    size: usize,
    rounds: usize,
    batch_bytes: usize,
    topic_prefix: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        brokers: String::new(),
        messages: 5_000_000,
        size: 200,
        rounds: 3,
        batch_bytes: 1_000_000,
        topic_prefix: format!("cvr-{}", std::process::id()),
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .replace([',', '_'], "")
                .parse::<u64>()
                .map_err(|_| format!("{flag}: '{value}' is not a number"))
        };
        match flag.as_str() {
            "-b" | "--brokers" => args.brokers = value.clone(),
            "--messages" => args.messages = number()?,
            "--size" => args.size = number()? as usize,
            "--rounds" => args.rounds = number()? as usize,
            "--batch-bytes" => args.batch_bytes = number()? as usize,
            "--topic-prefix" => args.topic_prefix = value.clone(),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.brokers.is_empty() {
        return Err("--brokers is required".into());
    }
    if args.messages == 0 || args.size == 0 || args.rounds == 0 || args.batch_bytes == 0 {
        return Err("--messages, --size, --rounds and --batch-bytes must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("rill-client-vs-rdkafka: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // rill-client runs on this runtime (its default shape: a worker per
    // core); librdkafka runs on its own threads, driven from this one.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rill-client-vs-rdkafka: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match run(&runtime, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rill-client-vs-rdkafka: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Client {
    Rill,
    Rdkafka,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Rill => "rill",
            Client::Rdkafka => "rdkafka",
        }
    }
}

/// The two clients in the order round `round` (from 0) runs them.
fn order(round: usize) -> [Client; 2] {
    if round.is_multiple_of(2) {
        [Client::Rill, Client::Rdkafka]
    } else {
        [Client::Rdkafka, Client::Rill]
    }
}

type BenchResult<T> = Result<T, String>;

fn run(runtime: &tokio::runtime::Runtime, args: &Args) -> BenchResult<()> {
    let admin = runtime
        .block_on(AdminClient::connect(client_config(args)))
        .map_err(|e| format!("cannot reach {}: {e}", args.brokers))?;
    let payload = payload(args.size);
    println!(
        "rill-client vs librdkafka {} (rdkafka crate): {} messages of {} B, one partition, \
         {} round(s), broker {}",
        rdkafka::util::get_rdkafka_version().1,
        args.messages,
        args.size,
        args.rounds,
        args.brokers
    );
    let mut topics = Vec::new();
    let result = (|| {
        let mut produced = Results::default();
        let mut source = None;
        for round in 0..args.rounds {
            for client in order(round) {
                let topic = format!("{}-{}-{}", args.topic_prefix, round + 1, client.name());
                runtime
                    .block_on(admin.create_topics(vec![NewTopic::new(&topic, 1)]))
                    .map_err(|e| format!("cannot create topic {topic}: {e}"))?;
                topics.push(topic.clone());
                let cpu_before = process_cpu_seconds();
                let seconds = match client {
                    Client::Rill => runtime.block_on(produce_rill(args, &topic, &payload))?,
                    Client::Rdkafka => produce_rdkafka(args, &topic, &payload)?,
                };
                let cpu = process_cpu_seconds() - cpu_before;
                let end = runtime
                    .block_on(admin.list_offsets(&topic, Offset::End))
                    .map_err(|e| format!("cannot list offsets of {topic}: {e}"))?;
                let held = end.get(&0).copied().unwrap_or(0);
                if held != args.messages as i64 {
                    return Err(format!(
                        "{} produced {} messages into {topic}, which holds {held}",
                        client.name(),
                        args.messages
                    ));
                }
                print_run("produce", round, client, args, seconds, cpu);
                produced.record(client, args.messages as f64 / seconds, cpu);
                if round == 0 && client == Client::Rdkafka {
                    source = Some(topic);
                }
            }
        }
        let source = source.expect("round 1 ran rdkafka");
        let mut consumed = Results::default();
        for round in 0..args.rounds {
            for client in order(round) {
                let cpu_before = process_cpu_seconds();
                let seconds = match client {
                    Client::Rill => runtime.block_on(consume_rill(args, &source))?,
                    Client::Rdkafka => consume_rdkafka(args, &source)?,
                };
                let cpu = process_cpu_seconds() - cpu_before;
                print_run("consume", round, client, args, seconds, cpu);
                consumed.record(client, args.messages as f64 / seconds, cpu);
            }
        }
        println!("summary (msgs/s; best and median of {} runs)", args.rounds);
        produced.print("produce", args.size, args.messages);
        consumed.print("consume", args.size, args.messages);
        Ok(())
    })();
    // Topics go even after a failure, so a shared broker is not left
    // holding gigabytes.
    if let Err(error) = runtime.block_on(admin.delete_topics(&topics)) {
        eprintln!("rill-client-vs-rdkafka: cannot delete the topics {topics:?}: {error}");
    }
    result
}

fn client_config(args: &Args) -> ClientConfig {
    ClientConfig {
        client_id: "rill-client-vs-rdkafka".into(),
        ..ClientConfig::new(&args.brokers)
    }
}

/// Filler that does not compress to nothing (no compression is used, but a
/// broker or disk that dedups should not flatter anyone).
fn payload(size: usize) -> Bytes {
    let mut state: u64 = 0x5eed;
    (0..size)
        .map(|_| {
            // xorshift64: fast, and good enough for filler.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// CPU time (user + system) this process has used, from /proc/self/stat
/// (in USER_HZ ticks, 100 per second on Linux). Both clients run in this
/// process one after the other, so the difference across a run is that
/// client's CPU: a figure the other load on a shared machine does not
/// change much, unlike msgs/s.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The command name (field 2) is in parentheses and may hold spaces;
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let Some(after) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

fn print_run(side: &str, round: usize, client: Client, args: &Args, seconds: f64, cpu: f64) {
    let rate = args.messages as f64 / seconds;
    println!(
        "round {} {side:<7} {:<7} {:>12} msg/s {:>7.1} MB/s ({seconds:.2} s, client CPU {cpu:.2} s = {:.2} us/msg)",
        round + 1,
        client.name(),
        group_digits(rate),
        rate * args.size as f64 / 1e6,
        cpu * 1e6 / args.messages as f64,
    );
}

#[derive(Default)]
struct Results {
    rill: Vec<f64>,
    rdkafka: Vec<f64>,
    rill_cpu: Vec<f64>,
    rdkafka_cpu: Vec<f64>,
}

impl Results {
    fn record(&mut self, client: Client, rate: f64, cpu: f64) {
        match client {
            Client::Rill => {
                self.rill.push(rate);
                self.rill_cpu.push(cpu);
            }
            Client::Rdkafka => {
                self.rdkafka.push(rate);
                self.rdkafka_cpu.push(cpu);
            }
        }
    }

    fn print(&self, side: &str, size: usize, messages: u64) {
        let per_message = |cpu: &[f64]| {
            let mut cpu = cpu.to_vec();
            cpu.sort_by(f64::total_cmp);
            cpu.get(cpu.len() / 2).copied().unwrap_or(f64::NAN) * 1e6 / messages as f64
        };
        let (rill_cpu, rd_cpu) = (per_message(&self.rill_cpu), per_message(&self.rdkafka_cpu));
        println!(
            "{side:<7} client CPU per message (median): rill {rill_cpu:.2} us, rdkafka {rd_cpu:.2} us, rdkafka/rill {:.2}",
            rd_cpu / rill_cpu
        );
        let (rill_best, rill_median) = best_median(&self.rill);
        let (rd_best, rd_median) = best_median(&self.rdkafka);
        for (name, best, median) in [
            ("rill", rill_best, rill_median),
            ("rdkafka", rd_best, rd_median),
        ] {
            println!(
                "{side:<7} {name:<7} best {:>12} msg/s ({:.1} MB/s)  median {:>12} msg/s",
                group_digits(best),
                best * size as f64 / 1e6,
                group_digits(median)
            );
        }
        println!(
            "{side:<7} ratio rill/rdkafka: best {:.2}, median {:.2}",
            rill_best / rd_best,
            rill_median / rd_median
        );
    }
}

fn best_median(rates: &[f64]) -> (f64, f64) {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    };
    (sorted[sorted.len() - 1], median)
}

fn group_digits(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// rill-client: `AsyncProducer::send` in a loop, as `rill bench produce`
/// does; the time runs from the first send to the last acknowledgement.
async fn produce_rill(args: &Args, topic: &str, payload: &Bytes) -> BenchResult<f64> {
    let producer = AsyncProducer::connect(ProducerConfig {
        client: client_config(args),
        acks: Acks::Leader,
        idempotence: false,
        compression: Compression::None,
        batch_size: args.batch_bytes,
        linger: LINGER,
        buffer_memory: BUFFER_BYTES,
        ..ProducerConfig::default()
    })
    .await
    .map_err(|e| format!("rill producer: {e}"))?;
    let failed = |e: rill_client::Error| format!("rill producer on {topic}: {e}");
    let started = Instant::now();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for _ in 0..args.messages {
        let delivery = producer
            .send(topic, Message::new(payload.clone()))
            .await
            .map_err(failed)?;
        pending.push_back(delivery);
        harvest(&mut pending).map_err(failed)?;
        if pending.len() >= DELIVERIES_IN_FLIGHT_MAX
            && let Some(oldest) = pending.pop_front()
        {
            oldest.await.map_err(failed)?;
        }
    }
    producer.flush().await.map_err(failed)?;
    for delivery in pending {
        delivery.await.map_err(failed)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    producer.close().await.map_err(failed)?;
    Ok(seconds)
}

/// Drops every delivery at the front that is already answered, failing on
/// the first error, without waiting.
fn harvest(pending: &mut VecDeque<DeliveryFuture>) -> Result<(), rill_client::Error> {
    let mut context = Context::from_waker(Waker::noop());
    while let Some(delivery) = pending.front_mut() {
        match Pin::new(delivery).poll(&mut context) {
            Poll::Pending => break,
            Poll::Ready(result) => {
                result?;
                pending.pop_front();
            }
        }
    }
    Ok(())
}

/// Counts librdkafka's delivery reports (served by `poll` and `flush`).
#[derive(Default)]
struct Deliveries {
    acknowledged: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acknowledged.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn rdkafka_config(args: &Args) -> RdConfig {
    let mut config = RdConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("client.id", "rill-client-vs-rdkafka");
    config
}

/// librdkafka: `BaseProducer::send` in a loop (the crate's fastest path:
/// no future per message), serving delivery reports with `poll` whenever
/// the queue is full, then `flush`; the time runs from the first send to
/// the last delivery report.
fn produce_rdkafka(args: &Args, topic: &str, payload: &[u8]) -> BenchResult<f64> {
    let producer: BaseProducer<Deliveries> = rdkafka_config(args)
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("linger.ms", LINGER.as_millis().to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set(
            "queue.buffering.max.kbytes",
            (BUFFER_BYTES / 1024).to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            RDKAFKA_QUEUE_MESSAGES_MAX.to_string(),
        )
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("rdkafka producer: {e}"))?;
    let failed = |e: KafkaError| format!("rdkafka producer on {topic}: {e}");
    let started = Instant::now();
    for _ in 0..args.messages {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(failed(error)),
            }
        }
    }
    producer.flush(FLUSH_TIMEOUT).map_err(failed)?;
    let seconds = started.elapsed().as_secs_f64();
    let deliveries = producer.context();
    let acknowledged = deliveries.acknowledged.load(Ordering::Relaxed);
    let lost = deliveries.failed.load(Ordering::Relaxed);
    if acknowledged != args.messages || lost != 0 {
        return Err(format!(
            "rdkafka producer on {topic}: {acknowledged} of {} messages acknowledged, {lost} failed",
            args.messages
        ));
    }
    Ok(seconds)
}

/// rill-client: `AsyncConsumer::poll` until every message came; the time
/// runs from `assign` to the last message.
async fn consume_rill(args: &Args, topic: &str) -> BenchResult<f64> {
    let consumer = AsyncConsumer::connect(ConsumerConfig {
        client: client_config(args),
        group_id: None,
        auto_offset_reset: Offset::Beginning,
        enable_auto_commit: false,
        fetch_max_wait: FETCH_WAIT,
        fetch_min_bytes: 1,
        fetch_max_bytes: FETCH_MAX_BYTES,
        partition_max_bytes: PARTITION_FETCH_MAX_BYTES,
        ..ConsumerConfig::default()
    })
    .await
    .map_err(|e| format!("rill consumer: {e}"))?;
    let failed = |e: rill_client::Error| format!("rill consumer on {topic}: {e}");
    let started = Instant::now();
    consumer
        .assign(vec![TopicPartition::new(topic, 0)])
        .await
        .map_err(failed)?;
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let mut last_arrival = started;
    while messages < args.messages {
        let polled = consumer.poll(POLL_WAIT).await.map_err(failed)?;
        if polled.is_empty() {
            if last_arrival.elapsed() > IDLE_TIMEOUT {
                return Err(idle(Client::Rill, topic, messages, args.messages));
            }
            continue;
        }
        last_arrival = Instant::now();
        for message in &polled {
            messages += 1;
            bytes += message.payload().len() as u64;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    consumer.close().await.map_err(failed)?;
    check_consumed(Client::Rill, messages, bytes, args)?;
    Ok(seconds)
}

/// librdkafka: `BaseConsumer::poll` (one message per call, borrowed from
/// librdkafka's queue, the crate's fastest path) until every message came;
/// the time runs from `assign` to the last message.
fn consume_rdkafka(args: &Args, topic: &str) -> BenchResult<f64> {
    // librdkafka's consumer queue needs a group id even for assigned
    // partitions; with nothing subscribed and nothing committed, the group
    // is never joined.
    let consumer: BaseConsumer = rdkafka_config(args)
        .set("group.id", "rill-client-vs-rdkafka")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT.as_millis().to_string())
        .set("fetch.min.bytes", "1")
        .set("fetch.max.bytes", FETCH_MAX_BYTES.to_string())
        .set(
            "max.partition.fetch.bytes",
            PARTITION_FETCH_MAX_BYTES.to_string(),
        )
        .create()
        .map_err(|e| format!("rdkafka consumer: {e}"))?;
    let failed = |e: KafkaError| format!("rdkafka consumer on {topic}: {e}");
    let started = Instant::now();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, RdOffset::Beginning)
        .map_err(failed)?;
    consumer.assign(&assignment).map_err(failed)?;
    let mut messages = 0u64;
    let mut bytes = 0u64;
    // The clock is read on empty polls only: reading it per message would
    // be a visible share of this loop.
    let mut last_arrival = started;
    let mut messages_seen = 0u64;
    while messages < args.messages {
        match consumer.poll(POLL_WAIT) {
            None if messages != messages_seen => {
                messages_seen = messages;
                last_arrival = Instant::now();
            }
            None if last_arrival.elapsed() > IDLE_TIMEOUT => {
                return Err(idle(Client::Rdkafka, topic, messages, args.messages));
            }
            None => {}
            Some(Err(error)) => return Err(failed(error)),
            Some(Ok(message)) => {
                messages += 1;
                bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    check_consumed(Client::Rdkafka, messages, bytes, args)?;
    Ok(seconds)
}

fn idle(client: Client, topic: &str, messages: u64, wanted: u64) -> String {
    format!(
        "{} consumer on {topic}: only {messages} of {wanted} messages arrived; none in the last {IDLE_TIMEOUT:?}",
        client.name()
    )
}

fn check_consumed(client: Client, messages: u64, bytes: u64, args: &Args) -> BenchResult<()> {
    let wanted = args.messages * args.size as u64;
    if bytes != wanted {
        return Err(format!(
            "{} consumer read {messages} messages of {bytes} bytes in all, not {wanted}",
            client.name()
        ));
    }
    Ok(())
}
