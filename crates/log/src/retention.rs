//! Deleting from the front of a log: retention by size and time, and
//! DeleteRecords (Kafka's `deleteRecords`), which moves the log start.

use std::sync::atomic::Ordering;

use crate::cleaner;
use crate::dir_health::FailureKind;
use crate::error::{Fault, IoFailure, LogError};
use crate::files::{Retired, remove_retired};
use crate::flush::CheckpointsDue;
use crate::log::Log;
use crate::segment::{LOG_SUFFIX, Segment};
use crate::segments::State;
use crate::types::Offset;

impl Log {
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
    /// long each time retention deleted a segment. A rename costs no page work, and its new name cannot be
    /// taken by a segment created after the lock is released.
    fn remove_front_segments(
        &self,
        state: &mut State,
        bases: &[Offset],
        due: &mut CheckpointsDue,
    ) -> Vec<Retired> {
        let mut retired = Vec::new();
        for base in bases {
            if state.retire(*base, &mut retired) {
                tracing::info!(dir = %self.dir.display(), %base, "deleted segment");
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

    /// A checkpoint write that found the disk full is let go (the
    /// directory is marked full, the checkpoint is rewritten at the next
    /// `checkpoint`); any other failure is returned as usual.
    pub(crate) fn tolerate_full(&self, written: Result<(), IoFailure>) -> Result<(), Fault> {
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
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::checkpoint::{self, LOG_START_FILE};
    use crate::types::LogConfig;

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
}
