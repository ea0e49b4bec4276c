//! One partition's log (Kafka's `UnifiedLog`): opening it, appending,
//! reading, and the queries about its offsets. The rest of `Log` is in
//! `impl Log` blocks beside the state they work on: `segments.rs` (the
//! segment map, rolls, open handles), `flush.rs` (flushes, checkpoints),
//! `retention.rs`, `truncate.rs`, `swap.rs` (compaction), `scrub.rs`, and
//! `producer.rs` (idempotent producers); `recovery.rs` opens a directory.
//!
//! Thread-safety: `Log` is `Send + Sync` and is shared as `Arc<Log>`. One
//! `RwLock` guards the segment map and offsets: appends, rolls, truncation
//! and retention take it for writing (briefly: a write to the page cache);
//! reads and lookups take it for reading. fsync runs without it (see
//! `flush`), so a slow disk never blocks readers or the next append's copy
//! into the page cache for longer than the fsync of an earlier flush holds
//! `flush_lock`.

use std::fs::File;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rill_records::batch::{BATCH_HEADER_LEN, BatchView, REWRITTEN_PREFIX_LEN, TimestampType};

use crate::append::{AppendSize, Batches, patch_headers, validate_batches};
use crate::checkpoint::{CLEAN_SHUTDOWN_FILE, sync_dir};
use crate::dir_health::DirHealth;
use crate::error::{AppendError, CorruptData, Fault, IoFailure, LogError, OfflineDir, ReadError};
use crate::flush::{CheckpointFile, EpochsToWrite, OnDisk};
use crate::producer::producer_fields;
use crate::recovery::open_state;
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, Loaded, ProducerFields, Segment, io_failure, release_reserve,
};
use crate::segments::{State, reserve_ahead};
use crate::sync::OnDurable;
use crate::sys::write_all_vectored;
use crate::types::{AppendInfo, FileRegion, LogConfig, Offset, Position, ReadInfo};

/// Batches per `writev` call: Linux's `IOV_MAX` is 1024 and each batch takes
/// two slices (patched header, untouched rest).
const BATCHES_PER_WRITE_MAX: usize = 512;

/// One partition's log. See the module documentation for thread-safety.
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) state: RwLock<State>,
    pub(crate) health: Arc<DirHealth>,
    pub(crate) high_watermark: AtomicI64,
    pub(crate) closed: AtomicBool,
    /// Serializes flushes so the recovery point only moves forward.
    pub(crate) flush_lock: Mutex<()>,
    /// Held while the cleaner works on this log (one cleaner at a time) and
    /// by truncation, which must not shrink a segment the cleaner maps.
    pub(crate) cleaning: Mutex<()>,
    /// What the checkpoint files hold, as this process last wrote (or, at
    /// open, found) them: [`Log::checkpoint`] rewrites only a file whose
    /// value changed (with 10,000 idle partitions, rewriting them all every
    /// interval was 30,000 file replacements and their fsyncs a minute).
    /// Every write of these files goes through [`Log::write_checkpoint`],
    /// which also serializes them.
    pub(crate) on_disk: Mutex<OnDisk>,
    /// A roll created a segment file and did not fsync the directory; the
    /// next flush does, before it moves the recovery point.
    pub(crate) dir_unsynced: AtomicBool,
    /// Runs before each log-start checkpoint write: a test blocks it to
    /// show what may run meanwhile.
    #[cfg(test)]
    pub(crate) before_log_start_write: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).finish()
    }
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

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // Writers keep the state consistent at every point where they can
        // fail, so a panic elsewhere does not make it unreadable.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn check_usable(&self) -> Result<(), Fault> {
        self.health.check()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Fault::Closed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Takes the directory offline on an IO failure and passes the result on.
    pub(crate) fn guard<T>(&self, result: Result<T, Fault>) -> Result<T, Fault> {
        if let Err(Fault::Io(failure)) = &result {
            self.health.fail(failure);
        }
        result
    }

    /// Appends whole record batches (one buffer or several, see
    /// [`Batches`]) with vectored writes, never copied into one buffer.
    /// Every batch is validated
    /// first; an invalid one rejects the whole append and leaves the log
    /// unchanged. Offsets are assigned by rewriting each batch's base offset,
    /// and `leader_epoch` is stamped into each.
    ///
    /// With `flush.messages` set this may fsync, so like `flush` it must not
    /// run on an async worker thread. It fsyncs on its own; concurrent
    /// appends share syncs through [`Log::append_with_sync`].
    pub fn append<'a>(
        &self,
        batches: impl Into<Batches<'a>>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let (info, flush_due) = self.append_unsynced(batches.into(), leader_epoch, now_ms)?;
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
    pub fn append_with_sync<'a>(
        self: &Arc<Self>,
        batches: impl Into<Batches<'a>>,
        leader_epoch: i32,
        now_ms: i64,
        done: OnDurable,
    ) -> Result<AppendInfo, AppendError> {
        let (info, flush_due) = self.append_unsynced(batches.into(), leader_epoch, now_ms)?;
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
        batches: Batches<'_>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, bool), AppendError> {
        self.check_usable()?;
        let views = {
            let state = self.read_state();
            validate_batches(batches, &state.config)?
        };
        let size = AppendSize::of(&views);
        let mut state = self.write_state();
        self.check_usable()?;
        self.health.check_space()?;
        size.check_fits(state.log_end)?;
        let fields: Vec<ProducerFields> = views.iter().map(producer_fields).collect();
        if let Some(retried) = self.check_producers(&mut state, &fields)? {
            return Ok(retried);
        }
        self.guard(self.maybe_roll(&mut state, size.bytes, size.offsets, now_ms))?;
        let log_append_time_ms = match state.config.message_timestamp_type {
            TimestampType::LogAppendTime => now_ms,
            TimestampType::CreateTime => -1,
        };
        let log_end = state.log_end;
        let headers = patch_headers(&views, log_end, leader_epoch, log_append_time_ms);
        let start_position =
            self.write_batches(&mut state, &views, &headers, size.bytes, log_append_time_ms)?;
        index_appended(&mut state, &views, start_position, log_append_time_ms);
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
        let first_ts = if log_append_time_ms >= 0 {
            log_append_time_ms
        } else {
            views[0].max_timestamp()
        };
        state
            .active
            .rolling_base_ms
            .get_or_insert(if first_ts >= 0 { first_ts } else { now_ms });
        let info = AppendInfo {
            base_offset: log_end,
            last_offset: Offset(log_end.0 + size.offsets - 1),
            log_append_time_ms,
            log_start_offset: state.log_start,
            record_count: size.records,
        };
        let (flush_due, epochs) = self.count_appended(&mut state, leader_epoch, &info, now_ms);
        drop(state);
        if let Some((epochs, version)) = epochs {
            let written = self.write_checkpoint(CheckpointFile::Epochs(&epochs, version), false);
            self.guard(written.map_err(Fault::from))?;
        }
        Ok((info, flush_due))
    }

    /// Writes the batches with their patched headers at the end of the
    /// active segment, in as few `writev` calls as `IOV_MAX` allows;
    /// returns the position they start at. A failed write is cut back off
    /// the file.
    fn write_batches(
        &self,
        state: &mut State,
        views: &[BatchView<'_>],
        headers: &[[u8; BATCH_HEADER_LEN]],
        total_bytes: u64,
        log_append_time_ms: i64,
    ) -> Result<u64, AppendError> {
        // The rewritten prefix, or the whole header when the append time
        // was stamped too.
        let prefix_len = if log_append_time_ms >= 0 {
            BATCH_HEADER_LEN
        } else {
            REWRITTEN_PREFIX_LEN
        };
        let segment = state.active_segment();
        let start_position = segment.size;
        let file = self.guard(self.with_loaded(state, segment, |l| Ok(l.file.clone())))?;
        reserve_ahead(state, &file, start_position, total_bytes);
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
                return Err(self.write_failed(state, &file, start_position, source));
            }
        }
        Ok(start_position)
    }

    /// A write of the active segment failed: the file may hold part of the
    /// append; cut it back so a restart does not find a torn batch. A full
    /// disk only stops appends; other errors take the directory offline.
    fn write_failed(
        &self,
        state: &State,
        file: &File,
        start_position: u64,
        source: std::io::Error,
    ) -> AppendError {
        let failure = IoFailure {
            op: "write",
            // Built only on failure: formatting a path per append costs
            // more than the rest of the bookkeeping.
            path: state.active_segment().path(LOG_SUFFIX),
            source,
        };
        self.health.fail(&failure);
        if let Err(source) = file.set_len(start_position) {
            // A torn batch past the segment's size is never read and
            // recovery cuts it, but a file that cannot be cut is a disk
            // fault whatever the write's error was.
            self.health.go_offline(&IoFailure {
                op: "truncate",
                path: failure.path.clone(),
                source,
            });
        }
        AppendError::Io(failure)
    }

    /// Moves the log end over an append described by `info` and counts it
    /// for the flush policy: (whether a flush is due now, the leader-epoch
    /// checkpoint to write before the append is acknowledged).
    fn count_appended(
        &self,
        state: &mut State,
        leader_epoch: i32,
        info: &AppendInfo,
        now_ms: i64,
    ) -> (bool, Option<EpochsToWrite>) {
        state.log_end = Offset(info.last_offset.0 + 1);
        let cursor = state.active.cursor;
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
        let epochs_changed = state.epochs.assign(leader_epoch, info.base_offset);
        let epochs_to_write = epochs_changed
            .then(|| {
                state.epochs_version += 1;
                state.epochs_to_write()
            })
            .filter(|_| state.config.flush_messages.is_some());
        state.unflushed_records += info.record_count;
        state.unflushed_since_ms.get_or_insert(now_ms);
        let flush_due = state
            .config
            .flush_messages
            .is_some_and(|n| state.unflushed_records >= n);
        (flush_due, epochs_to_write)
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

    pub(crate) fn health_check(&self) -> Result<(), OfflineDir> {
        self.health.check()
    }

    /// A failed sync of the directory: it goes offline.
    pub(crate) fn fail_dir(&self, failure: &IoFailure) {
        self.health.fail(failure);
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
        self.read_state().unload_all();
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.read_state().unload_all();
    }
}

/// Indexes batches just written at `start_position` of the active segment
/// (from the log end on) exactly as a rebuild would, and moves the
/// segment's size and index cursor past them.
fn index_appended(
    state: &mut State,
    views: &[BatchView<'_>],
    start_position: u64,
    log_append_time_ms: i64,
) {
    let interval = state.config.index_interval_bytes;
    let mut cursor = state.active.cursor;
    let mut position = start_position;
    let mut batch_base = state.log_end;
    let mut entries = Vec::new();
    for view in views {
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
        position += view.total_len() as u64;
        batch_base = Offset(last.0 + 1);
    }
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
    state.active.cursor = cursor;
    state.active_segment_mut().size = position;
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
) -> Result<Option<(FileRegion, Option<Offset>)>, Fault> {
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
    let slice = FileRegion {
        file: loaded.file.clone(),
        position,
        // A slice is at most max(max_bytes, first batch) long, and a batch
        // is at most i32::MAX + 12 bytes, so it fits a u32.
        len: u32::try_from(stop - position).unwrap_or(u32::MAX),
    };
    Ok(Some((slice, next_offset)))
}
