//! ListOffsets: the earliest offset, the latest, the one with the largest
//! timestamp, or the first whose timestamp is at least a given time.
//!
//! The log's indexes find the batch; the answer names the record, as Kafka's
//! does, so the batch is read and its records walked (decompressed if need
//! be, within the limit every batch was checked against at append). A
//! consumer seeking by time then starts at the first record at or after the
//! time it asked for, not at the start of a batch that began earlier.

use std::sync::Arc;

use std::os::unix::fs::FileExt;

use rill_log::{Log, Offset};
use rill_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use rill_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use rill_records::batch::{BATCH_HEADER_LEN, BatchView, TimestampType, batch_total_len};
use rill_records::compression::records_section;
use rill_records::record::raw_records;

use crate::cluster::LEADER_EPOCH;
use crate::error_code;
use crate::server::Shared;

/// The special timestamps of a ListOffsets request.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let handle = shared.cluster.topic(&topic.name);
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let index = requested.partition_index;
                    let Some(partition) = handle.as_ref().and_then(|t| t.partition(index)) else {
                        return error(index, error_code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    let log = &partition.log;
                    let found = match requested.timestamp {
                        // Uncommitted offsets are not visible; on one node
                        // the high watermark is the log end.
                        LATEST => Ok(Some((log.high_watermark(), -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                        // No tiered storage: nothing is tiered.
                        LATEST_TIERED => Ok(Some((Offset(log.log_start_offset().0 - 1), -1))),
                        MAX_TIMESTAMP => match log.max_timestamp() {
                            Some((offset, timestamp)) => {
                                // The log names the batch by its last offset; the
                                // record may be anywhere in it.
                                to_the_record(log, offset, log.log_start_offset(), |t| {
                                    t == timestamp
                                })
                            }
                            None => Ok(None),
                        },
                        timestamp if timestamp < 0 => {
                            return error(index, error_code::INVALID_REQUEST);
                        }
                        timestamp => match log.offset_for_timestamp(timestamp) {
                            Ok(Some((offset, _))) => {
                                to_the_record(log, offset, offset, |t| t >= timestamp)
                            }
                            other => other.map_err(|e| e.to_string()),
                        },
                    };
                    match found {
                        Ok(Some((offset, timestamp))) => ListOffsetsPartitionResponse {
                            partition_index: index,
                            error_code: error_code::NONE,
                            old_style_offsets: if version == 0 { vec![offset.0] } else { Vec::new() },
                            timestamp,
                            offset: offset.0,
                            leader_epoch: LEADER_EPOCH,
                            ..Default::default()
                        },
                        // No record is that recent: Kafka answers offset -1.
                        Ok(None) => ListOffsetsPartitionResponse {
                            partition_index: index,
                            error_code: error_code::NONE,
                            timestamp: -1,
                            offset: -1,
                            ..Default::default()
                        },
                        Err(failure) => {
                            tracing::error!(topic = %topic.name, partition = index, error = %failure, "offset lookup failed");
                            error(index, error_code::KAFKA_STORAGE_ERROR)
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse {
                name: topic.name,
                partitions,
                ..Default::default()
            }
        })
        .collect();
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}

/// Decompressed size allowed when decoding one batch for a lookup: the
/// limit every batch was checked against when it was appended.
const LOOKUP_DECOMPRESSED_BYTES_MAX: usize = rill_records::compression::INFLATED_BYTES_MAX;

/// In the batch holding `batch_offset`, the first record at or after `from`
/// whose timestamp satisfies `matches`, with that timestamp; the batch's own
/// answer if no record does (it cannot when the indexes are right).
fn to_the_record(
    log: &Log,
    batch_offset: Offset,
    from: Offset,
    matches: impl Fn(i64) -> bool,
) -> Result<Option<(Offset, i64)>, String> {
    let read = log
        .read(batch_offset, 1, log.high_watermark())
        .map_err(|e| e.to_string())?;
    let Some(slice) = read.slices.first() else {
        return Ok(None);
    };
    let mut header = [0u8; BATCH_HEADER_LEN];
    slice
        .file
        .read_exact_at(&mut header, slice.position)
        .map_err(|e| e.to_string())?;
    let batch_len = batch_total_len(&header).map_err(|e| e.to_string())?;
    let mut batch = vec![0u8; batch_len.min(slice.len as usize)];
    slice
        .file
        .read_exact_at(&mut batch, slice.position)
        .map_err(|e| e.to_string())?;
    let (view, _) = BatchView::parse(&batch).map_err(|e| e.to_string())?;
    view.validate().map_err(|e| e.to_string())?;
    if view.record_count() == 0 {
        // As decoders do, whatever follows the header: compaction leaves
        // such batches behind.
        return Ok(Some((batch_offset, view.max_timestamp())));
    }
    // Only the records section is inflated; records are walked in place,
    // so a lookup holds no decoded copy of them.
    let mut inflated = Vec::new();
    let section = records_section(&view, LOOKUP_DECOMPRESSED_BYTES_MAX, &mut inflated)
        .map_err(|e| e.to_string())?;
    let log_append_time = view.timestamp_type() == TimestampType::LogAppendTime;
    for record in raw_records(section, view.record_count()) {
        let record = record.map_err(|e| e.to_string())?;
        let offset = view
            .base_offset()
            .saturating_add(i64::from(record.offset_delta));
        let timestamp = if log_append_time {
            view.max_timestamp()
        } else {
            view.base_timestamp().saturating_add(record.timestamp_delta)
        };
        if offset >= from.0 && matches(timestamp) {
            return Ok(Some((Offset(offset), timestamp)));
        }
    }
    Ok(Some((batch_offset, view.max_timestamp())))
}

fn error(index: i32, code: i16) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse {
        partition_index: index,
        error_code: code,
        timestamp: -1,
        offset: -1,
        ..Default::default()
    }
}
