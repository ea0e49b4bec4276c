//! The Raft log's entries on disk: `log/<20-digit first index>.log`
//! segments, each a run of framed entries (docs/FORMAT.md, "Controller Raft
//! log"). Blocking IO: the log store runs every call here off the async
//! workers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use openraft::entry::RaftEntry;
use rill_metadata::entry::{self, Read};

use crate::codec::{decode_entry, encode_entry};
use crate::durable::{self, sync_dir};
use crate::types::Entry;

/// A segment takes no more appends once it holds this much. Metadata is
/// KBs to MBs, and purging frees whole segments, so segments stay small.
const SEGMENT_ROLL_BYTES: u64 = 1024 * 1024;

struct Segment {
    path: PathBuf,
    /// Index and byte position of each entry.
    entries: Vec<(u64, u64)>,
    len: u64,
}

pub struct Segments {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// The last segment, open for appends, unless the next append starts a
    /// new one.
    active: Option<File>,
}

impl Segments {
    /// Opens the segments in `dir` (made if missing) and reads their
    /// entries. A bad entry at the end of the last segment is a torn tail
    /// (an append a crash cut short, never acknowledged) and is cut off; any
    /// other bad entry is damage and refuses the open.
    pub fn open(dir: &Path) -> io::Result<(Segments, Vec<Entry>)> {
        durable::create_dir_durably(dir)?;
        let mut firsts = Vec::new();
        for file in fs::read_dir(dir)? {
            let path = file?.path();
            if let Some(first) = segment_first_index(&path) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut segments = Segments {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            active: None,
        };
        let mut entries = Vec::new();
        for (n, first) in firsts.iter().enumerate() {
            let last = n + 1 == firsts.len();
            segments.read_segment(*first, last, &mut entries)?;
        }
        segments.open_active()?;
        Ok((segments, entries))
    }

    fn read_segment(&mut self, first: u64, last: bool, out: &mut Vec<Entry>) -> io::Result<()> {
        let path = self.dir.join(segment_name(first));
        let bytes = fs::read(&path)?;
        let mut segment = Segment {
            path,
            entries: Vec::new(),
            len: 0,
        };
        let mut position = 0;
        while position < bytes.len() {
            let found = match entry::read_at(&bytes, position) {
                Read::Entry(found) => found,
                Read::TornTail(reason) if last => {
                    tracing::warn!(
                        "{}: cutting a torn entry at byte {position} (an append a crash cut short): {reason}",
                        segment.path.display()
                    );
                    cut(&segment.path, position as u64)?;
                    break;
                }
                Read::TornTail(reason) | Read::Damaged(reason) => {
                    return Err(damaged(&segment.path, position, &reason));
                }
            };
            let decoded = decode_entry(found.payload)
                .map_err(|e| damaged(&segment.path, position, &e.to_string()))?;
            let follows = out
                .last()
                .is_none_or(|p: &Entry| decoded.index() > p.index());
            let named = !segment.entries.is_empty() || decoded.index() == first;
            if !follows || !named {
                let reason = format!("entry {} is out of order", decoded.index());
                return Err(damaged(&segment.path, position, &reason));
            }
            segment.entries.push((decoded.index(), position as u64));
            out.push(decoded);
            position += found.len;
        }
        segment.len = segment.entries.last().map_or(0, |_| position as u64);
        if segment.entries.is_empty() {
            // A segment made just before a crash, or cut to nothing.
            fs::remove_file(&segment.path)?;
            sync_dir(&self.dir)?;
        } else {
            self.segments.push(segment);
        }
        Ok(())
    }

    fn open_active(&mut self) -> io::Result<()> {
        self.active = match self.segments.last() {
            Some(last) if last.len < SEGMENT_ROLL_BYTES => {
                Some(OpenOptions::new().append(true).open(&last.path)?)
            }
            _ => None,
        };
        Ok(())
    }

    /// Writes `entries` with one `write` and one `fdatasync`. They follow
    /// the log's last entry (openraft truncates before it overwrites).
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if let Some(last) = self.last_index()
            && first.index() <= last
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "append at {} does not follow the last entry {last}",
                    first.index()
                ),
            ));
        }
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for entry in entries {
            let payload = encode_entry(entry);
            positions.push((entry.index(), bytes.len() as u64));
            bytes.extend_from_slice(&durable::framed(&payload)?);
        }
        if self.active.is_none() {
            self.start_segment(first.index())?;
        }
        let (Some(file), Some(segment)) = (self.active.as_mut(), self.segments.last_mut()) else {
            return Err(io::Error::other("no active segment"));
        };
        file.write_all(&bytes)?;
        file.sync_data()?;
        let base = segment.len;
        segment
            .entries
            .extend(positions.into_iter().map(|(index, at)| (index, base + at)));
        segment.len += bytes.len() as u64;
        if segment.len >= SEGMENT_ROLL_BYTES {
            self.active = None;
        }
        Ok(())
    }

    /// A new, empty segment whose first entry will be `first`, its name
    /// made durable before anything in it is acknowledged.
    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        let path = self.dir.join(segment_name(first));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            path,
            entries: Vec::new(),
            len: 0,
        });
        self.active = Some(file);
        Ok(())
    }

    fn last_index(&self) -> Option<u64> {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.entries.last().map(|(index, _)| *index))
    }

    /// Deletes every entry after index `last` (all of them if `None`).
    /// Later segments go first, newest first, each deletion made durable
    /// before the next step: a crash part way leaves a shorter log, never
    /// one with a hole that later entries sit behind.
    pub fn truncate_after(&mut self, last: Option<u64>) -> io::Result<()> {
        let keeps = |index: u64| last.is_some_and(|last| index <= last);
        self.active = None;
        while let Some(segment) = self.segments.last_mut() {
            let Some(cut_at) = segment.entries.iter().position(|(i, _)| !keeps(*i)) else {
                break;
            };
            if cut_at == 0 {
                fs::remove_file(&segment.path)?;
                sync_dir(&self.dir)?;
                self.segments.pop();
                continue;
            }
            let position = segment.entries[cut_at].1;
            cut(&segment.path, position)?;
            segment.entries.truncate(cut_at);
            segment.len = position;
            break;
        }
        self.open_active()
    }

    /// Deletes the segments whose entries are all at or below `index`, and
    /// starts a new segment at the next append, so that the next purge can
    /// delete the current one whole.
    pub fn purge(&mut self, index: u64) -> io::Result<()> {
        self.active = None;
        let whole = self
            .segments
            .iter()
            .take_while(|s| s.entries.last().is_some_and(|(last, _)| *last <= index))
            .count();
        for segment in self.segments.drain(..whole) {
            fs::remove_file(&segment.path)?;
        }
        Ok(())
    }

    /// The first index of each segment, oldest first.
    #[cfg(test)]
    fn first_indexes(&self) -> Vec<u64> {
        self.segments
            .iter()
            .filter_map(|s| segment_first_index(&s.path))
            .collect()
    }
}

/// Cuts a segment back to `len` bytes, durably.
fn cut(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

pub fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

fn segment_first_index(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn damaged(path: &Path, position: usize, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the controller's Raft log is damaged: {} at byte {position}: {reason}. \
             entries after it were acknowledged, so the node does not start; restore the \
             directory from a backup",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use rill_metadata::MetadataRecord;

    use super::*;
    use crate::types::{RecordBatch, log_id};

    fn entry(index: u64) -> Entry {
        let record = MetadataRecord::ClusterCreated {
            cluster_id: format!("cluster-{index}"),
        };
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(RecordBatch(vec![record])),
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index()).collect()
    }

    /// Four entries appended one call each into one segment; returns the
    /// segment's bytes and where its last entry starts.
    fn four_entries(dir: &Path) -> (Vec<u8>, usize) {
        let (mut segments, _) = Segments::open(dir).unwrap();
        for index in 1..=4 {
            segments.append(&[entry(index)]).unwrap();
        }
        let last_start = segments.segments[0].entries[3].1 as usize;
        (fs::read(dir.join(segment_name(1))).unwrap(), last_start)
    }

    #[test]
    fn reopen_reads_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (mut segments, entries) = Segments::open(dir.path()).unwrap();
        assert!(entries.is_empty());
        segments.append(&[entry(1), entry(2)]).unwrap();
        segments.append(&[entry(3)]).unwrap();
        drop(segments);
        let (_, entries) = Segments::open(dir.path()).unwrap();
        assert_eq!(indexes(&entries), [1, 2, 3]);
        assert_eq!(entries[2].payload, entry(3).payload);
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_byte_of_the_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (full, last_start) = four_entries(dir.path());
        let path = dir.path().join(segment_name(1));
        for len in last_start..full.len() {
            fs::write(&path, &full[..len]).unwrap();
            let (mut segments, entries) = Segments::open(dir.path()).unwrap();
            assert_eq!(indexes(&entries), [1, 2, 3], "cut at {len}");
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
            // Appends go on after the cut.
            segments.append(&[entry(4)]).unwrap();
            drop(segments);
            assert_eq!(fs::read(&path).unwrap(), full, "cut at {len}");
        }
    }

    #[test]
    fn a_flipped_byte_before_the_last_entry_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (full, last_start) = four_entries(dir.path());
        let path = dir.path().join(segment_name(1));
        for at in 0..last_start {
            let mut flipped = full.clone();
            flipped[at] ^= 0x20;
            fs::write(&path, &flipped).unwrap();
            let Err(error) = Segments::open(dir.path()) else {
                panic!("opened with byte {at} flipped");
            };
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains("is damaged"), "{error}");
            // Refused, not repaired.
            assert_eq!(fs::read(&path).unwrap(), flipped);
        }
    }

    #[test]
    fn a_torn_tail_before_a_later_segment_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut segments, _) = Segments::open(dir.path()).unwrap();
        segments.append(&[entry(1), entry(2)]).unwrap();
        segments.purge(0).unwrap();
        segments.append(&[entry(3)]).unwrap();
        assert_eq!(segments.first_indexes(), [1, 3]);
        drop(segments);
        let path = dir.path().join(segment_name(1));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let error = Segments::open(dir.path()).err().expect("refused");
        assert!(error.to_string().contains("is damaged"), "{error}");
    }

    #[test]
    fn truncation_and_purge_work_on_whole_entries_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut segments, _) = Segments::open(dir.path()).unwrap();
        segments.append(&[entry(1), entry(2), entry(3)]).unwrap();
        segments.purge(0).unwrap();
        segments.append(&[entry(4), entry(5)]).unwrap();
        segments.truncate_after(Some(2)).unwrap();
        assert_eq!(segments.first_indexes(), [1]);
        segments.append(&[entry(3)]).unwrap();
        drop(segments);
        let (mut segments, entries) = Segments::open(dir.path()).unwrap();
        assert_eq!(indexes(&entries), [1, 2, 3]);
        segments.purge(3).unwrap();
        assert!(segments.first_indexes().is_empty());
        segments.append(&[entry(4)]).unwrap();
        segments.truncate_after(None).unwrap();
        drop(segments);
        let (_, entries) = Segments::open(dir.path()).unwrap();
        assert!(entries.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
