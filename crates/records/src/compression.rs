//! The four record batch codecs, framed exactly as Kafka clients frame them.
//!
//! A v2 batch compresses its whole records section as one stream. What each
//! codec's stream looks like on the wire (checked against the Java client's
//! `KafkaLZ4BlockInputStream`/snappy-java `SnappyInputStream` and librdkafka's
//! `rdkafka_msgset_reader.c`/`snappy.c`):
//!
//! - gzip: an RFC 1952 stream. Decoding accepts concatenated members, as the
//!   Java client's `GZIPInputStream` does.
//! - snappy: the Java client writes snappy-java's "xerial" framing (magic
//!   `\x82SNAPPY\0`, two big-endian i32s for version and compatible version,
//!   then blocks each prefixed with a big-endian i32 length), and so does
//!   kafka-python; librdkafka writes one raw snappy block. Both readers take
//!   both (snappy-java falls back to raw when the magic is missing), so
//!   decoding takes both and encoding writes the xerial framing, as the Java
//!   client and the Kafka broker do.
//! - lz4: the LZ4 frame format (magic 0x184D2204). The Java reader decodes
//!   each block on its own, so encoding uses independent 64 KiB blocks, and
//!   it rejects a frame without its end mark, so decoding does too. The
//!   broken header checksum of old clients only ever applied to magic 0.
//! - zstd: standard zstd frames, possibly several in a row.
//!
//! Decompression takes a `limit` on its output: a batch of a few KiB can
//! claim gigabytes (a "zip bomb"), so output is never allowed to grow past
//! the limit, and the buffer is never reserved beyond it either.

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::batch::Compression;

/// gzip level used when compressing: zlib's default, which the Java client
/// also uses by default.
pub const GZIP_LEVEL: u32 = 6;
/// zstd level used when compressing: zstd's default, the Java client's too.
pub const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window the decoder accepts, as a power of two (128 MiB).
/// This is libzstd's own default limit, the one every Kafka client decodes
/// with; the window is allocated on top of the output limit, so it bounds
/// the memory a hostile zstd frame can claim beyond `limit`.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// The most bytes one batch's records section may hold once inflated,
/// wherever the broker decodes a batch (the append checks, the cleaner, the
/// group coordinator's replay, offset lookups by time). Produce refuses a
/// batch past it, so everything appended since decodes within it. Batches
/// are at most `max.message.bytes` (1 MiB by default) on the wire, and real
/// records rarely compress by more than 10 to 20 times; 64 MiB leaves room
/// for that while bounding what a "zip bomb" of a few KiB can cost one
/// decode (this, plus the zstd window, `ZSTD_WINDOW_LOG_MAX`).
pub const INFLATED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Uncompressed bytes per xerial snappy block: snappy-java's default block
/// size, so our blocks look like the Java client's.
pub const SNAPPY_BLOCK_LEN: usize = 32 * 1024;

/// The xerial framing's magic: 0x82 then "SNAPPY" and a NUL.
const XERIAL_MAGIC: [u8; 8] = *b"\x82SNAPPY\0";
/// Magic, version (i32) and compatible version (i32).
const XERIAL_HEADER_LEN: usize = XERIAL_MAGIC.len() + 8;
/// Version 1, compatible with version 1: what snappy-java writes.
const XERIAL_VERSIONS: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 1];
/// Bytes of the length prefix in front of each xerial block.
const XERIAL_BLOCK_LENGTH_LEN: usize = 4;
/// The LZ4 frame format's magic number, little-endian on the wire.
const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

/// Size of the scratch buffer streaming decoders write into.
const READ_CHUNK_LEN: usize = 16 * 1024;

/// Why a codec could not produce or take apart a records section.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompressionError {
    /// The data expands past the caller's limit.
    #[error("{codec} data decompresses to more than the limit of {limit} bytes")]
    TooLarge { codec: &'static str, limit: usize },
    /// The data is not a valid stream of the codec.
    #[error("{codec} data is corrupt: {detail}")]
    Corrupt { codec: &'static str, detail: String },
    /// The encoder failed (it only can on inputs far beyond batch sizes).
    #[error("{codec} compression failed: {detail}")]
    Encode { codec: &'static str, detail: String },
}

/// The codec's name as Kafka's `compression.type` spells it.
pub fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// Appends `input` compressed with `codec` to `out`.
pub fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let encode_error = |error: io::Error| CompressionError::Encode {
        codec: codec_name(codec),
        detail: error.to_string(),
    };
    match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            encoder.write_all(input).map_err(encode_error)?;
            encoder.finish().map_err(encode_error)?;
            Ok(())
        }
        Compression::Snappy => compress_xerial_snappy(input, out),
        Compression::Lz4 => {
            // 64 KiB independent blocks, as the Java client writes them.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            encoder.write_all(input).map_err(encode_error)?;
            encoder
                .finish()
                .map_err(|error| encode_error(io::Error::other(error)))?;
            Ok(())
        }
        Compression::Zstd => {
            let mut encoder =
                zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(encode_error)?;
            // Recording the size in the frame lets decoders size their output
            // at once instead of growing it.
            encoder.include_contentsize(true).map_err(encode_error)?;
            encoder
                .set_pledged_src_size(Some(input.len() as u64))
                .map_err(encode_error)?;
            encoder.write_all(input).map_err(encode_error)?;
            encoder.finish().map_err(encode_error)?;
            Ok(())
        }
    }
}

/// The limit `decompress` puts on an uncompressed records section, for a
/// caller that uses the section in place rather than copying it.
pub(crate) fn check_uncompressed_len(len: usize, limit: usize) -> Result<(), CompressionError> {
    if len > limit {
        return Err(CompressionError::TooLarge {
            codec: codec_name(Compression::None),
            limit,
        });
    }
    Ok(())
}

/// Appends the decompression of `input` with `codec` to `out`, failing with
/// [`CompressionError::TooLarge`] as soon as the output would exceed `limit`
/// bytes. On error, `out` may hold part of the output.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let name = codec_name(codec);
    match codec {
        Compression::None => {
            check_uncompressed_len(input.len(), limit)?;
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Snappy => decompress_snappy(input, limit, out),
        Compression::Gzip | Compression::Lz4 | Compression::Zstd => {
            let start = out.len();
            stream_bounded(name, stream_decoder(codec, input)?, limit, |chunk| {
                reserve_within(out, chunk.len(), start + limit);
                out.extend_from_slice(chunk);
            })
            .map(drop)
        }
    }
}

/// How many bytes `input` inflates to with `codec`, failing with
/// [`CompressionError::TooLarge`] once that passes `limit`. Nothing of the
/// output is kept: the stream is decoded through a small buffer (plus the
/// codec's own window), so checking a batch claims no memory in proportion
/// to what it inflates to. Snappy blocks state their length up front, so
/// for snappy the stated lengths are added up without decoding.
pub fn inflated_len(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<usize, CompressionError> {
    if codec != Compression::Snappy {
        return for_each_inflated(codec, input, limit, |_| {});
    }
    let mut total = 0usize;
    for_each_snappy_block(input, |block| {
        let claimed =
            snap::raw::decompress_len(block).map_err(|error| snappy_corrupt(error.to_string()))?;
        if claimed > limit - total {
            return Err(CompressionError::TooLarge {
                codec: "snappy",
                limit,
            });
        }
        total += claimed;
        Ok(())
    })?;
    Ok(total)
}

/// A batch's records section, uncompressed: the batch's own bytes, or
/// `scratch` filled with them inflated (up to `limit`). The compression code
/// must be valid (`BatchView::validate` checks it).
pub fn records_section<'a>(
    view: &crate::batch::BatchView<'a>,
    limit: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], CompressionError> {
    let codec = view.compression().unwrap_or(Compression::None);
    if codec == Compression::None {
        return Ok(view.records_bytes());
    }
    scratch.clear();
    decompress(codec, view.records_bytes(), limit, scratch)?;
    Ok(scratch)
}

/// Inflates `input` and hands the output to `sink` piece by piece, failing
/// with [`CompressionError::TooLarge`] past `limit`; returns the inflated
/// length. Gzip, lz4 and zstd stream through a small buffer, so nothing in
/// proportion to the output is held; a snappy block is inflated whole (its
/// length is stated up front and checked against `limit` first).
pub fn for_each_inflated(
    codec: Compression,
    input: &[u8],
    limit: usize,
    mut sink: impl FnMut(&[u8]),
) -> Result<usize, CompressionError> {
    let name = codec_name(codec);
    match codec {
        Compression::None => {
            check_uncompressed_len(input.len(), limit)?;
            sink(input);
            Ok(input.len())
        }
        Compression::Snappy => {
            let mut block_out = Vec::new();
            let mut total = 0usize;
            for_each_snappy_block(input, |block| {
                block_out.clear();
                decompress_snappy_block(block, 0, limit - total, &mut block_out)?;
                total += block_out.len();
                sink(&block_out);
                Ok(())
            })?;
            Ok(total)
        }
        Compression::Gzip | Compression::Lz4 | Compression::Zstd => {
            stream_bounded(name, stream_decoder(codec, input)?, limit, sink)
        }
    }
}

/// The streaming decoder of a codec that has one (gzip, lz4, zstd).
fn stream_decoder<'a>(
    codec: Compression,
    input: &'a [u8],
) -> Result<Box<dyn Read + 'a>, CompressionError> {
    let name = codec_name(codec);
    let corrupt = |error: io::Error| CompressionError::Corrupt {
        codec: name,
        detail: error.to_string(),
    };
    match codec {
        Compression::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(input))),
        Compression::Lz4 => {
            check_lz4_frames(input)?;
            Ok(Box::new(lz4_flex::frame::FrameDecoder::new(input)))
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(corrupt)?;
            Ok(Box::new(decoder))
        }
        Compression::None | Compression::Snappy => Err(CompressionError::Corrupt {
            codec: name,
            detail: "no streaming decoder for this codec".to_string(),
        }),
    }
}

/// Hands everything `reader` yields to `sink`, chunk by chunk, and returns
/// how many bytes that was; fails once it would pass `limit`.
fn stream_bounded(
    codec: &'static str,
    mut reader: impl Read,
    limit: usize,
    mut sink: impl FnMut(&[u8]),
) -> Result<usize, CompressionError> {
    let mut chunk = [0u8; READ_CHUNK_LEN];
    let mut written = 0usize;
    // Each turn either ends the loop or hands on at least one byte, and the
    // total is bounded by `limit`, so this loop is bounded too.
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => return Ok(written),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(CompressionError::Corrupt {
                    codec,
                    detail: error.to_string(),
                });
            }
        };
        if read > limit - written {
            return Err(CompressionError::TooLarge { codec, limit });
        }
        sink(&chunk[..read]);
        written += read;
    }
}

/// Makes room for `additional` more bytes in `out` with the usual doubling,
/// but never reserving past `capacity_max` (which must allow the addition).
fn reserve_within(out: &mut Vec<u8>, additional: usize, capacity_max: usize) {
    let needed = out.len() + additional;
    if needed <= out.capacity() {
        return;
    }
    let target = out
        .capacity()
        .saturating_mul(2)
        .clamp(needed, capacity_max.max(needed));
    out.reserve_exact(target - out.len());
}

/// Checks that `input` is a sequence of complete LZ4 frames, walking the
/// frame and block headers without decompressing. The decoder alone would
/// take a stream cut at a block boundary as a shorter, valid one; Kafka's
/// Java reader rejects it, and so does this.
fn check_lz4_frames(mut input: &[u8]) -> Result<(), CompressionError> {
    const FLAG_BLOCK_CHECKSUM: u8 = 0x10;
    const FLAG_CONTENT_SIZE: u8 = 0x08;
    const FLAG_CONTENT_CHECKSUM: u8 = 0x04;
    const FLAG_DICTIONARY_ID: u8 = 0x01;
    const BLOCK_UNCOMPRESSED_BIT: u32 = 0x8000_0000;
    let corrupt = |detail: &str| CompressionError::Corrupt {
        codec: "lz4",
        detail: detail.to_string(),
    };
    let take = |input: &mut &[u8], len: usize, what: &str| -> Result<(), CompressionError> {
        if input.len() < len {
            return Err(corrupt(&format!("frame ends inside its {what}")));
        }
        *input = &input[len..];
        Ok(())
    };
    if input.is_empty() {
        return Err(corrupt("stream is empty"));
    }
    // Each frame consumes at least its 7-byte header; each block at least
    // its 4-byte size.
    while !input.is_empty() {
        let Some((&[m0, m1, m2, m3, flags, _block_descriptor], _)) = input.split_first_chunk::<6>()
        else {
            return Err(corrupt("frame ends inside its header"));
        };
        if u32::from_le_bytes([m0, m1, m2, m3]) != LZ4_FRAME_MAGIC {
            return Err(corrupt("frame does not start with the LZ4 frame magic"));
        }
        let mut header_len = 7; // magic, flags, block descriptor, header checksum
        if flags & FLAG_CONTENT_SIZE != 0 {
            header_len += 8;
        }
        if flags & FLAG_DICTIONARY_ID != 0 {
            header_len += 4;
        }
        take(&mut input, header_len, "header")?;
        let block_checksum_len = if flags & FLAG_BLOCK_CHECKSUM != 0 {
            4
        } else {
            0
        };
        loop {
            let Some((size, _)) = input.split_first_chunk::<4>() else {
                return Err(corrupt("frame ends before its end mark"));
            };
            let size = u32::from_le_bytes(*size);
            take(&mut input, 4, "block size")?;
            if size == 0 {
                break;
            }
            let data_len = (size & !BLOCK_UNCOMPRESSED_BIT) as usize;
            take(&mut input, data_len + block_checksum_len, "block")?;
        }
        if flags & FLAG_CONTENT_CHECKSUM != 0 {
            take(&mut input, 4, "content checksum")?;
        }
    }
    Ok(())
}

fn compress_xerial_snappy(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSIONS);
    let mut encoder = snap::raw::Encoder::new();
    // An empty input still gets one (empty) block: librdkafka only takes a
    // stream as xerial-framed when it is longer than the bare header.
    if input.is_empty() {
        return put_xerial_block(&mut encoder, input, out);
    }
    for block in input.chunks(SNAPPY_BLOCK_LEN) {
        put_xerial_block(&mut encoder, block, out)?;
    }
    Ok(())
}

/// Appends one length-prefixed raw snappy block of at most
/// [`SNAPPY_BLOCK_LEN`] uncompressed bytes.
fn put_xerial_block(
    encoder: &mut snap::raw::Encoder,
    block: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let length_at = out.len();
    let block_at = length_at + XERIAL_BLOCK_LENGTH_LEN;
    out.resize(block_at + snap::raw::max_compress_len(block.len()), 0);
    let written = encoder
        .compress(block, &mut out[block_at..])
        .map_err(|error| CompressionError::Encode {
            codec: "snappy",
            detail: error.to_string(),
        })?;
    out.truncate(block_at + written);
    // A block of at most 32 KiB compresses to well under 4 GiB.
    let written = u32::try_from(written).map_err(|_| CompressionError::Encode {
        codec: "snappy",
        detail: format!("block compressed to {written} bytes"),
    })?;
    out[length_at..block_at].copy_from_slice(&written.to_be_bytes());
    Ok(())
}

fn decompress_snappy(
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let start = out.len();
    for_each_snappy_block(input, |block| {
        decompress_snappy_block(block, start, limit, out)
    })
}

/// Calls `each` with every raw snappy block of `input`: the blocks of the
/// xerial framing (the Java client's), or `input` itself (librdkafka's one
/// raw block).
fn for_each_snappy_block(
    input: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<(), CompressionError>,
) -> Result<(), CompressionError> {
    let Some(mut rest) = input
        .strip_prefix(&XERIAL_MAGIC)
        .filter(|_| input.len() >= XERIAL_HEADER_LEN)
    else {
        return each(input);
    };
    // librdkafka ignores the two version fields, and so does Rill.
    rest = &rest[XERIAL_HEADER_LEN - XERIAL_MAGIC.len()..];
    // Each turn consumes at least the 4-byte length prefix.
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<XERIAL_BLOCK_LENGTH_LEN>() else {
            return Err(snappy_corrupt(format!(
                "xerial block length needs 4 bytes, {} remain",
                rest.len()
            )));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > tail.len() {
            return Err(snappy_corrupt(format!(
                "xerial block claims {length} bytes, {} remain",
                tail.len()
            )));
        }
        let (block, tail) = tail.split_at(length);
        each(block)?;
        rest = tail;
    }
    Ok(())
}

/// Appends one raw snappy block to `out`, provided the output since `start`
/// stays within `limit` bytes; the block's claimed length is checked before
/// any allocation.
fn decompress_snappy_block(
    block: &[u8],
    start: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let claimed =
        snap::raw::decompress_len(block).map_err(|error| snappy_corrupt(error.to_string()))?;
    if claimed > limit - (out.len() - start) {
        return Err(CompressionError::TooLarge {
            codec: "snappy",
            limit,
        });
    }
    let at = out.len();
    reserve_within(out, claimed, start + limit);
    out.resize(at + claimed, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[at..])
        .map_err(|error| snappy_corrupt(error.to_string()))?;
    out.truncate(at + written);
    Ok(())
}

fn snappy_corrupt(detail: String) -> CompressionError {
    CompressionError::Corrupt {
        codec: "snappy",
        detail,
    }
}
