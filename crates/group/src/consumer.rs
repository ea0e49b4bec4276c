//! The consumer group protocol of KIP-848: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, with the assignment computed here (uniform and
//! range assignors) instead of by a leader member.
//!
//! Epochs: the group epoch grows with every change of membership,
//! subscriptions or subscribed topics' partition counts; the target
//! assignment is recomputed for it. A member reaches the target epoch by
//! reconciling: first it is told to give up partitions it must lose (its
//! epoch stays until it acknowledges by heartbeating without them), then it
//! gets its new partitions — each only once no other member still owns it.
//! So a partition is never owned by two members at once.
//!
//! Members are held in memory only: after a restart a member gets
//! UNKNOWN_MEMBER_ID and joins again (committed offsets are durable as for
//! classic groups).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rill_protocol::Uuid;
use rill_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedTopicPartitions,
};
use rill_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
use rill_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use rill_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};

use crate::coordinator::{ClientInfo, Coordinator};
use crate::error_code::*;
use crate::group::{Group, GroupState};

/// Partitions by topic name.
pub(crate) type Partitions = BTreeMap<String, BTreeSet<i32>>;

/// What the broker knows of a topic: its id and partition count.
pub trait TopicLookup {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)>;

    /// Every topic a regex subscription may match (internal topics left
    /// out, as in Kafka); none by default.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<F: Fn(&str) -> Option<(Uuid, i32)>> TopicLookup for F {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self(name)
    }
}

/// The server-side assignors clients may ask for; the first is the default.
const ASSIGNORS: [&str; 2] = ["uniform", "range"];
/// A member leaving for good.
const LEAVE_EPOCH: i32 = -1;
/// A static member (one with an instance id) leaving for a moment: it keeps
/// its partitions for the session timeout, and a member joining with the
/// same instance id takes them over without a rebalance.
const TEMPORARY_LEAVE_EPOCH: i32 = -2;

#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// What the member subscribes to: the topics it named, plus those its
    /// regex matches (resolved in `refresh_target`).
    pub subscribed: BTreeSet<String>,
    pub subscribed_names: BTreeSet<String>,
    /// The regex as the member sent it, and compiled to match whole names.
    pub subscribed_regex: Option<(String, regex::Regex)>,
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub assigned: Partitions,
    pub pending_revocation: Partitions,
    /// Since when the member has been asked to revoke (it is removed if it
    /// has not done so within its rebalance timeout).
    pub revoking_since_ms: Option<i64>,
    /// The assignment last sent, so that it is sent again only if it changed.
    pub sent: Option<Partitions>,
    pub heartbeat_deadline_ms: i64,
    /// A static member that left with epoch -2 and may be replaced.
    pub left_temporarily: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerState {
    pub epoch: i32,
    pub target_epoch: i32,
    pub target: BTreeMap<String, Partitions>,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Partition counts of the subscribed topics the target was built from.
    pub topics: BTreeMap<String, (Uuid, i32)>,
    pub assignor: String,
}

impl ConsumerState {
    /// KIP-848's group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.target_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.epoch != self.target_epoch
                || !m.pending_revocation.is_empty()
                || self.target.get(&m.id) != Some(&m.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn owned_by_others(&self, member_id: &str) -> BTreeSet<(String, i32)> {
        let mut owned = BTreeSet::new();
        for member in self.members.values().filter(|m| m.id != member_id) {
            for set in [&member.assigned, &member.pending_revocation] {
                for (topic, partitions) in set {
                    owned.extend(partitions.iter().map(|&p| (topic.clone(), p)));
                }
            }
        }
        owned
    }

    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }
}

/// A subscription regex compiled to match whole topic names, as Kafka's
/// `matches()` does; `None` for the empty regex (no regex).
fn compile_regex(source: &str) -> Result<Option<regex::Regex>, String> {
    if source.is_empty() {
        return Ok(None);
    }
    regex::RegexBuilder::new(&format!("^(?:{source})$"))
        // Bounded, so a hostile pattern cannot take the coordinator's memory.
        .size_limit(1 << 20)
        .build()
        .map(Some)
        .map_err(|error| format!("invalid subscription regex `{source}`: {error}"))
}

fn heartbeat_error(code: i16, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse {
        error_code: code,
        error_message: Some(message.to_string()),
        ..Default::default()
    }
}

fn count(partitions: &Partitions) -> usize {
    partitions.values().map(BTreeSet::len).sum()
}

impl Coordinator {
    /// ConsumerGroupHeartbeat (v0: the coordinator names new members; v1:
    /// members name themselves).
    pub fn consumer_group_heartbeat(
        &mut self,
        request: ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicLookup,
        client: ClientInfo<'_>,
        now_ms: i64,
    ) -> ConsumerGroupHeartbeatResponse {
        if !self.loaded {
            return heartbeat_error(COORDINATOR_LOAD_IN_PROGRESS, "the coordinator is loading");
        }
        if request.group_id.is_empty() {
            return heartbeat_error(INVALID_GROUP_ID, "the group id is empty");
        }
        let assignor = request.server_assignor.as_deref();
        if assignor.is_some_and(|name| !ASSIGNORS.contains(&name)) {
            return heartbeat_error(
                UNSUPPORTED_ASSIGNOR,
                "Rill has the uniform and range assignors",
            );
        }
        if request.member_epoch == 0
            && request.subscribed_topic_names.is_none()
            && request.subscribed_topic_regex.is_none()
        {
            return heartbeat_error(
                INVALID_REQUEST,
                "a joining member must send its subscription",
            );
        }
        if let Some(Err(message)) = request.subscribed_topic_regex.as_deref().map(compile_regex) {
            return heartbeat_error(INVALID_REGULAR_EXPRESSION, &message);
        }
        if !self.groups.contains_key(&request.group_id) {
            if request.member_epoch != 0 {
                return heartbeat_error(UNKNOWN_MEMBER_ID, "the group does not exist");
            }
            if self.groups.len() >= self.config.groups_max {
                return heartbeat_error(COORDINATOR_NOT_AVAILABLE, "too many groups");
            }
            let group = Group::new(request.group_id.clone(), now_ms);
            self.groups.insert(request.group_id.clone(), group);
        }
        let Some(mut group) = self.groups.remove(&request.group_id) else {
            return heartbeat_error(COORDINATOR_NOT_AVAILABLE, "the group vanished");
        };
        let response = self.consumer_heartbeat_in(&mut group, request, topics, client, now_ms);
        self.groups.insert(group.id.clone(), group);
        response
    }

    fn consumer_heartbeat_in(
        &mut self,
        group: &mut Group,
        mut request: ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicLookup,
        client: ClientInfo<'_>,
        now_ms: i64,
    ) -> ConsumerGroupHeartbeatResponse {
        if group.consumer.is_none() {
            // A classic group becomes a consumer group only while empty.
            if !group.members.is_empty() || group.state != GroupState::Empty {
                return heartbeat_error(GROUP_ID_NOT_FOUND, "the group is a classic group");
            }
            group.consumer = Some(ConsumerState {
                assignor: ASSIGNORS[0].to_string(),
                ..Default::default()
            });
        }
        let session_ms = i64::from(self.config.consumer_session_timeout_ms);
        let size_max = self.config.group_size_max;
        let Some(state) = group.consumer.as_mut() else {
            return heartbeat_error(COORDINATOR_NOT_AVAILABLE, "no consumer group state");
        };
        let member_id = match request.member_epoch {
            TEMPORARY_LEAVE_EPOCH
                if state
                    .members
                    .get(&request.member_id)
                    .is_some_and(|m| m.instance_id.is_some()) =>
            {
                return leave_temporarily(state, request.member_id);
            }
            LEAVE_EPOCH | TEMPORARY_LEAVE_EPOCH => {
                if state.members.remove(&request.member_id).is_some() {
                    state.epoch += 1;
                    if state.members.is_empty() {
                        group.state_timestamp_ms = now_ms;
                    }
                }
                return ConsumerGroupHeartbeatResponse {
                    member_id: Some(request.member_id),
                    member_epoch: request.member_epoch,
                    ..Default::default()
                };
            }
            0 => self.join_consumer(state, &request, client, size_max),
            epoch => check_member_epoch(state, &request, epoch),
        };
        let member_id = match member_id {
            Ok(id) => id,
            Err((code, message)) => return heartbeat_error(code, message),
        };
        let Some(member) = state.members.get_mut(&member_id) else {
            return heartbeat_error(UNKNOWN_MEMBER_ID, "unknown member");
        };
        member.heartbeat_deadline_ms = now_ms.saturating_add(session_ms);
        member.left_temporarily = false;
        update_member(member, &mut state.epoch, &mut request);
        if let Some(owned) = &request.topic_partitions {
            acknowledge_revocation(state, &member_id, owned);
        }
        refresh_target(state, topics);
        reconcile(state, &member_id, now_ms);
        let interval = self.config.consumer_heartbeat_interval_ms;
        heartbeat_answer(state, member_id, request.member_epoch == 0, interval)
    }

    /// A member joining (epoch 0): a new member, one rejoining, or a static
    /// member taking over its previous incarnation. Returns its id.
    fn join_consumer(
        &mut self,
        state: &mut ConsumerState,
        request: &ConsumerGroupHeartbeatRequest,
        client: ClientInfo<'_>,
        size_max: usize,
    ) -> Result<String, (i16, &'static str)> {
        let id = if request.member_id.is_empty() {
            self.member_id(client.client_id)
        } else {
            request.member_id.clone()
        };
        let previous = request.instance_id.as_deref().and_then(|instance| {
            state
                .members
                .values()
                .find(|m| m.id != id && m.instance_id.as_deref() == Some(instance))
                .map(|m| (m.id.clone(), m.left_temporarily))
        });
        // A static member back within its session takes over the
        // previous incarnation's epoch and partitions, and the group
        // does not rebalance; anyone else joining starts afresh.
        let base = match previous {
            Some((_, false)) => {
                return Err((
                    UNRELEASED_INSTANCE_ID,
                    "another member with this instance id is still active",
                ));
            }
            Some((old_id, true)) => {
                let Some(old) = state.members.remove(&old_id) else {
                    return Err((UNKNOWN_MEMBER_ID, "the member vanished"));
                };
                if let Some(target) = state.target.remove(&old_id) {
                    state.target.insert(id.clone(), target);
                }
                ConsumerMember {
                    left_temporarily: false,
                    sent: None,
                    ..old
                }
            }
            None => {
                if !state.members.contains_key(&id) && state.members.len() >= size_max {
                    return Err((GROUP_MAX_SIZE_REACHED, "the group is full"));
                }
                state.epoch += 1;
                ConsumerMember {
                    rebalance_timeout_ms: 300_000,
                    ..Default::default()
                }
            }
        };
        state.members.insert(
            id.clone(),
            ConsumerMember {
                id: id.clone(),
                client_id: client.client_id.to_string(),
                client_host: client.client_host.to_string(),
                ..base
            },
        );
        Ok(id)
    }

    /// Removes consumer-group members whose session expired or who did not
    /// revoke in time; called from `tick`.
    pub(crate) fn tick_consumer(&mut self, group: &mut Group, now_ms: i64) {
        let Some(state) = group.consumer.as_mut() else {
            return;
        };
        let gone: Vec<String> = state
            .members
            .values()
            .filter(|m| {
                m.heartbeat_deadline_ms <= now_ms
                    || m.revoking_since_ms.is_some_and(|since| {
                        since.saturating_add(i64::from(m.rebalance_timeout_ms)) <= now_ms
                    })
            })
            .map(|m| m.id.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        for id in gone {
            state.members.remove(&id);
        }
        state.epoch += 1;
        if state.members.is_empty() {
            group.state_timestamp_ms = now_ms;
        }
    }

    /// ConsumerGroupDescribe.
    pub fn consumer_group_describe(
        &self,
        request: &ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let groups = request
            .group_ids
            .iter()
            .map(|id| {
                let state = self.groups.get(id).and_then(|g| g.consumer.as_ref());
                match state {
                    _ if !self.loaded => DescribedGroup {
                        error_code: COORDINATOR_LOAD_IN_PROGRESS,
                        group_id: id.clone(),
                        ..Default::default()
                    },
                    None => DescribedGroup {
                        error_code: GROUP_ID_NOT_FOUND,
                        error_message: Some(format!("{id} is not a consumer group")),
                        group_id: id.clone(),
                        ..Default::default()
                    },
                    Some(state) => describe_consumer(id, state),
                }
            })
            .collect();
        ConsumerGroupDescribeResponse {
            groups,
            ..Default::default()
        }
    }
}
/// A static member leaving for a moment: its partitions stay reserved
/// until the session times out.
fn leave_temporarily(
    state: &mut ConsumerState,
    member_id: String,
) -> ConsumerGroupHeartbeatResponse {
    if let Some(member) = state.members.get_mut(&member_id) {
        member.left_temporarily = true;
    }
    ConsumerGroupHeartbeatResponse {
        member_id: Some(member_id),
        member_epoch: TEMPORARY_LEAVE_EPOCH,
        ..Default::default()
    }
}

/// A member heartbeating with `epoch`: it must be the member's current
/// epoch, or the previous one while it owns nothing. Returns its id.
fn check_member_epoch(
    state: &ConsumerState,
    request: &ConsumerGroupHeartbeatRequest,
    epoch: i32,
) -> Result<String, (i16, &'static str)> {
    let Some(member) = state.members.get(&request.member_id) else {
        return Err((UNKNOWN_MEMBER_ID, "unknown member"));
    };
    let owned_ok = request
        .topic_partitions
        .as_ref()
        .is_none_or(|owned| owned.iter().all(|t| t.partitions.is_empty()));
    if epoch != member.epoch && !(epoch == member.previous_epoch && owned_ok) {
        return Err((FENCED_MEMBER_EPOCH, "the member epoch is not current"));
    }
    Ok(request.member_id.clone())
}

/// Takes what the heartbeat sets of the member: instance and rack, timeout,
/// assignor and subscription; each change of subscription (names, regex)
/// grows the group's `epoch`.
fn update_member(
    member: &mut ConsumerMember,
    epoch: &mut i32,
    request: &mut ConsumerGroupHeartbeatRequest,
) {
    member.instance_id = request.instance_id.take().or(member.instance_id.take());
    member.rack_id = request.rack_id.take().or(member.rack_id.take());
    if request.rebalance_timeout_ms > 0 {
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    }
    if let Some(assignor) = request.server_assignor.take() {
        member.assignor = Some(assignor);
    }
    if let Some(names) = request.subscribed_topic_names.take() {
        let names: BTreeSet<String> = names.into_iter().collect();
        if names != member.subscribed_names {
            member.subscribed_names = names;
            *epoch += 1;
        }
    }
    if let Some(source) = request.subscribed_topic_regex.take() {
        let current = member.subscribed_regex.as_ref().map(|(s, _)| s.as_str());
        if current.unwrap_or("") != source {
            // Checked by `consumer_group_heartbeat`; an empty regex (librdkafka
            // sends one when it subscribes by names) is no regex.
            member.subscribed_regex = compile_regex(&source)
                .ok()
                .flatten()
                .map(|regex| (source, regex));
            *epoch += 1;
        }
    }
}

/// Revocation acknowledged: the member reports owning none of the
/// partitions it was asked to give up.
fn acknowledge_revocation(state: &mut ConsumerState, member_id: &str, owned: &[OwnedPartitions]) {
    let Some(member) = state.members.get_mut(member_id) else {
        return;
    };
    let names: HashMap<Uuid, &String> = state.topics.iter().map(|(n, (id, _))| (*id, n)).collect();
    let still_owns = owned.iter().any(|t| {
        names.get(&t.topic_id).is_some_and(|name| {
            member
                .pending_revocation
                .get(*name)
                .is_some_and(|revoking| t.partitions.iter().any(|p| revoking.contains(p)))
        })
    });
    if !still_owns {
        member.pending_revocation.clear();
        member.revoking_since_ms = None;
    }
}

/// The answer to a heartbeat: the member's epoch, and its assignment when
/// it changed since last sent or the member just joined.
fn heartbeat_answer(
    state: &mut ConsumerState,
    member_id: String,
    joined: bool,
    interval: i32,
) -> ConsumerGroupHeartbeatResponse {
    let Some(member) = state.members.get_mut(&member_id) else {
        return heartbeat_error(UNKNOWN_MEMBER_ID, "unknown member");
    };
    let assignment = if member.sent.as_ref() != Some(&member.assigned) || joined {
        member.sent = Some(member.assigned.clone());
        Some(Assignment {
            topic_partitions: member
                .assigned
                .iter()
                .filter_map(|(topic, partitions)| {
                    let (id, _) = state.topics.get(topic)?;
                    Some(TopicPartitions {
                        topic_id: *id,
                        partitions: partitions.iter().copied().collect(),
                        ..Default::default()
                    })
                })
                .collect(),
            ..Default::default()
        })
    } else {
        None
    };
    ConsumerGroupHeartbeatResponse {
        error_code: NONE,
        member_id: Some(member_id),
        member_epoch: member.epoch,
        heartbeat_interval_ms: interval,
        assignment,
        ..Default::default()
    }
}

fn describe_consumer(id: &str, state: &ConsumerState) -> DescribedGroup {
    let assignment = |partitions: &Partitions| DescribedAssignment {
        topic_partitions: partitions
            .iter()
            .map(|(topic, set)| DescribedTopicPartitions {
                topic_id: state
                    .topics
                    .get(topic)
                    .map(|(id, _)| *id)
                    .unwrap_or_default(),
                topic_name: topic.clone(),
                partitions: set.iter().copied().collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    DescribedGroup {
        error_code: NONE,
        group_id: id.to_string(),
        group_state: state.state_name().to_string(),
        group_epoch: state.epoch,
        assignment_epoch: state.target_epoch,
        assignor_name: state.assignor.clone(),
        members: state
            .members
            .values()
            .map(|m| DescribedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: m.epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.subscribed_names.iter().cloned().collect(),
                subscribed_topic_regex: m.subscribed_regex.as_ref().map(|(s, _)| s.clone()),
                assignment: assignment(&m.assigned),
                target_assignment: assignment(
                    state.target.get(&m.id).unwrap_or(&Partitions::new()),
                ),
                ..Default::default()
            })
            .collect(),
        authorized_operations: i32::MIN,
        ..Default::default()
    }
}

/// Recomputes the target assignment when the group epoch moved past it or
/// a subscribed topic appeared, vanished or grew.
fn refresh_target(state: &mut ConsumerState, lookup: &dyn TopicLookup) {
    let any_regex = state.members.values().any(|m| m.subscribed_regex.is_some());
    let all_names = if any_regex {
        lookup.names()
    } else {
        Vec::new()
    };
    for member in state.members.values_mut() {
        let mut subscribed = member.subscribed_names.clone();
        if let Some((_, regex)) = &member.subscribed_regex {
            subscribed.extend(all_names.iter().filter(|n| regex.is_match(n)).cloned());
        }
        if subscribed != member.subscribed {
            member.subscribed = subscribed;
            state.epoch += 1;
        }
    }
    let topics: BTreeMap<String, (Uuid, i32)> = state
        .subscribed_topics()
        .into_iter()
        .filter_map(|name| lookup.topic(&name).map(|found| (name, found)))
        .collect();
    if topics != state.topics {
        state.topics = topics;
        state.epoch += 1;
    }
    if state.target_epoch == state.epoch {
        return;
    }
    state.assignor = group_assignor(state);
    state.target = if state.assignor == "range" {
        assign_range(state)
    } else {
        assign_uniform(state)
    };
    state.target_epoch = state.epoch;
}

/// The assignor most members ask for (ties: the first in [`ASSIGNORS`]).
fn group_assignor(state: &ConsumerState) -> String {
    let votes = |name: &str| {
        state
            .members
            .values()
            .filter(|m| m.assignor.as_deref() == Some(name))
            .count()
    };
    let best = ASSIGNORS
        .iter()
        .max_by_key(|name| (votes(name), usize::from(**name == ASSIGNORS[0])));
    best.unwrap_or(&ASSIGNORS[0]).to_string()
}

/// Range: per topic, its subscribers (by member id) get contiguous ranges.
fn assign_range(state: &ConsumerState) -> BTreeMap<String, Partitions> {
    let mut target: BTreeMap<String, Partitions> = state
        .members
        .keys()
        .map(|id| (id.clone(), Partitions::new()))
        .collect();
    for (topic, (_, partitions)) in &state.topics {
        let subscribers: Vec<&String> = state
            .members
            .values()
            .filter(|m| m.subscribed.contains(topic))
            .map(|m| &m.id)
            .collect();
        let n = subscribers.len() as i32;
        if n == 0 {
            continue;
        }
        let (per, extra) = (partitions / n, partitions % n);
        let mut next = 0;
        for (i, id) in subscribers.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            let set: BTreeSet<i32> = (next..next + take).collect();
            next += take;
            if !set.is_empty() {
                target
                    .entry((*id).clone())
                    .or_default()
                    .insert(topic.clone(), set);
            }
        }
    }
    target
}

/// Uniform: balanced per topic and sticky — a partition stays with its
/// current target owner while that owner is under its share; the rest go to
/// the subscriber with the fewest partitions overall.
fn assign_uniform(state: &ConsumerState) -> BTreeMap<String, Partitions> {
    let mut target: BTreeMap<String, Partitions> = state
        .members
        .keys()
        .map(|id| (id.clone(), Partitions::new()))
        .collect();
    for (topic, (_, partitions)) in &state.topics {
        let subscribers: Vec<String> = state
            .members
            .values()
            .filter(|m| m.subscribed.contains(topic))
            .map(|m| m.id.clone())
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let share = (*partitions as usize).div_ceil(subscribers.len());
        let mut unplaced = Vec::new();
        for partition in 0..*partitions {
            let previous = state.target.iter().find(|(id, owned)| {
                subscribers.contains(id) && owned.get(topic).is_some_and(|s| s.contains(&partition))
            });
            match previous {
                Some((id, _)) if target[id].get(topic).map_or(0, BTreeSet::len) < share => {
                    target
                        .entry(id.clone())
                        .or_default()
                        .entry(topic.clone())
                        .or_default()
                        .insert(partition);
                }
                _ => unplaced.push(partition),
            }
        }
        for partition in unplaced {
            let Some(id) = subscribers
                .iter()
                .filter(|id| target[*id].get(topic).map_or(0, BTreeSet::len) < share)
                .min_by_key(|id| (count(&target[*id]), (*id).clone()))
            else {
                continue;
            };
            target
                .entry(id.clone())
                .or_default()
                .entry(topic.clone())
                .or_default()
                .insert(partition);
        }
    }
    target
}

/// Moves one member toward its target: revoke first, then take what is free.
fn reconcile(state: &mut ConsumerState, member_id: &str, now_ms: i64) {
    let target = state.target.get(member_id).cloned().unwrap_or_default();
    let taken = state.owned_by_others(member_id);
    let target_epoch = state.target_epoch;
    let Some(member) = state.members.get_mut(member_id) else {
        return;
    };
    if !member.pending_revocation.is_empty() {
        return;
    }
    let mut revoke = Partitions::new();
    for (topic, partitions) in &member.assigned {
        let keep = target.get(topic);
        let lost: BTreeSet<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !keep.is_some_and(|k| k.contains(p)))
            .collect();
        if !lost.is_empty() {
            revoke.insert(topic.clone(), lost);
        }
    }
    if !revoke.is_empty() {
        for (topic, lost) in &revoke {
            if let Some(set) = member.assigned.get_mut(topic) {
                set.retain(|p| !lost.contains(p));
            }
        }
        member.assigned.retain(|_, set| !set.is_empty());
        member.pending_revocation = revoke;
        member.revoking_since_ms = Some(now_ms);
        return;
    }
    if member.epoch != target_epoch {
        member.previous_epoch = member.epoch;
        member.epoch = target_epoch;
    }
    for (topic, partitions) in target {
        for partition in partitions {
            if !taken.contains(&(topic.clone(), partition)) {
                member
                    .assigned
                    .entry(topic.clone())
                    .or_default()
                    .insert(partition);
            }
        }
    }
}
