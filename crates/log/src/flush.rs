//! Making a log durable: flushes and the recovery point, and every write
//! of the log's checkpoint files (recovery point, log start, leader
//! epochs), which records what the files hold so unchanged ones are not
//! rewritten and an older value never replaces a newer one.

use std::sync::atomic::Ordering;

use crate::checkpoint::{self, LOG_START_FILE, RECOVERY_POINT_FILE, sync_dir};
use crate::error::{Fault, IoFailure, LogError};
use crate::index::IndexFile;
use crate::log::Log;
use crate::segment::{INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, io_failure};
use crate::segments::State;
use crate::types::Offset;

/// How long after a roll the closed segment is flushed (Kafka flushes at
/// once). An fsync of a segment's worth of dirty data stalled appends on
/// this VM's ext4 (end-to-end p99 in the hundreds of ms, measured when a
/// flush at every roll was first tried here); Linux writes back pages
/// dirty for 30 s on its own (`vm.dirty_expire_centisecs`), so by then the
/// fsync finds little left to write. The cost: recovery after a crash also
/// checks the segments rolled in the last 30 s.
const ROLL_FLUSH_DELAY_MS: i64 = 30_000;

/// The values in a log's checkpoint files; `None` when not known (a write
/// in progress or failed).
pub(crate) struct OnDisk {
    pub(crate) recovery_point: Option<Offset>,
    pub(crate) log_start: Option<Offset>,
    pub(crate) epochs: Option<Vec<(i32, Offset)>>,
    /// The `State::epochs_version` of the newest list written.
    pub(crate) epochs_version: u64,
    /// The `State::log_start_version` of the newest log start written.
    pub(crate) log_start_version: u64,
}

/// How far a flush reaches, noted before its syncs (`Log::flush_below`,
/// the syncer's round) and applied after them (`Log::sync_finish`).
pub(crate) struct FlushMark {
    pub(crate) target: Offset,
    pub(crate) records: u64,
    pub(crate) truncations: u64,
    pub(crate) active_base: Offset,
}

/// Which checkpoint file a write is for.
pub(crate) enum CheckpointFile<'a> {
    RecoveryPoint(Offset),
    /// The log start and the `State::log_start_version` it was taken at.
    LogStart(Offset, u64),
    /// The entries and the `State::epochs_version` they were taken at.
    Epochs(&'a [(i32, Offset)], u64),
}

/// Leader-epoch entries and the `State::epochs_version` they were taken at.
pub(crate) type EpochsToWrite = (Vec<(i32, Offset)>, u64);

/// Checkpoint writes that a change made under the state lock leaves for
/// after it ([`Log::write_due`]): each costs a file write and two fsyncs,
/// and every produce and fetch of the partition waits for that lock. The
/// versions taken with the values keep a slower writer from putting an
/// older value back over a newer one.
#[derive(Default)]
pub(crate) struct CheckpointsDue {
    /// The log start and its `State::log_start_version`.
    pub(crate) log_start: Option<(Offset, u64)>,
    /// The log start is the first segment's base, which recovery derives
    /// from the segments left, so a full disk may skip its checkpoint.
    pub(crate) log_start_derivable: bool,
    /// The leader-epoch entries and their `State::epochs_version`.
    pub(crate) epochs: Option<EpochsToWrite>,
    /// Entries below the log start are dropped again at open, so a full
    /// disk may skip this one (true for changes at the log start).
    pub(crate) epochs_tolerant: bool,
}

impl Log {
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
    pub(crate) fn flush_below(&self, limit: Option<Offset>) -> Result<(), Fault> {
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
    pub(crate) fn write_checkpoint(
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

    /// Writes the checkpoints a change under the state lock left due; the
    /// caller has let go of the lock.
    pub(crate) fn write_due(&self, due: CheckpointsDue) -> Result<(), Fault> {
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
    use super::*;
    use crate::types::LogConfig;

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
}
