//! The durable metadata log of one node: `<data_dir>/__cluster_metadata/metadata.log`.
//!
//! Each entry is one atomic group of records, a JSON array of
//! [`MetadataRecord`]s framed as [`entry`] says. An append is
//! one `write` followed by `fdatasync`, so a group is either wholly in the log
//! after a crash or cut off as a torn tail, which `open` truncates.
//!
//! Thread-safety: a `MetadataStore` is used by one thread at a time (the
//! broker keeps it behind a mutex and calls it off the async workers, because
//! `append` waits for the disk).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::entry::{self, ENTRY_PAYLOAD_BYTES_MAX};
use crate::record::MetadataRecord;
use crate::state::{ApplyError, ClusterState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metadata log {path} is damaged at byte {position} ({reason}), so the broker will not \
         start rather than forget what the log records after that byte: restore the file from a \
         backup, or run `truncate -s {position} {path}` to keep only what comes before it (every \
         topic created or changed after it is then lost, and its partition directories are set \
         aside as `-stray`)"
    )]
    Damaged {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("metadata change refused: {0}")]
    Refused(#[from] ApplyError),
    #[error("metadata group of {0} bytes is over the {ENTRY_PAYLOAD_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    #[error("the metadata log is offline after an earlier IO error: {0}")]
    Offline(String),
}

pub struct MetadataStore {
    path: PathBuf,
    file: File,
    state: ClusterState,
    /// Set after a failed write or sync: the file's contents are then unknown,
    /// so nothing more is written (no blind retry of fsync).
    offline: Option<String>,
}

impl MetadataStore {
    /// Opens (or creates) the log in `dir` and replays it on node `node_id`
    /// (see [`ClusterState::new`]).
    ///
    /// An entry that fails its checks with no valid entry after it is a torn
    /// tail: a group whose write did not finish, never acknowledged, so it is
    /// cut with a warning. One that fails with valid entries after it is
    /// damage to acknowledged metadata, and opening fails: cutting there would
    /// silently drop every topic recorded after it. So does a group that
    /// passes its CRC but does not apply: the log itself is wrong.
    pub fn open(dir: &Path, node_id: i32) -> Result<MetadataStore, StoreError> {
        let path = dir.join("metadata.log");
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        create_dir_durably(dir).map_err(io)?;
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        if created {
            // The new file's name must survive a crash with the first entry.
            sync_dir(dir).map_err(io)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;

        let mut state = ClusterState::new(node_id);
        let mut position = 0usize;
        while position < bytes.len() {
            let entry = match entry::read_at(&bytes, position) {
                entry::Read::Entry(entry) => entry,
                entry::Read::Damaged(reason) => return Err(damaged(&path, position, reason)),
                entry::Read::TornTail(reason) => {
                    tracing::warn!(
                        path = %path.display(),
                        position,
                        cut_bytes = bytes.len() - position,
                        "truncating the metadata log's torn tail: {reason}"
                    );
                    file.set_len(position as u64).map_err(io)?;
                    file.sync_data().map_err(io)?;
                    break;
                }
            };
            let records: Vec<MetadataRecord> =
                serde_json::from_slice(entry.payload).map_err(|error| {
                    let reason = format!("entry passes its CRC but is not metadata: {error}");
                    damaged(&path, position, reason)
                })?;
            for record in &records {
                state.apply(record).map_err(|error| {
                    let reason = format!("record does not apply: {error}");
                    damaged(&path, position, reason)
                })?;
            }
            position += entry.len;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(MetadataStore {
            path,
            file,
            state,
            offline: None,
        })
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Appends a group of records atomically and durably, then applies them.
    ///
    /// The group is applied to a copy of the state first, so a refused group
    /// writes nothing; it is written and synced before the live state changes,
    /// so nothing is acknowledged that a crash could lose.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), StoreError> {
        if let Some(reason) = &self.offline {
            return Err(StoreError::Offline(reason.clone()));
        }
        let mut next = self.state.clone();
        for record in records {
            next.apply(record)?;
        }
        // Serializing plain data structures into a Vec cannot fail.
        let payload = serde_json::to_vec(records).expect("metadata records serialize");
        if payload.len() > ENTRY_PAYLOAD_BYTES_MAX {
            return Err(StoreError::TooLarge(payload.len()));
        }
        let entry = entry::encode(&payload);
        let written = self
            .file
            .write_all(&entry)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            self.offline = Some(source.to_string());
            return Err(StoreError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.state = next;
        Ok(())
    }
}

fn damaged(path: &Path, position: usize, reason: String) -> StoreError {
    StoreError::Damaged {
        path: path.to_path_buf(),
        position: position as u64,
        reason,
    }
}

/// `create_dir_all`, then an fsync of the parent of every directory it made,
/// so the metadata log's directory survives a crash right after the first
/// entry is acknowledged.
pub fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            // `Path::new("x").parent()` is `""`, the current directory.
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync_dir(parent)?;
        }
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether a replacement must survive a crash once written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync the file before the rename and the directory after it.
    Durable,
    /// Rename only: after a crash the file may hold the old value, or be
    /// empty, which its reader takes as "unknown".
    Lazy,
}

/// Replaces `dir/name` with `bytes` through `dir/name.tmp`.
pub fn replace(dir: &Path, name: &str, bytes: &[u8], sync: Sync) -> std::io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    if sync == Sync::Durable {
        file.sync_data()?;
    }
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    if sync == Sync::Durable {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TopicId;
    use std::collections::BTreeMap;

    fn topic(name: &str, id: u8) -> MetadataRecord {
        MetadataRecord::TopicCreated {
            name: name.to_string(),
            id: TopicId([id; 16]),
            partitions: 3,
            configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
            assignments: vec![vec![0]; 3],
        }
    }

    #[test]
    fn survives_reopen_and_refuses_bad_groups_whole() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = MetadataStore::open(dir.path(), 0).unwrap();
            store
                .append(&[MetadataRecord::ClusterCreated {
                    cluster_id: "c".into(),
                }])
                .unwrap();
            store.append(&[topic("a", 1), topic("b", 2)]).unwrap();
            // The second record conflicts, so neither is written.
            assert!(store.append(&[topic("c", 3), topic("a", 4)]).is_err());
        }
        let store = MetadataStore::open(dir.path(), 0).unwrap();
        let state = store.state();
        assert_eq!(state.cluster_id.as_deref(), Some("c"));
        assert_eq!(state.topics().count(), 2);
        assert!(state.topic("c").is_none());
        assert_eq!(state.topic("a").unwrap().configs["retention.ms"], "1000");
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = MetadataStore::open(dir.path(), 0).unwrap();
            store.append(&[topic("a", 1)]).unwrap();
            store.append(&[topic("b", 2)]).unwrap();
        }
        let path = dir.path().join("metadata.log");
        let full = std::fs::read(&path).unwrap();
        let first_len = 8 + u32::from_be_bytes(full[..4].try_into().unwrap()) as usize;
        for cut in first_len..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let mut store = MetadataStore::open(dir.path(), 0).unwrap();
            assert_eq!(store.state().topics().count(), 1, "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), first_len as u64);
            // The log stays appendable after the cut.
            store.append(&[topic("c", 3)]).unwrap();
        }
        // A flipped byte inside the last entry is caught by the CRC.
        let mut flipped = full.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let store = MetadataStore::open(dir.path(), 0).unwrap();
        assert_eq!(store.state().topics().count(), 1);
    }

    /// Four topics, one entry each; returns the log's bytes and where each
    /// entry starts.
    fn four_topics(dir: &Path) -> (Vec<u8>, Vec<usize>) {
        let mut store = MetadataStore::open(dir, 0).unwrap();
        let mut starts = Vec::new();
        for (index, name) in ["a", "b", "c", "d"].iter().enumerate() {
            starts.push(std::fs::metadata(dir.join("metadata.log")).unwrap().len() as usize);
            store.append(&[topic(name, index as u8 + 1)]).unwrap();
        }
        (std::fs::read(dir.join("metadata.log")).unwrap(), starts)
    }

    #[test]
    fn a_flipped_byte_before_the_last_entry_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (full, starts) = four_topics(dir.path());
        let path = dir.path().join("metadata.log");
        // Every byte of the second entry, its header included: a length, a
        // CRC or a payload byte changed is damage, as valid entries follow.
        for at in starts[1]..starts[2] {
            let mut flipped = full.clone();
            flipped[at] ^= 0x10;
            std::fs::write(&path, &flipped).unwrap();
            let error = match MetadataStore::open(dir.path(), 0) {
                Err(error) => error,
                Ok(store) => panic!(
                    "opened with {} topics after a flip at byte {at}",
                    store.state().topics().count()
                ),
            };
            match &error {
                StoreError::Damaged { position, .. } => {
                    assert_eq!(*position, starts[1] as u64, "flip at {at}")
                }
                other => panic!("flip at {at}: {other}"),
            }
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(
                message.contains(&format!("truncate -s {}", starts[1])),
                "{message}"
            );
            // Nothing was cut.
            assert_eq!(std::fs::read(&path).unwrap(), flipped, "flip at {at}");
        }
        // The undamaged log still opens with all four.
        std::fs::write(&path, &full).unwrap();
        let store = MetadataStore::open(dir.path(), 0).unwrap();
        assert_eq!(store.state().topics().count(), 4);
    }

    #[test]
    fn a_tail_of_zeros_is_cut_as_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (full, _) = four_topics(dir.path());
        let path = dir.path().join("metadata.log");
        let mut zeros = full.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&path, &zeros).unwrap();
        let store = MetadataStore::open(dir.path(), 0).unwrap();
        assert_eq!(store.state().topics().count(), 4);
        assert_eq!(std::fs::read(&path).unwrap(), full);
        // Garbage that looks like the start of JSON arrays is torn too.
        let mut brackets = full.clone();
        brackets.extend_from_slice(&[b'['; 4096]);
        std::fs::write(&path, &brackets).unwrap();
        let store = MetadataStore::open(dir.path(), 0).unwrap();
        assert_eq!(store.state().topics().count(), 4);
        assert_eq!(std::fs::read(&path).unwrap(), full);
    }

    #[test]
    fn open_creates_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("data").join("__cluster_metadata");
        let mut store = MetadataStore::open(&nested, 0).unwrap();
        store.append(&[topic("a", 1)]).unwrap();
        drop(store);
        assert_eq!(
            MetadataStore::open(&nested, 0)
                .unwrap()
                .state()
                .topics()
                .count(),
            1
        );
    }
}
