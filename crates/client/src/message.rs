//! `Message` and `MessageSet`, the paper's units of publishing and consuming.

use std::sync::Arc;

use bytes::Bytes;

/// A record header: a text key and a value that may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One message. Built by the application to publish (topic, partition and
/// offset are then unset), or handed to it by a consumer with all fields set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
    /// Set on consumed messages only. Not an empty `Arc<str>` by default:
    /// making one costs an allocation or an atomic add on a shared static
    /// (by Rust version), and every `Message::new` paid it (measured: the
    /// batch-50 producer 6-19 % slower).
    pub(crate) topic: Option<Arc<str>>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
}

impl Message {
    /// A message with this payload and no key.
    pub fn new(payload: impl Into<Bytes>) -> Message {
        Message {
            value: Some(payload.into()),
            partition: -1,
            offset: -1,
            ..Message::default()
        }
    }

    /// A message with a key, which picks its partition (murmur2, as the Java
    /// client does).
    pub fn with_key(key: impl Into<Bytes>, payload: impl Into<Bytes>) -> Message {
        Message {
            key: Some(key.into()),
            ..Message::new(payload)
        }
    }

    /// A message with a key and a null value: a tombstone for compaction.
    pub fn tombstone(key: impl Into<Bytes>) -> Message {
        Message {
            key: Some(key.into()),
            value: None,
            partition: -1,
            offset: -1,
            ..Message::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Message {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sends the message to this partition instead of asking the partitioner.
    pub fn to_partition(mut self, partition: i32) -> Message {
        self.partition = partition;
        self
    }

    /// Sets the create time (milliseconds since the epoch); default: now.
    pub fn at(mut self, timestamp_ms: i64) -> Message {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// The payload's bytes; empty for a null value.
    pub fn payload(&self) -> &[u8] {
        self.value.as_deref().unwrap_or(&[])
    }

    /// The value, `None` for a tombstone.
    pub fn value(&self) -> Option<&Bytes> {
        self.value.as_ref()
    }

    pub fn key(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The topic it was consumed from (empty before it is published).
    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or("")
    }

    /// Its partition (-1 until one is chosen).
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Its offset in the partition (-1 before it is published).
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Its timestamp in milliseconds since the epoch, when it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    pub(crate) fn encoded_len_estimate(&self) -> usize {
        // The record framing is a few varints; 21 bytes bounds them for the
        // sizes a request allows.
        21 + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

/// Messages published together: one request carries the whole set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSet {
    messages: Vec<Message>,
}

impl MessageSet {
    /// A set of one message, as in the paper's sample code.
    pub fn new(message: Message) -> MessageSet {
        MessageSet {
            messages: vec![message],
        }
    }

    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn into_messages(self) -> Vec<Message> {
        self.messages
    }
}

impl From<Vec<Message>> for MessageSet {
    fn from(messages: Vec<Message>) -> MessageSet {
        MessageSet { messages }
    }
}

impl FromIterator<Message> for MessageSet {
    fn from_iter<I: IntoIterator<Item = Message>>(iter: I) -> MessageSet {
        MessageSet {
            messages: iter.into_iter().collect(),
        }
    }
}
