//! Retiring and freeing the files of segments that left a log: renamed to
//! `*.deleted` under the state lock (no page work), unlinked after it, and
//! for big unread files shrunk in steps first so the page cache is freed
//! at a pace the request threads do not notice.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::segment::{INDEX_SUFFIX, LOG_SUFFIX, Loaded, Segment, TIME_INDEX_SUFFIX};

/// Appended to the files of a segment retention or DeleteRecords dropped,
/// between the rename under the state lock and the unlink after it.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

/// The log's `cleaning` lock if no one holds it (a poisoned one is taken).
pub(crate) fn try_lock_cleaning(cleaning: &Mutex<()>) -> Option<std::sync::MutexGuard<'_, ()>> {
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

pub(crate) fn delete_segment_files(segment: &Segment) {
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
pub(crate) fn retire_segment_files(
    segment: &Segment,
    loaded: Option<Loaded>,
    retired: &mut Vec<Retired>,
) {
    // Readers share the log file's handle (`FileRegion`); when the segment's
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
pub(crate) struct Retired {
    pub(crate) path: PathBuf,
    /// A log file no reader held when it was retired: shrinking it cannot
    /// cut short a fetch being sent.
    pub(crate) unread: bool,
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
pub(crate) fn remove_retired(retired: &[Retired], in_steps: Option<&Mutex<()>>) {
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
/// end-to-end p99 was over 5 ms began with one (bench/e2e.sh). In steps, whoever waits for the core waits at most
/// a step, and deletion still runs at half its unpaced speed (~2 GB/s
/// here). Shrinking, not `fadvise(DONTNEED)`: dirty pages of a deleted
/// file are dropped, never written. Errors are left to the unlink.
///
/// Each step holds `cleaning`, taken without waiting: the cleaner maps
/// closed segments while it holds that lock (a mapping of a shrunk file
/// faults), and truncation takes it too. If either holds it, the unlink
/// frees the rest at once; a clean that starts between steps cannot map
/// this file, which is out of the segment map and renamed.
pub(crate) fn free_in_steps(path: &Path, cleaning: &Mutex<()>) {
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
