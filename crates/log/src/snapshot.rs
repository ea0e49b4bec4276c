//! Producer-state snapshots: `<offset>.snapshot` files that hold a
//! partition's idempotent-producer state as it was when the log ended at
//! `offset` (Kafka's `.snapshot` files, with Rill's own bytes: see
//! docs/FORMAT.md). A roll writes one for the new segment's base offset; the
//! state is rebuilt from the newest readable snapshot at or below the log end
//! plus the batch headers after it, so a retried batch is recognised however
//! many segments ago its original was written.
//!
//! A snapshot is written without an fsync: it is only ever a shortcut. One
//! that a crash left torn fails its CRC and the next older one is used (or
//! the headers of the newest segments, as before snapshots existed); one past
//! the log end (its data was cut by recovery or a truncation) is deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::producer::{BatchRecord, ProducerState};
use crate::segment::{file_name, parse_file_name};
use crate::types::Offset;

const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Snapshots kept per partition: the newest, and one to fall back on if a
/// crash tore the newest.
const KEPT: usize = 2;
const VERSION: u16 = 1;
/// Version, CRC, producer count.
const HEADER_LEN: usize = 2 + 4 + 4;
/// Producer id, epoch, batch count.
const PRODUCER_LEN: usize = 8 + 2 + 1;
/// First and last sequence, first and last offset, append time.
const BATCH_LEN: usize = 4 + 4 + 8 + 8 + 8;

fn path(dir: &Path, offset: Offset) -> PathBuf {
    dir.join(file_name(offset, SNAPSHOT_SUFFIX))
}

/// The offsets of the snapshots in `dir`, newest first.
fn list(dir: &Path) -> io::Result<Vec<Offset>> {
    let mut offsets = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(offset) = name
            .to_str()
            .and_then(|n| parse_file_name(n, SNAPSHOT_SUFFIX))
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    Ok(offsets)
}

/// Writes the snapshot of `state` at `offset` (by a temporary file renamed
/// into place, so a reader never sees a half-written one under the final
/// name) and removes all but the newest `KEPT`.
pub(crate) fn write(dir: &Path, offset: Offset, state: &ProducerState) -> io::Result<()> {
    let bytes = encode(state);
    let target = path(dir, offset);
    let temporary = target.with_extension("snapshot.tmp");
    fs::write(&temporary, &bytes)?;
    fs::rename(&temporary, &target)?;
    for old in list(dir)?.into_iter().skip(KEPT) {
        remove(dir, old)?;
    }
    Ok(())
}

/// Removes every snapshot past `end`: the log was cut there, so they describe
/// batches that no longer exist.
pub(crate) fn remove_after(dir: &Path, end: Offset) -> io::Result<()> {
    for offset in list(dir)?.into_iter().filter(|o| *o > end) {
        remove(dir, offset)?;
    }
    Ok(())
}

fn remove(dir: &Path, offset: Offset) -> io::Result<()> {
    match fs::remove_file(path(dir, offset)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The newest readable snapshot at or below `log_end`, with its offset.
/// Snapshots past the log end are removed; unreadable ones are skipped with
/// a warning.
pub(crate) fn load_newest(
    dir: &Path,
    log_end: Offset,
) -> io::Result<Option<(Offset, ProducerState)>> {
    remove_after(dir, log_end)?;
    for offset in list(dir)? {
        let file = path(dir, offset);
        let bytes = match fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match decode(&bytes) {
            Ok(state) => return Ok(Some((offset, state))),
            Err(reason) => tracing::warn!(
                file = %file.display(),
                "skipping an unreadable producer-state snapshot: {reason}"
            ),
        }
    }
    Ok(None)
}

fn encode(state: &ProducerState) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count: u32 = 0;
    for (producer_id, epoch, batches) in state.entries() {
        count += 1;
        body.extend_from_slice(&producer_id.to_be_bytes());
        body.extend_from_slice(&epoch.to_be_bytes());
        // At most BATCHES_PER_PRODUCER (5) batches are kept.
        body.push(batches.len() as u8);
        for batch in batches {
            body.extend_from_slice(&batch.first_sequence.to_be_bytes());
            body.extend_from_slice(&batch.last_sequence.to_be_bytes());
            body.extend_from_slice(&batch.first_offset.0.to_be_bytes());
            body.extend_from_slice(&batch.last_offset.0.to_be_bytes());
            body.extend_from_slice(&batch.log_append_time_ms.to_be_bytes());
        }
    }
    let mut covered = count.to_be_bytes().to_vec();
    covered.extend_from_slice(&body);
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&rill_records::crc::crc32c(&covered).to_be_bytes());
    bytes.extend_from_slice(&covered);
    bytes
}

fn decode(bytes: &[u8]) -> Result<ProducerState, String> {
    let mut r = Reader(bytes);
    let version = u16::from_be_bytes(r.take()?);
    if version != VERSION {
        return Err(format!("version {version} is not {VERSION}"));
    }
    let stored = u32::from_be_bytes(r.take()?);
    let computed = rill_records::crc::crc32c(r.0);
    if stored != computed {
        return Err(format!(
            "CRC32C {stored:#010x} but the bytes give {computed:#010x}"
        ));
    }
    let count = u32::from_be_bytes(r.take()?);
    // Every producer takes at least PRODUCER_LEN bytes: a count the file
    // cannot hold is refused before anything is reserved for it.
    if (count as usize).saturating_mul(PRODUCER_LEN) > r.0.len() {
        return Err(format!(
            "{count} producers do not fit in {} bytes",
            r.0.len()
        ));
    }
    let mut state = ProducerState::default();
    for _ in 0..count {
        let producer_id = i64::from_be_bytes(r.take()?);
        let epoch = i16::from_be_bytes(r.take()?);
        let [batches] = r.take::<1>()?;
        let mut records = Vec::with_capacity(usize::from(batches).min(r.0.len() / BATCH_LEN));
        for _ in 0..batches {
            records.push(BatchRecord {
                first_sequence: i32::from_be_bytes(r.take()?),
                last_sequence: i32::from_be_bytes(r.take()?),
                first_offset: Offset(i64::from_be_bytes(r.take()?)),
                last_offset: Offset(i64::from_be_bytes(r.take()?)),
                log_append_time_ms: i64::from_be_bytes(r.take()?),
            });
        }
        state.restore(producer_id, epoch, records);
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the last producer", r.0.len()));
    }
    Ok(state)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, tail)) = self.0.split_first_chunk::<N>() else {
            return Err(format!("ends {} bytes early", N - self.0.len()));
        };
        self.0 = tail;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::ProducerFields;

    fn state() -> ProducerState {
        let mut state = ProducerState::default();
        for (id, seq) in [(7, 0), (7, 3), (9, 10)] {
            let fields = ProducerFields {
                producer_id: id,
                producer_epoch: 2,
                base_sequence: seq,
                last_offset_delta: 2,
                log_append_time_ms: -1,
            };
            state.record(&fields, Offset(i64::from(seq)), Offset(i64::from(seq) + 2));
        }
        state
    }

    #[test]
    fn a_snapshot_round_trips_and_damage_is_refused() {
        let bytes = encode(&state());
        let back = decode(&bytes).unwrap();
        assert_eq!(encode(&back), bytes);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert!(decode(&damaged).is_err(), "byte {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn the_newest_readable_snapshot_at_or_below_the_end_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        for offset in [10, 20, 30] {
            write(dir.path(), Offset(offset), &state()).unwrap();
        }
        assert_eq!(list(dir.path()).unwrap(), vec![Offset(30), Offset(20)]);
        // Torn newest: the older one serves.
        fs::write(path(dir.path(), Offset(30)), b"torn").unwrap();
        let (offset, _) = load_newest(dir.path(), Offset(40)).unwrap().unwrap();
        assert_eq!(offset, Offset(20));
        // Past the log end: removed.
        let (offset, _) = load_newest(dir.path(), Offset(25)).unwrap().unwrap();
        assert_eq!(offset, Offset(20));
        assert_eq!(list(dir.path()).unwrap(), vec![Offset(20)]);
        assert!(load_newest(dir.path(), Offset(5)).unwrap().is_none());
    }
}
