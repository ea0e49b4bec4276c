//! A batch that inflates past `INFLATED_BYTES_MAX` is refused at append, on
//! every log: the decoders that read the log later (the cleaner, the group
//! coordinator's replay, offset lookups by time) then never meet one.

use bytes::Bytes;
use rill_log::{AppendError, Log, LogConfig, Offset};
use rill_records::batch::Compression;
use rill_records::builder::BatchBuilder;
use rill_records::compression::INFLATED_BYTES_MAX;

/// One keyed record whose value is `len` zero bytes, zstd-compressed: a few
/// KiB on the wire whatever `len` is.
fn zeros_batch(len: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::Zstd);
    builder
        .append(
            1_000,
            Some(Bytes::from_static(b"key")),
            Some(Bytes::from(vec![0u8; len])),
            Vec::new(),
        )
        .unwrap();
    builder.build().unwrap()
}

#[test]
fn a_batch_inflating_past_the_limit_is_refused_on_plain_and_compacted_logs() {
    let bomb = zeros_batch(INFLATED_BYTES_MAX + 1);
    let fine = zeros_batch(1 << 20);
    assert!(bomb.len() < 64 << 10, "{} bytes on the wire", bomb.len());
    for compact in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup_compact: compact,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config).unwrap();

        let refused = log.append(&bomb, 0, 0).unwrap_err();
        log.append(&fine, 0, 0).unwrap();

        assert!(
            matches!(
                refused,
                AppendError::InflatesTooLarge {
                    index: 0,
                    limit: INFLATED_BYTES_MAX
                }
            ),
            "compact={compact}: {refused}"
        );
        assert_eq!(log.log_end_offset(), Offset(1), "compact={compact}");
    }
}
