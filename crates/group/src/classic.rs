//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup
//! and the timers (session expiry, rebalance deadline, initial delay).
//!
//! A rebalance: a join or leave moves the group to PreparingRebalance; once
//! every known member has rejoined (or the rebalance deadline passes and the
//! stragglers are removed) the generation advances, the joins are answered
//! (the leader gets every member's metadata) and the group waits in
//! CompletingRebalance for the leader's SyncGroup, whose assignments answer
//! every member's SyncGroup and make the group Stable.

use bytes::Bytes;
use rill_protocol::messages::join_group_response::JoinGroupResponseMember;
use rill_protocol::messages::leave_group_request::MemberIdentity;
use rill_protocol::messages::leave_group_response::MemberResponse;
use rill_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use crate::coordinator::{ClientInfo, Completion, Coordinator, Reply};
use crate::error_code::*;
use crate::group::{Group, GroupState, Member, PendingJoin, Token};

/// What a JoinGroup asks for, taken out of the request once.
struct JoinAsk<'a> {
    version: i16,
    group_instance_id: Option<String>,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    client: ClientInfo<'a>,
}

/// A JoinGroup error answer; the protocol name is null only where the
/// version allows it.
pub fn join_error(version: i16, error_code: i16, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code,
        generation_id: -1,
        protocol_name: if version >= 7 {
            None
        } else {
            Some(String::new())
        },
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn sync_error(error_code: i16) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code,
        ..Default::default()
    }
}

impl Coordinator {
    /// JoinGroup. A `Pending` token may already be complete: collect
    /// [`Coordinator::take_completions`] after registering it.
    pub fn join_group(
        &mut self,
        version: i16,
        request: JoinGroupRequest,
        client: ClientInfo<'_>,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let member_id = request.member_id.clone();
        if !self.loaded {
            return Reply::Now(join_error(
                version,
                COORDINATOR_LOAD_IN_PROGRESS,
                &member_id,
            ));
        }
        match self.join(version, request, client, now_ms) {
            Ok(reply) => reply,
            Err(code) => Reply::Now(join_error(version, code, &member_id)),
        }
    }

    fn join(
        &mut self,
        version: i16,
        request: JoinGroupRequest,
        client: ClientInfo<'_>,
        now_ms: i64,
    ) -> Result<Reply<JoinGroupResponse>, i16> {
        if request.group_id.is_empty() {
            return Err(INVALID_GROUP_ID);
        }
        let session = request.session_timeout_ms;
        if session < self.config.session_timeout_min_ms
            || session > self.config.session_timeout_max_ms
        {
            return Err(INVALID_SESSION_TIMEOUT);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(INCONSISTENT_GROUP_PROTOCOL);
        }
        let metadata_max = self.config.member_metadata_bytes_max;
        if request
            .protocols
            .iter()
            .any(|p| p.metadata.len() > metadata_max)
        {
            return Err(INVALID_REQUEST);
        }
        let ask = JoinAsk {
            version,
            group_instance_id: request.group_instance_id,
            session_timeout_ms: session,
            // v0 has no rebalance timeout: the session timeout served as both.
            rebalance_timeout_ms: if version == 0 {
                session
            } else {
                request.rebalance_timeout_ms
            },
            protocol_type: request.protocol_type,
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name, p.metadata))
                .collect(),
            client,
        };
        if !self.groups.contains_key(&request.group_id) {
            if !request.member_id.is_empty() {
                return Err(UNKNOWN_MEMBER_ID);
            }
            if self.groups.len() >= self.config.groups_max {
                return Err(COORDINATOR_NOT_AVAILABLE);
            }
            let group = Group::new(request.group_id.clone(), now_ms);
            self.groups.insert(request.group_id.clone(), group);
        }
        let mut group = self
            .groups
            .remove(&request.group_id)
            .ok_or(COORDINATOR_NOT_AVAILABLE)?;
        if group
            .consumer
            .as_ref()
            .is_some_and(|c| c.members.is_empty())
        {
            // An empty consumer group may become a classic group again.
            group.consumer = None;
        }
        let result =
            if group.consumer.is_some() || !group.supports(&ask.protocol_type, &ask.protocols) {
                Err(INCONSISTENT_GROUP_PROTOCOL)
            } else if request.member_id.is_empty() {
                self.join_new_member(&mut group, ask, now_ms)
            } else {
                self.join_known_member(&mut group, &request.member_id, ask, now_ms)
            };
        self.groups.insert(request.group_id, group);
        result
    }

    fn join_new_member(
        &mut self,
        group: &mut Group,
        ask: JoinAsk<'_>,
        now_ms: i64,
    ) -> Result<Reply<JoinGroupResponse>, i16> {
        if let Some(old_id) = ask
            .group_instance_id
            .as_ref()
            .and_then(|instance| group.instances.get(instance))
            .cloned()
        {
            return Ok(self.replace_static_member(group, &old_id, ask, now_ms));
        }
        if group.members.len() + group.pending_members.len() >= self.config.group_size_max {
            return Err(GROUP_MAX_SIZE_REACHED);
        }
        let prefix = ask
            .group_instance_id
            .as_deref()
            .unwrap_or(ask.client.client_id);
        let member_id = self.member_id(prefix);
        // KIP-394: a dynamic member of v4+ must come back with the id it is
        // given, so that a client that never gets the answer leaves no ghost
        // member behind (the pending id expires after the session timeout).
        if ask.group_instance_id.is_none() && ask.version >= 4 {
            let deadline = now_ms.saturating_add(i64::from(ask.session_timeout_ms));
            group.pending_members.insert(member_id.clone(), deadline);
            let answer = join_error(ask.version, MEMBER_ID_REQUIRED, &member_id);
            return Ok(Reply::Now(answer));
        }
        Ok(self.add_member(group, member_id, ask, now_ms))
    }

    fn join_known_member(
        &mut self,
        group: &mut Group,
        member_id: &str,
        ask: JoinAsk<'_>,
        now_ms: i64,
    ) -> Result<Reply<JoinGroupResponse>, i16> {
        if group.pending_members.remove(member_id).is_some() {
            return Ok(self.add_member(group, member_id.to_string(), ask, now_ms));
        }
        if group.is_static_member_fenced(member_id, ask.group_instance_id.as_deref()) {
            return Err(FENCED_INSTANCE_ID);
        }
        let Some(member) = group.members.get(member_id) else {
            return Err(UNKNOWN_MEMBER_ID);
        };
        let unchanged = member.protocols == ask.protocols;
        match group.state {
            GroupState::Empty | GroupState::Dead => Err(UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => {
                Ok(self.update_member_and_rebalance(group, member_id, ask, now_ms))
            }
            // A member whose JoinGroup answer got lost asks again: the same
            // answer, unless its protocols changed.
            GroupState::CompletingRebalance if unchanged => {
                let leader = group.leader.as_deref() == Some(member_id);
                Ok(Reply::Now(current_join_answer(
                    group,
                    member_id,
                    ask.version,
                    leader,
                )))
            }
            // A follower rejoining a stable group with the same metadata
            // learns the current generation; the leader or a member whose
            // subscription changed (cooperative rebalancing rejoins with new
            // owned partitions) starts a rebalance.
            GroupState::Stable if unchanged && group.leader.as_deref() != Some(member_id) => Ok(
                Reply::Now(current_join_answer(group, member_id, ask.version, false)),
            ),
            GroupState::CompletingRebalance | GroupState::Stable => {
                Ok(self.update_member_and_rebalance(group, member_id, ask, now_ms))
            }
        }
    }

    /// A static member restarting (empty member id, known instance id) takes
    /// its old member's place under a new id; the old id is fenced. In a
    /// stable group with unchanged metadata it keeps its assignment without
    /// a rebalance (KIP-345).
    fn replace_static_member(
        &mut self,
        group: &mut Group,
        old_id: &str,
        ask: JoinAsk<'_>,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let instance = ask.group_instance_id.clone().unwrap_or_default();
        let new_id = self.member_id(&instance);
        let Some(mut member) = group.members.remove(old_id) else {
            group.instances.remove(&instance);
            return self.add_member(group, new_id, ask, now_ms);
        };
        if let Some(join) = member.awaiting_join.take() {
            let answer = join_error(join.version, FENCED_INSTANCE_ID, old_id);
            self.completions.push(Completion::Join(join.token, answer));
        }
        if let Some(token) = member.awaiting_sync.take() {
            self.completions
                .push(Completion::Sync(token, sync_error(FENCED_INSTANCE_ID)));
        }
        let unchanged = member.protocols == ask.protocols;
        member.id = new_id.clone();
        member.client_id = ask.client.client_id.to_string();
        member.client_host = ask.client.client_host.to_string();
        member.heartbeat_deadline_ms = now_ms.saturating_add(i64::from(ask.session_timeout_ms));
        if group.leader.as_deref() == Some(old_id) {
            group.leader = Some(new_id.clone());
        }
        group.instances.insert(instance, new_id.clone());
        group.members.insert(new_id.clone(), member);
        if group.state == GroupState::Stable && unchanged {
            if let Some(member) = group.members.get_mut(&new_id) {
                member.session_timeout_ms = ask.session_timeout_ms;
                member.rebalance_timeout_ms = ask.rebalance_timeout_ms;
            }
            self.persist(group);
            // The group keeps its assignment and SyncGroup in Stable returns
            // it. A leader of v9+ gets the members with `skip_assignment`
            // (KIP-814) so that it knows them without assigning; older
            // leaders get no member list.
            let leader = group.leader.as_deref() == Some(new_id.as_str());
            let skip = leader && ask.version >= 9;
            let mut answer = current_join_answer(group, &new_id, ask.version, skip);
            answer.skip_assignment = skip;
            return Reply::Now(answer);
        }
        self.update_member_and_rebalance(group, &new_id, ask, now_ms)
    }

    fn add_member(
        &mut self,
        group: &mut Group,
        member_id: String,
        ask: JoinAsk<'_>,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let token = self.token();
        if group.members.is_empty() {
            group.protocol_type = Some(ask.protocol_type.clone());
        }
        if let Some(instance) = &ask.group_instance_id {
            group.instances.insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: ask.group_instance_id,
            client_id: ask.client.client_id.to_string(),
            client_host: ask.client.client_host.to_string(),
            session_timeout_ms: ask.session_timeout_ms,
            rebalance_timeout_ms: ask.rebalance_timeout_ms,
            protocols: ask.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(PendingJoin {
                token,
                version: ask.version,
            }),
            awaiting_sync: None,
            heartbeat_deadline_ms: now_ms.saturating_add(i64::from(ask.session_timeout_ms)),
        };
        group.members.insert(member_id, member);
        if let Some(limit) = group.initial_delay_limit_ms {
            // Each newcomer during the initial delay buys the others a little
            // more time, up to the rebalance timeout.
            let delay = self.config.initial_rebalance_delay_ms;
            group.rebalance_deadline_ms = Some(now_ms.saturating_add(delay).min(limit));
        }
        self.rebalance_or_complete(group, now_ms);
        Reply::Pending(token)
    }

    fn update_member_and_rebalance(
        &mut self,
        group: &mut Group,
        member_id: &str,
        ask: JoinAsk<'_>,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let token = self.token();
        let Some(member) = group.members.get_mut(member_id) else {
            return Reply::Now(join_error(ask.version, UNKNOWN_MEMBER_ID, member_id));
        };
        let previous = member.awaiting_join.replace(PendingJoin {
            token,
            version: ask.version,
        });
        member.protocols = ask.protocols;
        member.session_timeout_ms = ask.session_timeout_ms;
        member.rebalance_timeout_ms = ask.rebalance_timeout_ms;
        member.heartbeat_deadline_ms = now_ms.saturating_add(i64::from(ask.session_timeout_ms));
        if let Some(previous) = previous {
            // The client gave up on its earlier JoinGroup and sent another;
            // the earlier one is answered so that nothing waits forever.
            let answer = join_error(previous.version, REBALANCE_IN_PROGRESS, member_id);
            self.completions
                .push(Completion::Join(previous.token, answer));
        }
        self.rebalance_or_complete(group, now_ms);
        Reply::Pending(token)
    }

    fn rebalance_or_complete(&mut self, group: &mut Group, now_ms: i64) {
        if group.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(group, now_ms);
        } else {
            self.prepare_rebalance(group, now_ms);
        }
    }

    /// Starts a rebalance: pending SyncGroups are told REBALANCE_IN_PROGRESS
    /// and the join phase begins.
    pub(crate) fn prepare_rebalance(&mut self, group: &mut Group, now_ms: i64) {
        if group.state == GroupState::CompletingRebalance {
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(token) = member.awaiting_sync.take() {
                    let answer = sync_error(REBALANCE_IN_PROGRESS);
                    self.completions.push(Completion::Sync(token, answer));
                }
            }
        }
        let delay = self.config.initial_rebalance_delay_ms;
        let rebalance_deadline = now_ms.saturating_add(group.rebalance_timeout_ms());
        if group.state == GroupState::Empty && delay > 0 {
            group.initial_delay_limit_ms = Some(rebalance_deadline);
            group.rebalance_deadline_ms =
                Some(now_ms.saturating_add(delay).min(rebalance_deadline));
        } else {
            group.initial_delay_limit_ms = None;
            group.rebalance_deadline_ms = Some(rebalance_deadline);
        }
        group.transition(GroupState::PreparingRebalance, now_ms);
        self.maybe_complete_join(group, now_ms);
    }

    fn maybe_complete_join(&mut self, group: &mut Group, now_ms: i64) {
        if group.state == GroupState::PreparingRebalance
            && group.initial_delay_limit_ms.is_none()
            && group.all_joined()
        {
            self.complete_join(group, now_ms);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the
    /// generation advances and every join is answered.
    fn complete_join(&mut self, group: &mut Group, now_ms: i64) {
        let stragglers: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in stragglers {
            if let Some(instance) = group.members.remove(&id).and_then(|m| m.instance_id) {
                group.instances.remove(&instance);
            }
        }
        group.rebalance_deadline_ms = None;
        group.initial_delay_limit_ms = None;
        group.generation = group.generation.wrapping_add(1);
        if group.members.is_empty() {
            group.protocol_name = None;
            group.leader = None;
            group.transition(GroupState::Empty, now_ms);
            self.persist(group);
            return;
        }
        group.protocol_name = group.select_protocol();
        if !group
            .leader
            .as_ref()
            .is_some_and(|leader| group.members.contains_key(leader))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.transition(GroupState::CompletingRebalance, now_ms);
        // Members that never send SyncGroup (a leader that joined and then
        // hung, say) must not hold the others forever: the same rebalance
        // timeout bounds this phase.
        group.rebalance_deadline_ms = Some(now_ms.saturating_add(group.rebalance_timeout_ms()));
        let joins: Vec<(String, PendingJoin)> = group
            .members
            .values_mut()
            .filter_map(|m| {
                m.heartbeat_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
                m.awaiting_join.take().map(|join| (m.id.clone(), join))
            })
            .collect();
        for (member_id, join) in joins {
            let leader = group.leader.as_deref() == Some(member_id.as_str());
            let answer = current_join_answer(group, &member_id, join.version, leader);
            self.completions.push(Completion::Join(join.token, answer));
        }
    }

    /// SyncGroup.
    pub fn sync_group(
        &mut self,
        version: i16,
        request: SyncGroupRequest,
        now_ms: i64,
    ) -> Reply<SyncGroupResponse> {
        if !self.loaded {
            return Reply::Now(sync_error(COORDINATOR_LOAD_IN_PROGRESS));
        }
        let group_id = request.group_id.clone();
        let Some(mut group) = self.groups.remove(&group_id) else {
            return Reply::Now(sync_error(UNKNOWN_MEMBER_ID));
        };
        let reply = self
            .sync(&mut group, version, request, now_ms)
            .unwrap_or_else(|code| Reply::Now(sync_error(code)));
        self.groups.insert(group_id, group);
        reply
    }

    fn sync(
        &mut self,
        group: &mut Group,
        version: i16,
        request: SyncGroupRequest,
        now_ms: i64,
    ) -> Result<Reply<SyncGroupResponse>, i16> {
        let member_id = request.member_id.as_str();
        if group.is_static_member_fenced(member_id, request.group_instance_id.as_deref()) {
            return Err(FENCED_INSTANCE_ID);
        }
        if !group.members.contains_key(member_id) {
            return Err(UNKNOWN_MEMBER_ID);
        }
        if request.generation_id != group.generation {
            return Err(ILLEGAL_GENERATION);
        }
        let type_differs = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
        if type_differs || name_differs {
            return Err(INCONSISTENT_GROUP_PROTOCOL);
        }
        let assignment_max = self.config.assignment_bytes_max;
        match group.state {
            GroupState::Empty | GroupState::Dead => Err(UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => Err(REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                let member = group.members.get_mut(member_id).ok_or(UNKNOWN_MEMBER_ID)?;
                member.heartbeat_deadline_ms =
                    now_ms.saturating_add(i64::from(member.session_timeout_ms));
                Ok(Reply::Now(sync_answer(group, member_id, version)))
            }
            GroupState::CompletingRebalance => {
                let is_leader = group.leader.as_deref() == Some(member_id);
                if is_leader
                    && request
                        .assignments
                        .iter()
                        .any(|a| a.assignment.len() > assignment_max)
                {
                    return Err(INVALID_REQUEST);
                }
                let token = self.token();
                let member = group.members.get_mut(member_id).ok_or(UNKNOWN_MEMBER_ID)?;
                member.heartbeat_deadline_ms =
                    now_ms.saturating_add(i64::from(member.session_timeout_ms));
                if let Some(previous) = member.awaiting_sync.replace(token) {
                    let answer = sync_error(REBALANCE_IN_PROGRESS);
                    self.completions.push(Completion::Sync(previous, answer));
                }
                if is_leader {
                    for assignment in request.assignments {
                        if let Some(member) = group.members.get_mut(&assignment.member_id) {
                            member.assignment = assignment.assignment;
                        }
                    }
                    self.complete_sync(group, version, now_ms);
                }
                Ok(Reply::Pending(token))
            }
        }
    }

    /// The leader's assignment arrived: the group is Stable, persisted, and
    /// every waiting SyncGroup gets its member's assignment.
    fn complete_sync(&mut self, group: &mut Group, version: i16, now_ms: i64) {
        group.rebalance_deadline_ms = None;
        group.transition(GroupState::Stable, now_ms);
        self.persist(group);
        let syncs: Vec<(String, Token)> = group
            .members
            .values_mut()
            .filter_map(|m| m.awaiting_sync.take().map(|token| (m.id.clone(), token)))
            .collect();
        for (member_id, token) in syncs {
            let answer = sync_answer(group, &member_id, version);
            self.completions.push(Completion::Sync(token, answer));
        }
    }

    /// Heartbeat.
    pub fn heartbeat(&mut self, request: HeartbeatRequest, now_ms: i64) -> HeartbeatResponse {
        let error_code = match self.groups.get_mut(&request.group_id) {
            _ if !self.loaded => COORDINATOR_LOAD_IN_PROGRESS,
            None => UNKNOWN_MEMBER_ID,
            Some(group) => beat(group, &request, now_ms),
        };
        HeartbeatResponse {
            error_code,
            ..Default::default()
        }
    }

    /// LeaveGroup; v3+ removes a batch of members (by member id or by
    /// group.instance.id), each with its own error.
    pub fn leave_group(
        &mut self,
        version: i16,
        request: LeaveGroupRequest,
        now_ms: i64,
    ) -> LeaveGroupResponse {
        let identities = if version >= 3 {
            request.members
        } else {
            vec![MemberIdentity {
                member_id: request.member_id,
                ..Default::default()
            }]
        };
        if !self.loaded {
            return LeaveGroupResponse {
                error_code: COORDINATOR_LOAD_IN_PROGRESS,
                ..Default::default()
            };
        }
        let Some(mut group) = self.groups.remove(&request.group_id) else {
            return LeaveGroupResponse {
                error_code: UNKNOWN_MEMBER_ID,
                ..Default::default()
            };
        };
        let members: Vec<MemberResponse> = identities
            .into_iter()
            .map(|identity| MemberResponse {
                error_code: self.leave_one(&mut group, &identity, now_ms),
                member_id: identity.member_id,
                group_instance_id: identity.group_instance_id,
                ..Default::default()
            })
            .collect();
        self.groups.insert(request.group_id, group);
        if version >= 3 {
            LeaveGroupResponse {
                members,
                ..Default::default()
            }
        } else {
            LeaveGroupResponse {
                error_code: members.first().map_or(NONE, |m| m.error_code),
                ..Default::default()
            }
        }
    }

    fn leave_one(&mut self, group: &mut Group, identity: &MemberIdentity, now_ms: i64) -> i16 {
        let member_id = match &identity.group_instance_id {
            Some(instance) => match group.instances.get(instance) {
                None => return UNKNOWN_MEMBER_ID,
                Some(known) if !identity.member_id.is_empty() && *known != identity.member_id => {
                    return FENCED_INSTANCE_ID;
                }
                Some(known) => known.clone(),
            },
            None => identity.member_id.clone(),
        };
        if group.pending_members.remove(&member_id).is_some() {
            self.maybe_complete_join(group, now_ms);
            return NONE;
        }
        if !group.members.contains_key(&member_id) {
            return UNKNOWN_MEMBER_ID;
        }
        self.remove_member(group, &member_id, now_ms);
        NONE
    }

    /// Removes a member (left, or its session expired) and rebalances.
    pub(crate) fn remove_member(&mut self, group: &mut Group, member_id: &str, now_ms: i64) {
        let Some(mut member) = group.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id {
            group.instances.remove(instance);
        }
        if let Some(join) = member.awaiting_join.take() {
            let answer = join_error(join.version, UNKNOWN_MEMBER_ID, member_id);
            self.completions.push(Completion::Join(join.token, answer));
        }
        if let Some(token) = member.awaiting_sync.take() {
            self.completions
                .push(Completion::Sync(token, sync_error(UNKNOWN_MEMBER_ID)));
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group, now_ms)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(group, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Advances time: evicts members whose session expired, forgets member
    /// ids never claimed, ends join phases whose deadline passed, and now and
    /// then expires old offsets. The broker calls it every ~100 ms.
    pub fn tick(&mut self, now_ms: i64) {
        if !self.loaded {
            return;
        }
        let busy: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Empty || g.has_members())
            .map(|g| g.id.clone())
            .collect();
        for id in busy {
            if let Some(mut group) = self.groups.remove(&id) {
                self.tick_group(&mut group, now_ms);
                self.groups.insert(id, group);
            }
        }
        if now_ms >= self.next_retention_check_ms {
            self.next_retention_check_ms =
                now_ms.saturating_add(self.config.offsets_retention_check_interval_ms);
            self.expire_offsets(now_ms);
        }
    }

    fn tick_group(&mut self, group: &mut Group, now_ms: i64) {
        self.tick_consumer(group, now_ms);
        let pending_before = group.pending_members.len();
        group
            .pending_members
            .retain(|_, deadline| *deadline > now_ms);
        if group.pending_members.len() != pending_before {
            self.maybe_complete_join(group, now_ms);
        }
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| !m.kept_alive() && m.heartbeat_deadline_ms <= now_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member(group, &id, now_ms);
        }
        let deadline_passed = group.rebalance_deadline_ms.is_some_and(|d| d <= now_ms);
        match group.state {
            GroupState::PreparingRebalance if deadline_passed => self.complete_join(group, now_ms),
            GroupState::CompletingRebalance if deadline_passed => {
                let silent: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| m.awaiting_sync.is_none())
                    .map(|m| m.id.clone())
                    .collect();
                for id in silent {
                    self.remove_member(group, &id, now_ms);
                }
            }
            _ => {}
        }
    }

    /// Queues the group's state for `__consumer_offsets`.
    pub(crate) fn persist(&mut self, group: &Group) {
        if let Some(record) = self.group_record(group) {
            self.records.push(record);
        }
    }
}

fn beat(group: &mut Group, request: &HeartbeatRequest, now_ms: i64) -> i16 {
    let member_id = request.member_id.as_str();
    if group.is_static_member_fenced(member_id, request.group_instance_id.as_deref()) {
        return FENCED_INSTANCE_ID;
    }
    let generation = group.generation;
    let state = group.state;
    let Some(member) = group.members.get_mut(member_id) else {
        return UNKNOWN_MEMBER_ID;
    };
    if request.generation_id != generation {
        return ILLEGAL_GENERATION;
    }
    member.heartbeat_deadline_ms = now_ms.saturating_add(i64::from(member.session_timeout_ms));
    match state {
        GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
        GroupState::CompletingRebalance | GroupState::Stable => NONE,
        GroupState::Empty | GroupState::Dead => UNKNOWN_MEMBER_ID,
    }
}

/// The JoinGroup answer for a member of the current generation.
fn current_join_answer(
    group: &Group,
    member_id: &str,
    version: i16,
    with_members: bool,
) -> JoinGroupResponse {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let members = if with_members {
        group
            .members
            .values()
            .map(|m| JoinGroupResponseMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
                ..Default::default()
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinGroupResponse {
        error_code: NONE,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: if version >= 7 {
            group.protocol_name.clone()
        } else {
            Some(protocol)
        },
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        ..Default::default()
    }
}

fn sync_answer(group: &Group, member_id: &str, version: i16) -> SyncGroupResponse {
    let assignment = group
        .members
        .get(member_id)
        .map(|m| m.assignment.clone())
        .unwrap_or_default();
    let (protocol_type, protocol_name) = if version >= 5 {
        (group.protocol_type.clone(), group.protocol_name.clone())
    } else {
        (None, None)
    };
    SyncGroupResponse {
        error_code: NONE,
        protocol_type,
        protocol_name,
        assignment,
        ..Default::default()
    }
}
