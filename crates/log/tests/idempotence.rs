//! Idempotent producers: a retried batch is answered with its original
//! offsets and stored once, across restarts and truncation.

mod common;

use common::{idempotent_batch, read_all};
use rill_log::{Log, LogConfig, Offset};

#[test]
fn a_retried_batch_gets_its_original_offsets_and_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let first = log.append(&idempotent_batch(3, 42, 0, 0), 0, 0).unwrap();
    let second = log.append(&idempotent_batch(2, 42, 0, 3), 0, 0).unwrap();
    assert_eq!(
        (second.base_offset, second.last_offset),
        (Offset(3), Offset(4))
    );

    let retry = log.append(&idempotent_batch(3, 42, 0, 0), 0, 0).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!(retry.record_count, 0, "nothing appended");
    assert_eq!(log.log_end_offset(), Offset(5));

    // Another producer, or a new epoch of the same one, is not a duplicate.
    assert_eq!(
        log.append(&idempotent_batch(3, 43, 0, 0), 0, 0)
            .unwrap()
            .base_offset,
        Offset(5)
    );
    assert_eq!(
        log.append(&idempotent_batch(3, 42, 1, 0), 0, 0)
            .unwrap()
            .base_offset,
        Offset(8)
    );
    assert_eq!(read_all(&log, Offset(0)).len(), 4);
}

#[test]
fn producer_state_is_rebuilt_after_a_restart_and_forgets_truncated_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&idempotent_batch(2, 7, 3, 10), 0, 0).unwrap();
    log.append(&idempotent_batch(2, 7, 3, 12), 0, 0).unwrap();
    drop(log); // a crash: no clean shutdown

    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let retry = log.append(&idempotent_batch(2, 7, 3, 12), 0, 0).unwrap();
    assert_eq!(
        retry.base_offset,
        Offset(2),
        "recognised from the stored headers"
    );
    assert_eq!(log.log_end_offset(), Offset(4));

    log.truncate_to(Offset(2)).unwrap();
    let again = log.append(&idempotent_batch(2, 7, 3, 12), 0, 0).unwrap();
    assert_eq!(
        again.base_offset,
        Offset(2),
        "the truncated original is gone, so it is appended"
    );
    assert_eq!(again.record_count, 2);
    log.close().unwrap();
}
