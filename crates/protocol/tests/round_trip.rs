//! Property test: for every message and every valid version, a random value
//! encodes to exactly `encoded_len` bytes and decodes back to itself.

mod random_values;

use bytes::Bytes;
use proptest::prelude::*;
use rill_protocol::Uuid;
use rill_protocol::codec::{Decode, Decoder, Encode, Encoder, RawTaggedField};

/// A small deterministic generator (SplitMix64), seeded by proptest.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    pub fn i8(&mut self) -> i8 {
        self.next() as i8
    }
    pub fn i16(&mut self) -> i16 {
        self.next() as i16
    }
    pub fn u16(&mut self) -> u16 {
        self.next() as u16
    }
    pub fn i32(&mut self) -> i32 {
        self.next() as i32
    }
    pub fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    pub fn i64(&mut self) -> i64 {
        self.next() as i64
    }
    /// Finite values only: NaN is not equal to itself.
    pub fn f64(&mut self) -> f64 {
        self.i32() as f64 / 7.0
    }
    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        Uuid::from_bytes(bytes)
    }
    pub fn string(&mut self) -> String {
        const ALPHABET: &[char] = &['a', 'Z', '0', '-', '.', 'é', '日', '🦀'];
        let len = self.below(6);
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }
    pub fn bytes(&mut self) -> Bytes {
        let len = self.below(200);
        (0..len).map(|_| self.next() as u8).collect()
    }
    pub fn vec<C: FromIterator<T>, T>(&mut self, mut element: impl FnMut(&mut Rng) -> T) -> C {
        let len = self.below(3);
        (0..len).map(|_| element(self)).collect()
    }
    pub fn opt<T>(&mut self, nullable: bool, value: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        if nullable && self.below(4) == 0 {
            None
        } else {
            Some(value(self))
        }
    }
    /// Unknown tagged fields, ascending, above every tag the specs use.
    pub fn raw_tags(&mut self) -> Vec<RawTaggedField> {
        let mut tag = 100;
        self.vec(|rng| {
            tag += 1 + rng.below(300) as u32;
            RawTaggedField {
                tag,
                data: rng.bytes(),
            }
        })
    }
}

/// Builds a random value of a struct for one version of its message.
pub trait Random {
    fn random(rng: &mut Rng, version: i16) -> Self;
}

pub fn check_round_trip<T>(rng: &mut Rng, version: i16)
where
    T: Random + Encode + Decode + PartialEq + std::fmt::Debug,
{
    let value = T::random(rng, version);
    let name = std::any::type_name::<T>();
    let len = value
        .encoded_len(version)
        .unwrap_or_else(|e| panic!("{name} v{version}: encoded_len: {e}"));
    let mut enc = Encoder::new();
    value
        .encode(&mut enc, version)
        .unwrap_or_else(|e| panic!("{name} v{version}: encode: {e}"));
    let frame = enc.finish();
    assert_eq!(frame.buf.len(), len, "{name} v{version}: encoded_len");
    // Every proper prefix of a valid encoding must fail to decode, not panic.
    if len > 0 {
        let cut = rng.below(len as u64) as usize;
        let mut truncated = Decoder::new(frame.buf.slice(..cut));
        assert!(
            T::decode(&mut truncated, version).is_err(),
            "{name} v{version}: decoded from {cut} of {len} bytes"
        );
    }
    let mut dec = Decoder::new(frame.buf);
    let back = T::decode(&mut dec, version)
        .unwrap_or_else(|e| panic!("{name} v{version}: decode: {e}\n{value:?}"));
    assert_eq!(dec.remaining(), 0, "{name} v{version}: bytes left over");
    assert_eq!(back, value, "{name} v{version}: value changed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_message_and_version_round_trips(seed: u64) {
        random_values::check_all(&mut Rng(seed));
    }
}

/// Decodes `frame` as a Produce request of `version` both ways, the
/// generated struct and the broker's in-place `ProduceFrame`: both must
/// accept it or fail with the same error, and agree on every value and on
/// where the request ends.
fn check_produce_frame_agrees(frame: Bytes, version: i16) {
    use rill_protocol::ProduceFrame;
    use rill_protocol::messages::ProduceRequest;

    let mut generated = Decoder::new(frame.clone());
    let mut in_place = Decoder::new(frame.clone());
    match (
        ProduceRequest::decode(&mut generated, version),
        ProduceFrame::decode(&mut in_place, version),
    ) {
        (Ok(mut expected), Ok(read)) => {
            // The in-place reader skips unknown tagged fields.
            expected.unknown_tagged_fields.clear();
            for topic in &mut expected.topic_data {
                topic.unknown_tagged_fields.clear();
                for partition in &mut topic.partition_data {
                    partition.unknown_tagged_fields.clear();
                }
            }
            assert_eq!(read.to_request(), expected, "v{version}: values differ");
            assert_eq!(in_place.remaining(), generated.remaining(), "v{version}");
            assert_eq!(read.acks(), expected.acks);
            assert_eq!(read.topics().len(), expected.topic_data.len());
            // Record batches are slices of the frame itself.
            let span = frame.as_ptr_range();
            let nested: Vec<_> = read.topics().flat_map(|t| t.partitions()).collect();
            let flat: Vec<_> = read.partitions().collect();
            assert_eq!(flat, nested, "v{version}: one pass and per topic differ");
            for (partition, expected) in flat.iter().zip(
                expected
                    .topic_data
                    .iter()
                    .enumerate()
                    .flat_map(|(t, topic)| topic.partition_data.iter().map(move |p| (t, p))),
            ) {
                assert_eq!(partition.topic_index, expected.0, "v{version}");
                if let Some(records) = partition.records.filter(|r| !r.is_empty()) {
                    assert!(span.contains(&records.as_ptr()), "v{version}: copied");
                }
            }
        }
        (Err(expected), Err(error)) => assert_eq!(error, expected, "v{version}: errors differ"),
        (expected, read) => panic!(
            "v{version}: generated {:?}, in place {:?}",
            expected.map(|_| ()),
            read.map(|_| ())
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every version: a random request, each of its prefixes cut at random,
    /// and copies with bytes changed at random.
    #[test]
    fn produce_frame_reads_what_the_generated_decoder_reads(seed: u64) {
        use rill_protocol::messages::ProduceRequest;

        let rng = &mut Rng(seed);
        for version in 0..=11 {
            let value = <ProduceRequest as Random>::random(rng, version);
            let mut enc = Encoder::new();
            value.encode(&mut enc, version).expect("encode");
            let frame = enc.finish().buf;
            check_produce_frame_agrees(frame.clone(), version);
            let cut = rng.below(frame.len() as u64 + 1) as usize;
            check_produce_frame_agrees(frame.slice(..cut), version);
            for _ in 0..4 {
                let mut changed = frame.to_vec();
                let at = rng.below(changed.len() as u64) as usize;
                changed[at] = match rng.below(4) {
                    0 => 0x00,
                    1 => 0xff,
                    2 => 0x80,
                    _ => rng.i8() as u8,
                };
                check_produce_frame_agrees(Bytes::from(changed), version);
            }
        }
    }
}
