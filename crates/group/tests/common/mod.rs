//! A small driver around the coordinator for the tests: builds requests and
//! collects delayed answers by token.

#![allow(dead_code)]

use std::collections::HashMap;

use bytes::Bytes;
use rill_group::error_code::NONE;
use rill_group::{ClientInfo, Completion, Coordinator, GroupConfig, GroupRecord, Reply, Token};
use rill_protocol::codec::{Encode, Encoder};
use rill_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use rill_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use rill_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_protocol::messages::*;

pub const SESSION_MS: i32 = 10_000;
pub const REBALANCE_MS: i32 = 30_000;

pub struct Driver {
    pub coordinator: Coordinator,
    pub joins: HashMap<Token, JoinGroupResponse>,
    pub syncs: HashMap<Token, SyncGroupResponse>,
    /// Every record the coordinator produced, in order, as the broker would
    /// append them.
    pub log: Vec<GroupRecord>,
}

pub fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

pub fn subscription(topics: &[&str]) -> Bytes {
    let value = ConsumerProtocolSubscription {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    let mut enc = Encoder::new();
    enc.put_i16(1);
    value.encode(&mut enc, 1).unwrap();
    enc.finish().buf
}

pub fn join_request(group: &str, member: &str, protocols: &[(&str, Bytes)]) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        member_id: member.into(),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|(name, metadata)| JoinGroupRequestProtocol {
                name: name.to_string(),
                metadata: metadata.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn range(topics: &[&str]) -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(topics))]
}

impl Driver {
    pub fn new() -> Driver {
        Driver::with(config())
    }

    pub fn with(config: GroupConfig) -> Driver {
        Driver {
            coordinator: Coordinator::new(config, 42),
            joins: HashMap::new(),
            syncs: HashMap::new(),
            log: Vec::new(),
        }
    }

    /// Collects completions and records after a call.
    pub fn drain(&mut self) {
        for completion in self.coordinator.take_completions() {
            match completion {
                Completion::Join(token, response) => {
                    assert!(
                        self.joins.insert(token, response).is_none(),
                        "join answered twice"
                    );
                }
                Completion::Sync(token, response) => {
                    assert!(
                        self.syncs.insert(token, response).is_none(),
                        "sync answered twice"
                    );
                }
            }
        }
        self.log.extend(self.coordinator.take_records());
    }

    pub fn join(
        &mut self,
        version: i16,
        request: JoinGroupRequest,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let client = ClientInfo {
            client_id: "client",
            client_host: "/127.0.0.1",
        };
        let reply = self
            .coordinator
            .join_group(version, request, client, now_ms);
        self.drain();
        reply
    }

    /// The answer to a join, now or already completed.
    pub fn joined(&mut self, reply: &Reply<JoinGroupResponse>) -> Option<JoinGroupResponse> {
        match reply {
            Reply::Now(response) => Some(response.clone()),
            Reply::Pending(token) => self.joins.get(token).cloned(),
        }
    }

    pub fn synced(&mut self, reply: &Reply<SyncGroupResponse>) -> Option<SyncGroupResponse> {
        match reply {
            Reply::Now(response) => Some(response.clone()),
            Reply::Pending(token) => self.syncs.get(token).cloned(),
        }
    }

    pub fn sync(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: &[(&str, &[u8])],
        now_ms: i64,
    ) -> Reply<SyncGroupResponse> {
        let request = SyncGroupRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            assignments: assignments
                .iter()
                .map(|(member, assignment)| SyncGroupRequestAssignment {
                    member_id: member.to_string(),
                    assignment: Bytes::copy_from_slice(assignment),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let reply = self.coordinator.sync_group(3, request, now_ms);
        self.drain();
        reply
    }

    pub fn heartbeat(&mut self, group: &str, member: &str, generation: i32, now_ms: i64) -> i16 {
        let request = HeartbeatRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            ..Default::default()
        };
        let response = self.coordinator.heartbeat(request, now_ms);
        self.drain();
        response.error_code
    }

    pub fn tick(&mut self, now_ms: i64) {
        self.coordinator.tick(now_ms);
        self.drain();
    }

    /// The v4+ two-step join of a new dynamic member: returns its id and the
    /// pending reply of the second JoinGroup.
    pub fn join_new(
        &mut self,
        group: &str,
        protocols: &[(&str, Bytes)],
        now_ms: i64,
    ) -> (String, Reply<JoinGroupResponse>) {
        let first = self.join(5, join_request(group, "", protocols), now_ms);
        let Reply::Now(first) = first else {
            panic!("MEMBER_ID_REQUIRED expected at once")
        };
        assert_eq!(first.error_code, rill_group::error_code::MEMBER_ID_REQUIRED);
        let id = first.member_id.clone();
        let reply = self.join(5, join_request(group, &id, protocols), now_ms);
        (id, reply)
    }

    /// One member that is Stable with `assignment`; returns (member, generation).
    pub fn stable_single(&mut self, group: &str, topics: &[&str], now_ms: i64) -> (String, i32) {
        let (id, reply) = self.join_new(group, &range(topics), now_ms);
        let joined = self
            .joined(&reply)
            .expect("a lone member's join completes at once");
        assert_eq!(joined.error_code, NONE);
        assert_eq!(joined.leader, id);
        let sync = self.sync(group, &id, joined.generation_id, &[(&id, b"a1")], now_ms);
        let synced = self
            .synced(&sync)
            .expect("the leader's sync completes at once");
        assert_eq!(synced.assignment.as_ref(), b"a1");
        (id, joined.generation_id)
    }

    /// Commits `offset` for each partition; applies the records as the
    /// broker does after the append. Returns the error codes.
    pub fn commit(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        partitions: &[(&str, i32, i64)],
        now_ms: i64,
    ) -> Vec<i16> {
        self.commit_with_metadata(group, member, generation, partitions, "", now_ms)
    }

    pub fn commit_with_metadata(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        partitions: &[(&str, i32, i64)],
        metadata: &str,
        now_ms: i64,
    ) -> Vec<i16> {
        let request = OffsetCommitRequest {
            group_id: group.into(),
            generation_id_or_member_epoch: generation,
            member_id: member.into(),
            topics: partitions
                .iter()
                .map(|(topic, partition, offset)| OffsetCommitRequestTopic {
                    name: topic.to_string(),
                    partitions: vec![OffsetCommitRequestPartition {
                        partition_index: *partition,
                        committed_offset: *offset,
                        committed_metadata: Some(metadata.to_string()),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let plan = self.coordinator.offset_commit(7, request, now_ms);
        self.coordinator.apply(&plan.records, now_ms).unwrap();
        self.log.extend(plan.records.iter().cloned());
        self.drain();
        plan.response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    /// Committed offset of one partition (-1 if none), via OffsetFetch v7.
    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> i64 {
        let request = OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: topic.into(),
                partition_indexes: [partition][..].into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let response = self.coordinator.offset_fetch(7, request);
        response.topics[0].partitions[0].committed_offset
    }

    pub fn state(&self, group: &str) -> (String, usize) {
        let response = self.coordinator.describe_groups(&DescribeGroupsRequest {
            groups: vec![group.into()],
            ..Default::default()
        });
        let described = &response.groups[0];
        (described.group_state.clone(), described.members.len())
    }
}
