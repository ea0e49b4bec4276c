//! The paper's blocking producer, a facade over [`AsyncProducer`] on a
//! runtime of its own.

use super::{AsyncProducer, ProducerConfig, RecordMetadata};
use crate::error::{Error, Result};
use crate::message::MessageSet;

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
