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
fn batches_in_several_buffers_are_one_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut first = batch(3, 10, 1);
    first.extend_from_slice(&batch(1, 10, 2));
    let second = batch(2, 10, 3);
    let parts: Vec<&[u8]> = vec![&first, &[], &second];
    let info = log.append(&parts, 0, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (Offset(0), Offset(5)));
    let got = read_all(&log, Offset(0));
    assert_eq!(
        got.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        vec![0, 3, 4]
    );
    // A bad batch in a later buffer is counted across the buffers, and
    // rejects the whole append.
    let mut bad = batch(2, 10, 1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let parts: Vec<&[u8]> = vec![&first, &bad];
    let err = log.append(&parts, 0, 0).unwrap_err();
    assert!(
        matches!(err, AppendError::InvalidBatch { index: 2, .. }),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), Offset(6));
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
    assert!(matches!(
        log.append(&b""[..], 0, 0),
        Err(AppendError::Empty)
    ));
    let no_parts: &[&[u8]] = &[];
    assert!(matches!(
        log.append(no_parts, 0, 0),
        Err(AppendError::Empty)
    ));
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
    // the map (renamed under the lock, unlinked after it).
    assert_eq!(files_ending(dir.path(), ".log").len(), log.segment_count());
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
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
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
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
    assert_eq!(files_ending(dir.path(), ".deleted"), Vec::<String>::new());
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

/// A flush syncs closed segments' index files by name, without the lock;
/// retention or a truncation may delete one first. A missing one is no
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

/// Bytes of a file that was ever served are never written over: a fetch's
/// bytes may still be in the kernel after the broker let go of the file
/// (`sendfile(2)` leaves TCP references to the page cache, which nothing in
/// the log can count). Here a handle opened outside the log stands for
/// them, while rolls and retention (at the roll and on its own) delete the
/// segment it reads and start new ones.
#[test]
fn rolls_and_retention_never_write_over_a_file_someone_may_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 3 * 4096,
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    for i in 0..20 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    let first = dir.path().join(files_ending(dir.path(), ".log").remove(0));
    // A fetch from offset 0 has been sent from the first segment; then the
    // broker dropped its slice, as after `sendfile` returned.
    drop(log.read(Offset(0), 1 << 20, log.log_end_offset()).unwrap());
    let outside = std::fs::File::open(&first).unwrap();
    let read_outside = || {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0; 4096];
        let n = outside.read_at(&mut bytes, 0).unwrap();
        bytes.truncate(n);
        bytes
    };
    let served = read_outside();
    assert!(served.len() > 1000);
    let mut inodes = std::collections::BTreeSet::new();
    for i in 20..300 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
        if i % 10 == 0 {
            log.apply_retention(0).unwrap();
        }
        inodes.insert(inode(&active_segment(dir.path())));
    }
    assert!(
        log.log_start_offset() > Offset(20),
        "retention deleted the first segments"
    );
    assert!(!first.exists());
    assert_eq!(read_outside(), served, "the served bytes were written over");
    assert!(
        !inodes.contains(&inode_of(&outside)),
        "a new segment took the served file"
    );
}

/// Recovery cuts bytes that follow a closed segment's last batch, an old
/// batch among them, without deleting the segments after it when the next
/// one starts right there: nothing is lost.
#[test]
fn recovery_keeps_the_segments_after_a_closed_one_with_junk_at_its_end() {
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
    let got: Vec<_> = read_all(&log, Offset(0))
        .into_iter()
        .map(|(o, b)| (o, without_rewritten(&b)))
        .collect();
    assert_eq!(got, sent);
    assert_eq!(std::fs::metadata(&middle).unwrap().len(), middle_len);
}

fn inode(path: &std::path::Path) -> u64 {
    inode_of(&std::fs::File::open(path).unwrap())
}

fn inode_of(file: &std::fs::File) -> u64 {
    use std::os::unix::fs::MetadataExt;
    file.metadata().unwrap().ino()
}
