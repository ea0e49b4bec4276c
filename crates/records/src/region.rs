//! A byte range of a log file holding whole record batches: what the log
//! returns for a read and what a fetch answer sends with `sendfile(2)`.
//! This crate does no IO: a region only carries the file's handle.

use std::fmt;
use std::fs::File;
use std::sync::Arc;

/// A byte range of a log file made of whole batches.
///
/// The `Arc<File>` keeps the file readable even if retention deletes the
/// segment while the region is being sent.
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
