//! Small files replaced whole (the vote, the commit point, snapshots):
//! written beside their name, then renamed over it, so a crash leaves the
//! old file or the new one, never half of one. Blocking IO: callers run
//! these off the async workers.

use std::fs;
use std::io;
use std::path::Path;

use rill_metadata::entry::{self, ENTRY_PAYLOAD_BYTES_MAX, Read};
pub use rill_metadata::store::{Sync, create_dir_durably, replace, sync_dir};

/// A small file holding one framed entry (the format of log entries).
pub fn framed(payload: &[u8]) -> io::Result<Vec<u8>> {
    if payload.len() > ENTRY_PAYLOAD_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} bytes to frame, over the limit of {ENTRY_PAYLOAD_BYTES_MAX}",
                payload.len()
            ),
        ));
    }
    Ok(entry::encode(payload))
}

/// The payload of a file written by [`replace`] with [`framed`] bytes, or
/// `None` if there is no such file.
pub fn read_framed(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match entry::read_at(&bytes, 0) {
        Read::Entry(entry) if entry.len == bytes.len() => Ok(Some(entry.payload.to_vec())),
        Read::Entry(_) => Err(damaged(path, "bytes follow its entry".to_string())),
        Read::TornTail(reason) | Read::Damaged(reason) => Err(damaged(path, reason)),
    }
}

pub fn damaged(path: &Path, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is damaged: {reason}", path.display()),
    )
}

/// Deletes the `*.tmp` files a crash left in `dir`.
pub fn remove_temp_files(dir: &Path) -> io::Result<()> {
    for file in fs::read_dir(dir)? {
        let path = file?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
