//! The `records` field of Produce and Fetch: opaque bytes to this crate.

use std::fmt;
use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

/// A byte range of a log file that the sender copies with `sendfile(2)`.
/// This crate does no IO: it only carries the handle.
#[derive(Clone)]
pub struct FileRegion {
    pub file: Arc<File>,
    /// Byte position in the file where the region starts.
    pub position: u64,
    pub len: u32,
}

impl fmt::Debug for FileRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRegion")
            .field("position", &self.position)
            .field("len", &self.len)
            .finish()
    }
}

/// Regions compare by place and size: two handles to one file are not
/// comparable without IO, and this crate does none.
impl PartialEq for FileRegion {
    fn eq(&self, other: &Self) -> bool {
        self.position == other.position && self.len == other.len
    }
}

/// Record batches as received (a slice of the request frame) or as they will
/// be sent (regions of log files).
#[derive(Clone, Debug, PartialEq)]
pub enum Records {
    Bytes(Bytes),
    Files(Vec<FileRegion>),
}

impl Records {
    /// The number of bytes the records take on the wire.
    pub fn len(&self) -> usize {
        match self {
            Records::Bytes(bytes) => bytes.len(),
            Records::Files(regions) => regions.iter().map(|region| region.len as usize).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
