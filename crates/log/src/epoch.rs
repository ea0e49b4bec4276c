//! The leader-epoch cache: for each leader epoch, the first offset written
//! in it. Followers use it (OffsetForLeaderEpoch) to find where their log
//! diverged from the leader's.
//!
//! Thread-safety: plain data, guarded by the owning log's lock.

use crate::types::Offset;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    /// Epochs strictly increasing, start offsets non-decreasing.
    entries: Vec<(i32, Offset)>,
}

impl LeaderEpochCache {
    /// Keeps only a well-ordered prefix of `entries` read from disk.
    pub(crate) fn from_entries(entries: Vec<(i32, Offset)>) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for (epoch, start) in entries {
            if !cache.assign(epoch, start) {
                break;
            }
        }
        cache
    }

    pub(crate) fn entries(&self) -> &[(i32, Offset)] {
        &self.entries
    }

    /// Records that `epoch` starts at `start`; returns whether anything
    /// changed. Older or equal epochs are ignored.
    pub(crate) fn assign(&mut self, epoch: i32, start: Offset) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(last_epoch, last_start)) if epoch <= last_epoch || start < last_start => false,
            _ => {
                self.entries.push((epoch, start));
                true
            }
        }
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `epoch` and the
    /// offset where the next epoch began (the log end for the latest epoch).
    /// `None` when `epoch` is newer than every known epoch or none is known.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end: Offset) -> Option<(i32, Offset)> {
        let &(latest, _) = self.entries.last()?;
        if epoch == latest {
            return Some((latest, log_end));
        }
        let higher = self.entries.iter().position(|&(e, _)| e > epoch)?;
        let end = self.entries[higher].1;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].0, end)),
            None => Some((epoch, end)),
        }
    }

    /// Forgets epochs that start at or after `end` (the log was truncated).
    pub(crate) fn truncate_from_end(&mut self, end: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < end);
        before != self.entries.len()
    }

    /// Moves the history's start up to `start` (the log start advanced).
    pub(crate) fn truncate_from_start(&mut self, start: Offset) -> bool {
        let floor = self.entries.iter().rposition(|&(_, s)| s <= start);
        match floor {
            Some(i) if i > 0 || self.entries[0].1 < start => {
                self.entries.drain(..i);
                self.entries[0].1 = start;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka() {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(1, Offset(0)));
        assert!(!c.assign(1, Offset(5)));
        assert!(c.assign(3, Offset(10)));
        assert!(c.assign(4, Offset(20)));
        assert_eq!(c.end_offset_for(4, Offset(30)), Some((4, Offset(30))));
        assert_eq!(c.end_offset_for(3, Offset(30)), Some((3, Offset(20))));
        assert_eq!(c.end_offset_for(2, Offset(30)), Some((1, Offset(10))));
        assert_eq!(c.end_offset_for(0, Offset(30)), Some((0, Offset(0))));
        assert_eq!(c.end_offset_for(5, Offset(30)), None);
        assert!(c.truncate_from_end(Offset(20)));
        assert_eq!(c.entries(), &[(1, Offset(0)), (3, Offset(10))]);
        assert!(c.truncate_from_start(Offset(12)));
        assert_eq!(c.entries(), &[(3, Offset(12))]);
        assert!(!c.truncate_from_start(Offset(12)));
    }
}
