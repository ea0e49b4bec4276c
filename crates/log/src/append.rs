//! Preparing an append before the log's lock is taken: every batch parsed
//! and checked as a client's batch must be, its size, and the header
//! rewrites (offsets, leader epoch, append time) the write will use.

use rill_records::batch::{
    BATCH_HEADER_LEN, BatchIter, BatchView, set_base_offset, set_log_append_time_split,
    set_partition_leader_epoch,
};
use rill_records::compression::{CompressionError, INFLATED_BYTES_MAX};
use rill_records::produced::{KeyCheckError, ProducedBatchError, check_keys, check_produced};

use crate::error::AppendError;
use crate::types::{LogConfig, Offset};

/// The record batches of one append: one buffer of whole batches, or
/// several (the batches of several produce requests for one partition),
/// written together in one vectored write without being copied into one
/// buffer first. Made with `From` of `&[u8]`, `&Vec<u8>` or `&[&[u8]]`.
#[derive(Debug, Clone, Copy)]
pub struct Batches<'a>(Parts<'a>);

#[derive(Debug, Clone, Copy)]
enum Parts<'a> {
    One(&'a [u8]),
    Many(&'a [&'a [u8]]),
}

impl<'a> Batches<'a> {
    /// The buffers, in order; each holds whole batches.
    pub fn parts(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let (one, many): (Option<&'a [u8]>, &'a [&'a [u8]]) = match self.0 {
            Parts::One(bytes) => (Some(bytes), &[]),
            Parts::Many(parts) => (None, parts),
        };
        one.into_iter().chain(many.iter().copied())
    }
}

impl<'a> From<&'a [u8]> for Batches<'a> {
    fn from(bytes: &'a [u8]) -> Batches<'a> {
        Batches(Parts::One(bytes))
    }
}

impl<'a> From<&'a Vec<u8>> for Batches<'a> {
    fn from(bytes: &'a Vec<u8>) -> Batches<'a> {
        Batches(Parts::One(bytes))
    }
}

impl<'a> From<&'a [&'a [u8]]> for Batches<'a> {
    fn from(parts: &'a [&'a [u8]]) -> Batches<'a> {
        Batches(Parts::Many(parts))
    }
}

impl<'a> From<&'a Vec<&'a [u8]>> for Batches<'a> {
    fn from(parts: &'a Vec<&'a [u8]>) -> Batches<'a> {
        Batches(Parts::Many(parts))
    }
}

/// Parses and checks every batch of an append: whole valid batches, none
/// larger than `max.message.bytes`, each fit to come from a client and,
/// on a compacted log, with a key on every record. At least one.
pub(crate) fn validate_batches<'a>(
    batches: Batches<'a>,
    config: &LogConfig,
) -> Result<Vec<BatchView<'a>>, AppendError> {
    let mut views = Vec::new();
    for part in batches.parts() {
        for item in BatchIter::new(part) {
            // Counted across the parts, as if they were one buffer.
            let index = views.len();
            let (_, view) = item.map_err(|source| AppendError::InvalidBatch { index, source })?;
            validate_batch(index, &view, config)?;
            views.push(view);
        }
    }
    if views.is_empty() {
        return Err(AppendError::Empty);
    }
    Ok(views)
}

/// The checks of [`validate_batches`] for the batch at `index`.
fn validate_batch(
    index: usize,
    view: &BatchView<'_>,
    config: &LogConfig,
) -> Result<(), AppendError> {
    if view.total_len() > config.max_message_bytes as usize {
        return Err(AppendError::TooLarge {
            size: view.total_len(),
            max: config.max_message_bytes,
        });
    }
    view.validate()
        .map_err(|source| AppendError::InvalidBatch { index, source })?;
    // A batch of a few KiB may inflate to gigabytes; refused here, it never
    // reaches a decoder that would have to skip it.
    check_produced(view, INFLATED_BYTES_MAX).map_err(|source| match source {
        ProducedBatchError::Inflate(CompressionError::TooLarge { limit, .. }) => {
            AppendError::InflatesTooLarge { index, limit }
        }
        ProducedBatchError::Inflate(error) => AppendError::InvalidRecords {
            index,
            reason: error.to_string(),
        },
        source => AppendError::InvalidRecord { index, source },
    })?;
    if config.cleanup_compact {
        check_keys(view, INFLATED_BYTES_MAX).map_err(|error| match error {
            KeyCheckError::Missing(records) => AppendError::MissingKey { index, records },
            KeyCheckError::Unreadable(reason) => AppendError::InvalidRecords { index, reason },
        })?;
    }
    Ok(())
}

/// What an append adds to the log.
pub(crate) struct AppendSize {
    pub(crate) bytes: u64,
    pub(crate) offsets: i64,
    pub(crate) records: u64,
}

impl AppendSize {
    pub(crate) fn of(views: &[BatchView<'_>]) -> AppendSize {
        AppendSize {
            bytes: views.iter().map(|v| v.total_len() as u64).sum(),
            offsets: views
                .iter()
                .map(|v| i64::from(v.last_offset_delta()) + 1)
                .sum(),
            records: views.iter().map(|v| v.record_count() as u64).sum(),
        }
    }

    /// Refuses an append whose offsets would overflow after `log_end`, or
    /// whose bytes or offsets one segment cannot hold.
    pub(crate) fn check_fits(&self, log_end: Offset) -> Result<(), AppendError> {
        if log_end.0.checked_add(self.offsets).is_none() || self.offsets > i64::from(u32::MAX) {
            return Err(AppendError::OffsetOverflow { log_end });
        }
        if self.bytes > u64::from(u32::MAX) {
            return Err(AppendError::TooLarge {
                size: usize::try_from(self.bytes).unwrap_or(usize::MAX),
                max: u32::MAX,
            });
        }
        Ok(())
    }
}

/// Each batch's header with its offsets from `log_end` on, the leader
/// epoch and, if `log_append_time_ms` is set, the append time.
pub(crate) fn patch_headers(
    views: &[BatchView<'_>],
    log_end: Offset,
    leader_epoch: i32,
    log_append_time_ms: i64,
) -> Vec<[u8; BATCH_HEADER_LEN]> {
    let mut headers = vec![[0u8; BATCH_HEADER_LEN]; views.len()];
    let mut next = log_end;
    for (header, view) in headers.iter_mut().zip(views) {
        let bytes = view.bytes();
        header.copy_from_slice(&bytes[..BATCH_HEADER_LEN]);
        // The header is exactly BATCH_HEADER_LEN bytes, which these
        // rewrites need, so they cannot fail.
        let patched = set_base_offset(header, next.0)
            .and_then(|()| set_partition_leader_epoch(header, leader_epoch))
            .and_then(|()| {
                if log_append_time_ms >= 0 {
                    set_log_append_time_split(
                        header,
                        &bytes[BATCH_HEADER_LEN..],
                        log_append_time_ms,
                    )
                } else {
                    Ok(())
                }
            });
        debug_assert!(patched.is_ok());
        next = Offset(next.0 + i64::from(view.last_offset_delta()) + 1);
    }
    headers
}
