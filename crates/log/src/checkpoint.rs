//! Small text files that record a partition's durable facts: the log start
//! offset, the recovery point and the leader-epoch history. Each is replaced
//! atomically (temporary file, fsync, rename, fsync of the directory), so a
//! crash leaves either the old or the new content. Layouts: docs/FORMAT.md.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoFailure, LogError};
use crate::types::Offset;

pub(crate) const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// The cleaner's first dirty offset (everything below it was compacted) and
/// its gap horizon (offsets may be missing below it).
pub(crate) const CLEANER_FILE: &str = "cleaner-offset-checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
const VERSION: &str = "0";
/// Checkpoints are a few lines; anything larger is not one of ours, and
/// reading it whole must not exhaust memory.
const CHECKPOINT_BYTES_MAX: u64 = 16 << 20;

fn io_failure<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IoFailure + 'a {
    move |source| IoFailure {
        op,
        path: path.to_path_buf(),
        source,
    }
}

thread_local! {
    /// Directory fsyncs this thread has done: lets a test see whether an
    /// append (which runs on the caller's thread) synced a directory.
    static DIR_SYNCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many directory fsyncs the calling thread has done (for tests).
pub fn dir_syncs_on_this_thread() -> u64 {
    DIR_SYNCS.with(std::cell::Cell::get)
}

/// Fsyncs a directory so a rename or a new file in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IoFailure> {
    DIR_SYNCS.with(|n| n.set(n.get() + 1));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_failure("fsync directory", dir))
}

/// Atomically replaces `dir/name` with `body`.
pub(crate) fn write_atomic(dir: &Path, name: &str, body: &str) -> Result<(), IoFailure> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(io_failure("create", &tmp))?;
    file.write_all(body.as_bytes())
        .map_err(io_failure("write", &tmp))?;
    file.sync_all().map_err(io_failure("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_failure("rename", &path))?;
    sync_dir(dir)
}

fn read_lines(path: &Path) -> Result<Option<Vec<String>>, LogError> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failure("stat", path)(e).into()),
    };
    if len > CHECKPOINT_BYTES_MAX {
        return Err(bad(
            path,
            format!("{len} bytes is larger than any checkpoint"),
        ));
    }
    let text = fs::read_to_string(path).map_err(io_failure("read", path))?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.len() < 2 || lines[0] != VERSION {
        return Err(bad(path, "missing version 0 header".to_string()));
    }
    let count: usize = lines[1]
        .trim()
        .parse()
        .map_err(|_| bad(path, format!("entry count {:?} is not a number", lines[1])))?;
    if count != lines.len() - 2 {
        return Err(bad(
            path,
            format!("says {count} entries but has {}", lines.len() - 2),
        ));
    }
    Ok(Some(lines.split_off(2)))
}

fn bad(path: &Path, reason: String) -> LogError {
    LogError::BadCheckpoint {
        path: PathBuf::from(path),
        reason,
    }
}

/// Reads a one-offset checkpoint; `None` if the file does not exist.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Result<Option<Offset>, LogError> {
    let path = dir.join(name);
    let Some(lines) = read_lines(&path)? else {
        return Ok(None);
    };
    match lines.as_slice() {
        [value] => value
            .trim()
            .parse()
            .map(|v| Some(Offset(v)))
            .map_err(|_| bad(&path, format!("offset {value:?} is not a number"))),
        _ => Err(bad(&path, "expected exactly one offset".to_string())),
    }
}

pub(crate) fn write_offset(dir: &Path, name: &str, offset: Offset) -> Result<(), IoFailure> {
    write_atomic(dir, name, &format!("{VERSION}\n1\n{}\n", offset.0))
}

/// Reads a checkpoint of one offset per line; `None` if it does not exist.
pub(crate) fn read_offsets(dir: &Path, name: &str) -> Result<Option<Vec<Offset>>, LogError> {
    let path = dir.join(name);
    let Some(lines) = read_lines(&path)? else {
        return Ok(None);
    };
    lines
        .iter()
        .map(|value| {
            value
                .trim()
                .parse()
                .map(Offset)
                .map_err(|_| bad(&path, format!("offset {value:?} is not a number")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub(crate) fn write_offsets(dir: &Path, name: &str, offsets: &[Offset]) -> Result<(), IoFailure> {
    let mut body = format!("{VERSION}\n{}\n", offsets.len());
    for offset in offsets {
        body.push_str(&format!("{}\n", offset.0));
    }
    write_atomic(dir, name, &body)
}

/// Reads `(epoch, start offset)` pairs; empty if the file does not exist.
pub(crate) fn read_epochs(dir: &Path) -> Result<Vec<(i32, Offset)>, LogError> {
    let path = dir.join(LEADER_EPOCH_FILE);
    let Some(lines) = read_lines(&path)? else {
        return Ok(Vec::new());
    };
    lines
        .iter()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let epoch = parts.next().and_then(|p| p.parse().ok());
            let offset = parts.next().and_then(|p| p.parse().ok());
            match (epoch, offset, parts.next()) {
                (Some(e), Some(o), None) => Ok((e, Offset(o))),
                _ => Err(bad(&path, format!("line {line:?} is not `epoch offset`"))),
            }
        })
        .collect()
}

pub(crate) fn write_epochs(dir: &Path, epochs: &[(i32, Offset)]) -> Result<(), IoFailure> {
    let mut body = format!("{VERSION}\n{}\n", epochs.len());
    for (epoch, offset) in epochs {
        body.push_str(&format!("{epoch} {}\n", offset.0));
    }
    write_atomic(dir, LEADER_EPOCH_FILE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_epochs_round_trip_and_garbage_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offset(dir.path(), LOG_START_FILE).unwrap(), None);
        write_offset(dir.path(), LOG_START_FILE, Offset(42)).unwrap();
        assert_eq!(
            read_offset(dir.path(), LOG_START_FILE).unwrap(),
            Some(Offset(42))
        );
        write_epochs(dir.path(), &[(1, Offset(0)), (3, Offset(10))]).unwrap();
        assert_eq!(
            read_epochs(dir.path()).unwrap(),
            vec![(1, Offset(0)), (3, Offset(10))]
        );
        fs::write(dir.path().join(LOG_START_FILE), "0\n2\n5\n").unwrap();
        assert!(matches!(
            read_offset(dir.path(), LOG_START_FILE),
            Err(LogError::BadCheckpoint { .. })
        ));
    }
}
