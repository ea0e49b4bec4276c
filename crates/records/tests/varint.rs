//! Varints round-trip for every value and never panic on any bytes.

use proptest::prelude::*;
use rill_records::varint::{
    VARINT_LEN_MAX, VARLONG_LEN_MAX, put_unsigned_varint, put_varint, put_varlong,
    read_unsigned_varint, read_varint, read_varlong, unsigned_varint_len, varint_len, varlong_len,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn varints_round_trip(value in any::<i32>(), tail in prop::collection::vec(any::<u8>(), 0..4)) {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        prop_assert_eq!(out.len(), varint_len(value));
        prop_assert!(out.len() <= VARINT_LEN_MAX);
        out.extend_from_slice(&tail);
        prop_assert_eq!(read_varint(&out), Ok((value, varint_len(value))));
    }

    #[test]
    fn varlongs_round_trip(value in any::<i64>()) {
        let mut out = Vec::new();
        put_varlong(&mut out, value);
        prop_assert_eq!(out.len(), varlong_len(value));
        prop_assert!(out.len() <= VARLONG_LEN_MAX);
        prop_assert_eq!(read_varlong(&out), Ok((value, out.len())));
    }

    #[test]
    fn unsigned_varints_round_trip(value in any::<u32>()) {
        let mut out = Vec::new();
        put_unsigned_varint(&mut out, value);
        prop_assert_eq!(out.len(), unsigned_varint_len(value));
        prop_assert_eq!(read_unsigned_varint(&out), Ok((value, out.len())));
    }

    #[test]
    fn any_bytes_decode_or_fail_within_the_width(bytes in prop::collection::vec(any::<u8>(), 0..12)) {
        if let Ok((value, len)) = read_varint(&bytes) {
            prop_assert!(len <= VARINT_LEN_MAX);
            // Padded encodings (0x80 0x00 for 0) are accepted, as the Java
            // client accepts them; the canonical one is never longer.
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert!(out.len() <= len);
        }
        if let Ok((value, len)) = read_varlong(&bytes) {
            prop_assert!(len <= VARLONG_LEN_MAX);
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            prop_assert!(out.len() <= len);
        }
    }
}
