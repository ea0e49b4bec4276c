//! The producer: messages go into a per-partition accumulator; a sender task
//! closes batches by size (`batch_size`) or age (`linger`), builds each as
//! one record batch (compressed, with the idempotent producer's sequence),
//! and sends one Produce request per leader.
//!
//! Ordering and safe retries: each partition has at most one batch in flight.
//! A batch's sequence numbers are fixed when it is built and the same bytes
//! are resent on a retriable error, so the broker's duplicate check drops a
//! retry of a batch it already wrote. A partition's next sequence advances
//! only when its batch succeeded, so a batch that finally fails leaves no gap.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_protocol::messages::{InitProducerIdRequest, ProduceRequest};
use rill_protocol::{ApiKey, Records, RequestBody, ResponseBody};
use rill_records::batch::Compression;
use rill_records::builder::BatchBuilder;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use crate::client::{Client, ClientConfig, wall_clock_ms as now_ms};
use crate::error::{Error, Result, code};
use crate::message::{Message, MessageSet};
use crate::partitioner::{DefaultPartitioner, Partitioner};

/// How many brokers must have a message before it counts as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: no answer, no offsets (`acks=0`).
    None,
    /// The leader wrote it (`acks=1`).
    Leader,
    /// Every in-sync replica has it (`acks=all`).
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub acks: Acks,
    /// Idempotent producer (no duplicates from retries); takes effect with
    /// `Acks::All`, as in Kafka.
    pub idempotence: bool,
    pub compression: Compression,
    /// A batch closes when its records reach this many (uncompressed) bytes.
    pub batch_size: usize,
    /// A batch closes when its first record has waited this long.
    pub linger: Duration,
    /// Bytes of messages not yet acknowledged; `send` waits when it is full.
    pub buffer_memory: usize,
    /// The largest single message accepted.
    pub max_message_size: usize,
    /// First pause before a retry; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Give up on a message this long after it was sent.
    pub delivery_timeout: Duration,
    /// Ask the broker to create a topic it does not have on the first send
    /// (it does if its `auto_create_topics_enable` is on), as Kafka's
    /// producers do.
    pub auto_create_topics: bool,
    /// How long `send` waits for a topic to become writable (just created,
    /// or its leader moving) before failing (Kafka's `max.block.ms`).
    pub max_block: Duration,
    pub partitioner: Arc<dyn Partitioner>,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            idempotence: true,
            compression: Compression::None,
            // One in-flight batch per partition, so batches are larger than
            // the Java client's 16 KiB: a batch grows while the previous one
            // is on the wire, and stays under the broker's 1 MiB limit.
            batch_size: 512 * 1024,
            linger: Duration::from_millis(5),
            buffer_memory: 32 << 20,
            max_message_size: 1 << 20,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(120),
            auto_create_topics: true,
            max_block: Duration::from_secs(60),
            partitioner: Arc::new(DefaultPartitioner::default()),
        }
    }
}

impl ProducerConfig {
    pub fn new(brokers: &str) -> ProducerConfig {
        ProducerConfig {
            client: ClientConfig::new(brokers),
            ..ProducerConfig::default()
        }
    }
}

/// Where a message was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// -1 with `Acks::None`: the broker does not say.
    pub offset: i64,
    pub timestamp: i64,
}

/// The answer to one [`AsyncProducer::send`]; await it for the offset.
pub struct DeliveryFuture {
    answer: oneshot::Receiver<Result<RecordMetadata>>,
}

impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(Error::ProducerClosed)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TopicPartition {
    topic: String,
    partition: i32,
}

struct PendingRecord {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<rill_records::record::Header>,
    timestamp: i64,
    reply: oneshot::Sender<Result<RecordMetadata>>,
    _memory: OwnedSemaphorePermit,
}

/// A closed batch, built once and resent as is on retries.
struct Batch {
    records: Vec<PendingRecord>,
    bytes: Bytes,
    first_sent: Option<Instant>,
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Vec<PendingRecord>,
    open_bytes: usize,
    open_since: Option<Instant>,
    /// Records closed by size, waiting for the batch in flight to finish.
    full: VecDeque<Vec<PendingRecord>>,
    /// A batch that failed with a retriable error, sent before anything else.
    retry: Option<Batch>,
    in_flight: bool,
    next_sequence: i32,
    /// Send now without waiting for `linger` (a flush or a message set).
    urgent: bool,
}

struct State {
    /// By topic, then partition: a send looks its queue up by `&str`,
    /// without building an owned key per message.
    queues: HashMap<String, HashMap<i32, PartitionQueue>>,
    flushing: bool,
    closed: bool,
    producer_id: i64,
    producer_epoch: i16,
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    idempotent: bool,
    state: Mutex<State>,
    wake: Notify,
    /// Wakes `flush` callers whenever a batch completes.
    progress: Notify,
    memory: Arc<Semaphore>,
}

/// The async producer. Cheap to clone; all clones share one sender task.
#[derive(Clone)]
pub struct AsyncProducer {
    shared: Arc<Shared>,
}

impl AsyncProducer {
    /// Connects to the cluster and starts the sender task.
    pub async fn connect(config: ProducerConfig) -> Result<AsyncProducer> {
        if config.batch_size == 0 || config.buffer_memory < config.max_message_size {
            return Err(Error::Config(
                "batch_size must be positive and buffer_memory at least max_message_size".into(),
            ));
        }
        let client = Client::connect(config.client.clone()).await?;
        let idempotent = config.idempotence && config.acks == Acks::All;
        let shared = Arc::new(Shared {
            client,
            idempotent,
            memory: Arc::new(Semaphore::new(config.buffer_memory)),
            config,
            state: Mutex::new(State {
                queues: HashMap::new(),
                flushing: false,
                closed: false,
                producer_id: -1,
                producer_epoch: -1,
            }),
            wake: Notify::new(),
            progress: Notify::new(),
        });
        if idempotent {
            shared.init_producer_id().await?;
        }
        tokio::spawn(run_sender(shared.clone()));
        Ok(AsyncProducer { shared })
    }

    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Queues one message for `topic`; waits only while buffer memory is
    /// full. Await the returned future for its partition and offset.
    pub async fn send(&self, topic: &str, message: Message) -> Result<DeliveryFuture> {
        // The hot path of a sending loop: no vectors, one lock, one clock
        // read (the record's timestamp, also used to judge the metadata).
        let config = &self.shared.config;
        let now = now_ms();
        let info = match self.shared.client.fresh_topic_at(topic, now) {
            Some(info) => info,
            None => {
                self.shared
                    .client
                    .topic_for_write(topic, config.auto_create_topics, config.max_block)
                    .await?
            }
        };
        let (size, permit) = self.reserve(&message).await?;
        let mut wake = false;
        let future = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(Error::ProducerClosed);
            }
            let partitions = info.partitions.len() as i32;
            self.queue_one(
                &mut state, topic, partitions, message, size, permit, now, false, &mut wake,
            )?
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(future)
    }

    /// Checks a message's size and waits for buffer memory for it.
    async fn reserve(&self, message: &Message) -> Result<(usize, OwnedSemaphorePermit)> {
        let size = message.encoded_len_estimate();
        if size > self.shared.config.max_message_size {
            return Err(Error::MessageTooLarge {
                size,
                limit: self.shared.config.max_message_size,
            });
        }
        // Back-pressure: wait for acknowledged messages to free memory.
        let permit = self
            .shared
            .memory
            .clone()
            .acquire_many_owned(size as u32)
            .await
            .map_err(|_| Error::ProducerClosed)?;
        Ok((size, permit))
    }

    /// Sends a set of messages at once, in as few requests as there are
    /// leaders (one on a single broker), and waits for every answer.
    pub async fn send_set(&self, topic: &str, set: MessageSet) -> Result<Vec<RecordMetadata>> {
        let futures = self.enqueue(topic, set.into_messages(), true).await?;
        let mut delivered = Vec::with_capacity(futures.len());
        for future in futures {
            delivered.push(future.await?);
        }
        Ok(delivered)
    }

    /// Waits until every message queued so far has been answered.
    pub async fn flush(&self) -> Result<()> {
        loop {
            let progress = self.shared.progress.notified();
            {
                let mut state = self.shared.lock();
                let idle = state
                    .queues
                    .values()
                    .flat_map(HashMap::values)
                    .all(|queue| {
                        queue.open.is_empty()
                            && queue.full.is_empty()
                            && queue.retry.is_none()
                            && !queue.in_flight
                    });
                if idle {
                    state.flushing = false;
                    return Ok(());
                }
                state.flushing = true;
            }
            self.shared.wake.notify_one();
            progress.await;
        }
    }

    /// Sends what is queued and stops the sender task.
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn enqueue(
        &self,
        topic: &str,
        messages: Vec<Message>,
        urgent: bool,
    ) -> Result<Vec<DeliveryFuture>> {
        let config = &self.shared.config;
        let info = self
            .shared
            .client
            .topic_for_write(topic, config.auto_create_topics, config.max_block)
            .await?;
        let partition_count = info.partitions.len() as i32;
        let mut reserved = Vec::with_capacity(messages.len());
        for message in messages {
            let (size, permit) = self.reserve(&message).await?;
            reserved.push((message, size, permit));
        }
        let now_ms = now_ms();
        let mut futures = Vec::with_capacity(reserved.len());
        let mut wake = urgent;
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(Error::ProducerClosed);
            }
            for (message, size, permit) in reserved {
                futures.push(self.queue_one(
                    &mut state,
                    topic,
                    partition_count,
                    message,
                    size,
                    permit,
                    now_ms,
                    urgent,
                    &mut wake,
                )?);
            }
        }
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(futures)
    }

    /// Puts one message on its partition's queue (the caller holds the
    /// state lock); sets `wake` when the sender has something new to do.
    #[allow(clippy::too_many_arguments)]
    fn queue_one(
        &self,
        state: &mut State,
        topic: &str,
        partition_count: i32,
        message: Message,
        size: usize,
        permit: OwnedSemaphorePermit,
        now_ms: i64,
        urgent: bool,
        wake: &mut bool,
    ) -> Result<DeliveryFuture> {
        let partition = if message.partition >= 0 {
            if message.partition >= partition_count {
                return Err(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition: message.partition,
                });
            }
            message.partition
        } else {
            self.shared
                .config
                .partitioner
                .partition(topic, message.key.as_deref(), partition_count)
        };
        let (reply, answer) = oneshot::channel();
        let by_partition = match state.queues.get_mut(topic) {
            Some(by_partition) => by_partition,
            None => state.queues.entry(topic.to_string()).or_default(),
        };
        let queue = by_partition.entry(partition).or_default();
        if !queue.open.is_empty() && queue.open_bytes + size > self.shared.config.batch_size {
            let closed = std::mem::take(&mut queue.open);
            queue.full.push_back(closed);
            queue.open_bytes = 0;
            queue.open_since = None;
            if message.key.is_none() {
                self.shared
                    .config
                    .partitioner
                    .on_new_batch(topic, partition, partition_count);
            }
            *wake = true;
        }
        if queue.open.is_empty() {
            queue.open_since = Some(Instant::now());
            *wake = true;
        }
        queue.open_bytes += size;
        queue.urgent |= urgent;
        queue.open.push(PendingRecord {
            key: message.key,
            value: message.value,
            headers: message
                .headers
                .into_iter()
                .map(|header| rill_records::record::Header {
                    key: Bytes::from(header.key),
                    value: header.value,
                })
                .collect(),
            timestamp: message.timestamp.unwrap_or(now_ms),
            reply,
            _memory: permit,
        });
        Ok(DeliveryFuture { answer })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn init_producer_id(&self) -> Result<()> {
        let response = self
            .client
            .call_any(ApiKey::InitProducerId, |_| {
                RequestBody::InitProducerId(InitProducerIdRequest {
                    transactional_id: None,
                    transaction_timeout_ms: i32::MAX,
                    producer_id: -1,
                    producer_epoch: -1,
                    ..Default::default()
                })
            })
            .await?;
        let ResponseBody::InitProducerId(response) = response else {
            return Err(Error::Protocol {
                addr: "broker".into(),
                reason: "InitProducerId answered with another API".into(),
            });
        };
        if response.error_code != code::NONE {
            return Err(Error::kafka("InitProducerId", response.error_code, None));
        }
        let mut state = self.lock();
        state.producer_id = response.producer_id;
        state.producer_epoch = response.producer_epoch;
        Ok(())
    }

    /// Takes every batch that may go now, and when the next one may.
    fn drain(&self) -> (Vec<(TopicPartition, Batch)>, Option<Instant>) {
        let now = Instant::now();
        let linger = self.config.linger;
        let mut state = self.lock();
        let flushing = state.flushing || state.closed;
        let (producer_id, producer_epoch) = (state.producer_id, state.producer_epoch);
        let mut ready = Vec::new();
        let mut to_build = Vec::new();
        let mut next_wake: Option<Instant> = None;
        let mut earliest = |at: Instant| {
            next_wake = Some(next_wake.map_or(at, |current| current.min(at)));
        };
        let queues = state.queues.iter_mut().flat_map(|(topic, by_partition)| {
            by_partition.iter_mut().map(move |(p, q)| (topic, *p, q))
        });
        for (topic, partition, queue) in queues {
            let tp = || TopicPartition {
                topic: topic.clone(),
                partition,
            };
            if queue.in_flight {
                continue;
            }
            if let Some(retry) = &queue.retry {
                match retry.retry_at {
                    Some(at) if at > now => earliest(at),
                    _ => {
                        if let Some(batch) = queue.retry.take() {
                            queue.in_flight = true;
                            ready.push((tp(), batch));
                        }
                    }
                }
                continue;
            }
            let records = if let Some(records) = queue.full.pop_front() {
                records
            } else if !queue.open.is_empty() {
                let deadline = queue.open_since.map_or(now, |since| since + linger);
                if deadline > now && !flushing && !queue.urgent {
                    earliest(deadline);
                    continue;
                }
                queue.open_bytes = 0;
                queue.open_since = None;
                queue.urgent = false;
                std::mem::take(&mut queue.open)
            } else {
                continue;
            };
            queue.in_flight = true;
            to_build.push((tp(), records, queue.next_sequence));
        }
        drop(state);
        // Building (copying, compressing, CRC) happens outside the lock, so
        // `send` callers are not held up by it.
        let producer = self.idempotent.then_some((producer_id, producer_epoch));
        for (tp, records, base_sequence) in to_build {
            let built = build_batch(&records, self.config.compression, producer, base_sequence);
            let (bytes, failure) = match built {
                Ok(bytes) => (bytes, None),
                Err(error) => (Bytes::new(), Some(error)),
            };
            let batch = Batch {
                records,
                bytes,
                first_sent: Some(now),
                attempts: 0,
                retry_at: None,
                last_error: None,
            };
            match failure {
                None => ready.push((tp, batch)),
                Some(error) => self.complete(&tp, batch, Outcome::Failed(error)),
            }
        }
        (ready, next_wake)
    }

    /// Records the outcome of one batch.
    fn complete(&self, tp: &TopicPartition, mut batch: Batch, outcome: Outcome) {
        let mut state = self.lock();
        let Some(queue) = state
            .queues
            .get_mut(&tp.topic)
            .and_then(|by_partition| by_partition.get_mut(&tp.partition))
        else {
            return;
        };
        queue.in_flight = false;
        match outcome {
            Outcome::Written { base_offset } => {
                let count = batch.records.len() as i32;
                if self.idempotent {
                    queue.next_sequence = queue.next_sequence.wrapping_add(count) & i32::MAX;
                }
                for (index, record) in batch.records.into_iter().enumerate() {
                    let offset = if base_offset < 0 {
                        -1
                    } else {
                        base_offset + index as i64
                    };
                    let _ = record.reply.send(Ok(RecordMetadata {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset,
                        timestamp: record.timestamp,
                    }));
                }
            }
            Outcome::Retry(error) => {
                let first_sent = batch.first_sent.unwrap_or_else(Instant::now);
                if first_sent.elapsed() >= self.config.delivery_timeout {
                    let error = Error::DeliveryTimeout {
                        timeout_ms: self.config.delivery_timeout.as_millis() as u64,
                        last: error.to_string(),
                    };
                    fail_records(batch.records, &error.to_string());
                } else {
                    let backoff = self
                        .config
                        .retry_backoff
                        .saturating_mul(1 << batch.attempts.min(10))
                        .min(self.config.retry_backoff_max);
                    batch.retry_at = Some(Instant::now() + backoff);
                    batch.last_error = Some(error.to_string());
                    queue.retry = Some(batch);
                }
            }
            Outcome::Failed(error) => fail_records(batch.records, &error.to_string()),
        }
        drop(state);
        self.progress.notify_waiters();
        self.wake.notify_one();
    }
}

enum Outcome {
    Written { base_offset: i64 },
    Retry(Error),
    Failed(Error),
}

fn fail_records(records: Vec<PendingRecord>, error: &str) {
    for record in records {
        let _ = record.reply.send(Err(Error::Kafka {
            context: "produce".into(),
            code: -1,
            message: Some(error.to_string()),
        }));
    }
}

fn build_batch(
    records: &[PendingRecord],
    compression: Compression,
    producer: Option<(i64, i16)>,
    base_sequence: i32,
) -> Result<Bytes> {
    let mut builder = BatchBuilder::new(compression);
    if let Some((producer_id, producer_epoch)) = producer {
        builder = builder.producer(producer_id, producer_epoch, base_sequence);
    }
    for record in records {
        builder.append(
            record.timestamp,
            record.key.clone(),
            record.value.clone(),
            record.headers.clone(),
        )?;
    }
    Ok(Bytes::from(builder.build()?))
}

async fn run_sender(shared: Arc<Shared>) {
    loop {
        let wake = shared.wake.notified();
        let (ready, next_wake) = shared.drain();
        if !ready.is_empty() {
            send_batches(&shared, ready).await;
            continue;
        }
        {
            let state = shared.lock();
            if state.closed
                && state
                    .queues
                    .values()
                    .flat_map(HashMap::values)
                    .all(|queue| !queue.in_flight)
            {
                return;
            }
        }
        match next_wake {
            Some(at) => {
                let _ = tokio::time::timeout_at(at.into(), wake).await;
            }
            None => wake.await,
        }
    }
}

/// Groups batches by leader and sends one request to each leader; each
/// request's answer is handled in its own task, so the sender goes back to
/// draining at once.
async fn send_batches(shared: &Arc<Shared>, ready: Vec<(TopicPartition, Batch)>) {
    let mut by_leader: HashMap<i32, Vec<(TopicPartition, Batch)>> = HashMap::new();
    for (tp, batch) in ready {
        match shared.client.leader(&tp.topic, tp.partition).await {
            Ok(leader) => by_leader.entry(leader).or_default().push((tp, batch)),
            Err(error) => {
                let outcome = if error.is_retriable() {
                    let _ = shared.client.refresh_topic(&tp.topic).await;
                    Outcome::Retry(error)
                } else {
                    Outcome::Failed(error)
                };
                shared.complete(&tp, batch, outcome);
            }
        }
    }
    for (leader, batches) in by_leader {
        tokio::spawn(send_to_leader(shared.clone(), leader, batches));
    }
}

async fn send_to_leader(
    shared: Arc<Shared>,
    leader: i32,
    mut batches: Vec<(TopicPartition, Batch)>,
) {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (tp, batch) in batches.iter_mut() {
        batch.attempts += 1;
        let data = PartitionProduceData {
            index: tp.partition,
            records: Some(Records::Bytes(batch.bytes.clone())),
            ..Default::default()
        };
        match topics.iter_mut().find(|topic| topic.name == tp.topic) {
            Some(topic) => topic.partition_data.push(data),
            None => topics.push(TopicProduceData {
                name: tp.topic.clone(),
                partition_data: vec![data],
                ..Default::default()
            }),
        }
    }
    let acks = shared.config.acks;
    let request = |_version| {
        RequestBody::Produce(ProduceRequest {
            transactional_id: None,
            acks: acks.wire(),
            timeout_ms: shared.config.client.request_timeout.as_millis() as i32,
            topic_data: topics,
            ..Default::default()
        })
    };
    let result = match shared.client.connection(leader).await {
        Err(error) => Err(error),
        Ok(connection) if acks == Acks::None => match connection.version(ApiKey::Produce) {
            Ok(version) => connection
                .send_oneway(version, request(version))
                .await
                .map(|()| None),
            Err(error) => Err(error),
        },
        Ok(connection) => connection.call(ApiKey::Produce, request).await.map(Some),
    };
    match result {
        Ok(None) => {
            for (tp, batch) in batches {
                shared.complete(&tp, batch, Outcome::Written { base_offset: -1 });
            }
        }
        Ok(Some(ResponseBody::Produce(response))) => {
            let mut answers = HashMap::new();
            for topic in response.responses {
                for partition in topic.partition_responses {
                    answers.insert((topic.name.clone(), partition.index), partition);
                }
            }
            let mut refresh = Vec::new();
            for (tp, batch) in batches {
                let outcome = match answers.remove(&(tp.topic.clone(), tp.partition)) {
                    None => Outcome::Retry(Error::Protocol {
                        addr: format!("broker {leader}"),
                        reason: format!("no answer for {}-{}", tp.topic, tp.partition),
                    }),
                    Some(answer) => match answer.error_code {
                        code::NONE => Outcome::Written {
                            base_offset: answer.base_offset,
                        },
                        // A retry of a batch the broker already wrote.
                        code::DUPLICATE_SEQUENCE_NUMBER => Outcome::Written {
                            base_offset: answer.base_offset,
                        },
                        error_code => {
                            let error = Error::kafka(
                                format!("produce to {}-{}", tp.topic, tp.partition),
                                error_code,
                                answer.error_message,
                            );
                            if code::is_retriable(error_code) {
                                refresh.push(tp.topic.clone());
                                Outcome::Retry(error)
                            } else {
                                Outcome::Failed(error)
                            }
                        }
                    },
                };
                shared.complete(&tp, batch, outcome);
            }
            if !refresh.is_empty() {
                refresh.sort();
                refresh.dedup();
                let _ = shared.client.refresh_metadata(Some(&refresh)).await;
            }
        }
        Ok(Some(_)) => {
            for (tp, batch) in batches {
                let error = Error::Protocol {
                    addr: format!("broker {leader}"),
                    reason: "Produce answered with another API".into(),
                };
                shared.complete(&tp, batch, Outcome::Failed(error));
            }
        }
        Err(error) => {
            let retriable = error.is_retriable()
                || matches!(error, Error::Protocol { .. } | Error::UnknownBroker(_));
            let topics: Vec<String> = batches.iter().map(|(tp, _)| tp.topic.clone()).collect();
            let _ = shared.client.refresh_metadata(Some(&topics)).await;
            for (tp, batch) in batches {
                let outcome = if retriable {
                    Outcome::Retry(Error::Protocol {
                        addr: format!("broker {leader}"),
                        reason: error.to_string(),
                    })
                } else {
                    Outcome::Failed(Error::Protocol {
                        addr: format!("broker {leader}"),
                        reason: error.to_string(),
                    })
                };
                shared.complete(&tp, batch, outcome);
            }
        }
    }
}

/// The paper's producer: `send(topic, set)` blocks until the broker has the
/// whole set, sent as one request. It runs its own small tokio runtime, so
/// call it from plain threads, not from inside async code (use
/// [`AsyncProducer`] there).
pub struct Producer {
    runtime: tokio::runtime::Runtime,
    inner: AsyncProducer,
}

impl Producer {
    /// Connects to the cluster with these settings.
    pub fn new(config: ProducerConfig) -> Result<Producer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rill-producer")
            .enable_all()
            .build()
            .map_err(|error| Error::Config(format!("cannot start a tokio runtime: {error}")))?;
        let inner = runtime.block_on(AsyncProducer::connect(config))?;
        Ok(Producer { runtime, inner })
    }

    /// Connects to a comma-separated list of brokers with default settings.
    pub fn connect(brokers: &str) -> Result<Producer> {
        Producer::new(ProducerConfig::new(brokers))
    }

    /// Publishes a set of messages to `topic`; returns where each went.
    pub fn send(&self, topic: &str, set: MessageSet) -> Result<Vec<RecordMetadata>> {
        self.runtime.block_on(self.inner.send_set(topic, set))
    }

    /// The async producer underneath, sharing this one's sender.
    pub fn as_async(&self) -> &AsyncProducer {
        &self.inner
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.inner.close());
    }
}
