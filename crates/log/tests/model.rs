//! Property test: random sequences of operations on a log, checked after
//! every step against a simple in-memory model (a list of batches).

mod common;

use common::{batch_with_fill, read_all, slice_bytes, without_rewritten};
use proptest::prelude::*;
use rill_log::{Log, LogConfig, Offset};
use rill_records::batch::BatchIter;

#[derive(Debug, Clone)]
enum Op {
    /// Batches of (record count, value length) in one append.
    Append(Vec<(usize, usize)>),
    /// Read from a point (as a fraction of the live range) with a byte limit.
    Read(u16, u32),
    /// Jump the clock past `segment.ms` so the next append rolls.
    AgeActiveSegment,
    RetainBytes(u16),
    DeleteRecords(u16),
    Truncate(u16),
    CloseReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..5, 0usize..300), 1..4).prop_map(Op::Append),
        3 => (any::<u16>(), 1u32..3000).prop_map(|(at, max)| Op::Read(at, max)),
        1 => Just(Op::AgeActiveSegment),
        1 => (0u16..6000).prop_map(Op::RetainBytes),
        1 => any::<u16>().prop_map(Op::DeleteRecords),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

/// The model: batches (base offset, bytes without rewritten fields, next
/// offset) and the log start.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, Vec<u8>, i64)>,
    start: i64,
    end: i64,
}

impl Model {
    fn pick(&self, fraction: u16) -> i64 {
        let span = (self.end - self.start) as u64 + 1;
        self.start + (u64::from(fraction) * span / 65_536) as i64
    }

    /// Drops batches wholly below `start`.
    fn drop_below(&mut self, start: i64) {
        self.batches.retain(|(_, _, next)| *next > start);
        self.start = start;
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_ms: 1_000,
        index_interval_bytes: 300,
        segment_index_bytes: 1024,
        ..LogConfig::default()
    }
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), Offset(model.start));
    prop_assert_eq!(log.log_end_offset(), Offset(model.end));
    let got = read_all(log, Offset(model.start));
    let want: Vec<_> = model
        .batches
        .iter()
        .map(|(o, b, _)| (*o, b.clone()))
        .collect();
    prop_assert_eq!(got.len(), want.len());
    for ((go, gb), (wo, wb)) in got.iter().zip(&want) {
        prop_assert_eq!(go, wo);
        prop_assert_eq!(&without_rewritten(gb), wb);
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let mut model = Model::default();
    let mut now_ms = 0i64;
    let mut fill = 0u8;
    for op in ops {
        match op {
            Op::Append(shape) => {
                let mut input = Vec::new();
                let mut bodies = Vec::new();
                for (count, value_len) in shape {
                    fill = fill.wrapping_add(1);
                    let b = batch_with_fill(count, value_len, now_ms, fill);
                    bodies.push((without_rewritten(&b), count as i64));
                    input.extend_from_slice(&b);
                }
                let info = log.append(&input, 0, now_ms).unwrap();
                prop_assert_eq!(info.base_offset, Offset(model.end));
                for (body, count) in bodies {
                    model.batches.push((model.end, body, model.end + count));
                    model.end += count;
                }
                prop_assert_eq!(info.last_offset, Offset(model.end - 1));
                log.set_high_watermark(log.log_end_offset());
            }
            Op::Read(at, max_bytes) => {
                let start = model.pick(at);
                let info = log
                    .read(Offset(start), max_bytes, Offset(model.end))
                    .unwrap();
                if start == model.end {
                    prop_assert!(info.slices.is_empty());
                    continue;
                }
                let bytes: Vec<u8> = info.slices.iter().flat_map(slice_bytes).collect();
                let first = model
                    .batches
                    .iter()
                    .position(|(_, _, next)| *next > start)
                    .unwrap();
                let mut n = 0;
                for (i, item) in BatchIter::new(&bytes).enumerate() {
                    let (_, view) = item.unwrap();
                    prop_assert_eq!(
                        &without_rewritten(view.bytes()),
                        &model.batches[first + i].1
                    );
                    n += 1;
                }
                prop_assert!(n >= 1, "at least one batch");
                prop_assert!(
                    n == 1 || bytes.len() <= max_bytes as usize,
                    "byte limit kept"
                );
            }
            Op::AgeActiveSegment => now_ms += 2_000,
            Op::RetainBytes(bytes) => {
                log.update_config(LogConfig {
                    retention_bytes: i64::from(bytes),
                    ..config()
                });
                log.apply_retention(now_ms).unwrap();
                log.update_config(config());
                let start = log.log_start_offset().0;
                prop_assert!(start >= model.start && start <= model.end);
                prop_assert!(
                    start == model.start
                        || start == model.end
                        || model.batches.iter().any(|(o, _, _)| *o == start),
                    "retention deletes whole segments, so a moved start is a batch base"
                );
                model.drop_below(start);
            }
            Op::DeleteRecords(at) => {
                let target = model.pick(at);
                let start = log.delete_records_before(Offset(target)).unwrap();
                prop_assert_eq!(start, Offset(target.max(model.start)));
                model.drop_below(start.0);
            }
            Op::Truncate(at) => {
                let target = model.pick(at);
                log.truncate_to(Offset(target)).unwrap();
                if target <= model.start {
                    if target < model.end {
                        model.batches.clear();
                        model.end = model.start;
                    }
                } else if let Some(i) = model.batches.iter().position(|(_, _, next)| *next > target)
                {
                    model.end = model.batches[i].0.max(model.start);
                    model.batches.truncate(i);
                }
                log.set_high_watermark(log.log_end_offset());
            }
            Op::CloseReopen => {
                log.close().unwrap();
                drop(log);
                log = Log::open(dir.path(), config()).unwrap();
            }
            Op::CrashReopen => {
                // A process crash loses nothing the page cache holds.
                drop(log);
                log = Log::open(dir.path(), config()).unwrap();
            }
        }
        check(&log, &model)?;
    }
    Ok(())
}

proptest! {
    // Bounded so the whole suite stays well under a minute.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
