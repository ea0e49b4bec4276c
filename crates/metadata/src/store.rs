//! The durable metadata log of one node: `<data_dir>/__cluster_metadata/metadata.log`.
//!
//! Each entry is one atomic group of records (docs/FORMAT.md, "Cluster
//! metadata"): a 4-byte big-endian payload length, a 4-byte CRC32C of the
//! payload, and the payload, a JSON array of [`MetadataRecord`]s. An append is
//! one `write` followed by `fdatasync`, so a group is either wholly in the log
//! after a crash or cut off as a torn tail, which `open` truncates.
//!
//! Thread-safety: a `MetadataStore` is used by one thread at a time (the
//! broker keeps it behind a mutex and calls it off the async workers, because
//! `append` waits for the disk).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::MetadataRecord;
use crate::state::{ApplyError, ClusterState};

/// An entry's payload limit. Metadata groups are small (a CreateTopics of a
/// few topics); the limit keeps a damaged length field from asking for
/// gigabytes at replay.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;

const ENTRY_HEADER_BYTES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata log {path} is damaged at byte {position}: {reason}")]
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
    /// Opens (or creates) the log in `dir` and replays it.
    ///
    /// A torn or corrupt tail is truncated with a warning: it can only be a
    /// group whose write did not finish, which was never acknowledged. A
    /// group that passes its CRC but does not apply means the log itself is
    /// wrong, and opening fails rather than guess.
    pub fn open(dir: &Path) -> Result<MetadataStore, StoreError> {
        let path = dir.join("metadata.log");
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;

        let mut state = ClusterState::default();
        let mut position = 0usize;
        while position < bytes.len() {
            let entry = match parse_entry(&bytes[position..]) {
                Ok(entry) => entry,
                Err(reason) => {
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
                serde_json::from_slice(entry.payload).map_err(|error| StoreError::Damaged {
                    path: path.clone(),
                    position: position as u64,
                    reason: format!("entry passes its CRC but is not metadata: {error}"),
                })?;
            for record in &records {
                state.apply(record).map_err(|error| StoreError::Damaged {
                    path: path.clone(),
                    position: position as u64,
                    reason: format!("record does not apply: {error}"),
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
        let mut entry = Vec::with_capacity(ENTRY_HEADER_BYTES + payload.len());
        entry.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        entry.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        entry.extend_from_slice(&payload);
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

struct Entry<'a> {
    payload: &'a [u8],
    /// Header plus payload.
    len: usize,
}

fn parse_entry(bytes: &[u8]) -> Result<Entry<'_>, String> {
    let Some(header) = bytes.get(..ENTRY_HEADER_BYTES) else {
        return Err(format!(
            "{} bytes left, less than an entry header",
            bytes.len()
        ));
    };
    let payload_len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if payload_len > ENTRY_PAYLOAD_BYTES_MAX {
        return Err(format!("entry claims {payload_len} bytes"));
    }
    let Some(payload) = bytes.get(ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + payload_len) else {
        return Err(format!(
            "entry claims {payload_len} bytes but only {} follow",
            bytes.len() - ENTRY_HEADER_BYTES
        ));
    };
    if crc32c::crc32c(payload) != crc {
        return Err("entry fails its CRC".to_string());
    }
    Ok(Entry {
        payload,
        len: ENTRY_HEADER_BYTES + payload_len,
    })
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
        }
    }

    #[test]
    fn survives_reopen_and_refuses_bad_groups_whole() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = MetadataStore::open(dir.path()).unwrap();
            store
                .append(&[MetadataRecord::ClusterCreated {
                    cluster_id: "c".into(),
                }])
                .unwrap();
            store.append(&[topic("a", 1), topic("b", 2)]).unwrap();
            // The second record conflicts, so neither is written.
            assert!(store.append(&[topic("c", 3), topic("a", 4)]).is_err());
        }
        let store = MetadataStore::open(dir.path()).unwrap();
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
            let mut store = MetadataStore::open(dir.path()).unwrap();
            store.append(&[topic("a", 1)]).unwrap();
            store.append(&[topic("b", 2)]).unwrap();
        }
        let path = dir.path().join("metadata.log");
        let full = std::fs::read(&path).unwrap();
        let first_len = 8 + u32::from_be_bytes(full[..4].try_into().unwrap()) as usize;
        for cut in first_len..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let mut store = MetadataStore::open(dir.path()).unwrap();
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
        let store = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.state().topics().count(), 1);
    }
}
