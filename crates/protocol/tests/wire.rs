//! Exact bytes on the wire: headers, a few messages written out by hand from
//! Kafka's protocol guide, framing, zero-copy records and file regions.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use rill_protocol::codec::{Decode, DecodeError, Decoder, Encode, Encoder};
use rill_protocol::frame::{FrameError, frame_len};
use rill_protocol::messages::api_versions_response::ApiVersion;
use rill_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_protocol::messages::{
    ApiVersionsResponse, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    RequestHeader, ResponseHeader,
};
use rill_protocol::{
    ApiKey, FileRegion, HeaderError, InlineVec, Records, RequestBody, ResponseBody, Uuid,
    decode_request_header,
};

fn encode<T: Encode>(value: &T, version: i16) -> Bytes {
    let mut enc = Encoder::new();
    value.encode(&mut enc, version).expect("encode");
    let frame = enc.finish();
    assert_eq!(frame.buf.len(), value.encoded_len(version).expect("len"));
    frame.buf
}

/// An ApiVersions v3 request as librdkafka sends it: header v2 (client id
/// with an i16 length, then tagged fields), compact strings in the body.
const API_VERSIONS_V3: &[u8] = &[
    0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, // api key 18, v3, correlation id 1
    0x00, 0x07, b'r', b'd', b'k', b'a', b'f', b'k', b'a', // client id "rdkafka"
    0x00, // header tagged fields
    0x0b, b'l', b'i', b'b', b'r', b'd', b'k', b'a', b'f', b'k', b'a', // compact "librdkafka"
    0x06, b'2', b'.', b'3', b'.', b'0', // compact "2.3.0"
    0x00, // body tagged fields
];

#[test]
fn api_versions_v3_request_decodes_and_reencodes_byte_for_byte() {
    let mut dec = Decoder::new(Bytes::from_static(API_VERSIONS_V3));
    let header = decode_request_header(&mut dec).expect("header");
    assert_eq!(header.request_api_key, 18);
    assert_eq!(header.request_api_version, 3);
    assert_eq!(header.correlation_id, 1);
    assert_eq!(header.client_id.as_deref(), Some("rdkafka"));
    let key = ApiKey::from_i16(header.request_api_key).expect("known key");
    assert_eq!(key, ApiKey::ApiVersions);
    let body = RequestBody::decode(key, 3, &mut dec).expect("body");
    assert_eq!(dec.remaining(), 0);
    let RequestBody::ApiVersions(request) = &body else {
        panic!("wrong body {body:?}");
    };
    assert_eq!(request.client_software_name, "librdkafka");
    assert_eq!(request.client_software_version, "2.3.0");

    let mut enc = Encoder::new();
    header.encode(&mut enc, 2).expect("header");
    body.encode(&mut enc, 3).expect("body");
    assert_eq!(&enc.finish().buf[..], API_VERSIONS_V3);
}

#[test]
fn api_versions_response_uses_header_v0_and_compact_arrays() {
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    let response = ApiVersionsResponse {
        api_keys: vec![ApiVersion {
            api_key: 0,
            min_version: 3,
            max_version: 11,
            ..ApiVersion::default()
        }],
        ..ApiVersionsResponse::default()
    };
    let mut enc = Encoder::new();
    let header = ResponseHeader {
        correlation_id: 7,
        ..ResponseHeader::default()
    };
    header.encode(&mut enc, 0).expect("header");
    ResponseBody::from(response)
        .encode(&mut enc, 3)
        .expect("body");
    let expected: &[u8] = &[
        0x00, 0x00, 0x00, 0x07, // correlation id, header v0: no tagged fields
        0x00, 0x00, // error code
        0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x0b, 0x00, // one api key, its tagged fields
        0x00, 0x00, 0x00, 0x00, // throttle time
        0x00, // tagged fields: all at their defaults, so none written
    ];
    assert_eq!(&enc.finish().buf[..], expected);
}

#[test]
fn metadata_v1_null_topics_and_v0_rejects_null() {
    let all_topics = MetadataRequest {
        topics: None,
        ..MetadataRequest::default()
    };
    assert_eq!(&encode(&all_topics, 1)[..], &[0xff, 0xff, 0xff, 0xff]);
    // v9 is flexible: a compact null array is a zero varint, then three
    // bools (auto-create defaults to true) and an empty tagged-field section.
    assert_eq!(&encode(&all_topics, 9)[..], &[0x00, 0x01, 0x00, 0x00, 0x00]);
    let mut enc = Encoder::new();
    assert!(all_topics.encode(&mut enc, 0).is_err());
    let mut dec = Decoder::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
    assert_eq!(
        MetadataRequest::decode(&mut dec, 0),
        Err(DecodeError::NullNotAllowed("Topics"))
    );
}

#[test]
fn defaults_follow_the_specs() {
    assert!(MetadataRequest::default().allow_auto_topic_creation);
    let produce = ProduceRequest::default();
    assert_eq!(produce.transactional_id, None);
    assert_eq!(
        rill_protocol::messages::FetchRequest::default().max_bytes,
        0x7fff_ffff
    );
    assert_eq!(
        rill_protocol::messages::FetchRequest::default().replica_id,
        -1
    );
}

#[test]
fn request_header_versions_follow_flexible_versions() {
    assert_eq!(ApiKey::Metadata.request_header_version(8), 1);
    assert_eq!(ApiKey::Metadata.request_header_version(9), 2);
    assert_eq!(ApiKey::ControlledShutdown.request_header_version(0), 0);
    assert_eq!(ApiKey::ControlledShutdown.request_header_version(1), 1);
    assert_eq!(ApiKey::Produce.response_header_version(8), 0);
    assert_eq!(ApiKey::Produce.response_header_version(9), 1);
    assert_eq!(ApiKey::from_i16(0), Some(ApiKey::Produce));
    assert_eq!(ApiKey::from_i16(-1), None);
    assert_eq!(ApiKey::Fetch.name(), "Fetch");
    assert_eq!(ApiKey::Metadata.valid_versions(), (0, 12));
    assert!(ApiKey::EndTxn.latest_version_unstable());
    assert!(!ApiKey::Produce.latest_version_unstable());
    assert!(
        ApiKey::ALL
            .iter()
            .all(|key| ApiKey::from_i16(*key as i16) == Some(*key))
    );
}

#[test]
fn unknown_api_key_still_yields_the_correlation_id() {
    let frame: &[u8] = &[
        0x03, 0xe7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0xff, 0xff, 0x99,
    ];
    let mut dec = Decoder::new(Bytes::from_static(frame));
    match decode_request_header(&mut dec) {
        Err(HeaderError::UnknownApi(header)) => {
            assert_eq!(header.request_api_key, 999);
            assert_eq!(header.correlation_id, 42);
            assert_eq!(header.client_id, None);
        }
        other => panic!("expected UnknownApi, got {other:?}"),
    }
}

#[test]
fn unsupported_version_still_yields_the_correlation_id() {
    // ApiVersions v99 from a newer client: its header is v2 (flexible).
    let frame: &[u8] = &[
        0x00, 0x12, 0x00, 0x63, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, b'x', 0x00,
    ];
    let mut dec = Decoder::new(Bytes::from_static(frame));
    match decode_request_header(&mut dec) {
        Err(HeaderError::UnsupportedVersion(header)) => {
            assert_eq!(header.request_api_version, 99);
            assert_eq!(header.correlation_id, 5);
            assert_eq!(header.client_id.as_deref(), Some("x"));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert_eq!(dec.remaining(), 0);
    let mut body = Decoder::new(Bytes::new());
    assert_eq!(
        RequestBody::decode(ApiKey::ApiVersions, 99, &mut body),
        Err(DecodeError::UnsupportedVersion {
            api_key: 18,
            version: 99
        })
    );
}

#[test]
fn truncated_header_is_an_error() {
    let mut dec = Decoder::new(Bytes::from_static(&[0x00, 0x12, 0x00]));
    assert!(matches!(
        decode_request_header(&mut dec),
        Err(HeaderError::Decode(DecodeError::Truncated { .. }))
    ));
    let header = RequestHeader::default();
    assert_eq!(header.client_id.as_deref(), Some(""));
}

#[test]
fn frame_len_checks_sign_and_maximum() {
    assert_eq!(frame_len([0, 0, 0x01, 0x00], 1024), Ok(256));
    assert_eq!(
        frame_len([0, 0, 0x04, 0x01], 1024),
        Err(FrameError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
    assert_eq!(frame_len([0xff; 4], 1024), Err(FrameError::Negative(-1)));
}

fn produce_with(records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "events".to_owned(),
            partition_data: vec![PartitionProduceData {
                index: 3,
                records: Some(Records::Bytes(records)),
                ..PartitionProduceData::default()
            }],
            ..TopicProduceData::default()
        }],
        ..ProduceRequest::default()
    }
}

#[test]
fn produce_records_are_slices_of_the_frame() {
    let batch = Bytes::from(vec![0xab; 4096]);
    for version in [3, 8, 9, 11] {
        let frame = encode(&produce_with(batch.clone()), version);
        let mut dec = Decoder::new(frame.clone());
        let decoded = ProduceRequest::decode(&mut dec, version).expect("decode");
        let Some(Records::Bytes(records)) = &decoded.topic_data[0].partition_data[0].records else {
            panic!("records missing");
        };
        assert_eq!(records, &batch);
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(frame_range.contains(&(records.as_ptr() as usize)));
        assert!(frame_range.contains(&(records.as_ptr() as usize + records.len() - 1)));
    }
}

#[test]
fn fetch_response_records_become_spliced_file_regions() {
    let file = Arc::new(File::open("Cargo.toml").expect("any file will do"));
    let regions = vec![
        FileRegion {
            file: file.clone(),
            position: 100,
            len: 1000,
        },
        FileRegion {
            file,
            position: 5000,
            len: 24,
        },
    ];
    let response = FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic_id: Uuid::from_bytes([7; 16]),
            partitions: vec![PartitionData {
                records: Some(Records::Files(regions.clone())),
                ..PartitionData::default()
            }],
            ..FetchableTopicResponse::default()
        }],
        ..FetchResponse::default()
    };
    let version = 16;
    let len = response.encoded_len(version).expect("len");
    let mut enc = Encoder::new();
    response.encode(&mut enc, version).expect("encode");
    let frame = enc.finish();
    assert_eq!(frame.total_len(), len);
    assert_eq!(frame.buf.len() + 1024, len);
    assert_eq!(frame.regions.len(), 2);
    let (first, second) = (frame.regions[0].0, frame.regions[1].0);
    assert_eq!(first, second, "regions of one partition are adjacent");
    // The compact length prefix (1024 + 1 as a varint) sits just before the records.
    assert_eq!(&frame.buf[first - 2..first], &[0x81, 0x08]);
    assert_eq!(frame.regions[0].1, regions[0]);
}

#[test]
fn uuid_displays_as_base64url() {
    assert_eq!(Uuid::ZERO.to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
    let id = Uuid::from_bytes([
        0xfb, 0xff, 0xbf, 0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f,
        0x41,
    ]);
    assert_eq!(id.to_string(), "-_-_ABCDEFGHIJKLMNOPQQ");
}

/// Replica lists are `InlineVec`s: up to four stay inline, longer ones move
/// to the heap, and both round-trip in classic and compact encodings.
#[test]
fn replica_lists_of_any_length_round_trip() {
    for len in 0..10 {
        let nodes: Vec<i32> = (0..len).map(|n| n * 1000 + 7).collect();
        let response = MetadataResponse {
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: vec![MetadataResponsePartition {
                    replica_nodes: nodes.clone().into(),
                    isr_nodes: InlineVec::from_slice(&nodes),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        for version in [1, 9, 12] {
            let frame = encode(&response, version);
            let back = MetadataResponse::decode(&mut Decoder::new(frame), version).unwrap();
            let partition = &back.topics[0].partitions[0];
            assert_eq!(partition.replica_nodes[..], nodes[..], "v{version}");
            assert_eq!(partition.isr_nodes[..], nodes[..], "v{version}");
            assert_eq!(partition.replica_nodes.spilled(), len > 4);
            assert_eq!(back, response);
        }
    }
}
