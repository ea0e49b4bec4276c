//! The running broker: listeners, the shared state, and shutdown.
//!
//! Shutdown is explicit (mini-redis style): a watch channel says "stop"; the
//! accept loop stops taking connections; each connection stops reading new
//! requests, answers those it already read, and closes; when every
//! connection has finished, the logs are flushed and marked clean.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, OpenError};
use crate::config::BrokerConfig;
use crate::groups::Groups;
use crate::metrics::Metrics;
use crate::{admin, connection};

/// What every connection and handler shares.
pub struct Shared {
    pub config: BrokerConfig,
    pub cluster: Cluster,
    pub groups: Groups,
    pub metrics: Metrics,
    /// `queued_max_request_bytes`: the bytes of requests read and not yet
    /// answered, across all connections (see `connection.rs`).
    pub request_budget: Arc<Semaphore>,
    /// The advertised host and port, as Metadata answers give them.
    pub advertised_host: String,
    pub advertised_port: i32,
}

impl Shared {
    pub fn new(
        config: BrokerConfig,
        cluster: Cluster,
        advertised_host: String,
        advertised_port: i32,
    ) -> Shared {
        Shared {
            metrics: Metrics::new(),
            request_budget: Arc::new(Semaphore::new(config.queued_max_request_bytes)),
            config,
            cluster,
            groups: Groups::new(),
            advertised_host,
            advertised_port,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("advertised listener `{0}` is not HOST:PORT")]
    Advertised(String),
}

/// A broker that is running; dropping it does not stop it, `shutdown` does.
pub struct Broker {
    kafka_addr: SocketAddr,
    admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

/// How much free memory kswapd keeps, in 1/10,000 of memory (Linux).
const WATERMARK_SCALE_FACTOR: &str = "/proc/sys/vm/watermark_scale_factor";

/// The factor, when it leaves so thin a margin that ext4's 64 KiB page
/// cache folios often cannot be had without compaction in the append
/// (measured with bench/e2e.sh; see docs/benchmarks-journal.md).
fn thin_reclaim_margin(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|factor| *factor < 100)
}

impl Broker {
    /// Opens the data directory, binds the listeners and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<Broker, StartError> {
        let started = Instant::now();
        let kafka_listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: config.listen.clone(),
                    source,
                })?;
        let admin_listener = TcpListener::bind(&config.admin_listen)
            .await
            .map_err(|source| StartError::Listen {
                address: config.admin_listen.clone(),
                source,
            })?;
        let kafka_addr = kafka_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                address: config.listen.clone(),
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                address: config.admin_listen.clone(),
                source,
            })?;
        // An advertised port of 0 (an ephemeral listen port) means "the port
        // we actually got".
        let advertised = config.advertised().to_string();
        let (host, port) = advertised
            .rsplit_once(':')
            .ok_or_else(|| StartError::Advertised(advertised.clone()))?;
        let port: u16 = port
            .parse()
            .map_err(|_| StartError::Advertised(advertised.clone()))?;
        let port = if port == 0 { kafka_addr.port() } else { port };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();

        let cluster = Cluster::open(&config).await?;
        tracing::info!(
            partitions = cluster.partition_count(),
            max_partitions = cluster.max_partitions(),
            "partitions held and the broker's limit"
        );
        let background = cluster
            .logs()
            .start_background_with(rill_log::BackgroundConfig {
                cleaner: rill_log::CleanerConfig {
                    enabled: config.log_cleaner_enable,
                    threads: config.log_cleaner_threads,
                    dedupe_buffer_bytes: config.log_cleaner_dedupe_buffer_size,
                    io_bytes_per_second: config.log_cleaner_io_max_bytes_per_second,
                    backoff: std::time::Duration::from_millis(config.log_cleaner_backoff_ms),
                },
                retention_check_interval: std::time::Duration::from_millis(
                    config.log_retention_check_interval_ms,
                ),
                ..rill_log::BackgroundConfig::default()
            });
        let shared = Arc::new(Shared::new(config, cluster, host, i32::from(port)));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(crate::groups::run(shared.clone(), stop_rx.clone()));
        let following = (shared.clone(), stop_rx.clone());
        tokio::spawn(async move { following.0.cluster.follow_metadata(following.1).await });
        let lifecycle = {
            let (shared, stop) = (shared.clone(), stop_rx.clone());
            let (host, port) = (shared.advertised_host.clone(), port);
            tokio::spawn(async move { shared.cluster.run_broker(host, port, stop).await })
        };
        // Clients are served once the controller offers this broker to
        // them (as a Kafka broker starts serving once unfenced).
        shared.cluster.wait_unfenced().await;
        let admin_task = tokio::spawn(admin::serve(
            shared.clone(),
            admin_listener,
            stop_rx.clone(),
        ));
        let held = shared.clone();
        let task = tokio::spawn(async move {
            accept_loop(shared.clone(), kafka_listener, stop_rx).await;
            let _ = admin_task.await;
            // The controller releases the broker before its quorum stops.
            let _ = lifecycle.await;
            let closing = shared.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || background.stop()).await {
                tracing::error!(%error, "stopping the log cleaner and retention panicked");
            }
            match closing.cluster.shutdown().await {
                Ok(()) => tracing::info!("logs flushed and closed cleanly"),
                Err(error) => tracing::error!(%error, "closing the logs failed"),
            }
        });
        tracing::info!(
            kafka = %kafka_addr,
            admin = %admin_addr,
            ready_ms = started.elapsed().as_millis() as u64,
            "broker ready"
        );
        if let Some(factor) = std::fs::read_to_string(WATERMARK_SCALE_FACTOR)
            .ok()
            .as_deref()
            .and_then(thin_reclaim_margin)
        {
            tracing::info!(
                "vm.watermark_scale_factor is {factor}: once the page cache fills memory, \
                 appends may compact memory inside the write (milliseconds each); \
                 200 keeps enough free (README, \"The machine\")"
            );
        }
        Ok(Broker {
            kafka_addr,
            admin_addr,
            stop,
            task,
            shared: held,
        })
    }

    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Creates a topic with the broker's default configs, as a CreateTopics
    /// request would. Public, and hidden from the docs, for rill-testkit's
    /// in-process broker, which sets up topics without a Kafka client (it
    /// cannot depend on rill-client, which dev-depends on it); not an API.
    #[doc(hidden)]
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        self.shared
            .cluster
            .create_topic(name, partitions, -1, Default::default(), false)
            .await
            .map(drop)
            .map_err(|error| format!("cannot create topic `{name}`: {error}"))
    }

    /// Stops accepting, finishes in-flight requests, flushes and closes.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until the broker stops (after `shutdown` from elsewhere).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let max_connections = shared.config.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and similar: wait a moment rather
                // than spin on a listener that keeps failing.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "refusing connection: too many open connections");
            drop(stream);
            continue;
        };
        shared.metrics.connection_opened();
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection::serve(shared.clone(), stream, stop).await;
            shared.metrics.connection_closed();
            drop(slot);
        });
    }
    // Every connection gives its slot back when it has finished.
    let _ = slots.acquire_many(max_connections as u32).await;
}

#[cfg(test)]
mod tests {
    use super::thin_reclaim_margin;

    #[test]
    fn the_default_reclaim_margin_is_reported_and_a_wide_one_is_not() {
        assert_eq!(thin_reclaim_margin("10\n"), Some(10));
        assert_eq!(thin_reclaim_margin("200\n"), None);
        assert_eq!(thin_reclaim_margin("100"), None);
        assert_eq!(thin_reclaim_margin("not a number"), None);
    }
}
