//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the sequence ranges and offsets of its last five batches, so a
//! retried batch is recognised and answered with the offsets it got the
//! first time instead of being stored twice.
//!
//! Each roll writes the state to a snapshot file (`snapshot.rs`); the
//! state is rebuilt on the first append after an open from the newest
//! snapshot and the batch headers after it, or, in a log with no snapshot,
//! from the headers of its newest segments.
//!
//! Thread-safety: plain data, guarded by the owning log's lock. The
//! `impl Log` block at the end checks an append against the state and
//! rebuilds it from the log.

use std::collections::{HashMap, VecDeque};

use rill_records::batch::BatchView;

use crate::error::{AppendError, Fault};
use crate::log::Log;
use crate::segment::{ProducerFields, io_failure};
use crate::segments::State;
use crate::snapshot;
use crate::types::{AppendInfo, Offset};

/// Batches remembered per producer: Kafka keeps five because an idempotent
/// producer has at most five requests in flight per partition.
pub(crate) const BATCHES_PER_PRODUCER: usize = 5;
/// Producers remembered per partition; beyond this the one that wrote
/// least recently is forgotten, so a flood of producer ids cannot exhaust
/// memory (each entry is about 200 bytes).
pub(crate) const PRODUCERS_MAX: usize = 100_000;

/// Where a batch went when it was first appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchRecord {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: Offset,
    pub last_offset: Offset,
    pub log_append_time_ms: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
}

#[derive(Debug, Default)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

/// The last sequence of a batch; sequences wrap to 0 after `i32::MAX`.
fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(base_sequence) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// Whether a batch carries idempotent-producer fields.
pub(crate) fn is_idempotent(fields: &ProducerFields) -> bool {
    fields.producer_id >= 0 && fields.base_sequence >= 0
}

/// Why a batch's producer fields do not follow the producer's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceError {
    /// The batch is from an epoch older than the producer's current one: a
    /// zombie instance that a newer one has fenced.
    StaleEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// The batch does not start where the producer's last batch ended: an
    /// earlier batch was lost, so appending this one would leave a gap.
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
}

impl ProducerState {
    /// Checks that the idempotent batches of one append continue their
    /// producers' sequences, as Kafka does: the same epoch continues at the
    /// last sequence + 1, a newer epoch starts at 0, an older one is fenced.
    /// A producer with no remembered state is accepted at any sequence: its
    /// state may have aged out with old segments, and refusing it would
    /// fail a healthy producer. Duplicates are found before this check.
    pub(crate) fn check(&self, batches: &[ProducerFields]) -> Result<(), SequenceError> {
        // (producer id, epoch, last sequence) as this append moves them on;
        // an append holds few batches, so a list beats a map.
        let mut moved: Vec<(i64, i16, i32)> = Vec::new();
        for fields in batches.iter().filter(|f| is_idempotent(f)) {
            let id = fields.producer_id;
            let current = match moved.iter().find(|(p, _, _)| *p == id) {
                Some((_, epoch, last)) => Some((*epoch, Some(*last))),
                None => self
                    .producers
                    .get(&id)
                    .map(|entry| (entry.epoch, entry.batches.back().map(|b| b.last_sequence))),
            };
            if let Some((epoch, last)) = current {
                if fields.producer_epoch < epoch {
                    return Err(SequenceError::StaleEpoch {
                        producer_id: id,
                        epoch: fields.producer_epoch,
                        current: epoch,
                    });
                }
                let expected = if fields.producer_epoch > epoch {
                    Some(0)
                } else {
                    last.map(|last| if last == i32::MAX { 0 } else { last + 1 })
                };
                if let Some(expected) = expected
                    && fields.base_sequence != expected
                {
                    return Err(SequenceError::OutOfOrder {
                        producer_id: id,
                        expected,
                        received: fields.base_sequence,
                    });
                }
            }
            let last = last_sequence(fields.base_sequence, fields.last_offset_delta);
            match moved.iter_mut().find(|(p, _, _)| *p == id) {
                Some(entry) => *entry = (id, fields.producer_epoch, last),
                None => moved.push((id, fields.producer_epoch, last)),
            }
        }
        Ok(())
    }

    /// The first append of a batch identical in producer, epoch and
    /// sequences to `fields`, if it is among the producer's last five.
    pub(crate) fn find_duplicate(&self, fields: &ProducerFields) -> Option<BatchRecord> {
        if !is_idempotent(fields) {
            return None;
        }
        let entry = self.producers.get(&fields.producer_id)?;
        if entry.epoch != fields.producer_epoch {
            return None;
        }
        let last = last_sequence(fields.base_sequence, fields.last_offset_delta);
        entry
            .batches
            .iter()
            .find(|b| b.first_sequence == fields.base_sequence && b.last_sequence == last)
            .copied()
    }

    /// Remembers an appended batch. A newer epoch starts the producer's
    /// history afresh; a batch from an older epoch does not change it.
    pub(crate) fn record(&mut self, fields: &ProducerFields, first: Offset, last: Offset) {
        if !is_idempotent(fields) {
            return;
        }
        if !self.producers.contains_key(&fields.producer_id)
            && self.producers.len() >= PRODUCERS_MAX
        {
            self.forget_least_recent();
        }
        let entry = self.producers.entry(fields.producer_id).or_default();
        if fields.producer_epoch < entry.epoch {
            return;
        }
        if fields.producer_epoch > entry.epoch {
            entry.epoch = fields.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchRecord {
            first_sequence: fields.base_sequence,
            last_sequence: last_sequence(fields.base_sequence, fields.last_offset_delta),
            first_offset: first,
            last_offset: last,
            log_append_time_ms: fields.log_append_time_ms,
        });
        while entry.batches.len() > BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
    }

    fn forget_least_recent(&mut self) {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(_, e)| e.batches.back().map_or(Offset(i64::MIN), |b| b.last_offset))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }

    /// Every producer with its epoch and remembered batches, oldest first,
    /// in producer id order (so a snapshot of the same state has the same
    /// bytes).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (i64, i16, &VecDeque<BatchRecord>)> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        ids.into_iter().map(|id| {
            let entry = &self.producers[id];
            (*id, entry.epoch, &entry.batches)
        })
    }

    /// Puts back a producer as a snapshot recorded it.
    pub(crate) fn restore(&mut self, producer_id: i64, epoch: i16, batches: Vec<BatchRecord>) {
        let mut batches = VecDeque::from(batches);
        while batches.len() > BATCHES_PER_PRODUCER {
            batches.pop_front();
        }
        if self.producers.len() < PRODUCERS_MAX || self.producers.contains_key(&producer_id) {
            self.producers
                .insert(producer_id, ProducerEntry { epoch, batches });
        }
    }

    /// Forgets batches at or after `end` (the log was truncated there).
    pub(crate) fn truncate_from(&mut self, end: Offset) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < end);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }
}

/// The log's side of producer state: checking an append against it, and
/// rebuilding it from the log.
impl Log {
    /// Answers a retried batch of an idempotent producer with the offsets
    /// it got the first time, and refuses a stale epoch or a sequence out
    /// of order; `None` when the append goes ahead.
    pub(crate) fn check_producers(
        &self,
        state: &mut State,
        fields: &[ProducerFields],
    ) -> Result<Option<(AppendInfo, bool)>, AppendError> {
        if state.producers.is_none() {
            let rebuilt = self.rebuild_producer_state(state);
            state.producers = Some(self.guard(rebuilt)?);
        }
        let Some(producers) = &state.producers else {
            return Ok(None);
        };
        if let [only] = fields
            && let Some(original) = producers.find_duplicate(only)
        {
            // Kafka's answer to a retried batch: success, with the offsets
            // it got the first time, and nothing appended.
            tracing::debug!(
                dir = %self.dir.display(), producer_id = only.producer_id,
                sequence = only.base_sequence, offset = %original.first_offset,
                "duplicate batch from an idempotent producer"
            );
            // The original may still wait for its sync: the retry's answer
            // must not come before it is durable.
            let flush_due = state.config.flush_messages.is_some()
                && state.recovery_point <= original.last_offset;
            let info = AppendInfo {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                log_append_time_ms: original.log_append_time_ms,
                log_start_offset: state.log_start,
                record_count: 0,
            };
            return Ok(Some((info, flush_due)));
        }
        producers.check(fields).map_err(|error| match error {
            SequenceError::StaleEpoch {
                producer_id,
                epoch,
                current,
            } => AppendError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current,
            },
            SequenceError::OutOfOrder {
                producer_id,
                expected,
                received,
            } => AppendError::OutOfOrderSequence {
                producer_id,
                expected,
                received,
            },
        })?;
        Ok(None)
    }

    /// Rebuilds producer state: from the newest snapshot at or below the log
    /// end and the batch headers after it, or, in a log with no readable
    /// snapshot (one written before snapshots existed), from the headers of
    /// the two newest segments, which hold a producer's recent batches
    /// unless a roll happened between a batch and its retry.
    pub(crate) fn rebuild_producer_state(&self, state: &State) -> Result<ProducerState, Fault> {
        const SEGMENTS: usize = 2;
        let loaded = snapshot::load_newest(&self.dir, state.log_end)
            .map_err(io_failure("read producer snapshots in", &self.dir))?;
        let (from, mut producers) = match loaded {
            Some((offset, producers)) => (offset, producers),
            None => {
                let from = state
                    .segments
                    .values()
                    .nth_back(SEGMENTS - 1)
                    .or(state.segments.values().next());
                (from.map_or(Offset(0), |s| s.base), ProducerState::default())
            }
        };
        // The segments holding batches at or after `from`.
        let first = state
            .segments
            .range(..=from)
            .next_back()
            .map_or(from, |(base, _)| *base);
        for segment in state.segments.range(first..).map(|(_, s)| s) {
            let size = segment.size;
            self.with_loaded(state, segment, |loaded| {
                let mut position = 0;
                while position < size {
                    let header = segment.header_at(&loaded.file, position, size)?;
                    if header.base >= from {
                        producers.record(&header.producer, header.base, header.last);
                    }
                    position += header.len;
                }
                Ok(())
            })?;
        }
        Ok(producers)
    }
}

pub(crate) fn producer_fields(view: &BatchView<'_>) -> ProducerFields {
    ProducerFields {
        producer_id: view.producer_id(),
        producer_epoch: view.producer_epoch(),
        base_sequence: view.base_sequence(),
        last_offset_delta: view.last_offset_delta(),
        log_append_time_ms: -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_must_continue_and_old_epochs_are_fenced() {
        let mut state = ProducerState::default();
        // Unknown producers are accepted at any sequence.
        assert_eq!(state.check(&[fields(1, 0, 40, 4)]), Ok(()));
        state.record(&fields(1, 0, 0, 4), Offset(0), Offset(4));
        assert_eq!(state.check(&[fields(1, 0, 5, 0)]), Ok(()));
        // Two batches of one append continue each other.
        assert_eq!(
            state.check(&[fields(1, 0, 5, 1), fields(1, 0, 7, 0)]),
            Ok(())
        );
        assert_eq!(
            state.check(&[fields(1, 0, 5, 1), fields(1, 0, 8, 0)]),
            Err(SequenceError::OutOfOrder {
                producer_id: 1,
                expected: 7,
                received: 8
            })
        );
        assert_eq!(
            state.check(&[fields(1, 0, 6, 0)]),
            Err(SequenceError::OutOfOrder {
                producer_id: 1,
                expected: 5,
                received: 6
            })
        );
        // A new epoch starts at 0; then the old epoch is fenced.
        assert!(state.check(&[fields(1, 1, 3, 0)]).is_err());
        state.record(&fields(1, 1, 0, 0), Offset(5), Offset(5));
        assert_eq!(
            state.check(&[fields(1, 0, 5, 0)]),
            Err(SequenceError::StaleEpoch {
                producer_id: 1,
                epoch: 0,
                current: 1
            })
        );
        // Sequences wrap after i32::MAX.
        state.record(&fields(2, 0, i32::MAX - 1, 1), Offset(6), Offset(7));
        assert_eq!(state.check(&[fields(2, 0, 0, 0)]), Ok(()));
        // Batches without producer fields are not checked.
        assert_eq!(state.check(&[fields(-1, -1, -1, 0)]), Ok(()));
    }

    fn fields(producer_id: i64, epoch: i16, base_sequence: i32, delta: i32) -> ProducerFields {
        ProducerFields {
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            last_offset_delta: delta,
            log_append_time_ms: -1,
        }
    }

    #[test]
    fn remembers_the_last_five_batches_per_epoch() {
        let mut state = ProducerState::default();
        for i in 0..6 {
            state.record(
                &fields(7, 0, i * 2, 1),
                Offset(i64::from(i) * 2),
                Offset(i64::from(i) * 2 + 1),
            );
        }
        assert_eq!(
            state.find_duplicate(&fields(7, 0, 0, 1)),
            None,
            "sixth batch pushed it out"
        );
        let dup = state.find_duplicate(&fields(7, 0, 2, 1)).unwrap();
        assert_eq!((dup.first_offset, dup.last_offset), (Offset(2), Offset(3)));
        assert_eq!(
            state.find_duplicate(&fields(7, 0, 2, 2)),
            None,
            "other range"
        );
        assert_eq!(
            state.find_duplicate(&fields(7, 1, 2, 1)),
            None,
            "other epoch"
        );
        assert_eq!(
            state.find_duplicate(&fields(-1, 0, 2, 1)),
            None,
            "not idempotent"
        );
        state.record(&fields(7, 1, 0, 0), Offset(20), Offset(20));
        assert_eq!(
            state.find_duplicate(&fields(7, 0, 10, 1)),
            None,
            "new epoch resets"
        );
        state.truncate_from(Offset(20));
        assert_eq!(
            state.find_duplicate(&fields(7, 1, 0, 0)),
            None,
            "truncated away"
        );
        assert_eq!(last_sequence(i32::MAX, 2), 1, "sequences wrap");
    }
}
