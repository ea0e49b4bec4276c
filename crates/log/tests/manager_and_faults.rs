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
