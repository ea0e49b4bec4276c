//! `<data_dir>/meta.properties`: which node and cluster a data directory
//! belongs to, in Kafka's format (`version=1`, `node.id`, `directory.id`,
//! `cluster.id`). Read at start before the metadata log is replayed, because
//! replay resolves old partitions' empty replica lists to the configured node:
//! a directory started under another node id would silently change hands.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rill_metadata::TopicId;
use rill_metadata::store::{Sync, replace};

pub const FILE: &str = "meta.properties";

/// A file far larger than four short lines is not ours; reading stops here.
const FILE_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub node_id: i32,
    /// This directory's own id: 16 random bytes in URL-safe base64.
    pub directory_id: String,
    pub cluster_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot read or write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a valid meta.properties ({reason}); fix it or move it away", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "data directory {} belongs to node {stored}, but this node is configured as node {configured} (node_id); start it with --node-id {stored}, or with an empty data directory",
        dir.display()
    )]
    OtherNode {
        dir: PathBuf,
        stored: i32,
        configured: i32,
    },
    #[error(
        "data directory {} belongs to cluster {stored} (meta.properties), but its metadata log is of cluster {logged}; start with the data directory this metadata log came from, or with an empty one",
        dir.display()
    )]
    OtherCluster {
        dir: PathBuf,
        stored: String,
        logged: String,
    },
}

impl fmt::Display for MetaProperties {
    /// The file's bytes: keys sorted, one `key=value` a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cluster.id={}", self.cluster_id)?;
        writeln!(f, "directory.id={}", self.directory_id)?;
        writeln!(f, "node.id={}", self.node_id)?;
        writeln!(f, "version=1")
    }
}

/// Reads `dir/meta.properties`; `None` when there is none (a new directory,
/// or one written before the file existed).
pub fn read(dir: &Path) -> Result<Option<MetaProperties>, MetaError> {
    let path = dir.join(FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MetaError::Io { path, source }),
    };
    let mut text = String::new();
    let read = file.take(FILE_BYTES_MAX + 1).read_to_string(&mut text);
    match read {
        Ok(n) if n as u64 > FILE_BYTES_MAX => Err(malformed(&path, "too large")),
        Ok(_) => parse(&text).map(Some).map_err(|r| malformed(&path, &r)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(malformed(&path, "not UTF-8")),
        Err(source) => Err(MetaError::Io { path, source }),
    }
}

/// Refuses a directory that belongs to another node. Run before the
/// metadata log is replayed under `node_id`.
pub fn check_node(
    dir: &Path,
    stored: Option<&MetaProperties>,
    node_id: i32,
) -> Result<(), MetaError> {
    match stored {
        Some(meta) if meta.node_id != node_id => Err(MetaError::OtherNode {
            dir: dir.to_path_buf(),
            stored: meta.node_id,
            configured: node_id,
        }),
        _ => Ok(()),
    }
}

/// Once the metadata log has a cluster id: refuses a file naming another
/// cluster, or writes the file when there is none (adopting a directory
/// from before the file, or tagging a new one).
pub fn settle(
    dir: &Path,
    stored: Option<MetaProperties>,
    node_id: i32,
    cluster_id: &str,
) -> Result<(), MetaError> {
    match stored {
        Some(meta) if meta.cluster_id != cluster_id => Err(MetaError::OtherCluster {
            dir: dir.to_path_buf(),
            stored: meta.cluster_id,
            logged: cluster_id.to_string(),
        }),
        Some(_) => Ok(()),
        None => write(
            dir,
            &MetaProperties {
                node_id,
                directory_id: random_id(),
                cluster_id: cluster_id.to_string(),
            },
        ),
    }
}

/// Writes the file durably: beside its name, fsynced, renamed, dir fsynced.
pub fn write(dir: &Path, meta: &MetaProperties) -> Result<(), MetaError> {
    let bytes = meta.to_string();
    replace(dir, FILE, bytes.as_bytes(), Sync::Durable).map_err(|source| MetaError::Io {
        path: dir.join(FILE),
        source,
    })
}

/// Parses the file's text. Java-properties-like, as Kafka writes it: blank
/// lines and `#`/`!` comments skipped, `key=value` lines, keys other than
/// the four ignored (a newer writer may add some).
pub fn parse(text: &str) -> Result<MetaProperties, String> {
    let mut version = None;
    let mut node_id = None;
    let mut directory_id = None;
    let mut cluster_id = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line `{line}` is not key=value"))?;
        let slot = match key.trim() {
            "version" => &mut version,
            "node.id" => &mut node_id,
            "directory.id" => &mut directory_id,
            "cluster.id" => &mut cluster_id,
            _ => continue,
        };
        if slot.replace(value.trim()).is_some() {
            return Err(format!("`{}` appears twice", key.trim()));
        }
    }
    match version {
        Some("1") => {}
        Some(other) => return Err(format!("version {other} is not 1")),
        None => return Err("no `version`".into()),
    }
    let node_id = node_id.ok_or("no `node.id`")?;
    let node_id = node_id
        .parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| format!("node.id `{node_id}` is not a node id"))?;
    let directory_id = directory_id.ok_or("no `directory.id`")?;
    if !is_random_id(directory_id) {
        return Err(format!(
            "directory.id `{directory_id}` is not 22 base64url characters"
        ));
    }
    let cluster_id = cluster_id.ok_or("no `cluster.id`")?;
    if cluster_id.is_empty() || !cluster_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "cluster.id `{cluster_id}` is empty or not printable"
        ));
    }
    Ok(MetaProperties {
        node_id,
        directory_id: directory_id.to_string(),
        cluster_id: cluster_id.to_string(),
    })
}

fn malformed(path: &Path, reason: &str) -> MetaError {
    MetaError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A Kafka-style id (cluster or directory): 16 random bytes in URL-safe
/// base64, no padding, so 22 characters.
pub fn random_id() -> String {
    let bytes = TopicId::random().0;
    let mut bits = 0u32;
    let mut bit_count = 0;
    let mut out = String::with_capacity(22);
    for byte in bytes {
        bits = (bits << 8) | byte as u32;
        bit_count += 8;
        while bit_count >= 6 {
            bit_count -= 6;
            out.push(ALPHABET[((bits >> bit_count) & 63) as usize] as char);
        }
    }
    if bit_count > 0 {
        out.push(ALPHABET[((bits << (6 - bit_count)) & 63) as usize] as char);
    }
    out
}

fn is_random_id(text: &str) -> bool {
    text.len() == 22 && text.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetaProperties {
        MetaProperties {
            node_id: 1,
            directory_id: random_id(),
            cluster_id: random_id(),
        }
    }

    #[test]
    fn the_written_text_parses_back() {
        let meta = sample();
        assert_eq!(parse(&meta.to_string()), Ok(meta));
    }

    #[test]
    fn kafka_comments_and_unknown_keys_are_skipped() {
        let text = "#\n#Tue Dec 08 00:00:00 UTC 2026\nnode.id=3\nversion=1\n\
                    directory.id=AAAAAAAAAAAAAAAAAAAAAA\ncluster.id=abc\nfuture.key=x\n";
        let meta = parse(text).unwrap();
        assert_eq!((meta.node_id, meta.cluster_id.as_str()), (3, "abc"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let good = sample().to_string();
        let cases = [
            (good.replace("version=1", "version=0"), "version 0"),
            (good.replace("version=1\n", ""), "no `version`"),
            (good.replace("node.id=1", "node.id=-1"), "node.id `-1`"),
            (good.replace("node.id=1", "node.id=x"), "node.id `x`"),
            (format!("{good}node.id=2\n"), "appears twice"),
            (
                good.replace("directory.id=", "directory.id=short"),
                "directory.id",
            ),
            (format!("{good}garbage\n"), "not key=value"),
        ];
        for (text, reason) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(reason), "{error} lacks {reason}");
        }
        let no_cluster: String = good.lines().filter(|l| !l.starts_with("cluster")).collect();
        assert!(parse(&no_cluster).is_err());
    }

    #[test]
    fn a_new_directory_is_tagged_and_then_accepted() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        settle(dir.path(), None, 4, "c1").unwrap();
        let meta = read(dir.path()).unwrap().unwrap();
        assert_eq!((meta.node_id, meta.cluster_id.as_str()), (4, "c1"));
        check_node(dir.path(), Some(&meta), 4).unwrap();
        settle(dir.path(), Some(meta.clone()), 4, "c1").unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(meta));
    }

    #[test]
    fn another_node_or_cluster_is_refused_in_one_sentence() {
        let dir = tempfile::tempdir().unwrap();
        settle(dir.path(), None, 1, "c1").unwrap();
        let meta = read(dir.path()).unwrap();
        let error = check_node(dir.path(), meta.as_ref(), 2).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("belongs to node 1, but this node is configured as node 2"));
        assert!(text.contains("--node-id 1"));
        let error = settle(dir.path(), meta, 1, "c2").unwrap_err();
        assert!(matches!(error, MetaError::OtherCluster { .. }), "{error}");
    }

    #[test]
    fn a_malformed_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "version=2\n").unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("meta.properties") && error.contains("version 2"),
            "{error}"
        );
    }
}
