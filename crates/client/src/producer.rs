//! The producer: messages go into a per-partition accumulator; a sender task
//! closes batches by size (`batch_size`) or age (`linger`), builds each as
//! one record batch (compressed, with the idempotent producer's sequence),
//! and writes one Produce request per leader and round (a request carries
//! one batch per partition and at most `max_request_size` bytes; up to `max_in_flight` batches of a partition
//! are on the wire at once, written in order on one connection).
//!
//! Ordering and safe retries: a batch's sequence numbers are fixed when it
//! is built and the same bytes are resent on a retriable error, so the
//! broker's duplicate check drops a retry of a batch it already wrote. A
//! partition with a batch to retry sends nothing new and resends its failed
//! batches one at a time, in order; batches refused as out of order behind
//! it are retried too. A batch that fails for good leaves a hole in its
//! partition's sequence, so the producer then takes a fresh producer id and
//! restarts every sequence at 0 before sending on (Kafka's producer resets
//! the same way).
//!
//! Each message's future shares its batch's outcome ([`BatchSlot`]), and
//! buffer memory is one atomic counter given back per batch: a send costs
//! no channel and no semaphore permit of its own.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_protocol::messages::{InitProducerIdRequest, ProduceRequest};
use rill_protocol::{ApiKey, Records, RequestBody, ResponseBody};
use rill_records::batch::{Compression, set_producer};
use rill_records::builder::BatchBuilder;
use tokio::sync::Notify;

use crate::client::{Client, ClientConfig};
use crate::clock;
use crate::error::{Error, Result, code};
use crate::hash::FastMap;
use crate::message::{Message, MessageSet};
use crate::partitioner::{DefaultPartitioner, Partitioner};

/// The most batches of one partition on the wire at once: a connection
/// holds at most 64 requests in flight, and one write of this many rounds
/// must fit in it beside the other callers' requests.
pub const MAX_IN_FLIGHT_LIMIT: usize = 16;

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
    /// Batches of one partition on the wire at once (Kafka's
    /// `max.in.flight.requests.per.connection`). More than one keeps a
    /// partition's pipe full when batches are small; order still holds,
    /// since a failed batch and everything after it are resent in order
    /// (with idempotence the broker's sequence check enforces it; without,
    /// a retry can land after a later batch, as in Kafka).
    pub max_in_flight: usize,
    /// The largest single message accepted.
    pub max_message_size: usize,
    /// Bytes of record batches in one Produce request (Kafka's
    /// `max.request.size`): a drain's batches for one broker are split into
    /// requests of at most this, and a larger batch goes alone. Without
    /// it a producer to thousands of partitions sent one request of every
    /// ready batch, tens of MiB that the broker must buffer whole.
    pub max_request_size: usize,
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
            // Larger than the Java client's 16 KiB: a batch grows while the
            // previous ones are on the wire, and stays under the broker's
            // 1 MiB limit.
            batch_size: 512 * 1024,
            linger: Duration::from_millis(5),
            buffer_memory: 32 << 20,
            max_in_flight: 5,
            max_message_size: 1 << 20,
            max_request_size: 1 << 20,
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
    /// Shared by every message of a batch (no string copied per message).
    pub topic: Arc<str>,
    pub partition: i32,
    /// -1 with `Acks::None`: the broker does not say.
    pub offset: i64,
    pub timestamp: i64,
}

/// The answer to one [`AsyncProducer::send`]; await it for the offset.
///
/// Every message of a batch shares one [`BatchSlot`]: the future holds the
/// slot and its place in the batch, so a send allocates no channel of its
/// own (a channel per message was a visible share of the send path).
pub struct DeliveryFuture {
    slot: Arc<BatchSlot>,
    index: u32,
    timestamp: i64,
    /// The waker this future left in the slot, and where: a future polled
    /// again by the same task takes no lock.
    registered: Option<(usize, Waker)>,
}

impl DeliveryFuture {
    fn answer(&self, outcome: &BatchOutcome) -> Result<RecordMetadata> {
        match outcome {
            Ok(base_offset) => Ok(RecordMetadata {
                topic: self.slot.topic.clone(),
                partition: self.slot.partition,
                offset: if *base_offset < 0 {
                    -1
                } else {
                    base_offset + i64::from(self.index)
                },
                timestamp: self.timestamp,
            }),
            Err(error) => Err(copy_of(error)),
        }
    }
}

impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(outcome) = this.slot.outcome.get() {
            return Poll::Ready(this.answer(outcome));
        }
        if let Some((_, waker)) = &this.registered
            && waker.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let mut wakers = lock(&this.slot.wakers);
        // Checked again under the lock: the batch's completion sets the
        // outcome before it takes the wakers, so either it is visible here
        // or the waker left below is woken.
        if let Some(outcome) = this.slot.outcome.get() {
            drop(wakers);
            return Poll::Ready(this.answer(outcome));
        }
        let waker = cx.waker().clone();
        match &mut this.registered {
            Some((at, registered)) if *at < wakers.len() => {
                wakers[*at] = waker.clone();
                *registered = waker;
            }
            registered => {
                wakers.push(waker.clone());
                *registered = Some((wakers.len() - 1, waker));
            }
        }
        Poll::Pending
    }
}

/// A batch's outcome: its base offset (-1 with `Acks::None`), or why it
/// failed (each message gets a [`copy_of`] the error).
type BatchOutcome = std::result::Result<i64, Error>;

/// The error every message of a failed batch gets. [`Error`] cannot be
/// cloned (it may hold an `io::Error`): the variants a batch fails with
/// are copied as they are, any other becomes its sentence.
fn copy_of(error: &Error) -> Error {
    match error {
        Error::Kafka {
            context,
            code,
            message,
        } => Error::Kafka {
            context: context.clone(),
            code: *code,
            message: message.clone(),
        },
        Error::DeliveryTimeout { timeout_ms, last } => Error::DeliveryTimeout {
            timeout_ms: *timeout_ms,
            last: last.clone(),
        },
        Error::ProducerClosed => Error::ProducerClosed,
        other => Error::Kafka {
            context: "produce".into(),
            code: code::UNKNOWN_SERVER_ERROR,
            message: Some(other.to_string()),
        },
    }
}

/// Where the futures of one batch's messages wait for its outcome.
struct BatchSlot {
    topic: Arc<str>,
    partition: i32,
    outcome: OnceLock<BatchOutcome>,
    wakers: Mutex<Vec<Waker>>,
}

/// The producer's side of a [`BatchSlot`]: completing it wakes every
/// message's future; dropping it uncompleted (the producer went away)
/// answers them with [`Error::ProducerClosed`], as a dropped channel would.
struct Completion(Arc<BatchSlot>);

impl Completion {
    fn new(topic: Arc<str>, partition: i32) -> Completion {
        Completion(Arc::new(BatchSlot {
            topic,
            partition,
            outcome: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        }))
    }

    fn complete(&self, outcome: BatchOutcome) {
        if self.0.outcome.set(outcome).is_ok() {
            let wakers = std::mem::take(&mut *lock(&self.0.wakers));
            for waker in wakers {
                waker.wake();
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.complete(Err(Error::ProducerClosed));
    }
}

/// Bytes of messages not yet acknowledged (`buffer_memory`): a send takes
/// its share with one atomic operation, a batch gives back all of its
/// messages' shares at once when it is answered.
///
/// A send that finds the buffer full waits until it has drained to
/// `resume_at`, an eighth below the limit, not just until its own message
/// fits: waking at every answered batch made a producer that outruns the
/// broker trade one thread switch per message with the sender task (1.09 M
/// context switches for 2 M one-message batches, half the client's CPU in
/// the kernel's wake-up path). While any send waits, new sends wait too, so
/// a waiting one cannot be starved by others that keep the buffer full.
struct Memory {
    used: AtomicUsize,
    limit: usize,
    /// Sends waiting in `take`.
    waiting: AtomicUsize,
    freed: Notify,
}

/// Counts a send as waiting for as long as it exists (the future holding
/// it may be dropped while it waits).
struct WaitingSend<'a>(&'a AtomicUsize);

impl<'a> WaitingSend<'a> {
    fn new(count: &'a AtomicUsize) -> WaitingSend<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        WaitingSend(count)
    }
}

impl Drop for WaitingSend<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Memory {
    fn new(limit: usize) -> Memory {
        Memory {
            used: AtomicUsize::new(0),
            limit,
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    fn resume_at(&self) -> usize {
        self.limit - self.limit / 8
    }

    /// Takes `size` bytes at once if no send is waiting and they fit.
    fn try_take(&self, size: usize) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0 && self.take_if_fits(size, self.limit)
    }

    /// Takes `size` bytes if they fit under the limit and no more than
    /// `used_max` are in use.
    fn take_if_fits(&self, size: usize, used_max: usize) -> bool {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            // A message always fits an empty buffer (`limit` is at least
            // `max_message_size`, checked at connect).
            if used != 0 && (used + size > self.limit || used > used_max) {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + size,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Waits until `size` bytes fit (back-pressure on `send`).
    async fn take(&self, size: usize) {
        if self.try_take(size) {
            return;
        }
        let _waiting = WaitingSend::new(&self.waiting);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            // Sequentially consistent with `give_back`: either this sees
            // the bytes it gave back, or it sees this send waiting and
            // wakes it (the waiter is registered above).
            if self.take_if_fits(size, self.resume_at()) {
                return;
            }
            freed.await;
        }
    }

    fn give_back(&self, size: usize) {
        let after = self.used.fetch_sub(size, Ordering::SeqCst) - size;
        if after <= self.resume_at() && self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TopicPartition {
    topic: String,
    partition: i32,
}

/// A batch still being filled, or closed and waiting to be built.
///
/// Each message is encoded into `builder` by the `send` that queues it, on
/// the sender's thread: the message's buffers are released there and then,
/// and the sender task only writes the header and CRC. Keeping the
/// messages until the sender task encoded them made every payload's
/// reference count travel between two threads (its clone and drop there,
/// its creation here) and the state lock's line with it: together about
/// a third of the e2e client's sending thread at 1.15 M msg/s. It also
/// made the sender task do the encoding on top of the I/O.
struct OpenBatch {
    builder: BatchBuilder,
    /// Their share of `buffer_memory`.
    memory: usize,
    completion: Completion,
}

/// The future of [`AsyncProducer::send`]: ready at its first poll when the
/// message could be queued at once (the common case, which then costs no
/// allocation), boxed only when it must wait.
pub struct SendFuture<'a>(SendState<'a>);

type Waiting<'a> = Pin<Box<dyn std::future::Future<Output = Result<DeliveryFuture>> + Send + 'a>>;

enum SendState<'a> {
    Ready(Option<Result<DeliveryFuture>>),
    Waiting(Waiting<'a>),
}

impl SendFuture<'_> {
    fn ready(result: Result<DeliveryFuture>) -> SendFuture<'static> {
        SendFuture(SendState::Ready(Some(result)))
    }
}

impl std::future::Future for SendFuture<'_> {
    type Output = Result<DeliveryFuture>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            // Polled again after it was ready: nothing more to give.
            SendState::Ready(result) => {
                Poll::Ready(result.take().unwrap_or(Err(Error::ProducerClosed)))
            }
            SendState::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// A closed batch, built once and resent as is on retries (an idempotent
/// producer's reset rewrites only its producer fields).
struct Batch {
    completion: Completion,
    count: i32,
    /// Its messages' share of `buffer_memory`, given back when answered.
    memory: usize,
    bytes: Bytes,
    /// The idempotent producer's sequence of its first record; -1 without
    /// idempotence.
    base_sequence: i32,
    /// Its place among its partition's batches, in the order they were
    /// built (sequences wrap; this does not).
    order: u64,
    first_sent: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    open_since: Option<Instant>,
    /// Batches closed by size, waiting for a free in-flight slot.
    full: VecDeque<OpenBatch>,
    /// Batches that failed with a retriable error, in the order they were
    /// built: resent one at a time, before anything new, so a partition's
    /// order holds across retries.
    retry: VecDeque<Batch>,
    /// The `order` of each batch on the wire, oldest first.
    in_flight: VecDeque<u64>,
    next_order: u64,
    next_sequence: i32,
    /// Send now without waiting for `linger` (a flush or a message set).
    urgent: bool,
    /// The topic's partition count when a message last joined the queue:
    /// what the partitioner picks from when `drain` closes a batch.
    partition_count: i32,
    /// The encoded size of the last batch taken: what the next one
    /// reserves, so a steady stream fills each batch without growing it.
    last_batch_len: usize,
}

impl PartitionQueue {
    fn is_idle(&self) -> bool {
        self.open.is_none()
            && self.full.is_empty()
            && self.retry.is_empty()
            && self.in_flight.is_empty()
    }
}

struct State {
    /// By topic, then partition: a send looks its queue up by `&str`,
    /// without building an owned key per message.
    queues: FastMap<String, FastMap<i32, PartitionQueue>>,
    flushing: bool,
    closed: bool,
    producer_id: i64,
    producer_epoch: i16,
    /// An idempotent batch failed for good (or the broker forgot this
    /// producer): the sequences after it can never be written, so nothing
    /// new goes out until a fresh producer id restarts every partition's
    /// sequence at 0 ([`Shared::reset_producer`]).
    reset: bool,
    /// The topic the last `send` found fresh metadata for.
    known: Option<KnownTopic>,
}

/// What a `send` read of a topic's metadata, kept for the next while the
/// client's metadata is the same (`generation`) and not too old.
struct KnownTopic {
    topic: String,
    generation: u64,
    /// When the client loaded it, on `clock::coarse_ms`.
    loaded_at: i64,
    partitions: i32,
}

impl State {
    fn queues(&self) -> impl Iterator<Item = &PartitionQueue> {
        self.queues.values().flat_map(FastMap::values)
    }
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    idempotent: bool,
    state: Mutex<State>,
    wake: Notify,
    /// Wakes `flush` callers whenever a batch completes.
    progress: Notify,
    memory: Memory,
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
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&config.max_in_flight) {
            return Err(Error::Config(format!(
                "max_in_flight must be between 1 and {MAX_IN_FLIGHT_LIMIT}"
            )));
        }
        let client = Client::connect(config.client.clone()).await?;
        let idempotent = config.idempotence && config.acks == Acks::All;
        let shared = Arc::new(Shared {
            client,
            idempotent,
            memory: Memory::new(config.buffer_memory),
            config,
            state: Mutex::new(State {
                queues: FastMap::default(),
                flushing: false,
                closed: false,
                producer_id: -1,
                producer_epoch: -1,
                reset: false,
                known: None,
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
    /// full or the topic's metadata must be loaded. Await the returned
    /// future to queue it, then the [`DeliveryFuture`] for its partition
    /// and offset.
    pub fn send<'a>(&'a self, topic: &'a str, message: Message) -> SendFuture<'a> {
        // The hot path of a sending loop, done before the first poll: no
        // vectors, no channel, one lock, no look at the client's metadata
        // while it has not changed since the last send to this topic, a
        // coarse clock read to age it, a precise one only for a message
        // without a timestamp, and a future that holds only the answer.
        let size = match self.checked_size(&message) {
            Ok(size) => size,
            Err(error) => return SendFuture::ready(Err(error)),
        };
        let now = message.timestamp.unwrap_or_else(clock::wall_ms);
        let coarse_now = clock::coarse_ms();
        let generation = self.shared.client.metadata_generation();
        let mut state = self.shared.lock();
        if let Some(partitions) = self.partition_count(&mut state, topic, generation, coarse_now)
            && self.shared.memory.try_take(size)
        {
            return SendFuture::ready(
                self.queue_locked(state, topic, partitions, message, size, now),
            );
        }
        drop(state);
        SendFuture(SendState::Waiting(Box::pin(
            self.send_waiting(topic, message, size),
        )))
    }

    /// The partition count of `topic` if its metadata is fresh: from the
    /// last send's look when that was at the same `generation` of the
    /// client's metadata and the same topic (a std `RwLock` and a map
    /// lookup per message were 6-8 % of the e2e producer's thread).
    fn partition_count(
        &self,
        state: &mut State,
        topic: &str,
        generation: u64,
        coarse_now: i64,
    ) -> Option<i32> {
        let client = &self.shared.client;
        if let Some(known) = &state.known
            && known.generation == generation
            && known.topic == topic
            && coarse_now.saturating_sub(known.loaded_at) < client.metadata_max_age_ms()
        {
            return Some(known.partitions);
        }
        let (partitions, loaded_at) = client.fresh_partition_count(topic, coarse_now)?;
        // Rewritten in place: a producer alternating between topics takes
        // no allocation per send.
        let known = state.known.get_or_insert_with(|| KnownTopic {
            topic: String::new(),
            generation,
            loaded_at,
            partitions,
        });
        known.topic.clear();
        known.topic.push_str(topic);
        known.generation = generation;
        known.loaded_at = loaded_at;
        known.partitions = partitions;
        Some(partitions)
    }

    /// [`AsyncProducer::send`] when it has to wait for metadata or memory.
    async fn send_waiting(
        &self,
        topic: &str,
        message: Message,
        size: usize,
    ) -> Result<DeliveryFuture> {
        let config = &self.shared.config;
        let info = self
            .shared
            .client
            .topic_for_write(topic, config.auto_create_topics, config.max_block)
            .await?;
        // Back-pressure: wait for acknowledged messages to free memory.
        self.shared.memory.take(size).await;
        let partitions = info.partitions.len() as i32;
        let now = message.timestamp.unwrap_or_else(clock::wall_ms);
        self.queue_taken(topic, partitions, message, size, now)
    }

    /// Queues a message whose memory is taken; gives it back on failure.
    fn queue_taken(
        &self,
        topic: &str,
        partitions: i32,
        message: Message,
        size: usize,
        now: i64,
    ) -> Result<DeliveryFuture> {
        self.queue_locked(self.shared.lock(), topic, partitions, message, size, now)
    }

    /// [`AsyncProducer::queue_taken`] under the state lock, which it lets go.
    fn queue_locked(
        &self,
        mut state: std::sync::MutexGuard<'_, State>,
        topic: &str,
        partitions: i32,
        message: Message,
        size: usize,
        now: i64,
    ) -> Result<DeliveryFuture> {
        let mut wake = false;
        let queued = if state.closed {
            Err(Error::ProducerClosed)
        } else {
            self.queue_one(
                &mut state, topic, partitions, message, size, now, false, &mut wake,
            )
        };
        drop(state);
        if queued.is_err() {
            self.shared.memory.give_back(size);
        }
        if wake {
            self.shared.wake.notify_one();
        }
        queued
    }

    /// A message's share of buffer memory, if it is not too large.
    fn checked_size(&self, message: &Message) -> Result<usize> {
        let size = message.encoded_len_estimate();
        let limit = self.shared.config.max_message_size;
        if size > limit {
            return Err(Error::MessageTooLarge { size, limit });
        }
        Ok(size)
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
                if state.queues().all(PartitionQueue::is_idle) {
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
            match self.checked_size(&message) {
                Ok(size) => {
                    self.shared.memory.take(size).await;
                    reserved.push((message, size));
                }
                Err(error) => {
                    let taken = reserved.iter().map(|(_, size)| size).sum();
                    self.shared.memory.give_back(taken);
                    return Err(error);
                }
            }
        }
        let now_ms = clock::wall_ms();
        let mut futures = Vec::with_capacity(reserved.len());
        let mut wake = urgent;
        let mut failure = None;
        {
            let mut state = self.shared.lock();
            let mut reserved = reserved.into_iter();
            while let Some((message, size)) = reserved.next() {
                let queued = if state.closed {
                    Err(Error::ProducerClosed)
                } else {
                    self.queue_one(
                        &mut state,
                        topic,
                        partition_count,
                        message,
                        size,
                        now_ms,
                        urgent,
                        &mut wake,
                    )
                };
                match queued {
                    Ok(future) => futures.push(future),
                    Err(error) => {
                        // What is queued stays queued; the rest gives its
                        // memory back.
                        let rest: usize = reserved.map(|(_, size)| size).sum();
                        self.shared.memory.give_back(size + rest);
                        failure = Some(error);
                        break;
                    }
                }
            }
        }
        if wake {
            self.shared.wake.notify_one();
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(futures),
        }
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
        now_ms: i64,
        urgent: bool,
        wake: &mut bool,
    ) -> Result<DeliveryFuture> {
        let config = &self.shared.config;
        // As Kafka's producers do: a record with a negative timestamp
        // would make its whole batch unreadable, so it is refused alone.
        if let Some(timestamp) = message.timestamp
            && timestamp < 0
        {
            return Err(Error::NegativeTimestamp(timestamp));
        }
        let partition = if message.partition >= 0 {
            if message.partition >= partition_count {
                return Err(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition: message.partition,
                });
            }
            message.partition
        } else {
            config
                .partitioner
                .partition(topic, message.key.as_deref(), partition_count)
        };
        let by_partition = match state.queues.get_mut(topic) {
            Some(by_partition) => by_partition,
            None => state.queues.entry(topic.to_string()).or_default(),
        };
        let queue = by_partition.entry(partition).or_default();
        queue.partition_count = partition_count;
        if let Some(open) = &queue.open
            && open.memory + size > config.batch_size
            && let Some(closed) = queue.open.take()
        {
            queue.full.push_back(closed);
            queue.open_since = None;
            if message.key.is_none() {
                config
                    .partitioner
                    .on_new_batch(topic, partition, partition_count);
            }
            *wake = true;
        }
        let open = match &mut queue.open {
            Some(open) => open,
            None => {
                queue.open_since = Some(Instant::now());
                *wake = true;
                // Sized like the partition's last batch: growing it by
                // doubling moved every record again (a visible memmove in
                // a send). The records of a batch never pass `batch_size`
                // (`encoded_len_estimate` bounds each from above).
                let last = queue.last_batch_len;
                let mut builder = BatchBuilder::new(config.compression);
                builder.reserve((last + last / 4).clamp(1024, config.batch_size.max(1024)));
                queue.open.insert(OpenBatch {
                    builder,
                    memory: 0,
                    completion: Completion::new(Arc::from(topic), partition),
                })
            }
        };
        let index = open.builder.record_count() as u32;
        let timestamp = message.timestamp.unwrap_or(now_ms);
        let headers = if message.headers.is_empty() {
            Vec::new()
        } else {
            message
                .headers
                .into_iter()
                .map(|header| rill_records::record::Header {
                    key: Bytes::from(header.key),
                    value: header.value,
                })
                .collect()
        };
        let appended = open
            .builder
            .append(timestamp, message.key, message.value, headers);
        let empty = open.builder.record_count() == 0;
        if let Err(error) = appended {
            // Nothing of the message was written; a batch it would have
            // opened is not left behind empty.
            if empty {
                queue.open = None;
                queue.open_since = None;
            }
            return Err(error.into());
        }
        open.memory += size;
        queue.urgent |= urgent;
        Ok(DeliveryFuture {
            slot: open.completion.0.clone(),
            index,
            timestamp,
            registered: None,
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
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

    /// Whether a reset is due: asked for, and nothing is on the wire.
    fn reset_due(&self) -> bool {
        let state = self.lock();
        state.reset && state.queues().all(|queue| queue.in_flight.is_empty())
    }

    /// Takes a fresh producer id and restarts every partition's sequence at
    /// 0, renumbering the batches waiting to be retried in their order (a
    /// batch's producer fields are under its CRC, so they are rewritten).
    async fn reset_producer(&self) {
        if let Err(error) = self.init_producer_id().await {
            tracing::warn!(%error, "cannot reset the idempotent producer; trying again");
            tokio::time::sleep(self.config.retry_backoff).await;
            return;
        }
        let mut state = self.lock();
        let (producer_id, producer_epoch) = (state.producer_id, state.producer_epoch);
        for queue in state.queues.values_mut().flat_map(FastMap::values_mut) {
            let mut sequence = 0i32;
            for batch in &mut queue.retry {
                let mut bytes = batch.bytes.to_vec();
                if set_producer(&mut bytes, producer_id, producer_epoch, sequence).is_ok() {
                    batch.bytes = Bytes::from(bytes);
                }
                batch.base_sequence = sequence;
                sequence = sequence.wrapping_add(batch.count) & i32::MAX;
            }
            queue.next_sequence = sequence;
        }
        state.reset = false;
        drop(state);
        self.wake.notify_one();
    }

    /// Takes every batch that may go now (up to `max_in_flight` per
    /// partition, oldest first), and when the next one may.
    fn drain(&self) -> (Vec<(TopicPartition, Batch)>, Option<Instant>) {
        let now = Instant::now();
        let linger = self.config.linger;
        let max_in_flight = self.config.max_in_flight;
        let idempotent = self.idempotent;
        let mut state = self.lock();
        if state.reset {
            return (Vec::new(), None);
        }
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
            if let Some(retry) = queue.retry.front() {
                if !queue.in_flight.is_empty() {
                    continue;
                }
                if let Some(at) = retry.retry_at.filter(|at| *at > now) {
                    earliest(at);
                    continue;
                }
                if let Some(batch) = queue.retry.pop_front() {
                    queue.in_flight.push_back(batch.order);
                    ready.push((tp(), batch));
                }
                continue;
            }
            while queue.in_flight.len() < max_in_flight {
                let open = if let Some(open) = queue.full.pop_front() {
                    open
                } else if queue.open.is_some() {
                    let deadline = queue.open_since.map_or(now, |since| since + linger);
                    if deadline > now && !flushing && !queue.urgent {
                        earliest(deadline);
                        break;
                    }
                    queue.open_since = None;
                    queue.urgent = false;
                    let Some(open) = queue.open.take() else {
                        break;
                    };
                    // A batch sent before it filled (linger, flush) ends
                    // the partition's turn too, as one closed by size
                    // does: keyless messages move on (KIP-480), or a
                    // producer slower than its batches would keep one
                    // partition forever.
                    self.config
                        .partitioner
                        .on_new_batch(topic, partition, queue.partition_count);
                    open
                } else {
                    break;
                };
                let base_sequence = if idempotent {
                    let sequence = queue.next_sequence;
                    queue.next_sequence =
                        sequence.wrapping_add(open.builder.record_count()) & i32::MAX;
                    sequence
                } else {
                    -1
                };
                queue.last_batch_len = open.builder.uncompressed_len();
                let order = queue.next_order;
                queue.next_order += 1;
                queue.in_flight.push_back(order);
                to_build.push((tp(), open, base_sequence, order));
            }
        }
        drop(state);
        // Building (header, compression, CRC) happens outside the lock, so
        // `send` callers are not held up by it.
        let producer = idempotent.then_some((producer_id, producer_epoch));
        for (tp, open, base_sequence, order) in to_build {
            let count = open.builder.record_count();
            let (bytes, failure) = match build_batch(open.builder, producer, base_sequence) {
                Ok(bytes) => (bytes, None),
                Err(error) => (Bytes::new(), Some(error)),
            };
            let batch = Batch {
                completion: open.completion,
                count,
                memory: open.memory,
                bytes,
                base_sequence,
                order,
                first_sent: now,
                attempts: 0,
                retry_at: None,
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
        let mut guard = self.lock();
        let State { queues, reset, .. } = &mut *guard;
        let Some(queue) = queues
            .get_mut(&tp.topic)
            .and_then(|by_partition| by_partition.get_mut(&tp.partition))
        else {
            drop(guard);
            self.memory.give_back(batch.memory);
            return;
        };
        let position = queue
            .in_flight
            .iter()
            .position(|order| *order == batch.order);
        if let Some(position) = position {
            queue.in_flight.remove(position);
        }
        let outcome = match outcome {
            // The broker refused this batch because one before it is
            // missing: retriable while that one is still to be resolved
            // (in flight before it, waiting to be retried, or about to be
            // renumbered by a reset); otherwise this producer's sequence is
            // broken and only a reset repairs it.
            Outcome::OutOfOrder(error) => {
                if *reset || position.is_some_and(|at| at > 0) || !queue.retry.is_empty() {
                    Outcome::Retry(error)
                } else {
                    Outcome::Failed(error)
                }
            }
            Outcome::UnknownProducer(error) => {
                *reset = true;
                Outcome::Retry(error)
            }
            other => other,
        };
        let failed = match outcome {
            Outcome::Written { base_offset } => {
                batch.completion.complete(Ok(base_offset));
                None
            }
            Outcome::Retry(error) if batch.first_sent.elapsed() < self.config.delivery_timeout => {
                let backoff = self
                    .config
                    .retry_backoff
                    .saturating_mul(1 << batch.attempts.min(10))
                    .min(self.config.retry_backoff_max);
                batch.retry_at = Some(Instant::now() + backoff);
                tracing::debug!(%error, topic = %tp.topic, partition = tp.partition, "produce will be retried");
                let at = queue
                    .retry
                    .partition_point(|queued| queued.order < batch.order);
                queue.retry.insert(at, batch);
                drop(guard);
                self.wake.notify_one();
                return;
            }
            Outcome::Retry(error) => Some(Error::DeliveryTimeout {
                timeout_ms: self.config.delivery_timeout.as_millis() as u64,
                last: error.to_string(),
            }),
            Outcome::Failed(error)
            | Outcome::OutOfOrder(error)
            | Outcome::UnknownProducer(error) => Some(error),
        };
        if let Some(error) = failed {
            batch.completion.complete(Err(error));
            if self.idempotent {
                // Its sequences may or may not be on the broker: a fresh
                // producer id is the only safe way on.
                *reset = true;
            }
        }
        drop(guard);
        self.memory.give_back(batch.memory);
        self.progress.notify_waiters();
        self.wake.notify_one();
    }
}

enum Outcome {
    Written {
        base_offset: i64,
    },
    Retry(Error),
    /// OUT_OF_ORDER_SEQUENCE_NUMBER from the broker.
    OutOfOrder(Error),
    /// UNKNOWN_PRODUCER_ID: the broker no longer knows this producer.
    UnknownProducer(Error),
    Failed(Error),
}

/// Finishes a batch whose records are encoded: the idempotent producer's
/// fields (known only now), the header, compression and CRC.
fn build_batch(
    builder: BatchBuilder,
    producer: Option<(i64, i16)>,
    base_sequence: i32,
) -> Result<Bytes> {
    let builder = match producer {
        Some((producer_id, producer_epoch)) => {
            builder.producer(producer_id, producer_epoch, base_sequence)
        }
        None => builder,
    };
    Ok(Bytes::from(builder.build()?))
}

async fn run_sender(shared: Arc<Shared>) {
    loop {
        let wake = shared.wake.notified();
        if shared.reset_due() {
            shared.reset_producer().await;
            continue;
        }
        let (ready, next_wake) = shared.drain();
        if !ready.is_empty() {
            send_batches(&shared, ready).await;
            continue;
        }
        {
            let state = shared.lock();
            if state.closed && state.queues().all(|queue| queue.in_flight.is_empty()) {
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

/// The batches for one leader, as requests: a request carries at most one
/// batch per partition (as Kafka requires), so a partition's second batch
/// goes in a later request, written after the first.
type Rounds = Vec<Vec<(TopicPartition, Batch)>>;

/// Places batches into rounds in the order given: each in the first round
/// after its partition's previous batch that has room for it under
/// `max_bytes` (an empty round always has room). Rounds before `first_open`
/// were found too full for a batch and are skipped, so placing is about
/// constant time per batch, whatever the number of partitions.
struct RoundPlanner<T> {
    rounds: Vec<Vec<(TopicPartition, T)>>,
    bytes: Vec<usize>,
    first_open: usize,
    /// A partition's next possible round, keyed by a hash of the topic and
    /// the partition (no allocation per batch): a collision only makes a
    /// batch wait for a later round than it had to.
    next: FastMap<(u64, i32), usize>,
}

impl<T> RoundPlanner<T> {
    fn new() -> RoundPlanner<T> {
        RoundPlanner {
            rounds: Vec::new(),
            bytes: Vec::new(),
            first_open: 0,
            next: FastMap::default(),
        }
    }

    fn place(&mut self, tp: TopicPartition, item: T, len: usize, max_bytes: usize) {
        let key = (self.next.hasher().hash_one(&tp.topic), tp.partition);
        let mut r = self
            .next
            .get(&key)
            .copied()
            .unwrap_or(0)
            .max(self.first_open);
        loop {
            if r == self.rounds.len() {
                self.rounds.push(Vec::new());
                self.bytes.push(0);
            }
            if self.rounds[r].is_empty() || self.bytes[r] + len <= max_bytes {
                break;
            }
            if r == self.first_open {
                self.first_open += 1;
            }
            r += 1;
        }
        self.bytes[r] += len;
        self.rounds[r].push((tp, item));
        self.next.insert(key, r + 1);
    }
}

/// Groups batches by leader and writes each leader's requests in order,
/// from this task (so a partition's batches reach the broker in the order
/// they were built); each leader's answers are awaited in a task of their
/// own, so the sender goes back to draining at once.
async fn send_batches(shared: &Arc<Shared>, ready: Vec<(TopicPartition, Batch)>) {
    let mut by_leader: HashMap<i32, RoundPlanner<Batch>> = HashMap::new();
    let max_bytes = shared.config.max_request_size;
    for (tp, batch) in ready {
        match shared.client.leader(&tp.topic, tp.partition).await {
            Ok(leader) => {
                let len = batch.bytes.len();
                by_leader
                    .entry(leader)
                    .or_insert_with(RoundPlanner::new)
                    .place(tp, batch, len, max_bytes);
            }
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
    for (leader, planner) in by_leader {
        send_to_leader(shared, leader, planner.rounds).await;
    }
}

async fn send_to_leader(shared: &Arc<Shared>, leader: i32, rounds: Rounds) {
    let connection = match shared.client.connection(leader).await {
        Ok(connection) => connection,
        Err(error) => {
            for round in rounds {
                request_failed(shared, leader, round, &error).await;
            }
            return;
        }
    };
    let version = match connection.version(ApiKey::Produce) {
        Ok(version) => version,
        Err(error) => {
            for round in rounds {
                request_failed(shared, leader, round, &error).await;
            }
            return;
        }
    };
    let mut rounds = rounds;
    let requests: Vec<RequestBody> = rounds
        .iter_mut()
        .map(|round| produce_request(shared, round))
        .collect();
    // All rounds in one write: with small batches this is what keeps the
    // producer from paying a system call per message.
    if shared.config.acks == Acks::None {
        let written = connection.send_oneway(version, &requests).await;
        for round in rounds {
            match &written {
                Ok(()) => answered(shared, leader, round, Ok(None)).await,
                Err(error) => request_failed(shared, leader, round, error).await,
            }
        }
        return;
    }
    let answers = match connection.write_requests(version, &requests).await {
        Ok(answers) => answers,
        Err(error) => {
            for round in rounds {
                request_failed(shared, leader, round, &error).await;
            }
            return;
        }
    };
    drop(requests);
    let shared = shared.clone();
    tokio::spawn(async move {
        for (round, answer) in rounds.into_iter().zip(answers) {
            let result = answer.wait().await.map(Some);
            answered(&shared, leader, round, result).await;
        }
    });
}

/// The Produce request for one round of batches (one per partition).
fn produce_request(shared: &Shared, round: &mut [(TopicPartition, Batch)]) -> RequestBody {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (tp, batch) in round.iter_mut() {
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
    RequestBody::Produce(ProduceRequest {
        transactional_id: None,
        acks: shared.config.acks.wire(),
        timeout_ms: shared.config.client.request_timeout.as_millis() as i32,
        topic_data: topics,
        ..Default::default()
    })
}

/// Handles the answer to one request: `Ok(None)` when none was asked for
/// (acks=0) and the request was written.
async fn answered(
    shared: &Shared,
    leader: i32,
    batches: Vec<(TopicPartition, Batch)>,
    result: Result<Option<ResponseBody>>,
) {
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
                    Some(answer) => {
                        let error = || {
                            Error::kafka(
                                format!("produce to {}-{}", tp.topic, tp.partition),
                                answer.error_code,
                                answer.error_message.clone(),
                            )
                        };
                        match answer.error_code {
                            // DUPLICATE: a retry of a batch the broker
                            // already wrote.
                            code::NONE | code::DUPLICATE_SEQUENCE_NUMBER => Outcome::Written {
                                base_offset: answer.base_offset,
                            },
                            code::OUT_OF_ORDER_SEQUENCE_NUMBER => Outcome::OutOfOrder(error()),
                            code::UNKNOWN_PRODUCER_ID => Outcome::UnknownProducer(error()),
                            error_code if code::is_retriable(error_code) => {
                                refresh.push(tp.topic.clone());
                                Outcome::Retry(error())
                            }
                            _ => Outcome::Failed(error()),
                        }
                    }
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
        Err(error) => request_failed(shared, leader, batches, &error).await,
    }
}

/// A request that got no answer: its batches are retried when the cause
/// may pass (a dropped connection, a moved leader), after a metadata
/// refresh.
async fn request_failed(
    shared: &Shared,
    leader: i32,
    batches: Vec<(TopicPartition, Batch)>,
    error: &Error,
) {
    let retriable =
        error.is_retriable() || matches!(error, Error::Protocol { .. } | Error::UnknownBroker(_));
    let topics: Vec<String> = batches.iter().map(|(tp, _)| tp.topic.clone()).collect();
    let _ = shared.client.refresh_metadata(Some(&topics)).await;
    for (tp, batch) in batches {
        let error = Error::Protocol {
            addr: format!("broker {leader}"),
            reason: error.to_string(),
        };
        let outcome = if retriable {
            Outcome::Retry(error)
        } else {
            Outcome::Failed(error)
        };
        shared.complete(&tp, batch, outcome);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }

    /// Requests stay under the size limit (a larger batch alone), carry a
    /// partition at most once, and a partition's batches go out in order.
    #[test]
    fn rounds_respect_the_request_size_and_keep_each_partitions_order() {
        let mut planner = RoundPlanner::new();
        let mut placed = Vec::new();
        for n in 0..3_000usize {
            let partition = (n * 7 % 1_000) as i32;
            let topic = if n % 2 == 0 { "a" } else { "b" };
            let len = if n == 1_234 { 5_000 } else { 100 + n % 300 };
            planner.place(tp(topic, partition), (n, len), len, 4_096);
            placed.push(n);
        }
        let mut last_round: HashMap<TopicPartition, (usize, usize)> = HashMap::new();
        let mut seen = 0;
        for (r, round) in planner.rounds.iter().enumerate() {
            let bytes: usize = round.iter().map(|(_, (_, len))| len).sum();
            assert!(
                bytes <= 4_096 || round.len() == 1,
                "round {r}: {bytes} bytes"
            );
            let mut in_round = std::collections::HashSet::new();
            for (tp, (n, _)) in round {
                assert!(in_round.insert(tp.clone()), "{tp:?} twice in round {r}");
                if let Some((previous_round, previous_n)) = last_round.get(tp) {
                    assert!(
                        *previous_round < r && *previous_n < *n,
                        "{tp:?} out of order"
                    );
                }
                last_round.insert(tp.clone(), (r, *n));
                seen += 1;
            }
        }
        assert_eq!(seen, placed.len());
        let total: usize = planner
            .rounds
            .iter()
            .flatten()
            .map(|(_, (_, len))| len)
            .sum();
        assert!(
            planner.rounds.len() <= total / 3_500 + 3,
            "{} rounds for {total} bytes: rounds are filled",
            planner.rounds.len()
        );
    }

    /// A send that found the buffer full goes on only once it has drained
    /// by an eighth, and while it waits, new sends do not jump ahead of it.
    #[tokio::test]
    async fn a_blocked_send_resumes_after_an_eighth_drains_and_is_not_overtaken() {
        let memory = Arc::new(Memory::new(8_000));
        assert!(memory.try_take(8_000));
        let waiter = {
            let memory = Arc::clone(&memory);
            tokio::spawn(async move { memory.take(100).await })
        };
        while memory.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Room for the message, but not yet an eighth free: it keeps
        // waiting, and a new send may not take the room either.
        memory.give_back(500);
        assert!(!memory.try_take(100), "a new send overtook a waiting one");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        // 1,000 bytes (an eighth) free: it takes its 100 and new sends go
        // on again.
        memory.give_back(500);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(memory.used.load(Ordering::SeqCst), 7_100);
        assert_eq!(memory.waiting.load(Ordering::SeqCst), 0);
        assert!(memory.try_take(100));
    }
}
