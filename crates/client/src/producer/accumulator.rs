//! The accumulator: messages are appended to their partition's open batch
//! as they are sent; a batch closes by size (`batch_size`), age (`linger`)
//! or a flush, and `drain` takes the batches that may go now (up to
//! `max_in_flight` per partition, retries first) and builds them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rill_records::builder::BatchBuilder;

use super::Shared;
use super::config::ProducerConfig;
use super::delivery::{Completion, DeliveryFuture};
use super::sender::Outcome;
use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::message::Message;
use crate::topic_partition::TopicPartition;

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
pub(super) struct OpenBatch {
    pub(super) builder: BatchBuilder,
    /// Their share of `buffer_memory`.
    pub(super) memory: usize,
    pub(super) completion: Completion,
}

/// A closed batch, built once and resent as is on retries (an idempotent
/// producer's reset rewrites only its producer fields).
pub(super) struct Batch {
    pub(super) completion: Completion,
    pub(super) count: i32,
    /// Its messages' share of `buffer_memory`, given back when answered.
    pub(super) memory: usize,
    pub(super) bytes: Bytes,
    /// The idempotent producer's sequence of its first record; -1 without
    /// idempotence.
    pub(super) base_sequence: i32,
    /// Its place among its partition's batches, in the order they were
    /// built (sequences wrap; this does not).
    pub(super) order: u64,
    pub(super) first_sent: Instant,
    pub(super) attempts: u32,
    pub(super) retry_at: Option<Instant>,
}

#[derive(Default)]
pub(super) struct PartitionQueue {
    pub(super) open: Option<OpenBatch>,
    pub(super) open_since: Option<Instant>,
    /// Batches closed by size, waiting for a free in-flight slot.
    pub(super) full: VecDeque<OpenBatch>,
    /// Batches that failed with a retriable error, in the order they were
    /// built: resent one at a time, before anything new, so a partition's
    /// order holds across retries.
    pub(super) retry: VecDeque<Batch>,
    /// The `order` of each batch on the wire, oldest first.
    pub(super) in_flight: VecDeque<u64>,
    pub(super) next_order: u64,
    pub(super) next_sequence: i32,
    /// Send now without waiting for `linger` (a flush or a message set).
    pub(super) urgent: bool,
    /// The topic's partition count when a message last joined the queue:
    /// what the partitioner picks from when `drain` closes a batch.
    pub(super) partition_count: i32,
    /// The encoded size of the last batch taken: what the next one
    /// reserves, so a steady stream fills each batch without growing it.
    pub(super) last_batch_len: usize,
}

impl PartitionQueue {
    pub(super) fn is_idle(&self) -> bool {
        self.open.is_none()
            && self.full.is_empty()
            && self.retry.is_empty()
            && self.in_flight.is_empty()
    }
}

pub(super) struct State {
    /// By topic, then partition: a send looks its queue up by `&str`,
    /// without building an owned key per message.
    pub(super) queues: FastMap<String, FastMap<i32, PartitionQueue>>,
    pub(super) flushing: bool,
    pub(super) closed: bool,
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
    /// An idempotent batch failed for good (or the broker forgot this
    /// producer): the sequences after it can never be written, so nothing
    /// new goes out until a fresh producer id restarts every partition's
    /// sequence at 0 ([`Shared::reset_producer`]).
    pub(super) reset: bool,
    /// The topic the last `send` found fresh metadata for.
    pub(super) known: Option<KnownTopic>,
}

/// What a `send` read of a topic's metadata, kept for the next while the
/// client's metadata is the same (`generation`) and not too old.
pub(super) struct KnownTopic {
    pub(super) topic: String,
    pub(super) generation: u64,
    /// When the client loaded it, on `clock::coarse_ms`.
    pub(super) loaded_at: i64,
    pub(super) partitions: i32,
}

impl State {
    pub(super) fn new() -> State {
        State {
            queues: FastMap::default(),
            flushing: false,
            closed: false,
            producer_id: -1,
            producer_epoch: -1,
            reset: false,
            known: None,
        }
    }

    pub(super) fn queues(&self) -> impl Iterator<Item = &PartitionQueue> {
        self.queues.values().flat_map(FastMap::values)
    }
}

/// What one send appends: the message's topic and its partition count when
/// it was sent, its share of buffer memory, the time for a message without
/// a timestamp, and whether its batch should go without waiting for
/// `linger`.
pub(super) struct Append<'a> {
    pub(super) topic: &'a str,
    pub(super) partition_count: i32,
    pub(super) size: usize,
    pub(super) now_ms: i64,
    pub(super) urgent: bool,
}

impl State {
    /// Puts one message on its partition's queue; sets `wake` when the
    /// sender has something new to do.
    pub(super) fn queue_one(
        &mut self,
        config: &ProducerConfig,
        append: &Append<'_>,
        message: Message,
        wake: &mut bool,
    ) -> Result<DeliveryFuture> {
        if self.closed {
            return Err(Error::ProducerClosed);
        }
        let topic = append.topic;
        let partition = partition_for(config, append, &message)?;
        let by_partition = match self.queues.get_mut(topic) {
            Some(by_partition) => by_partition,
            None => self.queues.entry(topic.to_string()).or_default(),
        };
        let queue = by_partition.entry(partition).or_default();
        queue.partition_count = append.partition_count;
        if queue.close_if_full(append.size, config.batch_size) {
            if message.key.is_none() {
                config
                    .partitioner
                    .on_new_batch(topic, partition, append.partition_count);
            }
            *wake = true;
        }
        if queue.open.is_none() {
            *wake = true;
            queue.open_batch(config, topic, partition);
        }
        queue.append(message, append)
    }
}

/// The partition a message goes to: its own, or the partitioner's pick.
fn partition_for(config: &ProducerConfig, append: &Append<'_>, message: &Message) -> Result<i32> {
    // As Kafka's producers do: a record with a negative timestamp
    // would make its whole batch unreadable, so it is refused alone.
    if let Some(timestamp) = message.timestamp
        && timestamp < 0
    {
        return Err(Error::NegativeTimestamp(timestamp));
    }
    if message.partition < 0 {
        return Ok(config.partitioner.partition(
            append.topic,
            message.key.as_deref(),
            append.partition_count,
        ));
    }
    if message.partition >= append.partition_count {
        return Err(Error::UnknownPartition {
            topic: append.topic.to_string(),
            partition: message.partition,
        });
    }
    Ok(message.partition)
}

impl PartitionQueue {
    /// Closes the open batch if `size` more bytes would pass `batch_size`.
    fn close_if_full(&mut self, size: usize, batch_size: usize) -> bool {
        if let Some(open) = &self.open
            && open.memory + size > batch_size
            && let Some(closed) = self.open.take()
        {
            self.full.push_back(closed);
            self.open_since = None;
            return true;
        }
        false
    }

    fn open_batch(&mut self, config: &ProducerConfig, topic: &str, partition: i32) {
        self.open_since = Some(Instant::now());
        // Sized like the partition's last batch: growing it by
        // doubling moved every record again (a visible memmove in
        // a send). The records of a batch never pass `batch_size`
        // (`encoded_len_estimate` bounds each from above).
        let last = self.last_batch_len;
        let mut builder = BatchBuilder::new(config.compression);
        builder.reserve((last + last / 4).clamp(1024, config.batch_size.max(1024)));
        self.open = Some(OpenBatch {
            builder,
            memory: 0,
            completion: Completion::new(Arc::from(topic), partition),
        });
    }

    /// Encodes `message` into the open batch.
    fn append(&mut self, message: Message, append: &Append<'_>) -> Result<DeliveryFuture> {
        let Some(open) = &mut self.open else {
            return Err(Error::ProducerClosed);
        };
        let index = open.builder.record_count() as u32;
        let timestamp = message.timestamp.unwrap_or(append.now_ms);
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
                self.open = None;
                self.open_since = None;
            }
            return Err(error.into());
        }
        open.memory += append.size;
        self.urgent |= append.urgent;
        Ok(DeliveryFuture::new(&open.completion, index, timestamp))
    }
}

/// What a drain takes: batches ready to send, batches to build, and when
/// the next one may go.
#[derive(Default)]
struct Taken {
    ready: Vec<(TopicPartition, Batch)>,
    to_build: Vec<(TopicPartition, OpenBatch, i32, u64)>,
    next_wake: Option<Instant>,
}

impl Taken {
    fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |current| current.min(at)));
    }
}

impl Shared {
    /// Takes every batch that may go now (up to `max_in_flight` per
    /// partition, oldest first), and when the next one may.
    pub(super) fn drain(&self) -> (Vec<(TopicPartition, Batch)>, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.reset {
            return (Vec::new(), None);
        }
        let flushing = state.flushing || state.closed;
        let producer = self
            .idempotent
            .then_some((state.producer_id, state.producer_epoch));
        let mut taken = Taken::default();
        for (topic, by_partition) in state.queues.iter_mut() {
            for (&partition, queue) in by_partition.iter_mut() {
                self.take_from(topic, partition, queue, now, flushing, &mut taken);
            }
        }
        drop(state);
        // Building (header, compression, CRC) happens outside the lock, so
        // `send` callers are not held up by it.
        let mut ready = taken.ready;
        for (tp, open, base_sequence, order) in taken.to_build {
            let (batch, failure) = build(open, producer, base_sequence, order, now);
            match failure {
                None => ready.push((tp, batch)),
                Some(error) => self.complete(&tp, batch, Outcome::Failed(error)),
            }
        }
        (ready, taken.next_wake)
    }

    /// One partition's share of a drain: its next retry alone when it has
    /// one, else closed batches while in-flight slots are free.
    fn take_from(
        &self,
        topic: &str,
        partition: i32,
        queue: &mut PartitionQueue,
        now: Instant,
        flushing: bool,
        taken: &mut Taken,
    ) {
        let tp = || TopicPartition::new(topic, partition);
        if let Some(retry) = queue.retry.front() {
            if !queue.in_flight.is_empty() {
                return;
            }
            if let Some(at) = retry.retry_at.filter(|at| *at > now) {
                taken.wake_at(at);
                return;
            }
            if let Some(batch) = queue.retry.pop_front() {
                queue.in_flight.push_back(batch.order);
                taken.ready.push((tp(), batch));
            }
            return;
        }
        while queue.in_flight.len() < self.config.max_in_flight {
            let Some(open) = self.close_next(topic, partition, queue, now, flushing, taken) else {
                break;
            };
            let base_sequence = if self.idempotent {
                let sequence = queue.next_sequence;
                queue.next_sequence = sequence.wrapping_add(open.builder.record_count()) & i32::MAX;
                sequence
            } else {
                -1
            };
            queue.last_batch_len = open.builder.uncompressed_len();
            let order = queue.next_order;
            queue.next_order += 1;
            queue.in_flight.push_back(order);
            taken.to_build.push((tp(), open, base_sequence, order));
        }
    }

    /// The partition's next batch to send: one closed by size, or the open
    /// one once `linger` has passed (or on a flush or a message set).
    fn close_next(
        &self,
        topic: &str,
        partition: i32,
        queue: &mut PartitionQueue,
        now: Instant,
        flushing: bool,
        taken: &mut Taken,
    ) -> Option<OpenBatch> {
        if let Some(open) = queue.full.pop_front() {
            return Some(open);
        }
        // No open batch: nothing more to send.
        queue.open.as_ref()?;
        let deadline = queue
            .open_since
            .map_or(now, |since| since + self.config.linger);
        if deadline > now && !flushing && !queue.urgent {
            taken.wake_at(deadline);
            return None;
        }
        queue.open_since = None;
        queue.urgent = false;
        let open = queue.open.take()?;
        // A batch sent before it filled (linger, flush) ends the
        // partition's turn too, as one closed by size does: keyless
        // messages move on (KIP-480), or a producer slower than its
        // batches would keep one partition forever.
        self.config
            .partitioner
            .on_new_batch(topic, partition, queue.partition_count);
        Some(open)
    }
}

/// A closed batch built for sending; the error when it cannot be built
/// (the batch then carries no bytes and fails at once).
fn build(
    open: OpenBatch,
    producer: Option<(i64, i16)>,
    base_sequence: i32,
    order: u64,
    now: Instant,
) -> (Batch, Option<Error>) {
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
    (batch, failure)
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
