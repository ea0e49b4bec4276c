//! Crash consistency: the active segment cut at every byte of its last
//! batches, and random bytes flipped anywhere. Recovery must yield a valid
//! prefix of what was written, at least everything that was durable (below
//! the recovery point), never serve a batch that fails its CRC, and never
//! panic.

mod common;

use std::path::{Path, PathBuf};

use common::{active_segment, batch_with_fill, slice_bytes, without_rewritten};
use rill_log::{Log, LogConfig, Offset, ReadError};
use rill_records::batch::BatchIter;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 3000,
        index_interval_bytes: 200,
        segment_index_bytes: 1024,
        ..LogConfig::default()
    }
}

/// What was appended: (base offset, bytes without rewritten fields).
struct Written {
    batches: Vec<(i64, Vec<u8>)>,
    /// Batches below the recovery point when the "crash" happened.
    durable: usize,
}

/// Builds a log of several segments, flushes and checkpoints part of it,
/// appends more without flushing, then "crashes" (drops without close).
fn build(dir: &Path, seed: u8) -> Written {
    let log = Log::open(dir, config()).unwrap();
    let mut batches = Vec::new();
    let mut durable = 0;
    for i in 0..40u8 {
        let b = batch_with_fill(
            1 + usize::from(i % 3),
            50 + usize::from(i) * 3,
            i64::from(i),
            seed ^ i,
        );
        let info = log.append(&b, 1, 0).unwrap();
        batches.push((info.base_offset.0, without_rewritten(&b)));
        if i == 30 {
            log.flush().unwrap();
            log.checkpoint().unwrap();
            durable = batches.len();
        }
    }
    assert!(log.segment_count() >= 4);
    drop(log);
    Written { batches, durable }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Reads everything the log serves, stopping at a storage error; every
/// served batch must pass its CRC. Returns the batches read.
fn served(log: &Log) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let info = match log.read(next, 4096, end) {
            Ok(info) => info,
            Err(ReadError::Corrupt(_)) => break,
            Err(e) => panic!("unexpected read error {e}"),
        };
        assert!(!info.slices.is_empty());
        for slice in &info.slices {
            let bytes = slice_bytes(slice);
            for item in BatchIter::new(&bytes) {
                let (_, view) = item.expect("whole batches");
                view.validate().expect("never serve a bad CRC");
                out.push((view.base_offset(), without_rewritten(view.bytes())));
                next = Offset(view.next_offset());
            }
        }
    }
    out
}

fn assert_prefix(got: &[(i64, Vec<u8>)], written: &Written, at_least: usize, what: &str) {
    assert!(
        got.len() <= written.batches.len(),
        "{what}: more than written"
    );
    assert!(
        got.len() >= at_least,
        "{what}: lost durable data ({} < {at_least})",
        got.len()
    );
    for (g, w) in got.iter().zip(&written.batches) {
        assert_eq!(g, w, "{what}: not a prefix of what was written");
    }
}

#[test]
fn cutting_the_active_segment_anywhere_recovers_a_prefix() {
    let source = tempfile::tempdir().unwrap();
    let written = build(source.path(), 7);
    let active = active_segment(source.path());
    let size = std::fs::metadata(&active).unwrap().len();
    // Every byte of the last three batches (plus the exact end).
    let tail: u64 = written.batches[written.batches.len() - 3..]
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum();
    for cut in size.saturating_sub(tail)..=size {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(source.path(), dir.path());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(active.file_name().unwrap()))
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);
        let log = Log::open(dir.path(), config()).unwrap();
        let got = served(&log);
        assert_prefix(&got, &written, written.durable, &format!("cut at {cut}"));
        assert_eq!(
            log.log_end_offset().0,
            got.last()
                .map_or(0, |(o, b)| { o + i64::from(common::view_delta(b)) + 1 })
        );
        // The recovered log accepts appends right after its end.
        let end = log.log_end_offset();
        let info = log.append(&batch_with_fill(1, 5, 0, 1), 1, 0).unwrap();
        assert_eq!(info.base_offset, end);
    }
}

#[test]
fn flipped_bytes_are_cut_at_recovery_or_fenced_by_the_scrub() {
    let source = tempfile::tempdir().unwrap();
    let written = build(source.path(), 9);
    let mut files: Vec<PathBuf> = std::fs::read_dir(source.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    // A fixed-seed generator keeps the test reproducible.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..150 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(source.path(), dir.path());
        let victim = &files[(next() % files.len() as u64) as usize];
        let path = dir.path().join(victim.file_name().unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.is_empty() {
            continue;
        }
        let flips = 1 + next() % 3;
        for _ in 0..flips {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 << (next() % 8);
        }
        std::fs::write(&path, &bytes).unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        log.scrub(&mut |_| {}).unwrap();
        let got = served(&log);
        // A flip below the recovery point can cost durable data (that is
        // what the scrub reports); what is served is still a valid prefix
        // of what was written, except for the leader epoch, which no CRC
        // covers and `without_rewritten` ignores.
        assert_prefix(&got, &written, 0, &format!("round {round}"));
    }
}

/// A tail long enough that recovery checks its batches on several threads
/// (over 4 MiB after the recovery point): with a flipped byte in a batch
/// near the start, the middle or the end, recovery keeps exactly the
/// batches before it, as the one-thread walk does; untouched, all of them.
#[test]
fn a_long_tail_is_checked_in_parallel_and_cut_at_its_first_bad_batch() {
    let config = || LogConfig {
        segment_bytes: 64 << 20,
        ..LogConfig::default()
    };
    let source = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    let mut positions = Vec::new();
    {
        let log = Log::open(source.path(), config()).unwrap();
        let mut position = 0;
        for i in 0..400u32 {
            // ~16 KiB batches, 6.4 MiB in all, none of it flushed.
            let b = batch_with_fill(8, 2000, i64::from(i), i as u8);
            let info = log.append(&b, 1, 0).unwrap();
            written.push((info.base_offset.0, without_rewritten(&b)));
            positions.push(position);
            position += b.len();
        }
        assert_eq!(log.segment_count(), 1);
    }
    let all = Written {
        batches: written,
        durable: 0,
    };
    for victim in [None, Some(3), Some(150), Some(260), Some(399)] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(source.path(), dir.path());
        if let Some(victim) = victim {
            let path = active_segment(dir.path());
            let mut bytes = std::fs::read(&path).unwrap();
            // A byte inside the records, which only the CRC covers.
            bytes[positions[victim] + 100] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
        }
        let log = Log::open(dir.path(), config()).unwrap();
        let got = served(&log);
        let kept = victim.unwrap_or(all.batches.len());
        assert_eq!(got.len(), kept, "flipped batch {victim:?}");
        assert_prefix(&got, &all, kept, &format!("flipped batch {victim:?}"));
        assert_eq!(log.log_end_offset(), Offset(8 * kept as i64));
    }
}
