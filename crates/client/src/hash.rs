//! A fast hasher for the client's own maps, keyed by topic names and
//! partition numbers. Those keys come from the application, not from a
//! peer, so hash flooding is not a concern, and SipHash (std's default) was
//! a visible share of a producer's `send`. [`Metadata::topics`] is one of
//! them, looked up on every send.
//!
//! [`Metadata::topics`]: crate::Metadata::topics

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate over 8-byte words (the scheme of rustc's FxHash).
#[derive(Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_i32(&mut self, value: i32) {
        self.add(u64::from(value as u32));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keyed_by_names_and_numbers_work() {
        let mut map: FastMap<String, FastMap<i32, usize>> = FastMap::default();
        for topic in 0..50 {
            let partitions = map.entry(format!("topic-{topic}")).or_default();
            for partition in 0..100 {
                partitions.insert(partition, topic * 1000 + partition as usize);
            }
        }
        for topic in 0..50 {
            let partitions = &map[&format!("topic-{topic}")];
            assert_eq!(partitions.len(), 100);
            assert_eq!(partitions[&7], topic * 1000 + 7);
        }
        assert!(!map.contains_key("topic-50"));
    }
}
