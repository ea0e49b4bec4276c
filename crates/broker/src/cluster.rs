//! The broker's view of its topics and partitions, and every change to them.
//!
//! Reads (the produce and fetch hot paths) take a short read lock on a map of
//! immutable `Arc<TopicHandle>`s; a change builds a new handle and swaps it
//! in. A change is first a batch of metadata records proposed to the
//! controller quorum (`rill_controller::Node`), so what a client was told
//! exists survives a restart; once it is applied, [`reconcile`] makes the
//! handles and logs match the new image. Changes are serialized by one async
//! mutex so that "check, then propose" cannot interleave.

mod brokers;
mod lifecycle;
mod producer_ids;
mod reconcile;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use rill_controller::ProposeError;
use rill_log::LogManager;
use rill_metadata::topic::{validate_topic_config, validate_topic_name};
use rill_metadata::{ClusterState, MetadataRecord, TopicId};
use tokio::sync::watch;

pub use crate::partition::{Durable, LEADER_EPOCH, Partition};

use crate::config::BrokerConfig;
use crate::error_code;
use crate::log_config::log_config;
use crate::partition_dirs;
use crate::quorum::{self, Quorum, QuorumError};
use reconcile::Reconciled;

/// Partitions one topic may have. Each partition is a directory with open
/// files; far beyond this a single topic is a mistake, not a workload.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// A topic as the hot paths see it. Immutable: changes swap in a new one.
pub struct TopicHandle {
    pub name: String,
    pub id: TopicId,
    pub partitions: Vec<Arc<Partition>>,
    /// Topic-level overrides by Kafka config name.
    pub overrides: BTreeMap<String, String>,
    pub internal: bool,
    /// `flush.messages` is set, so an append may have to wait for a sync:
    /// produce then awaits the group commit (`Partition::append_synced`).
    pub append_may_sync: bool,
}

impl TopicHandle {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.partitions.get(index))
    }
}

/// The topics by name, and their names by id, changed together.
#[derive(Default)]
struct TopicMap {
    by_name: HashMap<String, Arc<TopicHandle>>,
    names_by_id: HashMap<TopicId, String>,
}

impl TopicMap {
    fn insert(&mut self, topic: Arc<TopicHandle>) {
        self.names_by_id.insert(topic.id, topic.name.clone());
        self.by_name.insert(topic.name.clone(), topic);
    }

    fn remove(&mut self, name: &str) {
        if let Some(topic) = self.by_name.remove(name) {
            self.names_by_id.remove(&topic.id);
        }
    }
}

/// A refused topic operation: the Kafka error code and a message for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TopicError {
    pub code: i16,
    pub message: String,
}

impl TopicError {
    fn new(code: i16, message: impl Into<String>) -> TopicError {
        TopicError {
            code,
            message: message.into(),
        }
    }
}

/// A config change of IncrementalAlterConfigs.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

pub struct Cluster {
    config: BrokerConfig,
    cluster_id: String,
    logs: Arc<LogManager>,
    quorum: Quorum,
    topics: RwLock<TopicMap>,
    /// Serializes changes (see the module comment).
    change_lock: tokio::sync::Mutex<()>,
    /// The image `topics` matches; held while a pass of [`reconcile`] runs.
    reconciled: tokio::sync::Mutex<Reconciled>,
    /// Whether the controller has this broker fenced; fenced until its
    /// first heartbeat is answered unfenced.
    fenced: watch::Sender<bool>,
    /// Tests set this to leave a deleted topic's directories in place, as
    /// a crash between the deletion record and their rename does.
    #[cfg(test)]
    keep_deleted_files: std::sync::atomic::AtomicBool,
    /// The producer-id block being handed out: `(next, end)`.
    producer_ids: Mutex<(i64, i64)>,
    /// Partitions this broker holds at most (`partition_limit`).
    max_partitions: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("cannot open the log of {topic}-{partition}: {source}")]
    Log {
        topic: String,
        partition: i32,
        source: rill_log::LogError,
    },
    #[error(transparent)]
    PartitionDir(#[from] crate::partition_dirs::DirError),
    #[error("opening the data directory panicked: {0}")]
    Panicked(String),
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: rill_log::LogError,
    },
}

impl Cluster {
    /// Opens the data directory: the controller quorum and its metadata
    /// first, then the log of every partition it names (recovering any that
    /// were not closed cleanly).
    pub async fn open(config: &BrokerConfig) -> Result<Cluster, OpenError> {
        let quorum = quorum::open(config).await?;
        let cluster_id = quorum.cluster_id.clone();
        let image = quorum.node.image();
        let opening = (config.clone(), image.clone());
        let opened = tokio::task::spawn_blocking(move || open_logs(&opening.0, &opening.1)).await;
        let (logs, topics) = match opened {
            Ok(Ok(opened)) => opened,
            failed => {
                quorum.shutdown().await;
                return Err(match failed {
                    Ok(Err(error)) => error,
                    _ => OpenError::Panicked("opening the partition logs panicked".to_string()),
                });
            }
        };
        let next_producer_id = image.next_producer_id;
        Ok(Cluster {
            config: config.clone(),
            cluster_id,
            logs: Arc::new(logs),
            quorum,
            topics: RwLock::new(topics),
            change_lock: tokio::sync::Mutex::new(()),
            reconciled: tokio::sync::Mutex::new(Reconciled {
                image,
                failed: HashMap::new(),
            }),
            fenced: watch::channel(true).0,
            #[cfg(test)]
            keep_deleted_files: Default::default(),
            // The persisted counter is the end of the last block handed out,
            // so a restart never reuses an id.
            producer_ids: Mutex::new((next_producer_id, next_producer_id)),
            max_partitions: partition_limit(config),
        })
    }
    /// Partitions of every topic, internal ones included.
    pub fn partition_count(&self) -> usize {
        read_lock(&self.topics)
            .by_name
            .values()
            .map(|t| t.partitions.len())
            .sum()
    }

    pub fn max_partitions(&self) -> usize {
        self.max_partitions
    }

    /// Refuses a change that would take the broker past `max_partitions`
    /// with POLICY_VIOLATION, the error Kafka gives a CreateTopics or
    /// CreatePartitions over its partition limits (KAFKA-17870). Called
    /// under the change lock, so concurrent creations cannot both pass.
    fn check_partition_limit(&self, adding: usize) -> Result<(), TopicError> {
        let held = self.partition_count();
        if held.saturating_add(adding) > self.max_partitions {
            return Err(TopicError::new(
                error_code::POLICY_VIOLATION,
                format!(
                    "the broker holds {held} partitions and allows at most {} (max_partitions); \
                     {adding} more would pass that",
                    self.max_partitions
                ),
            ));
        }
        Ok(())
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn logs(&self) -> &LogManager {
        &self.logs
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicHandle>> {
        read_lock(&self.topics).by_name.get(name).cloned()
    }

    /// Fetch v13+ names topics by id, so this is on the fetch path: a map
    /// lookup, not a scan of every topic.
    pub fn topic_by_id(&self, id: TopicId) -> Option<Arc<TopicHandle>> {
        let topics = read_lock(&self.topics);
        let name = topics.names_by_id.get(&id)?;
        topics.by_name.get(name).cloned()
    }

    /// Every topic, ordered by name.
    pub fn topics(&self) -> Vec<Arc<TopicHandle>> {
        let mut topics: Vec<_> = read_lock(&self.topics).by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Creates a topic. `partitions == -1` means the broker default.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicHandle>, TopicError> {
        validate_topic_name(name)
            .map_err(|message| TopicError::new(error_code::INVALID_TOPIC_EXCEPTION, message))?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(TopicError::new(
                error_code::INVALID_PARTITIONS,
                format!(
                    "a topic has from 1 to {PARTITIONS_PER_TOPIC_MAX} partitions, not {partitions}"
                ),
            ));
        }
        if replication_factor != -1 && replication_factor != 1 {
            return Err(TopicError::new(
                error_code::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {replication_factor} is larger than the 1 available broker"
                ),
            ));
        }
        for (key, value) in &configs {
            validate_topic_config(key, value)
                .map_err(|message| TopicError::new(error_code::INVALID_CONFIG, message))?;
            log_if_ignored(name, key, value);
        }
        let _guard = self.change_lock.lock().await;
        if self.topic(name).is_some() {
            return Err(TopicError::new(
                error_code::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            ));
        }
        // The broker's own topics are not counted against the limit: the
        // group coordinator must be able to create `__consumer_offsets`
        // however many partitions clients made first.
        if !rill_metadata::topic::is_internal(name) {
            self.check_partition_limit(partitions as usize)?;
        }
        if validate_only {
            return Ok(Arc::new(TopicHandle {
                name: name.to_string(),
                id: TopicId([0; 16]),
                partitions: Vec::new(),
                overrides: configs,
                internal: false,
                append_may_sync: false,
            }));
        }
        let id = TopicId::random();
        let record = MetadataRecord::TopicCreated {
            name: name.to_string(),
            id,
            partitions,
            configs,
            // One node holds every partition.
            assignments: vec![vec![self.config.node_id]; partitions as usize],
        };
        if let Err(error) = self.propose(vec![record]).await {
            // Created through another node first: its record won.
            if self.quorum.node.image().topic(name).is_some() {
                return Err(TopicError::new(
                    error_code::TOPIC_ALREADY_EXISTS,
                    format!("topic '{name}' already exists"),
                ));
            }
            return Err(error);
        }
        self.reconcile().await;
        match self.topic(name) {
            Some(handle) if handle.id == id => Ok(handle),
            _ => {
                // Out of descriptors or space: the creation fails, and the
                // topic must not come back at the next start (which would
                // open it with the rest) or hold a name no handle serves.
                let reason = self.open_failure(id).await.unwrap_or_default();
                if let Err(error) = self
                    .propose(vec![MetadataRecord::TopicDeleted { id }])
                    .await
                {
                    tracing::error!(topic = name, %error, "cannot take back a failed topic creation");
                }
                self.reconcile().await;
                Err(TopicError::new(error_code::KAFKA_STORAGE_ERROR, reason))
            }
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<TopicId, TopicError> {
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(name).ok_or_else(|| unknown_topic(name))?;
        self.propose(vec![MetadataRecord::TopicDeleted { id: topic.id }])
            .await?;
        self.reconcile().await;
        Ok(topic.id)
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(name).ok_or_else(|| unknown_topic(name))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::new(
                error_code::INVALID_PARTITIONS,
                format!(
                    "topic '{name}' has {current} partitions; the new count must be larger, not {count}"
                ),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(TopicError::new(
                error_code::INVALID_PARTITIONS,
                format!("a topic has at most {PARTITIONS_PER_TOPIC_MAX} partitions"),
            ));
        }
        self.check_partition_limit((count - current) as usize)?;
        if validate_only {
            return Ok(());
        }
        self.propose(vec![MetadataRecord::PartitionsCreated {
            id: topic.id,
            partitions: count,
            assignments: vec![vec![self.config.node_id]; (count - current) as usize],
        }])
        .await?;
        self.reconcile().await;
        match self.topic(name) {
            Some(grown) if grown.id == topic.id && grown.partitions.len() == count as usize => {
                Ok(())
            }
            _ => {
                let reason = self.open_failure(topic.id).await.unwrap_or_default();
                Err(TopicError::new(error_code::KAFKA_STORAGE_ERROR, reason))
            }
        }
    }

    /// Applies IncrementalAlterConfigs changes to a topic.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(name).ok_or_else(|| unknown_topic(name))?;
        let mut configs = topic.overrides.clone();
        let mut records = Vec::new();
        for change in changes {
            let (key, value) = apply_change(&configs, change)?;
            if let Some(value) = &value {
                validate_topic_config(&key, value)
                    .map_err(|message| TopicError::new(error_code::INVALID_CONFIG, message))?;
                log_if_ignored(name, &key, value);
            } else if rill_metadata::topic::topic_config_kind(&key).is_none() {
                return Err(TopicError::new(
                    error_code::INVALID_CONFIG,
                    format!("unknown topic config `{key}`"),
                ));
            }
            match &value {
                Some(value) => configs.insert(key.clone(), value.clone()),
                None => configs.remove(&key),
            };
            records.push(MetadataRecord::TopicConfigChanged {
                id: topic.id,
                name: key,
                value,
            });
        }
        if validate_only || records.is_empty() {
            return Ok(());
        }
        self.propose(records).await?;
        self.reconcile().await;
        Ok(())
    }

    /// Stops the controller quorum, then flushes every log and writes the
    /// clean-shutdown markers.
    pub async fn shutdown(&self) -> Result<(), rill_log::LogError> {
        self.quorum.shutdown().await;
        let logs = self.logs.clone();
        // Flushing waits for fsyncs: never on an async worker.
        tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .unwrap_or_else(|_| {
                Err(rill_log::LogError::Closed {
                    dir: self.config.data_dir.clone(),
                })
            })
    }

    /// Proposes a batch of records and waits until it is applied here.
    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, TopicError> {
        self.quorum
            .propose(records)
            .await
            .map_err(|error| self.propose_error(error))
    }

    fn propose_error(&self, error: ProposeError) -> TopicError {
        let code = match &error {
            ProposeError::NotLeader { .. } => error_code::NOT_CONTROLLER,
            ProposeError::TooLarge(_) => error_code::POLICY_VIOLATION,
            ProposeError::Refused(_) => error_code::UNKNOWN_SERVER_ERROR,
            ProposeError::Stopped(_) => error_code::KAFKA_STORAGE_ERROR,
        };
        tracing::error!(%error, "metadata change failed");
        TopicError::new(code, error.to_string())
    }

    #[cfg(test)]
    fn keep_deleted_files(&self) -> bool {
        self.keep_deleted_files
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(not(test))]
    fn keep_deleted_files(&self) -> bool {
        false
    }

    /// Runs file work (creating or deleting partition directories) off the
    /// async workers.
    async fn blocking<T, F>(&self, work: F) -> Result<T, TopicError>
    where
        F: FnOnce(&LogManager) -> T + Send + 'static,
        T: Send + 'static,
    {
        let logs = self.logs.clone();
        tokio::task::spawn_blocking(move || work(&logs))
            .await
            .map_err(|error| TopicError::new(error_code::UNKNOWN_SERVER_ERROR, error.to_string()))
    }
}

fn apply_change(
    configs: &BTreeMap<String, String>,
    change: &ConfigChange,
) -> Result<(String, Option<String>), TopicError> {
    Ok(match change {
        ConfigChange::Set(key, value) => (key.clone(), Some(value.clone())),
        ConfigChange::Delete(key) => (key.clone(), None),
        ConfigChange::Append(key, value) | ConfigChange::Subtract(key, value) => {
            if key != "cleanup.policy" {
                return Err(TopicError::new(
                    error_code::INVALID_CONFIG,
                    format!("`{key}` is not a list; APPEND and SUBTRACT apply to list configs"),
                ));
            }
            let mut items: Vec<String> = configs
                .get(key)
                .map(|current| current.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_else(|| vec!["delete".to_string()]);
            let value = value.trim().to_string();
            if matches!(change, ConfigChange::Append(..)) {
                if !items.contains(&value) {
                    items.push(value);
                }
            } else {
                items.retain(|item| *item != value);
            }
            if items.is_empty() {
                (key.clone(), None)
            } else {
                (key.clone(), Some(items.join(",")))
            }
        }
    })
}

fn open_topic(
    logs: &LogManager,
    config: &BrokerConfig,
    name: &str,
    id: TopicId,
    partitions: std::ops::Range<i32>,
    configs: &BTreeMap<String, String>,
) -> Result<TopicHandle, OpenError> {
    let log_config = log_config(config, configs);
    let mut handles = Vec::with_capacity(partitions.len());
    for index in partitions {
        let log = logs
            .get_or_create(name, index, log_config.clone())
            .map_err(|source| OpenError::Log {
                topic: name.to_string(),
                partition: index,
                source,
            })?;
        // One node is the whole in-sync replica set, so everything appended
        // is committed.
        log.set_high_watermark(log.log_end_offset());
        let (high_watermark, _) = watch::channel(log.high_watermark().0);
        handles.push(Arc::new(Partition {
            index,
            log,
            high_watermark,
        }));
    }
    Ok(TopicHandle {
        name: name.to_string(),
        id,
        partitions: handles,
        overrides: configs.clone(),
        internal: rill_metadata::topic::is_internal(name),
        append_may_sync: log_config.flush_messages.is_some(),
    })
}

/// `max_partitions`, or when unset half the open-file limit the process
/// has (after `rill serve` raised it): each partition's active segment holds
/// a descriptor, closed segments may hold up to a quarter of the limit
/// (rill-log), and the rest is for connections and the metadata log. At
/// least 64, so a broker under a tiny limit still holds its
/// `__consumer_offsets`; at most a million, past which memory per partition
/// rather than descriptors is the limit.
fn partition_limit(config: &BrokerConfig) -> usize {
    config.max_partitions.unwrap_or_else(|| {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        usize::try_from(nofile / 2)
            .unwrap_or(usize::MAX)
            .clamp(64, 1_000_000)
    })
}

fn unknown_topic(name: &str) -> TopicError {
    TopicError::new(
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        format!("topic '{name}' does not exist"),
    )
}

/// Opens the partition logs of every topic in `image`, after setting aside
/// the directories no topic of it owns.
fn open_logs(
    config: &BrokerConfig,
    image: &ClusterState,
) -> Result<(LogManager, TopicMap), OpenError> {
    let default_log_config = log_config(config, &BTreeMap::new());
    let logs = LogManager::open(&config.data_dir, default_log_config).map_err(|source| {
        OpenError::DataDir {
            path: config.data_dir.clone(),
            source,
        }
    })?;
    // Before any log opens: a deleted topic's directories must not be
    // opened as the data of a topic now using its name.
    partition_dirs::sweep(&logs, image)?;
    let mut topics = TopicMap::default();
    for topic in image.topics() {
        let handle = open_topic(
            &logs,
            config,
            &topic.name,
            topic.id,
            0..topic.partition_count(),
            &topic.configs,
        )?;
        topics.insert(Arc::new(handle));
    }
    Ok((logs, topics))
}

/// Locks a mutex, ignoring poisoning: every change behind these locks is a
/// whole-value swap or a counter step, so a panic elsewhere cannot leave the
/// value half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Says once, where it is set, that a topic config is accepted but means
/// nothing to Rill (`rill_metadata::topic::ignored_topic_config`).
fn log_if_ignored(topic: &str, key: &str, value: &str) {
    if let Some(reason) = rill_metadata::topic::ignored_topic_config(key) {
        tracing::info!(
            topic,
            config = key,
            value,
            "topic config accepted and ignored: {reason}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta_properties;
    use bytes::Bytes;
    use rill_records::batch::Compression;
    use rill_records::builder::BatchBuilder;

    fn config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    fn batch(value: &str) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None);
        let value = Bytes::copy_from_slice(value.as_bytes());
        builder
            .append(crate::clock::now_ms(), None, Some(value), Vec::new())
            .unwrap();
        builder.build().unwrap().to_vec()
    }

    async fn topic_with_data(cluster: &Cluster, name: &str, partitions: i32) -> TopicId {
        let topic = cluster
            .create_topic(name, partitions, -1, BTreeMap::new(), false)
            .await
            .unwrap();
        for partition in &topic.partitions {
            partition
                .append(&batch("old"), crate::clock::now_ms())
                .unwrap();
            assert_eq!(partition.log.log_end_offset().0, 1);
        }
        topic.id
    }

    fn end_offsets(cluster: &Cluster, name: &str) -> Vec<i64> {
        let topic = cluster.topic(name).unwrap();
        topic
            .partitions
            .iter()
            .map(|p| p.log.log_end_offset().0)
            .collect()
    }

    /// A topic with data in two partitions, deleted while its directories
    /// stay: what a crash before the directories' rename leaves.
    async fn deletion_recorded(cluster: &Cluster, name: &str) -> TopicId {
        let old_id = topic_with_data(cluster, name, 2).await;
        cluster
            .keep_deleted_files
            .store(true, std::sync::atomic::Ordering::Relaxed);
        cluster.delete_topic(name).await.unwrap();
        cluster
            .keep_deleted_files
            .store(false, std::sync::atomic::Ordering::Relaxed);
        old_id
    }

    /// A crash between the deletion record and the rename of the topic's
    /// directories: the deletion is durable, the directories are still there.
    #[tokio::test]
    async fn a_deleted_topics_directories_never_come_back_as_a_new_topic() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        let old_id = deletion_recorded(&cluster, "orders").await;
        cluster.shutdown().await.unwrap();
        drop(cluster);
        assert!(dir.path().join("orders-0").exists());

        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        assert!(cluster.topic("orders").is_none());
        // The leftovers of a deleted topic are removed, not kept.
        assert!(!dir.path().join("orders-0").exists());
        let created = cluster
            .create_topic("orders", 3, -1, BTreeMap::new(), false)
            .await
            .unwrap();
        assert_ne!(created.id, old_id);
        assert_eq!(end_offsets(&cluster, "orders"), vec![0, 0, 0]);
        cluster.shutdown().await.unwrap();
        drop(cluster);

        // And the new topic's data is its own after another restart.
        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        assert_eq!(cluster.topic("orders").unwrap().id, created.id);
        assert_eq!(end_offsets(&cluster, "orders"), vec![0, 0, 0]);
    }

    /// The same crash, and the broker goes on running: the name is used
    /// again before any restart.
    #[tokio::test]
    async fn a_recreated_topic_starts_empty_when_the_old_directories_remain() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        deletion_recorded(&cluster, "orders").await;
        assert!(dir.path().join("orders-0").exists());
        cluster
            .create_topic("orders", 1, -1, BTreeMap::new(), false)
            .await
            .unwrap();
        assert_eq!(end_offsets(&cluster, "orders"), vec![0]);
        // Growing it again does not pick up the old partition 1 either.
        cluster.create_partitions("orders", 2, false).await.unwrap();
        assert_eq!(end_offsets(&cluster, "orders"), vec![0, 0]);
    }

    /// A partition directory that no topic in the metadata log names (the
    /// log was cut by hand, say) is set aside, kept, and never served.
    #[tokio::test]
    async fn an_unknown_partition_directory_is_set_aside_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        topic_with_data(&cluster, "kept", 1).await;
        cluster.shutdown().await.unwrap();
        drop(cluster);
        // The metadata log forgets the topic; its directory stays. The new
        // log is a new cluster, which meta.properties would refuse.
        std::fs::remove_dir_all(dir.path().join("__cluster_metadata")).unwrap();
        std::fs::remove_file(dir.path().join("meta.properties")).unwrap();

        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        assert!(!dir.path().join("kept-0").exists());
        let set_aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("kept-0.") && name.ends_with("-stray"))
            .collect();
        assert_eq!(set_aside.len(), 1, "{set_aside:?}");
        let log = dir
            .path()
            .join(&set_aside[0])
            .join("00000000000000000000.log");
        assert!(std::fs::metadata(log).unwrap().len() > 0);
        cluster
            .create_topic("kept", 1, -1, BTreeMap::new(), false)
            .await
            .unwrap();
        assert_eq!(end_offsets(&cluster, "kept"), vec![0]);
    }

    /// A data directory from before meta.properties (and before the
    /// quorum) is adopted by the configured node; from then on another node
    /// id is refused before the metadata is replayed.
    #[tokio::test]
    async fn a_directory_without_meta_properties_is_adopted_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut old =
            rill_metadata::MetadataStore::open(&dir.path().join("__cluster_metadata"), 0).unwrap();
        old.append(&[MetadataRecord::ClusterCreated {
            cluster_id: "from-before".to_string(),
        }])
        .unwrap();
        drop(old);

        let mut other = config(dir.path());
        other.node_id = 7;
        let cluster = Cluster::open(&other).await.unwrap();
        assert_eq!(cluster.cluster_id(), "from-before");
        cluster.shutdown().await.unwrap();
        drop(cluster);
        let meta = meta_properties::read(dir.path()).unwrap().unwrap();
        assert_eq!((meta.node_id, meta.cluster_id.as_str()), (7, "from-before"));
        let refused = Cluster::open(&config(dir.path())).await.err().unwrap();
        assert!(matches!(
            refused,
            OpenError::Quorum(QuorumError::MetaProperties(
                meta_properties::MetaError::OtherNode { .. }
            ))
        ));
        // Without its meta.properties the quorum itself refuses: its voter
        // is node 7.
        std::fs::remove_file(dir.path().join("meta.properties")).unwrap();
        let refused = Cluster::open(&config(dir.path())).await.err().unwrap();
        assert!(
            matches!(
                &refused,
                OpenError::Quorum(QuorumError::Node(
                    rill_controller::NodeError::OtherVoters { .. }
                ))
            ),
            "{refused}"
        );
    }

    /// Directories written before tags existed are the live topic's.
    #[tokio::test]
    async fn an_untagged_directory_of_a_live_topic_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        let id = topic_with_data(&cluster, "legacy", 1).await;
        cluster.shutdown().await.unwrap();
        drop(cluster);
        let tag = dir.path().join("legacy-0").join(partition_dirs::TAG_FILE);
        std::fs::remove_file(&tag).unwrap();

        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        assert_eq!(end_offsets(&cluster, "legacy"), vec![1]);
        assert_eq!(
            partition_dirs::read_tag(&dir.path().join("legacy-0")).unwrap(),
            Some(id)
        );
    }

    /// A 249-byte name (Kafka's longest) still fits once `.<id>-delete` is
    /// added: the topic part is cut short.
    #[tokio::test]
    async fn a_topic_with_the_longest_name_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(&config(dir.path())).await.unwrap();
        let name = "n".repeat(249);
        topic_with_data(&cluster, &name, 1).await;
        cluster.delete_topic(&name).await.unwrap();
        assert!(!dir.path().join(format!("{name}-0")).exists());
    }
}
