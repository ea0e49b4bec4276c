//! Hostile input: lengths that lie, counts of 2^31, deep nesting and random
//! bytes. Each must give an error quickly, never a panic, and allocate only a
//! small multiple of the frame. A counting global allocator measures that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use proptest::prelude::*;
use rill_protocol::codec::{Decode, DecodeError, Decoder};
use rill_protocol::messages::{FetchResponse, MetadataRequest, ProduceRequest};
use rill_protocol::{
    ApiKey, ProduceFrame, Records, RequestBody, ResponseBody, decode_request_header,
};

/// Counts the bytes this thread allocates, so tests running in parallel
/// threads do not see each other's allocations.
struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<usize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // `try_with` because the allocator also runs while thread locals are torn down.
    let _ = LIVE_BYTES.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: every call forwards to the system allocator unchanged; the
// bookkeeping touches only const-initialized thread locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `work` and returns its result and the peak bytes it held at once.
fn peak_allocated<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(base));
    let out = work();
    let peak = PEAK_BYTES.with(Cell::get) - base;
    (out, peak)
}

/// Decodes `body` as `api_key` at `version`; the error and peak allocation.
fn decode_hostile(api_key: ApiKey, version: i16, body: &'static [u8]) -> (DecodeError, usize) {
    let frame = Bytes::from_static(body);
    let (result, peak) = peak_allocated(|| {
        let mut dec = Decoder::new(frame);
        RequestBody::decode(api_key, version, &mut dec)
    });
    (result.expect_err("hostile input must not decode"), peak)
}

/// A frame this small must not cost more than this much memory: the decoder
/// allocates nothing for a length it has not checked.
const SMALL_FRAME_PEAK_MAX: usize = 1024;

#[test]
fn metadata_v12_topic_array_of_2_pow_31_is_refused_without_allocating() {
    // The six bytes that make kafka-protocol 0.18 abort: a compact array
    // length of 2^31 (varint of 2^31 + 1) and one more byte.
    let (error, peak) = decode_hostile(ApiKey::Metadata, 12, &[0x81, 0x80, 0x80, 0x80, 0x08, 0x00]);
    assert!(
        matches!(
            error,
            DecodeError::LengthExceedsRemaining {
                claimed: 0x8000_0000,
                ..
            }
        ),
        "{error}"
    );
    assert!(peak <= SMALL_FRAME_PEAK_MAX, "peak {peak} bytes");
}

#[test]
fn metadata_v4_classic_array_of_2_pow_31_minus_1_is_refused() {
    let (error, peak) = decode_hostile(ApiKey::Metadata, 4, &[0x7f, 0xff, 0xff, 0xff, 0x00, 0x01]);
    assert!(
        matches!(error, DecodeError::LengthExceedsRemaining { .. }),
        "{error}"
    );
    assert!(peak <= SMALL_FRAME_PEAK_MAX, "peak {peak} bytes");
}

#[test]
fn negative_array_length_is_refused() {
    let (error, _) = decode_hostile(ApiKey::Metadata, 4, &[0xff, 0xff, 0xff, 0xfe, 0x00]);
    assert!(
        matches!(error, DecodeError::NegativeLength { length: -2, .. }),
        "{error}"
    );
}

#[test]
fn string_of_2_pow_31_bytes_is_refused() {
    // Produce v9: transactional id as a compact string claiming 2^31 bytes.
    let (error, peak) = decode_hostile(ApiKey::Produce, 9, &[0x81, 0x80, 0x80, 0x80, 0x08, 0x61]);
    assert!(
        matches!(error, DecodeError::LengthExceedsRemaining { .. }),
        "{error}"
    );
    assert!(peak <= SMALL_FRAME_PEAK_MAX, "peak {peak} bytes");
    // Produce v3: a classic string claiming 32767 bytes, two present.
    let (error, _) = decode_hostile(ApiKey::Produce, 3, &[0x7f, 0xff, 0x61, 0x62]);
    assert!(
        matches!(error, DecodeError::LengthExceedsRemaining { .. }),
        "{error}"
    );
}

#[test]
fn tagged_field_of_2_pow_31_bytes_is_refused() {
    // Metadata v12: null topics, two bools, then a tagged-field count of
    // 2^31 - 1, then one tagged field (tag 5) claiming 2^31 - 1 bytes.
    let (error, peak) = decode_hostile(
        ApiKey::Metadata,
        12,
        &[0x00, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00],
    );
    assert!(error.to_string().contains("tagged field count"), "{error}");
    assert!(peak <= SMALL_FRAME_PEAK_MAX, "peak {peak} bytes");
    let (error, peak) = decode_hostile(
        ApiKey::Metadata,
        12,
        &[
            0x00, 0x01, 0x00, 0x01, 0x05, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00,
        ],
    );
    assert!(
        matches!(
            error,
            DecodeError::LengthExceedsRemaining {
                what: "tagged field",
                ..
            }
        ),
        "{error}"
    );
    assert!(peak <= SMALL_FRAME_PEAK_MAX, "peak {peak} bytes");
}

#[test]
fn records_of_2_pow_31_bytes_are_refused() {
    // Produce v3: null transactional id, acks, timeout, one topic "t", one
    // partition whose records claim 2^31 - 1 bytes.
    let body: &'static [u8] = &[
        0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x75, 0x30, // txn id, acks, timeout
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b't', // one topic
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // one partition, index 0
        0x7f, 0xff, 0xff, 0xff, 0x00, // records length
    ];
    let (error, peak) = decode_hostile(ApiKey::Produce, 3, body);
    assert!(
        matches!(
            error,
            DecodeError::LengthExceedsRemaining {
                what: "Records",
                ..
            }
        ),
        "{error}"
    );
    assert!(peak <= SMALL_FRAME_PEAK_MAX, "peak {peak} bytes");
}

#[test]
fn overlong_varint_is_refused() {
    let (error, _) = decode_hostile(ApiKey::Metadata, 12, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert_eq!(error, DecodeError::InvalidVarint);
}

#[test]
fn nesting_beyond_the_depth_limit_is_refused() {
    // A Fetch response v4 nests three structs: response, topic, partition.
    let body: &'static [u8] = &[
        0x00, 0x00, 0x00, 0x00, // throttle time
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b't', // one topic
        0x00, 0x00, 0x00, 0x01, // one partition
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // index, error code
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // high watermark
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // last stable offset
        0xff, 0xff, 0xff, 0xff, // aborted transactions: null
        0x00, 0x00, 0x00, 0x00, // records: empty
    ];
    let mut dec = Decoder::with_max_depth(Bytes::from_static(body), 2);
    assert_eq!(
        FetchResponse::decode(&mut dec, 4),
        Err(DecodeError::DepthExceeded(2))
    );
    let mut dec = Decoder::with_max_depth(Bytes::from_static(body), 3);
    let response = FetchResponse::decode(&mut dec, 4).expect("three levels fit");
    assert_eq!(response.responses[0].partitions.len(), 1);
    assert_eq!(dec.remaining(), 0);
}

#[test]
fn a_large_array_of_small_elements_stays_within_a_small_multiple_of_the_frame() {
    // Metadata v4 asking for 10,000 topics named "": 2 bytes each on the wire.
    let mut body = vec![0x00, 0x00, 0x27, 0x10];
    body.extend(std::iter::repeat_n(0x00, 20_000));
    body.push(0x01);
    let frame = Bytes::from(body);
    let frame_len = frame.len();
    let (result, peak) = peak_allocated(|| MetadataRequest::decode(&mut Decoder::new(frame), 4));
    assert_eq!(result.expect("valid").topics.map(|t| t.len()), Some(10_000));
    // Each element is 64 bytes in memory (a Uuid, an Option<String> and the
    // tagged-field Vec) for 2 bytes on the wire: 32 times, and no more.
    assert!(
        peak <= 33 * frame_len,
        "peak {peak} bytes for a {frame_len} byte frame"
    );
}

/// Any frame decoded as any API and version: never a panic, and memory held
/// at most a small multiple of the frame (the ratio of a struct's size in
/// memory to its fewest bytes on the wire, which is below 64 for every spec).
fn decode_any(bytes: &[u8], key_index: usize, version_pick: u16, request: bool) {
    let key = ApiKey::ALL[key_index % ApiKey::ALL.len()];
    let (low, high) = key.valid_versions();
    let version = low + (version_pick % (high - low + 1) as u16) as i16;
    let frame = Bytes::copy_from_slice(bytes);
    let len = frame.len();
    let (_, peak) = peak_allocated(|| {
        let mut dec = Decoder::new(frame);
        if request {
            let _ = decode_request_header(&mut dec.clone());
            RequestBody::decode(key, version, &mut dec).map(|_| ())
        } else {
            ResponseBody::decode(key, version, &mut dec).map(|_| ())
        }
    });
    assert!(
        peak <= 64 * len + 4096,
        "{key:?} v{version}: peak {peak} for {len} bytes"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        key_index in 0usize..1000,
        version_pick in any::<u16>(),
        request in any::<bool>(),
    ) {
        decode_any(&bytes, key_index, version_pick, request);
    }

    /// Bytes biased towards the values that make lengths interesting.
    #[test]
    fn length_like_bytes_never_panic(
        bytes in proptest::collection::vec(
            prop_oneof![Just(0x00u8), Just(0x01), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()],
            0..128,
        ),
        key_index in 0usize..1000,
        version_pick in any::<u16>(),
        request in any::<bool>(),
    ) {
        decode_any(&bytes, key_index, version_pick, request);
    }
}

#[test]
fn produce_decode_is_not_fooled_by_a_huge_partition_count() {
    let body: &'static [u8] = &[
        0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x75, 0x30, // txn id, acks, timeout
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b't', // one topic
        0x7f, 0xff, 0xff, 0xff, // 2^31 - 1 partitions
    ];
    let frame = Bytes::from_static(body);
    let (result, peak) =
        peak_allocated(|| ProduceRequest::decode(&mut Decoder::new(frame.clone()), 3));
    assert!(matches!(
        result,
        Err(DecodeError::LengthExceedsRemaining { .. })
    ));
    assert!(peak <= SMALL_FRAME_PEAK_MAX, "peak {peak} bytes");
    let (result, peak) = peak_allocated(|| ProduceFrame::decode(&mut Decoder::new(frame), 3));
    assert!(matches!(
        result,
        Err(DecodeError::LengthExceedsRemaining { .. })
    ));
    assert_eq!(peak, 0, "the in-place reader allocated");
}

/// The broker's produce path: checking a request of 3 topics with 50
/// partitions each and reading every batch allocates nothing at all.
#[test]
fn produce_frame_decode_and_iteration_allocate_nothing() {
    use rill_protocol::codec::{Encode, Encoder};
    use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    let request = ProduceRequest {
        acks: 1,
        timeout_ms: 30_000,
        topic_data: (0..3)
            .map(|topic| TopicProduceData {
                name: format!("topic-{topic}"),
                partition_data: (0..50)
                    .map(|index| PartitionProduceData {
                        index,
                        records: Some(Records::Bytes(Bytes::from(vec![index as u8; 100]))),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for version in [3, 8, 9, 11] {
        let mut enc = Encoder::new();
        request.encode(&mut enc, version).expect("encode");
        let frame = enc.finish().buf;
        let (bytes, peak) = peak_allocated(|| {
            let read =
                ProduceFrame::decode(&mut Decoder::new(frame.clone()), version).expect("decodes");
            read.topics()
                .flat_map(|topic| topic.partitions())
                .map(|partition| partition.records.map_or(0, <[u8]>::len))
                .sum::<usize>()
        });
        assert_eq!(bytes, 150 * 100, "v{version}");
        assert_eq!(peak, 0, "v{version}: the in-place reader allocated");
    }
}
