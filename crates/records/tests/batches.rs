//! Building and decoding whole batches: exact bytes, round trips for every
//! codec, and decoding arbitrary or mutated bytes without panicking.

use bytes::Bytes;
use proptest::prelude::*;
use rill_records::batch::{
    BatchError, BatchView, CRC_COVERAGE_START, CRC_OFFSET, Compression, RECORD_COUNT_OFFSET,
    TimestampType,
};
use rill_records::builder::{BatchBuilder, BuildError};
use rill_records::record::{
    Header, Record, RecordError, decode_batch, decode_records, decode_shared_batch, raw_records,
};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Decompressed bytes allowed in these tests: far above what they build.
const LIMIT: usize = 1 << 20;

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_COVERAGE_START..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn a_one_record_batch_has_the_exact_kafka_bytes() {
    let mut builder = BatchBuilder::new(Compression::None)
        .base_offset(5)
        .producer(1000, 2, 7);
    builder
        .append(
            1_700_000_000_000,
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"value")),
            vec![Header {
                key: Bytes::from_static(b"h"),
                value: None,
            }],
        )
        .unwrap();
    let batch = builder.build().unwrap();

    let record: &[u8] = &[
        0x1e, // length 15
        0x00, // attributes
        0x00, // timestamp delta 0
        0x00, // offset delta 0
        0x02, b'k', // key
        0x0a, b'v', b'a', b'l', b'u', b'e', // value
        0x02, // one header
        0x02, b'h', // header key
        0x01, // null header value
    ];
    let mut expected = Vec::new();
    expected.extend_from_slice(&5i64.to_be_bytes()); // base offset
    expected.extend_from_slice(&((49 + record.len()) as i32).to_be_bytes());
    expected.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
    expected.push(2); // magic
    expected.extend_from_slice(&[0; 4]); // CRC, checked below
    expected.extend_from_slice(&0i16.to_be_bytes()); // attributes
    expected.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    expected.extend_from_slice(&1000i64.to_be_bytes());
    expected.extend_from_slice(&2i16.to_be_bytes());
    expected.extend_from_slice(&7i32.to_be_bytes());
    expected.extend_from_slice(&1i32.to_be_bytes());
    expected.extend_from_slice(record);
    fix_crc(&mut expected);
    assert_eq!(batch, expected);

    let (view, _) = BatchView::parse(&batch).unwrap();
    assert_eq!(view.validate(), Ok(()));
}

#[test]
fn decoded_batches_carry_absolute_offsets_and_timestamps() {
    let mut builder = BatchBuilder::new(Compression::Lz4)
        .base_offset(1_000)
        .partition_leader_epoch(4)
        .transactional(true);
    for (i, timestamp) in [500i64, 400, 900].into_iter().enumerate() {
        let value = Bytes::from(format!("v{i}"));
        builder
            .append(timestamp, None, Some(value), Vec::new())
            .unwrap();
    }
    let batch = builder.build().unwrap();
    let decoded = decode_batch(&batch, LIMIT).unwrap();
    assert_eq!(decoded.compression, Compression::Lz4);
    assert!(decoded.is_transactional);
    assert!(!decoded.is_control);
    assert_eq!(decoded.partition_leader_epoch, 4);
    assert_eq!(decoded.base_timestamp, 500);
    assert_eq!(decoded.max_timestamp, 900);
    assert_eq!(decoded.last_offset(), 1_002);
    let seen: Vec<(i64, i64, Option<Bytes>)> = decoded
        .iter()
        .map(|r| (r.offset, r.timestamp, r.record.value.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (1_000, 500, Some(Bytes::from_static(b"v0"))),
            (1_001, 400, Some(Bytes::from_static(b"v1"))),
            (1_002, 900, Some(Bytes::from_static(b"v2"))),
        ]
    );
}

#[test]
fn a_shared_uncompressed_batch_lends_its_bytes_and_keeps_the_limit() {
    let mut builder = BatchBuilder::new(Compression::None);
    let value = Bytes::from_static(b"a value that stays where it is");
    builder
        .append(1, None, Some(value.clone()), Vec::new())
        .unwrap();
    let batch = Bytes::from(builder.build().unwrap());
    let decoded = decode_shared_batch(&batch, LIMIT).unwrap();
    let decoded_value = decoded.records[0].value.as_ref().unwrap();
    assert_eq!(decoded_value, &value);
    // A slice of the batch, not a copy.
    let within = batch.as_ptr_range();
    assert!(within.contains(&decoded_value.as_ptr()));
    // The section is over the limit: the same error as the copying decode.
    let small = batch.len() - 62;
    assert!(matches!(
        decode_shared_batch(&batch, small),
        Err(RecordError::Compression(_))
    ));
    assert!(matches!(
        decode_batch(&batch, small),
        Err(RecordError::Compression(_))
    ));
}

#[test]
fn log_append_time_gives_every_record_the_max_timestamp() {
    let mut builder =
        BatchBuilder::new(Compression::None).timestamp_type(TimestampType::LogAppendTime);
    builder.append(10, None, None, Vec::new()).unwrap();
    builder.append(20, None, None, Vec::new()).unwrap();
    let mut batch = builder.build().unwrap();
    rill_records::batch::set_max_timestamp_and_type(&mut batch, 99).unwrap();
    let decoded = decode_batch(&batch, LIMIT).unwrap();
    assert!(decoded.iter().all(|r| r.timestamp == 99));
    assert!(
        decoded
            .into_records()
            .all(|(_, timestamp, _)| timestamp == 99)
    );
}

#[test]
fn compaction_style_batches_keep_gaps_and_trailing_offset_slots() {
    let mut builder = BatchBuilder::new(Compression::Zstd)
        .base_offset(100)
        .base_timestamp(7)
        .last_offset_delta(9);
    for offset_delta in [1, 4] {
        builder
            .push(&Record {
                offset_delta,
                ..Record::default()
            })
            .unwrap();
    }
    let decoded = decode_batch(&builder.build().unwrap(), LIMIT).unwrap();
    let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [101, 104]);
    assert_eq!(decoded.last_offset(), 109);

    let mut empty = BatchBuilder::new(Compression::Gzip)
        .last_offset_delta(3)
        .build()
        .unwrap();
    // Kafka writes an emptied batch's header alone, codec bit and all.
    empty.truncate(61);
    empty[8..12].copy_from_slice(&49i32.to_be_bytes());
    fix_crc(&mut empty);
    let decoded = decode_batch(&empty, LIMIT).unwrap();
    assert!(decoded.records.is_empty());
    assert_eq!(decoded.compression, Compression::Gzip);
}

#[test]
fn the_builder_refuses_what_kafka_cannot_hold() {
    let mut builder = BatchBuilder::new(Compression::None);
    builder
        .push(&Record {
            offset_delta: 3,
            ..Record::default()
        })
        .unwrap();
    let error = builder
        .push(&Record {
            offset_delta: 3,
            ..Record::default()
        })
        .unwrap_err();
    assert_eq!(
        error,
        BuildError::OffsetDeltaNotIncreasing {
            offset_delta: 3,
            expected_min: 4
        }
    );
    let error = builder.clone().last_offset_delta(2).build().unwrap_err();
    assert!(matches!(error, BuildError::LastOffsetDeltaTooSmall { .. }));
    let error = builder
        .clone()
        .base_offset(i64::MAX - 3)
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::OffsetOverflow { .. }));

    let mut builder = BatchBuilder::new(Compression::None).base_timestamp(i64::MAX - 1);
    builder
        .push(&Record {
            timestamp_delta: 5,
            ..Record::default()
        })
        .unwrap();
    assert!(matches!(
        builder.build(),
        Err(BuildError::TimestampOverflow { .. })
    ));

    // A negative delta that takes the max timestamp below -1.
    let mut builder = BatchBuilder::new(Compression::None).base_timestamp(10);
    builder
        .push(&Record {
            timestamp_delta: -20,
            ..Record::default()
        })
        .unwrap();
    assert!(matches!(
        builder.build(),
        Err(BuildError::NegativeTimestamp {
            which: "max",
            timestamp: -10
        })
    ));

    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(i64::MAX, None, None, Vec::new()).unwrap();
    assert!(matches!(
        builder.append(-2, None, None, Vec::new()),
        Err(BuildError::TimestampOutOfRange { .. })
    ));
}

#[test]
fn record_decoding_checks_lengths_against_what_remains() {
    let section = |bytes: &[u8]| Bytes::copy_from_slice(bytes);
    // Key length 2^31-1 with three bytes left.
    let record = [
        0x16, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0,
    ];
    assert!(matches!(
        decode_records(&section(&record), 1),
        Err(RecordError::Truncated { field: "key", .. })
    ));
    // A header count of 2^31-1 with no bytes left.
    let record = [
        0x14, 0x00, 0x00, 0x00, 0x01, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x0f,
    ];
    assert!(matches!(
        decode_records(&section(&record), 1),
        Err(RecordError::HeaderCountExceedsBytes { .. })
    ));
    // The record is one byte longer than its fields.
    let record = [0x0e, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00];
    assert!(matches!(
        decode_records(&section(&record), 1),
        Err(RecordError::RecordSizeMismatch {
            declared: 7,
            consumed: 6,
            ..
        })
    ));
    // The record claims more bytes than the section has.
    let record = [0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00];
    assert!(matches!(
        decode_records(&section(&record), 1),
        Err(RecordError::Truncated {
            field: "record",
            ..
        })
    ));
    // Bytes after the last record.
    let record = [0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0xaa];
    assert!(matches!(
        decode_records(&section(&record), 1),
        Err(RecordError::TrailingBytes { extra: 1, .. })
    ));
    // Negative key lengths other than -1 are null, as in the Java client.
    let record = [0x0c, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00];
    let records = decode_records(&section(&record), 1).unwrap();
    assert_eq!(records[0].key, None);
    // Counts beyond what the bytes could hold fail before allocating.
    assert!(matches!(
        decode_records(&section(&record), i32::MAX),
        Err(RecordError::RecordCountExceedsBytes { .. })
    ));
    assert!(matches!(
        decode_records(&section(&record), -1),
        Err(RecordError::RecordCountExceedsBytes { .. })
    ));
}

#[test]
fn decode_batch_wants_exactly_one_valid_batch() {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(1, None, None, Vec::new()).unwrap();
    let batch = builder.build().unwrap();
    let mut two = batch.clone();
    two.extend_from_slice(&batch);
    assert!(matches!(
        decode_batch(&two, LIMIT),
        Err(RecordError::NotOneBatch { .. })
    ));
    let mut corrupt = batch.clone();
    *corrupt.last_mut().unwrap() ^= 1;
    assert!(matches!(
        decode_batch(&corrupt, LIMIT),
        Err(RecordError::Batch(BatchError::CrcMismatch { .. }))
    ));
    // A compressed batch claiming 2^31-1 records fails once inflated.
    let mut builder = BatchBuilder::new(Compression::Gzip).last_offset_delta(i32::MAX - 1);
    builder.append(1, None, None, Vec::new()).unwrap();
    let mut claims = builder.build().unwrap();
    claims[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    fix_crc(&mut claims);
    assert!(matches!(
        decode_batch(&claims, LIMIT),
        Err(RecordError::RecordCountExceedsBytes { .. })
    ));
}

fn bytes_strategy(len_max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..len_max).prop_map(Bytes::from)
}

fn header_strategy() -> impl Strategy<Value = Header> {
    (bytes_strategy(12), prop::option::of(bytes_strategy(12)))
        .prop_map(|(key, value)| Header { key, value })
}

/// Records with increasing offset deltas (gaps allowed, as after
/// compaction) and timestamp deltas that may run backwards (by up to
/// 100,000: a base timestamp at least that keeps every timestamp valid).
fn records_strategy() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(
        (
            0i32..3,
            -100_000i64..100_000,
            prop::option::of(bytes_strategy(24)),
            prop::option::of(bytes_strategy(300)),
            prop::collection::vec(header_strategy(), 0..3),
        ),
        0..20,
    )
    .prop_map(|parts| {
        let mut offset_delta = -1;
        parts
            .into_iter()
            .map(|(gap, timestamp_delta, key, value, headers)| {
                offset_delta += 1 + gap;
                Record {
                    offset_delta,
                    timestamp_delta,
                    key,
                    value,
                    headers,
                }
            })
            .collect()
    })
}

fn build(codec: Compression, base_offset: i64, base_timestamp: i64, records: &[Record]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec)
        .base_offset(base_offset)
        .base_timestamp(base_timestamp)
        .producer(77, 3, 1234);
    for record in records {
        builder.push(record).unwrap();
    }
    builder.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_codec_round_trips_random_records(
        records in records_strategy(),
        base_offset in 0i64..1 << 40,
        base_timestamp in 100_000i64..1 << 42,
    ) {
        for codec in CODECS {
            let batch = build(codec, base_offset, base_timestamp, &records);
            let decoded = decode_batch(&batch, LIMIT).unwrap();
            let shared = decode_shared_batch(&Bytes::from(batch.clone()), LIMIT).unwrap();
            prop_assert_eq!(&shared, &decoded);
            prop_assert_eq!(&decoded.records, &records);
            // Handing the records over places them as lending them does.
            let lent: Vec<(i64, i64, Record)> = decoded
                .iter()
                .map(|r| (r.offset, r.timestamp, r.record.clone()))
                .collect();
            let handed: Vec<(i64, i64, Record)> = shared.into_records().collect();
            prop_assert_eq!(lent, handed);
            prop_assert_eq!(decoded.compression, codec);
            prop_assert_eq!(decoded.base_offset, base_offset);
            prop_assert_eq!(decoded.base_timestamp, base_timestamp);
            prop_assert_eq!(decoded.producer_id, 77);
            prop_assert_eq!(decoded.producer_epoch, 3);
            prop_assert_eq!(decoded.base_sequence, 1234);
            prop_assert_eq!(decoded.last_offset_delta, records.last().map_or(0, |r| r.offset_delta));
            let max_delta = records.iter().map(|r| r.timestamp_delta).max();
            prop_assert_eq!(decoded.max_timestamp, base_timestamp + max_delta.unwrap_or(0));
        }
    }

    #[test]
    fn mutated_batches_decode_or_fail_without_panicking(
        records in records_strategy(),
        codec_index in 0usize..5,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
        refresh_crc in any::<bool>(),
    ) {
        let mut batch = build(CODECS[codec_index], 0, 100_000, &records);
        for (at, flip) in mutations {
            // Mutate past the batch length field so most cases reach the
            // record and codec decoders rather than stopping at the header.
            let at = 12 + at.index(batch.len() - 12);
            batch[at] ^= flip;
        }
        if refresh_crc {
            fix_crc(&mut batch);
        }
        // Sharing the buffer changes no outcome.
        prop_assert_eq!(
            decode_shared_batch(&Bytes::from(batch.clone()), LIMIT),
            decode_batch(&batch, LIMIT)
        );
        // Whatever decodes, and has offsets the builder accepts (decoding
        // does not require them to increase), survives a rebuild unchanged.
        if let Ok(decoded) = decode_batch(&batch, LIMIT) {
            let mut builder = BatchBuilder::new(decoded.compression)
                .base_offset(decoded.base_offset)
                .base_timestamp(decoded.base_timestamp)
                .last_offset_delta(decoded.last_offset_delta);
            if decoded.records.iter().try_for_each(|r| builder.push(r)).is_ok()
                && let Ok(rebuilt) = builder.build()
            {
                // A mutated timestamp may make the rebuilt batch's max
                // timestamp one the builder refuses; what it builds decodes.
                let again = decode_batch(&rebuilt, LIMIT).unwrap();
                prop_assert_eq!(again.records, decoded.records);
            }
        }
    }

    #[test]
    fn arbitrary_sections_decode_or_fail_without_panicking(
        section in prop::collection::vec(any::<u8>(), 0..200),
        record_count in -2i32..40,
    ) {
        let _ = raw_records(&section, record_count).count();
        let _ = decode_records(&Bytes::from(section), record_count);
    }

    #[test]
    fn raw_records_read_what_decoding_reads_and_copy_back_verbatim(records in records_strategy()) {
        let batch = build(Compression::None, 0, 100_000, &records);
        let view = BatchView::parse(&batch).unwrap().0;
        let raw: Vec<_> = raw_records(view.records_bytes(), view.record_count())
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(raw.len(), records.len());
        let mut copied = Vec::new();
        for (raw, record) in raw.iter().zip(&records) {
            prop_assert_eq!(raw.offset_delta, record.offset_delta);
            prop_assert_eq!(raw.timestamp_delta, record.timestamp_delta);
            prop_assert_eq!(raw.key, record.key.as_deref());
            prop_assert_eq!(raw.value_is_null, record.value.is_none());
            copied.extend_from_slice(raw.bytes);
        }
        prop_assert_eq!(&copied[..], view.records_bytes());
    }

    #[test]
    fn arbitrary_streams_decompress_or_fail_without_panicking(
        stream in prop::collection::vec(any::<u8>(), 0..200),
        prefix in 0usize..5,
    ) {
        // Start some streams with each codec's magic to get past it.
        let magics: [&[u8]; 5] = [
            b"",
            &[0x1f, 0x8b, 0x08, 0x00],
            b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01",
            &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82],
            &[0x28, 0xb5, 0x2f, 0xfd],
        ];
        let input = [magics[prefix], &stream].concat();
        for codec in CODECS {
            let mut out = Vec::new();
            let _ = rill_records::compression::decompress(codec, &input, 4096, &mut out);
            prop_assert!(out.len() <= 4096);
        }
    }
}
