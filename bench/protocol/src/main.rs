//! Decode and encode throughput of rill-protocol against the kafka-protocol
//! crate on the same frames, plus heap allocations on the produce decode
//! path. Prints a table; run with `cargo run --release` in this folder.
//!
//! Rill's Produce decode is the broker's: `ProduceFrame` checks the request
//! and every partition's batches are then read in place (and the timing
//! includes that walk). The generated `ProduceRequest` decode, which the
//! client side and the generic request enum use, is timed on its own line.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey as PeerApiKey;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use rill_protocol::codec::{Decoder, Encode, Encoder};
use rill_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_protocol::messages::{FetchRequest, MetadataResponse, ProduceRequest};
use rill_protocol::{ApiKey, ProduceFrame, Records, RequestBody, ResponseBody, Uuid};

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const RECORDS_PER_BATCH: usize = 100;
const BATCHES: usize = 10;
/// One 16 KiB batch holds 100 records of about 160 bytes.
const BATCH_BYTES: usize = 16 * 1024;

fn produce_request() -> ProduceRequest {
    ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench-events".to_owned(),
            partition_data: (0..BATCHES as i32)
                .map(|index| PartitionProduceData {
                    index,
                    records: Some(Records::Bytes(Bytes::from(vec![index as u8; BATCH_BYTES]))),
                    ..PartitionProduceData::default()
                })
                .collect(),
            ..TopicProduceData::default()
        }],
        ..ProduceRequest::default()
    }
}

fn metadata_response() -> MetadataResponse {
    MetadataResponse {
        brokers: (0..3)
            .map(|node_id| MetadataResponseBroker {
                node_id,
                host: format!("broker-{node_id}.example.internal"),
                port: 9092,
                rack: None,
                ..MetadataResponseBroker::default()
            })
            .collect(),
        cluster_id: Some("rill-bench-cluster".to_owned()),
        controller_id: 0,
        topics: (0..10)
            .map(|topic| MetadataResponseTopic {
                name: Some(format!("topic-{topic:03}")),
                topic_id: Uuid::from_bytes([topic as u8; 16]),
                partitions: (0..100)
                    .map(|partition| MetadataResponsePartition {
                        partition_index: partition,
                        leader_id: partition % 3,
                        leader_epoch: 7,
                        replica_nodes: [0, 1, 2][..].into(),
                        isr_nodes: [0, 1, 2][..].into(),
                        ..MetadataResponsePartition::default()
                    })
                    .collect(),
                ..MetadataResponseTopic::default()
            })
            .collect(),
        ..MetadataResponse::default()
    }
}

fn fetch_request() -> FetchRequest {
    FetchRequest {
        max_wait_ms: 500,
        min_bytes: 1,
        session_epoch: -1,
        topics: (0..4)
            .map(|topic| FetchTopic {
                topic_id: Uuid::from_bytes([topic as u8 + 1; 16]),
                partitions: (0..25)
                    .map(|partition| FetchPartition {
                        partition,
                        current_leader_epoch: 7,
                        fetch_offset: 1_000_000 + i64::from(partition),
                        log_start_offset: -1,
                        partition_max_bytes: 1 << 20,
                        ..FetchPartition::default()
                    })
                    .collect(),
                ..FetchTopic::default()
            })
            .collect(),
        ..FetchRequest::default()
    }
}

fn encode<T: Encode>(value: &T, version: i16) -> Bytes {
    let mut enc = Encoder::with_capacity(value.encoded_len(version).expect("len"));
    value.encode(&mut enc, version).expect("encode");
    enc.finish().buf
}

/// Runs `rill` and `peer` in alternating slices for about `budget` in all,
/// so a load change on the machine hits both alike; returns operations per
/// second of each.
fn compare(budget: Duration, mut rill: impl FnMut(), mut peer: impl FnMut()) -> (f64, f64) {
    const SLICES: u32 = 20;
    let mut totals = [(0u64, Duration::ZERO); 2];
    for _ in 0..SLICES {
        for (index, work) in [&mut rill as &mut dyn FnMut(), &mut peer]
            .into_iter()
            .enumerate()
        {
            let start = Instant::now();
            let mut runs = 0u64;
            while start.elapsed() < budget / (2 * SLICES) {
                for _ in 0..10 {
                    work();
                }
                runs += 10;
            }
            totals[index].0 += runs;
            totals[index].1 += start.elapsed();
        }
    }
    let per_second = |(runs, time): (u64, Duration)| runs as f64 / time.as_secs_f64();
    (per_second(totals[0]), per_second(totals[1]))
}

struct Case {
    name: &'static str,
    key: ApiKey,
    version: i16,
    request: bool,
    frame: Bytes,
    /// Decoded with `ProduceFrame` (the broker's path), and the case whose
    /// encode is timed; otherwise with the generated struct, decode only.
    in_place: bool,
}

fn rill_decode(case: &Case) {
    let mut dec = Decoder::new(case.frame.clone());
    if case.in_place {
        let read = ProduceFrame::decode(&mut dec, case.version).expect("rill decode");
        // What the broker does with it: every partition's batches, in order.
        let bytes: usize = read
            .partitions()
            .map(|partition| black_box(partition.records).map_or(0, <[u8]>::len))
            .sum();
        black_box(bytes);
    } else if case.request {
        black_box(RequestBody::decode(case.key, case.version, &mut dec).expect("rill decode"));
    } else {
        black_box(ResponseBody::decode(case.key, case.version, &mut dec).expect("rill decode"));
    }
}

fn peer_key(case: &Case) -> PeerApiKey {
    PeerApiKey::try_from(case.key as i16).expect("peer knows the key")
}

fn peer_decode(case: &Case) {
    let mut bytes = case.frame.clone();
    if case.request {
        black_box(RequestKind::decode(peer_key(case), &mut bytes, case.version).expect("peer"));
    } else {
        black_box(ResponseKind::decode(peer_key(case), &mut bytes, case.version).expect("peer"));
    }
}

fn main() {
    // An optional argument keeps only the cases whose name contains it.
    let filter = std::env::args().nth(1).unwrap_or_default().to_lowercase();
    let budget = Duration::from_secs(4);
    let cases = [
        Case {
            name: "Produce request v11, 1,000 records in 10 x 16 KiB batches",
            key: ApiKey::Produce,
            version: 11,
            request: true,
            frame: encode(&produce_request(), 11),
            in_place: true,
        },
        Case {
            name: "  the same, as the generated ProduceRequest struct",
            key: ApiKey::Produce,
            version: 11,
            request: true,
            frame: encode(&produce_request(), 11),
            in_place: false,
        },
        Case {
            name: "Metadata response v12, 1,000 partitions",
            key: ApiKey::Metadata,
            version: 12,
            request: false,
            frame: encode(&metadata_response(), 12),
            in_place: false,
        },
        Case {
            name: "Fetch request v15, 100 partitions",
            key: ApiKey::Fetch,
            version: 15,
            request: true,
            frame: encode(&fetch_request(), 15),
            in_place: false,
        },
    ];
    let wanted = |phase: &str, case: &Case| {
        format!("{phase} {}", case.name)
            .to_lowercase()
            .contains(&filter)
    };

    println!(
        "{:<58} {:>7} {:>12} {:>12} {:>7}",
        "decode", "bytes", "rill op/s", "peer op/s", "ratio"
    );
    // (case, rill op/s, peer op/s) per phase, for the combined figure.
    let mut decoded = Vec::new();
    let mut encoded = Vec::new();
    for case in cases.iter().filter(|case| wanted("decode", case)) {
        let (rill, peer) = compare(budget, || rill_decode(case), || peer_decode(case));
        decoded.push((case.name, rill, peer));
        println!(
            "{:<58} {:>7} {:>12.0} {:>12.0} {:>6.2}x",
            case.name,
            case.frame.len(),
            rill,
            peer,
            rill / peer
        );
    }

    println!(
        "\n{:<58} {:>7} {:>12} {:>12} {:>7}",
        "encode (encoded_len, then encode)", "bytes", "rill op/s", "peer op/s", "ratio"
    );
    // The generated-struct Produce line repeats the first case's encode.
    let encodes = |case: &&Case| case.key != ApiKey::Produce || case.in_place;
    for case in cases.iter().filter(encodes).filter(|case| wanted("encode", case)) {
        let mut dec = Decoder::new(case.frame.clone());
        let mut peer_bytes = case.frame.clone();
        let (rill, peer) = if case.request {
            let ours = RequestBody::decode(case.key, case.version, &mut dec).expect("decode");
            let theirs =
                RequestKind::decode(peer_key(case), &mut peer_bytes, case.version).expect("decode");
            compare(
                budget,
                || {
                    let len = ours.encoded_len(case.version).expect("len");
                    let mut enc = Encoder::with_capacity(len);
                    ours.encode(&mut enc, case.version).expect("encode");
                    black_box(enc.finish());
                },
                || {
                    let mut out = BytesMut::new();
                    theirs.encode(&mut out, case.version).expect("encode");
                    black_box(out);
                },
            )
        } else {
            let ours = ResponseBody::decode(case.key, case.version, &mut dec).expect("decode");
            let theirs = ResponseKind::decode(peer_key(case), &mut peer_bytes, case.version)
                .expect("decode");
            compare(
                budget,
                || {
                    let len = ours.encoded_len(case.version).expect("len");
                    let mut enc = Encoder::with_capacity(len);
                    ours.encode(&mut enc, case.version).expect("encode");
                    black_box(enc.finish());
                },
                || {
                    let mut out = BytesMut::new();
                    theirs.encode(&mut out, case.version).expect("encode");
                    black_box(out);
                },
            )
        };
        encoded.push((case.name, rill, peer));
        println!(
            "{:<58} {:>7} {:>12.0} {:>12.0} {:>6.2}x",
            case.name,
            case.frame.len(),
            rill,
            peer,
            rill / peer
        );
    }

    // One decode plus one encode of the same message: the time of each
    // added, as a rate.
    let both: Vec<_> = decoded
        .iter()
        .filter_map(|&(name, rill_d, peer_d)| {
            let &(_, rill_e, peer_e) = encoded.iter().find(|(n, ..)| *n == name)?;
            Some((
                name,
                1.0 / (1.0 / rill_d + 1.0 / rill_e),
                1.0 / (1.0 / peer_d + 1.0 / peer_e),
            ))
        })
        .collect();
    if !both.is_empty() {
        println!(
            "\n{:<58} {:>7} {:>12} {:>12} {:>7}",
            "decode + encode (one of each)", "", "rill op/s", "peer op/s", "ratio"
        );
        for (name, rill, peer) in both {
            println!(
                "{name:<58} {:>7} {rill:>12.0} {peer:>12.0} {:>6.2}x",
                "",
                rill / peer
            );
        }
    }

    println!();
    for produce in cases.iter().filter(|case| case.key == ApiKey::Produce) {
        // Once untimed first: a filtered run may not have decoded a Produce
        // request yet, and a first call may set up lazily allocated state.
        rill_decode(produce);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        rill_decode(produce);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let how = if produce.in_place {
            "ProduceFrame (broker)"
        } else {
            "ProduceRequest (generated)"
        };
        println!(
            "Produce decode, {how}: {allocations} heap allocations for {} records in \
             {BATCHES} batches",
            RECORDS_PER_BATCH * BATCHES
        );
    }
}
