//! `rill bench produce|consume|e2e`: a load generator for any
//! Kafka-compatible broker, built on `rill-client`.
//!
//! - `produce`: throughput and send → ack latency of N producers.
//! - `consume`: throughput of one consumer, assigned or in a group.
//! - `e2e`: producer and consumer in one process at a fixed rate; each
//!   payload carries its send time, so latency is receive − send on one clock.
//!
//! Every run ends in one summary (a table, or one JSON object with `--json`).
//! This module holds what the three share: stopping rules, the latency
//! histogram, the pacer for `--rate`, the progress ticker and the summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rill_client::{AdminClient, Client, ClientConfig, Error, NewTopic, code};

use crate::tools::{Brokers, Failure, progress, run, run_on_one_thread};

mod consume;
mod e2e;
mod produce;
mod timer;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Produce messages as fast as allowed; throughput and send → ack latency
    Produce(produce::ProduceArgs),
    /// Consume a topic from the beginning; throughput
    Consume(consume::ConsumeArgs),
    /// Produce at a fixed rate and consume in the same process; end-to-end latency
    E2e(e2e::E2eArgs),
}

pub fn main(command: BenchCommand) -> std::process::ExitCode {
    match command {
        BenchCommand::Produce(args) => run(produce::produce(args)),
        BenchCommand::Consume(args) => run(consume::consume(args)),
        // The producer's side on this thread alone; see `e2e`.
        BenchCommand::E2e(args) => run_on_one_thread(e2e::e2e(args)),
    }
}

/// The topic every subcommand defaults to, so `produce` then `consume` with
/// no flags read what was written.
const TOPIC_DEFAULT: &str = "rill-bench";

/// Latencies above this are recorded as this (an hour, in microseconds);
/// the histogram's size depends on it.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// How often the progress bar is redrawn from the counters.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// Flags every subcommand takes.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Topic to use
    #[arg(short = 't', long, default_value = TOPIC_DEFAULT)]
    topic: String,
    /// Stop after this many messages
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this long (e.g. 30s, 500ms, 2m; a bare number is seconds)
    #[arg(short = 'd', long, value_name = "TIME", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Print one JSON object on stdout instead of the table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    brokers: Brokers,
}

impl Common {
    fn client_config(&self) -> ClientConfig {
        ClientConfig {
            client_id: "rill-bench".into(),
            ..self.brokers.client_config()
        }
    }

    fn failure(&self) -> impl Fn(Error) -> Failure + '_ {
        |error| Failure::from_client(error, &self.brokers)
    }
}

/// `30s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .and_then(|value| Duration::try_from_secs_f64(value * scale).ok())
        .ok_or_else(|| format!("`{text}` is not a duration such as 30s, 500ms or 2m"))
}

/// `--rate`: messages per second, 0 for no limit.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate >= 0.0)
        .ok_or_else(|| format!("`{text}` is not a rate in messages per second (0: no limit)"))
}

/// When a run stops: after a count, a duration, or whichever comes first.
#[derive(Clone, Copy, Debug)]
struct Stop {
    count: Option<u64>,
    deadline: Option<Instant>,
}

impl Stop {
    fn new(count: Option<u64>, duration: Option<Duration>, started: Instant) -> Stop {
        Stop {
            count,
            deadline: duration.map(|duration| started + duration),
        }
    }

    fn reached(&self, done: u64, now: Instant) -> bool {
        self.count.is_some_and(|count| done >= count)
            || self.deadline.is_some_and(|deadline| now >= deadline)
    }
}

/// When the `n`th message (from 0) of a paced run is due: message n goes
/// out at `start + n / rate`, so a late wake-up sends the backlog at once
/// and the average rate holds.
#[derive(Clone, Copy, Debug)]
struct Pacer {
    start: Instant,
    /// Messages per second; 0 is no limit.
    rate: f64,
}

impl Pacer {
    fn due(&self, n: u64) -> Option<Instant> {
        (self.rate > 0.0).then(|| self.start + Duration::from_secs_f64(n as f64 / self.rate))
    }
}

/// Latencies in microseconds.
struct Latency {
    histogram: Histogram<u64>,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            // Three significant digits from 1 µs to an hour: ~200 KiB.
            histogram: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("the bounds are constants that hdrhistogram accepts"),
        }
    }

    fn record(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).max(1);
        self.histogram.saturating_record(us);
    }

    /// Records `now - sent_at`; nothing for a message not measured.
    fn record_sent(&mut self, sent_at: Option<Instant>, now: Instant) {
        if let Some(sent_at) = sent_at {
            self.record(now.saturating_duration_since(sent_at));
        }
    }

    fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail; a failure would
        // only lose figures, never report wrong ones, so it is not fatal.
        let _ = self.histogram.add(&other.histogram);
    }

    fn count(&self) -> u64 {
        self.histogram.len()
    }

    fn json(&self) -> serde_json::Value {
        if self.count() == 0 {
            return serde_json::Value::Null;
        }
        let h = &self.histogram;
        serde_json::json!({
            "p50": h.value_at_quantile(0.50),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
            "count": h.len(),
        })
    }

    fn line(&self) -> String {
        if self.count() == 0 {
            return "no samples".into();
        }
        let h = &self.histogram;
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}",
            micros(h.value_at_quantile(0.50)),
            micros(h.value_at_quantile(0.99)),
            micros(h.value_at_quantile(0.999)),
            micros(h.max())
        )
    }
}

/// Latency second by second, so a run shows whether its tail comes from a
/// few bad seconds (a stall somewhere: the machine, the kernel, a pause)
/// or from all of them (a rate the system cannot keep up with). Samples
/// come in with the second they belong to, in order. Each second's
/// samples are added to the run's whole histogram when the second ends: one
/// histogram record per sample, not two (2 % of the e2e client's CPU).
struct BySecond {
    current: u64,
    latency: Latency,
    total: Latency,
    done: Vec<SecondFigures>,
}

/// One second of a run: how many samples, their p99 and max (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SecondFigures {
    second: u64,
    count: u64,
    p99: u64,
    max: u64,
}

impl BySecond {
    fn new() -> BySecond {
        BySecond {
            current: 0,
            latency: Latency::new(),
            total: Latency::new(),
            done: Vec::new(),
        }
    }

    fn record(&mut self, second: u64, latency: Duration) {
        if second != self.current {
            self.close();
            self.current = second;
        }
        self.latency.record(latency);
    }

    fn close(&mut self) {
        if self.latency.count() > 0 {
            let h = &self.latency.histogram;
            self.done.push(SecondFigures {
                second: self.current,
                count: h.len(),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            });
            self.total.merge(&self.latency);
            self.latency.histogram.reset();
        }
    }

    /// The whole run's histogram, and each second's figures.
    fn finish(mut self) -> (Latency, Vec<SecondFigures>) {
        self.close();
        (self.total, self.done)
    }
}

/// The seconds of a run as JSON: one object per second that had samples.
fn seconds_json(seconds: &[SecondFigures]) -> serde_json::Value {
    seconds
        .iter()
        .map(|s| serde_json::json!({"second": s.second, "count": s.count, "p99": s.p99, "max": s.max}))
        .collect()
}

/// The seconds of a run for people: the median second's p99 and the three
/// slowest seconds.
fn seconds_line(seconds: &[SecondFigures]) -> String {
    let mut p99s: Vec<u64> = seconds.iter().map(|s| s.p99).collect();
    p99s.sort_unstable();
    let Some(&median) = p99s.get(p99s.len() / 2) else {
        return "no samples".into();
    };
    let mut slowest = seconds.to_vec();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.p99));
    let worst: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|s| format!("{} (second {})", micros(s.p99), s.second))
        .collect();
    format!(
        "p99 of the median second {}; slowest seconds {}; {} seconds",
        micros(median),
        worst.join(", "),
        seconds.len()
    )
}

/// A latency as people read it: µs below a millisecond, else ms.
fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// What one run measured.
struct Summary {
    mode: &'static str,
    topic: String,
    partitions: usize,
    /// The settings the run used, as given (printed as they are).
    settings: Vec<(&'static str, serde_json::Value)>,
    messages: u64,
    bytes: u64,
    elapsed: Duration,
    /// Named latency histograms: what was measured, and the figures.
    latencies: Vec<(&'static str, &'static str, Latency)>,
    /// The first latency second by second (e2e only; empty otherwise).
    by_second: Vec<SecondFigures>,
}

impl Summary {
    fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn json(&self) -> serde_json::Value {
        let mut object = serde_json::json!({
            "mode": self.mode,
            "topic": self.topic,
            "partitions": self.partitions,
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": self.elapsed.as_secs_f64(),
            "msgs_per_sec": self.msgs_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
        });
        let settings: serde_json::Map<String, serde_json::Value> = self
            .settings
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect();
        object["settings"] = serde_json::Value::Object(settings);
        for (key, _, latency) in &self.latencies {
            object[*key] = latency.json();
        }
        if !self.by_second.is_empty() {
            object["latency_by_second"] = seconds_json(&self.by_second);
        }
        object
    }

    fn table(&self) -> String {
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect();
        let mut out = format!(
            "{}: topic '{}' ({} partition(s)), {}\n",
            self.mode,
            self.topic,
            self.partitions,
            settings.join(" ")
        );
        out += &format!("  messages   {}\n", thousands(self.messages as f64));
        out += &format!("  seconds    {:.2}\n", self.elapsed.as_secs_f64());
        out += &format!("  msgs/s     {}\n", thousands(self.msgs_per_sec()));
        out += &format!("  MB/s       {:.1}\n", self.mb_per_sec());
        for (_, what, latency) in &self.latencies {
            out += &format!("  latency    {what}: {}\n", latency.line());
        }
        if !self.by_second.is_empty() {
            out += &format!("  by second  {}\n", seconds_line(&self.by_second));
        }
        out
    }

    fn print(&self, json: bool) {
        let text = if json {
            format!("{}\n", self.json())
        } else {
            self.table()
        };
        // A reader that went away (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    }
}

/// Redraws a progress bar from a counter every tick until dropped; the
/// counted tasks only touch an atomic.
struct Ticker {
    bar: indicatif::ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    fn start(length: Option<u64>, what: &str, counter: Arc<AtomicU64>) -> Ticker {
        let bar = progress(length, what);
        let drawn = bar.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(PROGRESS_TICK);
            loop {
                interval.tick().await;
                drawn.set_position(counter.load(Ordering::Relaxed));
            }
        });
        Ticker { bar, task }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// Payload bytes: random capital letters, as Kafka's producer perf test
/// uses, so compression has something realistic to do.
fn payload(size: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
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

/// The topic's partition count, creating the topic when it is missing
/// (with `partitions`, default 1). An existing topic with another count is
/// a usage error rather than a flag silently ignored.
async fn ensure_topic(
    common: &Common,
    client: &Client,
    partitions: Option<i32>,
) -> Result<usize, Failure> {
    let failure = common.failure();
    if partitions.is_some_and(|n| n < 1) {
        return Err(Failure::usage("--partitions must be at least 1"));
    }
    match client.topic(&common.topic).await {
        Ok(info) => {
            let existing = info.partitions.len();
            match partitions {
                Some(wanted) if wanted as usize != existing => Err(Failure::usage(format!(
                    "topic '{}' exists with {existing} partition(s), not {wanted}; \
                     use another --topic or delete it",
                    common.topic
                ))),
                _ => Ok(existing),
            }
        }
        Err(Error::UnknownTopic(_)) => {
            let wanted = partitions.unwrap_or(1);
            let admin = AdminClient::from_client(client.clone());
            match admin
                .create_topics(vec![NewTopic::new(&common.topic, wanted)])
                .await
            {
                Ok(()) => Ok(wanted as usize),
                // Created meanwhile by someone else: use it as it is.
                Err(error) if error.code() == Some(code::TOPIC_ALREADY_EXISTS) => client
                    .refresh_topic(&common.topic)
                    .await
                    .map(|info| info.partitions.len())
                    .map_err(failure),
                Err(error) => Err(failure(error)),
            }
        }
        Err(error) => Err(failure(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_parse_or_say_what_is_wrong() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("250000"), Ok(250_000.0));
        assert!(parse_rate("-5").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn paced_messages_are_due_at_start_plus_n_over_rate() {
        let start = Instant::now();
        let pacer = Pacer {
            start,
            rate: 1000.0,
        };
        assert_eq!(pacer.due(0), Some(start));
        assert_eq!(pacer.due(500), Some(start + Duration::from_millis(500)));
        let unlimited = Pacer { start, rate: 0.0 };
        assert_eq!(unlimited.due(1_000_000), None);
    }

    #[test]
    fn stop_at_count_or_deadline_whichever_first() {
        let start = Instant::now();
        let both = Stop::new(Some(10), Some(Duration::from_secs(1)), start);
        assert!(!both.reached(9, start));
        assert!(both.reached(10, start));
        assert!(both.reached(0, start + Duration::from_secs(1)));
    }

    #[test]
    fn latency_percentiles_and_numbers_for_people() {
        let mut latency = Latency::new();
        for us in 1..=1000 {
            latency.record(Duration::from_micros(us));
        }
        let json = latency.json();
        assert_eq!(json["count"], 1000);
        assert_eq!(json["p50"], 500);
        assert_eq!(json["max"], 1000);
        assert_eq!(thousands(1_234_567.6), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(micros(250), "250 µs");
        assert_eq!(micros(2500), "2.50 ms");
    }

    #[test]
    fn latency_by_second_keeps_each_seconds_tail() {
        let mut by_second = BySecond::new();
        for us in 1..=100 {
            by_second.record(0, Duration::from_micros(us));
        }
        // Second 1 had nothing; second 2 one slow stretch.
        for _ in 0..99 {
            by_second.record(2, Duration::from_micros(10));
        }
        by_second.record(2, Duration::from_millis(40));
        by_second.record(3, Duration::from_micros(5));
        let (total, seconds) = by_second.finish();
        assert_eq!(total.count(), 201);
        assert_eq!(total.histogram.value_at_quantile(0.5), 10);
        assert!((40_000..=40_040).contains(&total.histogram.max()));
        let figures: Vec<(u64, u64)> = seconds.iter().map(|s| (s.second, s.count)).collect();
        assert_eq!(figures, [(0, 100), (2, 100), (3, 1)]);
        assert_eq!(seconds[0].p99, 99);
        // Three significant digits: the 40 ms sample reads back within 0.1 %.
        assert!((40_000..=40_040).contains(&seconds[1].max), "{seconds:?}");
        let json = seconds_json(&seconds);
        assert_eq!(json[1]["second"], 2);
        assert_eq!(json[1]["max"], seconds[1].max);
        assert_eq!(
            seconds_line(&seconds),
            "p99 of the median second 10 µs; slowest seconds 99 µs (second 0), 10 µs (second 2), 5 µs (second 3); 3 seconds"
        );
        assert_eq!(seconds_line(&[]), "no samples");
    }
}
