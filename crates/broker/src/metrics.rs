//! Prometheus metrics, served by the admin HTTP server at `/metrics`.
//!
//! Counters are looked up without allocating on the hot paths: API names are
//! `&'static str`, and per-topic counters are fetched by `&str` from a map
//! that holds their handles.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::quorum_metrics::QuorumGauges;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

/// A data directory and one of its states (`online`, `full`, `offline`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirLabels {
    pub dir: String,
    pub state: &'static str,
}

/// The counters of one topic.
#[derive(Clone, Default)]
pub struct TopicMetrics {
    pub bytes_in: Counter,
    pub messages_in: Counter,
    pub bytes_out: Counter,
    pub messages_out: Counter,
}

pub struct Metrics {
    registry: Registry,
    pub quorum: QuorumGauges,
    requests: Family<ApiLabels, Counter>,
    request_seconds: Family<ApiLabels, Histogram>,
    connections: Gauge,
    connections_total: Counter,
    network_bytes_in: Counter,
    bytes_in: Family<TopicLabels, Counter>,
    messages_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    messages_out: Family<TopicLabels, Counter>,
    pub log_size_bytes: Family<PartitionLabels, Gauge>,
    /// Set from the log store's own counter at every scrape.
    pub log_corrupt_batches: Gauge,
    /// The cleaner's counters, copied from the log store at every scrape.
    pub cleaner_read_bytes: Gauge,
    pub cleaner_written_bytes: Gauge,
    pub cleaner_cleans: Gauge,
    pub cleaner_last_clean_seconds: Gauge<f64, AtomicU64>,
    pub log_dirty_ratio: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    /// Batches of `__consumer_offsets` the group coordinator's replay could
    /// not decode and skipped.
    pub group_replay_skipped_batches: Counter,
    /// 1 for each data directory's current state, 0 for the others.
    pub log_dir_state: Family<DirLabels, Gauge>,
    /// The group commit's counters, copied from the log store at every scrape.
    pub log_sync_rounds: Gauge,
    pub log_sync_waits: Gauge,
    topics: Mutex<HashMap<String, TopicMetrics>>,
    /// The partitions whose gauges the last scrape set, so the next one can
    /// remove those of partitions that are gone.
    partitions: Mutex<HashSet<PartitionLabels>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rill");
        let requests = Family::<ApiLabels, Counter>::default();
        // Buckets from 50 µs to about 26 s: fast metadata answers at one end,
        // long-polling fetches at the other.
        let request_seconds = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.000_05, 2.0, 20,
            ))
        });
        let connections = Gauge::default();
        let connections_total = Counter::default();
        let network_bytes_in = Counter::default();
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let messages_in = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let messages_out = Family::<TopicLabels, Counter>::default();
        let log_size_bytes = Family::<PartitionLabels, Gauge>::default();
        let log_corrupt_batches = Gauge::default();
        let cleaner_read_bytes = Gauge::default();
        let cleaner_written_bytes = Gauge::default();
        let cleaner_cleans = Gauge::default();
        let cleaner_last_clean_seconds = Gauge::<f64, AtomicU64>::default();
        let log_dirty_ratio = Family::<PartitionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "log_cleaner_read_bytes",
            "Bytes the log cleaner read (dirty data mapped, segments rewritten) since the broker started",
            cleaner_read_bytes.clone(),
        );
        registry.register(
            "log_cleaner_written_bytes",
            "Bytes the log cleaner wrote since the broker started",
            cleaner_written_bytes.clone(),
        );
        registry.register(
            "log_cleaner_cleans",
            "Logs compacted since the broker started",
            cleaner_cleans.clone(),
        );
        registry.register(
            "log_cleaner_last_clean_timestamp_seconds",
            "Unix time when the last compaction finished (0: none yet)",
            cleaner_last_clean_seconds.clone(),
        );
        registry.register(
            "log_dirty_ratio",
            "Share of each compacted partition's closed bytes not compacted yet",
            log_dirty_ratio.clone(),
        );
        registry.register("requests", "Requests answered, by API", requests.clone());
        registry.register(
            "request_seconds",
            "Time from a request being read to its answer being written, by API",
            request_seconds.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "connections_opened",
            "Client connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "network_received_bytes",
            "Request bytes received, frames included",
            network_bytes_in.clone(),
        );
        registry.register(
            "topic_bytes_in",
            "Record bytes appended, by topic",
            bytes_in.clone(),
        );
        registry.register(
            "topic_messages_in",
            "Records appended, by topic",
            messages_in.clone(),
        );
        registry.register(
            "topic_bytes_out",
            "Record bytes fetched, by topic",
            bytes_out.clone(),
        );
        registry.register(
            "topic_messages_out",
            "Offsets fetched (records delivered, counting a compacted log's gaps), by topic",
            messages_out.clone(),
        );
        registry.register(
            "log_size_bytes",
            "Bytes on disk of each partition's log",
            log_size_bytes.clone(),
        );
        registry.register(
            "log_corrupt_batches",
            "Record batches the background scrub found corrupt since the broker started",
            log_corrupt_batches.clone(),
        );
        let group_replay_skipped_batches = Counter::default();
        registry.register(
            "group_replay_skipped_batches",
            "Batches of __consumer_offsets the group coordinator could not decode when loading, and skipped",
            group_replay_skipped_batches.clone(),
        );
        let log_dir_state = Family::<DirLabels, Gauge>::default();
        registry.register(
            "log_dir_state",
            "1 for the data directory's current state (online; full: appends refused until space is freed; offline: after an IO error, until a restart), 0 for the others",
            log_dir_state.clone(),
        );
        let log_sync_rounds = Gauge::default();
        registry.register(
            "log_sync_rounds",
            "Group-commit rounds (one syncfs each) since the broker started",
            log_sync_rounds.clone(),
        );
        let log_sync_waits = Gauge::default();
        registry.register(
            "log_sync_waits",
            "Appends that waited for a group-commit round (flush.messages) since the broker started",
            log_sync_waits.clone(),
        );
        let quorum = QuorumGauges::register(&mut registry);
        Metrics {
            quorum,
            registry,
            log_sync_rounds,
            log_sync_waits,
            group_replay_skipped_batches,
            log_dir_state,
            log_corrupt_batches,
            cleaner_read_bytes,
            cleaner_written_bytes,
            cleaner_cleans,
            cleaner_last_clean_seconds,
            log_dirty_ratio,
            requests,
            request_seconds,
            connections,
            connections_total,
            network_bytes_in,
            bytes_in,
            messages_in,
            bytes_out,
            messages_out,
            log_size_bytes,
            topics: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashSet::new()),
        }
    }

    pub fn observe_request(&self, api: &'static str, elapsed: Duration) {
        let labels = ApiLabels { api };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
        self.connections_total.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn bytes_received(&self, bytes: usize) {
        self.network_bytes_in.inc_by(bytes as u64);
    }

    /// The counters of `topic`, created on first use.
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(metrics) = topics.get(topic) {
            return metrics.clone();
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        let metrics = TopicMetrics {
            bytes_in: self.bytes_in.get_or_create(&labels).clone(),
            messages_in: self.messages_in.get_or_create(&labels).clone(),
            bytes_out: self.bytes_out.get_or_create(&labels).clone(),
            messages_out: self.messages_out.get_or_create(&labels).clone(),
        };
        topics.insert(topic.to_string(), metrics.clone());
        metrics
    }

    /// Removes the per-topic counters of every topic `exists` says is gone
    /// (deleted), so `/metrics` stops naming it and a topic created later
    /// under the same name starts from zero. Run at each scrape rather than
    /// at deletion, so a request that was still answering for the topic when
    /// it was deleted cannot bring its counters back for good.
    pub fn forget_topics(&self, exists: impl Fn(&str) -> bool) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.retain(|topic, _| {
            if exists(topic) {
                return true;
            }
            let labels = TopicLabels {
                topic: topic.clone(),
            };
            for family in [
                &self.bytes_in,
                &self.messages_in,
                &self.bytes_out,
                &self.messages_out,
            ] {
                family.remove(&labels);
            }
            false
        });
    }

    /// Records which partitions the scrape just set gauges for, and removes
    /// the gauges of those it set last time and not now (deleted topics).
    pub fn forget_partitions_except(&self, current: HashSet<PartitionLabels>) {
        let mut seen = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        for gone in seen.difference(&current) {
            self.log_size_bytes.remove(gone);
            self.log_dirty_ratio.remove(gone);
        }
        *seen = current;
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode into a String");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
