//! Idempotent producers: a retried batch is answered with its original
//! offsets and stored once, across restarts and truncation.

mod common;

use common::{idempotent_batch, read_all};
use rill_log::{Log, LogConfig, Offset};
use rill_records::batch::Compression;
use rill_records::builder::BatchBuilder;

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

/// Kafka keeps producer state in `.snapshot` files written at each roll, so a
/// retry is recognised however old its original is; so does Rill.
#[test]
fn a_retry_is_recognised_after_a_restart_when_its_original_is_segments_back() {
    for (compact, clean_close) in [(false, false), (false, true), (true, false)] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 4096,
            cleanup_compact: compact,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config.clone()).unwrap();
        let original = log.append(&keyed_batch(2, 7, 0), 0, 0).unwrap();
        // Another producer's traffic: enough batches for four more segments.
        let mut sequence = 0;
        while log.segment_count() < 5 {
            log.append(&keyed_batch(1, 8, sequence), 0, 0).unwrap();
            sequence += 1;
        }
        let end = log.log_end_offset();
        if clean_close {
            log.close().unwrap();
        } else {
            drop(log); // a crash
        }

        let log = Log::open(dir.path(), config).unwrap();
        let retry = log.append(&keyed_batch(2, 7, 0), 0, 0).unwrap();
        assert_eq!(
            (retry.base_offset, retry.record_count),
            (original.base_offset, 0),
            "compact {compact}, clean close {clean_close}: the retry is the original"
        );
        assert_eq!(log.log_end_offset(), end, "stored once");
        // The producer goes on from its last sequence.
        let next = log.append(&keyed_batch(1, 7, 2), 0, 0).unwrap();
        assert_eq!(next.base_offset, end);
        log.close().unwrap();
    }
}

/// An idempotent batch (epoch 0) of `count` keyed records: a compacted log
/// takes it too.
fn keyed_batch(count: usize, producer_id: i64, sequence: i32) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None).producer(producer_id, 0, sequence);
    for i in 0..count {
        let key = format!("key-{i}").into_bytes();
        builder
            .append(
                1_000,
                Some(key.into()),
                Some(vec![7u8; 100].into()),
                Vec::new(),
            )
            .unwrap();
    }
    builder.build().unwrap()
}
