//! Consumer groups over Kafka's classic protocol: find the coordinator,
//! join, let the leader assign partitions (`assignor`: range, or
//! cooperative-sticky with KIP-429's incremental revocation), sync, then
//! heartbeat and commit. Also the consumer protocol's subscription and
//! assignment encodings, which the admin client reads too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use rill_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use rill_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_protocol::messages::join_group_response::JoinGroupResponseMember;
use rill_protocol::messages::leave_group_request::MemberIdentity;
use rill_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, SyncGroupRequest,
};
use rill_protocol::{ApiKey, Decode, Decoder, Encode, Encoder, RequestBody, ResponseBody};

use crate::assignor::{Assignor, Subscription};
use crate::client::Client;
use crate::error::{Error, Result, code};
use crate::fetcher::Shared;
use crate::member_task::JOIN_ATTEMPTS_MAX;
use crate::member_task::MemberTask;
use crate::requests::{cached_coordinator, commit_offsets, fetch_committed};
use crate::topic_partition::{TopicPartition, group_by_topic};

/// The newest ConsumerProtocolSubscription/Assignment version this client
/// reads; newer ones are read as this one, as the Java client does.
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

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
    task: MemberTask,
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
            task: MemberTask::default(),
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
        self.task
            .replace(tokio::spawn(async move { member.keep_alive().await }));
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
        if self.eager(&state) {
            // Eager protocols give up every partition before rejoining.
            self.commit_locked(&state, self.consumer.committable())
                .await
                .ok();
            self.consumer.set_assignment(&[], &HashMap::new());
            state.owned.clear();
        }
        let joined = self.join_group(&state, coordinator).await?;
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
            self.lead(&mut state, protocol, &joined.members).await?
        } else {
            Vec::new()
        };
        let assigned = self
            .sync_group(&state, coordinator, protocol, assignments)
            .await?;
        let revoked = self
            .take_assignment(&mut state, coordinator, assigned)
            .await?;
        // KIP-429: a member that lost partitions rejoins so they can be
        // handed to their new owner.
        Ok(revoked.is_empty() || protocol == Assignor::Range)
    }

    /// JoinGroup until the coordinator takes the member in (KIP-394: the
    /// first join only hands out a member id).
    async fn join_group(&self, state: &MemberState, coordinator: i32) -> Result<JoinGroupResponse> {
        let config = &self.consumer.config;
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
        loop {
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
                code::NONE => return Ok(response),
                code::MEMBER_ID_REQUIRED => member_id = response.member_id,
                other => return Err(Error::kafka("join group", other, None)),
            }
        }
    }

    /// As the group's leader: every member's partitions, from their
    /// subscriptions and the topics' current partition counts.
    async fn lead(
        &self,
        state: &mut MemberState,
        protocol: Assignor,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for member in members {
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
        let plan = protocol.assign(&subscriptions, &counts);
        state.assigned_counts = Some(counts);
        Ok(plan
            .into_iter()
            .map(|(member_id, partitions)| SyncGroupRequestAssignment {
                member_id,
                assignment: encode_assignment(&partitions),
                ..Default::default()
            })
            .collect())
    }

    /// SyncGroup: hands the leader's plan to the coordinator (empty from the
    /// others) and returns this member's partitions.
    async fn sync_group(
        &self,
        state: &MemberState,
        coordinator: i32,
        protocol: Assignor,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<Vec<TopicPartition>> {
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
                self.consumer.config.rebalance_timeout,
            )
            .await?;
        let ResponseBody::SyncGroup(response) = response else {
            return Err(self.group_error("SyncGroup answered with another API"));
        };
        if response.error_code != code::NONE {
            return Err(Error::kafka("sync group", response.error_code, None));
        }
        decode_assignment(&response.assignment)
    }

    /// Hands a new assignment to the fetcher, committing first the offsets
    /// of what is given up (before another member starts from them); returns
    /// the partitions revoked.
    async fn take_assignment(
        &self,
        state: &mut MemberState,
        coordinator: i32,
        assigned: Vec<TopicPartition>,
    ) -> Result<Vec<TopicPartition>> {
        let revoked: Vec<TopicPartition> = state
            .owned
            .iter()
            .filter(|tp| !assigned.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            let revoked_offsets = self
                .consumer
                .committable()
                .into_iter()
                .filter(|(tp, _)| revoked.contains(tp))
                .collect();
            self.commit_locked(state, revoked_offsets).await.ok();
        }
        let starts = self.fetch_committed(coordinator, &assigned).await?;
        self.consumer.set_assignment(&assigned, &starts);
        state.owned = assigned;
        tracing::debug!(group = %self.group_id, generation = state.generation, owned = ?state.owned, "joined");
        Ok(revoked)
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
        commit_offsets(
            self.client(),
            coordinator,
            &self.group_id,
            state.generation,
            &state.member_id,
            offsets,
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
        self.task.stop();
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

#[cfg(test)]
mod tests {
    use super::*;

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
