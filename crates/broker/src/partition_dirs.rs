//! Which topic a partition directory belongs to, so that the data of a
//! deleted topic never comes back as the data of a new topic of the same name.
//!
//! Each partition directory holds `partition.metadata` (Kafka's file, from
//! KIP-516) naming its topic's id; it is written before the directory is
//! first opened as a log. Deleting a topic writes the deletion record first
//! and renames the directories after, so a crash in between leaves
//! directories whose topic is gone. At start, and before a partition is
//! created, a directory whose id is not the live topic's is moved out of the
//! way: removed if its id is of a deleted topic (its deletion was
//! acknowledged), else renamed `<topic>-<partition>.<hex>-stray` and kept
//! with a warning, as Kafka does with stray logs, since nothing says its
//! data may go.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rill_log::LogManager;
use rill_metadata::{ClusterState, TopicId, store};

pub const TAG_FILE: &str = "partition.metadata";
/// The file is two short lines (about 45 bytes); anything much longer is
/// not one Rill wrote, and is not read into memory.
const TAG_FILE_BYTES_MAX: u64 = 1024;
/// A directory name's limit on Linux file systems.
const DIR_NAME_BYTES_MAX: usize = 255;

#[derive(Debug, thiserror::Error)]
#[error("partition directory {path}: {reason}")]
pub struct DirError {
    pub path: PathBuf,
    pub reason: String,
}

fn dir_error(path: &Path, reason: impl std::fmt::Display) -> DirError {
    DirError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Kafka prints topic ids in URL-safe base64 without padding; the file holds
/// that text so Kafka's tools read it the same.
fn id_text(id: TopicId) -> String {
    rill_protocol::Uuid(id.0).to_string()
}

fn parse_id(text: &str) -> Option<TopicId> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if text.len() != 22 {
        return None;
    }
    let mut bytes = Vec::with_capacity(17);
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(TopicId(bytes.try_into().ok()?))
}

/// The topic id a directory is tagged with; `None` if it has no tag.
pub fn read_tag(dir: &Path) -> Result<Option<TopicId>, DirError> {
    let path = dir.join(TAG_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(dir_error(&path, error)),
    };
    let mut text = String::new();
    file.take(TAG_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|error| dir_error(&path, error))?;
    let mut lines = text.lines();
    let id = match (lines.next(), lines.next()) {
        (Some("version: 0"), Some(id)) => id.strip_prefix("topic_id: ").and_then(parse_id),
        _ => None,
    };
    id.map(Some).ok_or_else(|| {
        dir_error(
            &path,
            "is not `version: 0` and `topic_id: <id>`; move the file or the directory away",
        )
    })
}

/// Tags a directory with its topic id, durably: a new file, fsynced, renamed
/// into place, and the directory fsynced.
pub fn write_tag(dir: &Path, id: TopicId) -> Result<(), DirError> {
    let text = format!("version: 0\ntopic_id: {}\n", id_text(id));
    store::replace(dir, TAG_FILE, text.as_bytes(), store::Sync::Durable)
        .map_err(|e| dir_error(&dir.join(TAG_FILE), e))
}

fn sync_dir(dir: &Path) -> Result<(), DirError> {
    store::sync_dir(dir).map_err(|e| dir_error(dir, e))
}

/// Makes every partition directory on disk agree with the metadata: run at
/// start, before any log is opened.
pub fn sweep(logs: &LogManager, state: &ClusterState) -> Result<(), DirError> {
    let listed = logs
        .list_partitions()
        .map_err(|e| dir_error(logs.data_dir(), e))?;
    for (topic, partition) in listed {
        let dir = logs.partition_dir(&topic, partition);
        let live = state
            .topic(&topic)
            .filter(|t| partition < t.partition_count())
            .map(|t| t.id);
        match (live, read_tag(&dir)?) {
            (Some(id), Some(tag)) if tag == id => {}
            // A directory from before tags, or a crash between creating the
            // directory and tagging it (then it is empty): it is this topic's.
            (Some(id), None) => write_tag(&dir, id)?,
            (live, tag) => {
                set_aside(logs, &topic, partition, tag, |id| state.was_deleted(id))?;
                if let Some(id) = live {
                    create_tagged(logs, &topic, partition, id)?;
                }
            }
        }
    }
    // A crash between a topic's creation record and its directories.
    for topic in state.topics() {
        for partition in 0..topic.partition_count() {
            if !logs.partition_dir(&topic.name, partition).exists() {
                create_tagged(logs, &topic.name, partition, topic.id)?;
            }
        }
    }
    Ok(())
}

/// Readies the directories of new partitions of topic `id`: anything found
/// under their names is moved aside first, so they start empty.
pub fn prepare_new(
    logs: &LogManager,
    topic: &str,
    id: TopicId,
    partitions: std::ops::Range<i32>,
    was_deleted: impl Fn(TopicId) -> bool,
) -> Result<(), DirError> {
    for partition in partitions {
        let dir = logs.partition_dir(topic, partition);
        if dir.exists() {
            let tag = read_tag(&dir).unwrap_or(None);
            set_aside(logs, topic, partition, tag, &was_deleted)?;
        }
        create_tagged(logs, topic, partition, id)?;
    }
    Ok(())
}

fn create_tagged(
    logs: &LogManager,
    topic: &str,
    partition: i32,
    id: TopicId,
) -> Result<(), DirError> {
    let dir = logs.partition_dir(topic, partition);
    fs::create_dir(&dir).map_err(|e| dir_error(&dir, e))?;
    write_tag(&dir, id)?;
    sync_dir(logs.data_dir())
}

fn set_aside(
    logs: &LogManager,
    topic: &str,
    partition: i32,
    tag: Option<TopicId>,
    was_deleted: impl Fn(TopicId) -> bool,
) -> Result<(), DirError> {
    let dir = logs.partition_dir(topic, partition);
    if let Some(id) = tag.filter(|&id| was_deleted(id)) {
        tracing::info!(dir = %dir.display(), topic_id = %id, "removing a deleted topic's partition");
        return logs
            .delete(topic, partition)
            .map_err(|e| dir_error(&dir, e));
    }
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let aside = logs.data_dir().join(aside_name(topic, partition, unique));
    fs::rename(&dir, &aside).map_err(|e| dir_error(&dir, e))?;
    sync_dir(logs.data_dir())?;
    tracing::warn!(
        dir = %dir.display(),
        renamed = %aside.display(),
        "a partition directory that belongs to no topic in the metadata log was set aside; \
         delete it once it is known not to be needed"
    );
    Ok(())
}

/// `<topic>-<partition>.<hex>-stray`, the topic cut short (as Kafka does) so
/// that the name fits in 255 bytes.
fn aside_name(topic: &str, partition: i32, unique: u128) -> String {
    let suffix = format!("-{partition}.{unique:x}-stray");
    let keep = topic.len().min(DIR_NAME_BYTES_MAX - suffix.len());
    // Topic names are ASCII (checked before any directory is made).
    format!("{}{suffix}", topic.get(..keep).unwrap_or(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_kafka_text() {
        for _ in 0..100 {
            let id = TopicId::random();
            assert_eq!(parse_id(&id_text(id)), Some(id));
        }
        assert_eq!(parse_id("short"), None);
        assert_eq!(parse_id("!!!!!!!!!!!!!!!!!!!!!!"), None);
    }

    #[test]
    fn set_aside_names_fit_a_directory_name() {
        let name = aside_name(&"t".repeat(249), i32::MAX, u128::MAX);
        assert_eq!(name.len(), 255);
        assert!(name.ends_with("-stray"));
        assert_eq!(aside_name("t", 3, 255), "t-3.ff-stray");
    }
}
