//! rill-log: a partition stored as an append-only log of segment files.
//!
//! The layers, innermost first (as in Kafka's storage code):
//! - [`index`](crate::index): the memory-mapped offset and time indexes.
//! - [`segment`](crate::segment): one `.log` file with its indexes; batch
//!   lookup, scans, validation and index rebuilds.
//! - [`Log`]: one partition, the only layer with a lock. Its parts, as in
//!   Kafka's split of `LocalLog`, `LogLoader` and `UnifiedLog`:
//!   - `log`: open, append, read and the offset queries; `append`: the
//!     checks and header rewrites of an append's batches;
//!   - `segments`: the state behind the lock, the segment map, the active
//!     segment, rolls and the bound on open segment handles;
//!   - `recovery`: opening a directory, recovering after a crash;
//!   - `flush`: flushes, the recovery point, the checkpoint files' writes;
//!   - `retention` (retention and DeleteRecords), `truncate`, `swap` (the
//!     compaction swap, next to `cleaner`), `scrub`;
//!   - `files`: retiring and freeing dropped segments' files;
//!   - `dir_health`: a data directory online, full or offline;
//!   - `sys`: the few system calls made directly.
//! - [`LogManager`]: every partition of a data directory, plus the
//!   background flusher, retention, checkpoint and scrub threads.
//! - [`cleaner`](crate::cleaner): log compaction, the rewrite of closed
//!   segments keeping the last record of every key.
//! - `scrub`: re-reading a closed segment from disk (`O_DIRECT`, whole
//!   chunks) to check every batch's CRC, for `Log::scrub`.
//! - `checkpoint` and `epoch`: the small durable files a log keeps;
//!   `producer`: idempotent-producer state (duplicate detection);
//!   `sync`: the group commit of a data directory.
//!
//! The crate knows nothing of requests or the network. Byte layouts of every
//! file are in docs/FORMAT.md.

mod append;
mod checkpoint;
mod cleaner;
mod dir_health;
mod epoch;
mod error;
mod files;
mod flush;
mod index;
mod log;
mod manager;
mod producer;
mod recovery;
mod retention;
mod scrub;
mod segment;
mod segments;
mod snapshot;
mod swap;
mod sync;
mod sys;
mod truncate;
mod types;

pub use append::Batches;
#[doc(hidden)]
pub use checkpoint::dir_syncs_on_this_thread;
pub use cleaner::{CleanStats, Cleanable, CleanerConfig, OffsetMap};
pub use dir_health::DirState;
pub use error::{AppendError, CorruptData, IoFailure, LogError, OfflineDir, ReadError};
pub use log::Log;
pub use manager::{BackgroundConfig, BackgroundHandle, CleanerMetrics, LogManager};
#[doc(hidden)]
pub use scrub::scrub_file_buffered;
pub use scrub::{ScrubReport, corrupt_batches_total};
pub use swap::SwapStep;
pub use sync::OnDurable;
pub use types::{AppendInfo, FileRegion, LogConfig, Offset, Position, ReadInfo, TimestampType};
