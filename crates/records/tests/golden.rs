//! Batches written by a real client (kafka-python, compressing with zlib,
//! Google snappy, liblz4 and libzstd; see fixtures/make_kafka_python_batches.py)
//! decode to the records it was given, and Rill builds the uncompressed one
//! byte for byte.

use bytes::Bytes;
use rill_records::batch::{BatchView, Compression};
use rill_records::builder::BatchBuilder;
use rill_records::record::{DecodedBatch, Header, Record, decode_batch};

const NONE: &[u8] = include_bytes!("fixtures/kafka-python-none.bin");
const GZIP: &[u8] = include_bytes!("fixtures/kafka-python-gzip.bin");
const SNAPPY_XERIAL: &[u8] = include_bytes!("fixtures/kafka-python-snappy.bin");
const SNAPPY_RAW: &[u8] = include_bytes!("fixtures/kafka-python-snappy-raw.bin");
const LZ4: &[u8] = include_bytes!("fixtures/kafka-python-lz4.bin");
const ZSTD: &[u8] = include_bytes!("fixtures/kafka-python-zstd.bin");

const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// The records the generator appended, relative to the first timestamp.
fn expected_records() -> Vec<Record> {
    let header = |key: &'static [u8], value: Option<&'static [u8]>| Header {
        key: Bytes::from_static(key),
        value: value.map(Bytes::from_static),
    };
    vec![
        Record {
            offset_delta: 0,
            timestamp_delta: 0,
            key: Some(Bytes::from_static(b"key-0")),
            value: Some(Bytes::from(b"value-0 ".repeat(30))),
            headers: vec![header(b"h1", Some(b"v1")), header(b"h2", None)],
        },
        Record {
            offset_delta: 1,
            timestamp_delta: 5,
            key: None,
            value: Some(Bytes::from(b"value-1 ".repeat(30))),
            headers: Vec::new(),
        },
        Record {
            offset_delta: 2,
            timestamp_delta: -3,
            key: Some(Bytes::from_static(b"key-2")),
            value: None,
            headers: vec![header(b"h3", Some(b""))],
        },
    ]
}

fn check(batch: &[u8], codec: Compression) -> DecodedBatch {
    let decoded = decode_batch(batch, 1 << 20).unwrap();
    assert_eq!(decoded.compression, codec);
    assert_eq!(decoded.records, expected_records(), "{codec:?}");
    assert_eq!(decoded.base_timestamp, BASE_TIMESTAMP);
    assert_eq!(decoded.max_timestamp, BASE_TIMESTAMP + 5);
    assert_eq!(decoded.producer_id, 4242);
    assert_eq!(decoded.producer_epoch, 7);
    assert_eq!(decoded.base_sequence, 100);
    assert_eq!(decoded.last_offset_delta, 2);
    let timestamps: Vec<i64> = decoded
        .iter()
        .map(|r| r.timestamp - BASE_TIMESTAMP)
        .collect();
    assert_eq!(timestamps, [0, 5, -3]);
    decoded
}

#[test]
fn kafka_python_batches_decode_with_every_codec() {
    check(NONE, Compression::None);
    check(GZIP, Compression::Gzip);
    check(SNAPPY_XERIAL, Compression::Snappy);
    check(SNAPPY_RAW, Compression::Snappy);
    check(LZ4, Compression::Lz4);
    check(ZSTD, Compression::Zstd);
}

#[test]
fn the_fixtures_use_the_framings_clients_send() {
    let records = |batch: &'static [u8]| BatchView::parse(batch).unwrap().0.records_bytes();
    assert!(records(SNAPPY_XERIAL).starts_with(b"\x82SNAPPY\0"));
    assert!(!records(SNAPPY_RAW).starts_with(b"\x82SNAPPY\0"));
    // liblz4 records the content size in the frame header (flag 0x08).
    assert_eq!(records(LZ4)[..4], [0x04, 0x22, 0x4d, 0x18]);
    assert_ne!(records(LZ4)[4] & 0x08, 0);
}

#[test]
fn rill_builds_the_uncompressed_batch_byte_for_byte() {
    let mut builder = BatchBuilder::new(Compression::None)
        .partition_leader_epoch(0)
        .producer(4242, 7, 100);
    for record in expected_records() {
        builder
            .append(
                BASE_TIMESTAMP + record.timestamp_delta,
                record.key,
                record.value,
                record.headers,
            )
            .unwrap();
    }
    assert_eq!(builder.build().unwrap(), NONE);
}

/// librdkafka's batches (confluent-kafka, idempotent, ~330 records; kcat,
/// two keyed records), as captured on the wire: every record decodes, with
/// consecutive offset deltas and the batch's producer fields.
#[test]
fn librdkafka_batches_decode() {
    let fixtures: [(&[u8], Compression, usize); 5] = [
        (
            include_bytes!("fixtures/librdkafka-none.bin"),
            Compression::None,
            338,
        ),
        (
            include_bytes!("fixtures/librdkafka-gzip.bin"),
            Compression::Gzip,
            337,
        ),
        (
            include_bytes!("fixtures/librdkafka-snappy.bin"),
            Compression::Snappy,
            337,
        ),
        (
            include_bytes!("fixtures/librdkafka-zstd.bin"),
            Compression::Zstd,
            337,
        ),
        (
            include_bytes!("fixtures/kcat-small.bin"),
            Compression::None,
            2,
        ),
    ];
    for (bytes, codec, count) in fixtures {
        let batch = decode_batch(bytes, 1 << 20).unwrap();
        assert_eq!(batch.compression, codec);
        assert_eq!(batch.records.len(), count);
        for (index, record) in batch.records.iter().enumerate() {
            assert_eq!(record.offset_delta, index as i32);
            assert!(record.value.is_some());
        }
        assert_eq!(batch.last_offset_delta as usize, count - 1);
        if count > 2 {
            assert!(batch.producer_id >= 0, "written with enable.idempotence");
        }
    }
}
