//! One segment: a `.log` file of whole record batches plus its two indexes.
//!
//! A segment knows how to find a batch by offset or position, how to scan
//! and validate its batches (recovery, index rebuilds, scrub), and how to
//! lazily open its file and indexes. It does not know about other segments.
//!
//! Thread-safety: `Segment` is `Send + Sync`. Its size and role (active or
//! closed) change only under the owning log's write lock; the lazily opened
//! handles sit behind their own mutex so readers holding the log's read lock
//! can open them.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use memmap2::Mmap;
use rill_records::batch::{
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BASE_SEQUENCE_OFFSET, BATCH_HEADER_LEN, BatchView,
    LAST_OFFSET_DELTA_OFFSET, MAX_TIMESTAMP_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET,
    TIMESTAMP_TYPE_BIT, batch_total_len,
};

use crate::error::{CorruptData, Fault, IoFailure, short_of_resources};
use crate::index::{IndexFile, OFFSET_ENTRY_LEN, OffsetIndex, TIME_ENTRY_LEN, TimeIndex};
use crate::types::{Offset, Position};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Segment names are the base offset in 20 zero-padded decimal digits (as in
/// Kafka), wide enough for `i64::MAX`, so names sort in offset order.
pub(crate) const NAME_DIGITS: usize = 20;
const _: () = assert!(i64::MAX.ilog10() < NAME_DIGITS as u32);

pub(crate) fn file_name(base: Offset, suffix: &str) -> String {
    format!("{:0width$}.{suffix}", base.0, width = NAME_DIGITS)
}

/// Parses `00000000000000000042.log` into offset 42.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<Offset> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(Offset)
}

pub(crate) fn io_failure<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IoFailure + 'a {
    move |source| IoFailure {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The header fields the log navigates by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub base: Offset,
    pub last: Offset,
    pub len: u64,
    pub max_timestamp: i64,
    /// Idempotent-producer fields, for rebuilding producer state.
    pub producer: ProducerFields,
}

/// The header fields that identify an idempotent producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerFields {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub last_offset_delta: i32,
    /// The log append time stamped in the batch, or -1 with CreateTime.
    pub log_append_time_ms: i64,
}

impl Header {
    pub(crate) fn decode(h: &[u8; BATCH_HEADER_LEN]) -> Result<Header, String> {
        let len = batch_total_len(h).map_err(|e| e.to_string())? as u64;
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let delta = i32::from_be_bytes([
            h[LAST_OFFSET_DELTA_OFFSET],
            h[LAST_OFFSET_DELTA_OFFSET + 1],
            h[LAST_OFFSET_DELTA_OFFSET + 2],
            h[LAST_OFFSET_DELTA_OFFSET + 3],
        ]);
        let base = i64_at(BASE_OFFSET_OFFSET);
        if delta < 0 {
            return Err(format!("negative last offset delta {delta}"));
        }
        let attributes = i16::from_be_bytes([h[ATTRIBUTES_OFFSET], h[ATTRIBUTES_OFFSET + 1]]);
        let max_timestamp = i64_at(MAX_TIMESTAMP_OFFSET);
        Ok(Header {
            base: Offset(base),
            last: Offset(base.saturating_add(i64::from(delta))),
            len,
            max_timestamp,
            producer: ProducerFields {
                producer_id: i64_at(PRODUCER_ID_OFFSET),
                producer_epoch: i16::from_be_bytes([
                    h[PRODUCER_EPOCH_OFFSET],
                    h[PRODUCER_EPOCH_OFFSET + 1],
                ]),
                base_sequence: i32::from_be_bytes([
                    h[BASE_SEQUENCE_OFFSET],
                    h[BASE_SEQUENCE_OFFSET + 1],
                    h[BASE_SEQUENCE_OFFSET + 2],
                    h[BASE_SEQUENCE_OFFSET + 3],
                ]),
                last_offset_delta: delta,
                log_append_time_ms: if attributes & TIMESTAMP_TYPE_BIT != 0 {
                    max_timestamp
                } else {
                    -1
                },
            },
        })
    }
}

/// Frees the blocks an active segment reserved beyond its length (see
/// `reserve_ahead` in segments.rs): truncating a file to its own length releases
/// them and changes no byte. The truncate is a journaled change, so it is
/// skipped when the allocated blocks show nothing held beyond the length
/// (the slack covers the file system's own extent blocks).
pub(crate) fn release_reserve(file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    const SLACK: u64 = 64 << 10;
    let meta = file.metadata()?;
    let len = meta.len();
    if meta.blocks() * 512 > len.next_multiple_of(4096) + SLACK {
        file.set_len(len)?;
    }
    Ok(())
}

/// The open handles of a segment.
pub(crate) struct Loaded {
    pub file: Arc<File>,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
}

/// Everything one pass over a segment's batches learned.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Bytes from the start of the file that hold whole, checked batches.
    pub valid_bytes: u64,
    /// Offset after the last valid batch, if any batch was valid.
    pub next_offset: Option<Offset>,
    pub offset_entries: Vec<u8>,
    pub time_entries: Vec<u8>,
    pub max_timestamp: Option<(i64, Offset)>,
    pub bytes_since_index_entry: u64,
    /// Base offset and max timestamp of the first batch, for `segment.ms`.
    pub first_timestamp: Option<i64>,
    /// Why the scan stopped before the end of the file.
    pub invalid: Option<String>,
    /// Timestamp of the last time entry produced (or resumed from).
    last_time_entry: i64,
}

/// Where a scan starts: the file start, or a known batch boundary (the last
/// index entry) with the index state as of just before that batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanStart {
    pub position: u64,
    pub expected: Offset,
    pub cursor: IndexCursor,
}

impl ScanStart {
    pub(crate) fn beginning(base: Offset) -> ScanStart {
        ScanStart {
            position: 0,
            expected: base,
            cursor: IndexCursor::default(),
        }
    }
}

/// How an index-entry decision is taken, shared by appends and rebuilds so
/// a rebuilt index is identical to the one appends wrote.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IndexCursor {
    pub bytes_since_index_entry: u64,
    pub max_timestamp: Option<(i64, Offset)>,
}

impl IndexCursor {
    /// Accounts one batch; returns whether an index entry (at this batch)
    /// is due, and then the time entry to add beside it.
    pub(crate) fn step(
        &mut self,
        interval_bytes: u32,
        batch_len: u64,
        last: Offset,
        max_timestamp: i64,
    ) -> (bool, Option<(i64, Offset)>) {
        if max_timestamp >= 0 && self.max_timestamp.is_none_or(|(t, _)| max_timestamp > t) {
            self.max_timestamp = Some((max_timestamp, last));
        }
        let due = self.bytes_since_index_entry > u64::from(interval_bytes);
        if due {
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += batch_len;
        (due, if due { self.max_timestamp } else { None })
    }
}

/// Walks the batches of `path` from its start, checking lengths, offset
/// order and, when `validate`, each batch's CRC and fields; builds index
/// entries on the way. Stops at the first bad or torn batch.
///
/// Offsets must increase. A gap (a batch starting past the offset after the
/// previous one) is allowed only when the batch starts at or below
/// `gaps_below`: compaction leaves gaps only below its horizon, and above it
/// a gap can only be a corrupt base offset, which the CRC does not cover.
pub(crate) fn scan_file(
    path: &Path,
    base: Offset,
    size: u64,
    interval_bytes: u32,
    validate: bool,
    gaps_below: Offset,
    start: ScanStart,
) -> Result<Scan, IoFailure> {
    let file = File::open(path).map_err(io_failure("open", path))?;
    if size <= start.position {
        return Ok(Walk::new(base, interval_bytes, gaps_below, start).scan);
    }
    // SAFETY: the segment is not being appended to or truncated while it is
    // scanned (scans run at open, on closed segments, or under the log's
    // write lock), and the directory belongs to this process.
    let map = unsafe { Mmap::map(&file) }.map_err(io_failure("mmap", path))?;
    let bytes = &map[..map.len().min(size as usize)];
    let walk = || Walk::new(base, interval_bytes, gaps_below, start);
    if !validate || bytes.len() - (start.position as usize) < PARALLEL_VALIDATION_MIN {
        return Ok(walk().run(bytes, validate, None));
    }
    // A long validating scan (recovery) hands the checks to a thread per
    // core, a chunk at a time, as this thread walks the headers and builds
    // the index entries: the CRC check is most of the work.
    let found = Mutex::new(None);
    let (chunks, to_check) = mpsc::sync_channel::<(usize, usize)>(64);
    // Only the checkers hold the receiver: should they all stop (a panic),
    // it drops and the walk's sends fail instead of blocking.
    let to_check = Arc::new(Mutex::new(to_check));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let scan = std::thread::scope(|scope| {
        for _ in 0..workers {
            let to_check = Arc::clone(&to_check);
            let found = &found;
            scope.spawn(move || check_chunks(bytes, &to_check, found));
        }
        drop(to_check);
        let scan = walk().run(bytes, false, Some(&chunks));
        // The checkers stop when the channel closes; the scope waits for
        // them.
        drop(chunks);
        scan
    });
    match found.into_inner().ok().flatten() {
        // A bad batch the walk went past: walk again up to it (rare, and
        // the pages are in memory now).
        Some((position, reason)) => {
            let mut scan = walk().run(&bytes[..position], false, None);
            scan.invalid.get_or_insert(reason);
            Ok(scan)
        }
        None => Ok(scan),
    }
}

/// Below this a validating scan checks batches on its own thread: starting
/// threads (tens of microseconds) costs what checking a quarter MiB does,
/// so a few MiB gain little.
const PARALLEL_VALIDATION_MIN: usize = 4 << 20;

/// The bytes `scan_file` hands a checking thread at a time: large enough
/// that handing out chunks costs nothing, small enough that the threads
/// finish together.
const VALIDATION_CHUNK: usize = 1 << 20;

/// A checking thread of `scan_file`: takes chunks (whole batches) until the
/// walk ends, checks each batch's CRC and fields, and keeps the position of
/// the earliest bad batch found and why. Chunks past it are skipped.
fn check_chunks(
    bytes: &[u8],
    to_check: &Mutex<mpsc::Receiver<(usize, usize)>>,
    found: &Mutex<Option<(usize, String)>>,
) {
    let earliest = || {
        found
            .lock()
            .map_or(0, |f| f.as_ref().map_or(usize::MAX, |(at, _)| *at))
    };
    loop {
        let next = match to_check.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok((start, end)) = next else {
            return;
        };
        if start >= earliest() {
            continue;
        }
        let mut at = start;
        while at < end {
            let Ok((view, len)) = BatchView::parse(&bytes[at..end]) else {
                break;
            };
            if let Err(e) = view.validate() {
                if let Ok(mut found) = found.lock()
                    && found.as_ref().is_none_or(|(first, _)| at < *first)
                {
                    *found = Some((at, e.to_string()));
                }
                break;
            }
            at += len;
        }
    }
}

/// The state of one walk over a segment's batches.
struct Walk {
    scan: Scan,
    base: Offset,
    interval_bytes: u32,
    gaps_below: Offset,
    cursor: IndexCursor,
    expected: Offset,
    position: usize,
}

impl Walk {
    fn new(base: Offset, interval_bytes: u32, gaps_below: Offset, start: ScanStart) -> Walk {
        Walk {
            scan: Scan {
                valid_bytes: start.position,
                max_timestamp: start.cursor.max_timestamp,
                bytes_since_index_entry: start.cursor.bytes_since_index_entry,
                last_time_entry: start.cursor.max_timestamp.map_or(i64::MIN, |(t, _)| t),
                ..Scan::default()
            },
            base,
            interval_bytes,
            gaps_below,
            cursor: start.cursor,
            expected: start.expected,
            position: start.position as usize,
        }
    }

    /// Walks `bytes` from the start position; sends each run of about
    /// `VALIDATION_CHUNK` bytes of whole batches it has passed to `chunks`.
    fn run(
        mut self,
        bytes: &[u8],
        validate: bool,
        chunks: Option<&mpsc::SyncSender<(usize, usize)>>,
    ) -> Scan {
        let base = self.base;
        let scan = &mut self.scan;
        let mut chunk_start = self.position;
        while self.position < bytes.len() {
            let position = self.position;
            let (view, len) = match BatchView::parse(&bytes[position..]) {
                Ok(parsed) => parsed,
                Err(e) => {
                    scan.invalid = Some(e.to_string());
                    break;
                }
            };
            if validate && let Err(e) = view.validate() {
                scan.invalid = Some(e.to_string());
                break;
            }
            let first = Offset(view.base_offset());
            let last = Offset(view.last_offset());
            let expected = self.expected;
            if first < expected || (first > expected && first > self.gaps_below) || last < first {
                scan.invalid = Some(format!(
                    "batch offsets {first}..={last} do not follow offset {expected}"
                ));
                break;
            }
            if last.0 - base.0 > i64::from(u32::MAX) || position + len > u32::MAX as usize {
                scan.invalid = Some("batch lies beyond what 32-bit index entries address".into());
                break;
            }
            let max_timestamp = view.max_timestamp();
            let (due, time_entry) =
                self.cursor
                    .step(self.interval_bytes, len as u64, last, max_timestamp);
            if due {
                scan.offset_entries.extend_from_slice(&OffsetIndex::encode(
                    base,
                    first,
                    Position(position as u64),
                ));
                if let Some((t, o)) = time_entry.filter(|&(t, _)| t > scan.last_time_entry) {
                    scan.time_entries
                        .extend_from_slice(&TimeIndex::encode(base, t, o));
                    scan.last_time_entry = t;
                }
            }
            scan.first_timestamp.get_or_insert(max_timestamp);
            self.expected = Offset(last.0 + 1);
            scan.next_offset = Some(self.expected);
            self.position = position + len;
            if let Some(chunks) = chunks
                && self.position - chunk_start >= VALIDATION_CHUNK
            {
                // A checker gone (it panicked) leaves fewer checkers; the
                // scope reports the panic.
                let _ = chunks.send((chunk_start, self.position));
                chunk_start = self.position;
            }
        }
        if let Some(chunks) = chunks
            && chunk_start < self.position
        {
            let _ = chunks.send((chunk_start, self.position));
        }
        scan.valid_bytes = self.position as u64;
        // As when a segment closes, the last time entry holds the largest
        // timestamp, so retention and time lookups see the whole segment.
        if let Some((t, o)) = self
            .cursor
            .max_timestamp
            .filter(|&(t, _)| t > scan.last_time_entry)
        {
            scan.time_entries
                .extend_from_slice(&TimeIndex::encode(base, t, o));
            scan.last_time_entry = t;
        }
        scan.max_timestamp = self.cursor.max_timestamp;
        scan.bytes_since_index_entry = self.cursor.bytes_since_index_entry;
        self.scan
    }
}

/// One segment of a partition.
pub(crate) struct Segment {
    pub base: Offset,
    pub dir: PathBuf,
    /// Bytes of the `.log` file that belong to the log.
    pub size: u64,
    /// Handles, opened on first use; `None` when closed to save descriptors.
    loaded: Mutex<Option<Loaded>>,
    /// A logical clock reading of the last use, for closing idle handles.
    pub last_used: AtomicU64,
    /// Position of the first batch the scrub found corrupt, or `u64::MAX`.
    corrupt_from: AtomicU64,
}

impl Segment {
    pub(crate) fn new(dir: &Path, base: Offset, size: u64) -> Segment {
        Segment {
            base,
            dir: dir.to_path_buf(),
            size,
            loaded: Mutex::new(None),
            last_used: AtomicU64::new(0),
            corrupt_from: AtomicU64::new(u64::MAX),
        }
    }

    pub(crate) fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(file_name(self.base, suffix))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Loaded>> {
        // A panic while holding this lock cannot leave the handles half
        // changed in a way later users could misread, so poisoning is ignored.
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handles' lock, unless someone holds it.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, Option<Loaded>>> {
        match self.loaded.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.lock().is_some()
    }

    /// Closes the handles unless someone is using them; true if it did.
    pub(crate) fn try_unload(&self) -> bool {
        match self.loaded.try_lock() {
            Ok(mut guard) => guard.take().is_some(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take().is_some(),
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    pub(crate) fn corrupt_from(&self) -> Option<Position> {
        match self.corrupt_from.load(Ordering::Acquire) {
            u64::MAX => None,
            p => Some(Position(p)),
        }
    }

    pub(crate) fn mark_corrupt(&self, position: Position) {
        self.corrupt_from.fetch_min(position.0, Ordering::AcqRel);
    }

    /// Opens the file and indexes. A missing or inconsistent index is
    /// rebuilt from the batches; `end` is the offset after the segment.
    pub(crate) fn load(
        &self,
        end: Offset,
        active: bool,
        interval_bytes: u32,
        index_bytes: u32,
    ) -> Result<Loaded, IoFailure> {
        let log_path = self.path(LOG_SUFFIX);
        // Appends go to the file's end (`O_APPEND`), never over its bytes.
        let file = if active {
            OpenOptions::new().read(true).append(true).open(&log_path)
        } else {
            File::open(&log_path)
        }
        .map_err(io_failure("open", &log_path))?;
        if active {
            // A crash leaves the blocks reserved ahead of the appends.
            release_reserve(&file).map_err(io_failure("truncate", &log_path))?;
        }
        // Every entry names a different batch, and a batch is at least a
        // header long (the time index has one entry more at close).
        let max_entries = self.size / BATCH_HEADER_LEN as u64 + 2;
        let open = |suffix: &str, entry_len: usize| {
            let path = self.path(suffix);
            if active {
                IndexFile::open_active(&path, entry_len, index_bytes, max_entries)
            } else {
                IndexFile::open_read_only(&path, entry_len)
            }
        };
        let indexes = open(INDEX_SUFFIX, OFFSET_ENTRY_LEN).and_then(|offsets| {
            let times = open(TIME_INDEX_SUFFIX, TIME_ENTRY_LEN)?;
            Ok((
                OffsetIndex::new(offsets, self.base),
                TimeIndex::new(times, self.base),
            ))
        });
        // Out of descriptors or memory says nothing about the index files:
        // fail this use rather than rebuild them.
        if let Err(e) = &indexes
            && short_of_resources(e)
        {
            let source = io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(0));
            return Err(io_failure("open", &self.path(INDEX_SUFFIX))(source));
        }
        let problem = match &indexes {
            Ok((offsets, times)) => offsets
                .check(self.size)
                .and_then(|()| times.check(end))
                .err(),
            Err(e) => Some(e.to_string()),
        };
        let (offset_index, time_index) = match (problem, indexes) {
            (None, Ok(indexes)) => indexes,
            (problem, _) => {
                tracing::warn!(
                    segment = %log_path.display(),
                    problem = problem.as_deref().unwrap_or("unknown"),
                    "rebuilding the segment's indexes"
                );
                self.rebuild_indexes(interval_bytes, false)?;
                let offsets = open(INDEX_SUFFIX, OFFSET_ENTRY_LEN)
                    .map_err(io_failure("open", &self.path(INDEX_SUFFIX)))?;
                let times = open(TIME_INDEX_SUFFIX, TIME_ENTRY_LEN)
                    .map_err(io_failure("open", &self.path(TIME_INDEX_SUFFIX)))?;
                (
                    OffsetIndex::new(offsets, self.base),
                    TimeIndex::new(times, self.base),
                )
            }
        };
        Ok(Loaded {
            file: Arc::new(file),
            offset_index,
            time_index,
        })
    }

    /// Rewrites both index files from a scan of the batches (`sync`: as in
    /// `write_indexes`).
    pub(crate) fn rebuild_indexes(
        &self,
        interval_bytes: u32,
        sync: bool,
    ) -> Result<Scan, IoFailure> {
        let scan = scan_file(
            &self.path(LOG_SUFFIX),
            self.base,
            self.size,
            interval_bytes,
            false,
            Offset(i64::MAX),
            ScanStart::beginning(self.base),
        )?;
        self.write_indexes(&scan, sync)?;
        Ok(scan)
    }

    /// Replaces both index files, each through a temporary name: a crash
    /// midway leaves an index missing (rebuilt on first use, and the `.tmp`
    /// removed at open), never a torn one. With `sync` each is fsynced
    /// before its rename (the caller syncs the directory); without, an OS
    /// crash may leave a prefix, which costs lookups a longer scan but
    /// misleads nobody: callers that rely on the indexes surviving one
    /// (recovery, compaction, the flush after a roll) sync them.
    pub(crate) fn write_indexes(&self, scan: &Scan, sync: bool) -> Result<(), IoFailure> {
        for (suffix, entries) in [
            (INDEX_SUFFIX, &scan.offset_entries),
            (TIME_INDEX_SUFFIX, &scan.time_entries),
        ] {
            let path = self.path(suffix);
            let tmp = path.with_extension(format!("{suffix}.tmp"));
            IndexFile::write_entries(&tmp, entries, sync)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(io_failure("write", &path))?;
        }
        Ok(())
    }

    /// Reads the header of the batch at `position`, which must lie before
    /// `limit` (the end of the readable part of the file) with the whole
    /// batch inside it.
    pub(crate) fn header_at(
        &self,
        file: &File,
        position: u64,
        limit: u64,
    ) -> Result<Header, Fault> {
        let mut h = [0u8; BATCH_HEADER_LEN];
        let path = self.path(LOG_SUFFIX);
        let corrupt = |reason: String| {
            Fault::Corrupt(CorruptData {
                path: self.path(LOG_SUFFIX),
                position: Position(position),
                reason,
            })
        };
        if position + BATCH_HEADER_LEN as u64 > limit {
            return Err(corrupt(format!("batch header crosses the end {limit}")));
        }
        file.read_exact_at(&mut h, position)
            .map_err(io_failure("read", &path))?;
        let header = Header::decode(&h).map_err(corrupt)?;
        if position + header.len > limit {
            return Err(corrupt(format!(
                "batch of {} bytes crosses the end {limit}",
                header.len
            )));
        }
        Ok(header)
    }

    /// Finds the batch holding `target` or, if none does, the first one after
    /// it; `None` when every batch before `limit` ends before `target`.
    pub(crate) fn locate(
        &self,
        loaded: &Loaded,
        target: Offset,
        limit: u64,
    ) -> Result<Option<(u64, Header)>, Fault> {
        let mut position = loaded.offset_index.lookup(target).map_or(0, |(_, p)| p.0);
        while position < limit {
            let header = self.header_at(&loaded.file, position, limit)?;
            if header.last >= target {
                return Ok(Some((position, header)));
            }
            position += header.len;
        }
        Ok(None)
    }

    /// The last batch boundary at or before `limit` and after `from`
    /// (`from` is a boundary itself); everything in `[start, boundary)` is
    /// whole batches.
    pub(crate) fn boundary_before(
        &self,
        loaded: &Loaded,
        from: u64,
        limit: u64,
        end: u64,
    ) -> Result<(u64, Option<Offset>), Fault> {
        if limit >= end {
            return Ok((end, None));
        }
        let mut position = match loaded.offset_index.lookup_position(Position(limit)) {
            Some((_, p)) if p.0 > from => p.0,
            _ => from,
        };
        while position < end {
            let header = self.header_at(&loaded.file, position, end)?;
            if position + header.len > limit {
                return Ok((position, Some(header.base)));
            }
            position += header.len;
        }
        Ok((position, None))
    }

    /// The first batch at or after `start_offset` whose max timestamp reaches
    /// `timestamp_ms`, searched up to byte `end`.
    pub(crate) fn find_timestamp(
        &self,
        loaded: &Loaded,
        timestamp_ms: i64,
        start_offset: Offset,
        end: u64,
    ) -> Result<Option<(Offset, i64)>, Fault> {
        let from = match loaded.time_index.lookup_below(timestamp_ms) {
            Some((_, offset)) => offset.max(start_offset),
            None => start_offset,
        };
        let Some((mut position, _)) = self.locate(loaded, from, end)? else {
            return Ok(None);
        };
        while position < end {
            let header = self.header_at(&loaded.file, position, end)?;
            if header.max_timestamp >= timestamp_ms && header.last >= start_offset {
                return Ok(Some((header.base.max(start_offset), header.max_timestamp)));
            }
            position += header.len;
        }
        Ok(None)
    }
}
