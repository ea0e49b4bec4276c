//! What a batch must be when a client sends it, beyond what every stored
//! batch must be (`BatchView::validate`): Kafka's checks of a produced batch
//! (`LogValidator.validateBatch` with origin CLIENT, and its walk over the
//! records), and the key every record of a compacted topic needs
//! ([`check_keys`]). A stored batch may hold fewer records than its offset range,
//! because compaction removes records and keeps the range; a produced one may
//! not, or it would burn offsets it does not use: a batch claiming a last
//! offset delta of 2^31 made a log roll every two batches.
//!
//! The same pass bounds what the batch inflates to (the one limit every
//! later decode relies on) and checks the record count against the records
//! actually present, by their length prefixes (no field is read):
//! - uncompressed, over the batch's own bytes;
//! - gzip, lz4 and zstd, as the records section inflates through a small
//!   buffer: one streaming pass per batch, nothing held;
//! - snappy states each block's inflated length, so the limit is checked
//!   without decoding, and the blocks are decoded and counted only when the
//!   batch claims more records than it has bytes (a claim of at most one
//!   record per byte spends no more offsets than an honest producer of small
//!   records does).

use thiserror::Error;

use crate::batch::{BatchView, Compression};
use crate::compression::{self, CompressionError};
use crate::record::raw_records;

/// Why a client's batch is refused (Kafka's INVALID_RECORD).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProducedBatchError {
    #[error("invalid reported count for record batch: {record_count}")]
    NoRecords { record_count: i32 },
    #[error(
        "inconsistent batch offset range [0, {last_offset_delta}] and count of records {record_count}"
    )]
    CountDisagreesWithOffsets {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("the batch claims {record_count} records but holds {found}")]
    CountDisagreesWithRecords { record_count: i32, found: String },
    #[error("clients are not allowed to write control records")]
    ControlBatch,
    #[error(
        "invalid sequence number {base_sequence} in record batch with producer id {producer_id}"
    )]
    InvalidSequence {
        producer_id: i64,
        base_sequence: i32,
    },
    #[error("cannot inflate the records: {0}")]
    Inflate(#[from] CompressionError),
}

/// Checks `view` as a batch a client produced. `view.validate()` must have
/// passed first (CRC, compression code, counts not negative). A records
/// section that inflates past `inflate_limit` fails with
/// [`CompressionError::TooLarge`] inside [`ProducedBatchError::Inflate`].
pub fn check_produced(
    view: &BatchView<'_>,
    inflate_limit: usize,
) -> Result<(), ProducedBatchError> {
    let record_count = view.record_count();
    let last_offset_delta = view.last_offset_delta();
    if record_count <= 0 {
        return Err(ProducedBatchError::NoRecords { record_count });
    }
    if i64::from(last_offset_delta) + 1 != i64::from(record_count) {
        return Err(ProducedBatchError::CountDisagreesWithOffsets {
            record_count,
            last_offset_delta,
        });
    }
    if view.is_control() {
        return Err(ProducedBatchError::ControlBatch);
    }
    if view.producer_id() >= 0 && view.base_sequence() < 0 {
        return Err(ProducedBatchError::InvalidSequence {
            producer_id: view.producer_id(),
            base_sequence: view.base_sequence(),
        });
    }
    let section = view.records_bytes();
    // `validate` passed, so the code is known.
    let codec = view.compression().unwrap_or(Compression::None);
    if codec == Compression::Snappy && record_count as usize <= section.len() {
        compression::inflated_len(codec, section, inflate_limit)?;
        return Ok(());
    }
    let mut counter = RecordCounter::default();
    compression::for_each_inflated(codec, section, inflate_limit, |piece| counter.feed(piece))?;
    match counter.finish() {
        Ok(found) if found == record_count as usize => Ok(()),
        Ok(found) => Err(ProducedBatchError::CountDisagreesWithRecords {
            record_count,
            found: found.to_string(),
        }),
        Err(reason) => Err(ProducedBatchError::CountDisagreesWithRecords {
            record_count,
            found: reason,
        }),
    }
}

/// Counts the records of a records section fed to it in pieces (as an
/// inflating stream hands them out), from their length prefixes alone: a
/// zigzag varint, then that many bytes. Holds no bytes of its own.
#[derive(Default)]
struct RecordCounter {
    count: usize,
    /// Bytes of the current record still to pass over.
    skip: usize,
    /// The length prefix being read, and how far into it.
    prefix: u32,
    shift: u32,
    error: Option<String>,
}

impl RecordCounter {
    fn feed(&mut self, mut piece: &[u8]) {
        while !piece.is_empty() && self.error.is_none() {
            if self.skip > 0 {
                let passed = self.skip.min(piece.len());
                self.skip -= passed;
                piece = &piece[passed..];
                continue;
            }
            let byte = piece[0];
            piece = &piece[1..];
            self.prefix |= u32::from(byte & 0x7f) << self.shift;
            if byte & 0x80 != 0 {
                self.shift += 7;
                // An i32 varint takes at most five bytes.
                if self.shift > 28 {
                    self.error = Some(format!("record {}'s length is not a varint", self.count));
                }
                continue;
            }
            let len = ((self.prefix >> 1) as i32) ^ -((self.prefix & 1) as i32);
            (self.prefix, self.shift) = (0, 0);
            match usize::try_from(len) {
                Ok(len) => {
                    self.skip = len;
                    self.count += 1;
                }
                Err(_) => {
                    self.error = Some(format!("record {}'s length {len} is negative", self.count));
                }
            }
        }
    }

    fn finish(self) -> Result<usize, String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.skip > 0 || self.shift > 0 {
            return Err(format!(
                "record {} is cut short",
                self.count.saturating_sub(1)
            ));
        }
        Ok(self.count)
    }
}

/// Why a batch for a compacted topic is refused (Kafka's INVALID_RECORD).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyCheckError {
    /// The records cannot be read.
    #[error("{0}")]
    Unreadable(String),
    /// The indexes, within the batch, of the records without a key.
    #[error("records {0:?} have no key")]
    Missing(Vec<usize>),
}

/// Checks that every record of `view` has a key, as a compacted topic
/// needs (compaction keeps the last record of each key, so a keyless one
/// could never be kept or replaced). `view.validate()` must have passed
/// first. The records are walked in place (none is copied or kept), after
/// inflating a compressed section within `inflate_limit`.
pub fn check_keys(view: &BatchView<'_>, inflate_limit: usize) -> Result<(), KeyCheckError> {
    let unreadable = |e: String| KeyCheckError::Unreadable(e);
    if view.record_count() == 0 {
        return Ok(());
    }
    let mut inflated = Vec::new();
    let section = compression::records_section(view, inflate_limit, &mut inflated)
        .map_err(|e| unreadable(e.to_string()))?;
    let last_offset_delta = view.last_offset_delta();
    let mut missing = Vec::new();
    for (index, record) in raw_records(section, view.record_count()).enumerate() {
        let record = record.map_err(|e| unreadable(e.to_string()))?;
        if !(0..=last_offset_delta).contains(&record.offset_delta) {
            return Err(unreadable(format!(
                "record offset delta {} is outside the batch's 0..={last_offset_delta}",
                record.offset_delta
            )));
        }
        if record.key.is_none() {
            missing.push(index);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KeyCheckError::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;

    fn batch(codec: Compression, values: &[&[u8]]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(codec);
        for value in values {
            builder
                .append(
                    0,
                    None,
                    Some(bytes::Bytes::copy_from_slice(value)),
                    Vec::new(),
                )
                .unwrap();
        }
        builder.build().unwrap()
    }

    fn check(bytes: &[u8]) -> Result<(), ProducedBatchError> {
        let (view, _) = BatchView::parse(bytes).unwrap();
        view.validate().unwrap();
        check_produced(&view, 1 << 20)
    }

    /// Sets the last offset delta and record count, then fixes the CRC.
    fn claim(bytes: &mut [u8], last_offset_delta: i32, record_count: i32) {
        bytes[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        bytes[57..61].copy_from_slice(&record_count.to_be_bytes());
        let crc = crate::crc::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn honest_batches_pass() {
        for codec in [Compression::None, Compression::Zstd, Compression::Gzip] {
            check(&batch(codec, &[b"a", b"bb", b""])).unwrap();
            // Many records in few compressed bytes: inflated and counted.
            check(&batch(codec, &[&b"x"[..]; 500])).unwrap();
        }
    }

    #[test]
    fn a_delta_beyond_the_records_is_refused() {
        let value = [b'v'; 20];
        let mut bytes = batch(Compression::None, &[&value, &value]);
        // The bytes could hold three records, so `validate` passes; the walk
        // finds two.
        claim(&mut bytes, 2, 3);
        assert!(matches!(
            check(&bytes),
            Err(ProducedBatchError::CountDisagreesWithRecords { .. })
        ));
        claim(&mut bytes, 5, 2);
        assert!(matches!(
            check(&bytes),
            Err(ProducedBatchError::CountDisagreesWithOffsets { .. })
        ));
    }

    #[test]
    fn a_compressed_batch_claiming_more_records_than_bytes_is_counted() {
        let mut bytes = batch(Compression::Zstd, &[b"a", b"b"]);
        claim(&mut bytes, 99_999, 100_000);
        assert!(matches!(
            check(&bytes),
            Err(ProducedBatchError::CountDisagreesWithRecords { .. })
        ));
    }

    #[test]
    fn records_are_counted_however_the_section_is_cut_into_pieces() {
        let long = [b'v'; 300];
        let bytes = batch(Compression::None, &[b"a", &long, b"", &long]);
        let (view, _) = BatchView::parse(&bytes).unwrap();
        let section = view.records_bytes();
        for cut in 0..=section.len() {
            let mut counter = RecordCounter::default();
            counter.feed(&section[..cut]);
            counter.feed(&section[cut..]);
            assert_eq!(counter.finish(), Ok(4), "cut at {cut}");
        }
        for end in 1..section.len() {
            let mut counter = RecordCounter::default();
            counter.feed(&section[..end]);
            let counted = counter.finish();
            assert!(counted.is_err() || counted.unwrap() < 4, "ends at {end}");
        }
    }

    #[test]
    fn empty_and_control_batches_are_refused() {
        let mut bytes = batch(Compression::None, &[b"a"]);
        claim(&mut bytes, 0, 0);
        assert_eq!(
            check(&bytes),
            Err(ProducedBatchError::NoRecords { record_count: 0 })
        );
        let mut bytes = batch(Compression::None, &[b"a"]);
        bytes[22] |= 0x20; // attributes' low byte: the control bit
        let crc = crate::crc::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(check(&bytes), Err(ProducedBatchError::ControlBatch));
    }

    #[test]
    fn keyless_records_are_named_and_keyed_ones_pass() {
        let mut builder = BatchBuilder::new(Compression::Zstd);
        for key in [Some("k"), None, Some("j"), None] {
            let key = key.map(|k| bytes::Bytes::from_static(k.as_bytes()));
            builder.append(0, key, None, Vec::new()).unwrap();
        }
        let bytes = builder.build().unwrap();
        let (view, _) = BatchView::parse(&bytes).unwrap();
        assert_eq!(
            check_keys(&view, 1 << 20),
            Err(KeyCheckError::Missing(vec![1, 3]))
        );
        let mut builder = BatchBuilder::new(Compression::None);
        builder
            .append(0, Some(bytes::Bytes::from_static(b"k")), None, Vec::new())
            .unwrap();
        let bytes = builder.build().unwrap();
        let (view, _) = BatchView::parse(&bytes).unwrap();
        assert_eq!(check_keys(&view, 1 << 20), Ok(()));
    }
}
