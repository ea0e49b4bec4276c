//! Encodes records into a complete v2 record batch: header, CRC32C and the
//! (possibly compressed) records section. Used by the client to produce, by
//! compaction to rewrite what it keeps, and by tests.
//!
//! Records are encoded as they are added, so a producer can watch
//! [`BatchBuilder::uncompressed_len`] to cut batches at a size.

use bytes::Bytes;
use thiserror::Error;

use crate::batch::{
    BATCH_HEADER_LEN, BATCH_LENGTH_OFFSET, CRC_COVERAGE_START, CRC_OFFSET, Compression,
    LOG_OVERHEAD, MAGIC_V2, NO_TIMESTAMP, TimestampType,
};
use crate::compression::{self, CompressionError};
use crate::record::{Header, Record, RecordError};

/// `partitionLeaderEpoch` a producer sends; the leader stamps its own.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// `producerId` of a producer that is neither idempotent nor transactional.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producerEpoch` without a producer id.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `baseSequence` without a producer id.
pub const NO_SEQUENCE: i32 = -1;

// Attribute bits (docs/FORMAT.md, "Record batch"); the codec takes bits 0-2.
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why records cannot be made into a batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Compression(#[from] CompressionError),
    #[error("record offset delta {offset_delta} must be at least {expected_min}")]
    OffsetDeltaNotIncreasing {
        offset_delta: i32,
        expected_min: i32,
    },
    #[error("a record batch has room for at most 2^31 offsets")]
    TooManyRecords,
    #[error(
        "last offset delta {last_offset_delta} is below the last record's {record_offset_delta}"
    )]
    LastOffsetDeltaTooSmall {
        last_offset_delta: i32,
        record_offset_delta: i32,
    },
    #[error("base offset {base_offset} plus last offset delta {last_offset_delta} overflows")]
    OffsetOverflow {
        base_offset: i64,
        last_offset_delta: i32,
    },
    #[error("timestamp {timestamp} is too far from the batch's base timestamp {base_timestamp}")]
    TimestampOutOfRange { timestamp: i64, base_timestamp: i64 },
    #[error("the batch's {which} timestamp {timestamp} is negative (only -1, none, may be)")]
    NegativeTimestamp { which: &'static str, timestamp: i64 },
    #[error("base timestamp {base_timestamp} plus delta {timestamp_delta} overflows")]
    TimestampOverflow {
        base_timestamp: i64,
        timestamp_delta: i64,
    },
    #[error("a record batch of {len} bytes is longer than its length field can say")]
    BatchTooLarge { len: usize },
}

/// Accumulates records and writes them as one v2 batch.
///
/// Defaults are those of a plain producer: base offset 0 (the leader assigns
/// the real one), no leader epoch, no producer id, CreateTime.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    base_offset: i64,
    partition_leader_epoch: i32,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_timestamp: Option<i64>,
    last_offset_delta: Option<i32>,
    /// Room for the batch header (`BATCH_HEADER_LEN` bytes, written by
    /// `build`), then the records section so far, uncompressed: an
    /// uncompressed batch is built in place, without copying its records.
    records: Vec<u8>,
    record_count: i32,
    last_record_offset_delta: Option<i32>,
    /// Smallest and largest timestamp delta pushed, to check at `build`
    /// that every record's timestamp fits an i64.
    timestamp_delta_range: Option<(i64, i64)>,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> BatchBuilder {
        BatchBuilder {
            compression,
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            base_timestamp: None,
            last_offset_delta: None,
            records: vec![0; BATCH_HEADER_LEN],
            record_count: 0,
            last_record_offset_delta: None,
            timestamp_delta_range: None,
        }
    }

    pub fn base_offset(mut self, base_offset: i64) -> BatchBuilder {
        self.base_offset = base_offset;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> BatchBuilder {
        self.partition_leader_epoch = epoch;
        self
    }

    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> BatchBuilder {
        self.timestamp_type = timestamp_type;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> BatchBuilder {
        self.transactional = transactional;
        self
    }

    pub fn control(mut self, control: bool) -> BatchBuilder {
        self.control = control;
        self
    }

    /// Sets the idempotent/transactional producer fields.
    pub fn producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the base timestamp that [`BatchBuilder::push`]ed deltas are
    /// relative to. Without it, the first record sets it: to its own
    /// timestamp through [`BatchBuilder::append`], to 0 through `push`.
    pub fn base_timestamp(mut self, base_timestamp: i64) -> BatchBuilder {
        self.base_timestamp = Some(base_timestamp);
        self
    }

    /// Keeps offset slots after the last record, as compaction does when it
    /// drops a batch's last records; defaults to the last record's delta.
    pub fn last_offset_delta(mut self, last_offset_delta: i32) -> BatchBuilder {
        self.last_offset_delta = Some(last_offset_delta);
        self
    }

    /// Records added so far.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// The batch's size if it were not compressed.
    pub fn uncompressed_len(&self) -> usize {
        self.records.len()
    }

    /// Makes room for `additional` more bytes of records, so that adding
    /// records of about that size does not grow the buffer again.
    pub fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
    }

    /// Adds a record at the next offset with an absolute timestamp.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header>,
    ) -> Result<(), BuildError> {
        let offset_delta = match self.last_record_offset_delta {
            None => 0,
            Some(last) => last.checked_add(1).ok_or(BuildError::TooManyRecords)?,
        };
        let first = self.base_timestamp.is_none();
        let base_timestamp = *self.base_timestamp.get_or_insert(timestamp_ms);
        let pushed = timestamp_ms
            .checked_sub(base_timestamp)
            .ok_or(BuildError::TimestampOutOfRange {
                timestamp: timestamp_ms,
                base_timestamp,
            })
            .and_then(|timestamp_delta| {
                self.push(&Record {
                    offset_delta,
                    timestamp_delta,
                    key,
                    value,
                    headers,
                })
            });
        // A refused record leaves the builder as it was (a producer encodes
        // each message as it is sent, and refuses that one alone).
        if pushed.is_err() && first {
            self.base_timestamp = None;
        }
        pushed
    }

    /// Adds a record as given, relative to the base offset and timestamp.
    /// Offset deltas must increase from record to record.
    pub fn push(&mut self, record: &Record) -> Result<(), BuildError> {
        let expected_min = match self.last_record_offset_delta {
            None => 0,
            Some(last) => last.checked_add(1).ok_or(BuildError::TooManyRecords)?,
        };
        if record.offset_delta < expected_min {
            return Err(BuildError::OffsetDeltaNotIncreasing {
                offset_delta: record.offset_delta,
                expected_min,
            });
        }
        // Offset deltas start at 0 and increase, so the count stays below
        // i32::MAX as long as the deltas fit an i32.
        let record_count = self
            .record_count
            .checked_add(1)
            .ok_or(BuildError::TooManyRecords)?;
        record.encode(&mut self.records)?;
        self.base_timestamp.get_or_insert(0);
        self.record_count = record_count;
        self.last_record_offset_delta = Some(record.offset_delta);
        let delta = record.timestamp_delta;
        self.timestamp_delta_range = Some(
            self.timestamp_delta_range
                .map_or((delta, delta), |(min, max)| {
                    (min.min(delta), max.max(delta))
                }),
        );
        Ok(())
    }

    /// Writes the batch: header with CRC32C, then the records section
    /// compressed with the builder's codec.
    pub fn build(self) -> Result<Vec<u8>, BuildError> {
        let record_offset_delta = self.last_record_offset_delta.unwrap_or(0);
        let last_offset_delta = self.last_offset_delta.unwrap_or(record_offset_delta);
        if last_offset_delta < record_offset_delta {
            return Err(BuildError::LastOffsetDeltaTooSmall {
                last_offset_delta,
                record_offset_delta,
            });
        }
        if self
            .base_offset
            .checked_add(i64::from(last_offset_delta))
            .and_then(|last| last.checked_add(1))
            .is_none()
        {
            return Err(BuildError::OffsetOverflow {
                base_offset: self.base_offset,
                last_offset_delta,
            });
        }
        let base_timestamp = self.base_timestamp.unwrap_or(NO_TIMESTAMP);
        let max_timestamp = match self.timestamp_delta_range {
            None => base_timestamp,
            Some((min, max)) => {
                let absolute = |timestamp_delta: i64| {
                    base_timestamp.checked_add(timestamp_delta).ok_or(
                        BuildError::TimestampOverflow {
                            base_timestamp,
                            timestamp_delta,
                        },
                    )
                };
                absolute(min)?;
                absolute(max)?
            }
        };
        // A reader refuses these (`BatchView::validate`), so never write one.
        for (which, timestamp) in [("base", base_timestamp), ("max", max_timestamp)] {
            if timestamp < NO_TIMESTAMP {
                return Err(BuildError::NegativeTimestamp { which, timestamp });
            }
        }

        let mut header = Vec::with_capacity(BATCH_HEADER_LEN);
        header.extend_from_slice(&self.base_offset.to_be_bytes());
        header.extend_from_slice(&0i32.to_be_bytes()); // batch length, set below
        header.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        header.extend_from_slice(&MAGIC_V2.to_be_bytes());
        header.extend_from_slice(&0u32.to_be_bytes()); // CRC, set below
        header.extend_from_slice(&self.attributes().to_be_bytes());
        header.extend_from_slice(&last_offset_delta.to_be_bytes());
        header.extend_from_slice(&base_timestamp.to_be_bytes());
        header.extend_from_slice(&max_timestamp.to_be_bytes());
        header.extend_from_slice(&self.producer_id.to_be_bytes());
        header.extend_from_slice(&self.producer_epoch.to_be_bytes());
        header.extend_from_slice(&self.base_sequence.to_be_bytes());
        header.extend_from_slice(&self.record_count.to_be_bytes());
        debug_assert_eq!(header.len(), BATCH_HEADER_LEN);

        let mut batch = match self.compression {
            // In place: the header goes into the room left for it.
            Compression::None => {
                let mut batch = self.records;
                batch[..BATCH_HEADER_LEN].copy_from_slice(&header);
                batch
            }
            codec => {
                let mut batch = header;
                compression::compress(codec, &self.records[BATCH_HEADER_LEN..], &mut batch)?;
                batch
            }
        };

        let batch_length = i32::try_from(batch.len() - LOG_OVERHEAD)
            .map_err(|_| BuildError::BatchTooLarge { len: batch.len() })?;
        batch[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
            .copy_from_slice(&batch_length.to_be_bytes());
        let crc = crate::crc::crc32c(&batch[CRC_COVERAGE_START..]);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(batch)
    }

    fn attributes(&self) -> i16 {
        let mut attributes = i16::from(self.compression.code());
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attributes |= CONTROL_BIT;
        }
        attributes
    }
}
