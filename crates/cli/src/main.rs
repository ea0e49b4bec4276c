//! `rill`: the broker and the tools around it, in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rill_broker::{Broker, BrokerConfig, ConfigSources};

mod bench;
mod cluster;
mod consume;
mod group;
mod produce;
mod tools;
mod topic;

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "A distributed log that speaks the Kafka protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: data in ./rill-data, Kafka clients on
    /// 127.0.0.1:9092, admin HTTP on 127.0.0.1:9644, a cluster of one.
    Serve(ServeArgs),
    /// Create, list, describe, alter and delete topics
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Write one message per input line to a topic
    Produce(produce::ProduceArgs),
    /// Print a topic's messages, alone or as a consumer group member
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Show the cluster's brokers and controller
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Load generator for any Kafka-compatible broker: produce, consume
    /// and end-to-end latency
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory for partitions and cluster metadata [default: ./rill-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address for Kafka clients [default: 127.0.0.1:9092]
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address given to clients in metadata, when it differs from --listen
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Address of the admin HTTP server (/metrics, /health, /ready) [default: 127.0.0.1:9644]
    #[arg(long, value_name = "HOST:PORT")]
    admin_listen: Option<String>,
    /// This broker's id in the cluster [default: 0]
    #[arg(long, value_name = "ID")]
    node_id: Option<i32>,
    /// Address of the controller listener, where the quorum's other voters reach this node
    /// [default: this node's entry in --controller-quorum]
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// The controller quorum's voters [default: this node alone]
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_quorum: Option<String>,
    /// A TOML file of settings (flat keys, e.g. `log_retention_ms = 3600000`)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any setting as KEY=VALUE (e.g. --set log_segment_bytes=1048576);
    /// the same keys work in the file and as RILL_KEY environment variables
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        die_quietly_on_a_closed_pipe();
    }
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Topic(command) => topic::main(command),
        Command::Produce(args) => produce::main(args),
        Command::Consume(args) => consume::main(args),
        Command::Group(command) => group::main(command),
        Command::Cluster(command) => cluster::main(command),
        Command::Bench(command) => bench::main(command),
    }
}

/// glibc's malloc gives the free memory at the top of a thread's heap back
/// to the system (`madvise`) as soon as there is more than a few hundred
/// KiB of it. The broker reads each request into memory of its own and
/// frees it once answered, so at 1.5 M msg/s it page-faulted and zeroed
/// that memory back in on every 160 KiB produce request: 6-8 % of its CPU
/// in `perf`. Heaps now keep up to 16 MiB free, and blocks up to 4 MiB
/// come from them rather than from `mmap` of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: `mallopt` only sets two of malloc's parameters, and it runs
    // before the broker starts any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// The client tools print tables and records to stdout; piped into `head`,
/// they end as Unix tools do when the reader goes away (SIGPIPE), rather
/// than panicking on the failed write. Not for `rill serve`, which writes
/// to sockets and must see EPIPE as an error of one connection.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: restores the default action of one signal, before any other
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Raises the soft limit on open files to the hard limit and logs both.
/// Each partition holds a descriptor for its active segment, closed segments
/// in use hold more, and every connection one; distributions default the
/// soft limit to 1024 (for old `select(2)` users) while the hard limit is
/// usually far higher. Kafka's docs ask for 100,000; Rill takes what the
/// administrator allowed, and the partition limit follows it
/// (`max_partitions`).
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    if current == maximum {
        tracing::info!(soft = %show(current), hard = %show(maximum), "open file limit");
        return;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: maximum,
            maximum,
        },
    ) {
        Ok(()) => tracing::info!(
            soft = %show(maximum), was = %show(current), hard = %show(maximum),
            "raised the open file limit to the hard limit"
        ),
        Err(error) => tracing::warn!(
            soft = %show(current), hard = %show(maximum), %error,
            "cannot raise the open file limit"
        ),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    keep_freed_memory();
    init_logging();
    raise_open_file_limit();
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("rill: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rill: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let broker = match Broker::start(config).await {
            Ok(broker) => broker,
            Err(error) => {
                eprintln!("rill: {error}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "rill: listening for Kafka clients on {} (admin http://{}, data in {})",
            broker.kafka_addr(),
            broker.admin_addr(),
            data_dir.display()
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        broker.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn load_config(args: &ServeArgs) -> Result<BrokerConfig, String> {
    let mut overrides = Vec::new();
    for setting in &args.settings {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("--set expects KEY=VALUE, not `{setting}`"))?;
        overrides.push((key.trim().to_string(), value.trim().to_string()));
    }
    let mut flag = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            overrides.push((key.to_string(), value));
        }
    };
    flag(
        "data_dir",
        args.data_dir.as_ref().map(|dir| dir.display().to_string()),
    );
    flag("listen", args.listen.clone());
    flag("advertised_listener", args.advertised_listener.clone());
    flag("admin_listen", args.admin_listen.clone());
    flag("node_id", args.node_id.map(|id| id.to_string()));
    flag("controller_listen", args.controller_listen.clone());
    flag("controller_quorum", args.controller_quorum.clone());
    let sources = ConfigSources {
        file: args.config.clone(),
        env: std::env::vars()
            .filter(|(key, _)| key.starts_with("RILL_"))
            .collect(),
        overrides,
    };
    BrokerConfig::load(&sources).map_err(|error| error.to_string())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colors only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the broker can still be stopped by SIGKILL;
        // recovery on the next start covers that.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
