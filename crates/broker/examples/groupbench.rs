//! Consumer-group numbers for docs/BENCHMARKS.md, against an in-process
//! broker over real TCP:
//!
//! 1. Rebalance after a graceful leave: 10 members (each its own
//!    connection, heartbeating every `--heartbeat-ms`) share 100 partitions;
//!    one sends LeaveGroup; the time until the 9 others have all finished
//!    SyncGroup of the next generation.
//!    Then the same with a crash: the member drops its connection without
//!    LeaveGroup, and the others wait out its session timeout (6 s, the
//!    smallest the coordinator accepts).
//! 2. OffsetCommit throughput and latency: `--connections` clients each
//!    commit one offset per request, back to back, for `--seconds`.
//!
//! `cargo run --release -p rill-broker --example groupbench`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_broker::{Broker, BrokerConfig};
use rill_protocol::codec::{Decode, Decoder, Encode, Encoder};
use rill_protocol::error_code::{COORDINATOR_LOAD_IN_PROGRESS, MEMBER_ID_REQUIRED, NONE};
use rill_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use rill_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_protocol::messages::*;
use rill_protocol::{RequestBody, ResponseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const MEMBERS: usize = 10;
const PARTITIONS: usize = 100;
const ROUNDS: usize = 5;
/// Session timeout of the bench's members: the coordinator's minimum, so
/// that a crash is noticed as soon as possible.
const SESSION_MS: i32 = 6_000;

/// How the last member goes away.
#[derive(Clone, Copy, PartialEq)]
enum Exit {
    Leave,
    Crash,
}

struct Options {
    heartbeat_ms: u64,
    connections: usize,
    seconds: u64,
}

fn options() -> Options {
    let mut options = Options {
        heartbeat_ms: 20,
        connections: 8,
        seconds: 5,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--heartbeat-ms", Some(v)) => options.heartbeat_ms = v,
            ("--connections", Some(v)) => options.connections = v as usize,
            ("--seconds", Some(v)) => options.seconds = v,
            _ => panic!("usage: groupbench [--heartbeat-ms N] [--connections N] [--seconds N]"),
        }
    }
    options
}

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn connect(broker: &Broker) -> Client {
        let stream = TcpStream::connect(broker.kafka_addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
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
            client_id: Some("groupbench".into()),
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
        ResponseHeader::decode(&mut decoder, api.response_header_version(version)).unwrap();
        ResponseBody::decode(api, version, &mut decoder).unwrap()
    }
}

/// One group member: join, sync (the leader assigns the partitions round
/// robin), heartbeat until a rebalance, again; or leave when told to.
/// Reports (generation, when its SyncGroup completed).
async fn member(
    broker: Arc<Broker>,
    group: String,
    heartbeat: Duration,
    leave: Arc<AtomicBool>,
    exit: Exit,
    report: mpsc::UnboundedSender<(i32, Instant)>,
    left: mpsc::UnboundedSender<Instant>,
) {
    let mut client = Client::connect(&broker).await;
    let mut member_id = String::new();
    loop {
        let request = JoinGroupRequest {
            group_id: group.clone(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: 10_000,
            member_id: member_id.clone(),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "roundrobin".into(),
                metadata: Bytes::from_static(b"subscription"),
                ..Default::default()
            }],
            ..Default::default()
        };
        let ResponseBody::JoinGroup(joined) = client.call(5, RequestBody::JoinGroup(request)).await
        else {
            unreachable!()
        };
        member_id = joined.member_id.clone();
        match joined.error_code {
            NONE => {}
            MEMBER_ID_REQUIRED | COORDINATOR_LOAD_IN_PROGRESS => continue,
            other => panic!("JoinGroup error {other}"),
        }
        let assignments = if joined.leader == member_id {
            let count = joined.members.len();
            joined
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| SyncGroupRequestAssignment {
                    member_id: m.member_id.clone(),
                    assignment: (i..PARTITIONS)
                        .step_by(count)
                        .flat_map(|p| (p as i32).to_be_bytes())
                        .collect::<Vec<u8>>()
                        .into(),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest {
            group_id: group.clone(),
            generation_id: joined.generation_id,
            member_id: member_id.clone(),
            assignments,
            ..Default::default()
        };
        let ResponseBody::SyncGroup(synced) = client.call(3, RequestBody::SyncGroup(request)).await
        else {
            unreachable!()
        };
        if synced.error_code != NONE {
            continue;
        }
        let _ = report.send((joined.generation_id, Instant::now()));
        loop {
            if leave.load(Ordering::Relaxed) {
                if exit == Exit::Crash {
                    let _ = left.send(Instant::now());
                    return;
                }
                let request = LeaveGroupRequest {
                    group_id: group.clone(),
                    member_id: member_id.clone(),
                    ..Default::default()
                };
                let _ = left.send(Instant::now());
                client.call(1, RequestBody::LeaveGroup(request)).await;
                return;
            }
            tokio::time::sleep(heartbeat).await;
            let request = HeartbeatRequest {
                group_id: group.clone(),
                generation_id: joined.generation_id,
                member_id: member_id.clone(),
                ..Default::default()
            };
            let ResponseBody::Heartbeat(beat) =
                client.call(3, RequestBody::Heartbeat(request)).await
            else {
                unreachable!()
            };
            if beat.error_code != NONE {
                break;
            }
        }
    }
}

async fn rebalance_after_exit(
    broker: &Arc<Broker>,
    round: usize,
    heartbeat: Duration,
    exit: Exit,
) -> Duration {
    let group = format!("rebalance-{round}");
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let (left_tx, mut left) = mpsc::unbounded_channel();
    let flags: Vec<Arc<AtomicBool>> = (0..MEMBERS)
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let tasks: Vec<_> = flags
        .iter()
        .map(|flag| {
            tokio::spawn(member(
                broker.clone(),
                group.clone(),
                heartbeat,
                flag.clone(),
                exit,
                report_tx.clone(),
                left_tx.clone(),
            ))
        })
        .collect();
    // Wait for one generation with all ten members.
    let mut generation = 0;
    let mut synced = 0;
    while synced < MEMBERS {
        let (g, _) = reports.recv().await.unwrap();
        if g > generation {
            generation = g;
            synced = 0;
        }
        if g == generation {
            synced += 1;
        }
    }
    flags[MEMBERS - 1].store(true, Ordering::Relaxed);
    let left_at = left.recv().await.unwrap();
    let mut done = Vec::new();
    while done.len() < MEMBERS - 1 {
        let (g, at) = reports.recv().await.unwrap();
        if g > generation {
            done.push(at);
        }
    }
    for flag in &flags {
        flag.store(true, Ordering::Relaxed);
    }
    for task in tasks {
        let _ = task.await;
    }
    done.into_iter().max().unwrap() - left_at
}

async fn commits(broker: &Arc<Broker>, connections: usize, seconds: u64) -> (f64, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let broker = broker.clone();
            tokio::spawn(async move {
                let mut client = Client::connect(&broker).await;
                let mut latencies = Vec::new();
                let mut offset = 0;
                while Instant::now() < deadline {
                    offset += 1;
                    let request = OffsetCommitRequest {
                        group_id: format!("commit-bench-{i}"),
                        topics: vec![OffsetCommitRequestTopic {
                            name: "t".into(),
                            partitions: vec![OffsetCommitRequestPartition {
                                partition_index: 0,
                                committed_offset: offset,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    };
                    let started = Instant::now();
                    let ResponseBody::OffsetCommit(response) =
                        client.call(8, RequestBody::OffsetCommit(request)).await
                    else {
                        unreachable!()
                    };
                    let code = response.topics[0].partitions[0].error_code;
                    if code == COORDINATOR_LOAD_IN_PROGRESS {
                        continue;
                    }
                    assert_eq!(code, NONE);
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let broker = Arc::new(Broker::start(config).await.unwrap());
    let heartbeat = Duration::from_millis(options.heartbeat_ms);
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        times.push(rebalance_after_exit(&broker, round, heartbeat, Exit::Leave).await);
    }
    times.sort();
    println!(
        "rebalance after LeaveGroup, {MEMBERS} members, {PARTITIONS} partitions, heartbeat every {} ms: \
         min {:.1} ms, median {:.1} ms, max {:.1} ms ({ROUNDS} rounds)",
        options.heartbeat_ms,
        times[0].as_secs_f64() * 1e3,
        times[ROUNDS / 2].as_secs_f64() * 1e3,
        times[ROUNDS - 1].as_secs_f64() * 1e3,
    );
    let crash = rebalance_after_exit(&broker, ROUNDS, heartbeat, Exit::Crash).await;
    println!(
        "rebalance after a crash (no LeaveGroup), session timeout {SESSION_MS} ms: {:.1} ms",
        crash.as_secs_f64() * 1e3
    );
    let (rate, latencies) = commits(&broker, options.connections, options.seconds).await;
    println!(
        "OffsetCommit, {} connections, one offset per request, {} s: {:.0} commits/s, \
         latency p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        options.connections,
        options.seconds,
        rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    match Arc::try_unwrap(broker) {
        Ok(broker) => broker.shutdown().await,
        Err(_) => eprintln!("broker still referenced; not shut down"),
    }
}
