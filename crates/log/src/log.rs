//! One partition: an ordered map of segments, the last of them active.
//!
//! Thread-safety: `Log` is `Send + Sync` and is shared as `Arc<Log>`. One
//! `RwLock` guards the segment map and offsets: appends, rolls, truncation
//! and retention take it for writing (briefly: a write to the page cache);
//! reads and lookups take it for reading. fsync runs without it (see
//! `flush`), so a slow disk never blocks readers or the next append's copy
//! into the page cache for longer than the fsync of an earlier flush holds
//! `flush_lock`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rill_records::batch::{
    BATCH_HEADER_LEN, BatchIter, REWRITTEN_PREFIX_LEN, TimestampType, set_base_offset,
    set_log_append_time_split, set_partition_leader_epoch,
};
use rill_records::compression::CompressionError;
use rill_records::produced::{ProducedBatchError, check_produced};

use crate::checkpoint::{
    self, CLEAN_SHUTDOWN_FILE, CLEANER_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, sync_dir,
};
use crate::cleaner::{
    self, CleanRules, CleanStats, Cleanable, Cleaned, KeyCheck, OffsetMap, SegmentRef,
};
use crate::epoch::LeaderEpochCache;
use crate::error::{
    AppendError, CorruptData, Fault, IoFailure, LogError, OfflineDir, ReadError, short_of_resources,
};
use crate::index::IndexFile;
use crate::producer::{ProducerState, SequenceError};
use crate::scrub::scrub_file;
use crate::segment::{
    INDEX_SUFFIX, IndexCursor, LOG_SUFFIX, Loaded, ProducerFields, Scan, ScanStart, Segment,
    TIME_INDEX_SUFFIX, io_failure, parse_file_name, release_reserve, scan_file,
};
use crate::snapshot;
use crate::sync::{OnDurable, Syncer};
use crate::types::{AppendInfo, FileSlice, LogConfig, Offset, Position, ReadInfo};

/// The largest segment file: index entries hold 32-bit positions, and Kafka
/// caps `segment.bytes` at `i32::MAX` too.
pub(crate) const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Batches per `writev` call: Linux's `IOV_MAX` is 1024 and each batch takes
/// two slices (patched header, untouched rest).
const BATCHES_PER_WRITE_MAX: usize = 512;

/// How long after a roll the closed segment is flushed (Kafka flushes at
/// once). An fsync of a segment's worth of dirty data stalled appends on
/// this VM's ext4 (end-to-end p99 in the hundreds of ms, measured when a
/// flush at every roll was first tried here); Linux writes back pages
/// dirty for 30 s on its own (`vm.dirty_expire_centisecs`), so by then the
/// fsync finds little left to write. The cost: recovery after a crash also
/// checks the segments rolled in the last 30 s.
const ROLL_FLUSH_DELAY_MS: i64 = 30_000;
/// Rolls waiting for their flush, per log: a roll every few ms for 30 s
/// would be thousands, and flushing to a later roll covers earlier ones.
const ROLLS_PENDING_MAX: usize = 64;

/// Appended to the files of a segment retention or DeleteRecords dropped,
/// between the rename under the state lock and the unlink after it.
const DELETED_SUFFIX: &str = ".deleted";

/// A logical clock for "last used" marks on segments, shared by every log so
/// that the manager can compare active segments across logs.
static USE_CLOCK: AtomicU64 = AtomicU64::new(1);
/// Closed segments whose file and index maps are open, across the process.
static LOADED_SEGMENTS: AtomicUsize = AtomicUsize::new(0);
/// Batches the scrub found corrupt since the process started.
static CORRUPT_BATCHES: AtomicU64 = AtomicU64::new(0);

/// How many closed segments may hold an open file (and two maps) at once.
/// Each costs one descriptor, so the bound is a quarter of the process's
/// descriptor limit (the rest is for sockets and active segments), at least
/// 64 and at most 16384 (each also holds two of the kernel's default 65530
/// memory maps per process).
fn loaded_segments_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| quarter_of_descriptor_limit().clamp(64, 16384))
}

/// A quarter of the process's open-file limit (its soft limit, read once by
/// each caller's `OnceLock`).
fn quarter_of_descriptor_limit() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(limit / 4).unwrap_or(usize::MAX)
}

/// How many active segments may keep their file open while idle: a quarter
/// of the descriptor limit, as for closed ones (`loaded_segments_max`). A
/// broker with more partitions than this closes the least recently used
/// active segments' files (`Log::release_active`, run by the manager) and
/// reopens them on use, so the partitions it holds, and a restart that
/// opens them all, are not bounded by the descriptor limit.
pub(crate) fn active_segments_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| quarter_of_descriptor_limit().clamp(64, 1 << 20))
}

/// Corrupt batches found by scrubs since the process started, for metrics.
pub fn corrupt_batches_total() -> u64 {
    CORRUPT_BATCHES.load(Ordering::Relaxed)
}

/// Free bytes a full directory needs again before it takes appends: the
/// largest default batch (1 MiB) with room to spare, so appends do not
/// start, fill the last few KiB and fail again at once.
const RESUME_FREE_BYTES: u64 = 4 << 20;

/// What an IO error says about the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The process or the machine ran short of descriptors or memory
    /// (EMFILE, ENFILE, ENOMEM): the request that hit it fails, the disk
    /// is fine and nothing else changes.
    Resources,
    /// The file system is full (ENOSPC, EDQUOT): appends stop until space
    /// is back; reads, retention and DeleteRecords go on and free it.
    Space,
    /// Anything else, and every failed fsync whatever its errno (the kernel
    /// may have dropped the dirty pages) but a shortage met opening the
    /// file to sync: the directory goes offline.
    Disk,
}

impl FailureKind {
    pub(crate) fn of(failure: &IoFailure) -> FailureKind {
        use rustix::io::Errno;
        let errno = failure.source.raw_os_error();
        let is = |e: Errno| errno == Some(e.raw_os_error());
        // First: "fsync directory" opens the directory, which may find no
        // descriptor free; fsync itself never fails for want of one.
        if short_of_resources(&failure.source) {
            FailureKind::Resources
        } else if failure.op.starts_with("fsync") {
            FailureKind::Disk
        } else if is(Errno::NOSPC) || is(Errno::DQUOT) {
            FailureKind::Space
        } else {
            FailureKind::Disk
        }
    }
}

/// The state of a data directory, for `/ready` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    Online,
    /// Out of space: appends are refused until it has space again.
    Full,
    /// An IO error took it offline until a restart.
    Offline,
}

/// Shared by every log in one data directory: after one disk error the whole
/// directory is offline, as in Kafka (the disk is suspect, not one file).
/// Running out of descriptors or memory changes nothing here, and running
/// out of space only stops appends (see [`FailureKind`]).
pub(crate) struct DirHealth {
    dir: PathBuf,
    offline: Mutex<Option<String>>,
    /// Set by a write that found the file system full; cleared by the first
    /// look that finds [`RESUME_FREE_BYTES`] free (`check_space`).
    full: AtomicBool,
    /// Closes idle active segments of the directory's logs (the manager's
    /// `release_idle_active_segments`); none for a log opened alone.
    release: Option<Box<dyn Fn() + Send + Sync>>,
    /// Active segments reopened since `release` last ran.
    reopened: AtomicUsize,
    /// The directory's group commit (`sync.rs`), started on first use.
    syncer: OnceLock<Syncer>,
}

impl std::fmt::Debug for DirHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirHealth").field("dir", &self.dir).finish()
    }
}

impl DirHealth {
    pub(crate) fn new(dir: &Path) -> Arc<DirHealth> {
        Arc::new(DirHealth {
            dir: dir.to_path_buf(),
            offline: Mutex::new(None),
            full: AtomicBool::new(false),
            release: None,
            reopened: AtomicUsize::new(0),
            syncer: OnceLock::new(),
        })
    }

    pub(crate) fn with_release(dir: &Path, release: Box<dyn Fn() + Send + Sync>) -> Arc<DirHealth> {
        Arc::new(DirHealth {
            dir: dir.to_path_buf(),
            offline: Mutex::new(None),
            full: AtomicBool::new(false),
            release: Some(release),
            reopened: AtomicUsize::new(0),
            syncer: OnceLock::new(),
        })
    }

    /// Called after an active segment's file was opened (a log opened, or
    /// its idle active segment reopened): every eighth of
    /// `active_segments_max` of them, closes idle ones (a release leaves at
    /// most 7/8 of the bound open), so the bound holds without a scan of
    /// every log at each reopen.
    pub(crate) fn active_reopened(&self) {
        let Some(release) = &self.release else {
            return;
        };
        let reopened = self.reopened.fetch_add(1, Ordering::Relaxed) + 1;
        if reopened >= (active_segments_max() / 8).max(1) {
            self.reopened.store(0, Ordering::Relaxed);
            release();
        }
    }

    pub(crate) fn syncer(&self) -> &Syncer {
        self.syncer.get_or_init(|| Syncer::start(&self.dir))
    }

    /// (Sync rounds, appends that waited for one) of the group commit.
    pub(crate) fn sync_counts(&self) -> (u64, u64) {
        self.syncer
            .get()
            .map_or((0, 0), |s| (s.rounds(), s.requests()))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.offline.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn check(&self) -> Result<(), OfflineDir> {
        match &*self.state() {
            None => Ok(()),
            Some(reason) => Err(OfflineDir {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
        }
    }

    pub(crate) fn fail(&self, failure: &IoFailure) {
        match FailureKind::of(failure) {
            FailureKind::Resources => {
                tracing::warn!(dir = %self.dir.display(), error = %failure,
                    "out of descriptors or memory: the request fails, the directory stays online");
            }
            FailureKind::Space => {
                if !self.full.swap(true, Ordering::AcqRel) {
                    tracing::error!(dir = %self.dir.display(), error = %failure,
                        "log directory is full: appends stop until space is freed");
                }
            }
            FailureKind::Disk => self.go_offline(failure),
        }
    }

    /// Takes the directory offline whatever the error's kind.
    pub(crate) fn go_offline(&self, failure: &IoFailure) {
        let mut state = self.state();
        if state.is_none() {
            tracing::error!(dir = %self.dir.display(), error = %failure, "log directory goes offline");
            *state = Some(failure.to_string());
        }
    }

    /// Refuses appends while the directory is full. Once full, each call
    /// asks the file system (`statvfs`, cheap) whether space came back, so
    /// appends resume by themselves when retention, DeleteRecords or the
    /// operator freed some.
    pub(crate) fn check_space(&self) -> Result<(), Fault> {
        if !self.full.load(Ordering::Acquire) {
            return Ok(());
        }
        match rustix::fs::statvfs(&self.dir) {
            Ok(stat) if stat.f_bavail.saturating_mul(stat.f_frsize) >= RESUME_FREE_BYTES => {
                if self.full.swap(false, Ordering::AcqRel) {
                    tracing::info!(dir = %self.dir.display(), "log directory has space again: appends resume");
                }
                Ok(())
            }
            _ => Err(Fault::NoSpace {
                dir: self.dir.clone(),
            }),
        }
    }

    pub(crate) fn dir_state(&self) -> DirState {
        if self.check().is_err() {
            DirState::Offline
        } else if self.check_space().is_err() {
            DirState::Full
        } else {
            DirState::Online
        }
    }
}

/// State kept only for the active segment.
#[derive(Debug, Clone, Copy, Default)]
struct Active {
    cursor: IndexCursor,
    /// When the segment's age starts counting for `segment.ms`: the first
    /// batch's timestamp, or the time the segment was created or opened.
    rolling_base_ms: Option<i64>,
    /// The file's blocks up to here are reserved for appends (see
    /// `reserve_ahead`); 0 when nothing is known to be.
    reserved_to: u64,
}

struct State {
    config: LogConfig,
    /// Boxed: a B-tree leaf has room for 11 entries, and with a
    /// `Segment` (~240 bytes) in place a log of one segment cost 2.6 KiB
    /// here (26 MiB of the broker's heap at 10,000 partitions, measured).
    segments: BTreeMap<Offset, Box<Segment>>,
    active: Active,
    log_start: Offset,
    log_end: Offset,
    /// Everything below this offset has been fsynced.
    recovery_point: Offset,
    /// The rolls whose flush is still to come, oldest first: the new
    /// segment's base (the closed segments below it are to be flushed) and
    /// the roll's time. See `Log::flush_if_due`; at most
    /// [`ROLLS_PENDING_MAX`].
    rolls: std::collections::VecDeque<(Offset, i64)>,
    /// Records appended since the last flush began.
    unflushed_records: u64,
    /// Wall-clock ms of the oldest append not yet flushed.
    unflushed_since_ms: Option<i64>,
    epochs: LeaderEpochCache,
    /// Counts changes of `epochs`: an append writes the leader-epoch
    /// checkpoint after it drops the lock, so a slower writer of an older
    /// list must not replace a newer one (see `Log::write_checkpoint`).
    epochs_version: u64,
    /// Counts changes of `log_start`, for the same reason: its checkpoint
    /// is written after the change drops the lock.
    log_start_version: u64,
    /// Idempotent-producer state, rebuilt on the first append after open
    /// (so opening stays fast) from the newest segments' batch headers.
    producers: Option<ProducerState>,
    /// Counts truncations, so a flush that raced with one does not move
    /// the recovery point over bytes it did not sync.
    truncations: u64,
    /// The largest timestamp in the log and its batch's last offset; `None`
    /// inside means "no timestamps", outer `None` means "not computed yet".
    max_timestamp: Option<Option<(i64, Offset)>>,
    /// The cleaner's checkpoint: offsets below it were compacted.
    first_dirty: Offset,
    /// Offsets may be missing (compacted away) only below this; made
    /// durable before a clean commits its first swap.
    gap_horizon: Offset,
    /// False once the file system has said it cannot reserve blocks.
    can_reserve: bool,
}

impl State {
    fn active_segment(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn is_active(&self, segment: &Segment) -> bool {
        self.active_segment().base == segment.base
    }

    /// The offset after the last one a segment may hold.
    fn segment_end(&self, base: Offset) -> Offset {
        self.segments
            .range((std::ops::Bound::Excluded(base), std::ops::Bound::Unbounded))
            .next()
            .map_or(self.log_end, |(b, _)| *b)
    }

    fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// The leader-epoch entries and their version, to write to the file.
    fn epochs_to_write(&self) -> (Vec<(i32, Offset)>, u64) {
        (self.epochs.entries().to_vec(), self.epochs_version)
    }

    /// Moves the log start (up, or anywhere for a full truncation) and
    /// counts the change for [`Log::write_checkpoint`]'s version guard.
    fn set_log_start(&mut self, start: Offset) {
        self.log_start = start;
        self.log_start_version += 1;
    }

    /// The log start and its version, to write to the file.
    fn log_start_to_write(&self) -> (Offset, u64) {
        (self.log_start, self.log_start_version)
    }

    /// Drops leader-epoch entries below `start`; if that changed the list,
    /// notes its checkpoint in `due`.
    fn epochs_from_start(&mut self, start: Offset, due: &mut CheckpointsDue) {
        if self.epochs.truncate_from_start(start) {
            self.epochs_version += 1;
            due.epochs = Some(self.epochs_to_write());
        }
    }
}

/// Checkpoint writes that a change made under the state lock leaves for
/// after it ([`Log::write_due`]): each costs a file write and two fsyncs,
/// and every produce and fetch of the partition waits for that lock. The
/// versions taken with the values keep a slower writer from putting an
/// older value back over a newer one.
#[derive(Default)]
struct CheckpointsDue {
    /// The log start and its `State::log_start_version`.
    log_start: Option<(Offset, u64)>,
    /// The log start is the first segment's base, which recovery derives
    /// from the segments left, so a full disk may skip its checkpoint.
    log_start_derivable: bool,
    /// The leader-epoch entries and their `State::epochs_version`.
    epochs: Option<(Vec<(i32, Offset)>, u64)>,
    /// Entries below the log start are dropped again at open, so a full
    /// disk may skip this one (true for changes at the log start).
    epochs_tolerant: bool,
}

/// One partition's log. See the module documentation for thread-safety.
pub struct Log {
    dir: PathBuf,
    state: RwLock<State>,
    health: Arc<DirHealth>,
    high_watermark: AtomicI64,
    closed: AtomicBool,
    /// Serializes flushes so the recovery point only moves forward.
    flush_lock: Mutex<()>,
    /// Held while the cleaner works on this log (one cleaner at a time) and
    /// by truncation, which must not shrink a segment the cleaner maps.
    cleaning: Mutex<()>,
    /// What the checkpoint files hold, as this process last wrote (or, at
    /// open, found) them: [`Log::checkpoint`] rewrites only a file whose
    /// value changed (with 10,000 idle partitions, rewriting them all every
    /// interval was 30,000 file replacements and their fsyncs a minute).
    /// Every write of these files goes through [`Log::write_checkpoint`],
    /// which also serializes them.
    on_disk: Mutex<OnDisk>,
    /// A roll created a segment file and did not fsync the directory; the
    /// next flush does, before it moves the recovery point.
    dir_unsynced: AtomicBool,
    /// Runs before each log-start checkpoint write: a test blocks it to
    /// show what may run meanwhile.
    #[cfg(test)]
    before_log_start_write: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// The values in a log's checkpoint files; `None` when not known (a write
/// in progress or failed).
struct OnDisk {
    recovery_point: Option<Offset>,
    log_start: Option<Offset>,
    epochs: Option<Vec<(i32, Offset)>>,
    /// The `State::epochs_version` of the newest list written.
    epochs_version: u64,
    /// The `State::log_start_version` of the newest log start written.
    log_start_version: u64,
}

/// How far a flush reaches, noted before its syncs (`Log::flush_below`,
/// the syncer's round) and applied after them (`Log::sync_finish`).
pub(crate) struct FlushMark {
    target: Offset,
    records: u64,
    truncations: u64,
    active_base: Offset,
}

/// Which checkpoint file a write is for.
enum CheckpointFile<'a> {
    RecoveryPoint(Offset),
    /// The log start and the `State::log_start_version` it was taken at.
    LogStart(Offset, u64),
    /// The entries and the `State::epochs_version` they were taken at.
    Epochs(&'a [(i32, Offset)], u64),
}

/// The file operations of a compaction swap, in order; a test can stop a
/// clean just before one of them to simulate a crash there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStep {
    /// The cleaned file is written and fsynced; next: commit it by renaming
    /// it to the swap name.
    Commit,
    /// Next: delete the replaced segments.
    DeleteReplaced,
    /// Next: rename the swap file to the segment name.
    Rename,
    /// Next: write the new segment's indexes.
    WriteIndexes,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).finish()
    }
}

/// What a scrub pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScrubReport {
    pub segments_checked: u64,
    pub bytes_checked: u64,
    /// (segment base offset, position) of each corrupt batch found.
    pub corrupt: Vec<(Offset, Position)>,
}

impl Log {
    /// Opens (creating if needed) the partition log in `dir`, recovering it
    /// if it was not closed cleanly.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, LogError> {
        Log::open_with(dir, config, DirHealth::new(dir))
    }

    pub(crate) fn open_with(
        dir: &Path,
        config: LogConfig,
        health: Arc<DirHealth>,
    ) -> Result<Log, LogError> {
        health.check()?;
        let result = open_state(dir, config);
        if let Err(LogError::Io(failure)) = &result {
            health.fail(failure);
        }
        let state = result?;
        // Opening left the files holding the state's values (or absent,
        // which reads as the same defaults).
        let on_disk = OnDisk {
            recovery_point: Some(state.recovery_point),
            log_start: Some(state.log_start),
            epochs: Some(state.epochs.entries().to_vec()),
            epochs_version: state.epochs_version,
            log_start_version: state.log_start_version,
        };
        Ok(Log {
            dir: dir.to_path_buf(),
            high_watermark: AtomicI64::new(state.log_end.0),
            state: RwLock::new(state),
            health,
            closed: AtomicBool::new(false),
            flush_lock: Mutex::new(()),
            cleaning: Mutex::new(()),
            on_disk: Mutex::new(on_disk),
            dir_unsynced: AtomicBool::new(false),
            #[cfg(test)]
            before_log_start_write: Mutex::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // Writers keep the state consistent at every point where they can
        // fail, so a panic elsewhere does not make it unreadable.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn check_usable(&self) -> Result<(), Fault> {
        self.health.check()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Fault::Closed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Takes the directory offline on an IO failure and passes the result on.
    fn guard<T>(&self, result: Result<T, Fault>) -> Result<T, Fault> {
        if let Err(Fault::Io(failure)) = &result {
            self.health.fail(failure);
        }
        result
    }

    /// Runs `f` with a segment's handles, opening them first if needed (and
    /// closing the least recently used closed segment if over the bound).
    fn with_loaded<R>(
        &self,
        state: &State,
        segment: &Segment,
        f: impl FnOnce(&Loaded) -> Result<R, Fault>,
    ) -> Result<R, Fault> {
        // A closed log's files must stay as the clean close left them.
        if self.closed.load(Ordering::Acquire) {
            return Err(Fault::Closed {
                dir: self.dir.clone(),
            });
        }
        segment
            .last_used
            .store(USE_CLOCK.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        if !segment.is_loaded() {
            self.evict_idle(state, segment.base);
        }
        let mut guard = segment.lock();
        let mut reopened_active = false;
        let loaded = match &mut *guard {
            Some(loaded) => loaded,
            slot @ None => {
                let active = state.is_active(segment);
                let loaded = segment.load(
                    state.segment_end(segment.base),
                    active,
                    state.config.index_interval_bytes,
                    state.config.segment_index_bytes,
                );
                let loaded = self.guard(loaded.map_err(Fault::from))?;
                if !active {
                    LOADED_SEGMENTS.fetch_add(1, Ordering::AcqRel);
                }
                reopened_active = active;
                slot.insert(loaded)
            }
        };
        let result = f(loaded);
        drop(guard);
        if reopened_active {
            // This log's lock is held: the release skips it (`try_read`).
            self.health.active_reopened();
        }
        result
    }

    /// When the active segment's handles were last used, if they are open.
    /// None also when the log is busy: the caller may hold this very log's
    /// lock (`DirHealth::active_reopened`), and a busy log is in use anyway.
    pub(crate) fn active_last_used(&self) -> Option<u64> {
        let state = match self.state.try_read() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let active = state.active_segment();
        active
            .is_loaded()
            .then(|| active.last_used.load(Ordering::Relaxed))
    }

    /// Closes the active segment's file, first writing its indexes (kept in
    /// memory while it is active) to their files, without fsync as at a
    /// roll (recovery rebuilds an active segment's indexes after a crash),
    /// so that reopening it on the next use finds them as they were. Gives
    /// up rather than wait for an append or a read, and keeps the handles
    /// if the indexes cannot be written (a full disk). True if it closed.
    pub(crate) fn release_active(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let Ok(mut state) = self.state.try_write() else {
            return false;
        };
        let released = {
            let segment = state.active_segment();
            let Some(mut guard) = segment.try_lock() else {
                return false;
            };
            let Some(loaded) = guard.as_mut() else {
                return false;
            };
            let written = release_reserve(&loaded.file)
                .and_then(|()| loaded.offset_index.file_mut().write_out(false))
                .and_then(|()| loaded.time_index.file_mut().write_out(false));
            if let Err(error) = written {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot close an idle active segment");
                return false;
            }
            guard.take().is_some()
        };
        // The truncate gave back the blocks reserved ahead of the appends.
        state.active.reserved_to = 0;
        released
    }

    /// Closes the handles of this log's least recently used closed segment
    /// when the process holds too many. Never blocks on a busy segment.
    fn evict_idle(&self, state: &State, keep: Offset) {
        if LOADED_SEGMENTS.load(Ordering::Acquire) < loaded_segments_max() {
            return;
        }
        let active = state.active_segment().base;
        let victim = state
            .segments
            .values()
            .filter(|s| s.base != active && s.base != keep && s.is_loaded())
            .min_by_key(|s| s.last_used.load(Ordering::Relaxed));
        if victim.is_some_and(|s| s.try_unload()) {
            LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Appends whole record batches as one write. Every batch is validated
    /// first; an invalid one rejects the whole append and leaves the log
    /// unchanged. Offsets are assigned by rewriting each batch's base offset,
    /// and `leader_epoch` is stamped into each.
    ///
    /// With `flush.messages` set this may fsync, so like `flush` it must not
    /// run on an async worker thread. It fsyncs on its own; concurrent
    /// appends share syncs through [`Log::append_with_sync`].
    pub fn append(
        &self,
        batches: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let (info, flush_due) = self.append_unsynced(batches, leader_epoch, now_ms)?;
        if flush_due {
            self.flush_below(None)?;
        }
        Ok(info)
    }

    /// Appends as [`Log::append`], but never waits for the disk: when the
    /// flush policy asks for a flush, the directory's syncer makes the log
    /// durable to its end in its next round, shared with every other append
    /// waiting then (group commit, `sync.rs`), and calls `done` after it;
    /// otherwise `done` runs at once. `done` runs only if the append
    /// succeeded, and the answer to the producer must wait for it.
    pub fn append_with_sync(
        self: &Arc<Self>,
        batches: &[u8],
        leader_epoch: i32,
        now_ms: i64,
        done: OnDurable,
    ) -> Result<AppendInfo, AppendError> {
        let (info, flush_due) = self.append_unsynced(batches, leader_epoch, now_ms)?;
        if flush_due {
            self.health.syncer().submit(self.clone(), done);
        } else {
            done(Ok(()));
        }
        Ok(info)
    }

    /// Sync rounds the directory's syncer has finished (0 if it never ran).
    pub fn sync_rounds(&self) -> u64 {
        self.health.sync_counts().0
    }

    /// The append itself; true if the flush policy asks for a flush now.
    fn append_unsynced(
        &self,
        batches: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, bool), AppendError> {
        self.check_usable()?;
        let (max_message_bytes, compact) = {
            let state = self.read_state();
            (state.config.max_message_bytes, state.config.cleanup_compact)
        };
        let mut views = Vec::new();
        for (index, item) in BatchIter::new(batches).enumerate() {
            let (_, view) = item.map_err(|source| AppendError::InvalidBatch { index, source })?;
            if view.total_len() > max_message_bytes as usize {
                return Err(AppendError::TooLarge {
                    size: view.total_len(),
                    max: max_message_bytes,
                });
            }
            view.validate()
                .map_err(|source| AppendError::InvalidBatch { index, source })?;
            // A batch of a few KiB may inflate to gigabytes; refused here,
            // it never reaches a decoder that would have to skip it.
            check_produced(&view, cleaner::INFLATED_BATCH_MAX).map_err(|source| match source {
                ProducedBatchError::Inflate(CompressionError::TooLarge { limit, .. }) => {
                    AppendError::InflatesTooLarge { index, limit }
                }
                ProducedBatchError::Inflate(error) => AppendError::InvalidRecords {
                    index,
                    reason: error.to_string(),
                },
                source => AppendError::InvalidRecord { index, source },
            })?;
            if compact {
                cleaner::check_keys(&view).map_err(|reason| match reason {
                    KeyCheck::Missing(records) => AppendError::MissingKey { index, records },
                    KeyCheck::Unreadable(reason) => AppendError::InvalidRecords { index, reason },
                })?;
            }
            views.push(view);
        }
        if views.is_empty() {
            return Err(AppendError::Empty);
        }
        let total_bytes: u64 = views.iter().map(|v| v.total_len() as u64).sum();
        let offsets_needed: i64 = views
            .iter()
            .map(|v| i64::from(v.last_offset_delta()) + 1)
            .sum();
        let record_count: u64 = views.iter().map(|v| v.record_count() as u64).sum();

        let mut state = self.write_state();
        self.check_usable()?;
        self.health.check_space()?;
        let log_end = state.log_end;
        if log_end.0.checked_add(offsets_needed).is_none() || offsets_needed > i64::from(u32::MAX) {
            return Err(AppendError::OffsetOverflow { log_end });
        }
        if total_bytes > u64::from(u32::MAX) {
            return Err(AppendError::TooLarge {
                size: usize::try_from(total_bytes).unwrap_or(usize::MAX),
                max: u32::MAX,
            });
        }
        if state.producers.is_none() {
            let rebuilt = self.rebuild_producer_state(&state);
            state.producers = Some(self.guard(rebuilt)?);
        }
        let fields: Vec<ProducerFields> = views.iter().map(producer_fields).collect();
        if let ([only], Some(producers)) = (fields.as_slice(), &state.producers)
            && let Some(original) = producers.find_duplicate(only)
        {
            // Kafka's answer to a retried batch: success, with the offsets
            // it got the first time, and nothing appended.
            tracing::debug!(
                dir = %self.dir.display(), producer_id = only.producer_id,
                sequence = only.base_sequence, offset = %original.first_offset,
                "duplicate batch from an idempotent producer"
            );
            // The original may still wait for its sync: the retry's answer
            // must not come before it is durable.
            let flush_due = state.config.flush_messages.is_some()
                && state.recovery_point <= original.last_offset;
            let info = AppendInfo {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                log_append_time_ms: original.log_append_time_ms,
                log_start_offset: state.log_start,
                record_count: 0,
            };
            return Ok((info, flush_due));
        }
        if let Some(producers) = &state.producers {
            producers.check(&fields).map_err(|error| match error {
                SequenceError::StaleEpoch {
                    producer_id,
                    epoch,
                    current,
                } => AppendError::InvalidProducerEpoch {
                    producer_id,
                    epoch,
                    current,
                },
                SequenceError::OutOfOrder {
                    producer_id,
                    expected,
                    received,
                } => AppendError::OutOfOrderSequence {
                    producer_id,
                    expected,
                    received,
                },
            })?;
        }
        self.guard(self.maybe_roll(&mut state, total_bytes, offsets_needed, now_ms))?;

        let log_append_time_ms = match state.config.message_timestamp_type {
            TimestampType::LogAppendTime => now_ms,
            TimestampType::CreateTime => -1,
        };
        let prefix_len = if log_append_time_ms >= 0 {
            BATCH_HEADER_LEN
        } else {
            REWRITTEN_PREFIX_LEN
        };
        let mut headers = vec![[0u8; BATCH_HEADER_LEN]; views.len()];
        let mut next = log_end;
        for (header, view) in headers.iter_mut().zip(&views) {
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

        let segment = state.active_segment();
        let start_position = segment.size;
        let file = self.guard(self.with_loaded(&state, segment, |l| Ok(l.file.clone())))?;
        reserve_ahead(&mut state, &file, start_position, total_bytes);
        let mut slices = Vec::with_capacity(2 * views.len().min(BATCHES_PER_WRITE_MAX));
        for (chunk_views, chunk_headers) in views
            .chunks(BATCHES_PER_WRITE_MAX)
            .zip(headers.chunks(BATCHES_PER_WRITE_MAX))
        {
            slices.clear();
            for (view, header) in chunk_views.iter().zip(chunk_headers) {
                slices.push(IoSlice::new(&header[..prefix_len]));
                slices.push(IoSlice::new(&view.bytes()[prefix_len..]));
            }
            if let Err(source) = write_all_vectored(&file, &mut slices) {
                let failure = IoFailure {
                    op: "write",
                    // Built only on failure: formatting a path per append
                    // costs more than the rest of the bookkeeping.
                    path: state.active_segment().path(LOG_SUFFIX),
                    source,
                };
                // The file may hold part of the append; cut it back so a
                // restart does not find a torn batch. A full disk only
                // stops appends; other errors take the directory offline.
                self.health.fail(&failure);
                if let Err(source) = file.set_len(start_position) {
                    // A torn batch past the segment's size is never read and
                    // recovery cuts it, but a file that cannot be cut is a
                    // disk fault whatever the write's error was.
                    self.health.go_offline(&IoFailure {
                        op: "truncate",
                        path: failure.path.clone(),
                        source,
                    });
                }
                return Err(AppendError::Io(failure));
            }
        }

        // Index the new batches exactly as a rebuild would.
        let interval = state.config.index_interval_bytes;
        let mut cursor = state.active.cursor;
        let mut position = start_position;
        let mut batch_base = log_end;
        let mut entries = Vec::new();
        for (view, header) in views.iter().zip(&headers) {
            let last = Offset(batch_base.0 + i64::from(view.last_offset_delta()));
            let max_ts = if log_append_time_ms >= 0 {
                log_append_time_ms
            } else {
                view.max_timestamp()
            };
            let (due, time_entry) = cursor.step(interval, view.total_len() as u64, last, max_ts);
            if due {
                entries.push((batch_base, Position(position), time_entry));
            }
            debug_assert_eq!(header[..8], batch_base.0.to_be_bytes());
            position += view.total_len() as u64;
            batch_base = Offset(last.0 + 1);
        }
        let first_ts = if log_append_time_ms >= 0 {
            log_append_time_ms
        } else {
            views[0].max_timestamp()
        };
        {
            let segment = state.active_segment();
            let mut guard = segment.lock();
            if let Some(loaded) = guard.as_mut() {
                for (offset, position, time_entry) in entries {
                    // `maybe_roll` leaves room for one entry per batch, except
                    // when a single append overfills an empty segment's tiny
                    // index; a dropped entry only lengthens later lookups'
                    // header walk, it never makes them wrong.
                    loaded.offset_index.append(offset, position);
                    if let Some((t, o)) = time_entry {
                        loaded.time_index.maybe_append(t, o);
                    }
                }
            }
        }
        if let Some(producers) = state.producers.as_mut() {
            let mut first = log_end;
            for (mut f, view) in fields.into_iter().zip(&views) {
                let last = Offset(first.0 + i64::from(view.last_offset_delta()));
                if log_append_time_ms >= 0 {
                    f.log_append_time_ms = log_append_time_ms;
                }
                producers.record(&f, first, last);
                first = Offset(last.0 + 1);
            }
        }
        state.active.cursor = cursor;
        state
            .active
            .rolling_base_ms
            .get_or_insert(if first_ts >= 0 { first_ts } else { now_ms });
        state.active_segment_mut().size = position;
        state.log_end = next;
        if let (Some(known), Some((t, o))) = (state.max_timestamp, cursor.max_timestamp)
            && known.is_none_or(|(kt, _)| t > kt)
        {
            state.max_timestamp = Some(Some((t, o)));
        }
        // A new leader epoch's checkpoint costs two fsyncs, so never under
        // the lock. Every flush writes it before it moves the recovery
        // point (`flush_below`), and so does the periodic `checkpoint`:
        // no data a flush made durable outruns its epoch. With a flush
        // policy (the append then runs on a blocking thread and may fsync)
        // it is written here too, before the append is acknowledged, as it
        // was under the lock. Without one the append stays a page-cache
        // write, fit for an async worker; its data is not durable at the
        // acknowledgement either, and a crash that keeps data the kernel
        // wrote back but not the entry costs the epoch's start offset only
        // (the broker has one epoch, whose end is always the log end).
        let epochs_changed = state.epochs.assign(leader_epoch, log_end);
        let epochs_to_write = epochs_changed
            .then(|| {
                state.epochs_version += 1;
                state.epochs_to_write()
            })
            .filter(|_| state.config.flush_messages.is_some());
        state.unflushed_records += record_count;
        state.unflushed_since_ms.get_or_insert(now_ms);
        let flush_due = state
            .config
            .flush_messages
            .is_some_and(|n| state.unflushed_records >= n);
        let info = AppendInfo {
            base_offset: log_end,
            last_offset: Offset(next.0 - 1),
            log_append_time_ms,
            log_start_offset: state.log_start,
            record_count,
        };
        drop(state);
        if let Some((epochs, version)) = epochs_to_write {
            let written = self.write_checkpoint(CheckpointFile::Epochs(&epochs, version), false);
            self.guard(written.map_err(Fault::from))?;
        }
        Ok((info, flush_due))
    }

    /// Rebuilds producer state: from the newest snapshot at or below the log
    /// end and the batch headers after it, or, in a log with no readable
    /// snapshot (one written before snapshots existed), from the headers of
    /// the two newest segments, which hold a producer's recent batches
    /// unless a roll happened between a batch and its retry.
    fn rebuild_producer_state(&self, state: &State) -> Result<ProducerState, Fault> {
        const SEGMENTS: usize = 2;
        let loaded = snapshot::load_newest(&self.dir, state.log_end)
            .map_err(io_failure("read producer snapshots in", &self.dir))?;
        let (from, mut producers) = match loaded {
            Some((offset, producers)) => (offset, producers),
            None => {
                let from = state
                    .segments
                    .values()
                    .nth_back(SEGMENTS - 1)
                    .or(state.segments.values().next());
                (from.map_or(Offset(0), |s| s.base), ProducerState::default())
            }
        };
        // The segments holding batches at or after `from`.
        let first = state
            .segments
            .range(..=from)
            .next_back()
            .map_or(from, |(base, _)| *base);
        for segment in state.segments.range(first..).map(|(_, s)| s) {
            let size = segment.size;
            self.with_loaded(state, segment, |loaded| {
                let mut position = 0;
                while position < size {
                    let header = segment.header_at(&loaded.file, position, size)?;
                    if header.base >= from {
                        producers.record(&header.producer, header.base, header.last);
                    }
                    position += header.len;
                }
                Ok(())
            })?;
        }
        Ok(producers)
    }

    /// Rolls the active segment if this append would not fit in it.
    fn maybe_roll(
        &self,
        state: &mut State,
        append_bytes: u64,
        append_offsets: i64,
        now_ms: i64,
    ) -> Result<(), Fault> {
        let segment = state.active_segment();
        if segment.size == 0 {
            return Ok(());
        }
        let segment_bytes = state.config.segment_bytes.clamp(1, SEGMENT_BYTES_MAX);
        let too_big = segment.size + append_bytes > segment_bytes;
        // A compacted log also rolls at `max.compaction.lag.ms`, since the
        // active segment is never compacted (Kafka's KIP-354).
        let max_age = if state.config.cleanup_compact {
            state
                .config
                .segment_ms
                .min(state.config.max_compaction_lag_ms)
        } else {
            state.config.segment_ms
        };
        let too_old = max_age >= 0
            && state
                .active
                .rolling_base_ms
                .is_some_and(|base| now_ms.saturating_sub(base) > max_age);
        let offsets_overflow =
            state.log_end.0 + append_offsets - 1 - segment.base.0 > i64::from(u32::MAX);
        // Each batch may add one entry to each index.
        let batches_max = append_bytes / BATCH_HEADER_LEN as u64 + 1;
        let index_full = self.with_loaded(state, segment, |l| {
            Ok((l.offset_index.file().free_entries() as u64) < batches_max
                || (l.time_index.file().free_entries() as u64) < batches_max + 1)
        })?;
        if too_big || too_old || offsets_overflow || index_full {
            tracing::debug!(
                dir = %self.dir.display(), too_big, too_old, offsets_overflow, index_full,
                "rolling segment"
            );
            self.roll(state, now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment (final time entry, trimmed read-only
    /// indexes) and starts a new one at the log end offset, always in a new
    /// file: bytes a fetch was sent from are never written over (see
    /// `create_segment`).
    fn roll(&self, state: &mut State, now_ms: i64) -> Result<(), Fault> {
        let new_base = state.log_end;
        if let Some(producers) = &state.producers
            && let Err(error) = snapshot::write(&self.dir, new_base, producers)
        {
            // Only a shortcut: without it the state is rebuilt from an
            // older snapshot and more headers.
            tracing::warn!(dir = %self.dir.display(), %error, "cannot write a producer-state snapshot");
        }
        let cursor = state.active.cursor;
        {
            let segment = state.active_segment();
            let mut guard = segment.lock();
            if let Some(loaded) = guard.take() {
                let Loaded {
                    file,
                    offset_index,
                    mut time_index,
                } = loaded;
                release_reserve(&file)
                    .map_err(io_failure("truncate", &segment.path(LOG_SUFFIX)))?;
                if let Some((t, o)) = cursor.max_timestamp {
                    time_index.maybe_append(t, o);
                }
                let offset_index = offset_index
                    .into_read_only()
                    .map_err(io_failure("trim", &segment.path(INDEX_SUFFIX)))?;
                let time_index = time_index
                    .into_read_only()
                    .map_err(io_failure("trim", &segment.path(TIME_INDEX_SUFFIX)))?;
                *guard = Some(Loaded {
                    file,
                    offset_index,
                    time_index,
                });
                LOADED_SEGMENTS.fetch_add(1, Ordering::AcqRel);
            }
        }
        // No directory fsync here: it would run under the state lock that
        // every produce and fetch of the partition takes, and on an async
        // worker when the append runs on one. A crash before the next flush
        // may lose the new file's directory entry, and so the file; nothing
        // in it was flushed (the flush that moves the recovery point over it
        // syncs the directory first), so recovery finds a log that ends at
        // `new_base` and acknowledged-but-unflushed data is all it loses, as
        // it may lose anything in the page cache.
        self.dir_unsynced.store(true, Ordering::Release);
        let segment = create_segment(&self.dir, new_base, false)?;
        state.segments.insert(new_base, segment);
        state.active = Active::default();
        let flushed_to = state.recovery_point;
        state.rolls.retain(|(base, _)| *base > flushed_to);
        if state.rolls.len() == ROLLS_PENDING_MAX {
            // The next roll's flush covers this one's segments too.
            state.rolls.pop_front();
        }
        state.rolls.push_back((new_base, now_ms));
        let active = state.active_segment();
        self.with_loaded(state, active, |_| Ok(()))?;
        tracing::info!(dir = %self.dir.display(), base = %new_base, now_ms, "rolled to a new segment");
        Ok(())
    }

    /// Reads whole batches starting with the one holding `start`, up to
    /// `max_bytes` but always at least that first batch, and never a batch
    /// that reaches `max_offset` (exclusive, e.g. the high watermark).
    pub fn read(
        &self,
        start: Offset,
        max_bytes: u32,
        max_offset: Offset,
    ) -> Result<ReadInfo, ReadError> {
        self.check_usable()?;
        let state = self.read_state();
        let mut info = ReadInfo {
            slices: Vec::new(),
            high_watermark: self.high_watermark(),
            log_start_offset: state.log_start,
            log_end_offset: state.log_end,
            next_offset: None,
        };
        if start < state.log_start || start > state.log_end {
            return Err(ReadError::OffsetOutOfRange {
                requested: start,
                log_start: state.log_start,
                log_end: state.log_end,
            });
        }
        let upper = max_offset.min(state.log_end);
        if start >= upper {
            return Ok(info);
        }
        let first_base = state
            .segments
            .range(..=start)
            .next_back()
            .map_or(start, |(b, _)| *b);
        for segment in state.segments.range(first_base..).map(|(_, s)| s) {
            if segment.base >= upper {
                break;
            }
            let slice = self.with_loaded(&state, segment, |loaded| {
                read_segment(&state, segment, loaded, start, max_bytes, upper)
            });
            if let Some((slice, next_offset)) = self.guard(slice)? {
                info.slices.push(slice);
                info.next_offset = next_offset;
                break;
            }
        }
        Ok(info)
    }

    /// The first batch whose largest timestamp is at least `timestamp_ms`:
    /// its base offset (or the log start, if later) and that timestamp.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, ReadError> {
        self.check_usable()?;
        let state = self.read_state();
        let first_base = state
            .segments
            .range(..=state.log_start)
            .next_back()
            .map_or(state.log_start, |(b, _)| *b);
        for segment in state.segments.range(first_base..).map(|(_, s)| s) {
            let active_max = state.active.cursor.max_timestamp;
            let is_active = state.is_active(segment);
            let found = self.with_loaded(&state, segment, |loaded| {
                let segment_max = if is_active {
                    active_max
                } else {
                    loaded.time_index.last()
                };
                if segment_max.is_none_or(|(t, _)| t < timestamp_ms) {
                    return Ok(None);
                }
                segment.find_timestamp(loaded, timestamp_ms, state.log_start, segment.size)
            });
            if let Some(found) = self.guard(found)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the last offset of its batch.
    pub fn max_timestamp(&self) -> Option<(Offset, i64)> {
        if let Some(known) = self.read_state().max_timestamp {
            return known.map(|(t, o)| (o, t));
        }
        let mut state = self.write_state();
        let mut best: Option<(i64, Offset)> = state.active.cursor.max_timestamp;
        for segment in state.segments.values() {
            if state.is_active(segment) {
                continue;
            }
            if let Ok(Some((t, o))) = self.with_loaded(&state, segment, |l| Ok(l.time_index.last()))
                && o >= state.log_start
                && best.is_none_or(|(bt, _)| t > bt)
            {
                best = Some((t, o));
            }
        }
        state.max_timestamp = Some(best);
        best.map(|(t, o)| (o, t))
    }

    pub fn log_start_offset(&self) -> Offset {
        self.read_state().log_start
    }

    pub fn log_end_offset(&self) -> Offset {
        self.read_state().log_end
    }

    pub fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark.load(Ordering::Acquire))
    }

    /// Sets the high watermark, clamped to `[log start, log end]`.
    pub fn set_high_watermark(&self, offset: Offset) {
        let state = self.read_state();
        let clamped = offset.max(state.log_start).min(state.log_end);
        self.high_watermark.store(clamped.0, Ordering::Release);
    }

    /// Raises the high watermark to `offset` (clamped to the log), never
    /// lowers it: appends whose syncs end out of order each raise it to
    /// their own end.
    pub fn raise_high_watermark(&self, offset: Offset) {
        let state = self.read_state();
        let clamped = offset.max(state.log_start).min(state.log_end);
        self.high_watermark.fetch_max(clamped.0, Ordering::AcqRel);
    }

    /// The offset up to which everything is known to be on disk.
    pub fn recovery_point(&self) -> Offset {
        self.read_state().recovery_point
    }

    pub fn size_bytes(&self) -> u64 {
        self.read_state().size_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.read_state().segments.len()
    }

    pub fn config(&self) -> LogConfig {
        self.read_state().config.clone()
    }

    /// Applies new settings; they take effect from the next operation.
    pub fn update_config(&self, config: LogConfig) {
        self.write_state().config = config;
    }

    /// Leader-epoch lookup for OffsetForLeaderEpoch: the largest epoch at or
    /// below `epoch` and the offset where the next one began.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, Offset)> {
        let state = self.read_state();
        state.epochs.end_offset_for(epoch, state.log_end)
    }

    /// Fsyncs every segment that holds unflushed data and advances the
    /// recovery point. Blocks on the disk: never call it on an async worker.
    pub fn flush(&self) -> Result<(), LogError> {
        self.check_usable()?;
        self.flush_below(None).map_err(LogError::from)
    }

    /// Fsyncs the segments from the recovery point on (only those below
    /// `limit`, a segment's base, if given) and the index files of the
    /// closed ones, then advances the recovery point to the end of what it
    /// synced.
    fn flush_below(&self, limit: Option<Offset>) -> Result<(), Fault> {
        let _serial = self.lock_flush();
        let (files, indexes, mark, epochs) = {
            let state = self.read_state();
            let Some(mark) = Self::mark(&state, limit) else {
                return Ok(());
            };
            let from = state
                .segments
                .range(..=state.recovery_point)
                .next_back()
                .map_or(Offset(0), |(b, _)| *b);
            let mut files = Vec::new();
            let mut indexes = Vec::new();
            for segment in state.segments.range(from..).map(|(_, s)| s) {
                if segment.base >= mark.target {
                    break;
                }
                let file = self.with_loaded(&state, segment, |l| Ok(l.file.clone()));
                files.push((self.guard(file)?, segment.path(LOG_SUFFIX)));
                // A closed segment's indexes may be as its roll left them,
                // unsynced; the active one's are rebuilt by recovery.
                if !state.is_active(segment) {
                    indexes.push(segment.path(INDEX_SUFFIX));
                    indexes.push(segment.path(TIME_INDEX_SUFFIX));
                }
            }
            (files, indexes, mark, state.epochs_to_write())
        };
        for (file, path) in files {
            // No retry after a failed fsync: the kernel may already have
            // dropped the dirty pages, so the directory goes offline.
            let synced = file.sync_data().map_err(io_failure("fsync", &path));
            self.guard(synced.map_err(Fault::from))?;
        }
        for path in indexes {
            // Opened by name, without the lock: retention or a truncation
            // may have deleted the segment meanwhile, and a deleted index
            // needs no sync (one missing at open is rebuilt anyway).
            let synced = match IndexFile::sync_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other.map_err(io_failure("fsync", &path)),
            };
            self.guard(synced.map_err(Fault::from))?;
        }
        // Every file synced above was created before the state snapshot, so
        // a roll that created one without a directory fsync set the flag
        // before this swap, and this sync covers its directory entry. A roll
        // after the swap sets it again for the next flush.
        if self.dir_unsynced.swap(false, Ordering::AcqRel)
            && let Err(failure) = sync_dir(&self.dir)
        {
            self.dir_unsynced.store(true, Ordering::Release);
            self.guard(Err(Fault::from(failure)))?;
        }
        // The epochs of the data just synced are in the checkpoint before
        // the recovery point covers that data (an append writes it after
        // dropping the lock, so a flush may come first); unchanged, this
        // writes nothing.
        let written = self.write_checkpoint(CheckpointFile::Epochs(&epochs.0, epochs.1), true);
        self.guard(written.map_err(Fault::from))?;
        self.sync_finish(mark);
        Ok(())
    }

    /// Serializes flushes (this lock, then the state's), so the recovery
    /// point only moves forward.
    pub(crate) fn lock_flush(&self) -> std::sync::MutexGuard<'_, ()> {
        self.flush_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How far a flush to the log end reaches now, for the syncer's round;
    /// `None` if the recovery point is there already.
    pub(crate) fn sync_mark(&self) -> Option<FlushMark> {
        Self::mark(&self.read_state(), None)
    }

    fn mark(state: &State, limit: Option<Offset>) -> Option<FlushMark> {
        let target = limit.map_or(state.log_end, |l| l.min(state.log_end));
        (state.recovery_point < target).then(|| FlushMark {
            target,
            // A flush of rolled segments leaves the active one's
            // records unflushed, as far as the flush policy counts.
            records: if limit.is_some() {
                0
            } else {
                state.unflushed_records
            },
            truncations: state.truncations,
            active_base: state.active_segment().base,
        })
    }

    /// After everything below `mark.target` (and the closed segments'
    /// indexes) is durable: advances the recovery point.
    pub(crate) fn sync_finish(&self, mark: FlushMark) {
        let mut state = self.write_state();
        if state.truncations != mark.truncations {
            return;
        }
        // If the segment that was active rolled meanwhile, its indexes were
        // written after the syncs above: stop at its base, so recovery
        // still rebuilds them; the next flush goes further.
        let target = if state.active_segment().base == mark.active_base {
            mark.target
        } else {
            mark.target.min(mark.active_base)
        };
        state.recovery_point = state.recovery_point.max(target);
        state.unflushed_records = state.unflushed_records.saturating_sub(mark.records);
        if state.recovery_point >= state.log_end {
            state.unflushed_since_ms = None;
        }
    }

    pub(crate) fn health_check(&self) -> Result<(), OfflineDir> {
        self.health.check()
    }

    /// A failed sync of the directory: it goes offline.
    pub(crate) fn fail_dir(&self, failure: &IoFailure) {
        self.health.fail(failure);
    }

    /// Flushes if `flush.ms` has passed since the oldest unflushed append,
    /// or else the segments rolls closed [`ROLL_FLUSH_DELAY_MS`] ago or
    /// earlier; true if it flushed. The manager's flusher thread calls it,
    /// off the request path.
    ///
    /// The flush after a roll is Kafka's: the roll schedules a flush of the
    /// closed segment and its indexes, and the recovery point (written to
    /// its checkpoint at once) moves to the new segment's base. Without it
    /// the recovery point moved only under a flush policy, so recovery
    /// after a crash re-checked everything written since the last clean
    /// start, and one bad batch there cut every segment after it. Now one
    /// bad batch can cost only data no flush has made durable.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool, LogError> {
        let (due, rolled) = {
            let state = self.read_state();
            let due = match (state.config.flush_ms, state.unflushed_since_ms) {
                (Some(ms), Some(since)) => {
                    now_ms.saturating_sub(since) >= i64::try_from(ms).unwrap_or(i64::MAX)
                }
                _ => false,
            };
            let rolled = state
                .rolls
                .iter()
                .rev()
                .find(|(_, at)| now_ms.saturating_sub(*at) >= ROLL_FLUSH_DELAY_MS)
                .map(|(base, _)| *base)
                .filter(|base| *base > state.recovery_point);
            (due, rolled)
        };
        if due {
            self.flush()?;
        } else if let Some(rolled) = rolled {
            self.check_usable()?;
            self.flush_below(Some(rolled))?;
        }
        if rolled.is_some() {
            // A recovery point only counts after a crash once it is in its
            // checkpoint file, otherwise written every minute (a flush by
            // policy leaves it to that: it may run every few ms).
            let recovery_point = self.read_state().recovery_point;
            let written =
                self.write_checkpoint(CheckpointFile::RecoveryPoint(recovery_point), true);
            self.guard(written.map_err(Fault::from))?;
        }
        Ok(due || rolled.is_some())
    }

    /// Writes the recovery-point, log-start and leader-epoch checkpoints
    /// whose values changed since they were last written.
    pub fn checkpoint(&self) -> Result<(), LogError> {
        self.check_usable()?;
        let (recovery_point, log_start, epochs) = {
            let state = self.read_state();
            (
                state.recovery_point,
                state.log_start_to_write(),
                state.epochs_to_write(),
            )
        };
        let written = self
            .write_checkpoint(CheckpointFile::RecoveryPoint(recovery_point), true)
            .and_then(|()| {
                self.write_checkpoint(CheckpointFile::LogStart(log_start.0, log_start.1), true)
            })
            .and_then(|()| {
                self.write_checkpoint(CheckpointFile::Epochs(&epochs.0, epochs.1), true)
            });
        self.guard(written.map_err(Fault::from))?;
        Ok(())
    }

    /// Writes one checkpoint file and records what it holds; with
    /// `if_changed`, only when its value differs from the recorded one.
    fn write_checkpoint(
        &self,
        file: CheckpointFile<'_>,
        if_changed: bool,
    ) -> Result<(), IoFailure> {
        let mut on_disk = self.on_disk.lock().unwrap_or_else(|p| p.into_inner());
        match file {
            CheckpointFile::RecoveryPoint(value) => {
                record_write(&mut on_disk.recovery_point, value, if_changed, |v| {
                    checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, *v)
                })
            }
            CheckpointFile::LogStart(value, version) => {
                // As for the epochs: a full truncation may move the log
                // start down, so the version orders the writes, not the
                // value.
                if version < on_disk.log_start_version {
                    return Ok(());
                }
                #[cfg(test)]
                if let Some(hook) = &*self
                    .before_log_start_write
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                {
                    hook();
                }
                record_write(&mut on_disk.log_start, value, if_changed, |v| {
                    checkpoint::write_offset(&self.dir, LOG_START_FILE, *v)
                })?;
                on_disk.log_start_version = version;
                Ok(())
            }
            CheckpointFile::Epochs(entries, version) => {
                // A newer list is already in the file: this one was taken
                // before it and would put an older state back.
                if version < on_disk.epochs_version {
                    return Ok(());
                }
                record_write(&mut on_disk.epochs, entries.to_vec(), if_changed, |v| {
                    checkpoint::write_epochs(&self.dir, v)
                })?;
                on_disk.epochs_version = version;
                Ok(())
            }
        }
    }

    /// Deletes closed segments that retention no longer keeps: those wholly
    /// below the log start offset, older than `retention.ms` (by their
    /// largest timestamp, or file time if they have none), or beyond
    /// `retention.bytes` counting from the newest. Returns how many.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        self.check_usable()?;
        let mut state = self.write_state();
        let mut doomed = Vec::new();
        let mut remaining = state.size_bytes();
        for segment in state.segments.values() {
            if state.is_active(segment) {
                break;
            }
            let retention_deletes = self.retention_deletes(&state, segment, remaining, now_ms);
            if !self.guard(retention_deletes)? {
                break;
            }
            remaining -= segment.size;
            doomed.push(segment.base);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let count = doomed.len();
        let mut due = CheckpointsDue::default();
        let retired = self.remove_front_segments(&mut state, &doomed, &mut due);
        drop(state);
        self.write_due(due)?;
        // The retention thread's own: it may pause between steps.
        remove_retired(&retired, Some(&self.cleaning));
        Ok(count)
    }

    /// Whether retention deletes `segment`, a closed one with no segment
    /// before it that retention keeps, when it and the segments after it
    /// hold `remaining` bytes: it lies wholly below the log start offset,
    /// is older than `retention.ms` (by its largest timestamp, or file time
    /// if it has none), or the log is `retention.bytes` long without it.
    fn retention_deletes(
        &self,
        state: &State,
        segment: &Segment,
        remaining: u64,
        now_ms: i64,
    ) -> Result<bool, Fault> {
        if state.segment_end(segment.base) <= state.log_start {
            return Ok(true);
        }
        if !state.config.cleanup_delete {
            return Ok(false);
        }
        if state.config.retention_bytes >= 0
            && remaining - segment.size >= state.config.retention_bytes as u64
        {
            return Ok(true);
        }
        if state.config.retention_ms < 0 {
            return Ok(false);
        }
        let newest_ms = match self.with_loaded(state, segment, |l| Ok(l.time_index.last()))? {
            Some((t, _)) => t,
            None => cleaner::modified_ms(&segment.path(LOG_SUFFIX)).unwrap_or(now_ms),
        };
        Ok(now_ms.saturating_sub(newest_ms) > state.config.retention_ms)
    }

    /// Drops the given leading segments from the map, advances the log start
    /// (its checkpoint noted in `due`, to be written once the caller has let
    /// go of the state lock) and renames their files to `*.deleted`, to be
    /// unlinked by the caller with [`remove_retired`] after that write.
    ///
    /// A crash between the renames and the checkpoint never serves deleted
    /// data again: open removes every `*.deleted` file (`list_segments`) and
    /// takes the larger of the log-start checkpoint and the first segment
    /// left (`open_state`), so an older checkpoint yields to the segments.
    /// Renames that did not reach the disk bring back their segments with
    /// the old log start, as if the deletion had not begun; DeleteRecords
    /// has not answered then. The segments are renamed front first, so a
    /// crash keeps the front of the log deleted, never a hole in it. The
    /// checkpoint's directory fsync makes the renames durable too.
    ///
    /// Unlinking a file frees its page cache there and then: 47 ms for a
    /// 256 MiB segment on the benchmark VM, 4× that for a default 1 GiB one.
    /// Under the lock, every produce and fetch of the partition waited that
    /// long each time retention deleted a segment (docs/BENCHMARKS.md, "Ninth
    /// session"). A rename costs no page work, and its new name cannot be
    /// taken by a segment created after the lock is released.
    fn remove_front_segments(
        &self,
        state: &mut State,
        bases: &[Offset],
        due: &mut CheckpointsDue,
    ) -> Vec<Retired> {
        let mut retired = Vec::new();
        for base in bases {
            if let Some(segment) = state.segments.remove(base) {
                let loaded = segment.lock().take();
                if loaded.is_some() {
                    LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
                }
                retire_segment_files(&segment, loaded, &mut retired);
                tracing::info!(dir = %self.dir.display(), base = %segment.base, "deleted segment");
            }
        }
        let first = state
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(state.log_end);
        if first > state.log_start {
            state.set_log_start(first);
        }
        due.epochs_tolerant = true;
        let start = state.log_start;
        state.epochs_from_start(start, due);
        state.max_timestamp = None;
        let hw = self.high_watermark().max(state.log_start);
        self.high_watermark.store(hw.0, Ordering::Release);
        due.log_start = Some(state.log_start_to_write());
        // Recovery derives this log start from the first segment left, so
        // on a full disk the files may go without the checkpoint: deleting
        // them is what frees the space.
        due.log_start_derivable = state.log_start == first;
        retired
    }

    /// Writes the checkpoints a change under the state lock left due; the
    /// caller has let go of the lock.
    fn write_due(&self, due: CheckpointsDue) -> Result<(), Fault> {
        if let Some((epochs, version)) = &due.epochs {
            let written = self.write_checkpoint(CheckpointFile::Epochs(epochs, *version), false);
            if due.epochs_tolerant {
                self.tolerate_full(written)?;
            } else {
                self.guard(written.map_err(Fault::from))?;
            }
        }
        if let Some((start, version)) = due.log_start {
            let written = self.write_checkpoint(CheckpointFile::LogStart(start, version), false);
            if due.log_start_derivable {
                self.tolerate_full(written)?;
            } else {
                self.guard(written.map_err(Fault::from))?;
            }
        }
        Ok(())
    }

    /// A checkpoint write that found the disk full is let go (the
    /// directory is marked full, the checkpoint is rewritten at the next
    /// `checkpoint`); any other failure is returned as usual.
    fn tolerate_full(&self, written: Result<(), IoFailure>) -> Result<(), Fault> {
        match written {
            Err(failure) if FailureKind::of(&failure) == FailureKind::Space => {
                self.health.fail(&failure);
                tracing::warn!(dir = %self.dir.display(), error = %failure,
                    "checkpoint not written on a full disk; deleting segments anyway");
                Ok(())
            }
            other => self.guard(other.map_err(Fault::from)),
        }
    }

    /// Kafka's DeleteRecords: moves the log start offset up to `offset`
    /// (at most the high watermark) and deletes segments wholly below it.
    pub fn delete_records_before(&self, offset: Offset) -> Result<Offset, LogError> {
        self.check_usable()?;
        let mut state = self.write_state();
        let high_watermark = self.high_watermark();
        if offset > high_watermark || offset < Offset(0) {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: state.log_start,
                log_end: high_watermark,
            });
        }
        if offset <= state.log_start {
            return Ok(state.log_start);
        }
        let active = state.active_segment().base;
        let doomed: Vec<Offset> = state
            .segments
            .keys()
            .copied()
            .filter(|&b| b != active && state.segment_end(b) <= offset)
            .collect();
        // First the whole segments below `offset`, with the log start at
        // the first segment left, which needs no checkpoint on a full disk
        // (`remove_front_segments`); unlinking them frees the space the
        // checkpoint of a log start inside a segment needs.
        if !doomed.is_empty() {
            let mut due = CheckpointsDue::default();
            let retired = self.remove_front_segments(&mut state, &doomed, &mut due);
            drop(state);
            self.write_due(due)?;
            // A request handler's thread: no pauses here.
            remove_retired(&retired, None);
            state = self.write_state();
            // The lock was let go: the log may have been closed (its topic
            // deleted) or cut meanwhile.
            self.check_usable()?;
        }
        let offset = offset.min(state.log_end);
        if offset <= state.log_start {
            return Ok(state.log_start);
        }
        // The answer waits for the checkpoint, written without the lock. If
        // the write fails, reads already start at `offset` and the periodic
        // `checkpoint` writes it again; a restart before that brings the
        // old start back, and the client, answered with the error, retries.
        let mut due = CheckpointsDue {
            epochs_tolerant: true,
            ..CheckpointsDue::default()
        };
        state.set_log_start(offset);
        due.log_start = Some(state.log_start_to_write());
        state.epochs_from_start(offset, &mut due);
        state.max_timestamp = None;
        drop(state);
        self.write_due(due)?;
        Ok(offset)
    }

    /// Removes every batch at or after the one holding `offset` (the log end
    /// becomes that batch's base offset). Used by replication.
    pub fn truncate_to(&self, offset: Offset) -> Result<(), LogError> {
        self.check_usable()?;
        // The cleaner maps closed segments; shrinking one under it would
        // fault its reads, so truncation waits for a running clean.
        let _cleaning = self.cleaning.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.write_state();
        if offset >= state.log_end {
            return Ok(());
        }
        // The dropped segments' files are renamed under the lock and
        // unlinked after it, as retention's are (`remove_front_segments`):
        // unlinking frees their page cache, tens of ms per 256 MiB, and
        // every produce and fetch of the partition would wait for it.
        let mut retired = Vec::new();
        let mut due = CheckpointsDue::default();
        let truncated = self.truncate_locked(&mut state, offset, &mut retired, &mut due);
        drop(state);
        let written = self.write_due(due);
        remove_retired(&retired, None);
        truncated?;
        written?;
        Ok(())
    }

    /// [`Log::truncate_to`] under the state lock; the files of dropped
    /// segments are renamed and added to `retired`, and the checkpoints to
    /// write after the lock noted in `due`.
    fn truncate_locked(
        &self,
        state: &mut State,
        offset: Offset,
        retired: &mut Vec<Retired>,
        due: &mut CheckpointsDue,
    ) -> Result<(), LogError> {
        let result = if offset <= state.log_start {
            let start = offset.max(state.log_start);
            self.truncate_fully(state, start, retired, due)
        } else {
            // The batch holding `offset` may begin below a log start that
            // DeleteRecords moved inside it; then nothing at or above the
            // log start survives and the log restarts empty there.
            self.truncate_inside(state, offset, retired).and_then(|()| {
                if state.log_end < state.log_start {
                    let start = state.log_start;
                    self.truncate_fully(state, start, retired, due)
                } else {
                    Ok(())
                }
            })
        };
        let result = self.guard(result);
        state.truncations += 1;
        let log_end_now = state.log_end;
        if let Some(producers) = state.producers.as_mut() {
            producers.truncate_from(log_end_now);
        }
        if let Err(error) = snapshot::remove_after(&self.dir, log_end_now) {
            // The next rebuild removes them before it reads any.
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove producer-state snapshots past a truncation");
        }
        state.max_timestamp = None;
        let log_end = state.log_end;
        state.recovery_point = state.recovery_point.min(log_end);
        state.rolls.retain(|(base, _)| *base <= log_end);
        state.first_dirty = state.first_dirty.min(log_end);
        // What is appended after this point is contiguous again. (The file
        // keeps the larger horizon until the next clean: more lenient, so
        // a restart never cuts a compacted gap.)
        state.gap_horizon = state.gap_horizon.min(log_end);
        let hw = self.high_watermark().min(log_end);
        self.high_watermark.store(hw.0, Ordering::Release);
        if state.epochs.truncate_from_end(log_end) {
            state.epochs_version += 1;
            due.epochs = Some(state.epochs_to_write());
        }
        result?;
        let written =
            self.write_checkpoint(CheckpointFile::RecoveryPoint(state.recovery_point), false);
        self.guard(written.map_err(Fault::from))?;
        tracing::info!(dir = %self.dir.display(), %offset, %log_end, "truncated log");
        Ok(())
    }

    fn truncate_fully(
        &self,
        state: &mut State,
        start: Offset,
        retired: &mut Vec<Retired>,
        due: &mut CheckpointsDue,
    ) -> Result<(), Fault> {
        let all: Vec<Offset> = state.segments.keys().copied().collect();
        let old_active = all_last(&all);
        for base in all {
            if let Some(segment) = state.segments.remove(&base) {
                let was_active = base == old_active;
                let loaded = segment.lock().take();
                if loaded.is_some() && !was_active {
                    LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
                }
                retire_segment_files(&segment, loaded, retired);
            }
        }
        state
            .segments
            .insert(start, create_segment(&self.dir, start, true)?);
        state.set_log_start(start);
        due.log_start = Some(state.log_start_to_write());
        state.log_end = start;
        state.active = Active::default();
        let active = state.active_segment();
        self.with_loaded(state, active, |_| Ok(()))
    }

    fn truncate_inside(
        &self,
        state: &mut State,
        offset: Offset,
        retired: &mut Vec<Retired>,
    ) -> Result<(), Fault> {
        // Drop whole segments at or after the cut.
        let later: Vec<Offset> = state.segments.range(offset..).map(|(b, _)| *b).collect();
        // If every batch left ends before `offset`, the log ends where the
        // first dropped segment began.
        let end_if_nothing_cut = later.first().copied().unwrap_or(state.log_end);
        let old_active = state.active_segment().base;
        for base in &later {
            if let Some(segment) = state.segments.remove(base) {
                let loaded = segment.lock().take();
                if loaded.is_some() && *base != old_active {
                    LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
                }
                retire_segment_files(&segment, loaded, retired);
            }
        }
        // The segment holding the cut becomes (or stays) the active one:
        // reopen its handles writable.
        // A segment that stays active keeps its handles: its index entries
        // exist only in them.
        let became_active = state.active_segment().base != old_active;
        if became_active && state.active_segment().lock().take().is_some() {
            LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
        }
        let size = state.active_segment().size;
        let segment = state.active_segment();
        let cut = self.with_loaded(state, segment, |loaded| {
            Ok(segment
                .locate(loaded, offset, size)?
                .map(|(p, h)| (p, h.base)))
        })?;
        let (cut_position, new_end) = cut.unwrap_or((size, end_if_nothing_cut));
        {
            let mut guard = segment.lock();
            if let Some(loaded) = guard.as_mut() {
                let path = segment.path(LOG_SUFFIX);
                loaded
                    .file
                    .set_len(cut_position)
                    .and_then(|()| loaded.file.sync_all())
                    .map_err(io_failure("truncate", &path))?;
                loaded.offset_index.truncate_from(new_end);
                loaded.time_index.truncate_from(new_end);
            }
        }
        let segment = state.active_segment_mut();
        segment.size = cut_position;
        let base = segment.base;
        state.log_end = new_end;
        // Recompute the active state from the last index entry on.
        let start =
            self.with_loaded(state, state.active_segment(), |l| Ok(resume_point(base, l)))?;
        let scan = scan_file(
            &state.active_segment().path(LOG_SUFFIX),
            base,
            cut_position,
            state.config.index_interval_bytes,
            false,
            Offset(i64::MAX),
            start,
        )?;
        state.active = Active {
            cursor: IndexCursor {
                bytes_since_index_entry: scan.bytes_since_index_entry,
                max_timestamp: scan.max_timestamp,
            },
            rolling_base_ms: scan.first_timestamp.filter(|t| *t >= 0),
            ..Active::default()
        };
        Ok(())
    }

    /// Re-verifies the CRC of every batch in closed segments, calling
    /// `throttle` with the bytes read so the caller can bound the IO rate.
    /// Corrupt batches are logged, counted and fenced off from reads.
    pub fn scrub(&self, throttle: &mut dyn FnMut(u64)) -> Result<ScrubReport, LogError> {
        self.check_usable()?;
        let (targets, gap_horizon): (Vec<(Offset, u64, PathBuf)>, Offset) = {
            let state = self.read_state();
            let targets = state
                .segments
                .values()
                .filter(|s| !state.is_active(s))
                .map(|s| (s.base, s.size, s.path(LOG_SUFFIX)))
                .collect();
            (targets, state.gap_horizon)
        };
        let mut report = ScrubReport::default();
        for (base, size, path) in targets {
            let found = scrub_file(&path, base, size, gap_horizon, throttle);
            let found = match found {
                Ok(found) => found,
                // Retention may have deleted the segment meanwhile, or a
                // truncation shortened it; neither is a disk fault.
                Err(e)
                    if matches!(
                        e.source.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    self.health.fail(&e);
                    return Err(e.into());
                }
            };
            // A segment retention deleted meanwhile is no finding: its file
            // may have been shrunk under the scrub's own handle while its
            // page cache was freed (`free_in_steps`). One still
            // in the map was in it for the whole read: removed segments
            // never come back.
            if !self.read_state().segments.contains_key(&base) {
                continue;
            }
            report.segments_checked += 1;
            report.bytes_checked += size;
            if let Some((position, reason)) = found {
                CORRUPT_BATCHES.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    segment = %path.display(), %position, %reason,
                    "scrub found a corrupt batch; reads stop before it"
                );
                if let Some(segment) = self.read_state().segments.get(&base) {
                    segment.mark_corrupt(position);
                }
                report.corrupt.push((base, position));
            }
        }
        Ok(report)
    }

    /// Flushes, writes the checkpoints and the clean-shutdown marker, and
    /// refuses further work. Closing twice is harmless.
    pub fn close(&self) -> Result<(), LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.flush()?;
        {
            let mut state = self.write_state();
            let cursor = state.active.cursor;
            let segment = state.active_segment();
            let mut guard = segment.lock();
            if let Some(loaded) = guard.as_mut() {
                if let Some((t, o)) = cursor.max_timestamp {
                    loaded.time_index.maybe_append(t, o);
                }
                let trimmed = release_reserve(&loaded.file)
                    .map_err(io_failure("truncate", &segment.path(LOG_SUFFIX)))
                    .and_then(|()| {
                        loaded
                            .offset_index
                            .file_mut()
                            .write_out(true)
                            .and_then(|()| loaded.time_index.file_mut().write_out(true))
                            .map_err(io_failure("write", &segment.path(INDEX_SUFFIX)))
                    });
                drop(guard);
                self.guard(trimmed.map_err(Fault::from))?;
            } else {
                drop(guard);
            }
            // The indexes are written; drop the handles so nothing is
            // added to them that the files would not have.
            let active = state.active_segment_mut();
            active.lock().take();
            state.unflushed_since_ms = None;
        }
        self.checkpoint()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let written = File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(io_failure("create", &marker))
            .and_then(|()| sync_dir(&self.dir));
        self.guard(written.map_err(Fault::from))?;
        self.closed.store(true, Ordering::Release);
        Ok(())
    }

    /// Marks the log closed without writing anything (its directory is
    /// about to be deleted).
    pub(crate) fn abandon(&self) {
        self.closed.store(true, Ordering::Release);
        let state = self.read_state();
        for segment in state.segments.values() {
            if segment.lock().take().is_some() && !state.is_active(segment) {
                LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Compaction: which part of the log is dirty, and the clean itself. The
/// file work is in `cleaner.rs`; this part holds the locks and swaps.
impl Log {
    /// The closed segments as the cleaner sees them, and where cleaning must
    /// stop: the active segment, or the first segment with records younger
    /// than `min.compaction.lag.ms`.
    fn cleaner_view(&self, state: &State, now_ms: i64) -> Result<(Vec<SegmentRef>, Offset), Fault> {
        let mut closed = Vec::new();
        let mut cleanable_end = state.active_segment().base;
        let lag = state.config.min_compaction_lag_ms;
        for segment in state.segments.values() {
            if state.is_active(segment) {
                break;
            }
            let end = state.segment_end(segment.base);
            if lag > 0 && end > state.first_dirty {
                let newest =
                    self.guard(self.with_loaded(state, segment, |l| Ok(l.time_index.last())))?;
                if newest.is_some_and(|(t, _)| now_ms.saturating_sub(t) < lag) {
                    cleanable_end = segment.base;
                    break;
                }
            }
            closed.push(SegmentRef {
                base: segment.base,
                end,
                size: segment.size,
                path: segment.path(LOG_SUFFIX),
            });
        }
        Ok((closed, cleanable_end))
    }

    /// How dirty this log is; `None` when it is not compacted.
    pub fn cleanable(&self, now_ms: i64) -> Result<Option<Cleanable>, LogError> {
        self.check_usable()?;
        let state = self.read_state();
        if !state.config.cleanup_compact {
            return Ok(None);
        }
        let (closed, _) = self.cleaner_view(&state, now_ms)?;
        let first_dirty = state.first_dirty;
        let total: u64 = closed.iter().map(|s| s.size).sum();
        let dirty_segments: Vec<&SegmentRef> =
            closed.iter().filter(|s| s.end > first_dirty).collect();
        let dirty_bytes: u64 = dirty_segments.iter().map(|s| s.size).sum();
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        let max_lag = state.config.max_compaction_lag_ms;
        let overdue = max_lag < i64::MAX / 2
            && match dirty_segments.first() {
                Some(first) => {
                    let segment = &state.segments[&first.base];
                    let newest =
                        self.guard(self.with_loaded(&state, segment, |l| Ok(l.time_index.last())))?;
                    // Without timestamps the file time says how old it is.
                    let newest_ms = newest
                        .map(|(t, _)| t)
                        .or_else(|| cleaner::modified_ms(&first.path))
                        .unwrap_or(now_ms);
                    now_ms.saturating_sub(newest_ms) > max_lag
                }
                None => false,
            };
        let due =
            dirty_bytes > 0 && (dirty_ratio > state.config.min_cleanable_dirty_ratio || overdue);
        Ok(Some(Cleanable {
            dirty_ratio,
            dirty_bytes,
            due,
        }))
    }

    /// Compacts the log once: maps the dirty part, rewrites every closed
    /// segment below the mapped end, and swaps the results in. Returns
    /// `None` when the log is not compacted, has nothing dirty, or another
    /// clean of it is running. `throttle` is told every batch's bytes read
    /// or written and may sleep; when it answers false the clean stops
    /// (with [`LogError::Closed`]) and changes nothing. See `cleaner.rs` for
    /// the rules.
    pub fn clean(
        &self,
        now_ms: i64,
        map: &mut OffsetMap,
        throttle: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Option<CleanStats>, LogError> {
        self.clean_with(now_ms, map, throttle, &mut |_| true)
    }

    /// [`Log::clean`], asking `proceed` before each file operation of each
    /// swap; when it answers false the clean stops right there, as if the
    /// process had crashed (crash tests drop the log and reopen it).
    #[doc(hidden)]
    pub fn clean_with(
        &self,
        now_ms: i64,
        map: &mut OffsetMap,
        throttle: &mut dyn FnMut(u64) -> bool,
        proceed: &mut dyn FnMut(SwapStep) -> bool,
    ) -> Result<Option<CleanStats>, LogError> {
        self.check_usable()?;
        let Some(_cleaning) = try_lock_cleaning(&self.cleaning) else {
            return Ok(None);
        };
        let (config, log_start, first_dirty, closed, cleanable_end) = {
            let state = self.read_state();
            if !state.config.cleanup_compact {
                return Ok(None);
            }
            let (closed, cleanable_end) = self.cleaner_view(&state, now_ms)?;
            (
                state.config.clone(),
                state.log_start,
                state.first_dirty,
                closed,
                cleanable_end,
            )
        };
        let dirty: Vec<SegmentRef> = closed
            .iter()
            .filter(|s| s.end > first_dirty && s.end <= cleanable_end)
            .cloned()
            .collect();
        if dirty.is_empty() {
            return Ok(None);
        }
        let mut stats = CleanStats {
            first_dirty,
            ..CleanStats::default()
        };
        let map_end =
            match cleaner::build_offset_map(&dirty, first_dirty, map, throttle, &mut stats) {
                Ok(end) => end,
                Err(fault) => return self.cleaner_fault(fault, &dirty).map(|()| None),
            };
        stats.map_end = map_end;
        if map_end <= first_dirty {
            return Ok(None);
        }
        let to_clean: Vec<SegmentRef> = closed
            .into_iter()
            .filter(|s| s.base < map_end && s.end <= cleanable_end)
            .collect();
        let rules = CleanRules {
            map,
            map_end,
            log_start,
            tombstone_horizon_ms: now_ms.saturating_sub(config.delete_retention_ms),
        };
        {
            // Before any swap commits: gaps may now appear below map_end.
            let mut state = self.write_state();
            // A deleted log's directory is renamed once this lock is free
            // (`LogManager::delete` marks the log closed first).
            self.check_usable()?;
            if map_end > state.gap_horizon {
                state.gap_horizon = map_end;
                let entries = [state.first_dirty, state.gap_horizon];
                let written = checkpoint::write_offsets(&self.dir, CLEANER_FILE, &entries);
                self.guard(written.map_err(Fault::from))?;
            }
        }
        let max_bytes = config.segment_bytes.min(SEGMENT_BYTES_MAX);
        for group in cleaner::group_segments(&to_clean, max_bytes) {
            let cleaned = cleaner::clean_group(&self.dir, &group, &rules, throttle, &mut stats)
                .and_then(|cleaned| {
                    let scan = scan_cleaned(&cleaned, config.index_interval_bytes)?;
                    Ok((cleaned, scan))
                });
            let (cleaned, scan) = match cleaned {
                Ok(done) => done,
                // What was swapped so far stands.
                Err(fault) => {
                    let swapped = stats.segments_after > 0;
                    return self
                        .cleaner_fault(fault, &group)
                        .map(|()| swapped.then_some(stats));
                }
            };
            if !self.swap_in(&group, &cleaned, &scan, proceed)? {
                // The log changed under the clean (retention, truncation) or
                // a test stopped it: what was swapped so far stands.
                return Ok(Some(stats));
            }
            stats.segments_before += group.len();
            stats.segments_after += 1;
        }
        let mut state = self.write_state();
        state.first_dirty = state.first_dirty.max(map_end).min(state.log_end);
        let entries = [state.first_dirty, state.gap_horizon];
        let written = checkpoint::write_offsets(&self.dir, CLEANER_FILE, &entries);
        self.guard(written.map_err(Fault::from))?;
        Ok(Some(stats))
    }

    /// The file work of a clean failed. If its input is gone (retention or
    /// DeleteRecords deleted a segment it was about to read, or the topic
    /// was deleted and its directory renamed), the clean skips this log
    /// this round: those files were renamed away by design, and reading
    /// one that is missing is no sign of a failing disk. Otherwise an IO
    /// failure takes the directory offline as usual; corrupt data only
    /// fails this clean (the scrub and readers report it on their own).
    fn cleaner_fault(&self, fault: Fault, input: &[SegmentRef]) -> Result<(), LogError> {
        if let Fault::Io(failure) = &fault {
            if failure.source.kind() == std::io::ErrorKind::NotFound && self.input_gone(input) {
                tracing::info!(
                    dir = %self.dir.display(), file = %failure.path.display(),
                    "the cleaner's input was deleted under it; skipping this log this round"
                );
                return Ok(());
            }
            self.health.fail(failure);
        }
        Err(LogError::from(fault))
    }

    /// Whether this log was deleted, or any of `input` is no longer one of
    /// its segments as the cleaner saw it. Segments leave the map only by
    /// retention, DeleteRecords, truncation (which waits for a clean) or a
    /// swap (which the running clean itself does).
    fn input_gone(&self, input: &[SegmentRef]) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        let state = self.read_state();
        input.iter().any(|s| {
            state
                .segments
                .get(&s.base)
                .is_none_or(|segment| segment.size != s.size)
        })
    }

    /// Replaces the segments of `group` by the cleaned file, unless the log
    /// changed since they were read. Returns false if it did not swap.
    fn swap_in(
        &self,
        group: &[SegmentRef],
        cleaned: &Cleaned,
        scan: &Scan,
        proceed: &mut dyn FnMut(SwapStep) -> bool,
    ) -> Result<bool, LogError> {
        let mut state = self.write_state();
        let unchanged = self.check_usable().is_ok()
            && group.iter().all(|s| {
                state
                    .segments
                    .get(&s.base)
                    .is_some_and(|segment| segment.size == s.size && !state.is_active(segment))
            })
            && state.segment_end(group[group.len() - 1].base) == cleaned.end;
        if !unchanged || !proceed(SwapStep::Commit) {
            let _ = fs::remove_file(&cleaned.path);
            return Ok(false);
        }
        let dir = &self.dir;
        let swap = dir.join(cleaner::swap_name(cleaned.base, cleaned.end));
        let committed = fs::rename(&cleaned.path, &swap)
            .map_err(io_failure("rename", &cleaned.path))
            .and_then(|()| sync_dir(dir));
        self.guard(committed.map_err(Fault::from))?;
        if !proceed(SwapStep::DeleteReplaced) {
            return Ok(false);
        }
        // Renamed, not unlinked, under the lock, as retention does (see
        // `remove_front_segments`): unlinking frees their page cache. A crash
        // from here on is finished at open by `finish_interrupted_swaps`,
        // which ignores the `*.deleted` names; `list_segments` removes them.
        let mut retired = Vec::new();
        for s in group {
            if let Some(segment) = state.segments.remove(&s.base) {
                let loaded = segment.lock().take();
                if loaded.is_some() {
                    LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
                }
                retire_segment_files(&segment, loaded, &mut retired);
            }
        }
        if !proceed(SwapStep::Rename) {
            return Ok(false);
        }
        let segment = Box::new(Segment::new(dir, cleaned.base, cleaned.size));
        let log_path = segment.path(LOG_SUFFIX);
        let renamed = fs::rename(&swap, &log_path)
            .map_err(io_failure("rename", &swap))
            .and_then(|()| sync_dir(dir));
        self.guard(renamed.map_err(Fault::from))?;
        if !proceed(SwapStep::WriteIndexes) {
            return Ok(false);
        }
        self.guard(segment.write_indexes(scan, true).map_err(Fault::from))?;
        state.segments.insert(cleaned.base, segment);
        state.max_timestamp = None;
        drop(state);
        // The cleaner may still map the replaced segments: they go at once.
        remove_retired(&retired, None);
        tracing::info!(
            dir = %dir.display(), base = %cleaned.base, end = %cleaned.end,
            replaced = group.len(), bytes = cleaned.size, "swapped in a cleaned segment"
        );
        Ok(true)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let state = self.read_state();
        for segment in state.segments.values() {
            if segment.lock().take().is_some() && !state.is_active(segment) {
                LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Index entries for a cleaned file, computed before a swap takes the lock:
/// the file is complete and nobody else writes it.
fn scan_cleaned(cleaned: &Cleaned, interval_bytes: u32) -> Result<Scan, Fault> {
    let scan = scan_file(
        &cleaned.path,
        cleaned.base,
        cleaned.size,
        interval_bytes,
        false,
        Offset(i64::MAX),
        ScanStart::beginning(cleaned.base),
    )?;
    Ok(scan)
}

fn producer_fields(view: &rill_records::batch::BatchView<'_>) -> ProducerFields {
    ProducerFields {
        producer_id: view.producer_id(),
        producer_epoch: view.producer_epoch(),
        base_sequence: view.base_sequence(),
        last_offset_delta: view.last_offset_delta(),
        log_append_time_ms: -1,
    }
}

fn all_last(all: &[Offset]) -> Offset {
    all.last().copied().unwrap_or(Offset(-1))
}

/// The slice of one segment a read returns with the offset just after it
/// (when known), or `None` if the segment holds nothing at or after `start`
/// below `upper`.
fn read_segment(
    state: &State,
    segment: &Segment,
    loaded: &Loaded,
    start: Offset,
    max_bytes: u32,
    upper: Offset,
) -> Result<Option<(FileSlice, Option<Offset>)>, Fault> {
    let size = segment.size;
    let located = segment.locate(loaded, start, size)?;
    let mut end = size;
    // The offset of the first batch at `end`: the segment's end unless the
    // read is cut short below.
    let mut end_offset = Some(state.segment_end(segment.base));
    if let Some(corrupt) = segment.corrupt_from() {
        // Offsets past a corrupt batch cannot be trusted, so a read that
        // reaches it or passes through this segment without finding its
        // target fails rather than skipping ahead.
        if located.is_none_or(|(position, _)| position >= corrupt.0) {
            return Err(Fault::Corrupt(CorruptData {
                path: segment.path(LOG_SUFFIX),
                position: corrupt,
                reason: "the scrub found this batch corrupt".to_string(),
            }));
        }
        if corrupt.0 < end {
            end = corrupt.0;
            end_offset = None;
        }
    }
    let Some((position, header)) = located else {
        return Ok(None);
    };
    if header.base >= upper {
        return Ok(None);
    }
    if upper < state.segment_end(segment.base)
        && let Some((p, at_upper)) = segment.locate(loaded, upper, size)?
        && p < end
    {
        end = p;
        end_offset = Some(at_upper.base);
    }
    let first_end = position + header.len;
    if first_end > end {
        // The first batch straddles `upper`: not readable yet.
        return Ok(None);
    }
    let limit = position.saturating_add(u64::from(max_bytes));
    let (stop, next_offset) = if limit <= first_end {
        (first_end, Some(Offset(header.last.0 + 1)))
    } else {
        match segment.boundary_before(loaded, first_end, limit, end)? {
            (stop, Some(next)) => (stop, Some(next)),
            (stop, None) if stop == end => (stop, end_offset),
            (stop, None) => (stop, None),
        }
    };
    let slice = FileSlice {
        file: loaded.file.clone(),
        position,
        // A slice is at most max(max_bytes, first batch) long, and a batch
        // is at most i32::MAX + 12 bytes, so it fits a u32.
        len: u32::try_from(stop - position).unwrap_or(u32::MAX),
    };
    Ok(Some((slice, next_offset)))
}

/// Where to resume scanning the active segment: its last offset-index entry.
fn resume_point(base: Offset, loaded: &Loaded) -> ScanStart {
    let max_timestamp = loaded.time_index.last();
    match loaded.offset_index.last() {
        Some((offset, position)) => ScanStart {
            position: position.0,
            expected: offset,
            cursor: IndexCursor {
                bytes_since_index_entry: 0,
                max_timestamp,
            },
        },
        None => ScanStart::beginning(base),
    }
}

/// The most an active segment reserves ahead of its appends, and the
/// least worth a call: see `reserve_ahead`.
const RESERVE_MAX: u64 = 16 << 20;
const RESERVE_MIN: u64 = 1 << 20;

/// Reserves disk blocks ahead of an append with `fallocate(2)` and
/// `FALLOC_FL_KEEP_SIZE`, so the file's length still ends at the last whole
/// batch: readers, recovery and the index see nothing new. On ext4 a write
/// into reserved blocks skips the delayed-allocation bookkeeping that an
/// extending write pays per page, 14-16% of the write's CPU time on this
/// VM (16 KiB writes, 1 GiB, interleaved with plain writes). The reserve is
/// at most 1/8 of the bytes the segment already holds and at most 16 MiB,
/// so a small or idle partition reserves nothing and the space held ahead
/// is bounded by an eighth of the active segments' bytes; it is released
/// when the segment rolls or the log closes, and when a segment left active
/// by a crash is opened again (`segment::release_reserve`). A failure only
/// costs the speed-up: the write itself reports a full disk.
fn reserve_ahead(state: &mut State, file: &File, start: u64, len: u64) {
    let end = start + len;
    if !state.can_reserve || end <= state.active.reserved_to {
        return;
    }
    let room = state
        .config
        .segment_bytes
        .clamp(1, SEGMENT_BYTES_MAX)
        .saturating_sub(start);
    let chunk = (start / 8).min(RESERVE_MAX).min(room);
    if chunk < RESERVE_MIN {
        return;
    }
    let to = end.max(start + chunk);
    match rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::KEEP_SIZE,
        start,
        to - start,
    ) {
        Ok(()) => state.active.reserved_to = to,
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            tracing::debug!(error = %e, "the file system cannot reserve blocks; appends extend the file");
            state.can_reserve = false;
        }
        Err(e) => tracing::debug!(error = %e, "could not reserve blocks ahead of appends"),
    }
}

/// The log's `cleaning` lock if no one holds it (a poisoned one is taken).
fn try_lock_cleaning(cleaning: &Mutex<()>) -> Option<std::sync::MutexGuard<'_, ()>> {
    match cleaning.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The name [`retire_segment_files`] gives a segment file it retires.
fn deleted_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}

/// Writes all of `slices` at the file's end, continuing after partial
/// writes. The active segment's file is opened with `O_APPEND`, so the
/// kernel itself places every write after the bytes already there: a write
/// can never land on bytes a fetch was sent from (see `create_segment`).
fn write_all_vectored(mut file: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn delete_segment_files(segment: &Segment) {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment.path(suffix);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "could not delete segment file");
        }
    }
}

/// Renames a segment's files to `<name>.deleted` and adds the new names to
/// `retired`; a file that cannot be renamed is unlinked at once instead.
fn retire_segment_files(segment: &Segment, loaded: Option<Loaded>, retired: &mut Vec<Retired>) {
    // Readers share the log file's handle (`FileSlice`); when the segment's
    // own handle is the last one, nothing reads the file any more. A slice
    // taken before the segment was last unloaded (`loaded_segments_max`)
    // holds an older handle, not counted here: if retention shrinks the
    // file under it, the broker closes that fetch's connection rather than
    // send a short response (sendfile.rs), and the client fetches again.
    let unread = loaded.is_some_and(|loaded| Arc::strong_count(&loaded.file) == 1);
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment.path(suffix);
        let to = deleted_path(&path);
        match fs::rename(&path, &to) {
            Ok(()) => retired.push(Retired {
                path: to,
                unread: unread && suffix == LOG_SUFFIX,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "could not rename a deleted segment's file; removing it in place");
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete segment file");
                }
            }
        }
    }
}

/// A segment file [`retire_segment_files`] renamed to `*.deleted`.
struct Retired {
    path: PathBuf,
    /// A log file no reader held when it was retired: shrinking it cannot
    /// cut short a fetch being sent.
    unread: bool,
}

/// Page cache freed per step when a retired log file is shrunk before its
/// unlink (see [`free_in_steps`]): ~1 ms of work on the benchmark VM.
const FREE_STEP: u64 = 4 << 20;

/// Unlinks files [`retire_segment_files`] renamed. Called without the state
/// lock: this is where the kernel frees their page cache. A file left
/// behind by a crash is removed at the next open.
///
/// `in_steps`, the log's `cleaning` lock: first shrink each unread log
/// file a step at a time ([`free_in_steps`]). Only from a background
/// thread, since it pauses.
fn remove_retired(retired: &[Retired], in_steps: Option<&Mutex<()>>) {
    for Retired { path, unread } in retired {
        if let Some(cleaning) = in_steps
            && *unread
        {
            free_in_steps(path, cleaning);
        }
        if let Err(e) = fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "could not delete segment file");
        }
    }
}

/// Shrinks a retired log file [`FREE_STEP`] bytes at a time, pausing after
/// each step as long as the step took, so that its unlink has little page
/// cache left to free.
///
/// Freeing page cache costs the thread that frees it: a 256 MiB segment
/// took 47-70 ms of CPU in one `unlink` on the benchmark VM. On two cores
/// that was a core gone from the request threads and the clients at every
/// segment retention deleted, and at 1.5 M msg/s most of the seconds whose
/// end-to-end p99 was over 5 ms began with one (docs/BENCHMARKS.md,
/// "Eleventh session"). In steps, whoever waits for the core waits at most
/// a step, and deletion still runs at half its unpaced speed (~2 GB/s
/// here). Shrinking, not `fadvise(DONTNEED)`: dirty pages of a deleted
/// file are dropped, never written. Errors are left to the unlink.
///
/// Each step holds `cleaning`, taken without waiting: the cleaner maps
/// closed segments while it holds that lock (a mapping of a shrunk file
/// faults), and truncation takes it too. If either holds it, the unlink
/// frees the rest at once; a clean that starts between steps cannot map
/// this file, which is out of the segment map and renamed.
fn free_in_steps(path: &Path, cleaning: &Mutex<()>) {
    let Ok(file) = fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let Ok(mut len) = file.metadata().map(|meta| meta.len()) else {
        return;
    };
    while len > FREE_STEP {
        len = (len - 1) / FREE_STEP * FREE_STEP;
        let started = std::time::Instant::now();
        {
            let Some(_cleaning) = try_lock_cleaning(cleaning) else {
                return;
            };
            if file.set_len(len).is_err() {
                return;
            }
        }
        std::thread::sleep(started.elapsed());
    }
}

/// Creates the file of an empty segment (replacing a leftover of the same
/// name, and its indexes) and makes the name durable. The index files are
/// written when the segment rolls or the log closes (index.rs): creating
/// them here cost a new partition two more of this VM's ~1 ms creates.
///
/// Always a new file, never a deleted segment's file renamed into place:
/// `sendfile(2)` hands TCP references to the file's page-cache pages, which
/// it keeps until the peer has read them (and reads again to retransmit),
/// so writing over a file a fetch was sent from changes bytes already
/// "sent", and no count of open handles can tell (docs/ARCHITECTURE.md,
/// invariants of the log store). A leftover of the same name is in no
/// segment map, so nothing reads it.
///
/// With `sync_dir` false the new file's directory entry is left for the
/// next flush to make durable (`Log::flush_below` syncs the directory
/// before it moves the recovery point over the file): a roll calls it so,
/// under the state lock and possibly on an async worker.
fn create_segment(dir: &Path, base: Offset, sync_dir: bool) -> Result<Box<Segment>, Fault> {
    let segment = Box::new(Segment::new(dir, base, 0));
    let log_path = segment.path(LOG_SUFFIX);
    File::create(&log_path).map_err(io_failure("create", &log_path))?;
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment.path(suffix);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_failure("remove", &path)(e).into());
            }
            _ => {}
        }
    }
    if sync_dir {
        checkpoint::sync_dir(dir)?;
    }
    Ok(segment)
}

/// Lists the segments in `dir`, removing temporary files and index files
/// whose log file is gone.
fn list_segments(dir: &Path) -> Result<BTreeMap<Offset, u64>, LogError> {
    let mut logs = BTreeMap::new();
    let mut indexes = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_failure("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_failure("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(".tmp") || name.ends_with(DELETED_SUFFIX) {
            fs::remove_file(&path).map_err(io_failure("remove", &path))?;
        } else if let Some(base) = parse_file_name(name, LOG_SUFFIX) {
            let len = entry.metadata().map_err(io_failure("stat", &path))?.len();
            logs.insert(base, len);
        } else if let Some(base) =
            parse_file_name(name, INDEX_SUFFIX).or_else(|| parse_file_name(name, TIME_INDEX_SUFFIX))
        {
            indexes.push((base, path));
        }
    }
    for (base, path) in indexes {
        if !logs.contains_key(&base) {
            tracing::warn!(file = %path.display(), "removing an index without its segment");
            fs::remove_file(&path).map_err(io_failure("remove", &path))?;
        }
    }
    Ok(logs)
}

/// Opens the directory's segments, recovering after an unclean stop.
fn open_state(dir: &Path, config: LogConfig) -> Result<State, LogError> {
    fs::create_dir_all(dir).map_err(io_failure("create directory", dir))?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    if clean {
        // From now on the log is dirty until the next clean close.
        fs::remove_file(&marker).map_err(io_failure("remove", &marker))?;
        sync_dir(dir)?;
    }
    cleaner::finish_interrupted_swaps(dir)?;
    let files = list_segments(dir)?;
    // A directory with no segment is a new log, not one that crashed.
    let fresh = files.is_empty();
    let log_start_checkpoint = checkpoint::read_offset(dir, LOG_START_FILE)?;
    let recovery_checkpoint = checkpoint::read_offset(dir, RECOVERY_POINT_FILE)?;
    // [first dirty offset, gap horizon]; a single entry is both.
    let cleaner_checkpoint = checkpoint::read_offsets(dir, CLEANER_FILE)?.unwrap_or_default();
    let gap_horizon = cleaner_checkpoint.last().copied().unwrap_or(Offset(-1));
    let epochs = LeaderEpochCache::from_entries(checkpoint::read_epochs(dir)?);

    let mut segments: BTreeMap<Offset, Box<Segment>> = files
        .iter()
        .map(|(&base, &size)| (base, Box::new(Segment::new(dir, base, size))))
        .collect();
    if segments.is_empty() {
        let base = log_start_checkpoint.unwrap_or(Offset(0)).max(Offset(0));
        segments.insert(base, create_segment(dir, base, true)?);
    }
    let interval = config.index_interval_bytes;
    let recover_from = if clean || fresh {
        None
    } else {
        let rp = recovery_checkpoint.unwrap_or(Offset(0));
        let first = *segments.keys().next().unwrap_or(&Offset(0));
        Some(segments.range(..=rp).next_back().map_or(first, |(b, _)| *b))
    };
    let active_base = *segments.keys().next_back().unwrap_or(&Offset(0));
    let mut active_scan: Option<Scan> = None;
    if let Some(from) = recover_from {
        let bases: Vec<Offset> = segments.range(from..).map(|(b, _)| *b).collect();
        let mut cut_rest = false;
        let mut expected: Option<Offset> = None;
        for base in bases {
            if cut_rest {
                if let Some(segment) = segments.remove(&base) {
                    tracing::warn!(
                        dir = %dir.display(), base = %base,
                        "recovery deletes a segment that follows a corrupt one"
                    );
                    delete_segment_files(&segment);
                }
                continue;
            }
            let segment = &segments[&base];
            if expected.is_some_and(|e| base < e) {
                cut_rest = true;
                if let Some(segment) = segments.remove(&base) {
                    tracing::warn!(dir = %dir.display(), base = %base, "recovery deletes an overlapping segment");
                    delete_segment_files(&segment);
                }
                continue;
            }
            let path = segment.path(LOG_SUFFIX);
            let scan = scan_file(
                &path,
                base,
                segment.size,
                interval,
                true,
                gap_horizon,
                ScanStart::beginning(base),
            )?;
            if let Some(reason) = &scan.invalid {
                let cut = segment.size - scan.valid_bytes;
                // The next segment starts right after the last valid batch:
                // nothing is missing, the bytes cut are junk after the
                // segment's data, and the later segments are good data that
                // deleting would lose.
                let next_base = segments.range(base..).nth(1).map(|(b, _)| *b);
                let continued = next_base.is_some() && next_base == scan.next_offset.or(Some(base));
                tracing::warn!(
                    segment = %path.display(), valid_bytes = scan.valid_bytes, cut_bytes = cut,
                    %reason, continued, "recovery truncates the segment at its first invalid batch"
                );
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_failure("open", &path))?;
                file.set_len(scan.valid_bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(io_failure("truncate", &path))?;
                cut_rest = !continued;
            }
            let segment = segments.get_mut(&base).expect("segment listed above");
            segment.size = scan.valid_bytes;
            segment.write_indexes(&scan, true)?;
            expected = scan.next_offset.or(Some(base));
            if cut_rest || base == active_base {
                active_scan = Some(scan);
            }
        }
    }
    // The active segment is the last one left.
    let (&active_base, active) = segments.iter().next_back().expect("at least one segment");
    let active_path = active.path(LOG_SUFFIX);
    let loaded = active
        .load(Offset(i64::MAX), true, interval, config.segment_index_bytes)
        .map_err(LogError::from)?;
    let scan = match active_scan {
        Some(scan) => scan,
        None => {
            let start = resume_point(active_base, &loaded);
            let scan = scan_file(
                &active_path,
                active_base,
                active.size,
                interval,
                false,
                Offset(i64::MAX),
                start,
            )?;
            if let Some(reason) = &scan.invalid {
                tracing::warn!(
                    segment = %active_path.display(), %reason,
                    "active segment has an unreadable tail after a clean shutdown; cutting it"
                );
            }
            scan
        }
    };
    let mut loaded = loaded;
    if scan.valid_bytes < active.size {
        loaded
            .file
            .set_len(scan.valid_bytes)
            .and_then(|()| loaded.file.sync_all())
            .map_err(io_failure("truncate", &active_path))?;
    }
    // An empty active segment ends where it starts.
    let log_end = scan.next_offset.unwrap_or(active_base);
    loaded.offset_index.truncate_from(log_end);
    loaded.time_index.truncate_from(log_end);
    *active.lock() = Some(loaded);
    let active_size = scan.valid_bytes;
    let active_state = Active {
        cursor: IndexCursor {
            bytes_since_index_entry: scan.bytes_since_index_entry,
            max_timestamp: scan.max_timestamp,
        },
        rolling_base_ms: scan.first_timestamp.filter(|t| *t >= 0),
        ..Active::default()
    };
    if let Some(segment) = segments.get_mut(&active_base) {
        segment.size = active_size;
    }
    // Make what recovery kept durable before trusting it as recovered.
    if !clean {
        for segment in segments
            .range(recover_from.unwrap_or(active_base)..)
            .map(|(_, s)| s)
        {
            let path = segment.path(LOG_SUFFIX);
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_failure("fsync", &path))?;
        }
    }
    let first_base = *segments.keys().next().expect("at least one segment");
    let mut state = State {
        config,
        segments,
        active: active_state,
        log_start: log_start_checkpoint.unwrap_or(first_base).max(first_base),
        log_end,
        recovery_point: log_end,
        rolls: std::collections::VecDeque::new(),
        unflushed_records: 0,
        unflushed_since_ms: None,
        epochs,
        epochs_version: 0,
        log_start_version: 0,
        producers: None,
        truncations: 0,
        max_timestamp: None,
        first_dirty: Offset(0),
        gap_horizon,
        can_reserve: true,
    };
    if state.log_start > state.log_end {
        // Data below the log start was lost (e.g. a torn tail after
        // DeleteRecords); start an empty log at the log start.
        let start = state.log_start;
        tracing::warn!(dir = %dir.display(), %start, "log start is past the recovered end; starting empty");
        let bases: Vec<Offset> = state.segments.keys().copied().collect();
        for base in bases {
            if let Some(segment) = state.segments.remove(&base) {
                segment.lock().take();
                delete_segment_files(&segment);
            }
        }
        let segment = create_segment(dir, start, true)?;
        let loaded = segment
            .load(start, true, interval, state.config.segment_index_bytes)
            .map_err(LogError::from)?;
        *segment.lock() = Some(loaded);
        state.segments.insert(start, segment);
        state.log_end = start;
        state.recovery_point = start;
        state.active = Active::default();
    }
    let log_end = state.log_end;
    let log_start = state.log_start;
    state.first_dirty = cleaner_checkpoint
        .first()
        .copied()
        .unwrap_or(log_start)
        .max(log_start)
        .min(log_end);
    let mut epochs_changed = state.epochs.truncate_from_end(log_end);
    epochs_changed |= state.epochs.truncate_from_start(log_start);
    if epochs_changed {
        checkpoint::write_epochs(dir, state.epochs.entries())?;
    }
    // Only what differs from the files: a new partition (no files, all
    // zero) or a clean reopen writes nothing, which keeps creating 10,000
    // partitions and restarting with them from costing two file
    // replacements and their fsyncs each.
    if recovery_checkpoint != Some(state.recovery_point) && !(fresh && state.recovery_point.0 == 0)
    {
        checkpoint::write_offset(dir, RECOVERY_POINT_FILE, state.recovery_point)?;
    }
    if log_start_checkpoint != Some(state.log_start) && !(fresh && state.log_start.0 == 0) {
        checkpoint::write_offset(dir, LOG_START_FILE, state.log_start)?;
    }
    if !clean && !fresh {
        tracing::info!(
            dir = %dir.display(), %log_start, %log_end,
            "recovered log after an unclean shutdown"
        );
    }
    Ok(state)
}

/// Writes `value` with `write` unless `if_changed` and `slot` already holds
/// it; `slot` is unknown while the write is under way and after a failure.
fn record_write<T: PartialEq>(
    slot: &mut Option<T>,
    value: T,
    if_changed: bool,
    write: impl FnOnce(&T) -> Result<(), IoFailure>,
) -> Result<(), IoFailure> {
    if if_changed && slot.as_ref() == Some(&value) {
        return Ok(());
    }
    *slot = None;
    write(&value)?;
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::index::{OFFSET_ENTRY_LEN, OffsetIndex, TIME_ENTRY_LEN, TimeIndex};

    #[test]
    fn shortages_are_not_disk_faults_but_a_failed_fsync_always_is() {
        use rustix::io::Errno;
        let failure = |op: &'static str, errno: Errno| IoFailure {
            op,
            path: PathBuf::from("x"),
            source: std::io::Error::from_raw_os_error(errno.raw_os_error()),
        };
        for errno in [Errno::MFILE, Errno::NFILE, Errno::NOMEM] {
            assert_eq!(
                FailureKind::of(&failure("open", errno)),
                FailureKind::Resources
            );
        }
        for errno in [Errno::NOSPC, Errno::DQUOT] {
            assert_eq!(
                FailureKind::of(&failure("write", errno)),
                FailureKind::Space
            );
        }
        // Opening the directory to sync it may find no descriptor free.
        assert_eq!(
            FailureKind::of(&failure("fsync directory", Errno::MFILE)),
            FailureKind::Resources
        );
        for (op, errno) in [("write", Errno::IO), ("fsync", Errno::NOSPC)] {
            assert_eq!(FailureKind::of(&failure(op, errno)), FailureKind::Disk);
        }
        let dir = tempfile::tempdir().unwrap();
        let health = DirHealth::new(dir.path());
        health.fail(&failure("open", Errno::MFILE));
        assert_eq!(health.dir_state(), DirState::Online);
        health.fail(&failure("write", Errno::NOSPC));
        // Full, or online again at once if 4 MiB are free there.
        assert_ne!(health.dir_state(), DirState::Offline);
        health.fail(&failure("fsync", Errno::NOSPC));
        assert_eq!(health.dir_state(), DirState::Offline);
    }

    fn batch(records: usize) -> Vec<u8> {
        let mut builder =
            rill_records::builder::BatchBuilder::new(rill_records::batch::Compression::None);
        for i in 0..records {
            let value = bytes::Bytes::from(vec![b'v'; 100]);
            builder
                .append(i as i64, None, Some(value), Vec::new())
                .unwrap();
        }
        builder.build().unwrap()
    }

    /// A log of three closed segments and an active one, 4 records each.
    fn log_of_segments() -> (tempfile::TempDir, Arc<Log>) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 600,
            ..LogConfig::default()
        };
        let log = Arc::new(Log::open(dir.path(), config).unwrap());
        for _ in 0..4 {
            log.append(&batch(4), 0, 0).unwrap();
        }
        log.set_high_watermark(log.log_end_offset());
        assert_eq!(log.segment_count(), 4);
        (dir, log)
    }

    /// Makes the log's next log-start checkpoint write wait until the
    /// returned sender sends (or is dropped); `blocked` receives once the
    /// write is waiting.
    fn block_log_start_write(log: &Log) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
        let (release, wait) = mpsc::channel::<()>();
        let (blocked_tx, blocked) = mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        *log.before_log_start_write.lock().unwrap() = Some(Box::new(move || {
            let _ = blocked_tx.send(());
            let _ = wait.lock().unwrap().recv();
        }));
        (release, blocked)
    }

    /// While `run` is stuck in its log-start checkpoint write, reads,
    /// appends and offset queries of the same log go on; once the write is
    /// released the file holds the new log start.
    fn checkpoint_write_blocks_nothing(run: impl FnOnce(&Log) + Send + 'static) {
        let (dir, log) = log_of_segments();
        let (release, blocked) = block_log_start_write(&log);
        let deleting = {
            let log = log.clone();
            std::thread::spawn(move || run(&log))
        };
        blocked.recv_timeout(Duration::from_secs(10)).unwrap();
        let (done_tx, done) = mpsc::channel();
        let others = {
            let log = log.clone();
            std::thread::spawn(move || {
                let end = log.log_end_offset();
                log.read(log.log_start_offset(), 1 << 20, end).unwrap();
                log.append(&batch(1), 0, 0).unwrap();
                done_tx.send(log.log_end_offset()).unwrap();
            })
        };
        let end = done.recv_timeout(Duration::from_secs(10));
        drop(release);
        assert_eq!(
            end.expect("reads and appends wait for the log-start checkpoint"),
            Offset(17)
        );
        others.join().unwrap();
        deleting.join().unwrap();
        let on_disk = checkpoint::read_offset(dir.path(), LOG_START_FILE).unwrap();
        assert_eq!(on_disk, Some(log.log_start_offset()));
        assert!(log.log_start_offset() > Offset(0));
    }

    #[test]
    fn delete_records_writes_the_log_start_outside_the_state_lock() {
        // Whole segments, then a log start inside one.
        checkpoint_write_blocks_nothing(|log| {
            assert_eq!(log.delete_records_before(Offset(9)).unwrap(), Offset(9));
        });
    }

    #[test]
    fn retention_writes_the_log_start_outside_the_state_lock() {
        checkpoint_write_blocks_nothing(|log| {
            log.update_config(LogConfig {
                segment_bytes: 600,
                retention_bytes: 1,
                ..LogConfig::default()
            });
            assert_eq!(log.apply_retention(0).unwrap(), 3);
        });
    }

    #[test]
    fn an_older_checkpoint_version_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let read = || checkpoint::read_offset(dir.path(), LOG_START_FILE).unwrap();
        log.write_checkpoint(CheckpointFile::LogStart(Offset(20), 2), false)
            .unwrap();
        log.write_checkpoint(CheckpointFile::LogStart(Offset(10), 1), false)
            .unwrap();
        assert_eq!(read(), Some(Offset(20)));
        // A newer version may move it down (a full truncation).
        log.write_checkpoint(CheckpointFile::LogStart(Offset(5), 3), false)
            .unwrap();
        assert_eq!(read(), Some(Offset(5)));
        let epochs = |entries: &[(i32, Offset)], version| {
            log.write_checkpoint(CheckpointFile::Epochs(entries, version), false)
                .unwrap();
        };
        epochs(&[(0, Offset(0)), (1, Offset(7))], 2);
        epochs(&[(0, Offset(0))], 1);
        assert_eq!(
            checkpoint::read_epochs(dir.path()).unwrap(),
            vec![(0, Offset(0)), (1, Offset(7))]
        );
    }

    #[test]
    fn index_entry_sizes_match_the_format() {
        assert_eq!(OFFSET_ENTRY_LEN, 8);
        assert_eq!(TIME_ENTRY_LEN, 12);
        let e = OffsetIndex::encode(Offset(100), Offset(103), Position(4096));
        assert_eq!(e, [0, 0, 0, 3, 0, 0, 0x10, 0]);
        let t = TimeIndex::encode(Offset(100), 5, Offset(101));
        assert_eq!(t, [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1]);
    }
}
