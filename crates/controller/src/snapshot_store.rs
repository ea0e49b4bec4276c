//! Snapshots of the cluster state on disk:
//! `snapshots/<20-digit index>-<20-digit term>.snapshot`, the newest only
//! (docs/FORMAT.md, "Controller Raft log"). A snapshot is the snapshot
//! codec's records (`rill_metadata::snapshot`), framed as log entries after
//! one entry of Raft metadata; the same bytes are what a leader sends a
//! follower too far behind to catch up by entries. Blocking IO: callers run
//! these off the async workers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rill_metadata::MetadataRecord;
use rill_metadata::entry::{self, ENTRY_PAYLOAD_BYTES_MAX, Read};
use serde::{Deserialize, Serialize};

use crate::codec::{DiskLogId, DiskStoredMembership, invalid};
use crate::durable::{self, Sync};
use crate::types::SnapshotMeta;

/// The largest snapshot read or accepted. A state at the partition limit
/// (2,000,000 partitions, each a replica list and at most one
/// `partition_restored` of ~100 bytes) fits; the limit keeps a damaged or
/// hostile snapshot from asking for more memory than that.
pub const SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A snapshot's metadata and the records that rebuild its state.
pub type Loaded = (SnapshotMeta, Vec<MetadataRecord>);

/// The first entry of a snapshot file.
#[derive(Debug, Serialize, Deserialize)]
struct DiskMeta {
    last_log_id: Option<DiskLogId>,
    membership: DiskStoredMembership,
}

/// The snapshot directory and which snapshot in it is current. Writing and
/// reading both hold the lock, so a read never meets a file a newer
/// snapshot has just replaced.
#[derive(Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    current: Arc<Mutex<Option<SnapshotMeta>>>,
}

impl SnapshotStore {
    /// Opens `dir` (made if missing) and reads its newest snapshot.
    pub fn open(dir: &Path) -> io::Result<(SnapshotStore, Option<Loaded>)> {
        durable::create_dir_durably(dir)?;
        durable::remove_temp_files(dir)?;
        let mut newest = None;
        for file in fs::read_dir(dir)? {
            let path = file?.path();
            if let Some(key) = snapshot_key(&path) {
                newest = newest.max(Some((key, path)));
            }
        }
        let loaded = match newest {
            Some((_, path)) => {
                if fs::metadata(&path)?.len() > SNAPSHOT_BYTES_MAX as u64 {
                    return Err(durable::damaged(&path, "over the size limit".to_string()));
                }
                let bytes = fs::read(&path)?;
                Some(decode(&bytes).map_err(|e| durable::damaged(&path, e.to_string()))?)
            }
            None => None,
        };
        let store = SnapshotStore {
            dir: dir.to_path_buf(),
            current: Arc::new(Mutex::new(loaded.as_ref().map(|(meta, _)| meta.clone()))),
        };
        Ok((store, loaded))
    }

    /// Makes `bytes` (of [`encode`]) the current snapshot, durably, and
    /// deletes the one it replaces. A snapshot older than the current one
    /// is not written.
    pub fn save(&self, meta: &SnapshotMeta, bytes: &[u8]) -> io::Result<()> {
        let mut current = self.lock()?;
        if current.as_ref().is_some_and(|c| key(c) > key(meta)) {
            return Ok(());
        }
        let name = file_name(meta);
        durable::replace(&self.dir, &name, bytes, Sync::Durable)?;
        for file in fs::read_dir(&self.dir)? {
            let path = file?.path();
            let other = path.file_name().is_some_and(|n| *n != *name);
            if other && snapshot_key(&path).is_some() {
                fs::remove_file(&path)?;
            }
        }
        *current = Some(meta.clone());
        Ok(())
    }

    /// The current snapshot and its bytes.
    pub fn read_current(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let current = self.lock()?;
        let Some(meta) = current.as_ref() else {
            return Ok(None);
        };
        let bytes = fs::read(self.dir.join(file_name(meta)))?;
        Ok(Some((meta.clone(), bytes)))
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Option<SnapshotMeta>>> {
        self.current
            .lock()
            .map_err(|_| io::Error::other("an earlier snapshot write panicked"))
    }
}

/// The bytes of a snapshot of `records` taken at `meta`.
pub fn encode(meta: &SnapshotMeta, records: &[MetadataRecord]) -> io::Result<Vec<u8>> {
    let disk_meta = DiskMeta {
        last_log_id: meta.last_log_id.as_ref().map(DiskLogId::from_raft),
        membership: DiskStoredMembership::from_raft(&meta.last_membership),
    };
    let mut bytes = durable::framed(&serde_json::to_vec(&disk_meta).map_err(invalid)?)?;
    let mut chunk: Vec<u8> = Vec::new();
    for record in records {
        let json = serde_json::to_vec(record).map_err(invalid)?;
        // `[`, the records so far and this one, `,` between, `]`.
        if !chunk.is_empty() && chunk.len() + json.len() + 2 > ENTRY_PAYLOAD_BYTES_MAX {
            chunk.push(b']');
            bytes.extend_from_slice(&durable::framed(&chunk)?);
            chunk.clear();
        }
        chunk.push(if chunk.is_empty() { b'[' } else { b',' });
        chunk.extend_from_slice(&json);
    }
    if !chunk.is_empty() {
        chunk.push(b']');
        bytes.extend_from_slice(&durable::framed(&chunk)?);
    }
    if bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(too_large(bytes.len()));
    }
    Ok(bytes)
}

/// The metadata and records of snapshot bytes; any bad entry is an error
/// (a snapshot is written whole before it is renamed into place).
pub fn decode(bytes: &[u8]) -> io::Result<Loaded> {
    if bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(too_large(bytes.len()));
    }
    let mut payloads = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        match entry::read_at(bytes, position) {
            Read::Entry(found) => {
                payloads.push(found.payload);
                position += found.len;
            }
            Read::TornTail(reason) | Read::Damaged(reason) => {
                return Err(invalid(format!(
                    "snapshot entry at byte {position}: {reason}"
                )));
            }
        }
    }
    let Some((first, chunks)) = payloads.split_first() else {
        return Err(invalid("a snapshot without its metadata entry"));
    };
    let disk_meta: DiskMeta = serde_json::from_slice(first).map_err(invalid)?;
    let meta = SnapshotMeta {
        last_log_id: disk_meta.last_log_id.map(DiskLogId::to_raft),
        last_membership: disk_meta.membership.to_raft()?,
    };
    let mut records = Vec::new();
    for chunk in chunks {
        let mut more: Vec<MetadataRecord> = serde_json::from_slice(chunk).map_err(invalid)?;
        records.append(&mut more);
    }
    Ok((meta, records))
}

fn too_large(len: usize) -> io::Error {
    invalid(format!(
        "a snapshot of {len} bytes, over the limit of {SNAPSHOT_BYTES_MAX}"
    ))
}

/// Orders snapshots: by index, then term.
fn key(meta: &SnapshotMeta) -> (u64, u64) {
    meta.last_log_id
        .as_ref()
        .map_or((0, 0), |id| (id.index, id.leader_id.term))
}

fn file_name(meta: &SnapshotMeta) -> String {
    let (index, term) = key(meta);
    format!("{index:020}-{term:020}.snapshot")
}

fn snapshot_key(path: &Path) -> Option<(u64, u64)> {
    let name = path.file_name()?.to_str()?;
    let (index, term) = name.strip_suffix(".snapshot")?.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(term) {
        return None;
    }
    Some((index.parse().ok()?, term.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rill_metadata::TopicId;

    use super::*;
    use crate::types::{StoredMembership, log_id};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(log_id(2, index)),
            last_membership: StoredMembership::default(),
        }
    }

    /// Topics whose configs make each record about 100 KB.
    fn large_topics(count: u8) -> Vec<MetadataRecord> {
        (0..count)
            .map(|n| MetadataRecord::TopicCreated {
                name: format!("t{n}"),
                id: TopicId([n + 1; 16]),
                partitions: 1,
                configs: BTreeMap::from([("x".to_string(), "v".repeat(100_000))]),
                assignments: vec![vec![0]],
            })
            .collect()
    }

    #[test]
    fn records_over_one_entry_are_split_and_read_back() {
        let records = large_topics(60);
        let bytes = encode(&meta(9), &records).unwrap();
        let (read_meta, read_records) = decode(&bytes).unwrap();
        assert_eq!(read_meta, meta(9));
        assert_eq!(read_records, records);
        // The metadata entry and two record entries.
        let mut entries = 0;
        let mut position = 0;
        while let Read::Entry(e) = entry::read_at(&bytes, position) {
            entries += 1;
            position += e.len;
            if position == bytes.len() {
                break;
            }
        }
        assert_eq!(entries, 3);
    }

    #[test]
    fn the_newest_snapshot_replaces_the_older_and_is_loaded_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (store, loaded) = SnapshotStore::open(dir.path()).unwrap();
        assert!(loaded.is_none());
        let records = large_topics(2);
        store
            .save(&meta(5), &encode(&meta(5), &records[..1]).unwrap())
            .unwrap();
        store
            .save(&meta(9), &encode(&meta(9), &records).unwrap())
            .unwrap();
        // An older one arriving late changes nothing.
        store
            .save(&meta(7), &encode(&meta(7), &[]).unwrap())
            .unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let (store, loaded) = SnapshotStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Some((meta(9), records)));
        assert_eq!(store.read_current().unwrap().unwrap().0, meta(9));
    }
}
