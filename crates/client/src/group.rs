//! Consumer groups over Kafka's classic protocol: find the coordinator,
//! join, let the leader assign partitions (range, or cooperative-sticky with
//! KIP-429's incremental revocation), sync, then heartbeat and commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use rill_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use rill_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_protocol::messages::leave_group_request::MemberIdentity;
use rill_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use rill_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use rill_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use rill_protocol::{ApiKey, Decode, Decoder, Encode, Encoder, RequestBody, ResponseBody};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::consumer::{Shared, TopicPartition};
use crate::error::{Error, Result, code};

/// The newest ConsumerProtocolSubscription/Assignment version this client
/// reads; newer ones are read as this one, as the Java client does.
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// Rejoins in a row before giving up on a rebalance: a group that keeps
/// rebalancing this often has a member flapping, and the caller should know.
const JOIN_ATTEMPTS_MAX: u32 = 20;

/// How partitions are spread over a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `range`: per topic, contiguous ranges to members in order.
    Range,
    /// Kafka's `cooperative-sticky`: balanced, keeps partitions where they
    /// were, and moves them in two rebalances so no member stops consuming
    /// the partitions it keeps.
    CooperativeSticky,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }
}

#[derive(Default)]
struct MemberState {
    member_id: String,
    generation: i32,
    coordinator: Option<i32>,
    protocol: Option<Assignor>,
    topics: Vec<String>,
    owned: Vec<TopicPartition>,
    /// As the group's leader: the partition count of every subscribed topic
    /// the last assignment was made with, so a change (partitions added, a
    /// topic created or deleted) starts a new rebalance.
    assigned_counts: Option<BTreeMap<String, i32>>,
}

pub(crate) struct GroupMember {
    consumer: Arc<Shared>,
    group_id: String,
    state: tokio::sync::Mutex<MemberState>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl GroupMember {
    pub(crate) fn new(consumer: Arc<Shared>, group_id: String) -> Arc<GroupMember> {
        Arc::new(GroupMember {
            consumer,
            group_id,
            state: tokio::sync::Mutex::new(MemberState {
                generation: -1,
                ..MemberState::default()
            }),
            task: std::sync::Mutex::new(None),
        })
    }

    fn client(&self) -> &Client {
        &self.consumer.client
    }

    fn group_error(&self, reason: impl Into<String>) -> Error {
        Error::Group {
            group: self.group_id.clone(),
            reason: reason.into(),
        }
    }

    /// Joins the group for `topics` and keeps the membership alive in a task.
    pub(crate) async fn start(self: Arc<GroupMember>, topics: Vec<String>) -> Result<()> {
        self.state.lock().await.topics = topics;
        self.join().await?;
        let member = self.clone();
        replace_task(
            &self.task,
            tokio::spawn(async move { member.keep_alive().await }),
        );
        Ok(())
    }

    async fn coordinator(&self, state: &mut MemberState) -> Result<i32> {
        cached_coordinator(self.client(), &self.group_id, &mut state.coordinator).await
    }

    /// Runs one rebalance: JoinGroup, assignment if leader, SyncGroup, and
    /// the new assignment handed to the fetcher.
    async fn join(&self) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.join_once().await {
                Ok(true) => return Ok(()),
                // A cooperative revocation: join again at once.
                Ok(false) => {}
                Err(error) if attempts < JOIN_ATTEMPTS_MAX && self.rejoinable(&error).await => {
                    tracing::debug!(group = %self.group_id, %error, "rejoining");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether a join failure is worth another attempt, forgetting what it
    /// invalidated.
    async fn rejoinable(&self, error: &Error) -> bool {
        let mut state = self.state.lock().await;
        match error.code() {
            Some(code::UNKNOWN_MEMBER_ID) | Some(code::ILLEGAL_GENERATION) => {
                state.member_id.clear();
                state.generation = -1;
                true
            }
            Some(code::NOT_COORDINATOR) | Some(code::COORDINATOR_NOT_AVAILABLE) => {
                state.coordinator = None;
                true
            }
            Some(code::REBALANCE_IN_PROGRESS) | Some(code::COORDINATOR_LOAD_IN_PROGRESS) => true,
            _ => {
                if error.is_retriable() {
                    state.coordinator = None;
                }
                error.is_retriable()
            }
        }
    }

    /// One JoinGroup + SyncGroup; `Ok(false)` when a cooperative revocation
    /// asks for another round.
    async fn join_once(&self) -> Result<bool> {
        let mut state = self.state.lock().await;
        let coordinator = self.coordinator(&mut state).await?;
        let config = &self.consumer.config;
        if self.eager(&state) {
            // Eager protocols give up every partition before rejoining.
            self.commit_locked(&state, self.consumer.committable())
                .await
                .ok();
            self.consumer.set_assignment(&[], &HashMap::new());
            state.owned.clear();
        }
        let metadata = encode_subscription(&state.topics, &state.owned, state.generation);
        let protocols: Vec<JoinGroupRequestProtocol> = config
            .assignors
            .iter()
            .map(|assignor| JoinGroupRequestProtocol {
                name: assignor.name().to_string(),
                metadata: metadata.clone(),
                ..Default::default()
            })
            .collect();
        let mut member_id = state.member_id.clone();
        let joined = loop {
            let request = JoinGroupRequest {
                group_id: self.group_id.clone(),
                session_timeout_ms: config.session_timeout.as_millis() as i32,
                rebalance_timeout_ms: config.rebalance_timeout.as_millis() as i32,
                member_id: member_id.clone(),
                group_instance_id: None,
                protocol_type: "consumer".into(),
                protocols: protocols.clone(),
                reason: None,
                ..Default::default()
            };
            let connection = self.client().connection(coordinator).await?;
            let response = connection
                .call_with_timeout(
                    ApiKey::JoinGroup,
                    |_| RequestBody::JoinGroup(request),
                    config.rebalance_timeout,
                )
                .await?;
            let ResponseBody::JoinGroup(response) = response else {
                return Err(self.group_error("JoinGroup answered with another API"));
            };
            match response.error_code {
                code::NONE => break response,
                // KIP-394: the first join only hands out a member id.
                code::MEMBER_ID_REQUIRED => member_id = response.member_id,
                other => return Err(Error::kafka("join group", other, None)),
            }
        };
        state.member_id = joined.member_id.clone();
        state.generation = joined.generation_id;
        let protocol = joined
            .protocol_name
            .as_deref()
            .and_then(Assignor::from_name)
            .ok_or_else(|| self.group_error("the group chose an assignor this client lacks"))?;
        state.protocol = Some(protocol);
        state.assigned_counts = None;
        let assignments = if joined.leader == joined.member_id {
            let mut subscriptions = BTreeMap::new();
            for member in &joined.members {
                subscriptions.insert(
                    member.member_id.clone(),
                    decode_subscription(&member.metadata)?,
                );
            }
            let topics: BTreeSet<String> = subscriptions
                .values()
                .flat_map(|subscription| subscription.topics.iter().cloned())
                .collect();
            let counts = self.partition_counts(&topics).await?;
            let plan = match protocol {
                Assignor::Range => assign_range(&subscriptions, &counts),
                Assignor::CooperativeSticky => assign_cooperative_sticky(&subscriptions, &counts),
            };
            state.assigned_counts = Some(counts);
            plan.into_iter()
                .map(|(member_id, partitions)| SyncGroupRequestAssignment {
                    member_id,
                    assignment: encode_assignment(&partitions),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest {
            group_id: self.group_id.clone(),
            generation_id: state.generation,
            member_id: state.member_id.clone(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some(protocol.name().into()),
            assignments,
            ..Default::default()
        };
        let connection = self.client().connection(coordinator).await?;
        let response = connection
            .call_with_timeout(
                ApiKey::SyncGroup,
                |_| RequestBody::SyncGroup(request),
                config.rebalance_timeout,
            )
            .await?;
        let ResponseBody::SyncGroup(response) = response else {
            return Err(self.group_error("SyncGroup answered with another API"));
        };
        if response.error_code != code::NONE {
            return Err(Error::kafka("sync group", response.error_code, None));
        }
        let assigned = decode_assignment(&response.assignment)?;
        let revoked: Vec<TopicPartition> = state
            .owned
            .iter()
            .filter(|tp| !assigned.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            // Offsets of what we give up are committed before another member
            // starts from them.
            let committable = self.consumer.committable();
            let revoked_offsets = committable
                .into_iter()
                .filter(|(tp, _)| revoked.contains(tp))
                .collect();
            self.commit_locked(&state, revoked_offsets).await.ok();
        }
        let starts = self.fetch_committed(coordinator, &assigned).await?;
        self.consumer.set_assignment(&assigned, &starts);
        state.owned = assigned;
        tracing::debug!(group = %self.group_id, generation = state.generation, owned = ?state.owned, "joined");
        // KIP-429: a member that lost partitions rejoins so they can be
        // handed to their new owner.
        Ok(revoked.is_empty() || protocol == Assignor::Range)
    }

    fn eager(&self, state: &MemberState) -> bool {
        state.protocol != Some(Assignor::CooperativeSticky)
    }

    /// The current partition count of each of `topics` that exists, from
    /// fresh metadata.
    async fn partition_counts(&self, topics: &BTreeSet<String>) -> Result<BTreeMap<String, i32>> {
        let names: Vec<String> = topics.iter().cloned().collect();
        let metadata = self.client().refresh_metadata(Some(&names)).await?;
        Ok(topics
            .iter()
            .filter_map(|topic| {
                let info = metadata.topics.get(topic)?;
                Some((topic.clone(), info.partitions.len() as i32))
            })
            .collect())
    }

    /// As the leader, whether the subscribed topics' partition counts moved
    /// since the last assignment (as the Java consumer's leader watches its
    /// metadata snapshot).
    async fn partitions_changed(&self) -> bool {
        let assigned = self.state.lock().await.assigned_counts.clone();
        let Some(assigned) = assigned else {
            return false;
        };
        let topics = assigned.keys().cloned().collect();
        match self.partition_counts(&topics).await {
            Ok(now) => now != assigned,
            Err(error) => {
                tracing::debug!(group = %self.group_id, %error, "cannot check partition counts");
                false
            }
        }
    }

    /// The group's committed offsets for `partitions`.
    pub(crate) async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        let coordinator = {
            let mut state = self.state.lock().await;
            self.coordinator(&mut state).await?
        };
        self.fetch_committed(coordinator, partitions).await
    }

    async fn fetch_committed(
        &self,
        coordinator: i32,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        fetch_committed(self.client(), coordinator, &self.group_id, Some(partitions)).await
    }

    /// Commits offsets under the current generation.
    pub(crate) async fn commit(&self, offsets: HashMap<TopicPartition, i64>) -> Result<()> {
        let state = self.state.lock().await;
        self.commit_locked(&state, offsets).await
    }

    async fn commit_locked(
        &self,
        state: &MemberState,
        offsets: HashMap<TopicPartition, i64>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let Some(coordinator) = state.coordinator else {
            return Err(self.group_error("no coordinator known yet"));
        };
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            by_topic
                .entry(tp.topic)
                .or_default()
                .push(commit_partition(tp.partition, offset));
        }
        commit_offsets(
            self.client(),
            coordinator,
            &self.group_id,
            state.generation,
            &state.member_id,
            by_topic,
        )
        .await
    }

    /// Heartbeats, auto-commits, and rejoins when the group rebalances.
    async fn keep_alive(self: Arc<GroupMember>) {
        let config = self.consumer.config.clone();
        let mut last_commit = Instant::now();
        let mut last_metadata_check = Instant::now();
        loop {
            tokio::time::sleep(config.heartbeat_interval.min(config.auto_commit_interval)).await;
            if config.enable_auto_commit && last_commit.elapsed() >= config.auto_commit_interval {
                if let Err(error) = self.commit(self.consumer.committable()).await {
                    tracing::debug!(%error, "auto-commit failed");
                }
                last_commit = Instant::now();
            }
            let mut rejoin = match self.heartbeat().await {
                Ok(()) => false,
                Err(error) => {
                    tracing::debug!(group = %self.group_id, %error, "heartbeat");
                    self.rejoinable(&error).await
                }
            };
            if !rejoin && last_metadata_check.elapsed() >= config.client.metadata_max_age {
                last_metadata_check = Instant::now();
                if self.partitions_changed().await {
                    tracing::info!(group = %self.group_id, "partition counts changed; rebalancing");
                    rejoin = true;
                }
            }
            if rejoin && let Err(error) = self.join().await {
                tracing::warn!(group = %self.group_id, %error, "rejoining the group failed");
            }
        }
    }

    async fn heartbeat(&self) -> Result<()> {
        let (coordinator, request) = {
            let mut state = self.state.lock().await;
            let coordinator = self.coordinator(&mut state).await?;
            (
                coordinator,
                HeartbeatRequest {
                    group_id: self.group_id.clone(),
                    generation_id: state.generation,
                    member_id: state.member_id.clone(),
                    group_instance_id: None,
                    ..Default::default()
                },
            )
        };
        let response = self
            .client()
            .call(coordinator, ApiKey::Heartbeat, |_| {
                RequestBody::Heartbeat(request)
            })
            .await?;
        let ResponseBody::Heartbeat(response) = response else {
            return Err(self.group_error("Heartbeat answered with another API"));
        };
        match response.error_code {
            code::NONE => Ok(()),
            other => Err(Error::kafka("heartbeat", other, None)),
        }
    }

    /// Commits (with auto-commit) and leaves, so the group rebalances now
    /// rather than after the session timeout.
    pub(crate) async fn leave(&self) -> Result<()> {
        stop_task(&self.task);
        let state = self.state.lock().await;
        if state.member_id.is_empty() {
            return Ok(());
        }
        if self.consumer.config.enable_auto_commit {
            self.commit_locked(&state, self.consumer.committable())
                .await
                .ok();
        }
        let Some(coordinator) = state.coordinator else {
            return Ok(());
        };
        let request = LeaveGroupRequest {
            group_id: self.group_id.clone(),
            member_id: state.member_id.clone(),
            members: vec![MemberIdentity {
                member_id: state.member_id.clone(),
                group_instance_id: None,
                reason: Some("the consumer is closing".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        self.client()
            .call(coordinator, ApiKey::LeaveGroup, |_| {
                RequestBody::LeaveGroup(request)
            })
            .await
            .map(|_| ())
    }
}

/// The broker that coordinates `group_id`.
/// Makes `task` the member's background task, stopping the one it replaces.
pub(crate) fn replace_task(slot: &std::sync::Mutex<Option<JoinHandle<()>>>, task: JoinHandle<()>) {
    if let Ok(mut slot) = slot.lock()
        && let Some(previous) = slot.replace(task)
    {
        previous.abort();
    }
}

/// Stops the member's background task, if it has one.
pub(crate) fn stop_task(slot: &std::sync::Mutex<Option<JoinHandle<()>>>) {
    if let Ok(mut slot) = slot.lock()
        && let Some(task) = slot.take()
    {
        task.abort();
    }
}

/// The group's coordinator: `cached`, or looked up and remembered there.
pub(crate) async fn cached_coordinator(
    client: &Client,
    group_id: &str,
    cached: &mut Option<i32>,
) -> Result<i32> {
    if let Some(node) = *cached {
        return Ok(node);
    }
    let node = find_coordinator(client, group_id).await?;
    *cached = Some(node);
    Ok(node)
}

pub(crate) async fn find_coordinator(client: &Client, group_id: &str) -> Result<i32> {
    let response = client
        .call_any(ApiKey::FindCoordinator, |_| {
            RequestBody::FindCoordinator(FindCoordinatorRequest {
                key: group_id.to_string(),
                key_type: 0,
                coordinator_keys: vec![group_id.to_string()],
                ..Default::default()
            })
        })
        .await?;
    let ResponseBody::FindCoordinator(response) = response else {
        return Err(Error::Group {
            group: group_id.to_string(),
            reason: "FindCoordinator answered with another API".into(),
        });
    };
    // v4+ answer per key in `coordinators`; older versions at the top.
    let (error_code, node_id) = match response.coordinators.first() {
        Some(found) => (found.error_code, found.node_id),
        None => (response.error_code, response.node_id),
    };
    if error_code != code::NONE {
        return Err(Error::kafka(
            format!("find the coordinator of group '{group_id}'"),
            error_code,
            None,
        ));
    }
    if !client.metadata().brokers.contains_key(&node_id) {
        client.refresh_metadata(Some(&[])).await?;
    }
    if !client.metadata().brokers.contains_key(&node_id) {
        return Err(Error::UnknownBroker(node_id));
    }
    Ok(node_id)
}

/// A group's committed offsets: for `partitions`, or all with `None`.
pub(crate) async fn fetch_committed(
    client: &Client,
    coordinator: i32,
    group_id: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<HashMap<TopicPartition, i64>> {
    let topics = partitions.map(|partitions| {
        group_by_topic(partitions)
            .into_iter()
            .map(|(name, partition_indexes)| OffsetFetchRequestTopic {
                name,
                partition_indexes: partition_indexes.into(),
                ..Default::default()
            })
            .collect()
    });
    let request = OffsetFetchRequest {
        group_id: group_id.to_string(),
        topics,
        require_stable: false,
        ..Default::default()
    };
    let response = client
        .call(coordinator, ApiKey::OffsetFetch, |_| {
            RequestBody::OffsetFetch(request)
        })
        .await?;
    let ResponseBody::OffsetFetch(response) = response else {
        return Err(Error::Group {
            group: group_id.to_string(),
            reason: "OffsetFetch answered with another API".into(),
        });
    };
    if response.error_code != code::NONE {
        return Err(Error::kafka(
            format!("fetch committed offsets of group '{group_id}'"),
            response.error_code,
            None,
        ));
    }
    let mut committed = HashMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            if partition.error_code == code::NONE && partition.committed_offset >= 0 {
                committed.insert(
                    TopicPartition::new(&topic.name, partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(committed)
}

/// One partition's entry in an OffsetCommit: the offset, no metadata, no
/// leader epoch, the broker's commit time.
pub(crate) fn commit_partition(partition: i32, offset: i64) -> OffsetCommitRequestPartition {
    OffsetCommitRequestPartition {
        partition_index: partition,
        committed_offset: offset,
        committed_leader_epoch: -1,
        commit_timestamp: -1,
        committed_metadata: Some(String::new()),
        ..Default::default()
    }
}

/// OffsetCommit to `coordinator`; generation -1 and an empty member id
/// commit as a tool outside the group (as `rill group reset-offsets` does).
pub(crate) async fn commit_offsets(
    client: &Client,
    coordinator: i32,
    group_id: &str,
    generation: i32,
    member_id: &str,
    by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>>,
) -> Result<()> {
    let request = OffsetCommitRequest {
        group_id: group_id.to_string(),
        generation_id_or_member_epoch: generation,
        member_id: member_id.to_string(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: by_topic
            .into_iter()
            .map(|(name, partitions)| OffsetCommitRequestTopic {
                name,
                partitions,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let response = client
        .call(coordinator, ApiKey::OffsetCommit, |_| {
            RequestBody::OffsetCommit(request)
        })
        .await?;
    let ResponseBody::OffsetCommit(response) = response else {
        return Err(Error::Group {
            group: group_id.to_string(),
            reason: "OffsetCommit answered with another API".into(),
        });
    };
    for topic in response.topics {
        for partition in topic.partitions {
            if partition.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("commit offsets of group '{group_id}'"),
                    partition.error_code,
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// A member's subscription as the leader reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) topics: Vec<String>,
    pub(crate) owned: Vec<TopicPartition>,
}

fn encode_subscription(topics: &[String], owned: &[TopicPartition], generation: i32) -> Bytes {
    let version = 1;
    let subscription = ConsumerProtocolSubscription {
        topics: topics.to_vec(),
        user_data: None,
        owned_partitions: group_by_topic(owned)
            .into_iter()
            .map(|(topic, partitions)| OwnedTopic {
                topic,
                partitions: partitions.into(),
            })
            .collect(),
        generation_id: generation,
        rack_id: None,
    };
    let mut encoder = Encoder::new();
    encoder.put_i16(version);
    // Encoding an in-memory value with short strings cannot fail; an error
    // would only shorten the metadata, which the coordinator then rejects.
    let _ = subscription.encode(&mut encoder, version);
    encoder.finish().buf
}

fn decode_subscription(bytes: &Bytes) -> Result<Subscription> {
    let mut decoder = Decoder::new(bytes.clone());
    let decode =
        |decoder: &mut Decoder| -> std::result::Result<Subscription, rill_protocol::DecodeError> {
            let version = decoder.i16()?.min(CONSUMER_PROTOCOL_VERSION_MAX);
            let subscription = ConsumerProtocolSubscription::decode(decoder, version)?;
            Ok(Subscription {
                topics: subscription.topics,
                owned: subscription
                    .owned_partitions
                    .into_iter()
                    .flat_map(|topic| {
                        let name = topic.topic;
                        topic
                            .partitions
                            .into_iter()
                            .map(move |partition| TopicPartition::new(&name, partition))
                    })
                    .collect(),
            })
        };
    decode(&mut decoder).map_err(|error| Error::Protocol {
        addr: "group member".into(),
        reason: format!("bad consumer subscription: {error}"),
    })
}

fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let version = 1;
    let assignment = ConsumerProtocolAssignment {
        assigned_partitions: group_by_topic(partitions)
            .into_iter()
            .map(|(topic, partitions)| AssignedTopic {
                topic,
                partitions: partitions.into(),
            })
            .collect(),
        user_data: None,
    };
    let mut encoder = Encoder::new();
    encoder.put_i16(version);
    let _ = assignment.encode(&mut encoder, version);
    encoder.finish().buf
}

pub(crate) fn decode_assignment(bytes: &Bytes) -> Result<Vec<TopicPartition>> {
    // A member the leader gave nothing may get an empty assignment.
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut decoder = Decoder::new(bytes.clone());
    let decoded = decoder
        .i16()
        .and_then(|version| {
            ConsumerProtocolAssignment::decode(
                &mut decoder,
                version.min(CONSUMER_PROTOCOL_VERSION_MAX),
            )
        })
        .map_err(|error| Error::Protocol {
            addr: "group leader".into(),
            reason: format!("bad consumer assignment: {error}"),
        })?;
    let mut partitions: Vec<TopicPartition> = decoded
        .assigned_partitions
        .into_iter()
        .flat_map(|topic| {
            let name = topic.topic;
            topic
                .partitions
                .into_iter()
                .map(move |partition| TopicPartition::new(&name, partition))
        })
        .collect();
    partitions.sort();
    Ok(partitions)
}

fn group_by_topic(partitions: &[TopicPartition]) -> BTreeMap<String, Vec<i32>> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic
            .entry(tp.topic.clone())
            .or_default()
            .push(tp.partition);
    }
    by_topic
}

/// Kafka's range assignor: for each topic, members subscribed to it in
/// member-id order get contiguous ranges, the first ones one more.
pub(crate) fn assign_range(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut plan: BTreeMap<String, Vec<TopicPartition>> = subscriptions
        .keys()
        .map(|member| (member.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let per_member = count / members.len() as i32;
        let extra = count % members.len() as i32;
        let mut next = 0;
        for (index, member) in members.iter().enumerate() {
            let take = per_member + i32::from((index as i32) < extra);
            if let Some(partitions) = plan.get_mut(*member) {
                partitions.extend((next..next + take).map(|p| TopicPartition::new(topic, p)));
            }
            next += take;
        }
    }
    plan
}

/// Kafka's cooperative-sticky assignor: a balanced assignment that keeps
/// each member's owned partitions where it can; a partition that moves is
/// left out this round (its owner revokes it and rejoins, KIP-429) and handed
/// to its new owner in the next.
pub(crate) fn assign_cooperative_sticky(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut all: Vec<TopicPartition> = Vec::new();
    for (topic, &count) in partition_counts {
        if subscriptions.values().any(|s| s.topics.contains(topic)) {
            all.extend((0..count).map(|p| TopicPartition::new(topic, p)));
        }
    }
    let members: Vec<&String> = subscriptions.keys().collect();
    if members.is_empty() {
        return BTreeMap::new();
    }
    let quota_min = all.len() / members.len();
    let with_extra = all.len() % members.len();
    // Who owned what: a partition claimed twice (a stale member) belongs to
    // nobody.
    let mut owner: HashMap<TopicPartition, &String> = HashMap::new();
    let mut claimed_twice = BTreeSet::new();
    for (member, subscription) in subscriptions {
        for tp in &subscription.owned {
            if owner.insert(tp.clone(), member).is_some() {
                claimed_twice.insert(tp.clone());
            }
        }
    }
    let mut target: BTreeMap<&String, Vec<TopicPartition>> =
        members.iter().map(|m| (*m, Vec::new())).collect();
    let mut extras_given = 0;
    // Keep owned partitions up to each member's quota.
    for member in &members {
        let subscription = &subscriptions[*member];
        let mut kept: Vec<TopicPartition> = subscription
            .owned
            .iter()
            .filter(|tp| all.contains(tp) && !claimed_twice.contains(*tp))
            .filter(|tp| subscription.topics.contains(&tp.topic))
            .cloned()
            .collect();
        kept.sort();
        let quota = if kept.len() > quota_min && extras_given < with_extra {
            extras_given += 1;
            quota_min + 1
        } else {
            quota_min
        };
        kept.truncate(quota);
        if let Some(slot) = target.get_mut(*member) {
            *slot = kept;
        }
    }
    // Hand the rest to the least loaded members subscribed to the topic.
    let taken: BTreeSet<TopicPartition> = target.values().flatten().cloned().collect();
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let chosen = target
            .iter()
            .filter(|(member, _)| subscriptions[**member].topics.contains(&tp.topic))
            .min_by_key(|(member, partitions)| (partitions.len(), **member))
            .map(|(member, _)| *member);
        if let Some(member) = chosen
            && let Some(slot) = target.get_mut(member)
        {
            slot.push(tp.clone());
        }
    }
    // Cooperative step: a partition still owned by someone else waits a round.
    target
        .into_iter()
        .map(|(member, partitions)| {
            let mut partitions: Vec<TopicPartition> = partitions
                .into_iter()
                .filter(|tp| match owner.get(tp) {
                    Some(current) => *current == member || claimed_twice.contains(tp),
                    None => true,
                })
                .collect();
            partitions.sort();
            (member.clone(), partitions)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(topics: &[&str], owned: &[(&str, i32)]) -> Subscription {
        Subscription {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned
                .iter()
                .map(|(t, p)| TopicPartition::new(t, *p))
                .collect(),
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_one_more() {
        let subscriptions = BTreeMap::from([
            ("a".to_string(), subscription(&["t"], &[])),
            ("b".to_string(), subscription(&["t"], &[])),
        ]);
        let plan = assign_range(&subscriptions, &BTreeMap::from([("t".to_string(), 5)]));
        let partitions = |m: &str| plan[m].iter().map(|tp| tp.partition).collect::<Vec<_>>();
        assert_eq!(partitions("a"), vec![0, 1, 2]);
        assert_eq!(partitions("b"), vec![3, 4]);
    }

    #[test]
    fn cooperative_sticky_keeps_owned_and_defers_moves() {
        // "a" owned all six; "b" joins. "a" keeps three, "b" gets nothing
        // this round (the other three are still owned by "a").
        let owned: Vec<(&str, i32)> = (0..6).map(|p| ("t", p)).collect();
        let subscriptions = BTreeMap::from([
            ("a".to_string(), subscription(&["t"], &owned)),
            ("b".to_string(), subscription(&["t"], &[])),
        ]);
        let counts = BTreeMap::from([("t".to_string(), 6)]);
        let first = assign_cooperative_sticky(&subscriptions, &counts);
        assert_eq!(first["a"].len(), 3);
        assert!(first["b"].is_empty());
        // Next round "a" owns only its three: "b" gets the rest.
        let kept: Vec<(&str, i32)> = first["a"].iter().map(|tp| ("t", tp.partition)).collect();
        let subscriptions = BTreeMap::from([
            ("a".to_string(), subscription(&["t"], &kept)),
            ("b".to_string(), subscription(&["t"], &[])),
        ]);
        let second = assign_cooperative_sticky(&subscriptions, &counts);
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["b"].len(), 3);
        assert!(second["b"].iter().all(|tp| !second["a"].contains(tp)));
    }

    #[test]
    fn subscription_round_trips() {
        let topics = vec!["t".to_string()];
        let owned = vec![TopicPartition::new("t", 2)];
        let decoded = decode_subscription(&encode_subscription(&topics, &owned, 4)).unwrap();
        assert_eq!(decoded, Subscription { topics, owned });
        let assignment = vec![TopicPartition::new("t", 0), TopicPartition::new("u", 1)];
        assert_eq!(
            decode_assignment(&encode_assignment(&assignment)).unwrap(),
            assignment
        );
    }
}
