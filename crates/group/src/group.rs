//! One classic group: its members, generation, selected protocol and
//! committed offsets. Pure data plus the small rules that read it; the
//! transitions live in `classic.rs`.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::consumer::ConsumerState;
use crate::record::{GroupValue, MemberValue, OffsetValue};

/// A delayed answer: the broker keeps the request's reply channel under this
/// token until a completion names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// The classic group states (Kafka's `ClassicGroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for every member to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// The group does not exist (deleted, expired or never created); only
    /// reported, never stored: such a group is removed at once.
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A member's pending JoinGroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingJoin {
    pub token: Token,
    pub version: i16,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// `(name, metadata)` in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<PendingJoin>,
    pub awaiting_sync: Option<Token>,
    /// The member is evicted if no heartbeat, join, sync or commit arrives
    /// before this; members waiting for a join or sync answer are kept.
    pub heartbeat_deadline_ms: i64,
}

impl Member {
    /// The member's metadata for `protocol`, if it supports it.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata)
    }

    pub fn kept_alive(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }
}

/// A committed offset in memory.
pub(crate) type CommittedOffset = OffsetValue;

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    /// `None` for a group that only ever had "simple" (group-less) commits.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// Members by id; a BTreeMap so that every answer lists them in one order.
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → member id of the static members.
    pub instances: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time by which
    /// the client must come back with them.
    pub pending_members: HashMap<String, i64>,
    /// When the current join phase ends even if not every member rejoined.
    pub rebalance_deadline_ms: Option<i64>,
    /// During the initial delay of an empty group's first rebalance: the
    /// latest the delay may be extended to.
    pub initial_delay_limit_ms: Option<i64>,
    /// When the group entered its state (for Empty: when it became empty).
    pub state_timestamp_ms: i64,
    /// Committed offsets by topic and partition.
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    /// Set for a KIP-848 consumer group (the classic fields then stay empty).
    pub consumer: Option<ConsumerState>,
}

impl Group {
    pub fn new(id: String, now_ms: i64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay_limit_ms: None,
            state_timestamp_ms: now_ms,
            offsets: BTreeMap::new(),
            consumer: None,
        }
    }

    /// Whether the group has members of either protocol.
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
            || !self.pending_members.is_empty()
            || self
                .consumer
                .as_ref()
                .is_some_and(|c| !c.members.is_empty())
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// The protocols every member supports (Kafka's candidate protocols).
    pub fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            candidates.retain(|name| member.metadata(name).is_some());
        }
        candidates
    }

    /// Whether a member with these protocols could join: same protocol type
    /// and at least one protocol in common with every current member.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// The protocol the members vote for: each votes for its most preferred
    /// candidate; most votes wins, ties go to the smallest name so that the
    /// choice does not depend on map order.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, count)| *count == best)
            .map(|(name, _)| name.to_string())
    }

    pub fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The longest rebalance timeout among the members: how long a join
    /// phase may wait for them.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub fn is_static_member_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        match instance_id {
            Some(instance) => self
                .instances
                .get(instance)
                .is_some_and(|known| known != member_id),
            None => false,
        }
    }

    /// The stored form of the group (after a rebalance or on becoming empty).
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol).cloned().unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Restores the members and generation from a stored value: a group with
    /// members comes back Stable, and the members keep their assignments if
    /// they heartbeat within their session timeout.
    pub fn restore(&mut self, value: GroupValue, now_ms: i64) {
        let protocol = value.protocol_name.clone().unwrap_or_default();
        self.members.clear();
        self.instances.clear();
        self.pending_members.clear();
        self.rebalance_deadline_ms = None;
        self.initial_delay_limit_ms = None;
        for stored in value.members {
            if let Some(instance) = &stored.group_instance_id {
                self.instances
                    .insert(instance.clone(), stored.member_id.clone());
            }
            let member = Member {
                id: stored.member_id.clone(),
                instance_id: stored.group_instance_id,
                client_id: stored.client_id,
                client_host: stored.client_host,
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), stored.subscription)],
                assignment: stored.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline_ms: now_ms.saturating_add(i64::from(stored.session_timeout_ms)),
            };
            self.members.insert(stored.member_id, member);
        }
        self.generation = value.generation;
        self.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        self.protocol_name = value.protocol_name;
        self.leader = value.leader;
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state_timestamp_ms = value.state_timestamp_ms;
    }
}
