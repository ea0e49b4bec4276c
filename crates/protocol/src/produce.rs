//! A Produce request read in place: the broker's produce path.
//!
//! The generated `ProduceRequest` owns its parts: a `Vec` per array, a
//! `String` per topic name and a `Bytes` (a reference count touched twice)
//! per partition's records. The broker only walks a request once, in order,
//! so `ProduceFrame::decode` checks the whole body (the same primitives and
//! rules as the generated decoder, so both accept exactly the same frames)
//! and keeps nothing but the frame and where its topics start; iterating
//! then hands out topic names as `&str` and record batches as `&[u8]`
//! slices of the received frame. Decoding a request allocates nothing,
//! whatever its number of topics and partitions.
//!
//! Unknown tagged fields are checked and skipped: the broker never encodes
//! a request again. `to_request` builds the generated struct for callers
//! that want one (and for the tests that hold both decoders to the same
//! answers).

use std::iter::FusedIterator;

use bytes::Bytes;

use crate::codec::{DecodeError, Decoder, Reader};
use crate::messages::ProduceRequest;
use crate::messages::produce_request::{PartitionProduceData, TopicProduceData};
use crate::records::Records;

/// The least bytes a topic and a partition entry take, as the generated
/// decoder counts them when it checks an array's claimed length.
const TOPIC_LEN_MIN: usize = 3;
const PARTITION_LEN_MIN: usize = 6;

/// A checked Produce request body and the frame it lies in.
#[derive(Debug, Clone)]
pub struct ProduceFrame {
    frame: Bytes,
    version: i16,
    /// Where the transactional id lies in `frame`, when there is one.
    transactional_id: Option<(usize, usize)>,
    acks: i16,
    timeout_ms: i32,
    /// The first byte after the topic count, and the count.
    topics_at: usize,
    topic_count: usize,
}

impl ProduceFrame {
    /// Checks a Produce request body of `version` at the decoder's
    /// position, and moves the decoder past it. It fails exactly where
    /// `ProduceRequest::decode` fails, with the same error (the decoder's
    /// nesting limit aside: a Produce request nests three structs, and the
    /// default limit is 32).
    pub fn decode(dec: &mut Decoder, version: i16) -> Result<ProduceFrame, DecodeError> {
        let frame = dec.frame().clone();
        let mut reader = Reader {
            buf: &frame,
            position: dec.position(),
        };
        let flexible = version >= 9;
        let transactional_id = if version >= 3 {
            let id = reader.opt_str(true, flexible, "TransactionalId")?;
            id.map(|id| (reader.position - id.len(), reader.position))
        } else {
            None
        };
        let acks = reader.i16()?;
        let timeout_ms = reader.i32()?;
        let topic_count = count(&mut reader, flexible, TOPIC_LEN_MIN, "TopicData")?;
        let topics_at = reader.position;
        // The same reads as `ProducePartitions::read_next`, in a loop of
        // their own: walking with the iterator (building each partition and
        // tracking the topic) made this decode 15 % slower (3.1x -> 2.6x).
        for _ in 0..topic_count {
            let partitions = topic_head(&mut reader, flexible)?.1;
            for _ in 0..partitions {
                partition(&mut reader, flexible)?;
            }
            if flexible {
                reader.skip_tagged_fields()?;
            }
        }
        if flexible {
            reader.skip_tagged_fields()?;
        }
        dec.set_position(reader.position);
        Ok(ProduceFrame {
            frame,
            version,
            transactional_id,
            acks,
            timeout_ms,
            topics_at,
            topic_count,
        })
    }

    pub fn version(&self) -> i16 {
        self.version
    }

    pub fn transactional_id(&self) -> Option<&str> {
        let (start, end) = self.transactional_id?;
        // Checked as UTF-8 by `decode`; the frame cannot change since.
        std::str::from_utf8(&self.frame[start..end]).ok()
    }

    pub fn acks(&self) -> i16 {
        self.acks
    }

    pub fn timeout_ms(&self) -> i32 {
        self.timeout_ms
    }

    /// The topics in the order the request names them.
    pub fn topics(&self) -> ProduceTopics<'_> {
        ProduceTopics {
            reader: self.reader(),
            left: self.topic_count,
            next_index: 0,
            flexible: self.version >= 9,
        }
    }

    /// Every partition of every topic, in request order, in one pass over
    /// the frame (the broker's path; `topics` steps over each topic's
    /// partitions once more to find the next topic). A topic that names no
    /// partition yields nothing here.
    pub fn partitions(&self) -> ProducePartitions<'_> {
        ProducePartitions::new(self.reader(), self.topic_count, self.version >= 9)
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            buf: &self.frame,
            position: self.topics_at,
        }
    }

    /// `records` (a slice this frame handed out) as `Bytes` sharing the
    /// frame, for work that must own it (an append on another thread).
    pub fn records_bytes(&self, records: &[u8]) -> Bytes {
        self.frame.slice_ref(records)
    }

    /// The generated struct with the same values; unknown tagged fields,
    /// which `decode` skips, are left out.
    pub fn to_request(&self) -> ProduceRequest {
        ProduceRequest {
            transactional_id: self.transactional_id().map(str::to_owned),
            acks: self.acks,
            timeout_ms: self.timeout_ms,
            topic_data: self
                .topics()
                .map(|topic| TopicProduceData {
                    name: topic.name.to_owned(),
                    partition_data: topic
                        .partitions()
                        .map(|partition| PartitionProduceData {
                            index: partition.index,
                            records: partition
                                .records
                                .map(|records| Records::Bytes(self.records_bytes(records))),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// One topic of a request: its name and its partitions' data.
#[derive(Debug, Clone)]
pub struct ProduceTopic<'a> {
    pub name: &'a str,
    partitions: ProducePartitions<'a>,
}

impl<'a> ProduceTopic<'a> {
    pub fn partitions(&self) -> ProducePartitions<'a> {
        self.partitions.clone()
    }
}

/// One partition's data: its topic, its index and its record batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducePartition<'a> {
    /// The topic's place in the request, counting from 0, and its name.
    pub topic_index: usize,
    pub topic: &'a str,
    pub index: i32,
    /// Null in the request is `None`; the bytes are not checked here (the
    /// log checks each batch as it appends).
    pub records: Option<&'a [u8]>,
}

/// The topics of a checked request ([`ProduceFrame::topics`]).
#[derive(Debug, Clone)]
pub struct ProduceTopics<'a> {
    reader: Reader<'a>,
    left: usize,
    next_index: usize,
    flexible: bool,
}

impl<'a> ProduceTopics<'a> {
    fn read_next(&mut self) -> Result<Option<ProduceTopic<'a>>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let (name, count) = topic_head(&mut self.reader, self.flexible)?;
        let mut partitions = ProducePartitions {
            reader: self.reader,
            topics_left: 0,
            topic_index: self.next_index,
            topic: name,
            left: count,
            flexible: self.flexible,
        };
        self.next_index += 1;
        let topic = ProduceTopic {
            name,
            partitions: partitions.clone(),
        };
        // Step over the partitions to the next topic.
        while partitions.read_next()?.is_some() {}
        self.reader = partitions.reader;
        if self.flexible {
            self.reader.skip_tagged_fields()?;
        }
        Ok(Some(topic))
    }
}

impl<'a> Iterator for ProduceTopics<'a> {
    type Item = ProduceTopic<'a>;

    fn next(&mut self) -> Option<ProduceTopic<'a>> {
        self.read_next().unwrap_or_else(|error| {
            unreachable_error(error);
            self.left = 0;
            None
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ProduceTopics<'_> {}
impl FusedIterator for ProduceTopics<'_> {}

/// Partitions of a checked request: of all its topics
/// ([`ProduceFrame::partitions`]) or of one ([`ProduceTopic::partitions`]).
#[derive(Debug, Clone)]
pub struct ProducePartitions<'a> {
    reader: Reader<'a>,
    /// Topics not started yet, and the one being read (`usize::MAX`
    /// before the first).
    topics_left: usize,
    topic_index: usize,
    topic: &'a str,
    /// Partitions of the current topic not read yet.
    left: usize,
    flexible: bool,
}

impl<'a> ProducePartitions<'a> {
    /// The partitions of `topics` topics starting at `reader`.
    fn new(reader: Reader<'a>, topics: usize, flexible: bool) -> ProducePartitions<'a> {
        ProducePartitions {
            reader,
            topics_left: topics,
            topic_index: usize::MAX,
            topic: "",
            left: 0,
            flexible,
        }
    }

    #[inline]
    fn read_next(&mut self) -> Result<Option<ProducePartition<'a>>, DecodeError> {
        while self.left == 0 {
            if self.topics_left == 0 {
                return Ok(None);
            }
            // The end of the topic just read (if any), then the next one.
            if self.topic_index != usize::MAX && self.flexible {
                self.reader.skip_tagged_fields()?;
            }
            self.topics_left -= 1;
            self.topic_index = self.topic_index.wrapping_add(1);
            (self.topic, self.left) = topic_head(&mut self.reader, self.flexible)?;
        }
        self.left -= 1;
        let (index, records) = partition(&mut self.reader, self.flexible)?;
        Ok(Some(ProducePartition {
            topic_index: self.topic_index,
            topic: self.topic,
            index,
            records,
        }))
    }
}

impl<'a> Iterator for ProducePartitions<'a> {
    type Item = ProducePartition<'a>;

    #[inline]
    fn next(&mut self) -> Option<ProducePartition<'a>> {
        self.read_next().unwrap_or_else(|error| {
            unreachable_error(error);
            self.left = 0;
            self.topics_left = 0;
            None
        })
    }
}

impl FusedIterator for ProducePartitions<'_> {}

/// A non-null array's element count, checked against the bytes left.
fn count(
    reader: &mut Reader<'_>,
    flexible: bool,
    element_len_min: usize,
    what: &'static str,
) -> Result<usize, DecodeError> {
    reader
        .array_count(false, flexible, element_len_min, what)?
        .ok_or(DecodeError::NullNotAllowed(what))
}

/// A topic's name and partition count.
fn topic_head<'a>(
    reader: &mut Reader<'a>,
    flexible: bool,
) -> Result<(&'a str, usize), DecodeError> {
    let name = reader
        .opt_str(false, flexible, "Name")?
        .ok_or(DecodeError::NullNotAllowed("Name"))?;
    let partitions = count(reader, flexible, PARTITION_LEN_MIN, "PartitionData")?;
    Ok((name, partitions))
}

/// A partition's index and records.
#[inline(always)]
fn partition<'a>(
    reader: &mut Reader<'a>,
    flexible: bool,
) -> Result<(i32, Option<&'a [u8]>), DecodeError> {
    let index = reader.i32()?;
    let records = reader.opt_bytes(true, flexible, "Records")?;
    if flexible {
        reader.skip_tagged_fields()?;
    }
    Ok((index, records))
}

/// Iteration reads bytes `ProduceFrame::decode` has already checked with
/// the same functions, so it cannot fail; were it ever to, the iterator
/// ends rather than panic, and debug builds stop at once.
#[cold]
fn unreachable_error(error: DecodeError) {
    debug_assert!(false, "a checked produce request failed: {error}");
}
