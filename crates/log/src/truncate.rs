//! Cutting the tail of a log (`Log::truncate_to`, for replication).

use std::sync::atomic::Ordering;

use crate::error::{Fault, LogError};
use crate::files::{Retired, remove_retired};
use crate::flush::{CheckpointFile, CheckpointsDue};
use crate::log::Log;
use crate::recovery::resume_point;
use crate::segment::{IndexCursor, LOG_SUFFIX, io_failure, scan_file};
use crate::segments::{Active, LOADED_SEGMENTS, State, create_segment};
use crate::snapshot;
use crate::types::Offset;

impl Log {
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
        for base in all {
            state.retire(base, retired);
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
            state.retire(*base, retired);
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
}
