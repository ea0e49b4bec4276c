//! Behaviour of one partition log that a user of the broker would notice.

mod common;

use common::{active_segment, batch, read_all, slice_bytes, view, without_rewritten};
use rill_log::{AppendError, Log, LogConfig, Offset, Position, ReadError, TimestampType};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

#[test]
fn appended_batches_read_back_verbatim_with_assigned_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut sent = Vec::new();
    for i in 0..50 {
        let b = batch(1 + i % 4, 40, 1_000 + i as i64);
        let info = log.append(&b, 3, 5_000).unwrap();
        assert_eq!(
            info.last_offset.0 - info.base_offset.0 + 1,
            (1 + i % 4) as i64
        );
        assert_eq!(info.log_append_time_ms, -1);
        sent.push((info.base_offset.0, b));
    }
    assert!(log.segment_count() > 1, "4 KiB segments must have rolled");
    let got = read_all(&log, Offset(0));
    assert_eq!(got.len(), sent.len());
    for ((offset, want), (got_offset, got)) in sent.iter().zip(&got) {
        assert_eq!(offset, got_offset);
        assert_eq!(without_rewritten(want), without_rewritten(got));
        assert_eq!(view(got).partition_leader_epoch(), 3);
    }
    assert_eq!(log.end_offset_for_epoch(3), Some((3, log.log_end_offset())));
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut input = batch(3, 10, 1);
    input.extend_from_slice(&batch(2, 10, 2));
    let info = log.append(&input, 0, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (Offset(0), Offset(4)));
    assert_eq!(info.record_count, 5);
    let got = read_all(&log, Offset(0));
    assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![0, 3]);
}

#[test]
fn an_invalid_batch_rejects_the_whole_append_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.append(&batch(1, 10, 1), 0, 0).unwrap();
    let mut bad = batch(2, 10, 1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut input = batch(1, 10, 1);
    input.extend_from_slice(&bad);
    let err = log.append(&input, 0, 0).unwrap_err();
    assert!(
        matches!(err, AppendError::InvalidBatch { index: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("CRC32C"), "{err}");
    let torn = &batch(1, 10, 1)[..30];
    assert!(matches!(
        log.append(torn, 0, 0),
        Err(AppendError::InvalidBatch { .. })
    ));
    assert!(matches!(log.append(&[], 0, 0), Err(AppendError::Empty)));
    let big = batch(1, 2_000, 1);
    let tight = LogConfig {
        max_message_bytes: 1_000,
        ..small_config()
    };
    log.update_config(tight);
    assert!(matches!(
        log.append(&big, 0, 0),
        Err(AppendError::TooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(1));
    assert_eq!(read_all(&log, Offset(0)).len(), 1);
}

#[test]
fn reads_respect_byte_limit_but_return_at_least_one_batch_and_stop_at_max_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 100,
            ..small_config()
        },
    )
    .unwrap();
    let one = batch(1, 300, 1);
    for _ in 0..10 {
        log.append(&one, 0, 0).unwrap();
    }
    let len = one.len() as u32;
    let info = log.read(Offset(0), 1, Offset(10)).unwrap();
    assert_eq!(
        info.bytes(),
        u64::from(len),
        "one whole batch even when it exceeds the limit"
    );
    assert_eq!(info.next_offset, Some(Offset(1)));
    let info = log.read(Offset(2), 3 * len + len / 2, Offset(10)).unwrap();
    assert_eq!(info.bytes(), u64::from(3 * len), "only whole batches");
    assert_eq!(view(&slice_bytes(&info.slices[0])).base_offset(), 2);
    assert_eq!(info.next_offset, Some(Offset(5)));
    let info = log.read(Offset(2), u32::MAX, Offset(5)).unwrap();
    assert_eq!(
        info.bytes(),
        u64::from(3 * len),
        "nothing at or past max_offset"
    );
    assert_eq!(info.next_offset, Some(Offset(5)));
    let info = log.read(Offset(7), u32::MAX, Offset(10)).unwrap();
    assert_eq!(info.next_offset, Some(Offset(10)), "to the log end");
    assert_eq!(
        log.read(Offset(10), 100, Offset(10)).unwrap().next_offset,
        None
    );
    assert!(
        log.read(Offset(5), 100, Offset(5))
            .unwrap()
            .slices
            .is_empty()
    );
    assert!(
        log.read(Offset(10), 100, Offset(10))
            .unwrap()
            .slices
            .is_empty()
    );
    assert!(matches!(
        log.read(Offset(11), 100, Offset(11)),
        Err(ReadError::OffsetOutOfRange {
            requested: Offset(11),
            ..
        })
    ));
}

#[test]
fn reading_inside_a_batch_returns_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.append(&batch(5, 10, 1), 0, 0).unwrap();
    log.append(&batch(5, 10, 1), 0, 0).unwrap();
    let info = log.read(Offset(7), 1, Offset(10)).unwrap();
    assert_eq!(view(&slice_bytes(&info.slices[0])).base_offset(), 5);
}

#[test]
fn offset_for_timestamp_finds_the_first_batch_reaching_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for i in 0..100i64 {
        log.append(&batch(2, 30, 1_000 + 10 * i), 0, 0).unwrap();
    }
    // Batch i covers timestamps 1000+10i and 1000+10i+1, offsets 2i, 2i+1.
    assert_eq!(
        log.offset_for_timestamp(0).unwrap(),
        Some((Offset(0), 1_001))
    );
    assert_eq!(
        log.offset_for_timestamp(1_501).unwrap(),
        Some((Offset(100), 1_501))
    );
    assert_eq!(
        log.offset_for_timestamp(1_502).unwrap(),
        Some((Offset(102), 1_511))
    );
    assert_eq!(log.offset_for_timestamp(5_000).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((Offset(199), 1_991)));
}

#[test]
fn log_append_time_is_stamped_and_the_crc_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    let info = log.append(&batch(3, 10, 5), 0, 777_000).unwrap();
    assert_eq!(info.log_append_time_ms, 777_000);
    let got = read_all(&log, Offset(0));
    let v = view(&got[0].1);
    assert_eq!(v.max_timestamp(), 777_000);
    assert_eq!(v.timestamp_type(), TimestampType::LogAppendTime);
}

#[test]
fn retention_by_size_and_time_and_delete_records_move_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for i in 0..100i64 {
        log.append(&batch(1, 200, 1_000 + i), 0, 0).unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 4);
    log.update_config(LogConfig {
        retention_bytes: 8_000,
        ..small_config()
    });
    let deleted = log.apply_retention(10_000).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 8_000 + 4_096);
    // The dropped segments' files are gone from the disk, not only from
    // the map (renamed under the lock, unlinked after it), but for the
    // newest one's log file, kept for the next roll.
    assert_eq!(files_ending(dir.path(), ".log").len(), log.segment_count());
    let left = files_ending(dir.path(), ".deleted");
    if file_reuse_possible() {
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].ends_with(".log.deleted"));
    } else {
        assert_eq!(left, Vec::<String>::new());
    }
    let start = log.log_start_offset();
    assert!(start > Offset(0));
    assert!(matches!(
        log.read(Offset(0), 100, Offset(100)),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        read_all(&log, start).first().map(|(o, _)| *o),
        Some(start.0)
    );

    log.update_config(LogConfig {
        retention_ms: 1_000,
        ..small_config()
    });
    assert_eq!(
        log.apply_retention(1_500).unwrap(),
        0,
        "nothing older than 1 s yet"
    );
    log.apply_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1, "every closed segment expired");

    log.set_high_watermark(log.log_end_offset());
    let new_start = log.delete_records_before(Offset(99)).unwrap();
    assert_eq!(new_start, Offset(99));
    assert_eq!(files_ending(dir.path(), ".log").len(), log.segment_count());
    assert_eq!(files_ending(dir.path(), ".deleted"), left, "only the spare");
    assert_eq!(read_all(&log, Offset(99)).len(), 1);
    assert!(
        log.delete_records_before(Offset(101)).is_err(),
        "beyond the high watermark"
    );
    drop(log);
    // A crash between the rename and the unlink leaves `*.deleted` files;
    // the next open removes them and serves nothing from them.
    let leftover = dir.path().join("00000000000000000000.log.deleted");
    std::fs::write(&leftover, b"a deleted segment").unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(
        log.log_start_offset(),
        Offset(99),
        "the log start is durable"
    );
    assert!(!leftover.exists());
}

#[test]
fn truncate_to_cuts_the_tail_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for i in 0..60i64 {
        log.append(&batch(2, 100, i), i32::try_from(i / 20).unwrap(), 0)
            .unwrap();
    }
    let segments_before = log.segment_count();
    log.truncate_to(Offset(31)).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(30),
        "the batch holding 31 starts at 30"
    );
    // The dropped segments' files are gone when the call returns (renamed
    // under the lock, unlinked after it).
    assert!(log.segment_count() < segments_before);
    assert_eq!(files_ending(dir.path(), ".log").len(), log.segment_count());
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
    assert_eq!(read_all(&log, Offset(0)).len(), 15);
    assert_eq!(
        log.end_offset_for_epoch(0),
        Some((0, Offset(30))),
        "epoch 1 began at 40"
    );
    let info = log.append(&batch(1, 10, 1), 5, 0).unwrap();
    assert_eq!(info.base_offset, Offset(30));
    log.truncate_to(Offset(0)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(files_ending(dir.path(), ".log").len(), 1);
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
    assert_eq!(
        log.append(&batch(1, 10, 1), 6, 0).unwrap().base_offset,
        Offset(0)
    );
}

#[test]
fn close_and_reopen_keeps_everything_and_missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for i in 0..80i64 {
        log.append(&batch(1 + (i as usize % 3), 60, i), 1, 0)
            .unwrap();
    }
    let before = read_all(&log, Offset(0));
    let end = log.log_end_offset();
    log.close().unwrap();
    assert!(
        matches!(
            log.append(&batch(1, 1, 1), 1, 0),
            Err(AppendError::Closed { .. })
        ),
        "closed logs refuse appends"
    );
    drop(log);
    // Delete one index and garble another: both must be rebuilt.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".index"))
        .collect();
    names.sort();
    std::fs::remove_file(dir.path().join(&names[0])).unwrap();
    std::fs::write(dir.path().join(&names[1]), [0xff; 16]).unwrap();
    // Zeros behind the entries (what an OS crash could leave of an older
    // version's preallocated index) are found out of order.
    let untrimmed = dir.path().join(&names[2]);
    let mut bytes = std::fs::read(&untrimmed).unwrap();
    assert!(bytes.len() >= 16, "the third segment's index has entries");
    bytes.resize(bytes.len() + 4096, 0);
    std::fs::write(&untrimmed, &bytes).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, Offset(0)), before);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, end)));
}

/// Retention shrinks a deleted segment a step at a time before its unlink,
/// so the page cache is not freed in one long system call, but never a
/// segment a fetch is still sending from.
#[test]
fn retention_shrinks_an_unread_segment_before_unlinking_it_but_not_one_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 10 << 20,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    // 64 KiB batches: three closed segments of ~10 MiB, more than two steps
    // each, and the active one.
    for i in 0..(32 * 16) {
        log.append(&batch(1, 64 << 10, i), 0, 0).unwrap();
    }
    let segments = log.segment_count();
    assert!(segments >= 4, "{segments} segments");
    let names = files_ending(dir.path(), ".log");
    let end = log.log_end_offset();
    // A fetch being sent holds the first segment's file.
    let held = log.read(Offset(0), 1 << 20, end).unwrap().slices.remove(0);
    let held_len = held.file.metadata().unwrap().len();
    let held_bytes = slice_bytes(&held);
    // The second segment is open here, outside the log: the log sees no
    // reader of it.
    let outside = std::fs::File::open(dir.path().join(&names[1])).unwrap();
    assert!(outside.metadata().unwrap().len() > 8 << 20);

    log.update_config(LogConfig {
        retention_bytes: 1,
        ..config
    });
    assert_eq!(log.apply_retention(0).unwrap(), segments - 1);
    assert_eq!(log.segment_count(), 1);
    // The newest deleted log file is kept for the next roll; the others
    // are gone.
    let spare = if file_reuse_possible() {
        vec![format!("{}.deleted", names[segments - 2])]
    } else {
        Vec::new()
    };
    assert_eq!(files_ending(dir.path(), ".deleted"), spare);
    assert_eq!(held.file.metadata().unwrap().len(), held_len);
    assert_eq!(
        slice_bytes(&held),
        held_bytes,
        "the fetch still reads it whole"
    );
    assert!(
        outside.metadata().unwrap().len() <= 4 << 20,
        "shrunk to less than a step before the unlink"
    );
}

fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The active segment's index entries are kept in memory: its index files
/// are written when it rolls (and a flush syncs them) or when the log
/// closes, and a truncation inside it keeps them.
#[test]
fn index_files_are_written_at_roll_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(files_ending(dir.path(), ".log").len(), 1);
    assert!(
        files_ending(dir.path(), "index").is_empty(),
        "a new segment has no index files yet"
    );
    let mut i = 0i64;
    while files_ending(dir.path(), ".log").len() < 2 {
        log.append(&batch(1, 60, i), 0, 0).unwrap();
        i += 1;
    }
    let closed = files_ending(dir.path(), ".index");
    assert_eq!(closed.len(), 1, "only the rolled segment has its index");
    let len = std::fs::metadata(dir.path().join(&closed[0]))
        .unwrap()
        .len();
    assert!(len >= 8 && len.is_multiple_of(8), "{len} bytes of entries");
    assert_eq!(files_ending(dir.path(), ".timeindex").len(), 1);

    assert!(log.recovery_point() < log.log_end_offset());
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), log.log_end_offset());

    // Give the active segment index entries, then cut inside it.
    let active_base = Offset(
        files_ending(dir.path(), ".log")[1]
            .trim_end_matches(".log")
            .parse()
            .unwrap(),
    );
    for _ in 0..20 {
        log.append(&batch(1, 60, i), 0, 0).unwrap();
        i += 1;
    }
    let cut = Offset(active_base.0 + 12);
    log.truncate_to(cut).unwrap();
    assert_eq!(log.log_end_offset(), cut);
    let before = read_all(&log, Offset(0));
    log.close().unwrap();
    drop(log);
    let index = files_ending(dir.path(), ".index");
    assert_eq!(index.len(), 2, "close wrote the active segment's index");
    let entries = std::fs::read(dir.path().join(&index[1])).unwrap();
    assert!(
        !entries.is_empty(),
        "the truncation kept the entries below the cut"
    );
    for entry in entries.chunks(8) {
        let relative = u32::from_be_bytes(entry[..4].try_into().unwrap());
        assert!(
            i64::from(relative) < cut.0 - active_base.0,
            "entry past the cut"
        );
    }
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, Offset(0)), before);
}

#[test]
fn scrub_fences_off_a_rotten_batch_in_a_closed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for i in 0..40i64 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let first = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).unwrap();
    let second_batch = batch(1, 200, 0).len();
    bytes[second_batch + 100] ^= 0x10;
    std::fs::write(&first, &bytes).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let report = log.scrub(&mut |_| {}).unwrap();
    assert_eq!(report.corrupt.len(), 1);
    assert!(rill_log::corrupt_batches_total() >= 1);
    let info = log.read(Offset(0), u32::MAX, Offset(40)).unwrap();
    assert_eq!(
        info.bytes(),
        second_batch as u64,
        "only the batch before the rot"
    );
    assert!(matches!(
        log.read(Offset(1), 100, Offset(40)),
        Err(ReadError::Corrupt(_))
    ));
}

/// Batches real clients wrote (kafka-python with every codec, librdkafka
/// through confluent-kafka and kcat; fixtures kept by the records crate) are
/// accepted, stored and read back byte for byte except the base offset and
/// leader epoch the log rewrites.
#[test]
fn real_client_batches_are_stored_verbatim() {
    const FIXTURES: [&[u8]; 11] = [
        include_bytes!("../../records/tests/fixtures/librdkafka-none.bin"),
        include_bytes!("../../records/tests/fixtures/librdkafka-gzip.bin"),
        include_bytes!("../../records/tests/fixtures/librdkafka-snappy.bin"),
        include_bytes!("../../records/tests/fixtures/librdkafka-zstd.bin"),
        include_bytes!("../../records/tests/fixtures/kcat-small.bin"),
        include_bytes!("../../records/tests/fixtures/kafka-python-none.bin"),
        include_bytes!("../../records/tests/fixtures/kafka-python-gzip.bin"),
        include_bytes!("../../records/tests/fixtures/kafka-python-snappy.bin"),
        include_bytes!("../../records/tests/fixtures/kafka-python-snappy-raw.bin"),
        include_bytes!("../../records/tests/fixtures/kafka-python-lz4.bin"),
        include_bytes!("../../records/tests/fixtures/kafka-python-zstd.bin"),
    ];
    // The fixtures share one producer id, epoch and sequence, so in one log
    // the later ones would be answered as retries of the first: one log each.
    for fixture in FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small_config()).unwrap();
        let info = log.append(fixture, 4, 0).unwrap();
        assert_eq!(info.base_offset, Offset(0));
        let got = read_all(&log, Offset(0));
        assert_eq!(got.len(), 1);
        let stored = &got[0].1;
        assert_eq!(stored.len(), fixture.len());
        assert_eq!(stored[8..12], fixture[8..12], "length untouched");
        assert_eq!(
            stored[16..],
            fixture[16..],
            "everything after the epoch untouched"
        );
        assert_eq!(view(stored).partition_leader_epoch(), 4);
        let retry = log.append(fixture, 4, 0).unwrap();
        if view(fixture).producer_id() >= 0 {
            assert_eq!(
                (retry.base_offset, retry.record_count),
                (Offset(0), 0),
                "an idempotent producer's retry"
            );
        } else {
            // Without a producer id nothing tells a retry from new data.
            assert_eq!(retry.base_offset, Offset(info.last_offset.0 + 1));
        }
    }
}

/// The periodic checkpoint rewrites a partition's files only when what they
/// hold changed: idle partitions cost nothing (at 10,000 partitions a pass
/// rewrote 30,000 files).
#[test]
fn checkpoint_rewrites_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.append(&batch(2, 10, 1), 0, 0).unwrap();
    log.flush().unwrap();
    log.checkpoint().unwrap();
    let file = dir.path().join("recovery-point-offset-checkpoint");
    assert!(file.exists());
    std::fs::remove_file(&file).unwrap();
    // Nothing changed: nothing written.
    log.checkpoint().unwrap();
    assert!(!file.exists());
    // The recovery point moved: written again, with the new value.
    log.append(&batch(1, 10, 2), 0, 0).unwrap();
    log.flush().unwrap();
    log.checkpoint().unwrap();
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().last(), Some("3"), "{written}");
}

/// Bytes a file holds allocated beyond its length, rounded to pages.
fn allocated_beyond(path: &std::path::Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.blocks() * 512) as i64 - meta.len().next_multiple_of(4096) as i64
}

/// Whether the file system under `dir` reserves blocks past a file's end.
fn reserves_blocks(dir: &std::path::Path) -> bool {
    let path = dir.join("probe");
    let file = std::fs::File::create(&path).unwrap();
    let flags = rustix::fs::FallocateFlags::KEEP_SIZE;
    let ok = rustix::fs::fallocate(&file, flags, 0, 1 << 20).is_ok();
    let reserved = ok && allocated_beyond(&path) >= 1 << 20;
    std::fs::remove_file(&path).unwrap();
    reserved
}

/// A busy active segment reserves blocks ahead of its appends (the file's
/// length still ends at the last batch); a roll, a clean close and a reopen
/// after a crash each give them back, and every batch reads back intact.
#[test]
fn blocks_reserved_ahead_of_appends_are_given_back() {
    const MIB: u64 = 1 << 20;
    const HELD: i64 = 512 << 10;
    const NONE: i64 = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("p-0");
    let config = LogConfig {
        segment_bytes: 12 * MIB,
        segment_ms: 60_000,
        ..LogConfig::default()
    };
    let b = batch(78, 200, 1_000);
    // A segment starts reserving at 8 MiB (an eighth of it is 1 MiB): fill
    // the active one to there, then one more append reserves.
    let fill_to_reserve = |log: &Log| {
        while std::fs::metadata(active_segment(&data)).unwrap().len() < 8 * MIB {
            log.append(&b, 0, 5_000).unwrap();
        }
        log.append(&b, 0, 5_000).unwrap();
    };
    let reserving = reserves_blocks(dir.path());
    if !reserving {
        eprintln!("this file system does not reserve blocks: checking only that nothing changes");
    }

    let log = Log::open(&data, config.clone()).unwrap();
    fill_to_reserve(&log);
    let first = active_segment(&data);
    assert_eq!(
        std::fs::metadata(&first).unwrap().len() % b.len() as u64,
        0,
        "the length ends at the last batch"
    );
    if reserving {
        assert!(allocated_beyond(&first) >= HELD);
    }
    // Rolling (here by age, with the reserve held) gives the closed
    // segment's reserve back.
    log.append(&b, 0, 120_000).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert!(allocated_beyond(&first) < NONE);
    // A crash (drop without close) leaves the new segment's reserve; the
    // reopen gives it back.
    fill_to_reserve(&log);
    let second = active_segment(&data);
    assert_ne!(second, first);
    if reserving {
        assert!(allocated_beyond(&second) >= HELD);
    }
    let end = log.log_end_offset();
    drop(log);
    let log = Log::open(&data, config.clone()).unwrap();
    assert!(allocated_beyond(&second) < NONE);
    assert_eq!(log.log_end_offset(), end);
    // The reopened segment reserves again; a clean close gives it back.
    log.append(&b, 0, 5_000).unwrap();
    if reserving {
        assert!(allocated_beyond(&second) >= HELD);
    }
    let end = log.log_end_offset();
    log.close().unwrap();
    assert!(allocated_beyond(&second) < NONE);

    let log = Log::open(&data, config).unwrap();
    let all = read_all(&log, Offset(0));
    assert_eq!(all.len() as i64 * 78, end.0);
    for (base, bytes) in &all {
        assert_eq!(
            without_rewritten(bytes),
            without_rewritten(&b),
            "batch at {base}"
        );
    }
}

/// The scrub reads a segment in whole chunks (O_DIRECT on this file system,
/// through the page cache where that is refused), not a read per batch:
/// thousands of one-record batches and batches larger than a chunk, with
/// one rotten batch past the first chunk, found at the same place both ways.
#[test]
fn scrub_reads_whole_chunks_with_and_without_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        // The first segment closes after about 6 MiB; the scrub reads it.
        segment_bytes: 6 << 20,
        max_message_bytes: 4 << 20,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    let mut rotten_at = 0;
    for i in 0..6000i64 {
        // Two batches larger than the 1 MiB chunk among the small ones.
        let b = match i {
            1000 => batch(9, 300 * 1024, i),
            3000 => batch(1, 2_500_000, i),
            _ => batch(1, 200, i),
        };
        let info = log.append(&b, 0, 0).unwrap();
        if i == 2000 {
            rotten_at = log.size_bytes() - b.len() as u64;
        }
        assert_eq!(info.record_count, if i == 1000 { 9 } else { 1 });
    }
    log.close().unwrap();
    drop(log);
    let first = dir.path().join("00000000000000000000.log");
    let size = std::fs::metadata(&first).unwrap().len();
    assert!(size > 4 << 20, "{size}");

    // Clean: one throttle call per chunk read, about the segment's size.
    let log = Log::open(dir.path(), config.clone()).unwrap();
    let (mut calls, mut bytes) = (0u64, 0u64);
    let report = log
        .scrub(&mut |read| {
            calls += 1;
            bytes += read;
        })
        .unwrap();
    assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
    assert_eq!(report.bytes_checked, size);
    assert!(
        calls <= size / (1 << 20) + 4,
        "{calls} reads for {size} bytes"
    );
    assert!(
        bytes >= size && bytes < size + (64 << 10),
        "{bytes} read for {size}"
    );
    assert_eq!(
        rill_log::scrub_file_buffered(&first, Offset(0), size, Offset(0)).unwrap(),
        None
    );
    log.close().unwrap();
    drop(log);

    let mut data = std::fs::read(&first).unwrap();
    data[rotten_at as usize + 120] ^= 0x01;
    std::fs::write(&first, &data).unwrap();
    let log = Log::open(dir.path(), config).unwrap();
    let report = log.scrub(&mut |_| {}).unwrap();
    assert_eq!(report.corrupt, vec![(Offset(0), Position(rotten_at))]);
    let buffered = rill_log::scrub_file_buffered(&first, Offset(0), size, Offset(0)).unwrap();
    assert_eq!(buffered.map(|(at, _)| at), Some(Position(rotten_at)));
}

/// Whether the log can tell a file's pages are all cached (`cachestat`,
/// Linux 6.5 on x86-64 and arm64), which reusing a deleted segment's file
/// needs: without it every roll creates a file, as the tests below check.
fn file_reuse_possible() -> bool {
    let supported_arch = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    supported_arch && version >= (6, 5)
}

fn retained_config() -> LogConfig {
    LogConfig {
        retention_bytes: 3 * 4096,
        ..small_config()
    }
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// Appends `count` batches from `from`, returning what the log should hold
/// for each (offset, bytes without rewritten fields), and every file that
/// held a segment (name, inode).
fn append_noting_files(
    log: &Log,
    dir: &std::path::Path,
    from: i64,
    count: i64,
    sent: &mut Vec<(i64, Vec<u8>)>,
    files: &mut std::collections::BTreeMap<String, u64>,
) {
    for i in from..from + count {
        let b = batch(1, 200, i);
        let info = log.append(&b, 0, 0).unwrap();
        sent.push((info.base_offset.0, without_rewritten(&b)));
        for name in files_ending(dir, ".log") {
            files
                .entry(name.clone())
                .or_insert_with(|| inode(&dir.join(&name)));
        }
    }
}

fn kept(log: &Log, sent: &[(i64, Vec<u8>)]) -> Vec<(i64, Vec<u8>)> {
    let start = log.log_start_offset().0;
    sent.iter().filter(|(o, _)| *o >= start).cloned().collect()
}

fn read_kept(log: &Log) -> Vec<(i64, Vec<u8>)> {
    read_all(log, log.log_start_offset())
        .into_iter()
        .map(|(o, b)| (o, without_rewritten(&b)))
        .collect()
}

/// With retention by size, a roll deletes the oldest segment itself and
/// writes the new one into its file (needs Linux 6.5's `cachestat`, which
/// tells that the file's pages are all cached). The log still reads back
/// exactly what retention keeps, and a clean close cuts the reused file to
/// its data.
#[test]
fn a_roll_reuses_the_file_of_the_segment_retention_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), retained_config()).unwrap();
    let (mut sent, mut files) = (Vec::new(), std::collections::BTreeMap::new());
    let reused_before = rill_log::segments_reused_total();
    append_noting_files(&log, dir.path(), 0, 300, &mut sent, &mut files);
    let inodes: std::collections::BTreeSet<u64> = files.values().copied().collect();
    assert!(files.len() > 12, "{} segments", files.len());
    if file_reuse_possible() {
        assert!(rill_log::segments_reused_total() >= reused_before + 5);
        assert!(
            inodes.len() <= 6,
            "{} files for {} segments: rolls did not reuse the deleted ones",
            inodes.len(),
            files.len()
        );
    } else {
        assert_eq!(inodes.len(), files.len(), "a file reused without cachestat");
    }
    assert!(
        log.segment_count() <= 5,
        "retention kept {} segments",
        log.segment_count()
    );
    assert!(log.size_bytes() <= 5 * 4096);
    let want = kept(&log, &sent);
    assert_eq!(read_kept(&log), want);
    let end = log.log_end_offset();
    let size = log.size_bytes();
    // The reused active file still holds its old bytes past the data.
    assert!(std::fs::metadata(active_segment(dir.path())).unwrap().len() > 0);
    log.close().unwrap();
    let on_disk: u64 = files_ending(dir.path(), ".log")
        .iter()
        .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
        .sum();
    assert_eq!(on_disk, size, "closed files end where their data does");
    let log = Log::open(dir.path(), retained_config()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_kept(&log), want);
}

/// A crash while the active segment is a reused file, just after the roll
/// and with some new batches in it: recovery keeps every new batch and none
/// of the file's old bytes.
#[test]
fn a_crash_in_a_reused_file_recovers_the_new_batches_and_none_of_the_old() {
    if !file_reuse_possible() {
        eprintln!("no cachestat here: no file is reused, nothing to recover from one");
        return;
    }
    for extra in [0, 1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), retained_config()).unwrap();
        let (mut sent, mut files) = (Vec::new(), std::collections::BTreeMap::new());
        append_noting_files(&log, dir.path(), 0, 120, &mut sent, &mut files);
        // Append until a roll reuses a file, then `extra` more.
        let mut i = 120;
        loop {
            let before = active_segment(dir.path());
            append_noting_files(&log, dir.path(), i, 1, &mut sent, &mut files);
            i += 1;
            let now = active_segment(dir.path());
            if now != before && files.values().filter(|&&n| n == inode(&now)).count() > 1 {
                break;
            }
            assert!(i < 400, "no roll reused a file");
        }
        // The batch that rolled is the first of the new segment.
        append_noting_files(&log, dir.path(), i, extra, &mut sent, &mut files);
        let active = active_segment(dir.path());
        let stale_len = std::fs::metadata(&active).unwrap().len();
        let want = kept(&log, &sent);
        let end = log.log_end_offset();
        drop(log);
        let log = Log::open(dir.path(), retained_config()).unwrap();
        assert_eq!(log.log_end_offset(), end, "extra {extra}");
        assert_eq!(read_kept(&log), want, "extra {extra}");
        let len = std::fs::metadata(&active).unwrap().len();
        assert!(
            len < stale_len,
            "extra {extra}: old bytes cut ({len} of {stale_len})"
        );
        // And the log goes on from there.
        let b = batch(1, 200, 999);
        assert_eq!(log.append(&b, 0, 0).unwrap().base_offset, end);
    }
}

/// A file a fetch is still sending from is not written over: the roll
/// creates a new file, and the fetch's bytes stay as they were.
#[test]
fn a_roll_does_not_reuse_a_file_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), retained_config()).unwrap();
    let (mut sent, mut files) = (Vec::new(), std::collections::BTreeMap::new());
    append_noting_files(&log, dir.path(), 0, 60, &mut sent, &mut files);
    let start = log.log_start_offset();
    let held = log
        .read(start, 1 << 20, log.log_end_offset())
        .unwrap()
        .slices
        .remove(0);
    let held_bytes = slice_bytes(&held);
    let held_name = files_ending(dir.path(), ".log").remove(0);
    let held_inode = {
        use std::os::unix::fs::MetadataExt;
        held.file.metadata().unwrap().ino()
    };
    append_noting_files(&log, dir.path(), 60, 60, &mut sent, &mut files);
    for name in files_ending(dir.path(), ".log") {
        if name != held_name {
            assert_ne!(
                inode(&dir.path().join(&name)),
                held_inode,
                "{name} reused the held file"
            );
        }
    }
    // Meanwhile the rolls reused no file, not even the later ones: the
    // front segment is the held one, and retention is left to its thread.
    let inodes: std::collections::BTreeSet<u64> = files.values().copied().collect();
    assert_eq!(inodes.len(), files.len());
    assert_eq!(slice_bytes(&held), held_bytes);
    assert_eq!(read_kept(&log), kept(&log, &sent));
}

/// Recovery cuts bytes that follow a closed segment's last batch, an old
/// batch among them, without deleting the segments after it when the next
/// one starts right there (a reused file whose cut at the roll did not
/// reach the disk); nothing is lost.
#[test]
fn recovery_keeps_the_segments_after_a_closed_one_with_old_bytes_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut sent = Vec::new();
    for i in 0..60 {
        let b = batch(1, 200, i);
        let info = log.append(&b, 0, 0).unwrap();
        sent.push((info.base_offset.0, without_rewritten(&b)));
    }
    let segments = log.segment_count();
    assert!(segments >= 4);
    let end = log.log_end_offset();
    log.close().unwrap();
    let names = files_ending(dir.path(), ".log");
    let first = std::fs::read(dir.path().join(&names[0])).unwrap();
    let old_batch = &first[..common::view(&first).total_len()];
    let middle = dir.path().join(&names[1]);
    let middle_len = std::fs::metadata(&middle).unwrap().len();
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&middle)
            .unwrap();
        file.write_all(old_batch).unwrap();
        file.write_all(&[0x5a; 100]).unwrap();
    }
    // An unclean stop: no marker, so recovery scans every segment.
    std::fs::remove_file(dir.path().join(".clean-shutdown")).unwrap();
    let _ = std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint"));
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.segment_count(), segments);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_kept(&log), sent);
    assert_eq!(std::fs::metadata(&middle).unwrap().len(), middle_len);
}

/// The newest segment the retention thread deletes is kept for the next
/// roll that finds retention deleting nothing, and that roll writes into
/// its file; a truncation or a close drops such a spare.
#[test]
fn a_segment_the_retention_thread_deletes_carries_the_next_roll() {
    if !file_reuse_possible() {
        eprintln!("no cachestat here: no file is kept for reuse");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let (mut sent, mut files) = (Vec::new(), std::collections::BTreeMap::new());
    append_noting_files(&log, dir.path(), 0, 90, &mut sent, &mut files);
    let before = files_ending(dir.path(), ".log");
    assert!(before.len() >= 5, "{} segments", before.len());
    log.update_config(retained_config());
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted >= 2, "{deleted} deleted");
    let spare = inode(&dir.path().join(format!("{}.deleted", before[deleted - 1])));
    assert_eq!(
        files_ending(dir.path(), ".deleted").len(),
        1,
        "only the spare is left"
    );
    // Rolls that delete nothing: the first takes the spare.
    log.update_config(small_config());
    let active = active_segment(dir.path());
    let mut i = 90;
    while active_segment(dir.path()) == active {
        append_noting_files(&log, dir.path(), i, 1, &mut sent, &mut files);
        i += 1;
    }
    assert_eq!(inode(&active_segment(dir.path())), spare);
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
    assert_eq!(read_kept(&log), kept(&log, &sent));

    // Appends 60 batches from `from`, then lets the retention thread
    // delete down to one segment, which leaves a spare.
    let mut make_spare = |from: i64| {
        log.update_config(retained_config());
        append_noting_files(&log, dir.path(), from, 60, &mut sent, &mut files);
        log.update_config(LogConfig {
            retention_bytes: 4096,
            ..small_config()
        });
        assert!(log.apply_retention(0).unwrap() >= 1);
        assert_eq!(files_ending(dir.path(), ".deleted").len(), 1);
    };
    // A truncation drops a spare: the next roll creates its file.
    make_spare(i);
    let end = log.log_end_offset();
    log.truncate_to(Offset(end.0 - 1)).unwrap();
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
    // And a close drops one too.
    make_spare(i + 60);
    log.close().unwrap();
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
}

/// A flush syncs closed segments' index files by name, without the lock;
/// retention (at any roll) may delete one first. A missing one is no
/// fault: the flush succeeds and the directory stays online.
#[test]
fn a_flush_skips_an_index_file_deleted_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for i in 0..40 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    let indexes = files_ending(dir.path(), ".index");
    assert!(indexes.len() >= 2, "{indexes:?}");
    std::fs::remove_file(dir.path().join(&indexes[0])).unwrap();
    log.flush().unwrap();
    log.append(&batch(1, 200, 99), 0, 0).unwrap();
}
