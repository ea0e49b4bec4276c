//! Appends, reads, retention and flushes from several threads at once: every
//! read returns whole batches with valid CRCs and offsets in order.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{batch, slice_bytes};
use rill_log::{Log, LogConfig, Offset, ReadError};
use rill_records::batch::BatchIter;

#[test]
fn concurrent_appends_reads_retention_and_flushes_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_bytes: 16_384,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), config).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let log = log.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for i in 0..1_500i64 {
                log.append(&batch(1 + (i % 3) as usize, 90, i), 0, i)
                    .unwrap();
                log.set_high_watermark(log.log_end_offset());
            }
            done.store(true, Ordering::Release);
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = log.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let start = log.log_start_offset();
                    let end = log.high_watermark();
                    match log.read(start, 2_000, end) {
                        Ok(info) => {
                            let mut previous = None;
                            for slice in &info.slices {
                                for item in BatchIter::new(&slice_bytes(slice)) {
                                    let (_, view) = item.expect("whole batches");
                                    view.validate().expect("valid CRC");
                                    assert!(previous.is_none_or(|p| view.base_offset() == p));
                                    assert!(view.base_offset() < end.0);
                                    previous = Some(view.next_offset());
                                }
                            }
                            reads += 1;
                        }
                        // Retention moved the start after it was sampled.
                        Err(ReadError::OffsetOutOfRange { .. }) => {}
                        Err(e) => panic!("read failed: {e}"),
                    }
                }
                reads
            })
        })
        .collect();
    let janitor = {
        let log = log.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                log.apply_retention(0).unwrap();
                log.flush().unwrap();
            }
        })
    };
    writer.join().unwrap();
    janitor.join().unwrap();
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert!(log.log_start_offset() > Offset(0), "retention ran");
    log.apply_retention(0).unwrap();
    assert!(log.size_bytes() <= 16_384 + 4_096);
    assert_eq!(log.log_end_offset(), Offset(3_000));
}
