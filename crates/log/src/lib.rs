//! rill-log: a partition stored as an append-only log of segment files.
//!
//! The layers, innermost first (as in Kafka's storage code):
//! - [`index`](crate::index): the memory-mapped offset and time indexes.
//! - [`segment`](crate::segment): one `.log` file with its indexes; batch
//!   lookup, scans, validation and index rebuilds.
//! - [`Log`]: one partition — segments, offsets, append, read, roll, flush,
//!   retention, truncation, recovery, scrub. The only layer with a lock.
//! - [`LogManager`]: every partition of a data directory, plus the
//!   background flusher, retention, checkpoint and scrub threads.
//! - [`cleaner`](crate::cleaner): log compaction, the rewrite of closed
//!   segments keeping the last record of every key.
//! - `scrub`: re-reading a closed segment from disk (`O_DIRECT`, whole
//!   chunks) to check every batch's CRC, for `Log::scrub`.
//! - `checkpoint` and `epoch`: the small durable files a log keeps;
//!   `producer`: idempotent-producer state (duplicate detection).
//!
//! The crate knows nothing of requests or the network. Byte layouts of every
//! file are in docs/FORMAT.md.

mod checkpoint;
mod cleaner;
mod epoch;
mod error;
mod index;
mod log;
mod manager;
mod producer;
mod scrub;
mod segment;
mod snapshot;
mod sync;
mod types;

#[doc(hidden)]
pub use checkpoint::dir_syncs_on_this_thread;
pub use cleaner::{CleanStats, Cleanable, CleanerConfig, OffsetMap};
pub use error::{AppendError, CorruptData, IoFailure, LogError, OfflineDir, ReadError};
pub use log::{DirState, SwapStep};
pub use log::{Log, ScrubReport, corrupt_batches_total};
pub use manager::{BackgroundConfig, BackgroundHandle, CleanerMetrics, LogManager};
#[doc(hidden)]
pub use scrub::scrub_file_buffered;
pub use sync::OnDurable;
pub use types::{AppendInfo, FileRegion, LogConfig, Offset, Position, ReadInfo, TimestampType};
