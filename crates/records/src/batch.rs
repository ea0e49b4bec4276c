//! A read-only view of a Kafka record batch v2 (magic 2) header, and the few
//! in-place rewrites the log performs on append.
//!
//! The byte layout is specified in docs/FORMAT.md ("Record batch"); the
//! offset constants below are chained from it so that each one is the previous
//! field's offset plus that field's width. All integers are big-endian.
//!
//! The view never copies and never decodes the records themselves: the log
//! stores batches verbatim and only needs the header.

use thiserror::Error;

use crate::crc;

/// `baseOffset: int64` — the offset of the first record; rewritten by the log.
pub const BASE_OFFSET_OFFSET: usize = 0;
/// `batchLength: int32` — number of bytes that follow this field.
pub const BATCH_LENGTH_OFFSET: usize = BASE_OFFSET_OFFSET + 8;
/// `partitionLeaderEpoch: int32` — stamped by the log; not covered by the CRC.
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = BATCH_LENGTH_OFFSET + 4;
/// `magic: int8` — always 2 for this format.
pub const MAGIC_OFFSET: usize = PARTITION_LEADER_EPOCH_OFFSET + 4;
/// `crc: uint32` — CRC32C of every byte from `attributes` to the end.
pub const CRC_OFFSET: usize = MAGIC_OFFSET + 1;
/// `attributes: int16` — compression, timestamp type, transactional, control.
pub const ATTRIBUTES_OFFSET: usize = CRC_OFFSET + 4;
/// `lastOffsetDelta: int32` — last offset minus base offset.
pub const LAST_OFFSET_DELTA_OFFSET: usize = ATTRIBUTES_OFFSET + 2;
/// `baseTimestamp: int64` — timestamp of the first record.
pub const BASE_TIMESTAMP_OFFSET: usize = LAST_OFFSET_DELTA_OFFSET + 4;
/// `maxTimestamp: int64` — largest record timestamp, or the log append time.
pub const MAX_TIMESTAMP_OFFSET: usize = BASE_TIMESTAMP_OFFSET + 8;
/// `producerId: int64` — idempotent/transactional producer id, or -1.
pub const PRODUCER_ID_OFFSET: usize = MAX_TIMESTAMP_OFFSET + 8;
/// `producerEpoch: int16`.
pub const PRODUCER_EPOCH_OFFSET: usize = PRODUCER_ID_OFFSET + 8;
/// `baseSequence: int32` — sequence number of the first record, or -1.
pub const BASE_SEQUENCE_OFFSET: usize = PRODUCER_EPOCH_OFFSET + 2;
/// `recordCount: int32` — number of records in the batch.
pub const RECORD_COUNT_OFFSET: usize = BASE_SEQUENCE_OFFSET + 4;
/// Length of the fixed header; the records start here.
pub const BATCH_HEADER_LEN: usize = RECORD_COUNT_OFFSET + 4;

/// Bytes before `batchLength`'s count starts: base offset and the length field
/// itself (Kafka's `LOG_OVERHEAD`). A batch occupies `batch_length + 12` bytes.
pub const LOG_OVERHEAD: usize = BATCH_LENGTH_OFFSET + 4;
/// The smallest legal `batchLength`: a header with no records.
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only magic value this format accepts.
pub const MAGIC_V2: i8 = 2;
/// The CRC covers bytes `[CRC_COVERAGE_START..]` of the batch.
pub const CRC_COVERAGE_START: usize = ATTRIBUTES_OFFSET;
/// The prefix the log rewrites on every append (base offset, length, leader
/// epoch); it lies wholly before the CRC coverage, so rewriting it keeps the
/// CRC valid.
pub const REWRITTEN_PREFIX_LEN: usize = MAGIC_OFFSET;
/// A timestamp field holding "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;
/// The smallest encoded record: a 1-byte length varint plus attributes,
/// timestamp delta, offset delta, key length, value length and header count,
/// each at least one byte. Used to reject record counts a batch cannot hold.
pub const RECORD_LEN_MIN: usize = 7;

/// Attribute bits 0..=2: the compression codec.
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: set when `maxTimestamp` is the log append time.
pub const TIMESTAMP_TYPE_BIT: i16 = 0x08;
/// Attribute bit 4: the batch belongs to a transaction.
pub const TRANSACTIONAL_BIT: i16 = 0x10;
/// Attribute bit 5: the batch is a control batch (transaction marker).
pub const CONTROL_BIT: i16 = 0x20;

const _: () = assert!(BATCH_HEADER_LEN == 61);
const _: () = assert!(LOG_OVERHEAD == 12);
const _: () = assert!(BATCH_LENGTH_MIN == 49);
const _: () = assert!(MAGIC_OFFSET == 16);
const _: () = assert!(CRC_OFFSET == 17);
const _: () = assert!(CRC_COVERAGE_START == 21);
const _: () = assert!(REWRITTEN_PREFIX_LEN == 16);
const _: () = assert!(REWRITTEN_PREFIX_LEN <= CRC_OFFSET);
const _: () = assert!(MAX_TIMESTAMP_OFFSET == 35);
const _: () = assert!(RECORD_COUNT_OFFSET == 57);

/// Why a byte range is not an acceptable record batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error(
        "record batch header needs {header_len} bytes but only {available} are present",
        header_len = BATCH_HEADER_LEN
    )]
    HeaderTooShort { available: usize },
    #[error(
        "record batch length {batch_length} is out of range (minimum {min})",
        min = BATCH_LENGTH_MIN
    )]
    InvalidBatchLength { batch_length: i32 },
    #[error("record batch needs {needed} bytes but only {available} are present")]
    Truncated { needed: usize, available: usize },
    #[error("record batch magic {magic} is not supported (only magic 2)")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch compression code {code} is not one of none, gzip, snappy, lz4, zstd")]
    InvalidCompression { code: u8 },
    #[error(
        "record batch CRC32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}"
    )]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch record count {record_count} is negative")]
    NegativeRecordCount { record_count: i32 },
    #[error(
        "record batch holds {record_count} records but its last offset delta is {last_offset_delta}"
    )]
    InconsistentOffsetDelta {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("uncompressed record batch claims {record_count} records in only {records_len} bytes")]
    RecordCountExceedsBytes {
        record_count: i32,
        records_len: usize,
    },
    #[error("record batch timestamp {timestamp} is invalid (must be -1 or non-negative)")]
    InvalidTimestamp { timestamp: i64 },
    #[error("record batch base offset {base_offset} plus delta {last_offset_delta} overflows")]
    OffsetOverflow {
        base_offset: i64,
        last_offset_delta: i32,
    },
}

/// Compression codec from attribute bits 0..=2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The attribute code of this codec.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an attribute code; 5..=7 are not assigned.
    pub fn from_code(code: u8) -> Result<Compression, BatchError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(BatchError::InvalidCompression { code }),
        }
    }
}

/// Meaning of the batch's timestamps (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Timestamps were chosen by the producer.
    #[default]
    CreateTime,
    /// `maxTimestamp` is the time the broker appended the batch.
    LogAppendTime,
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

/// A borrowed view of exactly one record batch (header and records).
///
/// Construction through [`BatchView::parse`] guarantees the slice holds the
/// whole header and exactly `batch_length + 12` bytes with magic 2, so every
/// accessor is an in-bounds read. [`BatchView::validate`] checks the rest.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Views the batch at the start of `buf`; returns it and its total length
    /// in bytes (the position of whatever follows it in `buf`).
    pub fn parse(buf: &'a [u8]) -> Result<(BatchView<'a>, usize), BatchError> {
        let total_len = batch_total_len(buf)?;
        if buf.len() < total_len {
            return Err(BatchError::Truncated {
                needed: total_len,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        Ok((
            BatchView {
                bytes: &buf[..total_len],
            },
            total_len,
        ))
    }

    /// All bytes of the batch.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records section (after the fixed header), possibly compressed.
    pub fn records_bytes(&self) -> &'a [u8] {
        &self.bytes[BATCH_HEADER_LEN..]
    }

    /// Total bytes of the batch, `batch_length + 12`.
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn base_offset(&self) -> i64 {
        read_i64(self.bytes, BASE_OFFSET_OFFSET)
    }

    pub fn batch_length(&self) -> i32 {
        read_i32(self.bytes, BATCH_LENGTH_OFFSET)
    }

    pub fn partition_leader_epoch(&self) -> i32 {
        read_i32(self.bytes, PARTITION_LEADER_EPOCH_OFFSET)
    }

    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_OFFSET] as i8
    }

    pub fn crc(&self) -> u32 {
        read_i32(self.bytes, CRC_OFFSET) as u32
    }

    pub fn attributes(&self) -> i16 {
        read_i16(self.bytes, ATTRIBUTES_OFFSET)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_code((self.attributes() & COMPRESSION_MASK) as u8)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }

    pub fn last_offset_delta(&self) -> i32 {
        read_i32(self.bytes, LAST_OFFSET_DELTA_OFFSET)
    }

    pub fn base_timestamp(&self) -> i64 {
        read_i64(self.bytes, BASE_TIMESTAMP_OFFSET)
    }

    pub fn max_timestamp(&self) -> i64 {
        read_i64(self.bytes, MAX_TIMESTAMP_OFFSET)
    }

    pub fn producer_id(&self) -> i64 {
        read_i64(self.bytes, PRODUCER_ID_OFFSET)
    }

    pub fn producer_epoch(&self) -> i16 {
        read_i16(self.bytes, PRODUCER_EPOCH_OFFSET)
    }

    pub fn base_sequence(&self) -> i32 {
        read_i32(self.bytes, BASE_SEQUENCE_OFFSET)
    }

    pub fn record_count(&self) -> i32 {
        read_i32(self.bytes, RECORD_COUNT_OFFSET)
    }

    /// The offset of the batch's last record (`base_offset + last_offset_delta`),
    /// saturating on a hostile header; `validate` rejects such headers.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }

    /// The offset just after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The CRC32C of the bytes the header's CRC covers.
    pub fn computed_crc(&self) -> u32 {
        crc::crc32c(&self.bytes[CRC_COVERAGE_START..])
    }

    /// Checks everything `parse` does not: the CRC, the compression code, the
    /// record count against the offset delta, and the timestamps.
    ///
    /// A batch that compaction emptied keeps its header with `record_count`
    /// 0 (so producer state survives), and compaction keeps `lastOffsetDelta`
    /// while removing records, so only `record_count <= last_offset_delta + 1`
    /// can be required.
    ///
    /// Timestamps are only required to be -1 or non-negative: with
    /// LogAppendTime `maxTimestamp` is the broker's clock and may be below the
    /// producer's `baseTimestamp`, and clients differ in how they fill the
    /// two, so no order between them is enforced.
    pub fn validate(&self) -> Result<(), BatchError> {
        let stored = self.crc();
        let computed = self.computed_crc();
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        let compression = self.compression()?;
        let record_count = self.record_count();
        let last_offset_delta = self.last_offset_delta();
        if record_count < 0 {
            return Err(BatchError::NegativeRecordCount { record_count });
        }
        if last_offset_delta < 0 || i64::from(record_count) > i64::from(last_offset_delta) + 1 {
            return Err(BatchError::InconsistentOffsetDelta {
                record_count,
                last_offset_delta,
            });
        }
        if self
            .base_offset()
            .checked_add(i64::from(last_offset_delta))
            .and_then(|last| last.checked_add(1))
            .is_none()
        {
            return Err(BatchError::OffsetOverflow {
                base_offset: self.base_offset(),
                last_offset_delta,
            });
        }
        let records_len = self.records_bytes().len();
        if compression == Compression::None
            && (record_count as usize).saturating_mul(RECORD_LEN_MIN) > records_len
        {
            return Err(BatchError::RecordCountExceedsBytes {
                record_count,
                records_len,
            });
        }
        for timestamp in [self.base_timestamp(), self.max_timestamp()] {
            if timestamp < NO_TIMESTAMP {
                return Err(BatchError::InvalidTimestamp { timestamp });
            }
        }
        Ok(())
    }
}

/// The total length (`batch_length + 12`) of the batch starting at `buf`,
/// read from its header; checks only the header's presence and the length's
/// bounds, not that `buf` holds the whole batch.
pub fn batch_total_len(buf: &[u8]) -> Result<usize, BatchError> {
    if buf.len() < BATCH_HEADER_LEN {
        return Err(BatchError::HeaderTooShort {
            available: buf.len(),
        });
    }
    let batch_length = read_i32(buf, BATCH_LENGTH_OFFSET);
    if batch_length < BATCH_LENGTH_MIN {
        return Err(BatchError::InvalidBatchLength { batch_length });
    }
    // A non-negative i32 plus 12 always fits a usize on the 32- and 64-bit
    // targets Rill builds for.
    Ok(batch_length as usize + LOG_OVERHEAD)
}

fn check_header(buf: &[u8], needed: usize) -> Result<(), BatchError> {
    if buf.len() < needed {
        return Err(BatchError::HeaderTooShort {
            available: buf.len(),
        });
    }
    Ok(())
}

/// Rewrites `baseOffset`. Needs only the first 16 bytes of the batch (the
/// rewritten prefix), which the CRC does not cover.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    check_header(batch, REWRITTEN_PREFIX_LEN)?;
    batch[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Rewrites `partitionLeaderEpoch`. Needs only the first 16 bytes of the
/// batch, which the CRC does not cover.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    check_header(batch, REWRITTEN_PREFIX_LEN)?;
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// Sets `maxTimestamp` to `timestamp_ms`, marks the batch LogAppendTime, and
/// recomputes the CRC, for a batch split into its 61-byte `header` and the
/// `records` that follow it. Lets the log patch a copy of the header while
/// the records stay where the producer's request put them.
pub fn set_log_append_time_split(
    header: &mut [u8],
    records: &[u8],
    timestamp_ms: i64,
) -> Result<(), BatchError> {
    check_header(header, BATCH_HEADER_LEN)?;
    let header = &mut header[..BATCH_HEADER_LEN];
    let attributes = read_i16(header, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc::crc32c_append(crc::crc32c(&header[CRC_COVERAGE_START..]), records);
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// [`set_log_append_time_split`] for a whole batch in one buffer.
pub fn set_max_timestamp_and_type(batch: &mut [u8], timestamp_ms: i64) -> Result<(), BatchError> {
    check_header(batch, BATCH_HEADER_LEN)?;
    let (header, records) = batch.split_at_mut(BATCH_HEADER_LEN);
    set_log_append_time_split(header, records, timestamp_ms)
}

/// Rewrites a whole batch's producer id, epoch and base sequence, and its
/// CRC (which covers them): an idempotent producer renumbering a batch it
/// has to resend under a new producer id.
pub fn set_producer(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<(), BatchError> {
    check_header(batch, BATCH_HEADER_LEN)?;
    batch[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH_OFFSET..PRODUCER_EPOCH_OFFSET + 2]
        .copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4]
        .copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc::crc32c(&batch[CRC_COVERAGE_START..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Iterates over consecutive batches in a buffer, yielding each batch's
/// position in the buffer and its (parsed, not validated) view. After the
/// first error (including a partial batch at the end) it yields nothing more.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter {
            buf,
            position: 0,
            failed: false,
        }
    }

    /// Bytes consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(usize, BatchView<'a>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.buf.len() {
            return None;
        }
        match BatchView::parse(&self.buf[self.position..]) {
            Ok((view, len)) => {
                let at = self.position;
                self.position += len;
                Some(Ok((at, view)))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a batch header by hand with `records` as its records section
    /// and a correct CRC.
    fn build(
        base_offset: i64,
        record_count: i32,
        last_offset_delta: i32,
        records: &[u8],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&base_offset.to_be_bytes());
        let batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD + records.len()) as i32;
        b.extend_from_slice(&batch_length.to_be_bytes());
        b.extend_from_slice(&7i32.to_be_bytes()); // leader epoch
        b.push(2); // magic
        b.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        b.extend_from_slice(&0i16.to_be_bytes()); // attributes
        b.extend_from_slice(&last_offset_delta.to_be_bytes());
        b.extend_from_slice(&1_000i64.to_be_bytes()); // base timestamp
        b.extend_from_slice(&1_005i64.to_be_bytes()); // max timestamp
        b.extend_from_slice(&42i64.to_be_bytes()); // producer id
        b.extend_from_slice(&3i16.to_be_bytes()); // producer epoch
        b.extend_from_slice(&9i32.to_be_bytes()); // base sequence
        b.extend_from_slice(&record_count.to_be_bytes());
        assert_eq!(b.len(), BATCH_HEADER_LEN);
        b.extend_from_slice(records);
        fix_crc(&mut b);
        b
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = crc::crc32c(&b[CRC_COVERAGE_START..]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn accessors_read_every_field() {
        let b = build(100, 3, 2, &[0u8; 21]);
        let (v, len) = BatchView::parse(&b).unwrap();
        assert_eq!(len, b.len());
        assert_eq!(v.base_offset(), 100);
        assert_eq!(v.batch_length() as usize, b.len() - 12);
        assert_eq!(v.partition_leader_epoch(), 7);
        assert_eq!(v.magic(), 2);
        assert_eq!(v.compression(), Ok(Compression::None));
        assert_eq!(v.timestamp_type(), TimestampType::CreateTime);
        assert!(!v.is_transactional());
        assert!(!v.is_control());
        assert_eq!(v.last_offset_delta(), 2);
        assert_eq!(v.base_timestamp(), 1_000);
        assert_eq!(v.max_timestamp(), 1_005);
        assert_eq!(v.producer_id(), 42);
        assert_eq!(v.producer_epoch(), 3);
        assert_eq!(v.base_sequence(), 9);
        assert_eq!(v.record_count(), 3);
        assert_eq!(v.last_offset(), 102);
        assert_eq!(v.next_offset(), 103);
        assert_eq!(v.validate(), Ok(()));
    }

    #[test]
    fn parse_rejects_short_truncated_and_wrong_magic() {
        let b = build(0, 1, 0, &[0u8; 7]);
        assert_eq!(
            BatchView::parse(&b[..60]).unwrap_err(),
            BatchError::HeaderTooShort { available: 60 }
        );
        assert_eq!(
            BatchView::parse(&b[..b.len() - 1]).unwrap_err(),
            BatchError::Truncated {
                needed: b.len(),
                available: b.len() - 1
            }
        );
        let mut bad = b.clone();
        bad[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(
            BatchView::parse(&bad).unwrap_err(),
            BatchError::InvalidBatchLength { batch_length: 48 }
        );
        let mut bad = b.clone();
        bad[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            BatchView::parse(&bad),
            Err(BatchError::InvalidBatchLength { .. })
        ));
        let mut bad = b;
        bad[MAGIC_OFFSET] = 1;
        assert_eq!(
            BatchView::parse(&bad).unwrap_err(),
            BatchError::UnsupportedMagic { magic: 1 }
        );
    }

    #[test]
    fn validate_catches_every_flipped_covered_byte() {
        let b = build(5, 2, 1, &[1u8; 30]);
        for i in CRC_COVERAGE_START..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            let (v, _) = BatchView::parse(&bad).unwrap();
            assert!(
                matches!(v.validate(), Err(BatchError::CrcMismatch { .. })),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn validate_checks_counts_compression_and_timestamps() {
        let check = |b: &mut Vec<u8>| {
            fix_crc(b);
            BatchView::parse(b).unwrap().0.validate()
        };
        let mut b = build(0, 3, 1, &[0u8; 21]);
        assert!(matches!(
            check(&mut b),
            Err(BatchError::InconsistentOffsetDelta { .. })
        ));
        let mut b = build(0, -1, 1, &[0u8; 21]);
        assert!(matches!(
            check(&mut b),
            Err(BatchError::NegativeRecordCount { .. })
        ));
        // Compaction may leave fewer records than the delta says, or none.
        let mut b = build(0, 1, 9, &[0u8; 7]);
        assert_eq!(check(&mut b), Ok(()));
        let mut b = build(0, 0, 9, &[]);
        assert_eq!(check(&mut b), Ok(()));
        let mut b = build(0, 5, 4, &[0u8; 20]);
        assert!(matches!(
            check(&mut b),
            Err(BatchError::RecordCountExceedsBytes { .. })
        ));
        let mut b = build(0, 1, 0, &[0u8; 7]);
        b[ATTRIBUTES_OFFSET + 1] = 6;
        assert_eq!(
            check(&mut b),
            Err(BatchError::InvalidCompression { code: 6 })
        );
        let mut b = build(0, 1, 0, &[0u8; 7]);
        b[BASE_TIMESTAMP_OFFSET..BASE_TIMESTAMP_OFFSET + 8].copy_from_slice(&(-2i64).to_be_bytes());
        assert_eq!(
            check(&mut b),
            Err(BatchError::InvalidTimestamp { timestamp: -2 })
        );
        let mut b = build(i64::MAX - 1, 3, 2, &[0u8; 21]);
        assert!(matches!(
            check(&mut b),
            Err(BatchError::OffsetOverflow { .. })
        ));
    }

    #[test]
    fn prefix_rewrites_keep_the_crc_valid() {
        let mut b = build(0, 1, 0, &[0u8; 7]);
        set_base_offset(&mut b[..REWRITTEN_PREFIX_LEN], 1234).unwrap();
        set_partition_leader_epoch(&mut b, 9).unwrap();
        let (v, _) = BatchView::parse(&b).unwrap();
        assert_eq!(v.base_offset(), 1234);
        assert_eq!(v.partition_leader_epoch(), 9);
        assert_eq!(v.validate(), Ok(()));
        assert!(set_base_offset(&mut b[..15], 1).is_err());
    }

    #[test]
    fn log_append_time_sets_type_and_recomputes_crc() {
        let mut b = build(0, 2, 1, &[3u8; 14]);
        set_max_timestamp_and_type(&mut b, 777).unwrap();
        let (v, _) = BatchView::parse(&b).unwrap();
        assert_eq!(v.max_timestamp(), 777);
        assert_eq!(v.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(v.compression(), Ok(Compression::None));
        assert_eq!(v.validate(), Ok(()));
    }

    #[test]
    fn producer_rewrite_sets_the_fields_and_recomputes_crc() {
        let mut b = build(0, 2, 1, &[3u8; 14]);
        set_producer(&mut b, 42, 3, 1000).unwrap();
        let (v, _) = BatchView::parse(&b).unwrap();
        assert_eq!(
            (v.producer_id(), v.producer_epoch(), v.base_sequence()),
            (42, 3, 1000)
        );
        assert_eq!(v.validate(), Ok(()));
        assert!(set_producer(&mut b[..20], 1, 1, 1).is_err());
    }

    #[test]
    fn iterator_yields_positions_and_stops_at_first_error() {
        let a = build(0, 1, 0, &[0u8; 7]);
        let b = build(1, 2, 1, &[0u8; 14]);
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        buf.extend_from_slice(&a[..30]);
        let items: Vec<_> = BatchIter::new(&buf).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().0, 0);
        assert_eq!(items[1].as_ref().unwrap().0, a.len());
        assert_eq!(items[1].as_ref().unwrap().1.base_offset(), 1);
        assert!(matches!(items[2], Err(BatchError::HeaderTooShort { .. })));
        let mut it = BatchIter::new(&buf[..a.len() + b.len()]);
        assert_eq!(it.by_ref().count(), 2);
        assert_eq!(it.position(), a.len() + b.len());
    }

    #[test]
    fn compression_codes_round_trip() {
        for code in 0..8u8 {
            match Compression::from_code(code) {
                Ok(c) => assert_eq!(c.code(), code),
                Err(e) => assert!(code >= 5 && e == BatchError::InvalidCompression { code }),
            }
        }
    }
}
