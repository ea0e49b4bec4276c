//! Hostile batches fail quickly and allocate little: a counting allocator
//! measures the peak heap growth of each decode.
//!
//! The allocator is global to this test binary, so everything runs in one
//! test function, one case after the other, to keep the measurements apart.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rill_records::batch::{CRC_COVERAGE_START, CRC_OFFSET, Compression, RECORD_COUNT_OFFSET};
use rill_records::builder::BatchBuilder;
use rill_records::compression::{CompressionError, compress, decompress, inflated_len};
use rill_records::record::{RecordError, decode_batch};

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let grow = new_size - layout.size();
            let live = LIVE_BYTES.fetch_add(grow, Ordering::Relaxed) + grow;
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE_BYTES.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `realloc`'s contract, passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak heap growth during it.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(before, Ordering::Relaxed);
    let result = f();
    (result, PEAK_BYTES.load(Ordering::Relaxed) - before)
}

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_COVERAGE_START..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

fn claim_record_count(mut batch: Vec<u8>, record_count: i32) -> Vec<u8> {
    batch[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4]
        .copy_from_slice(&record_count.to_be_bytes());
    fix_crc(&mut batch);
    batch
}

const LIMIT: usize = 1 << 20;

#[test]
fn hostile_input_fails_fast_within_bounded_memory() {
    // A batch claiming 2^31-1 records, uncompressed and compressed.
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut builder = BatchBuilder::new(codec).last_offset_delta(i32::MAX - 1);
        builder
            .append(0, None, Some(b"x"[..].into()), Vec::new())
            .unwrap();
        let batch = claim_record_count(builder.build().unwrap(), i32::MAX);
        let (result, peak) = peak_growth(|| decode_batch(&batch, LIMIT));
        assert!(result.is_err(), "{codec:?}");
        // Codec state at most, nothing per claimed record.
        assert!(
            peak < 128 << 10,
            "{codec:?}: {peak} bytes for a {}-byte batch",
            batch.len()
        );
    }

    // Records claiming 2^31-1 headers and keys of 2^31-1 bytes.
    for section in [
        &[
            0x14, 0x00, 0x00, 0x00, 0x01, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x0f,
        ][..],
        &[
            0x16, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0,
        ][..],
    ] {
        let section = bytes::Bytes::copy_from_slice(section);
        let (result, peak) = peak_growth(|| rill_records::record::decode_records(&section, 1));
        assert!(result.is_err());
        assert!(peak < 1024, "{peak} bytes");
    }

    // Zip bombs: 16 MiB of zeros, inflated under a 1 MiB limit.
    let zeros = vec![0u8; 16 << 20];
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut bomb = Vec::new();
        compress(codec, &zeros, &mut bomb).unwrap();
        let (result, peak) = peak_growth(|| {
            let mut out = Vec::new();
            decompress(codec, &bomb, LIMIT, &mut out)
        });
        assert!(
            matches!(result, Err(CompressionError::TooLarge { .. })),
            "{codec:?}: {result:?}"
        );
        // The output never passes the limit; the rest is codec state, such
        // as lz4's 64 KiB block buffers. (libzstd allocates its context and
        // window in C, unseen here; `ZSTD_WINDOW_LOG_MAX` bounds the window.)
        assert!(peak <= LIMIT + (256 << 10), "{codec:?}: peak {peak} bytes");

        // The same bomb inside a batch.
        let mut batch = BatchBuilder::new(codec).build().unwrap();
        batch.truncate(61);
        batch.extend_from_slice(&bomb);
        let batch_length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let batch = claim_record_count(batch, 1);
        let (result, peak) = peak_growth(|| decode_batch(&batch, LIMIT));
        assert!(
            matches!(
                result,
                Err(RecordError::Compression(CompressionError::TooLarge { .. }))
            ),
            "{codec:?}: {result:?}"
        );
        assert!(peak <= LIMIT + (256 << 10), "{codec:?}: peak {peak} bytes");

        // Measuring the bomb, as an append does, keeps none of its output.
        let (result, peak) = peak_growth(|| inflated_len(codec, &bomb, LIMIT));
        assert!(
            matches!(result, Err(CompressionError::TooLarge { .. })),
            "{codec:?}: {result:?}"
        );
        assert!(peak <= 256 << 10, "{codec:?}: peak {peak} bytes");
        assert_eq!(inflated_len(codec, &bomb, zeros.len()), Ok(zeros.len()));
    }

    // A section of 1 MiB claiming as many records as 7-byte records would
    // fill it: room for the records is made from the bytes present, not
    // from the claim (a record takes about 100 bytes once decoded).
    let section = bytes::Bytes::from(vec![0u8; LIMIT]);
    let claimed = (LIMIT / rill_records::batch::RECORD_LEN_MIN) as i32;
    let (result, peak) = peak_growth(|| rill_records::record::decode_records(&section, claimed));
    assert!(result.is_err());
    assert!(peak <= LIMIT, "{peak} bytes for {LIMIT} bytes of records");
}
