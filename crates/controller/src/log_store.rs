//! openraft's log storage on the raft directory: the entries in segments
//! (`segments.rs`), the vote and the last purged log id in `vote`, the
//! commit point in `committed` (docs/FORMAT.md, "Controller Raft log").
//!
//! Every file operation runs on tokio's blocking pool (`spawn_blocking`):
//! an `fdatasync` takes milliseconds, and on an async worker it would stall
//! every task scheduled there, Raft heartbeats and client requests alike.
//! openraft calls the store one operation at a time, and each waits for its
//! IO, so the order of operations on disk is the order of the calls.
//! Entries are also kept in memory from the last purge on (metadata is KBs
//! to MBs, and a snapshot purges all but the last few thousand), so reads
//! never touch the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};

use crate::codec::{DiskLogId, DiskVote, invalid};
use crate::durable::{self, Sync};
use crate::segments::Segments;
use crate::types::{Entry, LogId, TypeConfig, Vote};

const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";

/// The `vote` file's payload. The last purged id lives here too: it must be
/// durable before the segments it covers are deleted.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct VoteFile {
    vote: Option<DiskVote>,
    purged: Option<DiskLogId>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct CommittedFile {
    committed: Option<DiskLogId>,
}

/// What reads are served from.
#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    purged: Option<LogId>,
    committed: Option<LogId>,
}

struct Disk {
    dir: PathBuf,
    segments: Segments,
}

struct Shared {
    cache: RwLock<Cache>,
    /// Locked only on the blocking pool.
    disk: Mutex<Disk>,
}

/// The log store, and (cloned) its readers.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens the raft log under `dir` (`log/`, `vote`, `committed`), making
    /// what is missing. Fails if acknowledged entries or the vote are
    /// damaged.
    pub async fn open(dir: &Path) -> io::Result<LogStore> {
        let dir = dir.to_path_buf();
        let shared = tokio::task::spawn_blocking(move || open_blocking(dir))
            .await
            .map_err(io::Error::other)??;
        Ok(LogStore {
            shared: Arc::new(shared),
        })
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        // The cache is plain data changed in single assignments: a panic
        // elsewhere cannot leave it half-changed.
        self.shared.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.shared.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `io` on the blocking pool with the files locked.
    async fn on_disk<T, F>(&self, io: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Disk) -> io::Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || io(&mut *lock_disk(&shared)?))
            .await
            .map_err(io::Error::other)?
    }

    async fn write_vote_file(&self, file: VoteFile) -> io::Result<()> {
        let payload = serde_json::to_vec(&file).map_err(invalid)?;
        self.on_disk(move |disk| {
            let bytes = durable::framed(&payload)?;
            durable::replace(&disk.dir, VOTE_FILE, &bytes, Sync::Durable)
        })
        .await
    }

    fn vote_file(&self) -> VoteFile {
        let cache = self.cache();
        VoteFile {
            vote: cache.vote.as_ref().map(DiskVote::from_raft),
            purged: cache.purged.as_ref().map(DiskLogId::from_raft),
        }
    }
}

fn lock_disk(shared: &Shared) -> io::Result<MutexGuard<'_, Disk>> {
    // A panic during IO leaves the files in a state this process no longer
    // knows: refuse further IO rather than guess.
    shared
        .disk
        .lock()
        .map_err(|_| io::Error::other("an earlier log IO panicked"))
}

fn open_blocking(dir: PathBuf) -> io::Result<Shared> {
    durable::create_dir_durably(&dir)?;
    durable::remove_temp_files(&dir)?;
    let vote_file: VoteFile = match durable::read_framed(&dir.join(VOTE_FILE))? {
        Some(payload) => serde_json::from_slice(&payload)
            .map_err(|e| durable::damaged(&dir.join(VOTE_FILE), e.to_string()))?,
        None => VoteFile::default(),
    };
    let purged = vote_file.purged.map(DiskLogId::to_raft);
    let (segments, entries) = Segments::open(&dir.join("log"))?;
    let entries: BTreeMap<u64, Entry> = entries
        .into_iter()
        .filter(|e| purged.as_ref().is_none_or(|p| e.index() > p.index))
        .map(|e| (e.index(), e))
        .collect();
    let committed = read_committed_file(&dir, &entries, purged.as_ref());
    Ok(Shared {
        cache: RwLock::new(Cache {
            entries,
            vote: vote_file.vote.map(DiskVote::to_raft),
            purged,
            committed,
        }),
        disk: Mutex::new(Disk { dir, segments }),
    })
}

/// The commit point, if it names an entry this log holds (or has purged).
/// openraft recomputes it from a quorum, so an unreadable or stale file is
/// only a slower start, never lost data.
fn read_committed_file(
    dir: &Path,
    entries: &BTreeMap<u64, Entry>,
    purged: Option<&LogId>,
) -> Option<LogId> {
    let path = dir.join(COMMITTED_FILE);
    let read = durable::read_framed(&path).and_then(|payload| {
        payload
            .map(|p| serde_json::from_slice::<CommittedFile>(&p).map_err(invalid))
            .transpose()
    });
    let committed = match read {
        Ok(file) => file?.committed?.to_raft(),
        Err(e) => {
            tracing::warn!("{}: ignored ({e})", path.display());
            return None;
        }
    };
    let covered = purged.is_some_and(|p| committed.index <= p.index);
    let held = entries
        .get(&committed.index)
        .is_some_and(|e| e.log_id == committed);
    (covered || held).then_some(committed)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self
            .cache()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.cache().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let cache = self.cache();
        let last = cache.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: cache.purged,
            last_log_id: last.or(cache.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut file = self.vote_file();
        file.vote = Some(DiskVote::from_raft(vote));
        self.write_vote_file(file).await?;
        self.cache_mut().vote = Some(*vote);
        Ok(())
    }

    /// Written without fsync: see [`read_committed_file`]. A failed write
    /// is a warning, not an error: the file is a hint Raft can do without,
    /// and openraft stops a node on any storage error, so a moment out of
    /// descriptors (each write makes a new file) must not stop the quorum.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let file = CommittedFile {
            committed: committed.as_ref().map(DiskLogId::from_raft),
        };
        let payload = serde_json::to_vec(&file).map_err(invalid)?;
        let written = self
            .on_disk(move |disk| {
                let bytes = durable::framed(&payload)?;
                durable::replace(&disk.dir, COMMITTED_FILE, &bytes, Sync::Lazy)
            })
            .await;
        if let Err(error) = written {
            tracing::warn!(%error, "cannot record the controller's commit point (a hint)");
        }
        self.cache_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.cache().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self
            .on_disk(move |disk| disk.segments.append(&entries).map(|()| entries))
            .await;
        match result {
            Ok(entries) => {
                let mut cache = self.cache_mut();
                cache
                    .entries
                    .extend(entries.into_iter().map(|e| (e.index(), e)));
                drop(cache);
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let index = last.map(|l| l.index);
        self.on_disk(move |disk| disk.segments.truncate_after(index))
            .await?;
        let from = index.map_or(0, |i| i + 1);
        self.cache_mut().entries.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut file = self.vote_file();
        file.purged = Some(DiskLogId::from_raft(&log_id));
        self.write_vote_file(file).await?;
        self.cache_mut().purged = Some(log_id);
        let index = log_id.index;
        self.on_disk(move |disk| disk.segments.purge(index)).await?;
        let mut cache = self.cache_mut();
        let kept = cache.entries.split_off(&(index + 1));
        cache.entries = kept;
        Ok(())
    }
}
