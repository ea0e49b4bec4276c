//! Helpers shared by the log's integration tests: a small record batch
//! encoder and readers that pull batches back out of file slices.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rill_log::{FileRegion, Log, Offset};
use rill_records::batch::{BatchIter, BatchView, CRC_COVERAGE_START, CRC_OFFSET};

/// The newest `.log` file in a partition directory: the active segment's.
pub fn active_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An uncompressed batch of `count` records with `value_len`-byte values,
/// timestamps `ts, ts+1, ...`, base offset 0 and a correct CRC.
pub fn batch(count: usize, value_len: usize, ts: i64) -> Vec<u8> {
    batch_with_fill(count, value_len, ts, 0x5a)
}

pub fn batch_with_fill(count: usize, value_len: usize, ts: i64, fill: u8) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..count {
        let mut body = vec![0u8]; // attributes
        varint(&mut body, i as i64); // timestamp delta
        varint(&mut body, i as i64); // offset delta
        varint(&mut body, -1); // null key
        varint(&mut body, value_len as i64);
        body.extend(std::iter::repeat_n(fill.wrapping_add(i as u8), value_len));
        varint(&mut body, 0); // no headers
        varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&((count as i32) - 1).to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&(ts + count as i64 - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(count as i32).to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[CRC_COVERAGE_START..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The bytes of one slice.
pub fn slice_bytes(slice: &FileRegion) -> Vec<u8> {
    let mut buf = vec![0u8; slice.len as usize];
    slice
        .file
        .read_exact_at(&mut buf, slice.position)
        .expect("slice is readable");
    buf
}

/// Reads the whole log from `start` to its end as (base offset, batch bytes),
/// checking each batch's CRC.
pub fn read_all(log: &Log, start: Offset) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = start;
    let end = log.log_end_offset();
    while next < end {
        let info = log.read(next, 64 * 1024, end).expect("read succeeds");
        assert!(
            !info.slices.is_empty(),
            "read at {next} returned nothing before {end}"
        );
        for slice in &info.slices {
            let bytes = slice_bytes(slice);
            for item in BatchIter::new(&bytes) {
                let (_, view) = item.expect("slices hold whole batches");
                view.validate().expect("served batches pass their CRC");
                out.push((view.base_offset(), view.bytes().to_vec()));
                next = Offset(view.next_offset());
            }
        }
    }
    out
}

/// The batch bytes with the fields the log rewrites (base offset, leader
/// epoch) cleared, for comparing what went in with what came out.
pub fn without_rewritten(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[..8].fill(0);
    b[12..16].fill(0);
    b
}

pub fn view(bytes: &[u8]) -> BatchView<'_> {
    BatchView::parse(bytes).expect("a batch").0
}

/// The `lastOffsetDelta` of a batch.
pub fn view_delta(bytes: &[u8]) -> i32 {
    view(bytes).last_offset_delta()
}

/// A batch from an idempotent producer: `count` records starting at
/// sequence `sequence`.
pub fn idempotent_batch(count: usize, producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    let mut b = batch(count, 20, 1_000);
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_COVERAGE_START..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}
