//! One error enum per operation boundary, each with a real message. The
//! broker maps them to Kafka error codes; this crate knows nothing of those.

use std::io;
use std::path::PathBuf;

use rill_records::batch::BatchError;
use rill_records::produced::ProducedBatchError;
use thiserror::Error;

use crate::types::{Offset, Position};

/// A system call on a log file failed.
#[derive(Debug, Error)]
#[error("{op} {path}: {source}")]
pub struct IoFailure {
    /// What was being done, e.g. "write" or "fsync".
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The log directory failed earlier and refuses all further work, because
/// after a failed write or fsync the kernel may have dropped dirty pages and
/// retrying could report success for data that is gone.
#[derive(Debug, Clone, Error)]
#[error("log directory {dir} is offline after an IO error: {reason}")]
pub struct OfflineDir {
    pub dir: PathBuf,
    pub reason: String,
}

/// Stored bytes failed a check (CRC, length, offset order).
#[derive(Debug, Clone, Error)]
#[error("corrupt data in {path} at {position}: {reason}")]
pub struct CorruptData {
    pub path: PathBuf,
    pub position: Position,
    pub reason: String,
}

/// The process or the machine ran short of descriptors or memory (EMFILE,
/// ENFILE, ENOMEM): a failure of the request, not of the disk.
pub(crate) fn short_of_resources(error: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOMEM]
        .iter()
        .any(|e| error.raw_os_error() == Some(e.raw_os_error()))
}

/// The failures every operation shares; converted into each boundary's enum.
#[derive(Debug, Error)]
pub(crate) enum Fault {
    #[error(transparent)]
    Io(#[from] IoFailure),
    #[error(transparent)]
    Offline(#[from] OfflineDir),
    #[error(transparent)]
    Corrupt(#[from] CorruptData),
    #[error("the log in {} is closed", dir.display())]
    Closed { dir: PathBuf },
    #[error("log directory {} is full: appends wait for free space", dir.display())]
    NoSpace { dir: PathBuf },
}

/// Opening, truncating, flushing, closing or managing logs failed.
#[derive(Debug, Error)]
pub enum LogError {
    #[error(transparent)]
    Io(#[from] IoFailure),
    #[error(transparent)]
    Offline(#[from] OfflineDir),
    #[error(transparent)]
    Corrupt(#[from] CorruptData),
    #[error("checkpoint file {path} is malformed: {reason}")]
    BadCheckpoint { path: PathBuf, reason: String },
    #[error("offset {requested} is outside the log [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    #[error("invalid topic partition {topic:?}-{partition}: {reason}")]
    InvalidPartition {
        topic: String,
        partition: i32,
        reason: &'static str,
    },
    #[error("the log in {} is closed", dir.display())]
    Closed { dir: PathBuf },
    #[error("log directory {} is full: appends wait for free space", dir.display())]
    NoSpace { dir: PathBuf },
}

impl From<Fault> for LogError {
    fn from(fault: Fault) -> LogError {
        match fault {
            Fault::Io(e) => LogError::Io(e),
            Fault::Offline(e) => LogError::Offline(e),
            Fault::Corrupt(e) => LogError::Corrupt(e),
            Fault::Closed { dir } => LogError::Closed { dir },
            Fault::NoSpace { dir } => LogError::NoSpace { dir },
        }
    }
}

/// An append was refused; the log is unchanged.
#[derive(Debug, Error)]
pub enum AppendError {
    #[error("batch {index} of the append is invalid: {source}")]
    InvalidBatch {
        index: usize,
        #[source]
        source: BatchError,
    },
    #[error("the append holds no record batch")]
    Empty,
    #[error("batch {index} cannot be read: {reason}")]
    InvalidRecords { index: usize, reason: String },
    #[error("batch {index} of the append breaks a rule for produced batches: {source}")]
    InvalidRecord {
        index: usize,
        #[source]
        source: ProducedBatchError,
    },
    #[error(
        "batch {index} holds records without a key (indexes {records:?} in the batch), which a compacted topic cannot keep"
    )]
    MissingKey { index: usize, records: Vec<usize> },
    #[error("the records of batch {index} inflate to more than {limit} bytes, the broker's limit")]
    InflatesTooLarge { index: usize, limit: usize },
    #[error(
        "producer {producer_id} sent sequence {received} but {expected} was expected: an earlier batch is missing"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    #[error(
        "producer {producer_id} wrote with epoch {epoch}, older than its current epoch {current}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: u32 },
    #[error("append would make offsets overflow after {log_end}")]
    OffsetOverflow { log_end: Offset },
    #[error(transparent)]
    Offline(#[from] OfflineDir),
    #[error(transparent)]
    Io(#[from] IoFailure),
    #[error(transparent)]
    Corrupt(#[from] CorruptData),
    #[error("the log in {} is closed", dir.display())]
    Closed { dir: PathBuf },
    /// The directory is full (see `LogManager::dir_state`); appends resume
    /// by themselves once it has free space again.
    #[error("log directory {} is full: appends wait for free space", dir.display())]
    NoSpace { dir: PathBuf },
}

impl From<Fault> for AppendError {
    fn from(fault: Fault) -> AppendError {
        match fault {
            Fault::Io(e) => AppendError::Io(e),
            Fault::Offline(e) => AppendError::Offline(e),
            Fault::Corrupt(e) => AppendError::Corrupt(e),
            Fault::Closed { dir } => AppendError::Closed { dir },
            Fault::NoSpace { dir } => AppendError::NoSpace { dir },
        }
    }
}

/// A read could not be served.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    #[error(transparent)]
    Corrupt(#[from] CorruptData),
    #[error(transparent)]
    Offline(#[from] OfflineDir),
    #[error(transparent)]
    Io(#[from] IoFailure),
    #[error("the log in {} is closed", dir.display())]
    Closed { dir: PathBuf },
}

impl From<Fault> for ReadError {
    fn from(fault: Fault) -> ReadError {
        match fault {
            Fault::Io(e) => ReadError::Io(e),
            Fault::Offline(e) => ReadError::Offline(e),
            Fault::Corrupt(e) => ReadError::Corrupt(e),
            Fault::Closed { dir } => ReadError::Closed { dir },
            // Only appends check for space.
            Fault::NoSpace { dir } => ReadError::Offline(OfflineDir {
                dir,
                reason: "the directory is full".to_string(),
            }),
        }
    }
}
