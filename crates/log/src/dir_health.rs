//! The health of a data directory, shared by its logs: online, full (no
//! appends until space is back) or offline (an IO error, until a restart),
//! and what an IO error says about it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Fault, IoFailure, OfflineDir, short_of_resources};
use crate::segments::active_segments_max;
use crate::sync::Syncer;
use crate::sys;

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
        DirHealth::build(dir, None)
    }

    pub(crate) fn with_release(dir: &Path, release: Box<dyn Fn() + Send + Sync>) -> Arc<DirHealth> {
        DirHealth::build(dir, Some(release))
    }

    fn build(dir: &Path, release: Option<Box<dyn Fn() + Send + Sync>>) -> Arc<DirHealth> {
        Arc::new(DirHealth {
            dir: dir.to_path_buf(),
            offline: Mutex::new(None),
            full: AtomicBool::new(false),
            release,
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
        match sys::available_bytes(&self.dir) {
            Ok(free) if free >= RESUME_FREE_BYTES => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
