//! A log's segment bookkeeping (Kafka's `LocalLog`): the state behind the
//! log's lock, the active segment, rolls, and the bounds on open segment
//! handles across the process.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rill_records::batch::BATCH_HEADER_LEN;

use crate::checkpoint;
use crate::epoch::LeaderEpochCache;
use crate::error::Fault;
use crate::files::{Retired, retire_segment_files};
use crate::flush::{CheckpointsDue, EpochsToWrite};
use crate::log::Log;
use crate::producer::ProducerState;
use crate::segment::{
    INDEX_SUFFIX, IndexCursor, LOG_SUFFIX, Loaded, Segment, TIME_INDEX_SUFFIX, io_failure,
    release_reserve,
};
use crate::snapshot;
use crate::sys;
use crate::types::{LogConfig, Offset};

/// The largest segment file: index entries hold 32-bit positions, and Kafka
/// caps `segment.bytes` at `i32::MAX` too.
pub(crate) const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Rolls waiting for their flush, per log: a roll every few ms for 30 s
/// would be thousands, and flushing to a later roll covers earlier ones.
const ROLLS_PENDING_MAX: usize = 64;

/// A logical clock for "last used" marks on segments, shared by every log so
/// that the manager can compare active segments across logs.
static USE_CLOCK: AtomicU64 = AtomicU64::new(1);

/// Closed segments whose file and index maps are open, across the process.
pub(crate) static LOADED_SEGMENTS: AtomicUsize = AtomicUsize::new(0);

/// How many closed segments may hold an open file (and two maps) at once.
/// Each costs one descriptor, so the bound is a quarter of the process's
/// descriptor limit (the rest is for sockets and active segments), at least
/// 64 and at most 16384 (each also holds two of the kernel's default 65530
/// memory maps per process).
pub(crate) fn loaded_segments_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| quarter_of_descriptor_limit().clamp(64, 16384))
}

/// A quarter of the process's open-file limit (its soft limit, read once by
/// each caller's `OnceLock`).
fn quarter_of_descriptor_limit() -> usize {
    let limit = sys::open_files_limit().unwrap_or(u64::MAX);
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

/// State kept only for the active segment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Active {
    pub(crate) cursor: IndexCursor,
    /// When the segment's age starts counting for `segment.ms`: the first
    /// batch's timestamp, or the time the segment was created or opened.
    pub(crate) rolling_base_ms: Option<i64>,
    /// The file's blocks up to here are reserved for appends (see
    /// `reserve_ahead`); 0 when nothing is known to be.
    pub(crate) reserved_to: u64,
}

pub(crate) struct State {
    pub(crate) config: LogConfig,
    /// Boxed: a B-tree leaf has room for 11 entries, and with a
    /// `Segment` (~240 bytes) in place a log of one segment cost 2.6 KiB
    /// here (26 MiB of the broker's heap at 10,000 partitions, measured).
    pub(crate) segments: BTreeMap<Offset, Box<Segment>>,
    pub(crate) active: Active,
    pub(crate) log_start: Offset,
    pub(crate) log_end: Offset,
    /// Everything below this offset has been fsynced.
    pub(crate) recovery_point: Offset,
    /// The rolls whose flush is still to come, oldest first: the new
    /// segment's base (the closed segments below it are to be flushed) and
    /// the roll's time. See `Log::flush_if_due`; at most
    /// [`ROLLS_PENDING_MAX`].
    pub(crate) rolls: std::collections::VecDeque<(Offset, i64)>,
    /// Records appended since the last flush began.
    pub(crate) unflushed_records: u64,
    /// Wall-clock ms of the oldest append not yet flushed.
    pub(crate) unflushed_since_ms: Option<i64>,
    pub(crate) epochs: LeaderEpochCache,
    /// Counts changes of `epochs`: an append writes the leader-epoch
    /// checkpoint after it drops the lock, so a slower writer of an older
    /// list must not replace a newer one (see `Log::write_checkpoint`).
    pub(crate) epochs_version: u64,
    /// Counts changes of `log_start`, for the same reason: its checkpoint
    /// is written after the change drops the lock.
    pub(crate) log_start_version: u64,
    /// Idempotent-producer state, rebuilt on the first append after open
    /// (so opening stays fast) from the newest segments' batch headers.
    pub(crate) producers: Option<ProducerState>,
    /// Counts truncations, so a flush that raced with one does not move
    /// the recovery point over bytes it did not sync.
    pub(crate) truncations: u64,
    /// The largest timestamp in the log and its batch's last offset; `None`
    /// inside means "no timestamps", outer `None` means "not computed yet".
    pub(crate) max_timestamp: Option<Option<(i64, Offset)>>,
    /// The cleaner's checkpoint: offsets below it were compacted.
    pub(crate) first_dirty: Offset,
    /// Offsets may be missing (compacted away) only below this; made
    /// durable before a clean commits its first swap.
    pub(crate) gap_horizon: Offset,
    /// False once the file system has said it cannot reserve blocks.
    pub(crate) can_reserve: bool,
}

impl State {
    pub(crate) fn active_segment(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn is_active(&self, segment: &Segment) -> bool {
        self.active_segment().base == segment.base
    }

    /// Takes the segment at `base` out of the map and renames its files, to
    /// be unlinked from `retired` once the state lock is let go; its open
    /// handles leave the count of loaded closed segments (the active one is
    /// counted apart). False if no segment starts at `base`.
    pub(crate) fn retire(&mut self, base: Offset, retired: &mut Vec<Retired>) -> bool {
        let was_active = self.segments.keys().next_back() == Some(&base);
        let Some(segment) = self.segments.remove(&base) else {
            return false;
        };
        let loaded = segment.lock().take();
        if loaded.is_some() && !was_active {
            LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
        }
        retire_segment_files(&segment, loaded, retired);
        true
    }

    /// Closes every segment's handles.
    pub(crate) fn unload_all(&self) {
        for segment in self.segments.values() {
            if segment.lock().take().is_some() && !self.is_active(segment) {
                LOADED_SEGMENTS.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The offset after the last one a segment may hold.
    pub(crate) fn segment_end(&self, base: Offset) -> Offset {
        self.segments
            .range((std::ops::Bound::Excluded(base), std::ops::Bound::Unbounded))
            .next()
            .map_or(self.log_end, |(b, _)| *b)
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// The leader-epoch entries and their version, to write to the file.
    pub(crate) fn epochs_to_write(&self) -> EpochsToWrite {
        (self.epochs.entries().to_vec(), self.epochs_version)
    }

    /// Moves the log start (up, or anywhere for a full truncation) and
    /// counts the change for [`Log::write_checkpoint`]'s version guard.
    pub(crate) fn set_log_start(&mut self, start: Offset) {
        self.log_start = start;
        self.log_start_version += 1;
    }

    /// The log start and its version, to write to the file.
    pub(crate) fn log_start_to_write(&self) -> (Offset, u64) {
        (self.log_start, self.log_start_version)
    }

    /// Drops leader-epoch entries below `start`; if that changed the list,
    /// notes its checkpoint in `due`.
    pub(crate) fn epochs_from_start(&mut self, start: Offset, due: &mut CheckpointsDue) {
        if self.epochs.truncate_from_start(start) {
            self.epochs_version += 1;
            due.epochs = Some(self.epochs_to_write());
        }
    }
}

impl Log {
    /// Runs `f` with a segment's handles, opening them first if needed (and
    /// closing the least recently used closed segment if over the bound).
    pub(crate) fn with_loaded<R>(
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

    /// Rolls the active segment if this append would not fit in it.
    pub(crate) fn maybe_roll(
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
/// "Invariants"). A leftover of the same name is in no
/// segment map, so nothing reads it.
///
/// With `sync_dir` false the new file's directory entry is left for the
/// next flush to make durable (`Log::flush_below` syncs the directory
/// before it moves the recovery point over the file): a roll calls it so,
/// under the state lock and possibly on an async worker.
pub(crate) fn create_segment(
    dir: &Path,
    base: Offset,
    sync_dir: bool,
) -> Result<Box<Segment>, Fault> {
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
pub(crate) fn reserve_ahead(state: &mut State, file: &File, start: u64, len: u64) {
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
    match sys::reserve_blocks(file, start, to - start) {
        Ok(()) => state.active.reserved_to = to,
        Err(e) if sys::cannot_reserve(e) => {
            tracing::debug!(error = %e, "the file system cannot reserve blocks; appends extend the file");
            state.can_reserve = false;
        }
        Err(e) => tracing::debug!(error = %e, "could not reserve blocks ahead of appends"),
    }
}
