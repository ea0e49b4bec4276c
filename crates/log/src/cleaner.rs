//! Log compaction ("cleaning"): rewrites closed segments of a compacted log
//! keeping only the latest record for every key.
//!
//! One clean of one log, as in Kafka's cleaner:
//! 1. The *dirty* part of the log is the closed segments from the cleaner
//!    checkpoint (`first_dirty`) up to the active segment (or up to the first
//!    segment younger than `min.compaction.lag.ms`). [`build_offset_map`]
//!    reads it and records, for every key, the offset of its last record.
//!    The map is bounded (`log.cleaner.dedupe.buffer.size`); when it fills,
//!    the clean covers only the part mapped so far (`map_end`).
//! 2. Every closed segment below `map_end`, clean or dirty, is rewritten by
//!    [`clean_group`], several small segments into one where they fit
//!    `segment.bytes`. A record survives if no later record of its key exists
//!    below `map_end`; a tombstone (null value) also goes once its segment
//!    was last written more than `delete.retention.ms` ago. Batches whose
//!    records all survive are copied verbatim; others are rebuilt with the
//!    same codec and the same batch-level fields (base offset, last offset
//!    delta, producer id/epoch/base sequence, base timestamp), so offsets,
//!    idempotent-producer state and time lookups keep working. Offsets are
//!    never reassigned: a compacted log has gaps.
//! 3. The log swaps the rewritten segment in (see `Log::clean`): the new file
//!    is written as `<base>.log.cleaned`, renamed to `<base>-<end>.swap` (the
//!    commit point), the replaced segments are deleted, and the swap file is
//!    renamed to `<base>.log`. [`finish_interrupted_swaps`] runs at open and
//!    completes or discards an interrupted swap, so a crash at any point
//!    loses no live key and never serves two copies of an offset.
//!
//! The module only reads and writes files; the log's lock and segment map
//! are handled by `Log::clean` in `swap.rs`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use memmap2::Mmap;
use rill_records::batch::{
    BATCH_HEADER_LEN, BATCH_LENGTH_OFFSET, BatchIter, BatchView, CRC_COVERAGE_START, CRC_OFFSET,
    MAX_TIMESTAMP_OFFSET, RECORD_COUNT_OFFSET, TimestampType,
};
use rill_records::compression::{INFLATED_BYTES_MAX, compress};
use rill_records::record::{RawRecord, raw_records};

use crate::checkpoint::sync_dir;
use crate::error::{CorruptData, Fault, IoFailure};
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, NAME_DIGITS, TIME_INDEX_SUFFIX, file_name, io_failure,
    parse_file_name,
};
use crate::types::{Offset, Position};

/// Suffix of a rewritten segment before it is committed.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a committed rewrite not yet renamed into place.
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// Settings of the background cleaner (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enabled: bool,
    /// `log.cleaner.threads`: logs cleaned at once.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: memory for the key maps of all
    /// threads together.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: read+write rate per thread;
    /// `None` is unlimited.
    pub io_bytes_per_second: Option<u64>,
    /// `log.cleaner.backoff.ms`: pause when no log needs cleaning.
    pub backoff: std::time::Duration,
}

impl Default for CleanerConfig {
    /// Kafka's defaults.
    fn default() -> CleanerConfig {
        CleanerConfig {
            enabled: true,
            threads: 1,
            dedupe_buffer_bytes: 128 << 20,
            io_bytes_per_second: None,
            backoff: std::time::Duration::from_secs(15),
        }
    }
}

/// What one clean did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes read: the dirty part once to build the map, then every segment
    /// rewritten.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Bytes of dirty log this clean covered.
    pub dirty_bytes: u64,
    pub records_read: u64,
    pub records_removed: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    /// The cleaner checkpoint before and after: `[first_dirty, map_end)` was
    /// the dirty range cleaned.
    pub first_dirty: Offset,
    pub map_end: Offset,
}

/// Whether a log wants cleaning, and how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// Dirty bytes over closed bytes (Kafka's dirty ratio).
    pub dirty_ratio: f64,
    pub dirty_bytes: u64,
    /// The ratio is above `min.cleanable.dirty.ratio` (as in Kafka), or dirty data is older
    /// than `max.compaction.lag.ms`.
    pub due: bool,
}

/// Passes a `u128` (already a hash) through as the table's hash.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; fold anything else in case std changes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = (value as u64) ^ ((value >> 64) as u64);
    }
}

/// Key → offset of its last record, over the dirty part of a log.
///
/// Keys are stored as 128-bit hashes (two independently keyed SipHashes),
/// as Kafka stores MD5s: 24 bytes an entry whatever the key's length, so the
/// memory bound is exact. The hash keys are drawn fresh for every clean, so
/// no input can be crafted to collide; two keys sharing a hash by chance is
/// a 2^-128 event per pair.
pub struct OffsetMap {
    entries: HashMap<u128, i64, BuildHasherDefault<PassThrough>>,
    capacity: usize,
    keys: (RandomState, RandomState),
}

impl OffsetMap {
    /// A map using at most about `bytes` of memory (at least 1024 entries).
    pub fn with_memory(bytes: usize) -> OffsetMap {
        // The table holds a power of two of 24-byte slots plus one control
        // byte each, and fills to 7/8.
        let slots = (bytes / 25).max(1024);
        let slots = if slots.is_power_of_two() {
            slots
        } else {
            slots.next_power_of_two() / 2
        };
        let capacity = slots / 8 * 7;
        // The table starts small and doubles as keys come, up to `slots`:
        // a log with few keys gets a table that stays in cache (a full-size
        // one would be touched at random across all its pages).
        OffsetMap {
            entries: HashMap::with_capacity_and_hasher(
                capacity.min(1 << 16),
                BuildHasherDefault::default(),
            ),
            capacity,
            keys: (RandomState::new(), RandomState::new()),
        }
    }

    /// How many keys fit.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn clear(&mut self) {
        self.entries.clear();
        // Back to a small table, so this clean's keys decide its size.
        self.entries.shrink_to(1 << 16);
        self.keys = (RandomState::new(), RandomState::new());
    }

    fn hash(&self, key: &[u8]) -> u128 {
        let high = self.keys.0.hash_one(key);
        let low = self.keys.1.hash_one(key);
        (u128::from(high) << 64) | u128::from(low)
    }

    fn put(&mut self, hash: u128, offset: i64) {
        self.entries.insert(hash, offset);
    }

    fn get(&self, hash: u128) -> Option<i64> {
        self.entries.get(&hash).copied()
    }
}

/// A closed segment as the cleaner sees it: its file and offset range.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRef {
    pub base: Offset,
    /// The next segment's base: every offset in this one is below it.
    pub end: Offset,
    pub size: u64,
    pub path: PathBuf,
}

/// Maps a segment read-only. Safe because closed segments are never written
/// or truncated while a clean runs (`Log::truncate_to` waits for the
/// cleaner), and deleting one (retention) leaves the mapping valid.
fn map_segment(segment: &SegmentRef) -> Result<Option<Mmap>, Fault> {
    if segment.size == 0 {
        return Ok(None);
    }
    let file = File::open(&segment.path).map_err(io_failure("open", &segment.path))?;
    // SAFETY: see above; the file is this process's own and not shrunk while
    // the map lives.
    let map = unsafe { Mmap::map(&file) }.map_err(io_failure("mmap", &segment.path))?;
    Ok(Some(map))
}

/// The batches of a mapped segment up to its logical size, with positions.
fn batches<'a>(
    segment: &'a SegmentRef,
    bytes: &'a [u8],
) -> impl Iterator<Item = Result<(u64, BatchView<'a>), Fault>> + 'a {
    let mut iter = BatchIter::new(&bytes[..bytes.len().min(segment.size as usize)]);
    std::iter::from_fn(move || {
        let at = iter.position() as u64;
        let item = iter.next()?;
        Some(
            item.map(|(position, view)| (position as u64, view))
                .map_err(|e| corrupt(segment, at, e.to_string())),
        )
    })
}

/// The clean was asked to stop (shutdown): reported as the log closing.
fn stopped(segment: &SegmentRef) -> Fault {
    Fault::Closed {
        dir: segment
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    }
}

fn corrupt(segment: &SegmentRef, position: u64, reason: String) -> Fault {
    Fault::Corrupt(CorruptData {
        path: segment.path.clone(),
        position: Position(position),
        reason,
    })
}

/// Records, for every key in `segments` from offset `from` on, the offset of
/// its last record. Stops before the first batch whose keys would overflow
/// the map. Returns the offset after the last batch mapped (`from` when the
/// first batch did not fit).
pub(crate) fn build_offset_map(
    segments: &[SegmentRef],
    from: Offset,
    map: &mut OffsetMap,
    throttle: &mut dyn FnMut(u64) -> bool,
    stats: &mut CleanStats,
) -> Result<Offset, Fault> {
    map.clear();
    let mut inflated = Vec::new();
    let mut end = from;
    for segment in segments {
        let Some(bytes) = map_segment(segment)? else {
            end = end.max(segment.end);
            continue;
        };
        for batch in batches(segment, &bytes) {
            let (position, view) = batch?;
            if view.last_offset() < from.0 {
                continue;
            }
            let batch_bytes = view.total_len() as u64;
            if view.is_control() {
                end = Offset(view.next_offset());
                continue;
            }
            let count = usize::try_from(view.record_count()).unwrap_or(0);
            if map.len() + count > map.capacity() {
                if map.is_empty() {
                    return Err(corrupt(
                        segment,
                        position,
                        format!(
                            "one batch has more keys than the cleaner's map holds ({})",
                            map.capacity()
                        ),
                    ));
                }
                return Ok(end);
            }
            let section =
                records_section(&view, &mut inflated).map_err(|e| corrupt(segment, position, e))?;
            for record in raw_records(section, view.record_count()) {
                let record = record.map_err(|e| corrupt(segment, position, e.to_string()))?;
                let offset =
                    record_offset(&view, &record).map_err(|e| corrupt(segment, position, e))?;
                stats.records_read += 1;
                if let Some(key) = record.key {
                    let hash = map.hash(key);
                    map.put(hash, offset);
                }
            }
            end = Offset(view.next_offset());
            stats.bytes_read += batch_bytes;
            stats.dirty_bytes += batch_bytes;
            if !throttle(batch_bytes) {
                return Err(stopped(segment));
            }
        }
        end = end.max(segment.end);
    }
    Ok(end)
}

/// What the cleaner decides for one group of segments.
pub(crate) struct CleanRules<'a> {
    pub map: &'a OffsetMap,
    /// Records at or after this offset are kept as they are.
    pub map_end: Offset,
    /// Records below the log start offset are gone already.
    pub log_start: Offset,
    /// Tombstones in segments last written before this (ms since the epoch)
    /// are removed.
    pub tombstone_horizon_ms: i64,
}

/// A rewritten group, committed or not yet.
pub(crate) struct Cleaned {
    pub base: Offset,
    /// The offset after the group: the next segment's base.
    pub end: Offset,
    pub size: u64,
    /// `<base>.log.cleaned`, fsynced.
    pub path: PathBuf,
}

/// The segment's last-modified time in ms since the epoch.
pub(crate) fn modified_ms(path: &Path) -> Option<i64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// Rewrites `group` (consecutive closed segments) into one file
/// `<first base>.log.cleaned` in `dir`, keeping what `rules` keep. The new
/// file takes the newest modification time of the group, so a tombstone's
/// age survives being rewritten.
pub(crate) fn clean_group(
    dir: &Path,
    group: &[SegmentRef],
    rules: &CleanRules<'_>,
    throttle: &mut dyn FnMut(u64) -> bool,
    stats: &mut CleanStats,
) -> Result<Cleaned, Fault> {
    let base = group[0].base;
    let end = group[group.len() - 1].end;
    let path = dir.join(format!("{}.{CLEANED_SUFFIX}", file_name(base, LOG_SUFFIX)));
    let written = write_group(&path, group, rules, throttle, stats);
    if written.is_err() {
        // Uncommitted: nobody else will ever look at it.
        let _ = fs::remove_file(&path);
    }
    let size = written?;
    Ok(Cleaned {
        base,
        end,
        size,
        path,
    })
}

/// Writes the kept batches of `group` to `path`, fsynced; returns its size.
fn write_group(
    path: &Path,
    group: &[SegmentRef],
    rules: &CleanRules<'_>,
    throttle: &mut dyn FnMut(u64) -> bool,
    stats: &mut CleanStats,
) -> Result<u64, Fault> {
    let file = File::create(path).map_err(io_failure("create", path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut size = 0u64;
    let mut newest_ms: Option<i64> = None;
    let mut scratch = Scratch::default();
    for segment in group {
        let segment_ms = modified_ms(&segment.path);
        newest_ms = newest_ms.max(segment_ms);
        let drop_tombstones = segment_ms.is_some_and(|ms| ms < rules.tombstone_horizon_ms);
        let Some(bytes) = map_segment(segment)? else {
            continue;
        };
        for batch in batches(segment, &bytes) {
            let (position, view) = batch?;
            let batch_len = view.total_len() as u64;
            stats.bytes_read += batch_len;
            if !throttle(batch_len) {
                return Err(stopped(segment));
            }
            let kept = filter_batch(&view, rules, drop_tombstones, &mut scratch, stats)
                .map_err(|reason| corrupt(segment, position, reason))?;
            let written = match &kept {
                Kept::All => view.bytes(),
                Kept::Rebuilt(bytes) => bytes.as_slice(),
                Kept::Nothing => continue,
            };
            out.write_all(written).map_err(io_failure("write", path))?;
            size += written.len() as u64;
            stats.bytes_written += written.len() as u64;
            if !throttle(written.len() as u64) {
                return Err(stopped(segment));
            }
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| io_failure("write", path)(e.into_error()))?;
    if let Some(ms) = newest_ms {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
        file.set_modified(time)
            .map_err(io_failure("set modification time", path))?;
    }
    file.sync_all().map_err(io_failure("fsync", path))?;
    Ok(size)
}

enum Kept {
    All,
    Nothing,
    Rebuilt(Vec<u8>),
}

/// Buffers reused from batch to batch.
#[derive(Default)]
struct Scratch {
    inflated: Vec<u8>,
    records: Vec<u8>,
}

/// The records section of a batch, uncompressed: the batch's own bytes, or
/// `inflated` filled with them. Checks the CRC first: corrupt bytes must
/// neither be copied nor, worse, rebuilt under a fresh CRC.
fn records_section<'a>(
    view: &BatchView<'a>,
    inflated: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    view.validate().map_err(|e| e.to_string())?;
    if view.record_count() == 0 {
        return Ok(view.records_bytes());
    }
    // The one limit produce checks at append: a batch the log took inflates
    // within it.
    rill_records::compression::records_section(view, INFLATED_BYTES_MAX, inflated)
        .map_err(|e| e.to_string())
}

/// A record's absolute offset, checked to lie in its batch.
fn record_offset(view: &BatchView<'_>, record: &RawRecord<'_>) -> Result<i64, String> {
    if !(0..=view.last_offset_delta()).contains(&record.offset_delta) {
        return Err(format!(
            "record offset delta {} is outside the batch's 0..={}",
            record.offset_delta,
            view.last_offset_delta()
        ));
    }
    Ok(view.base_offset() + i64::from(record.offset_delta))
}

fn filter_batch(
    view: &BatchView<'_>,
    rules: &CleanRules<'_>,
    drop_tombstones: bool,
    scratch: &mut Scratch,
    stats: &mut CleanStats,
) -> Result<Kept, String> {
    if view.last_offset() < rules.log_start.0 {
        stats.records_removed += view.record_count().max(0) as u64;
        return Ok(Kept::Nothing);
    }
    // Control batches (transaction markers) and batches past the mapped
    // range stay as they are.
    if view.is_control() || view.base_offset() >= rules.map_end.0 {
        return Ok(Kept::All);
    }
    let Scratch { inflated, records } = scratch;
    let section = records_section(view, inflated)?;
    records.clear();
    let mut total = 0usize;
    let mut kept = 0usize;
    let mut max_delta: Option<i64> = None;
    for record in raw_records(section, view.record_count()) {
        let record = record.map_err(|e| e.to_string())?;
        let offset = record_offset(view, &record)?;
        total += 1;
        let keep = if offset < rules.log_start.0 {
            false
        } else if offset >= rules.map_end.0 {
            true
        } else {
            match record.key {
                // Keyless records cannot be compacted (produce refuses them
                // on compacted topics; older data may hold some): keep them.
                None => true,
                Some(key) => {
                    let latest = rules
                        .map
                        .get(rules.map.hash(key))
                        .is_none_or(|last| offset >= last);
                    latest && !(drop_tombstones && record.value_is_null)
                }
            }
        };
        if keep {
            kept += 1;
            // Records hold their offset and timestamp relative to the
            // batch's base, which the rebuilt batch keeps: they are copied
            // as they are, not re-encoded.
            records.extend_from_slice(record.bytes);
            max_delta = max_delta.max(Some(record.timestamp_delta));
        }
    }
    stats.records_removed += (total - kept) as u64;
    if kept == total {
        return Ok(Kept::All);
    }
    // A batch left without records goes entirely. Kafka keeps an empty
    // batch for an idempotent producer's last write (its sequence range),
    // but KafkaJS cannot get past a fetch answer made only of empty batches
    // (it advances by the records it sees), and Rill's producer state does
    // not need it: the live state is in memory, and a producer the log no
    // longer shows after a restart is accepted at any sequence.
    if kept == 0 {
        return Ok(Kept::Nothing);
    }
    // The original header with a new length, record count, max timestamp
    // (with CreateTime, the largest kept) and CRC; every other field (base
    // offset, last offset delta, producer id/epoch/sequence, base
    // timestamp, attributes) stays.
    let codec = view.compression().map_err(|e| e.to_string())?;
    let mut batch = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    batch.extend_from_slice(&view.bytes()[..BATCH_HEADER_LEN]);
    compress(codec, records, &mut batch).map_err(|e| e.to_string())?;
    let length = i32::try_from(batch.len() - 12).map_err(|_| "rebuilt batch too large")?;
    batch[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
    batch[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4]
        .copy_from_slice(&(kept as i32).to_be_bytes());
    if view.timestamp_type() == TimestampType::CreateTime
        && let Some(delta) = max_delta
    {
        let max = view.base_timestamp().saturating_add(delta);
        batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&max.to_be_bytes());
    }
    let crc = rill_records::crc::crc32c(&batch[CRC_COVERAGE_START..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Kept::Rebuilt(batch))
}

/// The swap file name that commits the rewrite of `[base, end)`.
pub(crate) fn swap_name(base: Offset, end: Offset) -> String {
    format!(
        "{:0w$}-{:0w$}.{SWAP_SUFFIX}",
        base.0,
        end.0,
        w = NAME_DIGITS
    )
}

fn parse_swap_name(name: &str) -> Option<(Offset, Offset)> {
    let stem = name.strip_suffix(SWAP_SUFFIX)?.strip_suffix('.')?;
    let (base, end) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == NAME_DIGITS && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(base) || !digits(end) {
        return None;
    }
    Some((Offset(base.parse().ok()?), Offset(end.parse().ok()?)))
}

/// Completes swaps a crash interrupted and removes uncommitted rewrites.
/// Runs when a log opens, before its segments are listed: a swap file means
/// the rewrite of `[base, end)` was committed, so every segment file in that
/// range is removed and the swap file takes the name `<base>.log` (its
/// indexes are rebuilt on first use).
pub(crate) fn finish_interrupted_swaps(dir: &Path) -> Result<(), IoFailure> {
    let mut swaps = Vec::new();
    let mut segment_files = Vec::new();
    let mut changed = false;
    for entry in fs::read_dir(dir).map_err(io_failure("list", dir))? {
        let entry = entry.map_err(io_failure("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(&format!(".{LOG_SUFFIX}.{CLEANED_SUFFIX}")) {
            fs::remove_file(&path).map_err(io_failure("remove", &path))?;
            changed = true;
        } else if let Some(range) = parse_swap_name(name) {
            swaps.push((range, path));
        } else if let Some(base) = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
            .iter()
            .find_map(|suffix| parse_file_name(name, suffix))
        {
            segment_files.push((base, path));
        }
    }
    for ((base, end), swap) in swaps {
        tracing::warn!(dir = %dir.display(), %base, %end, "finishing an interrupted compaction swap");
        for (_, path) in segment_files.iter().filter(|(b, _)| *b >= base && *b < end) {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_failure("remove", path)(e)),
            }
        }
        let target = dir.join(file_name(base, LOG_SUFFIX));
        fs::rename(&swap, &target).map_err(io_failure("rename", &swap))?;
        changed = true;
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Splits consecutive segments into groups that each fit one segment:
/// at most `max_bytes` (by their current sizes, an upper bound on the
/// cleaned size) and an offset span a 32-bit relative index can address.
pub(crate) fn group_segments(segments: &[SegmentRef], max_bytes: u64) -> Vec<Vec<SegmentRef>> {
    let mut groups: Vec<Vec<SegmentRef>> = Vec::new();
    let mut bytes = 0u64;
    for segment in segments {
        let fits = groups.last().is_some_and(|group| {
            let base = group[0].base;
            bytes + segment.size <= max_bytes
                && segment.end.0.saturating_sub(base.0) <= i64::from(u32::MAX)
        });
        if fits {
            bytes += segment.size;
            groups
                .last_mut()
                .expect("checked above")
                .push(segment.clone());
        } else {
            bytes = segment.size;
            groups.push(vec![segment.clone()]);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_names_round_trip_and_other_names_are_not_swaps() {
        let name = swap_name(Offset(42), Offset(1000));
        assert_eq!(name, "00000000000000000042-00000000000000001000.swap");
        assert_eq!(parse_swap_name(&name), Some((Offset(42), Offset(1000))));
        assert_eq!(parse_swap_name("00000000000000000042.log"), None);
        assert_eq!(parse_swap_name("42-1000.swap"), None);
    }

    #[test]
    fn the_offset_map_holds_what_its_memory_allows() {
        let map = OffsetMap::with_memory(128 << 20);
        assert_eq!(map.capacity(), (4 << 20) / 8 * 7);
        let small = OffsetMap::with_memory(0);
        assert_eq!(small.capacity(), 1024 / 8 * 7);
    }

    #[test]
    fn groups_respect_the_size_and_the_offset_span() {
        let segment = |base: i64, end: i64, size: u64| SegmentRef {
            base: Offset(base),
            end: Offset(end),
            size,
            path: PathBuf::new(),
        };
        let segments = [
            segment(0, 10, 400),
            segment(10, 20, 400),
            segment(20, 30, 400),
            segment(30, 40 + i64::from(u32::MAX), 10),
        ];
        let groups = group_segments(&segments, 1000);
        let bases: Vec<Vec<i64>> = groups
            .iter()
            .map(|g| g.iter().map(|s| s.base.0).collect())
            .collect();
        assert_eq!(bases, vec![vec![0, 10], vec![20], vec![30]]);
    }
}
