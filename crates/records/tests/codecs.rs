//! The codecs: round trips, Kafka's framing details, the output limit, and
//! corrupt input.

use std::io::Write;

use rill_records::batch::Compression;
use rill_records::compression::{CompressionError, SNAPPY_BLOCK_LEN, compress, decompress};

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Text-like data that compresses, but not to nothing.
fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44] ^ (i / 997) as u8)
        .collect()
}

fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress(codec, input, &mut out).unwrap();
    out
}

#[test]
fn every_codec_round_trips_empty_small_and_multi_block_inputs() {
    for codec in ALL {
        for len in [
            0,
            1,
            100,
            SNAPPY_BLOCK_LEN,
            3 * SNAPPY_BLOCK_LEN + 17,
            300_000,
        ] {
            let input = sample(len);
            let packed = compressed(codec, &input);
            let mut out = b"prefix".to_vec();
            decompress(codec, &packed, len, &mut out).unwrap();
            assert_eq!(&out[..6], b"prefix", "{codec:?} must append");
            assert_eq!(&out[6..], &input[..], "{codec:?} len {len}");
        }
    }
}

#[test]
fn snappy_is_written_in_xerial_framing_with_32_kib_blocks() {
    let input = sample(80_000);
    let packed = compressed(Compression::Snappy, &input);
    assert_eq!(&packed[..8], b"\x82SNAPPY\0");
    assert_eq!(&packed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
    let mut rest = &packed[16..];
    let mut blocks = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let block = &rest[4..4 + len];
        blocks.push(snap::raw::Decoder::new().decompress_vec(block).unwrap());
        rest = &rest[4 + len..];
    }
    let lens: Vec<usize> = blocks.iter().map(Vec::len).collect();
    assert_eq!(lens, [32_768, 32_768, 14_464]);
    assert_eq!(blocks.concat(), input);
}

#[test]
fn snappy_empty_input_still_has_a_block() {
    // librdkafka takes a stream as xerial only when it is longer than 20 bytes.
    let packed = compressed(Compression::Snappy, b"");
    assert!(packed.len() > 20, "{packed:?}");
}

#[test]
fn snappy_reads_raw_blocks_as_librdkafka_writes_them() {
    let input = sample(50_000);
    let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
    let mut out = Vec::new();
    decompress(Compression::Snappy, &raw, input.len(), &mut out).unwrap();
    assert_eq!(out, input);
}

#[test]
fn snappy_xerial_header_alone_is_empty() {
    let mut out = Vec::new();
    decompress(
        Compression::Snappy,
        b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01",
        10,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
}

#[test]
fn lz4_is_an_lz4_frame_with_independent_blocks() {
    let packed = compressed(Compression::Lz4, &sample(200_000));
    assert_eq!(&packed[..4], &[0x04, 0x22, 0x4d, 0x18], "frame magic");
    let flags = packed[4];
    assert_eq!(flags >> 6, 0b01, "frame version 01");
    assert_ne!(flags & 0x20, 0, "block independence flag");
    assert_eq!(flags & 0x10, 0, "no block checksums");
    // Block maximum size 64 KiB, which every Kafka client accepts.
    assert_eq!((packed[5] >> 4) & 0x07, 4);
}

#[test]
fn gzip_reads_concatenated_members() {
    let mut stream = Vec::new();
    for part in [&b"first "[..], b"second"] {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(part).unwrap();
        stream.extend(encoder.finish().unwrap());
    }
    let mut out = Vec::new();
    decompress(Compression::Gzip, &stream, 100, &mut out).unwrap();
    assert_eq!(out, b"first second");
}

#[test]
fn zstd_reads_concatenated_frames() {
    let mut stream = zstd::encode_all(&b"one "[..], 1).unwrap();
    stream.extend(zstd::encode_all(&b"two"[..], 1).unwrap());
    let mut out = Vec::new();
    decompress(Compression::Zstd, &stream, 100, &mut out).unwrap();
    assert_eq!(out, b"one two");
}

#[test]
fn output_past_the_limit_is_refused_and_at_the_limit_accepted() {
    let input = vec![0u8; 1 << 20];
    for codec in ALL {
        let packed = compressed(codec, &input);
        let mut out = Vec::new();
        decompress(codec, &packed, input.len(), &mut out).unwrap();
        assert_eq!(out.len(), input.len());
        let mut out = Vec::new();
        let error = decompress(codec, &packed, input.len() - 1, &mut out).unwrap_err();
        assert!(
            matches!(error, CompressionError::TooLarge { limit, .. } if limit == input.len() - 1),
            "{codec:?}: {error}"
        );
        assert!(out.len() < input.len(), "{codec:?}");
    }
}

#[test]
fn raw_snappy_claiming_a_huge_length_is_refused_before_allocating() {
    // A raw snappy block starts with its uncompressed length as a varint:
    // this one claims 4 GiB - 1 and holds nothing.
    let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let mut out = Vec::new();
    let error = decompress(Compression::Snappy, &bomb, 1 << 20, &mut out).unwrap_err();
    assert!(
        matches!(error, CompressionError::TooLarge { .. }),
        "{error}"
    );
    assert_eq!(out.capacity(), 0);
}

#[test]
fn corrupt_and_truncated_streams_are_errors() {
    let input = sample(10_000);
    for codec in ALL {
        if codec == Compression::None {
            continue;
        }
        let packed = compressed(codec, &input);
        for cut in [1, packed.len() / 2, packed.len() - 1] {
            let mut out = Vec::new();
            let result = decompress(codec, &packed[..cut], input.len(), &mut out);
            assert!(
                matches!(result, Err(CompressionError::Corrupt { .. })),
                "{codec:?} cut at {cut}: {result:?}"
            );
        }
        let mut out = Vec::new();
        let garbage = vec![0x5au8; 64];
        assert!(
            decompress(codec, &garbage, 1000, &mut out).is_err(),
            "{codec:?}"
        );
    }
}

#[test]
fn xerial_block_longer_than_the_stream_is_corrupt() {
    let mut stream = b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01".to_vec();
    stream.extend_from_slice(&u32::MAX.to_be_bytes());
    stream.extend_from_slice(b"abc");
    let mut out = Vec::new();
    let error = decompress(Compression::Snappy, &stream, 1 << 20, &mut out).unwrap_err();
    assert!(matches!(error, CompressionError::Corrupt { .. }), "{error}");
}

#[test]
fn zstd_frame_demanding_a_2_gib_window_is_refused() {
    // Magic, a descriptor without content size, and a window descriptor of
    // exponent 21: a 2^31-byte window.
    let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x01, 0x00, 0x00];
    let mut out = Vec::new();
    let error = decompress(Compression::Zstd, &frame, 1 << 20, &mut out).unwrap_err();
    assert!(matches!(error, CompressionError::Corrupt { .. }), "{error}");
}
