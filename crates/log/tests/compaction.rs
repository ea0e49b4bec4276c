//! Log compaction: a property test against an in-memory map of the latest
//! value per key, crash tests at every step of a swap, and the cleaner's
//! rules (tombstones, keyless records, idempotent producers, compression).

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::slice_bytes;
use proptest::prelude::*;
use rill_log::{Log, LogConfig, LogError, Offset, OffsetMap, SwapStep};
use rill_records::batch::{BatchIter, Compression};
use rill_records::builder::BatchBuilder;
use rill_records::record::decode_batch;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 200,
        segment_index_bytes: 4096,
        cleanup_delete: false,
        cleanup_compact: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: DAY_MS,
        ..LogConfig::default()
    }
}

/// A write: a key and a value, `None` for a tombstone.
type Write = (u8, Option<u16>);

fn encode(writes: &[Write], compression: Compression) -> Vec<u8> {
    encode_at(writes, compression, 1_000)
}

fn encode_at(writes: &[Write], compression: Compression, timestamp_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(compression);
    for (key, value) in writes {
        builder
            .append(
                timestamp_ms,
                Some(Bytes::from(vec![b'k', *key])),
                value.map(|v| Bytes::from(format!("value-{v}-{}", "x".repeat(v as usize % 40)))),
                Vec::new(),
            )
            .expect("record fits");
    }
    builder.build().expect("batch builds")
}

/// Every record in the log: (offset, key, value), in the order read.
fn read_records(log: &Log) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let info = log.read(next, 4096, end).expect("read succeeds");
        if info.slices.is_empty() {
            break;
        }
        for slice in &info.slices {
            let bytes = slice_bytes(slice);
            for item in BatchIter::new(&bytes) {
                let (_, view) = item.expect("whole batches");
                let decoded = decode_batch(view.bytes(), 1 << 20).expect("served batches decode");
                for record in decoded.iter() {
                    out.push((
                        record.offset,
                        record.record.key.clone(),
                        record.record.value.clone(),
                    ));
                }
                assert!(view.next_offset() > next.0, "reads move forward");
                next = Offset(view.next_offset());
            }
        }
    }
    out
}

/// The model: every write by offset, and the latest offset per key.
#[derive(Default)]
struct Model {
    writes: BTreeMap<i64, Write>,
    latest: BTreeMap<u8, i64>,
}

impl Model {
    fn record(&mut self, base: i64, writes: &[Write]) {
        for (i, write) in writes.iter().enumerate() {
            let offset = base + i as i64;
            self.writes.insert(offset, *write);
            self.latest.insert(write.0, offset);
        }
    }

    /// What compaction promises: records come back at their original
    /// offsets with their original contents, in offset order, and every
    /// live key's latest value is there. Below `clean_end` a key appears at
    /// most once. A deleted key is absent or present as its tombstone.
    fn check(&self, log: &Log, clean_end: i64) -> Result<(), TestCaseError> {
        let records = read_records(log);
        let mut last_seen: BTreeMap<u8, i64> = BTreeMap::new();
        let mut clean_keys = std::collections::BTreeSet::new();
        let mut previous = -1;
        for (offset, key, value) in &records {
            prop_assert!(
                *offset > previous,
                "offsets increase: {} after {}",
                offset,
                previous
            );
            previous = *offset;
            let Some((want_key, want_value)) = self.writes.get(offset) else {
                return Err(TestCaseError::fail(format!(
                    "offset {offset} was never written"
                )));
            };
            let key = key.as_ref().expect("every record has a key");
            prop_assert_eq!(key.as_ref(), &[b'k', *want_key][..]);
            prop_assert_eq!(
                value.is_none(),
                want_value.is_none(),
                "tombstone at {}",
                offset
            );
            if *offset < clean_end {
                prop_assert!(
                    clean_keys.insert(*want_key),
                    "key {} twice below {}",
                    want_key,
                    clean_end
                );
            }
            last_seen.insert(*want_key, *offset);
        }
        for (key, latest) in &self.latest {
            let deleted = self.writes[latest].1.is_none();
            match last_seen.get(key) {
                Some(seen) => prop_assert_eq!(seen, latest, "key {} is not at its latest", key),
                None => prop_assert!(deleted, "live key {} is missing", key),
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Write>, u8),
    /// Clean; with `true` the clock is two days on, so tombstones expire.
    Clean(bool),
    CloseReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    let write = (0u8..12, prop::option::weighted(0.85, any::<u16>()));
    prop_oneof![
        8 => (prop::collection::vec(write, 1..8), 0u8..4).prop_map(|(w, c)| Op::Append(w, c)),
        3 => any::<bool>().prop_map(Op::Clean),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_exactly_the_latest_record_of_every_key(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = Log::open(&path, compacted()).unwrap();
        let mut model = Model::default();
        let mut map = OffsetMap::with_memory(0);
        let mut clean_end = 0;
        for op in ops {
            match op {
                Op::Append(writes, codec) => {
                    let compression = [
                        Compression::None,
                        Compression::Gzip,
                        Compression::Lz4,
                        Compression::Zstd,
                    ][codec as usize];
                    let info = log.append(&encode(&writes, compression), 0, now_ms()).unwrap();
                    model.record(info.base_offset.0, &writes);
                }
                Op::Clean(expire) => {
                    let now = now_ms() + if expire { 2 * DAY_MS } else { 0 };
                    if let Some(stats) = log.clean(now, &mut map, &mut |_| true).unwrap() {
                        clean_end = clean_end.max(stats.map_end.0);
                    }
                }
                Op::CloseReopen => {
                    log.close().unwrap();
                    drop(log);
                    log = Log::open(&path, compacted()).unwrap();
                }
                Op::CrashReopen => {
                    drop(log);
                    log = Log::open(&path, compacted()).unwrap();
                }
            }
            model.check(&log, clean_end)?;
        }
    }
}

/// A log of several segments where most records are overwritten.
fn overwritten_log(path: &std::path::Path) -> (Log, Model) {
    let log = Log::open(path, compacted()).unwrap();
    let mut model = Model::default();
    for round in 0..20u16 {
        let writes: Vec<Write> = (0..6u8)
            .map(|k| {
                (
                    k,
                    if round == 19 && k == 5 {
                        None
                    } else {
                        Some(round * 10 + u16::from(k))
                    },
                )
            })
            .collect();
        let info = log
            .append(&encode(&writes, Compression::None), 0, now_ms())
            .unwrap();
        model.record(info.base_offset.0, &writes);
    }
    assert!(log.segment_count() > 3, "the test needs several segments");
    (log, model)
}

fn leftover_files(path: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            [".swap", ".cleaned", ".tmp", ".deleted"]
                .iter()
                .any(|suffix| n.ends_with(suffix))
        })
        .collect()
}

#[test]
fn a_crash_at_any_step_of_a_swap_loses_no_live_key() {
    for stop_at in [
        SwapStep::Commit,
        SwapStep::DeleteReplaced,
        SwapStep::Rename,
        SwapStep::WriteIndexes,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let (log, model) = overwritten_log(&path);
        let before = log.size_bytes();
        let mut map = OffsetMap::with_memory(0);
        let mut proceed = |step: SwapStep| step != stop_at;
        log.clean_with(now_ms(), &mut map, &mut |_| true, &mut proceed)
            .unwrap();
        // Crash: no close, the process's state is gone.
        drop(log);
        let log = Log::open(&path, compacted()).unwrap();
        assert!(
            leftover_files(&path).is_empty(),
            "{stop_at:?}: {:?}",
            leftover_files(&path)
        );
        model
            .check(&log, 0)
            .unwrap_or_else(|e| panic!("after a crash before {stop_at:?}: {e}"));
        // A full clean afterwards still works and shrinks the log.
        let stats = log.clean(now_ms(), &mut map, &mut |_| true).unwrap();
        assert!(stats.is_some(), "{stop_at:?}");
        model.check(&log, stats.unwrap().map_end.0).unwrap();
        assert!(log.size_bytes() < before, "{stop_at:?}");
        // A finished swap leaves no replaced file behind.
        assert!(leftover_files(&path).is_empty(), "{stop_at:?}");
        log.close().unwrap();
    }
}

#[test]
fn an_interrupted_rewrite_is_discarded_and_a_stopped_clean_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let (log, model) = overwritten_log(&path);
    let mut map = OffsetMap::with_memory(0);
    let mut budget = 3;
    let result = log.clean(now_ms(), &mut map, &mut |_| {
        budget -= 1;
        budget > 0
    });
    assert!(matches!(result, Err(LogError::Closed { .. })), "{result:?}");
    model.check(&log, 0).unwrap();
    // A crash in the middle of writing a cleaned file leaves it behind.
    std::fs::write(
        path.join("00000000000000000000.log.cleaned"),
        b"half a segment",
    )
    .unwrap();
    drop(log);
    let log = Log::open(&path, compacted()).unwrap();
    assert!(leftover_files(&path).is_empty());
    model.check(&log, 0).unwrap();
}

#[test]
fn cleaning_rewrites_into_fewer_segments_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let (log, model) = overwritten_log(&path);
    let segments = log.segment_count();
    let mut map = OffsetMap::with_memory(0);
    let stats = log
        .clean(now_ms(), &mut map, &mut |_| true)
        .unwrap()
        .unwrap();
    assert!(stats.records_removed > 0);
    assert!(stats.segments_after < stats.segments_before);
    assert!(log.segment_count() < segments);
    assert!(stats.bytes_written < stats.bytes_read);
    model.check(&log, stats.map_end.0).unwrap();
    // The scrub accepts the gaps a clean leaves.
    let report = log.scrub(&mut |_| {}).unwrap();
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert!(report.segments_checked > 0);
    // Nothing new is dirty: a second clean has nothing to do.
    assert_eq!(log.clean(now_ms(), &mut map, &mut |_| true).unwrap(), None);
    let dirty = log.cleanable(now_ms()).unwrap().unwrap();
    assert_eq!(dirty.dirty_bytes, 0);
    assert!(!dirty.due);
    // The checkpoint survives a restart.
    log.close().unwrap();
    drop(log);
    let log = Log::open(&path, compacted()).unwrap();
    assert_eq!(log.clean(now_ms(), &mut map, &mut |_| true).unwrap(), None);
    model.check(&log, stats.map_end.0).unwrap();
}

#[test]
fn tombstones_go_only_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let (log, model) = overwritten_log(&path);
    let mut map = OffsetMap::with_memory(0);
    log.clean(now_ms(), &mut map, &mut |_| true)
        .unwrap()
        .unwrap();
    let has_tombstone = |log: &Log| read_records(log).iter().any(|(_, _, v)| v.is_none());
    assert!(has_tombstone(&log), "a fresh tombstone stays");
    // Two days later, with new dirty data to trigger a clean, it goes.
    let info = log
        .append(&encode(&[(0, Some(1)); 30], Compression::None), 0, now_ms())
        .unwrap();
    let mut model = model;
    model.record(info.base_offset.0, &[(0, Some(1)); 30]);
    log.append(&encode(&[(1, Some(2))], Compression::None), 0, now_ms())
        .map(|info| model.record(info.base_offset.0, &[(1, Some(2))]))
        .unwrap();
    let stats = log
        .clean(now_ms() + 2 * DAY_MS, &mut map, &mut |_| true)
        .unwrap()
        .unwrap();
    assert!(!has_tombstone(&log), "an expired tombstone goes");
    model.check(&log, stats.map_end.0).unwrap();
}

#[test]
fn a_log_with_delete_policy_is_not_cleaned_and_compaction_needs_no_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_compact: false,
        cleanup_delete: true,
        ..compacted()
    };
    let log = Log::open(&dir.path().join("t-0"), config).unwrap();
    for _ in 0..20 {
        log.append(&encode(&[(1, Some(1)); 5], Compression::None), 0, now_ms())
            .unwrap();
    }
    let mut map = OffsetMap::with_memory(0);
    assert_eq!(log.clean(now_ms(), &mut map, &mut |_| true).unwrap(), None);
    assert_eq!(log.cleanable(now_ms()).unwrap(), None);

    // compact alone: retention.ms does not delete old segments.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1,
        ..compacted()
    };
    let log = Log::open(&dir.path().join("t-0"), config).unwrap();
    for k in 0..20 {
        log.append(&encode(&[(k, Some(1)); 5], Compression::None), 0, now_ms())
            .unwrap();
    }
    let segments = log.segment_count();
    assert_eq!(log.apply_retention(now_ms() + DAY_MS).unwrap(), 0);
    assert_eq!(log.segment_count(), segments);
}

#[test]
fn an_idempotent_producers_compacted_batches_go_and_a_retry_is_still_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let log = Log::open(&path, compacted()).unwrap();
    let producer_batch = |key: u8, sequence: i32| {
        let mut builder = BatchBuilder::new(Compression::None).producer(7, 0, sequence);
        for _ in 0..3 {
            builder
                .append(
                    1_000,
                    Some(Bytes::from(vec![b'k', key])),
                    Some(Bytes::from_static(b"v")),
                    Vec::new(),
                )
                .unwrap();
        }
        builder.build().unwrap()
    };
    log.append(&producer_batch(1, 0), 0, now_ms()).unwrap();
    log.append(&producer_batch(1, 3), 0, now_ms()).unwrap();
    // Another writer supersedes key 1, then fills segments.
    for _ in 0..40 {
        log.append(&encode(&[(1, Some(9)); 4], Compression::None), 0, now_ms())
            .unwrap();
    }
    let mut map = OffsetMap::with_memory(0);
    log.clean(now_ms(), &mut map, &mut |_| true)
        .unwrap()
        .unwrap();
    // Both of the producer's batches are gone: no batch is ever left
    // without records (KafkaJS could not read past a run of them).
    let info = log.read(Offset(0), 1 << 20, log.log_end_offset()).unwrap();
    for slice in &info.slices {
        for item in BatchIter::new(&slice_bytes(slice)) {
            let (_, view) = item.unwrap();
            assert!(
                view.record_count() > 0,
                "an empty batch at {}",
                view.base_offset()
            );
            assert_ne!(view.producer_id(), 7);
        }
    }
    // The producer's state lives on in memory: a retry is still detected.
    let retry = log.append(&producer_batch(1, 3), 0, now_ms()).unwrap();
    assert_eq!(
        retry.base_offset,
        Offset(3),
        "a duplicate is acknowledged with its first offset"
    );
    assert_eq!(retry.record_count, 0);
}

#[test]
fn compaction_lags_hold_young_records_back_and_force_old_ones() {
    // min.compaction.lag.ms: nothing younger than a day is compacted.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let config = LogConfig {
        min_compaction_lag_ms: DAY_MS,
        ..compacted()
    };
    let log = Log::open(&path, config.clone()).unwrap();
    for _ in 0..20 {
        log.append(
            &encode_at(&[(1, Some(1)); 5], Compression::None, now_ms()),
            0,
            now_ms(),
        )
        .unwrap();
    }
    let mut map = OffsetMap::with_memory(0);
    assert_eq!(log.clean(now_ms(), &mut map, &mut |_| true).unwrap(), None);
    assert_eq!(log.cleanable(now_ms()).unwrap().unwrap().dirty_bytes, 0);
    // Two days on, the same records may go.
    let later = now_ms() + 2 * DAY_MS;
    assert!(log.cleanable(later).unwrap().unwrap().due);
    assert!(log.clean(later, &mut map, &mut |_| true).unwrap().is_some());

    // max.compaction.lag.ms: a log below its dirty ratio is still due once
    // its dirty records are older than the lag.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: 1.0,
        max_compaction_lag_ms: DAY_MS,
        ..compacted()
    };
    let log = Log::open(&dir.path().join("t-0"), config).unwrap();
    for _ in 0..20 {
        log.append(
            &encode_at(&[(1, Some(1)); 5], Compression::None, now_ms()),
            0,
            now_ms(),
        )
        .unwrap();
    }
    assert!(!log.cleanable(now_ms()).unwrap().unwrap().due);
    assert!(log.cleanable(now_ms() + 2 * DAY_MS).unwrap().unwrap().due);
}

/// What deletes a compacted log's segments while a clean reads them.
#[derive(Debug, Clone, Copy)]
enum Race {
    /// Retention (`compact,delete`) drops the two oldest segments.
    Retention,
    /// DeleteRecords moves the log start past the two oldest segments.
    DeleteRecords,
    /// The topic is deleted: its directory is renamed, then removed.
    TopicDeletion,
}

/// When, in the clean, the race happens.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// After the first batch the clean read into its key map: the next
    /// segments are not mapped yet.
    Mapping,
    /// After the first batch the clean rewrote: the group's later segments
    /// are not mapped yet.
    Rewriting,
}

/// The sizes of the log files in `dir`, oldest first.
fn log_file_sizes(dir: &std::path::Path) -> Vec<u64> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect()
}

/// A clean that loses a race to retention, DeleteRecords or topic deletion
/// skips the log this round: the data directory stays online, other logs
/// in it keep taking appends, and the next clean of a surviving log works.
#[test]
fn a_clean_whose_input_is_deleted_under_it_skips_the_log_and_the_directory_stays_online() {
    for race in [Race::Retention, Race::DeleteRecords, Race::TopicDeletion] {
        for phase in [Phase::Mapping, Phase::Rewriting] {
            clean_losing_a_race(race, phase);
        }
    }
}

fn clean_losing_a_race(race: Race, phase: Phase) {
    let what = format!("{race:?} while {phase:?}");
    let data = tempfile::tempdir().unwrap();
    let manager = rill_log::LogManager::open(data.path(), compacted()).unwrap();
    let other = manager.get_or_create("other", 0, compacted()).unwrap();
    let log = manager.get_or_create("t", 0, compacted()).unwrap();
    let path = log.dir().to_path_buf();
    let mut model = Model::default();
    for round in 0..20u16 {
        let writes: Vec<Write> = (0..6u8)
            .map(|k| (k, Some(round * 10 + u16::from(k))))
            .collect();
        let info = log
            .append(&encode(&writes, Compression::None), 0, now_ms())
            .unwrap();
        model.record(info.base_offset.0, &writes);
    }
    let sizes = log_file_sizes(&path);
    assert!(sizes.len() >= 5, "{what}: {} segments", sizes.len());
    // One group for all closed segments, so rewriting maps them one by one;
    // retention by size that keeps all but the two oldest.
    let keep = log.size_bytes() - sizes[0] - sizes[1];
    log.update_config(LogConfig {
        segment_bytes: 1 << 20,
        cleanup_delete: true,
        retention_bytes: i64::try_from(keep).unwrap(),
        // The records' timestamps are from 1970.
        retention_ms: -1,
        ..compacted()
    });
    let third_base = {
        // The base of the third segment, from its file name.
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        names.sort();
        names[2].trim_end_matches(".log").parse::<i64>().unwrap()
    };
    log.set_high_watermark(log.log_end_offset());
    let mut raced = false;
    let mut throttle = |_bytes: u64| {
        let rewriting = std::fs::read_dir(&path).is_ok_and(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .any(|n| n.ends_with(".cleaned"))
        });
        if !raced && rewriting == (phase == Phase::Rewriting) {
            raced = true;
            match race {
                Race::Retention => assert_eq!(log.apply_retention(now_ms()).unwrap(), 2),
                Race::DeleteRecords => {
                    log.delete_records_before(Offset(third_base)).unwrap();
                }
                Race::TopicDeletion => manager.delete("t", 0).unwrap(),
            }
        }
        true
    };
    let mut map = OffsetMap::with_memory(0);
    let result = log.clean_with(now_ms(), &mut map, &mut throttle, &mut |_| true);
    assert!(raced, "{what}: the race never ran");
    match race {
        // The log is gone: the clean stops however it notices.
        Race::TopicDeletion => assert!(
            matches!(result, Ok(None) | Err(LogError::Closed { .. })),
            "{what}: {result:?}"
        ),
        _ => assert!(matches!(result, Ok(None)), "{what}: {result:?}"),
    }
    // The data directory is online: another log takes appends.
    other
        .append(&encode(&[(1, Some(1))], Compression::None), 0, now_ms())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    other.flush().unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Race::TopicDeletion = race {
        // A new topic of the same name starts empty.
        let again = manager.get_or_create("t", 0, compacted()).unwrap();
        assert_eq!(again.log_end_offset(), Offset(0), "{what}");
        return;
    }
    assert_eq!(log.log_start_offset(), Offset(third_base), "{what}");
    // Nothing was swapped; the next clean works on what is left.
    let stats = log
        .clean(now_ms(), &mut map, &mut |_| true)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(stats.is_some(), "{what}");
    let records = read_records(&log);
    assert!(!records.is_empty());
    for (offset, key, _) in &records {
        assert!(*offset >= third_base, "{what}: {offset}");
        let (want_key, _) = model.writes[offset];
        assert_eq!(key.as_deref(), Some(&[b'k', want_key][..]), "{what}");
    }
    log.append(&encode(&[(1, Some(2))], Compression::None), 0, now_ms())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}
