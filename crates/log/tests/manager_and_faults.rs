//! The log manager, the flush policy and IO failures.

mod common;

use std::time::Duration;

use common::{batch, read_all};
use rill_log::{
    AppendError, BackgroundConfig, Log, LogConfig, LogError, LogManager, Offset, ReadError,
};

#[test]
fn manager_opens_lazily_deletes_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
    assert!(manager.get("orders", 0).is_none());
    let log = manager
        .get_or_create("orders", 0, LogConfig::default())
        .unwrap();
    log.append(&batch(2, 10, 1), 0, 0).unwrap();
    manager
        .get_or_create("orders", 1, LogConfig::default())
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &log,
        &manager.get("orders", 0).unwrap()
    ));
    assert!(matches!(
        manager.get_or_create("../escape", 0, LogConfig::default()),
        Err(LogError::InvalidPartition { .. })
    ));
    manager.delete("orders", 1).unwrap();
    assert!(manager.get("orders", 1).is_none());
    assert!(
        !dir.path().join("orders-1").exists(),
        "renamed away at once"
    );
    manager.shutdown().unwrap();
    assert!(dir.path().join("orders-0/.clean-shutdown").exists());
    drop((log, manager));

    let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(
        manager.list_partitions().unwrap(),
        vec![("orders".to_string(), 0)]
    );
    let log = manager
        .get_or_create("orders", 0, LogConfig::default())
        .unwrap();
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(read_all(&log, Offset(0)).len(), 1);
}

#[test]
fn flush_policy_advances_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: Some(5),
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    log.append(&batch(3, 10, 1), 0, 0).unwrap();
    assert_eq!(
        log.recovery_point(),
        Offset(0),
        "3 records < flush.messages"
    );
    log.append(&batch(3, 10, 1), 0, 0).unwrap();
    assert_eq!(
        log.recovery_point(),
        Offset(6),
        "6 records reached flush.messages"
    );

    let config = LogConfig {
        flush_ms: Some(1_000),
        ..LogConfig::default()
    };
    log.update_config(config);
    log.append(&batch(1, 10, 1), 0, 10_000).unwrap();
    assert!(!log.flush_if_due(10_500).unwrap());
    assert_eq!(log.recovery_point(), Offset(6));
    assert!(log.flush_if_due(11_000).unwrap());
    assert_eq!(log.recovery_point(), Offset(7));
}

#[test]
fn background_flusher_runs_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
    let config = LogConfig {
        flush_ms: Some(0),
        ..LogConfig::default()
    };
    let log = manager.get_or_create("t", 0, config).unwrap();
    let background = manager.start_background_with(BackgroundConfig {
        flush_check_interval: Duration::from_millis(10),
        ..BackgroundConfig::default()
    });
    log.append(&batch(1, 10, 1), 0, 0).unwrap();
    let mut waited = 0;
    while log.recovery_point() < Offset(1) && waited < 500 {
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(log.recovery_point(), Offset(1));
    background.stop();
}

#[test]
fn an_io_error_takes_the_directory_offline() {
    let dir = tempfile::tempdir().unwrap();
    let partition = dir.path().join("p-0");
    let config = LogConfig {
        segment_bytes: 1024,
        ..LogConfig::default()
    };
    let log = Log::open(&partition, config).unwrap();
    log.append(&batch(1, 600, 1), 0, 0).unwrap();
    // The next append must roll, and creating the new segment fails.
    std::fs::remove_dir_all(&partition).unwrap();
    let err = log.append(&batch(1, 600, 1), 0, 0).unwrap_err();
    assert!(matches!(err, AppendError::Io(_)), "{err}");
    let err = log.append(&batch(1, 10, 1), 0, 0).unwrap_err();
    assert!(matches!(err, AppendError::Offline(_)), "{err}");
    assert!(err.to_string().contains("offline"), "{err}");
    assert!(matches!(
        log.read(Offset(0), 100, Offset(1)),
        Err(ReadError::Offline(_))
    ));
    assert!(matches!(log.flush(), Err(LogError::Offline(_))));
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

/// The base offset of each segment in `dir`, from the file names.
fn segment_bases(dir: &std::path::Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse().ok()))
        .collect();
    bases.sort();
    bases
}

/// With no flush policy, a roll's flush (run by the flusher 30 s later)
/// moves the recovery point to the new segment and writes its checkpoint; after a
/// crash recovery checks only what came after, so a batch gone bad in an
/// older segment costs nothing after it (the scrub reports it instead).
#[test]
fn a_roll_flushes_the_closed_segment_and_a_crash_rechecks_only_what_came_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..60 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    let bases = segment_bases(dir.path());
    assert!(bases.len() >= 4, "{bases:?}");
    let active = *bases.last().unwrap();
    assert_eq!(log.recovery_point(), Offset(0), "nothing flushed yet");
    // What the flusher thread does every 100 ms: the rolls (at 0 ms) are
    // flushed 30 s later, once the kernel has written most of their pages.
    let early = log.flush_if_due(29_999).unwrap();
    let early_point = log.recovery_point();
    let flushed = log.flush_if_due(30_000).unwrap();
    let recovery_point = log.recovery_point();
    let flushed_again = log.flush_if_due(30_000).unwrap();
    let end = log.log_end_offset();
    let before = read_all(&log, Offset(0));
    // A crash: no clean close.
    drop(log);
    // A byte of the second segment's first batch rots on the disk.
    let second = dir.path().join(format!("{:020}.log", bases[1]));
    let mut bytes = std::fs::read(&second).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&second, &bytes).unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), end, "recovery cut flushed data");
    assert_eq!(segment_bases(dir.path()), bases);
    assert!(
        !early && early_point == Offset(0),
        "flushed {early_point:?} early"
    );
    assert!(flushed, "the rolls' flush was due");
    assert_eq!(recovery_point, Offset(active));
    assert!(!flushed_again, "nothing more to flush");
    let report = log.scrub(&mut |_| {}).unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(
        read_all(&log, Offset(bases[2])),
        before[bases[2] as usize..]
    );
}

/// The manager's flusher thread runs the flush a roll schedules.
#[test]
fn the_flusher_thread_flushes_what_a_roll_closed() {
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
    let log = manager.get_or_create("t", 0, small_segments()).unwrap();
    let background = manager.start_background_with(BackgroundConfig {
        flush_check_interval: Duration::from_millis(10),
        ..BackgroundConfig::default()
    });
    for i in 0..60 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    let active = *segment_bases(&dir.path().join("t-0")).last().unwrap();
    // The flush moves the recovery point in memory, then writes its
    // checkpoint: wait for both, whatever the order.
    let checkpoint_path = dir.path().join("t-0/recovery-point-offset-checkpoint");
    // Version, count, then the offset (docs/FORMAT.md).
    let checkpointed = || {
        std::fs::read_to_string(&checkpoint_path)
            .is_ok_and(|text| text.lines().nth(2) == Some(active.to_string().as_str()))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while log.recovery_point() < Offset(active) || !checkpointed() {
        assert!(
            std::time::Instant::now() < deadline,
            "no flush after the rolls"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(log.recovery_point(), Offset(active));
    background.stop();
}

/// A roll does no directory fsync: it would run under the partition's
/// state lock, which every produce and fetch takes, and on the async
/// worker an append may run on. The new file's directory entry becomes
/// durable through the next flush, which syncs the directory before it
/// moves the recovery point over the file.
#[test]
fn a_roll_leaves_the_directory_fsync_to_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    log.append(&batch(1, 200, 0), 0, 0).unwrap();
    // Writes the leader-epoch checkpoint of the first append.
    log.flush().unwrap();
    let before = rill_log::dir_syncs_on_this_thread();
    for i in 1..50 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    let appended = rill_log::dir_syncs_on_this_thread() - before;
    let bases = segment_bases(dir.path());
    assert!(bases.len() >= 4, "{bases:?}");
    assert_eq!(appended, 0, "appends that rolled synced the directory");
    log.flush().unwrap();
    let flushed = rill_log::dir_syncs_on_this_thread() - before;
    assert_eq!(
        flushed, 1,
        "the flush after the rolls syncs the directory once"
    );
    assert_eq!(log.recovery_point(), log.log_end_offset());
    // No roll since: the next flush has no directory entry to sync.
    log.append(&batch(1, 10, 50), 0, 0).unwrap();
    assert_eq!(segment_bases(dir.path()), bases, "a small append rolled");
    log.flush().unwrap();
    assert_eq!(rill_log::dir_syncs_on_this_thread() - before, 1);
}

/// A crash before the flush after a roll may lose the new segment file's
/// directory entry. Nothing in it was flushed, so recovery opens a log
/// that ends where the lost segment began, with everything before it.
#[test]
fn a_crash_that_loses_an_unflushed_new_segment_file_recovers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..30 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    // The rolls so far are flushed; the ones after are not.
    log.flush().unwrap();
    let flushed_to = log.recovery_point();
    for i in 30..60 {
        log.append(&batch(1, 200, i), 0, 0).unwrap();
    }
    let bases = segment_bases(dir.path());
    let lost = *bases.last().unwrap();
    assert!(Offset(lost) > flushed_to, "{bases:?} {flushed_to:?}");
    let before = read_all(&log, Offset(0));
    // A crash (no clean close) whose directory lost the newest file.
    drop(log);
    for suffix in ["log", "index", "timeindex"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{lost:020}.{suffix}")));
    }
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(lost));
    assert_eq!(read_all(&log, Offset(0)), before[..lost as usize]);
    log.append(&batch(1, 200, 61), 0, 0).unwrap();
    assert_eq!(log.log_end_offset(), Offset(lost + 1));
}

/// Without a flush policy an append that starts a leader epoch does not
/// write the epoch checkpoint (a file fsync and a directory fsync) itself:
/// it may run on an async worker. The next flush writes it before it moves
/// the recovery point, so a crash after the flush finds every epoch of the
/// flushed data.
#[test]
fn a_new_leader_epoch_is_checkpointed_by_the_flush_not_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    let before = rill_log::dir_syncs_on_this_thread();
    for (epoch, ts) in [(1, 0), (1, 1), (2, 2), (2, 3), (3, 4)] {
        log.append(&batch(1, 10, ts), epoch, 0).unwrap();
    }
    assert_eq!(
        rill_log::dir_syncs_on_this_thread() - before,
        0,
        "an append wrote the leader-epoch checkpoint"
    );
    log.flush().unwrap();
    // A crash (no clean close) right after the flush.
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.end_offset_for_epoch(1), Some((1, Offset(2))));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, Offset(4))));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, Offset(5))));
}
