//! Consumer groups over real TCP: join, sync, heartbeat, commit and fetch,
//! the error codes of bad requests, and offsets that survive a restart.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_broker::{Broker, BrokerConfig};
use rill_protocol::codec::{Decode, Decoder, Encode, Encoder};
use rill_protocol::error_code::{
    COORDINATOR_LOAD_IN_PROGRESS, ILLEGAL_GENERATION, INVALID_REQUEST, MEMBER_ID_REQUIRED, NONE,
    NOT_COORDINATOR, UNKNOWN_MEMBER_ID, UNKNOWN_TOPIC_OR_PARTITION,
};
use rill_protocol::messages::create_topics_request::CreatableTopic;
use rill_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use rill_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use rill_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_protocol::messages::*;
use rill_protocol::{RequestBody, ResponseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    }
}

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn connect(broker: &Broker) -> Client {
        Client {
            stream: TcpStream::connect(broker.kafka_addr()).await.unwrap(),
            correlation_id: 0,
        }
    }

    async fn call(&mut self, version: i16, body: RequestBody) -> ResponseBody {
        let api = body.api_key();
        self.correlation_id += 1;
        let header = RequestHeader {
            request_api_key: api as i16,
            request_api_version: version,
            correlation_id: self.correlation_id,
            client_id: Some("groups-test".into()),
            ..Default::default()
        };
        let header_version = api.request_header_version(version);
        let len = header.encoded_len(header_version).unwrap() + body.encoded_len(version).unwrap();
        let mut encoder = Encoder::new();
        encoder.put_i32(len as i32);
        header.encode(&mut encoder, header_version).unwrap();
        body.encode(&mut encoder, version).unwrap();
        self.stream.write_all(&encoder.finish().buf).await.unwrap();
        let len = self.stream.read_i32().await.unwrap();
        let mut frame = vec![0u8; len as usize];
        self.stream.read_exact(&mut frame).await.unwrap();
        let mut decoder = Decoder::new(Bytes::from(frame));
        let header =
            ResponseHeader::decode(&mut decoder, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        let body = ResponseBody::decode(api, version, &mut decoder).unwrap();
        assert_eq!(decoder.remaining(), 0, "response has trailing bytes");
        body
    }

    async fn join(&mut self, group: &str, member: &str, metadata: Bytes) -> JoinGroupResponse {
        let request = JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            member_id: member.into(),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata,
                ..Default::default()
            }],
            ..Default::default()
        };
        match self.call(5, RequestBody::JoinGroup(request)).await {
            ResponseBody::JoinGroup(response) => response,
            other => panic!("not a JoinGroup response: {other:?}"),
        }
    }

    /// Joins through MEMBER_ID_REQUIRED, waiting out the coordinator's load.
    async fn join_new(&mut self, group: &str) -> JoinGroupResponse {
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            let first = self.join(group, "", Bytes::from_static(b"sub")).await;
            if first.error_code != COORDINATOR_LOAD_IN_PROGRESS {
                break first;
            }
            assert!(Instant::now() < deadline, "the coordinator never loaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        assert!(first.member_id.starts_with("groups-test-"));
        self.join(group, &first.member_id, Bytes::from_static(b"sub"))
            .await
    }

    async fn sync(&mut self, group: &str, member: &str, generation: i32) -> SyncGroupResponse {
        let request = SyncGroupRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            assignments: vec![SyncGroupRequestAssignment {
                member_id: member.into(),
                assignment: Bytes::from_static(b"all of it"),
                ..Default::default()
            }],
            ..Default::default()
        };
        match self.call(3, RequestBody::SyncGroup(request)).await {
            ResponseBody::SyncGroup(response) => response,
            other => panic!("not a SyncGroup response: {other:?}"),
        }
    }

    async fn commit(&mut self, group: &str, member: &str, generation: i32, offset: i64) -> i16 {
        self.commit_as(group, member, generation, "t", offset).await
    }

    /// A simple (memberless) commit to partition 0 of `topic`.
    async fn commit_to(&mut self, group: &str, topic: &str, offset: i64) -> i16 {
        self.commit_as(group, "", -1, topic, offset).await
    }

    async fn commit_as(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        topic: &str,
        offset: i64,
    ) -> i16 {
        let request = OffsetCommitRequest {
            group_id: group.into(),
            generation_id_or_member_epoch: generation,
            member_id: member.into(),
            topics: vec![OffsetCommitRequestTopic {
                name: topic.into(),
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: offset,
                    committed_metadata: Some("m".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        match self.call(8, RequestBody::OffsetCommit(request)).await {
            ResponseBody::OffsetCommit(response) => response.topics[0].partitions[0].error_code,
            other => panic!("not an OffsetCommit response: {other:?}"),
        }
    }

    /// Committed offsets of partition 0 of "t" in each group, by OffsetFetch
    /// v8 (many groups in one request); retries while the coordinator loads.
    async fn fetch(&mut self, groups: &[&str]) -> Vec<i64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let request = OffsetFetchRequest {
                groups: groups
                    .iter()
                    .map(|g| OffsetFetchRequestGroup {
                        group_id: g.to_string(),
                        topics: Some(vec![OffsetFetchRequestTopics {
                            name: "t".into(),
                            partition_indexes: [0][..].into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let ResponseBody::OffsetFetch(response) =
                self.call(8, RequestBody::OffsetFetch(request)).await
            else {
                panic!("not an OffsetFetch response")
            };
            if response.groups.iter().all(|g| g.error_code == NONE) {
                return response
                    .groups
                    .iter()
                    .map(|g| g.topics[0].partitions[0].committed_offset)
                    .collect();
            }
            assert!(Instant::now() < deadline, "{response:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn join_sync_heartbeat_commit_fetch_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let mut client = Client::connect(&broker).await;
    // Offsets are kept only for partitions that exist (Kafka's rule).
    let ResponseBody::CreateTopics(created) = client
        .call(
            7,
            RequestBody::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: "t".into(),
                    num_partitions: 1,
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
    assert_eq!(created.topics[0].error_code, NONE);

    let ResponseBody::FindCoordinator(found) = client
        .call(
            4,
            RequestBody::FindCoordinator(FindCoordinatorRequest {
                coordinator_keys: vec!["g".into(), "h".into()],
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not a FindCoordinator response")
    };
    assert_eq!(found.coordinators.len(), 2);
    for coordinator in &found.coordinators {
        assert_eq!(coordinator.error_code, NONE);
        assert_eq!(coordinator.port, i32::from(broker.kafka_addr().port()));
    }

    let joined = client.join_new("g").await;
    assert_eq!(joined.error_code, NONE);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.members.len(), 1);
    let member = joined.member_id.clone();
    let synced = client.sync("g", &member, 1).await;
    assert_eq!(
        (synced.error_code, synced.assignment.as_ref()),
        (NONE, &b"all of it"[..])
    );

    let ResponseBody::Heartbeat(beat) = client
        .call(
            3,
            RequestBody::Heartbeat(HeartbeatRequest {
                group_id: "g".into(),
                generation_id: 1,
                member_id: member.clone(),
                ..Default::default()
            }),
        )
        .await
    else {
        panic!("not a Heartbeat response")
    };
    assert_eq!(beat.error_code, NONE);

    assert_eq!(client.commit("g", &member, 1, 42).await, NONE);
    assert_eq!(client.commit("simple", "", -1, 7).await, NONE);
    assert_eq!(
        client.commit_to("simple", "no-such-topic", 7).await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // Bad commits get their error and change nothing.
    assert_eq!(client.commit("g", &member, 2, 99).await, ILLEGAL_GENERATION);
    assert_eq!(client.commit("g", "ghost", 1, 99).await, UNKNOWN_MEMBER_ID);
    assert_eq!(
        client.commit("nope", "ghost", 3, 99).await,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        client.fetch(&["g", "simple", "nope"]).await,
        vec![42, 7, -1]
    );

    // Oversized member metadata is refused; the group is untouched.
    let huge = client
        .join("g", "", Bytes::from(vec![7u8; 512 * 1024]))
        .await;
    assert_eq!(huge.error_code, INVALID_REQUEST);

    drop(client);
    broker.shutdown().await;
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let mut client = Client::connect(&broker).await;
    assert_eq!(client.fetch(&["g", "simple"]).await, vec![42, 7]);
    broker.shutdown().await;
}

#[tokio::test]
async fn shutdown_answers_a_join_that_waits_for_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let mut first = Client::connect(&broker).await;
    let joined = first.join_new("g").await;
    first
        .sync("g", &joined.member_id, joined.generation_id)
        .await;
    // A second member's join waits for the first to rejoin, which it never
    // does before the broker stops.
    let mut second = Client::connect(&broker).await;
    let id = second
        .join("g", "", Bytes::from_static(b"sub"))
        .await
        .member_id;
    let waiting = tokio::spawn(async move {
        let answer = second.join("g", &id, Bytes::from_static(b"sub")).await;
        answer.error_code
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the join should wait for the rebalance"
    );
    tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
        .await
        .expect("shutdown must not wait for the rebalance");
    assert_eq!(waiting.await.unwrap(), NOT_COORDINATOR);
}
