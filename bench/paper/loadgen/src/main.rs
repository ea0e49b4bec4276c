//! `paperload`: the load generators and probes behind bench/paper/run.sh.
//!
//! - `amqp-produce`, `amqp-consume`: RabbitMQ over AMQP 0-9-1 (lapin).
//! - `stomp-produce`, `stomp-consume`: ActiveMQ over STOMP 1.2 (by hand).
//! - `--sink` on any of those four runs the same client against a fake
//!   broker in this process that discards what it is sent, or sends
//!   pre-built messages as fast as it can: the load generator's own ceiling.
//! - `disk-write`, `tcp-loopback`, `cache-read`, `cpu-stalls`: the
//!   machine's limits.
//!
//! Every command prints one JSON object on stdout.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod amqp;
mod limits;
mod stomp;

/// What a client run measured.
pub struct Outcome {
    pub messages: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Stopped by `--seconds-max` before `--messages`.
    pub capped: bool,
}

impl Outcome {
    fn json(&self, what: &str) -> serde_json::Value {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        serde_json::json!({
            "what": what,
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": seconds,
            "msgs_per_sec": self.messages as f64 / seconds,
            "mb_per_sec": self.bytes as f64 / 1e6 / seconds,
            "capped": self.capped,
        })
    }
}

/// The flags of a client run.
#[derive(Clone, Debug)]
pub struct Run {
    /// AMQP URL or STOMP host:port.
    pub target: String,
    pub queue: String,
    pub messages: u64,
    pub size: usize,
    /// Messages handed to the socket together: 1 is one message per write.
    pub burst: u64,
    /// Unacknowledged messages the broker may send the consumer.
    pub prefetch: u64,
    pub seconds_max: f64,
    pub persistent: bool,
    pub sink: bool,
}

impl Run {
    pub fn deadline(&self, start: Instant) -> Instant {
        start + Duration::from_secs_f64(self.seconds_max)
    }
}

/// `--name value` pairs; every flag takes a value except the listed switches.
struct Flags {
    pairs: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags> {
        const SWITCHES: [&str; 2] = ["--persistent", "--sink"];
        let mut pairs = Vec::new();
        let mut switches = Vec::new();
        let mut rest = args.iter();
        while let Some(name) = rest.next() {
            if SWITCHES.contains(&name.as_str()) {
                switches.push(name.clone());
            } else if name.starts_with("--") {
                let value = rest
                    .next()
                    .with_context(|| format!("{name} needs a value"))?;
                pairs.push((name.clone(), value.clone()));
            } else {
                bail!("unexpected argument `{name}`");
            }
        }
        Ok(Flags { pairs, switches })
    }

    fn text(&self, name: &str, default: &str) -> String {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map_or(default.to_string(), |(_, value)| value.clone())
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.pairs.iter().rev().find(|(key, _)| key == name) {
            None => Ok(default),
            Some((_, value)) => value
                .parse()
                .ok()
                .with_context(|| format!("{name}: `{value}` is not a number")),
        }
    }

    fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|switch| switch == name)
    }

    fn run(&self, target_default: &str) -> Result<Run> {
        let run = Run {
            target: self.text("--target", target_default),
            queue: self.text("--queue", "paper"),
            messages: self.number("--messages", 10_000_000)?,
            size: self.number("--size", 200)?,
            burst: self.number("--burst", 1)?,
            prefetch: self.number("--prefetch", 1000)?,
            seconds_max: self.number("--seconds-max", 600.0)?,
            persistent: self.switch("--persistent"),
            sink: self.switch("--sink"),
        };
        if run.burst == 0 || run.prefetch < 2 || run.messages == 0 {
            bail!("--burst and --messages must be at least 1, --prefetch at least 2");
        }
        if run.seconds_max.is_nan() || run.seconds_max <= 0.0 {
            bail!("--seconds-max must be positive");
        }
        Ok(run)
    }
}

const USAGE: &str = "usage: paperload COMMAND [--flag value ...]
  amqp-produce | amqp-consume   --target amqp://127.0.0.1:5672/%2f
  stomp-produce | stomp-consume --target 127.0.0.1:61613
      --queue NAME --messages N --size BYTES --burst N --prefetch N
      --seconds-max S [--persistent] [--sink]
  disk-write --dir DIR --mib N [--sync end|none]
  tcp-loopback --mib N
  cache-read --dir DIR --mib N
  cpu-stalls --seconds S";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    };
    match dispatch(command, rest) {
        Ok(json) => {
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("paperload {command}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(command: &str, rest: &[String]) -> Result<serde_json::Value> {
    let flags = Flags::parse(rest)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    const AMQP: &str = "amqp://127.0.0.1:5672/%2f";
    const STOMP: &str = "127.0.0.1:61613";
    match command {
        "amqp-produce" => {
            let run = flags.run(AMQP)?;
            Ok(runtime.block_on(amqp::produce(run))?.json(command))
        }
        "amqp-consume" => {
            let run = flags.run(AMQP)?;
            Ok(runtime.block_on(amqp::consume(run))?.json(command))
        }
        "stomp-produce" => {
            let run = flags.run(STOMP)?;
            Ok(runtime.block_on(stomp::produce(run))?.json(command))
        }
        "stomp-consume" => {
            let run = flags.run(STOMP)?;
            Ok(runtime.block_on(stomp::consume(run))?.json(command))
        }
        "disk-write" => limits::disk_write(
            &flags.text("--dir", "."),
            flags.number("--mib", 1024)?,
            &flags.text("--sync", "none"),
        ),
        "tcp-loopback" => limits::tcp_loopback(flags.number("--mib", 4096)?),
        "cache-read" => limits::cache_read(&flags.text("--dir", "."), flags.number("--mib", 1024)?),
        "cpu-stalls" => limits::cpu_stalls(flags.number("--seconds", 10.0)?),
        _ => bail!("unknown command `{command}`\n{USAGE}"),
    }
}
