//! What a send gives back: [`DeliveryFuture`], answered with the outcome of
//! the message's batch, which every message of the batch shares
//! ([`BatchSlot`], completed through [`Completion`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use super::lock;
use crate::error::{Error, Result, code};

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

/// The answer to one [`AsyncProducer::send`](super::AsyncProducer::send);
/// await it for the offset.
///
/// Every message of a batch shares one `BatchSlot`: the future holds the
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
    /// The future of the message at `index` in the batch `completion` will
    /// answer.
    pub(super) fn new(completion: &Completion, index: u32, timestamp: i64) -> DeliveryFuture {
        DeliveryFuture {
            slot: completion.0.clone(),
            index,
            timestamp,
            registered: None,
        }
    }

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
pub(super) type BatchOutcome = std::result::Result<i64, Error>;

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
pub(super) struct BatchSlot {
    topic: Arc<str>,
    partition: i32,
    outcome: OnceLock<BatchOutcome>,
    wakers: Mutex<Vec<Waker>>,
}

/// The producer's side of a [`BatchSlot`]: completing it wakes every
/// message's future; dropping it uncompleted (the producer went away)
/// answers them with [`Error::ProducerClosed`], as a dropped channel would.
pub(super) struct Completion(Arc<BatchSlot>);

impl Completion {
    pub(super) fn new(topic: Arc<str>, partition: i32) -> Completion {
        Completion(Arc::new(BatchSlot {
            topic,
            partition,
            outcome: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        }))
    }

    pub(super) fn complete(&self, outcome: BatchOutcome) {
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
