//! The plain values that cross the log's API: offsets, positions, the
//! configuration, and what an append or a read returns.

use std::fmt;

pub use rill_records::batch::TimestampType;
pub use rill_records::region::FileRegion;

/// A logical message number within one partition.
///
/// Offsets and file positions never share a type, so one cannot be passed
/// where the other is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A byte position within one segment's `.log` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}", self.0)
    }
}

/// Per-partition settings, named after Kafka's topic configs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this.
    /// Capped at `i32::MAX` (as in Kafka) because index entries hold 32-bit
    /// positions.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty active segment this old.
    pub segment_ms: i64,
    /// `index.interval.bytes`: add an index entry after this many log bytes.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: preallocated size of each index file; a full
    /// index rolls the segment.
    pub segment_index_bytes: u32,
    /// `flush.messages`: fsync after this many appended records.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: the background flusher fsyncs data older than this.
    pub flush_ms: Option<u64>,
    /// `retention.ms`: delete closed segments whose newest timestamp is older;
    /// -1 keeps them forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest closed segments while the log is
    /// larger; -1 means no limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `cleanup.policy` holds `delete`: retention deletes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` holds `compact`: the cleaner keeps the last record
    /// of every key.
    pub cleanup_compact: bool,
    /// `min.cleanable.dirty.ratio`: clean once this share of the closed
    /// bytes has not been cleaned yet.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this are compacted
    /// whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone stays once its segment
    /// was last written, so consumers catching up still see the delete.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    /// Kafka's defaults.
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            flush_messages: None,
            flush_ms: None,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            cleanup_delete: true,
            cleanup_compact: false,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record appended.
    pub base_offset: Offset,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// The broker time stamped into the batches, or -1 with CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// Records appended, summed over the batches' `recordCount`.
    pub record_count: u64,
}

/// What a read found.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// Whole batches, in offset order; empty at the end of the log.
    pub slices: Vec<FileRegion>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// The offset just after the last batch in `slices` (where the next
    /// read continues), when the read knows it without extra IO; `None`
    /// for an empty read or one cut short by a corrupt batch.
    pub next_offset: Option<Offset>,
}

impl ReadInfo {
    /// Total bytes in the slices.
    pub fn bytes(&self) -> u64 {
        self.slices.iter().map(|s| u64::from(s.len)).sum()
    }
}
