//! Group commit (`sync.rs`): appends under `flush.messages=1` return only
//! once durable, and concurrent ones share sync rounds.

mod common;

use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use common::batch;
use rill_log::{AppendInfo, Log, LogConfig, LogManager, Offset};

/// Appends one batch through the group commit and waits for its answer.
fn append_durably(log: &Arc<Log>, records: usize) -> AppendInfo {
    let (durable, wait) = sync_channel(1);
    let done = Box::new(move |result| durable.send(result).unwrap());
    let info = log
        .append_with_sync(&batch(records, 200, 1), 0, 0, done)
        .unwrap();
    wait.recv().unwrap().unwrap();
    info
}

#[test]
fn concurrent_appends_share_sync_rounds_and_return_durable() {
    const LOGS: usize = 16;
    const APPENDS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: Some(1),
        ..LogConfig::default()
    };
    let manager = LogManager::open(dir.path(), config.clone()).unwrap();
    let logs: Vec<Arc<Log>> = (0..LOGS)
        .map(|p| {
            manager
                .get_or_create("t", p as i32, config.clone())
                .unwrap()
        })
        .collect();
    // Two threads per log: appends to one partition from several
    // connections, and to many partitions at once.
    let threads: Vec<_> = (0..2 * LOGS)
        .map(|t| {
            let log = logs[t % LOGS].clone();
            std::thread::spawn(move || {
                for _ in 0..APPENDS {
                    let info = append_durably(&log, 2);
                    // Durable when it returns: below the recovery point.
                    let recovery_point = log.recovery_point();
                    assert!(
                        info.last_offset < recovery_point,
                        "offset {} returned with the recovery point at {recovery_point}",
                        info.last_offset
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let appends = (2 * LOGS * APPENDS) as u64;
    // One syncer per directory: every log reports the same rounds.
    let rounds = logs[0].sync_rounds();
    assert!(rounds >= 1, "the syncer ran");
    assert!(
        rounds < appends / 2,
        "{appends} appends took {rounds} sync rounds: they should share them"
    );
    for log in &logs {
        assert_eq!(log.recovery_point(), log.log_end_offset());
        assert_eq!(log.log_end_offset(), Offset((2 * APPENDS * 2) as i64));
    }
}

#[test]
fn without_a_flush_policy_an_append_answers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    let info = append_durably(&log, 3);
    assert_eq!(info.last_offset, Offset(2));
    assert_eq!(log.sync_rounds(), 0, "nothing asked for a sync");
    assert_eq!(log.recovery_point(), Offset(0));
}

#[test]
fn flush_messages_above_one_syncs_when_reached() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: Some(5),
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), config).unwrap());
    append_durably(&log, 3);
    assert_eq!(
        log.recovery_point(),
        Offset(0),
        "3 records < flush.messages"
    );
    append_durably(&log, 3);
    assert_eq!(log.recovery_point(), Offset(6), "6 records reached it");
    assert_eq!(log.sync_rounds(), 1);
}

#[test]
fn a_retried_batch_waits_for_its_original_to_be_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: Some(1),
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), config).unwrap());
    let original = common::idempotent_batch(2, 7, 0, 0);
    // Appended without a sync (as if its round had not come yet).
    log.update_config(LogConfig::default());
    log.append(&original, 0, 0).unwrap();
    assert_eq!(log.recovery_point(), Offset(0));
    log.update_config(LogConfig {
        flush_messages: Some(1),
        ..LogConfig::default()
    });
    let (durable, wait) = sync_channel(1);
    let done = Box::new(move |result| durable.send(result).unwrap());
    let info = log.append_with_sync(&original, 0, 0, done).unwrap();
    assert_eq!(info.record_count, 0, "a duplicate");
    wait.recv().unwrap().unwrap();
    assert_eq!(log.recovery_point(), Offset(2));
}
