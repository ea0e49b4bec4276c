//! What a batch must be when a client sends it, beyond what every stored
//! batch must be (`BatchView::validate`): Kafka's checks of a produced batch
//! (`LogValidator.validateBatch` with origin CLIENT, and its walk over the
//! records). A stored batch may hold fewer records than its offset range,
//! because compaction removes records and keeps the range; a produced one may
//! not, or it would burn offsets it does not use: a batch claiming a last
//! offset delta of 2^31 made a log roll every two batches.
//!
//! The record count is checked against the records actually present:
//! - uncompressed, by walking the records' length prefixes (no field is read);
//! - compressed, only when the batch claims more records than it has
//!   compressed bytes. Then it is inflated (up to the caller's limit) and
//!   walked. A claim of at most one record per compressed byte is taken as it
//!   is, so the produce path does not decompress (BRIEF §1): such a batch
//!   spends at most one offset per byte sent, no more than an honest producer
//!   of small records does.

use thiserror::Error;

use crate::batch::{BatchView, Compression};
use crate::compression::{self, CompressionError};
use crate::varint::{self, VarintError};

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
    #[error("cannot inflate the records to count them: {0}")]
    Inflate(#[from] CompressionError),
}

/// Checks `view` as a batch a client produced. `view.validate()` must have
/// passed first (CRC, compression code, counts not negative). `inflate_limit`
/// bounds the bytes a compressed batch may inflate to when it is counted.
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
    let found = match codec {
        Compression::None => count_records(section),
        _ if record_count as usize <= section.len() => return Ok(()),
        _ => {
            let mut inflated = Vec::new();
            compression::decompress(codec, section, inflate_limit, &mut inflated)?;
            count_records(&inflated)
        }
    };
    match found {
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

/// The number of records in an uncompressed records section, read from their
/// length prefixes alone; an error names a prefix that is not a varint, is
/// negative, or runs past the section.
fn count_records(section: &[u8]) -> Result<usize, String> {
    let mut position = 0;
    let mut count = 0;
    while position < section.len() {
        let (len, prefix) = varint::read_varint(&section[position..])
            .map_err(|e: VarintError| format!("record {count}'s length is not a varint: {e}"))?;
        let len = usize::try_from(len)
            .map_err(|_| format!("record {count}'s length {len} is negative"))?;
        let end = position + prefix + len;
        if end > section.len() {
            return Err(format!(
                "record {count} needs {len} bytes but only {} remain",
                section.len() - position - prefix
            ));
        }
        position = end;
        count += 1;
    }
    Ok(count)
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
}
