//! Compaction as the log sees it: which part is dirty, and the clean that
//! swaps rewritten segments in under the log's lock. The file work (the
//! key map, the rewrite) is in `cleaner.rs`.

use std::fs;
use std::sync::atomic::Ordering;

use crate::checkpoint::{self, CLEANER_FILE, sync_dir};
use crate::cleaner::{self, CleanRules, CleanStats, Cleanable, Cleaned, OffsetMap, SegmentRef};
use crate::error::{Fault, LogError};
use crate::files::{remove_retired, try_lock_cleaning};
use crate::log::Log;
use crate::segment::{LOG_SUFFIX, Scan, ScanStart, Segment, io_failure, scan_file};
use crate::segments::{SEGMENT_BYTES_MAX, State};
use crate::types::{LogConfig, Offset};

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
        let Some(plan) = self.clean_plan(now_ms)? else {
            return Ok(None);
        };
        let mut stats = CleanStats {
            first_dirty: plan.first_dirty,
            ..CleanStats::default()
        };
        let first_dirty = plan.first_dirty;
        let map_end =
            match cleaner::build_offset_map(&plan.dirty, first_dirty, map, throttle, &mut stats) {
                Ok(end) => end,
                Err(fault) => return self.cleaner_fault(fault, &plan.dirty).map(|()| None),
            };
        stats.map_end = map_end;
        if map_end <= first_dirty {
            return Ok(None);
        }
        let to_clean: Vec<SegmentRef> = plan
            .closed
            .into_iter()
            .filter(|s| s.base < map_end && s.end <= plan.cleanable_end)
            .collect();
        let rules = CleanRules {
            map,
            map_end,
            log_start: plan.log_start,
            tombstone_horizon_ms: now_ms.saturating_sub(plan.config.delete_retention_ms),
        };
        self.raise_gap_horizon(map_end)?;
        let max_bytes = plan.config.segment_bytes.min(SEGMENT_BYTES_MAX);
        let interval_bytes = plan.config.index_interval_bytes;
        for group in cleaner::group_segments(&to_clean, max_bytes) {
            match self.clean_and_swap(
                &group,
                &rules,
                interval_bytes,
                throttle,
                proceed,
                &mut stats,
            )? {
                GroupEnd::Swapped => {}
                // What was swapped so far stands.
                GroupEnd::Failed => return Ok((stats.segments_after > 0).then_some(stats)),
                // The log changed under the clean (retention, truncation) or
                // a test stopped it: what was swapped so far stands.
                GroupEnd::NotSwapped => return Ok(Some(stats)),
            }
        }
        let mut state = self.write_state();
        state.first_dirty = state.first_dirty.max(map_end).min(state.log_end);
        self.write_cleaner_checkpoint(&state)?;
        Ok(Some(stats))
    }

    /// What a clean starting now works on; `None` when the log is not
    /// compacted or nothing cleanable is dirty.
    fn clean_plan(&self, now_ms: i64) -> Result<Option<CleanPlan>, LogError> {
        let state = self.read_state();
        if !state.config.cleanup_compact {
            return Ok(None);
        }
        let (closed, cleanable_end) = self.cleaner_view(&state, now_ms)?;
        let first_dirty = state.first_dirty;
        let dirty: Vec<SegmentRef> = closed
            .iter()
            .filter(|s| s.end > first_dirty && s.end <= cleanable_end)
            .cloned()
            .collect();
        if dirty.is_empty() {
            return Ok(None);
        }
        Ok(Some(CleanPlan {
            config: state.config.clone(),
            log_start: state.log_start,
            first_dirty,
            closed,
            cleanable_end,
            dirty,
        }))
    }

    /// Before any swap commits: gaps may now appear below `map_end`.
    fn raise_gap_horizon(&self, map_end: Offset) -> Result<(), LogError> {
        let mut state = self.write_state();
        // A deleted log's directory is renamed once this lock is free
        // (`LogManager::delete` marks the log closed first).
        self.check_usable()?;
        if map_end > state.gap_horizon {
            state.gap_horizon = map_end;
            self.write_cleaner_checkpoint(&state)?;
        }
        Ok(())
    }

    /// Writes the cleaner's checkpoint: the first dirty offset and the gap
    /// horizon.
    fn write_cleaner_checkpoint(&self, state: &State) -> Result<(), LogError> {
        let entries = [state.first_dirty, state.gap_horizon];
        let written = checkpoint::write_offsets(&self.dir, CLEANER_FILE, &entries);
        self.guard(written.map_err(Fault::from))?;
        Ok(())
    }

    /// Rewrites one group of segments and swaps the result in.
    fn clean_and_swap(
        &self,
        group: &[SegmentRef],
        rules: &CleanRules<'_>,
        interval_bytes: u32,
        throttle: &mut dyn FnMut(u64) -> bool,
        proceed: &mut dyn FnMut(SwapStep) -> bool,
        stats: &mut CleanStats,
    ) -> Result<GroupEnd, LogError> {
        let cleaned =
            cleaner::clean_group(&self.dir, group, rules, throttle, stats).and_then(|cleaned| {
                let scan = scan_cleaned(&cleaned, interval_bytes)?;
                Ok((cleaned, scan))
            });
        let (cleaned, scan) = match cleaned {
            Ok(done) => done,
            Err(fault) => {
                self.cleaner_fault(fault, group)?;
                return Ok(GroupEnd::Failed);
            }
        };
        if !self.swap_in(group, &cleaned, &scan, proceed)? {
            return Ok(GroupEnd::NotSwapped);
        }
        stats.segments_before += group.len();
        stats.segments_after += 1;
        Ok(GroupEnd::Swapped)
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
            state.retire(s.base, &mut retired);
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

/// What one clean works on, read from the log's state as it starts.
struct CleanPlan {
    config: LogConfig,
    log_start: Offset,
    first_dirty: Offset,
    /// The closed segments as the cleaner sees them.
    closed: Vec<SegmentRef>,
    cleanable_end: Offset,
    /// The dirty part of `closed`: what the key map is built from.
    dirty: Vec<SegmentRef>,
}

/// How the clean of one group of segments ended.
enum GroupEnd {
    Swapped,
    /// The file work failed and the fault was dealt with.
    Failed,
    /// The log changed under the clean, or a test stopped it.
    NotSwapped,
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
