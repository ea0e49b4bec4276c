//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and the
//! expiry of offsets of groups that stayed empty too long.
//!
//! A commit is two steps so that memory never runs ahead of the log:
//! [`Coordinator::offset_commit`] validates and returns the records to
//! append; once they are appended the broker passes them to
//! [`Coordinator::apply`] and only then answers the client.

use std::collections::BTreeSet;

use bytes::Bytes;
use rill_protocol::codec::{Decode, Decoder, InlineVec};
use rill_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use rill_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use rill_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use rill_protocol::messages::{
    ConsumerProtocolSubscription, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
};

use crate::coordinator::{Coordinator, remove_offset};
use crate::error_code::*;
use crate::group::{Group, GroupState};
use crate::record::{GroupRecord, OffsetValue, RecordKey};

/// The answer to an OffsetCommit and the records that make it durable.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitPlan {
    /// The answer to send once `records` are appended; if the append fails,
    /// every partition that had no error gets COORDINATOR_NOT_AVAILABLE
    /// (see [`CommitPlan::failed`]).
    pub response: OffsetCommitResponse,
    pub records: Vec<GroupRecord>,
}

impl CommitPlan {
    /// The answer when the records could not be appended: the client retries.
    pub fn failed(mut self) -> OffsetCommitResponse {
        for topic in &mut self.response.topics {
            for partition in &mut topic.partitions {
                if partition.error_code == NONE {
                    partition.error_code = COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
        self.response
    }
}

/// One partition's answer to OffsetFetch, before it is put in the
/// version's own response types.
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error_code: i16,
}

impl Coordinator {
    /// OffsetCommit: validates the group, member and generation (or accepts a
    /// "simple" commit: generation -1 and no member, to a group without
    /// members) and returns the records to append.
    pub fn offset_commit(
        &mut self,
        version: i16,
        request: OffsetCommitRequest,
        now_ms: i64,
    ) -> CommitPlan {
        let group_error = self.validate_commit(&request, now_ms);
        let partition = self.partition(&request.group_id);
        let metadata_max = self.config.offset_metadata_bytes_max;
        let mut records = Vec::new();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in request.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let metadata = p.committed_metadata.unwrap_or_default();
                let error_code = if group_error != NONE {
                    group_error
                } else if metadata.len() > metadata_max {
                    OFFSET_METADATA_TOO_LARGE
                } else {
                    let key = RecordKey::Offset {
                        group_id: request.group_id.clone(),
                        topic: topic.name.clone(),
                        partition: p.partition_index,
                    };
                    let value = OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_timestamp_ms: if version == 1 && p.commit_timestamp >= 0 {
                            p.commit_timestamp
                        } else {
                            now_ms
                        },
                    };
                    match (key.encode(), value.encode()) {
                        (Ok(key), Ok(value)) => {
                            records.push(GroupRecord {
                                partition,
                                key,
                                value: Some(value),
                            });
                            NONE
                        }
                        // Only a topic name over 32767 bytes fails to
                        // encode, and no request can carry one.
                        _ => INVALID_REQUEST,
                    }
                };
                partitions.push(OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code,
                    ..Default::default()
                });
            }
            topics.push(OffsetCommitResponseTopic {
                name: topic.name,
                partitions,
                ..Default::default()
            });
        }
        CommitPlan {
            response: OffsetCommitResponse {
                topics,
                ..Default::default()
            },
            records,
        }
    }

    fn validate_commit(&mut self, request: &OffsetCommitRequest, now_ms: i64) -> i16 {
        if !self.loaded {
            return COORDINATOR_LOAD_IN_PROGRESS;
        }
        if request.group_id.is_empty() {
            return INVALID_GROUP_ID;
        }
        let generation = request.generation_id_or_member_epoch;
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            if generation >= 0 {
                // A member of a group this coordinator does not know: its
                // generation cannot be the current one.
                return ILLEGAL_GENERATION;
            }
            if self.groups.len() >= self.config.groups_max {
                return COORDINATOR_NOT_AVAILABLE;
            }
            return NONE;
        };
        if let Some(state) = group.consumer.as_ref().filter(|c| !c.members.is_empty()) {
            // KIP-848 groups: the member's epoch stands for the generation.
            return match state.members.get(&request.member_id) {
                None => UNKNOWN_MEMBER_ID,
                Some(member) if member.epoch != generation => STALE_MEMBER_EPOCH,
                Some(_) => NONE,
            };
        }
        if generation < 0 && group.state == GroupState::Empty {
            return NONE;
        }
        let member_id = request.member_id.as_str();
        let instance_id = request.group_instance_id.as_deref();
        if group.is_static_member_fenced(member_id, instance_id) {
            return FENCED_INSTANCE_ID;
        }
        let claims_membership = generation >= 0 || !member_id.is_empty() || instance_id.is_some();
        if claims_membership && !group.members.contains_key(member_id) {
            return UNKNOWN_MEMBER_ID;
        }
        if generation != group.generation {
            return ILLEGAL_GENERATION;
        }
        if group.state == GroupState::CompletingRebalance {
            return REBALANCE_IN_PROGRESS;
        }
        if let Some(member) = group.members.get_mut(member_id) {
            member.heartbeat_deadline_ms =
                now_ms.saturating_add(i64::from(member.session_timeout_ms));
        }
        NONE
    }

    /// OffsetFetch, v0-v7 (one group) and v8+ (many groups). Unknown groups
    /// and partitions answer offset -1. Rill has no transactional offsets,
    /// so `require_stable` never has to wait.
    pub fn offset_fetch(&self, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
        if version >= 8 {
            let groups = request
                .groups
                .into_iter()
                .map(|g| {
                    let asked = g.topics.map(|topics| {
                        topics
                            .into_iter()
                            .map(|t| (t.name, t.partition_indexes))
                            .collect()
                    });
                    let (error_code, topics) = match self.validate_fetch(
                        &g.group_id,
                        g.member_id.as_deref(),
                        g.member_epoch,
                    ) {
                        NONE => self.fetch_group(&g.group_id, asked),
                        refused => (refused, Vec::new()),
                    };
                    OffsetFetchResponseGroup {
                        group_id: g.group_id,
                        error_code,
                        topics: topics
                            .into_iter()
                            .map(|(name, partitions)| OffsetFetchResponseTopics {
                                name,
                                partitions: partitions
                                    .into_iter()
                                    .map(|f| OffsetFetchResponsePartitions {
                                        partition_index: f.partition,
                                        committed_offset: f.offset,
                                        committed_leader_epoch: f.leader_epoch,
                                        metadata: Some(f.metadata),
                                        error_code: f.error_code,
                                        ..Default::default()
                                    })
                                    .collect(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }
                })
                .collect();
            return OffsetFetchResponse {
                groups,
                ..Default::default()
            };
        }
        let asked = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        let (error_code, topics) = self.fetch_group(&request.group_id, asked);
        OffsetFetchResponse {
            error_code,
            topics: topics
                .into_iter()
                .map(|(name, partitions)| OffsetFetchResponseTopic {
                    name,
                    partitions: partitions
                        .into_iter()
                        .map(|f| OffsetFetchResponsePartition {
                            partition_index: f.partition,
                            committed_offset: f.offset,
                            committed_leader_epoch: f.leader_epoch,
                            metadata: Some(f.metadata),
                            error_code: f.error_code,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// OffsetFetch v9+ (KIP-848): a member of a consumer-protocol group
    /// names itself and its epoch, and is refused if it is not a member
    /// (UNKNOWN_MEMBER_ID) or its epoch is not the current one
    /// (STALE_MEMBER_EPOCH), so a fenced member cannot resume from offsets
    /// its successor is committing. Admin clients send neither and are
    /// always answered; classic groups check nothing, as in Kafka.
    fn validate_fetch(&self, group_id: &str, member_id: Option<&str>, member_epoch: i32) -> i16 {
        if member_id.is_none() && member_epoch < 0 {
            return NONE;
        }
        let Some(state) = self
            .groups
            .get(group_id)
            .and_then(|group| group.consumer.as_ref())
        else {
            return NONE;
        };
        match state.members.get(member_id.unwrap_or("")) {
            None => UNKNOWN_MEMBER_ID,
            Some(member) if member.epoch != member_epoch => STALE_MEMBER_EPOCH,
            Some(_) => NONE,
        }
    }

    /// The committed offsets of `asked` (every committed one when `None`).
    fn fetch_group(
        &self,
        group_id: &str,
        asked: Option<Vec<(String, InlineVec<i32>)>>,
    ) -> (i16, Vec<(String, Vec<Fetched>)>) {
        // Versions 0-1 have no group-level error: the partitions carry it.
        let group_error = if !self.loaded {
            COORDINATOR_LOAD_IN_PROGRESS
        } else if group_id.is_empty() {
            INVALID_GROUP_ID
        } else {
            NONE
        };
        let group = self.groups.get(group_id).filter(|_| group_error == NONE);
        let fetched = |topic: &str, partition: i32| {
            let stored = group
                .and_then(|g| g.offsets.get(topic))
                .and_then(|partitions| partitions.get(&partition));
            match stored {
                Some(v) => Fetched {
                    partition,
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                    error_code: NONE,
                },
                None => Fetched {
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error_code: group_error,
                },
            }
        };
        let topics = match asked {
            Some(asked) => asked
                .into_iter()
                .map(|(topic, partitions)| {
                    let rows = partitions.iter().map(|&p| fetched(&topic, p)).collect();
                    (topic, rows)
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(topic, partitions)| {
                            let rows = partitions.keys().map(|&p| fetched(topic, p)).collect();
                            (topic.clone(), rows)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        (group_error, topics)
    }

    /// OffsetDelete: removes offsets of topics the group does not consume.
    pub fn offset_delete(&mut self, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let group_error = match self.groups.get(&request.group_id) {
            _ if !self.loaded => COORDINATOR_LOAD_IN_PROGRESS,
            _ if request.group_id.is_empty() => INVALID_GROUP_ID,
            None => GROUP_ID_NOT_FOUND,
            Some(group) => match subscribed_topics(group) {
                Some(_) => NONE,
                None => NON_EMPTY_GROUP,
            },
        };
        if group_error != NONE {
            return OffsetDeleteResponse {
                error_code: group_error,
                ..Default::default()
            };
        }
        let partition = self.partition(&request.group_id);
        let Some(mut group) = self.groups.remove(&request.group_id) else {
            return OffsetDeleteResponse {
                error_code: GROUP_ID_NOT_FOUND,
                ..Default::default()
            };
        };
        let subscribed = subscribed_topics(&group).unwrap_or_default();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in request.topics {
            let in_use = subscribed.contains(&topic.name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let error_code = if in_use {
                    GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    if remove_offset(&mut group, &topic.name, p.partition_index) {
                        let key = RecordKey::Offset {
                            group_id: group.id.clone(),
                            topic: topic.name.clone(),
                            partition: p.partition_index,
                        };
                        if let Ok(key) = key.encode() {
                            self.records.push(GroupRecord {
                                partition,
                                key,
                                value: None,
                            });
                        }
                    }
                    NONE
                };
                partitions.push(OffsetDeleteResponsePartition {
                    partition_index: p.partition_index,
                    error_code,
                });
            }
            topics.push(OffsetDeleteResponseTopic {
                name: topic.name,
                partitions,
            });
        }
        self.groups.insert(request.group_id, group);
        OffsetDeleteResponse {
            topics,
            ..Default::default()
        }
    }

    /// Deletes offsets of groups that have been empty for the retention
    /// time, and groups left with neither members nor offsets.
    pub(crate) fn expire_offsets(&mut self, now_ms: i64) {
        let retention = self.config.offsets_retention_ms;
        let empty: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.state == GroupState::Empty && !g.has_members())
            .map(|g| g.id.clone())
            .collect();
        for id in empty {
            let Some(mut group) = self.groups.remove(&id) else {
                continue;
            };
            let since = group.state_timestamp_ms;
            let mut expired = Vec::new();
            for (topic, partitions) in &group.offsets {
                for (partition, value) in partitions {
                    if value
                        .commit_timestamp_ms
                        .max(since)
                        .saturating_add(retention)
                        <= now_ms
                    {
                        expired.push((topic.clone(), *partition));
                    }
                }
            }
            for (topic, partition) in expired {
                remove_offset(&mut group, &topic, partition);
                let key = RecordKey::Offset {
                    group_id: id.clone(),
                    topic,
                    partition,
                };
                self.records.extend(self.tombstone(key));
            }
            if group.offsets.is_empty() {
                self.records
                    .extend(self.tombstone(RecordKey::Group { group_id: id }));
            } else {
                self.groups.insert(id, group);
            }
        }
    }
}

/// The topics the group's members consume, read from their "consumer"
/// protocol subscriptions; `None` when that cannot be known (another
/// protocol type, or a subscription that does not parse), so that nothing
/// the group might use is deleted.
fn subscribed_topics(group: &Group) -> Option<BTreeSet<String>> {
    if let Some(state) = &group.consumer {
        return Some(state.subscribed_topics());
    }
    if group.state == GroupState::Empty {
        return Some(BTreeSet::new());
    }
    if group.protocol_type.as_deref() != Some("consumer") {
        return None;
    }
    let protocol = group.protocol_name.as_deref()?;
    let mut topics = BTreeSet::new();
    for member in group.members.values() {
        let metadata = member.metadata(protocol)?;
        topics.extend(decode_subscription(metadata)?.topics);
    }
    Some(topics)
}

/// A consumer protocol subscription: an i16 version, then the body.
pub(crate) fn decode_subscription(metadata: &Bytes) -> Option<ConsumerProtocolSubscription> {
    let mut dec = Decoder::new(metadata.clone());
    let version = dec.i16().ok()?;
    // Versions above those Rill knows keep the known fields first (the
    // consumer protocol's compatibility rule), so they are read as the
    // highest known one.
    ConsumerProtocolSubscription::decode(&mut dec, version.clamp(0, 3)).ok()
}
