//! Choosing a partition: murmur2 of the key exactly as the Java client does
//! (so a key lands on the same partition whichever client wrote it), and a
//! sticky choice for keyless messages that fills one batch at a time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hash::FastMap;

/// Picks the partition of a message that did not name one.
pub trait Partitioner: Send + Sync {
    /// The partition, in `0..partition_count`, for a message with `key`.
    fn partition(&self, topic: &str, key: Option<&[u8]>, partition_count: i32) -> i32;

    /// Called when the batch a keyless message went to was closed, so a
    /// sticky partitioner can move on to another partition.
    fn on_new_batch(&self, _topic: &str, _previous: i32, _partition_count: i32) {}
}

/// Java's `Utils.murmur2`: MurmurHash2, 32 bits, seed 0x9747b28c.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java and librdkafka's `murmur2_random` give a key:
/// `toPositive(murmur2(key)) % partition_count`.
pub fn key_partition(key: &[u8], partition_count: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partition_count.max(1)
}

/// Keyed messages by murmur2; keyless ones stick to one partition per topic
/// until its batch closes (Kafka's KIP-480).
pub struct DefaultPartitioner {
    sticky: Mutex<FastMap<String, i32>>,
    /// xorshift64* state: a new batch picks its partition often (once per
    /// message with one-message batches), too often for a getrandom(2)
    /// system call each time; the spread only needs to be fair, not secret.
    random: AtomicU64,
}

impl Default for DefaultPartitioner {
    fn default() -> DefaultPartitioner {
        DefaultPartitioner {
            sticky: Mutex::new(FastMap::default()),
            random: AtomicU64::new(getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15) | 1),
        }
    }
}

impl DefaultPartitioner {
    fn next_random(&self) -> u32 {
        // A racing caller may reuse a state: harmless for spreading load.
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn random_partition(&self, partition_count: i32, avoid: Option<i32>) -> i32 {
        let count = partition_count.max(1);
        if count == 1 {
            return 0;
        }
        let pick = (self.next_random() % count as u32) as i32;
        match avoid {
            // Move to another partition when there is one.
            Some(previous) if pick == previous => (pick + 1) % count,
            _ => pick,
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, partition_count: i32) -> i32 {
        if let Some(key) = key {
            return key_partition(key, partition_count);
        }
        // Nowhere to stick or move: no lock and no lookup per message.
        if partition_count <= 1 {
            return 0;
        }
        let Ok(mut sticky) = self.sticky.lock() else {
            return self.random_partition(partition_count, None);
        };
        match sticky.get(topic) {
            Some(&partition) if partition < partition_count => partition,
            _ => {
                let partition = self.random_partition(partition_count, None);
                sticky.insert(topic.to_string(), partition);
                partition
            }
        }
    }

    fn on_new_batch(&self, topic: &str, previous: i32, partition_count: i32) {
        // Called for every batch sent (for each message with one-message
        // batches): no lock where there is nowhere to move, and no new key.
        if partition_count <= 1 {
            return;
        }
        if let Ok(mut sticky) = self.sticky.lock()
            && let Some(current) = sticky.get_mut(topic)
            && *current == previous
        {
            *current = self.random_partition(partition_count, Some(previous));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from the Java client's own tests of `Utils.murmur2`.
    #[test]
    fn murmur2_matches_java() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
    }

    #[test]
    fn keyless_messages_stick_until_the_batch_closes() {
        let partitioner = DefaultPartitioner::default();
        let first = partitioner.partition("t", None, 8);
        for _ in 0..100 {
            assert_eq!(partitioner.partition("t", None, 8), first);
        }
        partitioner.on_new_batch("t", first, 8);
        assert_ne!(partitioner.partition("t", None, 8), first);
    }
}
