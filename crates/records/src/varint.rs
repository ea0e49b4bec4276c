//! Variable-length integers as the record format v2 writes them.
//!
//! Kafka borrows Protocol Buffers' encoding: an unsigned value is written
//! seven bits at a time, least significant group first, with the high bit of
//! each byte set when another byte follows. Signed record fields (lengths,
//! deltas, counts) are first zigzag-mapped (0, -1, 1, -2, ... to 0, 1, 2, 3,
//! ...) so that small negative numbers such as -1 ("null") stay one byte.
//!
//! Decoding is strict: a 32-bit value takes at most 5 bytes and a 64-bit value
//! at most 10, and the last byte may not carry bits that do not fit. Padded
//! encodings within those widths (0x80 0x00 for 0) are accepted, as the Java
//! client accepts them. Every decoder returns the value and the number of
//! bytes it consumed.

use thiserror::Error;

/// The most bytes a 32-bit varint can take: 5 groups of 7 bits cover 35 bits.
pub const VARINT_LEN_MAX: usize = 5;
/// The most bytes a 64-bit varint can take: 10 groups of 7 bits cover 70 bits.
pub const VARLONG_LEN_MAX: usize = 10;

/// Why bytes do not hold a well-formed varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VarintError {
    /// The input ended while a continuation bit promised another byte.
    #[error("varint is truncated: the input ended after {read} bytes with more promised")]
    Truncated { read: usize },
    /// The encoding runs past the width of the target integer.
    #[error("varint does not fit in {bits} bits")]
    Overflow { bits: u32 },
}

/// Reads an unsigned varint of at most 32 bits from the start of `buf`.
#[inline]
pub fn read_unsigned_varint(buf: &[u8]) -> Result<(u32, usize), VarintError> {
    let (value, len) = read_unsigned(buf, 32)?;
    // `read_unsigned` rejects any bit at or above `bits`.
    Ok((value as u32, len))
}

/// Reads an unsigned varint of at most 64 bits from the start of `buf`.
#[inline]
pub fn read_unsigned_varlong(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    read_unsigned(buf, 64)
}

/// Reads a zigzag-encoded 32-bit varint from the start of `buf`.
#[inline]
pub fn read_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, len) = read_unsigned_varint(buf)?;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), len))
}

/// Reads a zigzag-encoded 64-bit varlong from the start of `buf`.
#[inline]
pub fn read_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, len) = read_unsigned_varlong(buf)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), len))
}

/// Appends `value` as an unsigned varint.
pub fn put_unsigned_varint(out: &mut Vec<u8>, value: u32) {
    put_unsigned(out, u64::from(value));
}

/// Appends `value` as an unsigned varlong.
pub fn put_unsigned_varlong(out: &mut Vec<u8>, value: u64) {
    put_unsigned(out, value);
}

/// Appends `value` as a zigzag-encoded varint.
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned_varint(out, zigzag32(value));
}

/// Appends `value` as a zigzag-encoded varlong.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned_varlong(out, zigzag64(value));
}

/// Bytes [`put_unsigned_varint`] writes for `value`.
pub fn unsigned_varint_len(value: u32) -> usize {
    unsigned_len(u64::from(value))
}

/// Bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag32(value)))
}

/// Bytes [`put_varlong`] writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Decodes an unsigned varint whose value must fit in `bits` (32 or 64).
#[inline]
fn read_unsigned(buf: &[u8], bits: u32) -> Result<(u64, usize), VarintError> {
    // Most fields of a record (a length below 8 KiB, a small delta, a
    // count) take one or two bytes, which cannot overflow 32 bits: read
    // without the loop. Decoding a consumer's records spent 2 % of the
    // client's CPU here.
    match buf {
        [first, ..] if first & 0x80 == 0 => return Ok((u64::from(*first), 1)),
        [first, second, ..] if second & 0x80 == 0 => {
            return Ok((u64::from(first & 0x7f) | (u64::from(*second) << 7), 2));
        }
        _ => {}
    }
    read_unsigned_long(buf, bits)
}

/// [`read_unsigned`] past two bytes, and every error.
fn read_unsigned_long(buf: &[u8], bits: u32) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    let mut shift: u32 = 0;
    // Bounded by the input length and, through the overflow check, by
    // `bits / 7 + 1` iterations.
    for (index, &byte) in buf.iter().enumerate() {
        let group = u64::from(byte & 0x7f);
        // The bits of this group that land at or above `bits` must be zero;
        // `shift < bits` holds here, so the shifts below stay in range.
        if bits - shift < 7 && group >> (bits - shift) != 0 {
            return Err(VarintError::Overflow { bits });
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
        shift += 7;
        if shift >= bits {
            return Err(VarintError::Overflow { bits });
        }
    }
    Err(VarintError::Truncated { read: buf.len() })
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    // One byte per started group of 7 significant bits, and at least one.
    let significant_bits = 64 - value.leading_zeros() as usize;
    significant_bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings_match_kafka() {
        // Values and bytes from the zigzag definition: 0->0, -1->1, 1->2, ...
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(read_varint(bytes), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn extreme_varlongs_take_ten_bytes() {
        for value in [i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), VARLONG_LEN_MAX);
            assert_eq!(varlong_len(value), VARLONG_LEN_MAX);
            assert_eq!(read_varlong(&out), Ok((value, VARLONG_LEN_MAX)));
        }
    }

    #[test]
    fn truncated_and_overlong_inputs_are_errors() {
        assert_eq!(read_varint(&[]), Err(VarintError::Truncated { read: 0 }));
        assert_eq!(
            read_varint(&[0x80, 0x80]),
            Err(VarintError::Truncated { read: 2 })
        );
        // A sixth byte is never allowed for 32 bits.
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(VarintError::Overflow { bits: 32 })
        );
        // The fifth byte may carry only the top 4 bits.
        assert_eq!(
            read_unsigned_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(VarintError::Overflow { bits: 32 })
        );
        assert_eq!(
            read_unsigned_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Ok((u32::MAX, 5))
        );
        // The tenth byte may carry only the top bit of 64.
        let mut too_big = [0xffu8; 10];
        too_big[9] = 0x02;
        assert_eq!(
            read_varlong(&too_big),
            Err(VarintError::Overflow { bits: 64 })
        );
        too_big[9] = 0x01;
        assert_eq!(read_unsigned_varlong(&too_big), Ok((u64::MAX, 10)));
    }

    #[test]
    fn decoding_stops_at_the_first_complete_value() {
        assert_eq!(read_varint(&[0x02, 0xff, 0xff]), Ok((1, 1)));
    }
}
