//! Opening a partition directory (Kafka's `LogLoader`): listing its
//! segments, finishing what a crash interrupted, and recovering the
//! segments written after the last durable recovery point.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use crate::checkpoint::{
    self, CLEAN_SHUTDOWN_FILE, CLEANER_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, sync_dir,
};
use crate::cleaner;
use crate::epoch::LeaderEpochCache;
use crate::error::LogError;
use crate::files::{DELETED_SUFFIX, delete_segment_files};
use crate::segment::{
    INDEX_SUFFIX, IndexCursor, LOG_SUFFIX, Loaded, Scan, ScanStart, Segment, TIME_INDEX_SUFFIX,
    io_failure, parse_file_name, scan_file,
};
use crate::segments::{Active, State, create_segment};
use crate::types::{LogConfig, Offset};

/// Lists the segments in `dir`, removing temporary files and index files
/// whose log file is gone.
pub(crate) fn list_segments(dir: &Path) -> Result<BTreeMap<Offset, u64>, LogError> {
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

/// What a partition directory's checkpoint files held at open.
struct Checkpoints {
    log_start: Option<Offset>,
    recovery_point: Option<Offset>,
    /// The cleaner's [first dirty offset, gap horizon]; a single entry is
    /// both.
    cleaner: Vec<Offset>,
}

impl Checkpoints {
    fn read(dir: &Path) -> Result<Checkpoints, LogError> {
        Ok(Checkpoints {
            log_start: checkpoint::read_offset(dir, LOG_START_FILE)?,
            recovery_point: checkpoint::read_offset(dir, RECOVERY_POINT_FILE)?,
            cleaner: checkpoint::read_offsets(dir, CLEANER_FILE)?.unwrap_or_default(),
        })
    }

    /// Offsets may be missing (compacted away) only below this.
    fn gap_horizon(&self) -> Offset {
        self.cleaner.last().copied().unwrap_or(Offset(-1))
    }
}

/// Opens the directory's segments, recovering after an unclean stop.
///
/// Segments retention or DeleteRecords dropped may be left as `*.deleted`
/// files by a crash, or gone while the log-start checkpoint still holds an
/// older start: `list_segments` removes the former, and the log start is
/// the larger of the checkpoint and the first segment left, so what was
/// deleted is never served again.
pub(crate) fn open_state(dir: &Path, config: LogConfig) -> Result<State, LogError> {
    fs::create_dir_all(dir).map_err(io_failure("create directory", dir))?;
    let clean = take_clean_shutdown_marker(dir)?;
    cleaner::finish_interrupted_swaps(dir)?;
    let files = list_segments(dir)?;
    // A directory with no segment is a new log, not one that crashed.
    let fresh = files.is_empty();
    let checkpoints = Checkpoints::read(dir)?;
    let epochs = LeaderEpochCache::from_entries(checkpoint::read_epochs(dir)?);
    let mut segments: BTreeMap<Offset, Box<Segment>> = files
        .iter()
        .map(|(&base, &size)| (base, Box::new(Segment::new(dir, base, size))))
        .collect();
    if segments.is_empty() {
        let base = checkpoints.log_start.unwrap_or(Offset(0)).max(Offset(0));
        segments.insert(base, create_segment(dir, base, true)?);
    }
    let recover_from = if clean || fresh {
        None
    } else {
        let rp = checkpoints.recovery_point.unwrap_or(Offset(0));
        let first = *segments.keys().next().unwrap_or(&Offset(0));
        Some(segments.range(..=rp).next_back().map_or(first, |(b, _)| *b))
    };
    let active_scan = match recover_from {
        Some(from) => recover_segments(dir, &mut segments, from, &config, &checkpoints)?,
        None => None,
    };
    let (log_end, active) = open_active(&mut segments, active_scan, &config)?;
    // Make what recovery kept durable before trusting it as recovered.
    if !clean {
        let last = *segments.keys().next_back().expect("at least one segment");
        sync_segments(&segments, recover_from.unwrap_or(last))?;
    }
    let first_base = *segments.keys().next().expect("at least one segment");
    let mut state = State {
        config,
        segments,
        active,
        log_start: checkpoints.log_start.unwrap_or(first_base).max(first_base),
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
        gap_horizon: checkpoints.gap_horizon(),
        can_reserve: true,
    };
    if state.log_start > state.log_end {
        restart_at_log_start(dir, &mut state)?;
    }
    state.first_dirty = checkpoints
        .cleaner
        .first()
        .copied()
        .unwrap_or(state.log_start)
        .max(state.log_start)
        .min(state.log_end);
    write_changed_checkpoints(dir, &mut state, &checkpoints, fresh)?;
    if !clean && !fresh {
        tracing::info!(
            dir = %dir.display(), log_start = %state.log_start, log_end = %state.log_end,
            "recovered log after an unclean shutdown"
        );
    }
    Ok(state)
}

/// Whether the last close was clean; from now on the log is dirty until
/// the next clean close.
fn take_clean_shutdown_marker(dir: &Path) -> Result<bool, LogError> {
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    if !marker.exists() {
        return Ok(false);
    }
    fs::remove_file(&marker).map_err(io_failure("remove", &marker))?;
    sync_dir(dir)?;
    Ok(true)
}

/// Checks every batch of the segments from `from` on, rebuilding their
/// indexes, cutting a segment at its first invalid batch and deleting the
/// segments after a cut that left a hole (or that overlap). Returns the
/// scan of the segment left active, if it was recovered.
fn recover_segments(
    dir: &Path,
    segments: &mut BTreeMap<Offset, Box<Segment>>,
    from: Offset,
    config: &LogConfig,
    checkpoints: &Checkpoints,
) -> Result<Option<Scan>, LogError> {
    let active_base = *segments.keys().next_back().unwrap_or(&Offset(0));
    let bases: Vec<Offset> = segments.range(from..).map(|(b, _)| *b).collect();
    let mut active_scan = None;
    let mut cut_rest = false;
    let mut expected: Option<Offset> = None;
    for base in bases {
        let overlaps = !cut_rest && expected.is_some_and(|e| base < e);
        if cut_rest || overlaps {
            cut_rest = true;
            if let Some(segment) = segments.remove(&base) {
                if overlaps {
                    tracing::warn!(dir = %dir.display(), base = %base, "recovery deletes an overlapping segment");
                } else {
                    tracing::warn!(
                        dir = %dir.display(), base = %base,
                        "recovery deletes a segment that follows a corrupt one"
                    );
                }
                delete_segment_files(&segment);
            }
            continue;
        }
        let segment = &segments[&base];
        let scan = scan_file(
            &segment.path(LOG_SUFFIX),
            base,
            segment.size,
            config.index_interval_bytes,
            true,
            checkpoints.gap_horizon(),
            ScanStart::beginning(base),
        )?;
        if scan.invalid.is_some() {
            // The next segment starts right after the last valid batch:
            // nothing is missing, the bytes cut are junk after the
            // segment's data, and the later segments are good data that
            // deleting would lose.
            let next_base = segments.range(base..).nth(1).map(|(b, _)| *b);
            let continued = next_base.is_some() && next_base == scan.next_offset.or(Some(base));
            cut_invalid_tail(segment, &scan, continued)?;
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
    Ok(active_scan)
}

/// Cuts a segment at its first invalid batch, as `scan` found it.
fn cut_invalid_tail(segment: &Segment, scan: &Scan, continued: bool) -> Result<(), LogError> {
    let path = segment.path(LOG_SUFFIX);
    tracing::warn!(
        segment = %path.display(), valid_bytes = scan.valid_bytes,
        cut_bytes = segment.size - scan.valid_bytes, reason = ?scan.invalid, continued,
        "recovery truncates the segment at its first invalid batch"
    );
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_failure("open", &path))?;
    file.set_len(scan.valid_bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_failure("truncate", &path))?;
    Ok(())
}

/// Opens the last segment as the active one, scanning it from its last
/// index entry unless recovery already did, and cutting an unreadable
/// tail. Returns the log end and the active segment's state.
fn open_active(
    segments: &mut BTreeMap<Offset, Box<Segment>>,
    recovered: Option<Scan>,
    config: &LogConfig,
) -> Result<(Offset, Active), LogError> {
    let (&active_base, active) = segments.iter().next_back().expect("at least one segment");
    let active_path = active.path(LOG_SUFFIX);
    let interval = config.index_interval_bytes;
    let mut loaded = active
        .load(Offset(i64::MAX), true, interval, config.segment_index_bytes)
        .map_err(LogError::from)?;
    let scan = match recovered {
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
    if let Some(segment) = segments.get_mut(&active_base) {
        segment.size = scan.valid_bytes;
    }
    let active_state = Active {
        cursor: IndexCursor {
            bytes_since_index_entry: scan.bytes_since_index_entry,
            max_timestamp: scan.max_timestamp,
        },
        rolling_base_ms: scan.first_timestamp.filter(|t| *t >= 0),
        ..Active::default()
    };
    Ok((log_end, active_state))
}

/// Fsyncs the log files of the segments from `from` on.
fn sync_segments(segments: &BTreeMap<Offset, Box<Segment>>, from: Offset) -> Result<(), LogError> {
    for segment in segments.range(from..).map(|(_, s)| s) {
        let path = segment.path(LOG_SUFFIX);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_failure("fsync", &path))?;
    }
    Ok(())
}

/// Data below the log start was lost (e.g. a torn tail after
/// DeleteRecords): starts an empty log at the log start.
fn restart_at_log_start(dir: &Path, state: &mut State) -> Result<(), LogError> {
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
        .load(
            start,
            true,
            state.config.index_interval_bytes,
            state.config.segment_index_bytes,
        )
        .map_err(LogError::from)?;
    *segment.lock() = Some(loaded);
    state.segments.insert(start, segment);
    state.log_end = start;
    state.recovery_point = start;
    state.active = Active::default();
    Ok(())
}

/// Writes the checkpoints whose values opening changed: leader epochs
/// outside the log, and the recovery point and log start unless the files
/// already hold them. A new partition (no files, all zero) or a clean
/// reopen writes nothing, which keeps creating 10,000 partitions and
/// restarting with them from costing two file replacements and their
/// fsyncs each.
fn write_changed_checkpoints(
    dir: &Path,
    state: &mut State,
    checkpoints: &Checkpoints,
    fresh: bool,
) -> Result<(), LogError> {
    let mut epochs_changed = state.epochs.truncate_from_end(state.log_end);
    epochs_changed |= state.epochs.truncate_from_start(state.log_start);
    if epochs_changed {
        checkpoint::write_epochs(dir, state.epochs.entries())?;
    }
    if checkpoints.recovery_point != Some(state.recovery_point)
        && !(fresh && state.recovery_point.0 == 0)
    {
        checkpoint::write_offset(dir, RECOVERY_POINT_FILE, state.recovery_point)?;
    }
    if checkpoints.log_start != Some(state.log_start) && !(fresh && state.log_start.0 == 0) {
        checkpoint::write_offset(dir, LOG_START_FILE, state.log_start)?;
    }
    Ok(())
}

/// Where to resume scanning the active segment: its last offset-index entry.
pub(crate) fn resume_point(base: Offset, loaded: &Loaded) -> ScanStart {
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
