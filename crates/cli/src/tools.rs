//! What every client subcommand shares: the broker list, a runtime, errors
//! as one sentence with a meaningful exit code, and progress bars that show
//! only on a terminal.

use std::io::IsTerminal;
use std::process::ExitCode;

use rill_client::{ClientConfig, Error, code};

/// Exit codes of the client subcommands, for scripts.
pub mod exit {
    /// The request failed for another reason (the sentence says which).
    pub const FAILED: u8 = 1;
    /// Bad flags or arguments (also what clap uses).
    pub const USAGE: u8 = 2;
    /// The topic or group named does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// No broker answered.
    pub const UNREACHABLE: u8 = 4;
    /// The topic being created already exists.
    pub const EXISTS: u8 = 5;
}

#[derive(clap::Args, Clone, Debug)]
pub struct Brokers {
    /// Brokers to bootstrap from; any one of them is enough
    #[arg(
        short = 'b',
        long = "brokers",
        env = "RILL_BROKERS",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT[,...]"
    )]
    pub brokers: String,
}

impl Brokers {
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            client_id: "rill-cli".into(),
            request_timeout: std::time::Duration::from_secs(10),
            ..ClientConfig::new(&self.brokers)
        }
    }
}

/// A failure to report: the sentence to print and the exit code.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit::USAGE,
        }
    }

    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit::FAILED,
        }
    }

    /// Turns a client error into a sentence a user can act on.
    pub fn from_client(error: Error, brokers: &Brokers) -> Failure {
        let not_found = |message: String| Failure {
            message,
            code: exit::NOT_FOUND,
        };
        match &error {
            Error::UnknownTopic(topic) => not_found(format!(
                "topic '{topic}' does not exist; create it with `rill topic create {topic}`"
            )),
            Error::UnknownPartition { topic, partition } => {
                not_found(format!("topic '{topic}' has no partition {partition}"))
            }
            Error::NoBroker { .. } | Error::Io { .. } | Error::Timeout { .. } => Failure {
                message: format!(
                    "cannot reach a broker at {}; is `rill serve` running there? ({error})",
                    brokers.brokers
                ),
                code: exit::UNREACHABLE,
            },
            Error::Kafka { code: c, .. } if *c == code::UNKNOWN_TOPIC_OR_PARTITION => {
                not_found(format!("{error}; the topic does not exist"))
            }
            Error::Kafka { code: c, .. } if *c == code::GROUP_ID_NOT_FOUND => {
                not_found(format!("{error}; the group does not exist"))
            }
            Error::Kafka { code: c, .. } if *c == code::NON_EMPTY_GROUP => Failure::failed(
                format!("{error}; the group still has members: stop its consumers first"),
            ),
            _ => Failure::failed(error.to_string()),
        }
    }
}

/// Runs a subcommand's async body on a fresh runtime and turns its outcome
/// into an exit code, printing failures as `rill: <sentence>`.
pub fn run<F>(body: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    run_on(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        body,
    )
}

/// [`run`] on a single-threaded runtime: the body and every task it spawns
/// share the calling thread.
pub fn run_on_one_thread<F>(body: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    run_on(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        body,
    )
}

fn run_on<F>(runtime: std::io::Result<tokio::runtime::Runtime>, body: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rill: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("rill: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A progress bar on a terminal; hidden in a pipe or a file.
pub fn progress(length: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match length {
        Some(length) => indicatif::ProgressBar::new(length),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if length.is_some() {
        format!("{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})")
    } else {
        format!("{{spinner}} {{pos}} {what} ({{per_sec}})")
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Parses `KEY=VALUE`.
pub fn key_value(text: &str) -> Result<(String, String), Failure> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_string(), value.to_string()))
        .filter(|(key, _)| !key.is_empty())
        .ok_or_else(|| Failure::usage(format!("expected KEY=VALUE, not `{text}`")))
}
