//! The two sparse indexes of a segment, memory-mapped.
//!
//! - `.index`: 8-byte entries (relative offset u32, position u32), one for
//!   the first batch after every `index.interval.bytes` of log.
//! - `.timeindex`: 12-byte entries (timestamp i64, relative offset u32),
//!   added beside an offset entry whenever the segment's largest timestamp
//!   has grown since the last one.
//!
//! A closed segment's indexes are memory-mapped read-only, loaded lazily.
//! The active segment's entries live in a buffer in memory (at most
//! `segment.index.bytes`) and are written to the files when the segment
//! rolls or the log closes; after a crash, recovery rebuilds the active
//! segment's indexes from its batches anyway. A writable map would cost
//! the same in the page cache, but every touched page of it counts in the
//! broker's resident set: one page per index per partition, 80 MiB at
//! 10,000 partitions (measured), where the buffer costs a few hundred bytes.
//! Layouts: docs/FORMAT.md.
//!
//! Thread-safety: an index is plain data (`Send + Sync`); the segment that
//! owns it serializes writers.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::types::{Offset, Position};

pub(crate) const OFFSET_ENTRY_LEN: usize = 8;
pub(crate) const TIME_ENTRY_LEN: usize = 12;
const _: () = assert!(OFFSET_ENTRY_LEN == 4 + 4);
const _: () = assert!(TIME_ENTRY_LEN == 8 + 4);

enum Map {
    /// A file with no entries: zero-length maps are not allowed.
    Empty,
    ReadOnly(Mmap),
    /// The active segment's entries (the file holds what was last written).
    Active(Vec<u8>),
}

/// A file of fixed-size entries, behind a memory map or (active) a buffer.
pub(crate) struct IndexFile {
    path: PathBuf,
    map: Map,
    entry_len: usize,
    entries: usize,
    capacity: usize,
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

impl IndexFile {
    /// Maps a closed segment's trimmed index, which holds exactly its entries.
    pub(crate) fn open_read_only(path: &Path, entry_len: usize) -> io::Result<IndexFile> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| invalid(format!("{} is too large to map", path.display())))?;
        if len % entry_len != 0 {
            return Err(invalid(format!(
                "{} has {len} bytes, not a multiple of {entry_len}",
                path.display()
            )));
        }
        let map = if len == 0 {
            Map::Empty
        } else {
            // SAFETY: the file belongs to this log directory, which one broker
            // process owns; segments that are not active are never written or
            // truncated while mapped, so the mapped bytes do not change under us.
            Map::ReadOnly(unsafe { Mmap::map(&file)? })
        };
        Ok(IndexFile {
            path: path.to_path_buf(),
            map,
            entry_len,
            entries: len / entry_len,
            capacity: len / entry_len,
        })
    }

    /// Opens the active segment's index: the entries in the file, if there
    /// is one (a new segment's index has no file until it rolls or closes),
    /// are read into the buffer. It may grow to `max_bytes` (rounded down to
    /// whole entries, at least one more entry). A file of more than
    /// `max_entries` entries cannot be this segment's index and is refused
    /// before it is read.
    pub(crate) fn open_active(
        path: &Path,
        entry_len: usize,
        max_bytes: u32,
        max_entries: u64,
    ) -> io::Result<IndexFile> {
        let bytes = match File::open(path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                if len % entry_len as u64 != 0 {
                    return Err(invalid(format!(
                        "{} has {len} bytes, not a multiple of {entry_len}",
                        path.display()
                    )));
                }
                if len / entry_len as u64 > max_entries {
                    return Err(invalid(format!(
                        "{} has {} entries, more than its segment can have",
                        path.display(),
                        len / entry_len as u64
                    )));
                }
                let mut bytes = vec![0u8; len as usize];
                file.read_exact_at(&mut bytes, 0)?;
                bytes
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let entries = bytes.len() / entry_len;
        Ok(IndexFile {
            path: path.to_path_buf(),
            map: Map::Active(bytes),
            entry_len,
            entries,
            capacity: (max_bytes as usize / entry_len).max(entries + 2),
        })
    }

    /// Replaces the file with exactly `bytes` (whole entries), e.g. after a
    /// rebuild from the segment's batches.
    /// `sync` fsyncs the file before returning.
    pub(crate) fn write_entries(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
        let mut file = File::create(path)?;
        io::Write::write_all(&mut file, bytes)?;
        if sync {
            file.sync_all()?;
        }
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            Map::Empty => &[],
            Map::ReadOnly(m) => &m[..self.entries * self.entry_len],
            Map::Active(v) => &v[..self.entries * self.entry_len],
        }
    }

    fn entry(&self, i: usize) -> &[u8] {
        &self.bytes()[i * self.entry_len..(i + 1) * self.entry_len]
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    pub(crate) fn free_entries(&self) -> usize {
        self.capacity - self.entries
    }

    /// Appends one entry; returns false if the index is full or read-only.
    fn push(&mut self, entry: &[u8]) -> bool {
        debug_assert_eq!(entry.len(), self.entry_len);
        if self.entries >= self.capacity {
            return false;
        }
        let Map::Active(buffer) = &mut self.map else {
            return false;
        };
        buffer.extend_from_slice(entry);
        self.entries += 1;
        true
    }

    fn truncate(&mut self, entries: usize) {
        self.entries = self.entries.min(entries);
        if let Map::Active(buffer) = &mut self.map {
            buffer.truncate(self.entries * self.entry_len);
        }
    }

    /// Writes the file and maps it read-only (on roll).
    ///
    /// Without syncing: a roll happens on the append path, and an fsync
    /// there waited on the filesystem's journal and the writeback of
    /// everything else dirty (40–50 ms stalls in end-to-end latency at each
    /// roll, measured). A flush syncs the closed segment's indexes before
    /// the recovery point passes it; until then a crash makes recovery
    /// rebuild them.
    pub(crate) fn into_read_only(mut self) -> io::Result<IndexFile> {
        self.write_out(false)?;
        IndexFile::open_read_only(&self.path, self.entry_len)
    }

    /// Writes an active index's entries to its file, replacing what the
    /// file held, and with `sync` fsyncs it (clean shutdown). The file is
    /// written in place: a crash midway is an unclean stop, after which
    /// recovery rebuilds this segment's indexes.
    pub(crate) fn write_out(&mut self, sync: bool) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        let bytes = self.bytes();
        file.write_all_at(bytes, 0)?;
        file.set_len(bytes.len() as u64)?;
        if sync {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Fsyncs a closed segment's index file (after a roll, before the
    /// recovery point may pass the segment).
    pub(crate) fn sync_file(path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Relative offset → position of the batch starting there.
pub(crate) struct OffsetIndex {
    file: IndexFile,
    base: Offset,
}

impl OffsetIndex {
    pub(crate) fn new(file: IndexFile, base: Offset) -> OffsetIndex {
        OffsetIndex { file, base }
    }

    /// Serializes one entry, for rebuilding an index in memory.
    pub(crate) fn encode(base: Offset, offset: Offset, position: Position) -> [u8; 8] {
        let mut e = [0u8; OFFSET_ENTRY_LEN];
        e[..4].copy_from_slice(&((offset.0 - base.0) as u32).to_be_bytes());
        e[4..].copy_from_slice(&(position.0 as u32).to_be_bytes());
        e
    }

    fn entry(&self, i: usize) -> (Offset, Position) {
        let e = self.file.entry(i);
        (
            Offset(self.base.0 + i64::from(be_u32(&e[..4]))),
            Position(u64::from(be_u32(&e[4..]))),
        )
    }

    /// The last entry at or before `target`.
    pub(crate) fn lookup(&self, target: Offset) -> Option<(Offset, Position)> {
        let n = self.file.entries();
        let mut low = 0;
        let mut high = n;
        while low < high {
            let mid = low + (high - low) / 2;
            if self.entry(mid).0 <= target {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        (low > 0).then(|| self.entry(low - 1))
    }

    /// The last entry whose position is at or before `limit`.
    pub(crate) fn lookup_position(&self, limit: Position) -> Option<(Offset, Position)> {
        let n = self.file.entries();
        let mut low = 0;
        let mut high = n;
        while low < high {
            let mid = low + (high - low) / 2;
            if self.entry(mid).1 <= limit {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        (low > 0).then(|| self.entry(low - 1))
    }

    /// Adds an entry; false when the index is full.
    pub(crate) fn append(&mut self, offset: Offset, position: Position) -> bool {
        debug_assert!(self.last().is_none_or(|(o, p)| o < offset && p < position));
        self.file
            .push(&OffsetIndex::encode(self.base, offset, position))
    }

    pub(crate) fn last(&self) -> Option<(Offset, Position)> {
        self.file.entries().checked_sub(1).map(|i| self.entry(i))
    }

    /// Drops the entries at or after `offset`.
    pub(crate) fn truncate_from(&mut self, offset: Offset) {
        let keep = (0..self.file.entries())
            .position(|i| self.entry(i).0 >= offset)
            .unwrap_or(self.file.entries());
        self.file.truncate(keep);
    }

    /// Checks the entries are usable against a segment of `size` bytes:
    /// offsets and positions strictly increasing, positions inside the file.
    pub(crate) fn check(&self, size: u64) -> Result<(), String> {
        let mut previous: Option<(Offset, Position)> = None;
        for i in 0..self.file.entries() {
            let (offset, position) = self.entry(i);
            if position.0 >= size {
                return Err(format!(
                    "entry {i} points at {position}, past the end {size}"
                ));
            }
            if previous.is_some_and(|(o, p)| offset <= o || position <= p) {
                return Err(format!("entry {i} ({offset}, {position}) is out of order"));
            }
            previous = Some((offset, position));
        }
        Ok(())
    }

    pub(crate) fn file(&self) -> &IndexFile {
        &self.file
    }

    pub(crate) fn file_mut(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    pub(crate) fn into_read_only(self) -> io::Result<OffsetIndex> {
        Ok(OffsetIndex {
            file: self.file.into_read_only()?,
            base: self.base,
        })
    }
}

/// Largest timestamp so far → offset of the batch that carried it.
pub(crate) struct TimeIndex {
    file: IndexFile,
    base: Offset,
}

impl TimeIndex {
    pub(crate) fn new(file: IndexFile, base: Offset) -> TimeIndex {
        TimeIndex { file, base }
    }

    pub(crate) fn encode(base: Offset, timestamp_ms: i64, offset: Offset) -> [u8; 12] {
        let mut e = [0u8; TIME_ENTRY_LEN];
        e[..8].copy_from_slice(&timestamp_ms.to_be_bytes());
        e[8..].copy_from_slice(&((offset.0 - base.0) as u32).to_be_bytes());
        e
    }

    fn entry(&self, i: usize) -> (i64, Offset) {
        let e = self.file.entry(i);
        (
            be_i64(&e[..8]),
            Offset(self.base.0 + i64::from(be_u32(&e[8..]))),
        )
    }

    /// The last entry whose timestamp is below `timestamp_ms`: every batch
    /// before the one at its offset has a smaller timestamp, so a search for
    /// the first batch reaching `timestamp_ms` may start there.
    pub(crate) fn lookup_below(&self, timestamp_ms: i64) -> Option<(i64, Offset)> {
        let n = self.file.entries();
        let mut low = 0;
        let mut high = n;
        while low < high {
            let mid = low + (high - low) / 2;
            if self.entry(mid).0 < timestamp_ms {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        (low > 0).then(|| self.entry(low - 1))
    }

    pub(crate) fn last(&self) -> Option<(i64, Offset)> {
        self.file.entries().checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds an entry if `timestamp_ms` is larger than the last one; false
    /// only when the index is full.
    pub(crate) fn maybe_append(&mut self, timestamp_ms: i64, offset: Offset) -> bool {
        if self.last().is_some_and(|(t, _)| t >= timestamp_ms) {
            return true;
        }
        self.file
            .push(&TimeIndex::encode(self.base, timestamp_ms, offset))
    }

    pub(crate) fn truncate_from(&mut self, offset: Offset) {
        let keep = (0..self.file.entries())
            .position(|i| self.entry(i).1 >= offset)
            .unwrap_or(self.file.entries());
        self.file.truncate(keep);
    }

    /// Timestamps strictly increasing, offsets non-decreasing and below `end`.
    pub(crate) fn check(&self, end: Offset) -> Result<(), String> {
        let mut previous: Option<(i64, Offset)> = None;
        for i in 0..self.file.entries() {
            let (ts, offset) = self.entry(i);
            if offset >= end {
                return Err(format!(
                    "entry {i} names offset {offset}, past the end {end}"
                ));
            }
            if previous.is_some_and(|(t, o)| ts <= t || offset < o) {
                return Err(format!("entry {i} ({ts}, {offset}) is out of order"));
            }
            previous = Some((ts, offset));
        }
        Ok(())
    }

    pub(crate) fn file(&self) -> &IndexFile {
        &self.file
    }

    pub(crate) fn file_mut(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    pub(crate) fn into_read_only(self) -> io::Result<TimeIndex> {
        Ok(TimeIndex {
            file: self.file.into_read_only()?,
            base: self.base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Offset, Position};

    #[test]
    fn index_entry_sizes_match_the_format() {
        assert_eq!(OFFSET_ENTRY_LEN, 8);
        assert_eq!(TIME_ENTRY_LEN, 12);
        let e = OffsetIndex::encode(Offset(100), Offset(103), Position(4096));
        assert_eq!(e, [0, 0, 0, 3, 0, 0, 0x10, 0]);
        let t = TimeIndex::encode(Offset(100), 5, Offset(101));
        assert_eq!(t, [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1]);
    }
}
