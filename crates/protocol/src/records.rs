//! The `records` field of Produce and Fetch: opaque bytes to this crate.

use bytes::Bytes;
pub use rill_records::region::FileRegion;

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
