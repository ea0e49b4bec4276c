//! Group administration (ListGroups, DescribeGroups, DeleteGroups) and
//! FindCoordinator.

use rill_protocol::messages::delete_groups_response::DeletableGroupResult;
use rill_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use rill_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use rill_protocol::messages::list_groups_response::ListedGroup;
use rill_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, ListGroupsRequest, ListGroupsResponse,
};

use crate::coordinator::Coordinator;
use crate::error_code::*;
use crate::group::{Group, GroupState};
use crate::record::RecordKey;

/// The group types (ListGroups v5): Kafka's classic protocol and KIP-848.
const CLASSIC: &str = "classic";
const CONSUMER: &str = "consumer";

fn group_type(group: &Group) -> &'static str {
    if group.consumer.is_some() {
        CONSUMER
    } else {
        CLASSIC
    }
}

fn state_name(group: &Group) -> &'static str {
    match &group.consumer {
        Some(state) => state.state_name(),
        None => group.state.name(),
    }
}
/// What DescribeGroups answers for authorized operations not asked for.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;
/// Rill has no ACLs, so a client may do every operation Kafka defines on a
/// group: READ (bit 3), DELETE (bit 6) and DESCRIBE (bit 8).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// This broker, as FindCoordinator names it.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorNode<'a> {
    pub node_id: i32,
    pub host: &'a str,
    pub port: i32,
}

/// FindCoordinator, v0-v3 (one key) and v4+ (a batch of keys). Every group
/// is coordinated by this broker. Rill has no transaction coordinator, so
/// transactional ids get COORDINATOR_NOT_AVAILABLE.
pub fn find_coordinator(
    version: i16,
    request: &FindCoordinatorRequest,
    node: CoordinatorNode<'_>,
) -> FindCoordinatorResponse {
    let answer = |key: &str| -> CoordinatorEntry {
        let (error_code, message) = match request.key_type {
            0 => (NONE, None),
            1 => (
                COORDINATOR_NOT_AVAILABLE,
                Some("Rill has no transaction coordinator".to_string()),
            ),
            other => (INVALID_REQUEST, Some(format!("unknown key type {other}"))),
        };
        let found = error_code == NONE;
        CoordinatorEntry {
            key: key.to_string(),
            node_id: if found { node.node_id } else { -1 },
            host: if found {
                node.host.to_string()
            } else {
                String::new()
            },
            port: if found { node.port } else { -1 },
            error_code,
            error_message: message,
            ..Default::default()
        }
    };
    if version >= 4 {
        return FindCoordinatorResponse {
            coordinators: request.coordinator_keys.iter().map(|k| answer(k)).collect(),
            ..Default::default()
        };
    }
    let single = answer(&request.key);
    FindCoordinatorResponse {
        error_code: single.error_code,
        error_message: single.error_message,
        node_id: single.node_id,
        host: single.host,
        port: single.port,
        ..Default::default()
    }
}

impl Coordinator {
    /// ListGroups, with the v4 state filter and the v5 type filter (both
    /// case-insensitive, empty = all).
    pub fn list_groups(&self, request: &ListGroupsRequest) -> ListGroupsResponse {
        let wanted = |filter: &[String], value: &str| {
            filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
        };
        if !self.loaded {
            return ListGroupsResponse {
                error_code: COORDINATOR_LOAD_IN_PROGRESS,
                ..Default::default()
            };
        }
        let mut groups: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| wanted(&request.states_filter, state_name(g)))
            .filter(|g| wanted(&request.types_filter, group_type(g)))
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: match &g.consumer {
                    Some(_) => CONSUMER.to_string(),
                    None => g.protocol_type.clone().unwrap_or_default(),
                },
                group_state: state_name(g).to_string(),
                group_type: group_type(g).to_string(),
                ..Default::default()
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        ListGroupsResponse {
            groups,
            ..Default::default()
        }
    }

    /// DescribeGroups; an unknown group is reported as "Dead", as Kafka does
    /// up to v5.
    pub fn describe_groups(&self, request: &DescribeGroupsRequest) -> DescribeGroupsResponse {
        let operations = if request.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            OPERATIONS_NOT_ASKED
        };
        let groups = request
            .groups
            .iter()
            .map(|id| match self.groups.get(id) {
                _ if !self.loaded => DescribedGroup {
                    error_code: COORDINATOR_LOAD_IN_PROGRESS,
                    group_id: id.clone(),
                    authorized_operations: OPERATIONS_NOT_ASKED,
                    ..Default::default()
                },
                Some(group) => describe(group, operations),
                None => DescribedGroup {
                    error_code: if id.is_empty() {
                        INVALID_GROUP_ID
                    } else {
                        NONE
                    },
                    group_id: id.clone(),
                    group_state: GroupState::Dead.name().to_string(),
                    authorized_operations: OPERATIONS_NOT_ASKED,
                    ..Default::default()
                },
            })
            .collect();
        DescribeGroupsResponse {
            groups,
            ..Default::default()
        }
    }

    /// DeleteGroups: only groups without members; their offsets go too.
    pub fn delete_groups(&mut self, request: &DeleteGroupsRequest) -> DeleteGroupsResponse {
        let results = request
            .groups_names
            .iter()
            .map(|id| DeletableGroupResult {
                group_id: id.clone(),
                error_code: self.delete_group(id),
                ..Default::default()
            })
            .collect();
        DeleteGroupsResponse {
            results,
            ..Default::default()
        }
    }

    fn delete_group(&mut self, id: &str) -> i16 {
        if !self.loaded {
            return COORDINATOR_LOAD_IN_PROGRESS;
        }
        if id.is_empty() {
            return INVALID_GROUP_ID;
        }
        let Some(group) = self.groups.get(id) else {
            return GROUP_ID_NOT_FOUND;
        };
        if group.state != GroupState::Empty || group.has_members() {
            return NON_EMPTY_GROUP;
        }
        let Some(group) = self.groups.remove(id) else {
            return GROUP_ID_NOT_FOUND;
        };
        for (topic, partitions) in group.offsets {
            for partition in partitions.into_keys() {
                let key = RecordKey::Offset {
                    group_id: group.id.clone(),
                    topic: topic.clone(),
                    partition,
                };
                self.records.extend(self.tombstone(key));
            }
        }
        let key = RecordKey::Group { group_id: group.id };
        self.records.extend(self.tombstone(key));
        NONE
    }
}

fn describe(group: &Group, authorized_operations: i32) -> DescribedGroup {
    // Kafka shows metadata and assignments only once they are settled.
    let stable = group.state == GroupState::Stable;
    let protocol = group.protocol_name.clone().unwrap_or_default();
    DescribedGroup {
        error_code: NONE,
        group_id: group.id.clone(),
        group_state: state_name(group).to_string(),
        protocol_type: match &group.consumer {
            Some(_) => CONSUMER.to_string(),
            None => group.protocol_type.clone().unwrap_or_default(),
        },
        protocol_data: if stable {
            protocol.clone()
        } else {
            String::new()
        },
        members: group
            .members
            .values()
            .map(|m| DescribedGroupMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                member_metadata: if stable {
                    m.metadata(&protocol).cloned().unwrap_or_default()
                } else {
                    Default::default()
                },
                member_assignment: if stable {
                    m.assignment.clone()
                } else {
                    Default::default()
                },
                ..Default::default()
            })
            .collect(),
        authorized_operations,
        ..Default::default()
    }
}
