//! The broker over real TCP, with requests built by the codec and record
//! batches built by `rill-records`: what a client sees, byte for byte.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_broker::{Broker, BrokerConfig};
use rill_protocol::codec::{Decode, Decoder, Encode, Encoder};
use rill_protocol::error_code::{
    CORRUPT_MESSAGE, INVALID_PRODUCER_EPOCH, INVALID_REQUEST, INVALID_TOPIC_EXCEPTION, NONE,
    OFFSET_OUT_OF_RANGE, OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_TOPIC_OR_PARTITION,
    UNSUPPORTED_VERSION,
};
use rill_protocol::messages::create_topics_request::CreatableTopic;
use rill_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use rill_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_protocol::messages::*;
use rill_protocol::{ApiKey, Records, RequestBody, ResponseBody};
use rill_records::batch::Compression;
use rill_records::builder::BatchBuilder;
use rill_records::record::decode_batch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct TestBroker {
    broker: Broker,
    _dir: tempfile::TempDir,
}

async fn start() -> TestBroker {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    adjust(&mut config);
    let broker = Broker::start(config).await.unwrap();
    TestBroker { broker, _dir: dir }
}

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn connect(broker: &TestBroker) -> Client {
        Client {
            stream: TcpStream::connect(broker.broker.kafka_addr())
                .await
                .unwrap(),
            correlation_id: 0,
        }
    }

    async fn send(&mut self, version: i16, body: RequestBody) -> i32 {
        let (id, frame) = self.frame(version, body);
        self.stream.write_all(&frame).await.unwrap();
        id
    }

    /// Encodes a request under the next correlation id, without sending it.
    fn frame(&mut self, version: i16, body: RequestBody) -> (i32, Vec<u8>) {
        let api = body.api_key();
        self.correlation_id += 1;
        let header = RequestHeader {
            request_api_key: api as i16,
            request_api_version: version,
            correlation_id: self.correlation_id,
            client_id: Some("wire-test".into()),
            ..Default::default()
        };
        let header_version = api.request_header_version(version);
        let len = header.encoded_len(header_version).unwrap() + body.encoded_len(version).unwrap();
        let mut encoder = Encoder::new();
        encoder.put_i32(len as i32);
        header.encode(&mut encoder, header_version).unwrap();
        body.encode(&mut encoder, version).unwrap();
        let frame = encoder.finish();
        assert!(frame.regions.is_empty());
        (self.correlation_id, frame.buf.to_vec())
    }

    async fn receive(&mut self, api: ApiKey, version: i16, correlation_id: i32) -> ResponseBody {
        let len = self.stream.read_i32().await.unwrap();
        let mut frame = vec![0u8; len as usize];
        self.stream.read_exact(&mut frame).await.unwrap();
        let mut decoder = Decoder::new(Bytes::from(frame));
        let header =
            ResponseHeader::decode(&mut decoder, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let body = ResponseBody::decode(api, version, &mut decoder).unwrap();
        assert_eq!(decoder.remaining(), 0, "response has trailing bytes");
        body
    }

    async fn call(&mut self, version: i16, body: RequestBody) -> ResponseBody {
        let api = body.api_key();
        let id = self.send(version, body).await;
        self.receive(api, version, id).await
    }
}

/// A batch stamped with the current time: an old timestamp would make the
/// log roll a new segment at once (`segment.ms` counts from the first
/// batch's timestamp, as in Kafka), and a fetch reads one segment at a time.
fn batch(values: &[&str]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut builder = BatchBuilder::new(Compression::None);
    for value in values {
        builder
            .append(
                now,
                Some(Bytes::from_static(b"k")),
                Some(Bytes::copy_from_slice(value.as_bytes())),
                Vec::new(),
            )
            .unwrap();
    }
    Bytes::from(builder.build().unwrap())
}

async fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let ResponseBody::CreateTopics(response) = client
        .call(
            7,
            RequestBody::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: name.into(),
                    num_partitions: partitions,
                    replication_factor: 1,
                    ..Default::default()
                }],
                timeout_ms: 1000,
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not a CreateTopics response")
    };
    assert_eq!(
        response.topics[0].error_code, NONE,
        "{:?}",
        response.topics[0].error_message
    );
}

/// ListOffsets timestamps that ask for the log end and the log start.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// The offset ListOffsets v7 answers for partition 0 of `topic`.
async fn list_offset(client: &mut Client, topic: &str, timestamp: i64) -> i64 {
    let ResponseBody::ListOffsets(response) = client
        .call(
            7,
            RequestBody::ListOffsets(ListOffsetsRequest {
                replica_id: -1,
                topics: vec![ListOffsetsTopic {
                    name: topic.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: 0,
                        timestamp,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not a ListOffsets response")
    };
    response.topics[0].partitions[0].offset
}

async fn produce(client: &mut Client, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let ResponseBody::Produce(response) = client
        .call(
            9,
            RequestBody::Produce(ProduceRequest {
                acks: -1,
                timeout_ms: 1000,
                topic_data: vec![TopicProduceData {
                    name: topic.into(),
                    partition_data: vec![PartitionProduceData {
                        index: partition,
                        records: Some(Records::Bytes(records)),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not a Produce response")
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> RequestBody {
    RequestBody::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn fetched_values(response: &FetchResponse) -> (i16, Vec<(i64, String)>) {
    let partition = &response.responses[0].partitions[0];
    let Some(Records::Bytes(bytes)) = &partition.records else {
        panic!("no records")
    };
    let mut values = Vec::new();
    let mut rest = bytes.clone();
    while !rest.is_empty() {
        let len = 12 + i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize;
        let decoded = decode_batch(&rest[..len], 1 << 20).unwrap();
        for record in decoded.iter() {
            let value = record.record.value.clone().unwrap();
            values.push((record.offset, String::from_utf8(value.to_vec()).unwrap()));
        }
        rest = rest.slice(len..);
    }
    (partition.error_code, values)
}

#[tokio::test]
async fn api_versions_lists_what_rill_supports() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    for version in [0, 3, 4] {
        let ResponseBody::ApiVersions(response) = client
            .call(
                version,
                RequestBody::ApiVersions(ApiVersionsRequest::default()),
            )
            .await
        else {
            panic!("not an ApiVersions response")
        };
        assert_eq!(response.error_code, NONE);
        let produce = response.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
        assert_eq!(response.api_keys.len(), rill_broker::SUPPORTED_APIS.len());
    }
    broker.broker.shutdown().await;
}

#[tokio::test]
async fn an_unknown_api_versions_version_gets_a_v0_answer() {
    let broker = start().await;
    let mut stream = TcpStream::connect(broker.broker.kafka_addr())
        .await
        .unwrap();
    // ApiVersions v99, correlation id 7, client id "x", then a flexible body.
    let request: &[u8] = &[0, 18, 0, 99, 0, 0, 0, 7, 0, 1, b'x', 0, 1, 1, 0];
    let mut frame = (request.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(request);
    stream.write_all(&frame).await.unwrap();
    let len = stream.read_i32().await.unwrap();
    let mut response = vec![0u8; len as usize];
    stream.read_exact(&mut response).await.unwrap();
    // Response header v0 (correlation id), then a v0 body:
    // UNSUPPORTED_VERSION and the ApiVersions range alone.
    assert_eq!(&response[..4], &7i32.to_be_bytes());
    assert_eq!(&response[4..6], &UNSUPPORTED_VERSION.to_be_bytes());
    assert_eq!(&response[6..10], &1i32.to_be_bytes());
    assert_eq!(&response[10..16], &[0, 18, 0, 0, 0, 4]);
    assert_eq!(response.len(), 16);
    broker.broker.shutdown().await;
}

#[tokio::test]
async fn produce_then_fetch_round_trips_and_offsets_grow() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "events", 3).await;
    assert_eq!(
        produce(&mut client, "events", 0, batch(&["a", "b", "c"])).await,
        (NONE, 0)
    );
    assert_eq!(
        produce(&mut client, "events", 0, batch(&["d"])).await,
        (NONE, 3)
    );
    let ResponseBody::Fetch(response) = client.call(12, fetch_request("events", 1, 0)).await else {
        panic!("not a Fetch response")
    };
    assert_eq!(response.responses[0].partitions[0].high_watermark, 4);
    let (code, values) = fetched_values(&response);
    assert_eq!(code, NONE);
    // Fetch returns whole batches: the first batch (offsets 0-2) is sent
    // whole; the client skips the records before its offset.
    let values: Vec<_> = values
        .into_iter()
        .filter(|(offset, _)| *offset >= 1)
        .collect();
    assert_eq!(
        values,
        vec![(1, "b".into()), (2, "c".into()), (3, "d".into())]
    );
    broker.broker.shutdown().await;
}

#[tokio::test]
async fn a_parked_fetch_wakes_when_data_arrives() {
    let broker = start().await;
    let mut producer = Client::connect(&broker).await;
    let mut consumer = Client::connect(&broker).await;
    create_topic(&mut producer, "wake", 1).await;
    let started = Instant::now();
    let id = consumer.send(12, fetch_request("wake", 0, 10_000)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce(&mut producer, "wake", 0, batch(&["hello"])).await;
    let ResponseBody::Fetch(response) = consumer.receive(ApiKey::Fetch, 12, id).await else {
        panic!("not a Fetch response")
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fetch was not woken"
    );
    assert_eq!(fetched_values(&response).1, vec![(0, "hello".into())]);
    broker.broker.shutdown().await;
}

#[tokio::test]
async fn errors_reach_the_client_as_kafka_codes() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    // Unknown partition, unknown topic.
    assert_eq!(
        produce(&mut client, "t", 5, batch(&["x"])).await.0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        produce(&mut client, "nope", 0, batch(&["x"])).await.0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // A flipped byte inside the records fails the CRC.
    let mut corrupt = batch(&["x"]).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(
        produce(&mut client, "t", 0, Bytes::from(corrupt)).await.0,
        CORRUPT_MESSAGE
    );
    // Fetching past the end.
    let ResponseBody::Fetch(response) = client.call(12, fetch_request("t", 42, 0)).await else {
        panic!("not a Fetch response")
    };
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        OFFSET_OUT_OF_RANGE
    );
    // Invalid topic name.
    let ResponseBody::CreateTopics(response) = client
        .call(
            7,
            RequestBody::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: "bad/name".into(),
                    num_partitions: 1,
                    replication_factor: 1,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not a CreateTopics response")
    };
    assert_eq!(response.topics[0].error_code, INVALID_TOPIC_EXCEPTION);
    broker.broker.shutdown().await;
}

#[tokio::test]
async fn metadata_auto_creates_and_list_offsets_answers() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let ResponseBody::Metadata(response) = client
        .call(
            12,
            RequestBody::Metadata(MetadataRequest {
                topics: Some(vec![MetadataRequestTopic {
                    name: Some("auto".into()),
                    ..Default::default()
                }]),
                allow_auto_topic_creation: true,
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not a Metadata response")
    };
    assert_eq!(response.topics[0].error_code, NONE);
    assert_eq!(response.topics[0].partitions.len(), 1);
    assert_eq!(
        response.brokers[0].port,
        broker.broker.kafka_addr().port() as i32
    );
    produce(&mut client, "auto", 0, batch(&["a", "b"])).await;
    assert_eq!(list_offset(&mut client, "auto", LATEST).await, 2);
    broker.broker.shutdown().await;
}

#[tokio::test]
async fn topics_and_data_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    {
        let broker = TestBroker {
            broker: Broker::start(config.clone()).await.unwrap(),
            _dir: tempfile::tempdir().unwrap(),
        };
        let mut client = Client::connect(&broker).await;
        create_topic(&mut client, "durable", 2).await;
        produce(&mut client, "durable", 0, batch(&["one", "two"])).await;
        broker.broker.shutdown().await;
    }
    let broker = TestBroker {
        broker: Broker::start(config).await.unwrap(),
        _dir: dir,
    };
    let mut client = Client::connect(&broker).await;
    let ResponseBody::Fetch(response) = client.call(12, fetch_request("durable", 0, 0)).await
    else {
        panic!("not a Fetch response")
    };
    assert_eq!(
        fetched_values(&response).1,
        vec![(0, "one".into()), (1, "two".into())]
    );
    broker.broker.shutdown().await;
}

fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut builder = BatchBuilder::new(Compression::None).producer(producer_id, epoch, sequence);
    for value in values {
        builder
            .append(
                now,
                None,
                Some(Bytes::copy_from_slice(value.as_bytes())),
                Vec::new(),
            )
            .unwrap();
    }
    Bytes::from(builder.build().unwrap())
}

#[tokio::test]
async fn idempotent_producers_get_duplicates_acknowledged_and_gaps_refused() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "idem", 1).await;
    let ResponseBody::InitProducerId(init) = client
        .call(
            4,
            RequestBody::InitProducerId(InitProducerIdRequest {
                transactional_id: None,
                transaction_timeout_ms: 60_000,
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(init.error_code, NONE);
    let (id, epoch) = (init.producer_id, init.producer_epoch);
    assert!(id >= 0);

    let first = idempotent_batch(id, epoch, 0, &["a", "b"]);
    assert_eq!(
        produce(&mut client, "idem", 0, first.clone()).await,
        (NONE, 0)
    );
    // A retry of the same batch is acknowledged with its first offsets and
    // not stored twice.
    assert_eq!(produce(&mut client, "idem", 0, first).await, (NONE, 0));
    assert_eq!(
        produce(
            &mut client,
            "idem",
            0,
            idempotent_batch(id, epoch, 2, &["c"])
        )
        .await,
        (NONE, 2)
    );
    // Sequence 5 after 2: batches 3 and 4 are missing.
    assert_eq!(
        produce(
            &mut client,
            "idem",
            0,
            idempotent_batch(id, epoch, 5, &["x"])
        )
        .await
        .0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // A bumped epoch starts at 0; the old epoch is then fenced.
    assert_eq!(
        produce(
            &mut client,
            "idem",
            0,
            idempotent_batch(id, epoch + 1, 0, &["d"])
        )
        .await,
        (NONE, 3)
    );
    assert_eq!(
        produce(
            &mut client,
            "idem",
            0,
            idempotent_batch(id, epoch, 3, &["y"])
        )
        .await
        .0,
        INVALID_PRODUCER_EPOCH
    );
    let ResponseBody::Fetch(response) = client.call(12, fetch_request("idem", 0, 0)).await else {
        panic!("not a Fetch response")
    };
    let values: Vec<String> = fetched_values(&response)
        .1
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, vec!["a", "b", "c", "d"]);
    broker.broker.shutdown().await;
}

/// InitProducerId with an existing id bumps its epoch; at the top of the
/// epoch range (including an epoch no client holds, i16::MAX, which once
/// overflowed the bump) it hands out a fresh id at epoch 0 instead.
#[tokio::test]
async fn an_epoch_bump_at_the_end_of_the_range_gives_a_fresh_id() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let (code, id, epoch) = init_producer(&mut client, -1, -1).await;
    assert_eq!((code, epoch), (NONE, 0));
    assert_eq!(init_producer(&mut client, id, 7).await, (NONE, id, 8));
    for exhausted in [i16::MAX - 1, i16::MAX] {
        let (code, fresh, epoch) = init_producer(&mut client, id, exhausted).await;
        assert_eq!((code, epoch), (NONE, 0));
        assert!(fresh >= 0 && fresh != id, "{fresh} after {id}");
    }
    assert_eq!(init_producer(&mut client, id, -5).await.0, INVALID_REQUEST);
    broker.broker.shutdown().await;
}

/// InitProducerId (v4) for an existing producer id and epoch, or -1 and -1
/// for a new one: (error code, producer id, epoch).
async fn init_producer(
    client: &mut Client,
    producer_id: i64,
    producer_epoch: i16,
) -> (i16, i64, i16) {
    let request = RequestBody::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        producer_id,
        producer_epoch,
        ..Default::default()
    });
    let ResponseBody::InitProducerId(response) = client.call(4, request).await else {
        panic!("not an InitProducerId response")
    };
    (
        response.error_code,
        response.producer_id,
        response.producer_epoch,
    )
}

async fn http_get(broker: &TestBroker, path: &str) -> String {
    let mut stream = TcpStream::connect(broker.broker.admin_addr())
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: rill\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn the_admin_server_reports_health_and_what_flowed() {
    let broker = start().await;
    assert!(
        http_get(&broker, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Ready once the group coordinator has loaded `__consumer_offsets`
    // (503 with the reason until then).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http_get(&broker, "/ready").await;
        if ready.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        assert!(Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(http_get(&broker, "/nope").await.starts_with("HTTP/1.1 404"));
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "metered", 1).await;
    produce(&mut client, "metered", 0, batch(&["a", "b", "c"])).await;
    client.call(12, fetch_request("metered", 1, 0)).await;
    let metrics = http_get(&broker, "/metrics").await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("rill_topic_messages_in_total{topic=\"metered\"}"),
        3.0
    );
    // The fetch from offset 1 moved the consumer on by two offsets.
    assert_eq!(
        value("rill_topic_messages_out_total{topic=\"metered\"}"),
        2.0
    );
    assert!(value("rill_topic_bytes_in_total{topic=\"metered\"}") > 0.0);
    assert!(value("rill_log_size_bytes{topic=\"metered\",partition=\"0\"}") > 0.0);
    assert!(value("rill_requests_total{api=\"Produce\"}") >= 1.0);
    assert_eq!(value("rill_connections"), 1.0);
    assert_eq!(value("rill_log_corrupt_batches"), 0.0);
    broker.broker.shutdown().await;
}

/// Pipelined produce requests get their answers in order (the broker may
/// write a run of them together), and a long-polling fetch pipelined
/// behind them does not hold them back.
#[tokio::test]
async fn pipelined_produce_answers_come_in_order_and_before_a_parked_fetch() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "piped", 1).await;
    create_topic(&mut client, "idle", 1).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let body = RequestBody::Produce(ProduceRequest {
            acks: 1,
            timeout_ms: 1000,
            topic_data: vec![TopicProduceData {
                name: "piped".into(),
                partition_data: vec![PartitionProduceData {
                    index: 0,
                    records: Some(Records::Bytes(batch(&[&format!("m{i}")]))),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        ids.push(client.send(9, body).await);
    }
    let started = Instant::now();
    let fetch_id = client.send(12, fetch_request("idle", 0, 3_000)).await;
    for (i, id) in ids.into_iter().enumerate() {
        let ResponseBody::Produce(response) = client.receive(ApiKey::Produce, 9, id).await else {
            panic!("not a Produce response")
        };
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            (partition.error_code, partition.base_offset),
            (NONE, i as i64)
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "produce answers waited for the parked fetch"
    );
    let ResponseBody::Fetch(_) = client.receive(ApiKey::Fetch, 12, fetch_id).await else {
        panic!("not a Fetch response")
    };
    broker.broker.shutdown().await;
}

fn produce_body(acks: i16, topic: &str, records: Bytes) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        acks,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(Records::Bytes(records)),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A run of produce requests that reaches the broker in one write is
/// appended partition by partition in one go (handlers::produce::handle_run),
/// yet every request is answered as if handled alone, in order: its own
/// base offset, its own error for a corrupt batch, the original offsets for
/// an idempotent retry, nothing for acks=0; and the log holds exactly the
/// accepted batches, in request order.
#[tokio::test]
async fn a_pipelined_run_of_produce_requests_is_answered_request_by_request() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "run", 1).await;
    let mut wire = Vec::new();
    let mut expected = Vec::new(); // (correlation id, acks, answer: Ok(base) | Err(code))
    let mut stored = Vec::new(); // values in log order
    let mut next_offset = 0i64;
    for i in 0..40usize {
        let values: Vec<String> = (0..1 + i % 3).map(|j| format!("m{i}-{j}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let (acks, records, answer) = match i {
            // A corrupt batch: refused alone.
            13 => {
                let mut bad = batch(&refs).to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                (1, Bytes::from(bad), Err(CORRUPT_MESSAGE))
            }
            // An idempotent producer, then its retry of the same batch.
            20 | 21 => (1, idempotent_batch(1000, 0, 0, &["idem"]), Ok(None)),
            // Fire and forget.
            30 => (0, batch(&refs), Ok(Some(0))),
            _ => (1, batch(&refs), Ok(Some(0))),
        };
        let answer = match answer {
            Err(code) => Err(code),
            Ok(None) if i == 21 => Ok(expected_base(&expected, 20)),
            Ok(_) => {
                let base = next_offset;
                if i == 20 {
                    stored.push("idem".to_string());
                    next_offset += 1;
                } else {
                    stored.extend(values.iter().cloned());
                    next_offset += values.len() as i64;
                }
                Ok(base)
            }
        };
        let (id, frame) = client.frame(9, produce_body(acks, "run", records));
        wire.extend_from_slice(&frame);
        expected.push((id, acks, answer));
    }
    client.stream.write_all(&wire).await.unwrap();
    for (id, acks, answer) in &expected {
        if *acks == 0 {
            continue;
        }
        let ResponseBody::Produce(response) = client.receive(ApiKey::Produce, 9, *id).await else {
            panic!("not a Produce response")
        };
        let partition = &response.responses[0].partition_responses[0];
        match answer {
            Ok(base) => assert_eq!(
                (partition.error_code, partition.base_offset),
                (NONE, *base),
                "request {id}"
            ),
            Err(code) => assert_eq!(partition.error_code, *code, "request {id}"),
        }
    }
    let ResponseBody::Fetch(response) = client.call(12, fetch_request("run", 0, 0)).await else {
        panic!("not a Fetch response")
    };
    let (code, fetched) = fetched_values(&response);
    assert_eq!(code, NONE);
    let values: Vec<String> = fetched.into_iter().map(|(_, value)| value).collect();
    assert_eq!(values, stored);
    broker.broker.shutdown().await;
}

/// A connection's queued requests are bounded in bytes: with a 64 KiB
/// budget, 60 pipelined requests of 20 KiB and one of 200 KiB (larger than
/// the whole budget, so it waits until the connection holds nothing else)
/// are all read, appended and answered in order.
#[tokio::test]
async fn pipelined_requests_beyond_the_byte_budget_are_all_answered_in_order() {
    let broker =
        start_with(|config| config.max_queued_request_bytes_per_connection = 64 * 1024).await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "budget", 1).await;
    let mut wire = Vec::new();
    let mut ids = Vec::new();
    let mut values = Vec::new();
    for i in 0..61usize {
        let len = if i == 30 { 200 * 1024 } else { 20 * 1024 };
        let value = format!("{i}-{}", "x".repeat(len));
        let (id, frame) = client.frame(9, produce_body(1, "budget", batch(&[&value])));
        wire.extend_from_slice(&frame);
        ids.push(id);
        values.push(value);
    }
    // The answers are small enough to wait in the socket buffers while
    // the broker reads the rest.
    client.stream.write_all(&wire).await.unwrap();
    for (i, id) in ids.into_iter().enumerate() {
        let ResponseBody::Produce(response) = client.receive(ApiKey::Produce, 9, id).await else {
            panic!("not a Produce response")
        };
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            (partition.error_code, partition.base_offset),
            (NONE, i as i64)
        );
    }
    let mut fetched = Vec::new();
    while fetched.len() < values.len() {
        let offset = fetched.len() as i64;
        let ResponseBody::Fetch(response) =
            client.call(12, fetch_request("budget", offset, 0)).await
        else {
            panic!("not a Fetch response")
        };
        let (code, got) = fetched_values(&response);
        assert_eq!(code, NONE);
        assert!(!got.is_empty());
        fetched.extend(got.into_iter().map(|(_, value)| value));
    }
    assert_eq!(fetched, values);
    broker.broker.shutdown().await;
}

/// The base offset expected for the request at `index` of a run.
fn expected_base(expected: &[(i32, i16, Result<i64, i16>)], index: usize) -> i64 {
    *expected[index].2.as_ref().unwrap()
}

/// `log_retention_check_interval_ms` reaches the log manager: with small
/// segments and `retention.bytes`, old segments go within a second rather
/// than at the default minute, and the earliest offset moves up.
#[tokio::test]
async fn retention_runs_at_the_configured_interval() {
    let broker = start_with(|config| {
        config.log_segment_bytes = 1024;
        config.log_retention_bytes = 1024;
        config.log_retention_check_interval_ms = 100;
    })
    .await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "kept", 1).await;
    let value = "v".repeat(100);
    for _ in 0..40 {
        let (error, _) = produce(&mut client, "kept", 0, batch(&[&value, &value])).await;
        assert_eq!(error, NONE);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if list_offset(&mut client, "kept", EARLIEST).await > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no segment deleted within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.broker.shutdown().await;
}

/// The broker reads as much as the socket holds into one buffer and cuts
/// frames from it: requests packed into one write, a size prefix split
/// across writes, and a request larger than the buffer keeps are each
/// read whole and answered in order, however the bytes arrive.
#[tokio::test]
async fn requests_are_read_whole_however_their_bytes_are_split() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "split", 1).await;
    // 900 KiB of values: more than a connection's buffer keeps (512 KiB).
    let big: Vec<String> = (0..900)
        .map(|i| format!("{i:04}{}", "x".repeat(1020)))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let batches = [
        batch(&["a"]),
        batch(&["b", "c"]),
        batch(&big),
        batch(&["d"]),
        batch(&["e"]),
    ];
    let mut ids = Vec::new();
    let mut bytes = Vec::new();
    for records in &batches {
        let (id, frame) = client.frame(9, produce_body(1, "split", records.clone()));
        ids.push(id);
        bytes.extend_from_slice(&frame);
    }
    // Writes of 1, 3, 7, ... bytes, then larger ones: prefixes and bodies
    // are cut at every kind of place.
    let mut at = 0;
    let mut step = 1;
    while at < bytes.len() {
        let end = (at + step).min(bytes.len());
        client.stream.write_all(&bytes[at..end]).await.unwrap();
        client.stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        at = end;
        step = step * 2 + 1;
    }
    let mut expected = 0;
    for (id, records) in ids.into_iter().zip(&batches) {
        let ResponseBody::Produce(response) = client.receive(ApiKey::Produce, 9, id).await else {
            panic!("not a Produce response")
        };
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            (partition.error_code, partition.base_offset),
            (NONE, expected)
        );
        expected += decode_batch(records, 1 << 20).unwrap().iter().count() as i64;
    }
    let ResponseBody::Fetch(response) = client.call(12, fetch_request("split", 0, 0)).await else {
        panic!("not a Fetch response")
    };
    let (error, values) = fetched_values(&response);
    assert_eq!(error, NONE);
    let values: Vec<&str> = values.iter().map(|(_, value)| value.as_str()).collect();
    let mut sent = vec!["a", "b", "c"];
    sent.extend(&big);
    sent.extend(["d", "e"]);
    assert_eq!(values, sent);
    broker.broker.shutdown().await;
}
