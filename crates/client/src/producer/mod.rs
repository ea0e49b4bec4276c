//! The producer: messages go into a per-partition accumulator; a sender task
//! closes batches by size (`batch_size`) or age (`linger`), builds each as
//! one record batch (compressed, with the idempotent producer's sequence),
//! and writes one Produce request per leader and round (a request carries
//! one batch per partition and at most `max_request_size` bytes; up to
//! `max_in_flight` batches of a partition are on the wire at once, written
//! in order on one connection).
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
//! Each message's future shares its batch's outcome
//! ([`delivery::BatchSlot`]), and buffer memory is one atomic counter given
//! back per batch: a send costs no channel and no semaphore permit of its
//! own.
//!
//! Here: the async API and the state it shares with the sender task.
//! `accumulator`: the per-partition queues and batches. `sender`: the
//! sender task, requests, answers and retries. `delivery`: the futures a
//! send returns. `memory`: `buffer_memory`. `blocking`: the paper's
//! blocking [`Producer`]. `config`: the settings.

mod accumulator;
mod blocking;
mod config;
mod delivery;
mod memory;
mod sender;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::Notify;

use self::accumulator::{Append, KnownTopic, PartitionQueue, State};
use self::memory::Memory;
use self::sender::run_sender;
use crate::client::Client;
use crate::clock;
use crate::error::{Error, Result};
use crate::message::{Message, MessageSet};
pub use blocking::Producer;
pub use config::{Acks, MAX_IN_FLIGHT_LIMIT, ProducerConfig};
pub use delivery::{DeliveryFuture, RecordMetadata};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the producer's API, the accumulator and the sender task share.
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

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
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
            state: Mutex::new(State::new()),
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
        let partitions = self.writable_partitions(topic).await?;
        // Back-pressure: wait for acknowledged messages to free memory.
        self.shared.memory.take(size).await;
        let now = message.timestamp.unwrap_or_else(clock::wall_ms);
        self.queue_taken(topic, partitions, message, size, now)
    }

    /// The partition count of `topic` once it can be written to (creating
    /// it with `auto_create_topics`, waiting up to `max_block`).
    async fn writable_partitions(&self, topic: &str) -> Result<i32> {
        let config = &self.shared.config;
        let info = self
            .shared
            .client
            .topic_for_write(topic, config.auto_create_topics, config.max_block)
            .await?;
        Ok(info.partitions.len() as i32)
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
        let append = Append {
            topic,
            partition_count: partitions,
            size,
            now_ms: now,
            urgent: false,
        };
        let queued = state.queue_one(&self.shared.config, &append, message, &mut wake);
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

    /// Queues `messages` for `topic` at once (`urgent`: their batches go
    /// without waiting for `linger`).
    async fn enqueue(
        &self,
        topic: &str,
        messages: Vec<Message>,
        urgent: bool,
    ) -> Result<Vec<DeliveryFuture>> {
        let partitions = self.writable_partitions(topic).await?;
        let reserved = self.reserve(messages).await?;
        let mut append = Append {
            topic,
            partition_count: partitions,
            size: 0,
            now_ms: clock::wall_ms(),
            urgent,
        };
        let mut futures = Vec::with_capacity(reserved.len());
        let mut wake = urgent;
        let mut failure = None;
        {
            let mut state = self.shared.lock();
            let mut reserved = reserved.into_iter();
            while let Some((message, size)) = reserved.next() {
                append.size = size;
                match state.queue_one(&self.shared.config, &append, message, &mut wake) {
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

    /// Takes each message's share of buffer memory, waiting for room; gives
    /// it all back if one is too large.
    async fn reserve(&self, messages: Vec<Message>) -> Result<Vec<(Message, usize)>> {
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
        Ok(reserved)
    }
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
