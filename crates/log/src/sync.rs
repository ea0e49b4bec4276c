//! Group commit: one syncer thread per data directory makes the appends
//! that must be durable before their answer (`flush.messages`) durable in
//! rounds. An append hands the syncer its log and a callback; the syncer
//! takes everything pending, notes how far each log reaches, makes it all
//! durable with one `syncfs(2)` on the directory's file system, advances
//! each log's recovery point and calls every callback. Appends that arrive
//! during a round wait for the next, so under load one sync serves every
//! partition and connection that appended meanwhile.
//!
//! Why `syncfs` and not one `fdatasync` per file: each fdatasync of a file
//! that grew commits the journal and flushes the disk's cache on its own,
//! so sixteen files cost sixteen cache flushes where syncfs costs one
//! (bench/flush.sh measures it). Its price: it
//! also writes back other dirty data of the same file system (topics
//! without a flush setting), which can lengthen a round but never makes it
//! report durable what is not. Since Linux 5.8 syncfs reports writeback
//! errors that happened since its descriptor was opened; the descriptor is
//! opened when the syncer starts, which the log manager does when it opens
//! the directory, before any append (a log opened alone starts its syncer
//! at its first sync, just after that append's write).
//!
//! The log crate does no network IO: the callback is how the broker's async
//! side learns of the end of a round without a thread blocked per append.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{IoFailure, OfflineDir};
use crate::log::Log;

/// Called once an append's data is durable, or with the reason it cannot be.
pub type OnDurable = Box<dyn FnOnce(Result<(), OfflineDir>) + Send>;

struct Request {
    log: Arc<Log>,
    done: OnDurable,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Request>,
    stop: bool,
}

struct Shared {
    dir: PathBuf,
    queue: Mutex<Queue>,
    wake: Condvar,
    rounds: AtomicU64,
    requests: AtomicU64,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle a data directory keeps; dropping it ends the thread once the
/// requests already queued are served.
pub(crate) struct Syncer {
    shared: Arc<Shared>,
}

impl Syncer {
    pub(crate) fn start(dir: &Path) -> Syncer {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            rounds: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let worker = shared.clone();
        // Opened now, before the appends it will sync are written: syncfs
        // reports the writeback errors since its descriptor was opened. If
        // this fails, the first round opens it.
        let fd = File::open(dir).ok();
        let spawned = std::thread::Builder::new()
            .name("rill-syncer".into())
            .spawn(move || run(&worker, fd));
        if let Err(error) = spawned {
            // No thread: every request is refused (see `submit`) rather
            // than left waiting forever.
            tracing::error!(dir = %dir.display(), %error, "cannot start the syncer thread");
            shared.queue().stop = true;
        }
        Syncer { shared }
    }

    /// Queues `log` to be made durable up to its current end; `done` runs
    /// on the syncer thread when that round ends.
    pub(crate) fn submit(&self, log: Arc<Log>, done: OnDurable) {
        let mut queue = self.shared.queue();
        if queue.stop {
            drop(queue);
            done(Err(OfflineDir {
                dir: self.shared.dir.clone(),
                reason: "the syncer thread is not running".into(),
            }));
            return;
        }
        queue.pending.push(Request { log, done });
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        drop(queue);
        self.shared.wake.notify_one();
    }

    /// Sync rounds finished since the syncer started.
    pub(crate) fn rounds(&self) -> u64 {
        self.shared.rounds.load(Ordering::Relaxed)
    }

    /// Appends that waited for a round since the syncer started.
    pub(crate) fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.queue().stop = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared, mut fd: Option<File>) {
    loop {
        let batch = {
            let mut queue = shared.queue();
            while queue.pending.is_empty() && !queue.stop {
                queue = shared.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            if queue.pending.is_empty() {
                return;
            }
            std::mem::take(&mut queue.pending)
        };
        let result = round(shared, &mut fd, &batch);
        shared.rounds.fetch_add(1, Ordering::Relaxed);
        for request in batch {
            (request.done)(result.clone());
        }
    }
}

/// One round: marks, one syncfs, recovery points. Every waiter of the
/// round gets the same answer.
fn round(shared: &Shared, fd: &mut Option<File>, batch: &[Request]) -> Result<(), OfflineDir> {
    let mut logs: Vec<&Arc<Log>> = Vec::with_capacity(batch.len());
    for request in batch {
        if !logs.iter().any(|l| Arc::ptr_eq(l, &request.log)) {
            logs.push(&request.log);
        }
    }
    // Each log's flush lock, in the order flush_below takes it (before the
    // state), so the recovery point only moves forward; nothing that holds
    // one waits for this thread.
    let _serial: Vec<_> = logs.iter().map(|log| log.lock_flush()).collect();
    // How far each log reaches now: what syncfs below makes durable. A
    // log's offline or full directory is the same directory for all.
    let marks: Vec<_> = logs.iter().map(|log| log.sync_mark()).collect();
    let first = logs[0];
    first.health_check()?;
    if fd.is_none() {
        // Not an fsync: a shortage of descriptors fails this round only,
        // and the directory stays online (`DirHealth::fail` decides).
        let file = File::open(&shared.dir).map_err(|source| {
            let failure = IoFailure {
                op: "open for syncfs",
                path: shared.dir.clone(),
                source,
            };
            first.fail_dir(&failure);
            OfflineDir {
                dir: shared.dir.clone(),
                reason: failure.to_string(),
            }
        })?;
        *fd = Some(file);
    }
    if let Some(file) = fd
        && let Err(errno) = crate::sys::sync_file_system(file)
    {
        // As a failed fsync: the kernel may have dropped the dirty pages,
        // so the directory goes offline and every waiter fails.
        let failure = IoFailure {
            op: "fsync (syncfs)",
            path: shared.dir.clone(),
            source: errno.into(),
        };
        first.fail_dir(&failure);
        return Err(OfflineDir {
            dir: shared.dir.clone(),
            reason: failure.to_string(),
        });
    }
    for (log, mark) in logs.iter().zip(marks) {
        if let Some(mark) = mark {
            log.sync_finish(mark);
        }
    }
    Ok(())
}
