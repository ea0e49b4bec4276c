//! Captures request frames from a real client for the protocol's golden
//! tests. It plays a one-broker cluster just far enough for the client to
//! send ApiVersions, Metadata, Produce, ListOffsets and Fetch, answering with
//! rill-protocol itself, and writes each request frame (without its size
//! prefix) once per API and version to `<out>/<prefix>_<api>_v<version>.bin`.
//!
//! Usage: `cargo run --release --bin capture -- <out-dir> <prefix> <port>`,
//! then point a client at 127.0.0.1:<port> (see crates/protocol/tests/golden/README.md).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rill_protocol::codec::{Decoder, Encode, Encoder};
use rill_protocol::messages::api_versions_response::ApiVersion;
use rill_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use rill_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use rill_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use rill_protocol::messages::{
    ApiVersionsResponse, FetchResponse, ListOffsetsResponse, MetadataResponse, ProduceResponse,
    ResponseHeader,
};
use rill_protocol::{ApiKey, Records, RequestBody, ResponseBody, Uuid, decode_request_header};

/// Frames above this are not from the small commands the capture expects.
const FRAME_BYTES_MAX: usize = 1 << 20;

fn answer(body: &RequestBody, port: u16) -> Option<ResponseBody> {
    let topic_id = Uuid::from_bytes([0x42; 16]);
    Some(match body {
        RequestBody::ApiVersions(_) => ApiVersionsResponse {
            api_keys: [
                ApiKey::Produce,
                ApiKey::Fetch,
                ApiKey::ListOffsets,
                ApiKey::Metadata,
                ApiKey::ApiVersions,
            ]
            .iter()
            .map(|key| ApiVersion {
                api_key: *key as i16,
                min_version: key.valid_versions().0,
                max_version: key.valid_versions().1,
                ..ApiVersion::default()
            })
            .collect(),
            ..ApiVersionsResponse::default()
        }
        .into(),
        RequestBody::Metadata(request) => {
            let names: Vec<String> = match &request.topics {
                Some(topics) if !topics.is_empty() => {
                    topics.iter().filter_map(|t| t.name.clone()).collect()
                }
                _ => vec!["golden".to_owned()],
            };
            MetadataResponse {
                brokers: vec![MetadataResponseBroker {
                    node_id: 0,
                    host: "127.0.0.1".to_owned(),
                    port: i32::from(port),
                    rack: None,
                    ..MetadataResponseBroker::default()
                }],
                cluster_id: Some("capture".to_owned()),
                controller_id: 0,
                topics: names
                    .into_iter()
                    .map(|name| MetadataResponseTopic {
                        name: Some(name),
                        topic_id,
                        partitions: vec![MetadataResponsePartition {
                            replica_nodes: [0][..].into(),
                            isr_nodes: [0][..].into(),
                            ..MetadataResponsePartition::default()
                        }],
                        ..MetadataResponseTopic::default()
                    })
                    .collect(),
                ..MetadataResponse::default()
            }
            .into()
        }
        RequestBody::Produce(request) => ProduceResponse {
            responses: request
                .topic_data
                .iter()
                .map(|topic| TopicProduceResponse {
                    name: topic.name.clone(),
                    partition_responses: topic
                        .partition_data
                        .iter()
                        .map(|partition| PartitionProduceResponse {
                            index: partition.index,
                            ..PartitionProduceResponse::default()
                        })
                        .collect(),
                    ..TopicProduceResponse::default()
                })
                .collect(),
            ..ProduceResponse::default()
        }
        .into(),
        RequestBody::ListOffsets(request) => ListOffsetsResponse {
            topics: request
                .topics
                .iter()
                .map(|topic| ListOffsetsTopicResponse {
                    name: topic.name.clone(),
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|partition| ListOffsetsPartitionResponse {
                            partition_index: partition.partition_index,
                            offset: 0,
                            ..ListOffsetsPartitionResponse::default()
                        })
                        .collect(),
                    ..ListOffsetsTopicResponse::default()
                })
                .collect(),
            ..ListOffsetsResponse::default()
        }
        .into(),
        RequestBody::Fetch(request) => FetchResponse {
            responses: request
                .topics
                .iter()
                .map(|topic| FetchableTopicResponse {
                    topic: topic.topic.clone(),
                    topic_id: topic.topic_id,
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|partition| PartitionData {
                            partition_index: partition.partition,
                            records: Some(Records::Bytes(Bytes::new())),
                            ..PartitionData::default()
                        })
                        .collect(),
                    ..FetchableTopicResponse::default()
                })
                .collect(),
            ..FetchResponse::default()
        }
        .into(),
        _ => return None,
    })
}

fn serve(
    mut stream: TcpStream,
    out: PathBuf,
    prefix: String,
    port: u16,
    seen: Arc<Mutex<HashSet<String>>>,
) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            return;
        }
        let Ok(len) = rill_protocol::frame::frame_len(size, FRAME_BYTES_MAX) else {
            return;
        };
        let mut frame = vec![0u8; len];
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let frame = Bytes::from(frame);
        let mut dec = Decoder::new(frame.clone());
        let Ok(header) = decode_request_header(&mut dec) else {
            eprintln!("unreadable header");
            return;
        };
        let version = header.request_api_version;
        let Some(key) = ApiKey::from_i16(header.request_api_key) else {
            return;
        };
        let name = format!("{prefix}_{}_v{version}", key.name());
        if seen
            .lock()
            .map(|mut seen| seen.insert(name.clone()))
            .unwrap_or(false)
        {
            std::fs::write(out.join(format!("{name}.bin")), &frame).expect("write frame");
            println!("captured {name} ({len} bytes)");
        }
        let body = match RequestBody::decode(key, version, &mut dec) {
            Ok(body) => body,
            Err(error) => {
                eprintln!("{name}: {error}");
                return;
            }
        };
        let Some(response) = answer(&body, port) else {
            eprintln!("{name}: not answered; closing");
            return;
        };
        let header_version = key.response_header_version(version);
        let response_header = ResponseHeader {
            correlation_id: header.correlation_id,
            ..ResponseHeader::default()
        };
        let mut enc = Encoder::new();
        let len = response_header.encoded_len(header_version).expect("len")
            + response.encoded_len(version).expect("len");
        enc.put_i32(len as i32);
        response_header
            .encode(&mut enc, header_version)
            .expect("encode");
        response.encode(&mut enc, version).expect("encode");
        if stream.write_all(&enc.finish().buf).is_err() {
            return;
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(out), Some(prefix), Some(port)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: capture <out-dir> <prefix> <port>");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("port");
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("out dir");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let seen = Arc::new(Mutex::new(HashSet::new()));
    for stream in listener.incoming().flatten() {
        let (out, prefix, seen) = (out.clone(), prefix.clone(), seen.clone());
        std::thread::spawn(move || serve(stream, out, prefix, port, seen));
    }
}
