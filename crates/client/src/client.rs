//! The cluster as the client sees it: bootstrap, one connection per broker,
//! and a metadata cache refreshed when a broker says it is stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rill_protocol::messages::MetadataRequest;
use rill_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_protocol::{ApiKey, RequestBody, ResponseBody, Uuid};

use crate::clock;
use crate::conn::Connection;
use crate::error::{Error, Result, code};
use crate::hash::FastMap;

/// Settings shared by producers, consumers and the admin client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bootstrap brokers as `host:port`; any one of them is enough.
    pub brokers: Vec<String>,
    /// Sent with every request; brokers log it.
    pub client_id: String,
    /// How long to wait for an answer (Kafka's `request.timeout.ms`).
    pub request_timeout: Duration,
    /// Cached topic metadata older than this is reloaded on use, so new
    /// partitions and moved leaders are seen (Kafka's `metadata.max.age.ms`).
    pub metadata_max_age: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            brokers: vec!["127.0.0.1:9092".into()],
            client_id: "rill-client".into(),
            request_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(300),
        }
    }
}

impl ClientConfig {
    /// Settings for a comma-separated list of bootstrap brokers.
    pub fn new(brokers: &str) -> ClientConfig {
        ClientConfig {
            brokers: brokers
                .split(',')
                .map(str::trim)
                .filter(|broker| !broker.is_empty())
                .map(String::from)
                .collect(),
            ..ClientConfig::default()
        }
    }
}

/// One broker as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub is_internal: bool,
    /// Sorted by partition number.
    pub partitions: Vec<PartitionInfo>,
    /// When this client loaded it.
    pub loaded_at: Instant,
    /// The same moment on the coarse clock (`clock::coarse_ms`), which a
    /// producer reads per message to age the metadata.
    pub(crate) loaded_at_coarse_ms: i64,
}

/// The cached cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: FastMap<String, Arc<TopicInfo>>,
}

/// A handle on a cluster; cheap to clone, shared by everything built on it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    /// The connection metadata came from first; used until broker ids are
    /// known and whenever any broker will do.
    bootstrap: tokio::sync::Mutex<Option<Arc<Connection>>>,
    connections: tokio::sync::Mutex<HashMap<i32, Arc<Connection>>>,
    metadata: RwLock<Arc<Metadata>>,
    /// Bumped each time `metadata` is replaced, so that a producer may keep
    /// what it read of it while the number stays the same.
    generation: AtomicU64,
}

impl Client {
    /// Connects to the first reachable bootstrap broker and loads the list
    /// of brokers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.brokers.is_empty() {
            return Err(Error::Config("no bootstrap brokers given".into()));
        }
        let client = Client {
            inner: Arc::new(Inner {
                config,
                bootstrap: tokio::sync::Mutex::new(None),
                connections: tokio::sync::Mutex::new(HashMap::new()),
                metadata: RwLock::new(Arc::new(Metadata::default())),
                generation: AtomicU64::new(0),
            }),
        };
        client.refresh_metadata(Some(&[])).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The metadata as last loaded.
    pub fn metadata(&self) -> Arc<Metadata> {
        match self.inner.metadata.read() {
            Ok(metadata) => metadata.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A connection to some broker: the bootstrap one while it is open.
    pub(crate) async fn any_connection(&self) -> Result<Arc<Connection>> {
        let mut bootstrap = self.inner.bootstrap.lock().await;
        if let Some(connection) = bootstrap.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let mut addrs: Vec<String> = self
            .metadata()
            .brokers
            .values()
            .map(BrokerInfo::addr)
            .collect();
        addrs.extend(self.inner.config.brokers.iter().cloned());
        let mut last_error = None;
        for addr in &addrs {
            match Connection::open(
                addr,
                &self.inner.config.client_id,
                self.inner.config.request_timeout,
            )
            .await
            {
                Ok(connection) => {
                    *bootstrap = Some(connection.clone());
                    return Ok(connection);
                }
                Err(error) => last_error = Some(error),
            }
        }
        let source = match last_error {
            Some(Error::Io { source, .. }) => source,
            Some(other) => std::io::Error::other(other.to_string()),
            None => std::io::Error::other("no address to try"),
        };
        Err(Error::NoBroker {
            brokers: self.inner.config.brokers.join(","),
            source,
        })
    }

    /// The connection to broker `node_id`, opened on first use and reopened
    /// after it broke.
    pub(crate) async fn connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        let mut connections = self.inner.connections.lock().await;
        if let Some(connection) = connections.get(&node_id).filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let broker = self
            .metadata()
            .brokers
            .get(&node_id)
            .cloned()
            .ok_or(Error::UnknownBroker(node_id))?;
        let connection = Connection::open(
            &broker.addr(),
            &self.inner.config.client_id,
            self.inner.config.request_timeout,
        )
        .await?;
        connections.insert(node_id, connection.clone());
        Ok(connection)
    }

    /// Sends a request to broker `node_id` at the negotiated version.
    pub async fn call(
        &self,
        node_id: i32,
        api: ApiKey,
        build: impl FnOnce(i16) -> RequestBody,
    ) -> Result<ResponseBody> {
        self.connection(node_id).await?.call(api, build).await
    }

    /// Sends a request to any broker (the controller when one is known).
    pub async fn call_any(
        &self,
        api: ApiKey,
        build: impl FnOnce(i16) -> RequestBody,
    ) -> Result<ResponseBody> {
        let controller = self.metadata().controller_id;
        let connection = if controller >= 0 {
            match self.connection(controller).await {
                Ok(connection) => connection,
                Err(_) => self.any_connection().await?,
            }
        } else {
            self.any_connection().await?
        };
        connection.call(api, build).await
    }

    /// Reloads metadata: for the given topics (`Some(&[])` loads brokers
    /// only), or for every topic with `None`. Topics named are replaced in the
    /// cache; a full reload replaces the whole cache.
    pub async fn refresh_metadata(&self, topics: Option<&[String]>) -> Result<Arc<Metadata>> {
        self.load_metadata(topics, false)
            .await
            .map(|(metadata, _)| metadata)
    }

    /// [`Client::refresh_metadata`], asking the broker to create topics it
    /// does not have when `allow_auto_create` (if the broker allows it);
    /// also returns the error code of each topic the answer refused.
    async fn load_metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<(Arc<Metadata>, Vec<(String, i16)>)> {
        let request_topics = topics.map(|topics| {
            topics
                .iter()
                .map(|name| MetadataRequestTopic {
                    name: Some(name.clone()),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        });
        let build = |_version| {
            RequestBody::Metadata(MetadataRequest {
                topics: request_topics.clone(),
                allow_auto_topic_creation: allow_auto_create,
                ..Default::default()
            })
        };
        let connection = self.any_connection().await?;
        let response = match connection.call(ApiKey::Metadata, build).await {
            Ok(response) => response,
            Err(error) if error.is_retriable() => {
                // The bootstrap broker went away: try another one once.
                self.any_connection()
                    .await?
                    .call(ApiKey::Metadata, build)
                    .await?
            }
            Err(error) => return Err(error),
        };
        let ResponseBody::Metadata(response) = response else {
            return Err(Error::Protocol {
                addr: connection.addr().to_string(),
                reason: "Metadata answered with another API".into(),
            });
        };
        let mut metadata = if topics.is_some() {
            (*self.metadata()).clone()
        } else {
            Metadata::default()
        };
        metadata.cluster_id = response.cluster_id;
        metadata.controller_id = response.controller_id;
        metadata.brokers = response
            .brokers
            .into_iter()
            .map(|broker| {
                (
                    broker.node_id,
                    BrokerInfo {
                        node_id: broker.node_id,
                        host: broker.host,
                        port: broker.port,
                        rack: broker.rack,
                    },
                )
            })
            .collect();
        let mut refused = Vec::new();
        for topic in response.topics {
            let Some(name) = topic.name else { continue };
            if topic.error_code != code::NONE {
                metadata.topics.remove(&name);
                refused.push((name, topic.error_code));
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .into_iter()
                .map(|partition| PartitionInfo {
                    partition: partition.partition_index,
                    leader: partition.leader_id,
                    leader_epoch: partition.leader_epoch,
                    replicas: partition.replica_nodes.into_vec(),
                    isr: partition.isr_nodes.into_vec(),
                    error_code: partition.error_code,
                })
                .collect();
            partitions.sort_by_key(|partition| partition.partition);
            metadata.topics.insert(
                name.clone(),
                Arc::new(TopicInfo {
                    name,
                    id: topic.topic_id,
                    is_internal: topic.is_internal,
                    partitions,
                    loaded_at: Instant::now(),
                    loaded_at_coarse_ms: clock::coarse_ms(),
                }),
            );
        }
        let metadata = Arc::new(metadata);
        match self.inner.metadata.write() {
            Ok(mut cached) => *cached = metadata.clone(),
            Err(poisoned) => *poisoned.into_inner() = metadata.clone(),
        }
        self.inner.generation.fetch_add(1, Ordering::Release);
        Ok((metadata, refused))
    }

    /// A topic's cached metadata if it is fresh at `coarse_now_ms`
    /// (`clock::coarse_ms`).
    pub(crate) fn fresh_topic_at(&self, name: &str, coarse_now_ms: i64) -> Option<Arc<TopicInfo>> {
        self.with_fresh_topic(name, coarse_now_ms, Arc::clone)
    }

    /// Its partition count and when it was loaded (`clock::coarse_ms`),
    /// taking no reference to the metadata or the topic (two shared counts
    /// changed and changed back).
    pub(crate) fn fresh_partition_count(
        &self,
        name: &str,
        coarse_now_ms: i64,
    ) -> Option<(i32, i64)> {
        self.with_fresh_topic(name, coarse_now_ms, |topic| {
            (topic.partitions.len() as i32, topic.loaded_at_coarse_ms)
        })
    }

    /// How many times the cached metadata has been replaced: what was read
    /// of it still holds while this stays the same.
    pub(crate) fn metadata_generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// `metadata_max_age` in milliseconds.
    pub(crate) fn metadata_max_age_ms(&self) -> i64 {
        self.inner.config.metadata_max_age.as_millis() as i64
    }

    /// `read` of a topic's cached metadata, if fresh at `coarse_now_ms`
    /// (`clock::coarse_ms`), under the metadata lock.
    fn with_fresh_topic<T>(
        &self,
        name: &str,
        coarse_now_ms: i64,
        read: impl FnOnce(&Arc<TopicInfo>) -> T,
    ) -> Option<T> {
        let max_age = self.metadata_max_age_ms();
        let metadata = match self.inner.metadata.read() {
            Ok(metadata) => metadata,
            Err(poisoned) => poisoned.into_inner(),
        };
        metadata
            .topics
            .get(name)
            .filter(|topic| coarse_now_ms.saturating_sub(topic.loaded_at_coarse_ms) < max_age)
            .map(read)
    }

    /// A topic's metadata for writing to it, as Kafka producers get it: a
    /// topic the broker does not know is created when `auto_create` and the
    /// broker allows it, and a topic whose partitions have no leader yet
    /// (just created, or electing) is waited for, up to `max_wait`. A topic
    /// the broker refuses to create fails at once with
    /// [`Error::UnknownTopic`].
    pub async fn topic_for_write(
        &self,
        name: &str,
        auto_create: bool,
        max_wait: Duration,
    ) -> Result<Arc<TopicInfo>> {
        if let Some(topic) = self.fresh_topic_at(name, clock::coarse_ms()) {
            return Ok(topic);
        }
        let deadline = Instant::now() + max_wait;
        let mut pause = Duration::from_millis(50);
        loop {
            let (metadata, refused) = self
                .load_metadata(Some(&[name.to_string()]), auto_create)
                .await?;
            let waiting = match metadata.topics.get(name) {
                Some(topic) if topic.partitions.iter().all(|p| p.leader >= 0) => {
                    return Ok(topic.clone());
                }
                Some(_) => "its partitions have no leader yet".to_string(),
                None => match refused.iter().find(|(topic, _)| topic == name) {
                    // Kafka answers LEADER_NOT_AVAILABLE while it creates a
                    // topic; anything else is final.
                    Some((_, code::LEADER_NOT_AVAILABLE)) => "it is being created".to_string(),
                    Some((_, code::UNKNOWN_TOPIC_OR_PARTITION)) | None => {
                        return Err(Error::UnknownTopic(name.to_string()));
                    }
                    Some((_, other)) => {
                        return Err(Error::Kafka {
                            context: format!("metadata of topic '{name}'"),
                            code: *other,
                            message: None,
                        });
                    }
                },
            };
            if Instant::now() + pause > deadline {
                return Err(Error::TopicNotReady {
                    topic: name.to_string(),
                    waited_ms: max_wait.as_millis() as u64,
                    reason: waiting,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// A topic's metadata, from the cache or loaded on a miss.
    pub async fn topic(&self, name: &str) -> Result<Arc<TopicInfo>> {
        let cached = self.metadata().topics.get(name).cloned();
        match cached {
            Some(topic) if topic.loaded_at.elapsed() < self.inner.config.metadata_max_age => {
                Ok(topic)
            }
            // Stale: reload, but keep working from the old copy while the
            // cluster cannot answer.
            Some(topic) => match self.refresh_topic(name).await {
                Err(error) if error.is_retriable() && !matches!(error, Error::UnknownTopic(_)) => {
                    Ok(topic)
                }
                other => other,
            },
            None => self.refresh_topic(name).await,
        }
    }

    /// Reloads one topic's metadata, as after NOT_LEADER_OR_FOLLOWER.
    pub async fn refresh_topic(&self, name: &str) -> Result<Arc<TopicInfo>> {
        let metadata = self.refresh_metadata(Some(&[name.to_string()])).await?;
        metadata
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// The leader of a partition, from the cache.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        let info = self.topic(topic).await?;
        let partition_info = info
            .partitions
            .get(partition as usize)
            .filter(|p| p.partition == partition)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        if partition_info.leader < 0 {
            return Err(Error::NoLeader {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(partition_info.leader)
    }

    /// The broker versions range of `api` as the bootstrap broker reports it.
    pub async fn broker_versions(&self, api: ApiKey) -> Result<Option<(i16, i16)>> {
        Ok(self.any_connection().await?.broker_versions(api))
    }
}
