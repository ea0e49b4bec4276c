//! Records inside a v2 batch: their encoding, and the decoding of a whole
//! batch into records with absolute offsets and timestamps.
//!
//! After the 61-byte batch header comes the records section, compressed as
//! one stream when the batch's codec is not `none`. Each record is:
//!
//! ```text
//! length          varint   bytes of the rest of the record
//! attributes      int8     unused, written as 0
//! timestampDelta  varlong  from the batch's baseTimestamp
//! offsetDelta     varint   from the batch's baseOffset
//! keyLength       varint   negative means a null key
//! key             bytes
//! valueLength     varint   negative means a null value
//! value           bytes
//! headerCount     varint
//! headers         headerKeyLength varint, headerKey bytes,
//!                 headerValueLength varint (negative: null), headerValue bytes
//! ```
//!
//! Decoding follows the Java client where it is lenient (any negative key or
//! value length is null) and where it is strict (a record's fields must fill
//! exactly its declared length; no bytes may follow the last record). Every
//! count and length is checked against the bytes that remain before anything
//! is allocated for it, so a batch claiming 2^31 records fails at once.

use bytes::Bytes;
use thiserror::Error;

use crate::batch::{
    BATCH_HEADER_LEN, BatchError, BatchView, Compression, RECORD_LEN_MIN, TimestampType,
};
use crate::compression::{self, CompressionError};
use crate::varint::{self, VarintError};

/// The smallest encoded header: a key length and a value length varint.
const HEADER_LEN_MIN: usize = 2;

/// One record header. Kafka clients read header keys as UTF-8 text, but the
/// wire does not enforce it, so the key is kept as the bytes that were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// One record as a batch stores it, relative to the batch's base offset and
/// base timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Why bytes are not a valid records section, or a record cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    #[error("cannot read the records section: {0}")]
    Compression(#[from] CompressionError),
    #[error("the buffer holds {buffer_len} bytes but the record batch in it has {batch_len}")]
    NotOneBatch { batch_len: usize, buffer_len: usize },
    #[error(
        "record batch claims {record_count} records but its {available} record bytes hold at most {possible}"
    )]
    RecordCountExceedsBytes {
        record_count: i32,
        available: usize,
        possible: usize,
    },
    #[error("record {index}: {field} is not a valid varint: {error}")]
    Varint {
        index: usize,
        field: &'static str,
        error: VarintError,
    },
    #[error("record {index}: {field} needs {needed} bytes but only {available} remain")]
    Truncated {
        index: usize,
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("record {index}: {field} {value} is negative")]
    NegativeLength {
        index: usize,
        field: &'static str,
        value: i32,
    },
    #[error("record {index} claims {header_count} headers but only {available} bytes remain")]
    HeaderCountExceedsBytes {
        index: usize,
        header_count: i32,
        available: usize,
    },
    #[error("record {index} declares {declared} bytes but its fields end after {consumed}")]
    RecordSizeMismatch {
        index: usize,
        declared: usize,
        consumed: usize,
    },
    #[error("{extra} bytes follow the last of the batch's {record_count} records")]
    TrailingBytes { record_count: i32, extra: usize },
    #[error(
        "record {index} has offset delta {offset_delta}, outside the batch's 0..={last_offset_delta}"
    )]
    OffsetDeltaOutOfRange {
        index: usize,
        offset_delta: i32,
        last_offset_delta: i32,
    },
    #[error(
        "record {index}: base timestamp {base_timestamp} plus delta {timestamp_delta} overflows"
    )]
    TimestampOverflow {
        index: usize,
        base_timestamp: i64,
        timestamp_delta: i64,
    },
    #[error("record field {field} of {len} bytes is longer than a Kafka length can say")]
    FieldTooLong { field: &'static str, len: usize },
}

impl Record {
    /// Bytes [`Record::encode`] appends: the length prefix and the body.
    pub fn encoded_len(&self) -> Result<usize, RecordError> {
        let body = self.body_len()?;
        Ok(varint::varint_len(body) + body as usize)
    }

    /// Appends the record, length prefix first.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let body = self.body_len()?;
        out.reserve(varint::varint_len(body) + body as usize);
        varint::put_varint(out, body);
        out.push(0); // attributes: unused by every Kafka version so far
        varint::put_varlong(out, self.timestamp_delta);
        varint::put_varint(out, self.offset_delta);
        put_nullable_bytes(out, self.key.as_deref());
        put_nullable_bytes(out, self.value.as_deref());
        // `body_len` checked that every count and length fits an i32.
        varint::put_varint(out, self.headers.len() as i32);
        for header in &self.headers {
            varint::put_varint(out, header.key.len() as i32);
            out.extend_from_slice(&header.key);
            put_nullable_bytes(out, header.value.as_deref());
        }
        Ok(())
    }

    /// The length of everything after the length prefix, checked to fit the
    /// i32 the prefix holds, as must every length and count inside.
    fn body_len(&self) -> Result<i32, RecordError> {
        let mut len = 1 // attributes
            + varint::varlong_len(self.timestamp_delta)
            + varint::varint_len(self.offset_delta);
        len = add_len(len, nullable_bytes_len("key", self.key.as_deref())?)?;
        len = add_len(len, nullable_bytes_len("value", self.value.as_deref())?)?;
        len = add_len(
            len,
            varint::varint_len(kafka_len("header count", self.headers.len())?),
        )?;
        for header in &self.headers {
            let key_len = kafka_len("header key", header.key.len())?;
            len = add_len(len, varint::varint_len(key_len) + header.key.len())?;
            len = add_len(
                len,
                nullable_bytes_len("header value", header.value.as_deref())?,
            )?;
        }
        kafka_len("record", len)
    }
}

fn kafka_len(field: &'static str, len: usize) -> Result<i32, RecordError> {
    i32::try_from(len).map_err(|_| RecordError::FieldTooLong { field, len })
}

fn add_len(len: usize, more: usize) -> Result<usize, RecordError> {
    // Each part is below 2^31 + 5, so only a 32-bit usize could overflow.
    len.checked_add(more).ok_or(RecordError::FieldTooLong {
        field: "record",
        len: usize::MAX,
    })
}

fn nullable_bytes_len(field: &'static str, bytes: Option<&[u8]>) -> Result<usize, RecordError> {
    match bytes {
        None => Ok(varint::varint_len(-1)),
        Some(bytes) => Ok(varint::varint_len(kafka_len(field, bytes.len())?) + bytes.len()),
    }
}

fn put_nullable_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => varint::put_varint(out, -1),
        Some(bytes) => {
            varint::put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}

/// Decodes exactly `record_count` records filling all of `section`, an
/// uncompressed records section. Keys, values and headers are slices of
/// `section`, not copies.
pub fn decode_records(section: &Bytes, record_count: i32) -> Result<Vec<Record>, RecordError> {
    let possible = section.len() / RECORD_LEN_MIN;
    let count = usize::try_from(record_count).unwrap_or(usize::MAX);
    if record_count < 0 || count > possible {
        return Err(RecordError::RecordCountExceedsBytes {
            record_count,
            available: section.len(),
            possible,
        });
    }
    // Room is made from the bytes present, never from the count the batch
    // claims: a record takes `size_of::<Record>()` bytes here but can take as
    // few as RECORD_LEN_MIN (7) on the wire, so reserving `count` would let a
    // section claim 15 times its size. Records beyond the reservation
    // (really tiny ones) grow the vector as they are decoded.
    let backed = section.len() / std::mem::size_of::<Record>();
    let mut records = Vec::with_capacity(count.min(backed));
    let mut position = 0;
    for index in 0..count {
        let (record, next) = decode_record(section, position, index)?;
        records.push(record);
        position = next;
    }
    if position != section.len() {
        return Err(RecordError::TrailingBytes {
            record_count,
            extra: section.len() - position,
        });
    }
    Ok(records)
}

/// Reads fields of record `index` from `bytes[position..end]`.
struct Cursor<'a> {
    bytes: &'a Bytes,
    position: usize,
    end: usize,
    index: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.end - self.position
    }

    #[inline]
    fn varint(&mut self, field: &'static str) -> Result<i32, RecordError> {
        let (value, len) = varint::read_varint(&self.bytes[self.position..self.end])
            .map_err(|error| self.varint_error(field, error))?;
        self.position += len;
        Ok(value)
    }

    #[inline]
    fn varlong(&mut self, field: &'static str) -> Result<i64, RecordError> {
        let (value, len) = varint::read_varlong(&self.bytes[self.position..self.end])
            .map_err(|error| self.varint_error(field, error))?;
        self.position += len;
        Ok(value)
    }

    fn varint_error(&self, field: &'static str, error: VarintError) -> RecordError {
        RecordError::Varint {
            index: self.index,
            field,
            error,
        }
    }

    fn skip_byte(&mut self, field: &'static str) -> Result<(), RecordError> {
        self.take(1, field).map(drop)
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<Bytes, RecordError> {
        if len > self.remaining() {
            return Err(RecordError::Truncated {
                index: self.index,
                field,
                needed: len,
                available: self.remaining(),
            });
        }
        let bytes = self.bytes.slice(self.position..self.position + len);
        self.position += len;
        Ok(bytes)
    }

    /// A length-prefixed byte string where a negative length means null.
    fn nullable_bytes(&mut self, field: &'static str) -> Result<Option<Bytes>, RecordError> {
        let len = self.varint(field)?;
        match usize::try_from(len) {
            Ok(len) => self.take(len, field).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// A count or length that must not be negative.
    fn non_negative(&mut self, field: &'static str) -> Result<usize, RecordError> {
        let value = self.varint(field)?;
        usize::try_from(value).map_err(|_| RecordError::NegativeLength {
            index: self.index,
            field,
            value,
        })
    }
}

/// Decodes the record starting at `position`; returns it and the position
/// after it.
fn decode_record(
    section: &Bytes,
    position: usize,
    index: usize,
) -> Result<(Record, usize), RecordError> {
    let mut cursor = Cursor {
        bytes: section,
        position,
        end: section.len(),
        index,
    };
    let declared = cursor.non_negative("record length")?;
    if declared > cursor.remaining() {
        return Err(RecordError::Truncated {
            index,
            field: "record",
            needed: declared,
            available: cursor.remaining(),
        });
    }
    let body_start = cursor.position;
    cursor.end = body_start + declared;
    cursor.skip_byte("attributes")?;
    let timestamp_delta = cursor.varlong("timestamp delta")?;
    let offset_delta = cursor.varint("offset delta")?;
    let key = cursor.nullable_bytes("key")?;
    let value = cursor.nullable_bytes("value")?;
    let header_count = cursor.varint("header count")?;
    let headers_possible = cursor.remaining() / HEADER_LEN_MIN;
    let headers_len = match usize::try_from(header_count) {
        Ok(count) if count <= headers_possible => count,
        Ok(_) => {
            return Err(RecordError::HeaderCountExceedsBytes {
                index,
                header_count,
                available: cursor.remaining(),
            });
        }
        Err(_) => {
            return Err(RecordError::NegativeLength {
                index,
                field: "header count",
                value: header_count,
            });
        }
    };
    let mut headers = Vec::with_capacity(headers_len);
    for _ in 0..headers_len {
        let key_len = cursor.non_negative("header key length")?;
        let key = cursor.take(key_len, "header key")?;
        let value = cursor.nullable_bytes("header value")?;
        headers.push(Header { key, value });
    }
    if cursor.position != cursor.end {
        return Err(RecordError::RecordSizeMismatch {
            index,
            declared,
            consumed: cursor.position - body_start,
        });
    }
    let record = Record {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
    };
    Ok((record, cursor.end))
}

/// One record of an uncompressed records section, read in place: its
/// encoded bytes (length prefix included) and the fields log compaction
/// needs. Headers are not parsed (only skipped over by the length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// The whole encoded record, ready to be copied into another batch with
    /// the same base offset and base timestamp.
    pub bytes: &'a [u8],
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: the record is a tombstone.
    pub value_is_null: bool,
}

/// Reads `record_count` records from an uncompressed records section
/// without copying or allocating. Fails on a record that crosses its own
/// length or the section, and on bytes left after the last record.
pub fn raw_records(
    section: &[u8],
    record_count: i32,
) -> impl Iterator<Item = Result<RawRecord<'_>, RecordError>> {
    let count = usize::try_from(record_count).unwrap_or(0);
    let mut position = 0usize;
    let mut index = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        if index == count {
            failed = true;
            if position != section.len() {
                return Some(Err(RecordError::TrailingBytes {
                    record_count,
                    extra: section.len() - position,
                }));
            }
            return None;
        }
        let result = raw_record(section, position, index);
        index += 1;
        match result {
            Ok((record, next)) => {
                position = next;
                Some(Ok(record))
            }
            Err(error) => {
                failed = true;
                Some(Err(error))
            }
        }
    })
}

fn raw_record(
    section: &[u8],
    start: usize,
    index: usize,
) -> Result<(RawRecord<'_>, usize), RecordError> {
    let varint_error = |field: &'static str| {
        move |error: VarintError| RecordError::Varint {
            index,
            field,
            error,
        }
    };
    let truncated = |field: &'static str, needed: usize, available: usize| RecordError::Truncated {
        index,
        field,
        needed,
        available,
    };
    let (declared, len) =
        varint::read_varint(&section[start..]).map_err(varint_error("record length"))?;
    let declared = usize::try_from(declared).map_err(|_| RecordError::NegativeLength {
        index,
        field: "record length",
        value: declared,
    })?;
    let body = start + len;
    let available = section.len() - body;
    if declared > available {
        return Err(truncated("record", declared, available));
    }
    let end = body + declared;
    let record = &section[body..end];
    // attributes (1 byte), then the deltas, key and value.
    let mut at = 1usize;
    if record.is_empty() {
        return Err(truncated("attributes", 1, 0));
    }
    let (timestamp_delta, len) =
        varint::read_varlong(&record[at..]).map_err(varint_error("timestamp delta"))?;
    at += len;
    let (offset_delta, len) =
        varint::read_varint(&record[at..]).map_err(varint_error("offset delta"))?;
    at += len;
    let mut nullable = |field: &'static str| -> Result<Option<&[u8]>, RecordError> {
        let (field_len, len) = varint::read_varint(&record[at..]).map_err(varint_error(field))?;
        at += len;
        let Ok(field_len) = usize::try_from(field_len) else {
            return Ok(None);
        };
        if field_len > record.len() - at {
            return Err(truncated(field, field_len, record.len() - at));
        }
        let bytes = &record[at..at + field_len];
        at += field_len;
        Ok(Some(bytes))
    };
    let key = nullable("key")?;
    let value_is_null = nullable("value")?.is_none();
    Ok((
        RawRecord {
            bytes: &section[start..end],
            offset_delta,
            timestamp_delta,
            key,
            value_is_null,
        },
        end,
    ))
}

/// A batch taken apart: its header fields and its records.
///
/// [`decode_batch`] guarantees that every record's offset delta lies in
/// `0..=last_offset_delta`, that the last offset does not overflow, and that
/// every record's absolute timestamp fits an i64; the accessors below
/// saturate rather than panic should a caller break that by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub compression: Compression,
    pub timestamp_type: TimestampType,
    pub is_transactional: bool,
    pub is_control: bool,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<Record>,
}

/// A record of a [`DecodedBatch`] with its absolute offset and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub record: &'a Record,
}

impl DecodedBatch {
    /// The offset of the batch's last offset slot (records may have been
    /// compacted away below it).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The records with absolute offsets and timestamps. With LogAppendTime
    /// every record carries the batch's `max_timestamp`, as in Kafka.
    pub fn iter(&self) -> impl Iterator<Item = BatchRecord<'_>> {
        let place = self.placement();
        self.records.iter().map(move |record| {
            let (offset, timestamp) = place.of(record);
            BatchRecord {
                offset,
                timestamp,
                record,
            }
        })
    }

    /// As [`DecodedBatch::iter`], handing each record over as
    /// `(offset, timestamp, record)`: a consumer moves keys and values out
    /// instead of cloning them (a clone and a drop of a shared buffer's
    /// count per record).
    pub fn into_records(self) -> impl Iterator<Item = (i64, i64, Record)> {
        let place = self.placement();
        self.records.into_iter().map(move |record| {
            let (offset, timestamp) = place.of(&record);
            (offset, timestamp, record)
        })
    }

    fn placement(&self) -> Placement {
        Placement {
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            log_append_time: match self.timestamp_type {
                TimestampType::CreateTime => None,
                TimestampType::LogAppendTime => Some(self.max_timestamp),
            },
        }
    }
}

/// What turns a record's deltas into its absolute offset and timestamp.
#[derive(Clone, Copy)]
struct Placement {
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
}

impl Placement {
    fn of(&self, record: &Record) -> (i64, i64) {
        let offset = self
            .base_offset
            .saturating_add(i64::from(record.offset_delta));
        let timestamp = self
            .log_append_time
            .unwrap_or_else(|| self.base_timestamp.saturating_add(record.timestamp_delta));
        (offset, timestamp)
    }
}

/// Validates the single batch that fills `batch` (header, CRC32C), inflates
/// its records section into at most `limit` bytes, and decodes its records.
///
/// As in the Java client, a batch whose record count is 0 has no records,
/// whatever its records section holds: compaction leaves such batches
/// behind with the codec bit still set and nothing after the header.
pub fn decode_batch(batch: &[u8], limit: usize) -> Result<DecodedBatch, RecordError> {
    decode(batch, None, limit)
}

/// [`decode_batch`] for a batch already held in [`Bytes`] (a fetch answer):
/// the keys and values of an uncompressed batch are slices of `batch`
/// instead of copies. A consumer then copies no record bytes at all; the
/// price is that any one record kept alive keeps the whole buffer alive.
pub fn decode_shared_batch(batch: &Bytes, limit: usize) -> Result<DecodedBatch, RecordError> {
    decode(batch, Some(batch), limit)
}

/// `shared`, when given, holds the same bytes as `batch`.
fn decode(batch: &[u8], shared: Option<&Bytes>, limit: usize) -> Result<DecodedBatch, RecordError> {
    let (view, batch_len) = BatchView::parse(batch)?;
    if batch_len != batch.len() {
        return Err(RecordError::NotOneBatch {
            batch_len,
            buffer_len: batch.len(),
        });
    }
    view.validate()?;
    let compression = view.compression()?;
    let record_count = view.record_count();
    let records = if record_count == 0 {
        Vec::new()
    } else if let (Compression::None, Some(shared)) = (compression, shared) {
        let section = shared.slice(BATCH_HEADER_LEN..);
        compression::check_uncompressed_len(section.len(), limit)?;
        decode_records(&section, record_count)?
    } else {
        let mut section = Vec::new();
        compression::decompress(compression, view.records_bytes(), limit, &mut section)?;
        decode_records(&Bytes::from(section), record_count)?
    };
    let decoded = DecodedBatch {
        base_offset: view.base_offset(),
        partition_leader_epoch: view.partition_leader_epoch(),
        compression,
        timestamp_type: view.timestamp_type(),
        is_transactional: view.is_transactional(),
        is_control: view.is_control(),
        last_offset_delta: view.last_offset_delta(),
        base_timestamp: view.base_timestamp(),
        max_timestamp: view.max_timestamp(),
        producer_id: view.producer_id(),
        producer_epoch: view.producer_epoch(),
        base_sequence: view.base_sequence(),
        records,
    };
    check_deltas(&decoded)?;
    Ok(decoded)
}

/// Establishes the invariants [`DecodedBatch`] documents.
fn check_deltas(batch: &DecodedBatch) -> Result<(), RecordError> {
    for (index, record) in batch.records.iter().enumerate() {
        if !(0..=batch.last_offset_delta).contains(&record.offset_delta) {
            return Err(RecordError::OffsetDeltaOutOfRange {
                index,
                offset_delta: record.offset_delta,
                last_offset_delta: batch.last_offset_delta,
            });
        }
        if batch
            .base_timestamp
            .checked_add(record.timestamp_delta)
            .is_none()
        {
            return Err(RecordError::TimestampOverflow {
                index,
                base_timestamp: batch.base_timestamp,
                timestamp_delta: record.timestamp_delta,
            });
        }
    }
    Ok(())
}
