//! Committed offsets, group administration, persistence and replay.

mod common;

use common::*;
use rill_group::error_code::*;
use rill_group::{Coordinator, CoordinatorNode, GroupConfig, find_coordinator, partition_for};
use rill_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use rill_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use rill_protocol::messages::*;

const G: &str = "g";

#[test]
fn simple_commits_need_no_group_membership() {
    let mut d = Driver::new();
    assert_eq!(d.fetch("solo", "t", 0), -1);
    assert_eq!(
        d.commit("solo", "", -1, &[("t", 0, 42), ("t", 1, 7)], 5),
        vec![NONE, NONE]
    );
    assert_eq!(d.fetch("solo", "t", 0), 42);
    assert_eq!(d.fetch("solo", "t", 1), 7);
    assert_eq!(d.fetch("solo", "t", 2), -1);
    assert_eq!(d.state("solo"), ("Empty".into(), 0));
    assert!(
        d.log
            .iter()
            .all(|r| r.partition == partition_for("solo", 50))
    );
}

#[test]
fn commit_checks_group_member_and_generation() {
    let mut d = Driver::new();
    assert_eq!(
        d.commit("", "", -1, &[("t", 0, 1)], 0),
        vec![INVALID_GROUP_ID]
    );
    assert_eq!(
        d.commit("unknown", "m", 3, &[("t", 0, 1)], 0),
        vec![ILLEGAL_GENERATION]
    );
    let (a, generation) = d.stable_single(G, &["t"], 0);
    assert_eq!(d.commit(G, &a, generation, &[("t", 0, 10)], 1), vec![NONE]);
    assert_eq!(
        d.commit(G, &a, generation + 1, &[("t", 0, 11)], 1),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        d.commit(G, "stranger", generation, &[("t", 0, 12)], 1),
        vec![UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        d.commit(G, "", -1, &[("t", 0, 13)], 1),
        vec![ILLEGAL_GENERATION],
        "simple commit to an active group"
    );
    assert_eq!(d.fetch(G, "t", 0), 10, "refused commits change nothing");

    // During CompletingRebalance commits wait for the new assignment; during
    // PreparingRebalance the old generation may still commit (eager
    // consumers commit before revoking).
    let (_b, _) = d.join_new(G, &range(&["t"]), 2);
    assert_eq!(d.state(G).0, "PreparingRebalance");
    assert_eq!(d.commit(G, &a, generation, &[("t", 0, 20)], 3), vec![NONE]);
    d.join(5, join_request(G, &a, &range(&["t"])), 4);
    assert_eq!(d.state(G).0, "CompletingRebalance");
    assert_eq!(
        d.commit(G, &a, generation + 1, &[("t", 0, 21)], 5),
        vec![REBALANCE_IN_PROGRESS]
    );
    assert_eq!(d.fetch(G, "t", 0), 20);
}

#[test]
fn offset_metadata_is_limited() {
    let mut d = Driver::with(GroupConfig {
        offset_metadata_bytes_max: 8,
        ..config()
    });
    let codes = d.commit_with_metadata("g", "", -1, &[("t", 0, 1)], "123456789", 0);
    assert_eq!(codes, vec![OFFSET_METADATA_TOO_LARGE]);
    assert_eq!(
        d.commit_with_metadata("g", "", -1, &[("t", 0, 1)], "12345678", 0),
        vec![NONE]
    );
    let response = d.coordinator.offset_fetch(
        5,
        OffsetFetchRequest {
            group_id: "g".into(),
            topics: None,
            ..Default::default()
        },
    );
    assert_eq!(
        response.topics[0].partitions[0].metadata.as_deref(),
        Some("12345678")
    );
}

#[test]
fn a_failed_append_answers_coordinator_not_available_and_changes_nothing() {
    let mut d = Driver::new();
    let request = OffsetCommitRequest {
        group_id: "g".into(),
        topics: vec![
            rill_protocol::messages::offset_commit_request::OffsetCommitRequestTopic {
                name: "t".into(),
                partitions: vec![Default::default()],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let plan = d.coordinator.offset_commit(7, request, 0);
    let response = plan.failed();
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        COORDINATOR_NOT_AVAILABLE
    );
    assert_eq!(d.fetch("g", "t", 0), -1);
}

#[test]
fn fetch_all_and_multi_group_fetch() {
    let mut d = Driver::new();
    d.commit("g1", "", -1, &[("b", 1, 11), ("a", 0, 10)], 0);
    d.commit("g2", "", -1, &[("a", 0, 20)], 0);
    let all = d.coordinator.offset_fetch(
        6,
        OffsetFetchRequest {
            group_id: "g1".into(),
            topics: None,
            ..Default::default()
        },
    );
    let names: Vec<&str> = all.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    let request = OffsetFetchRequest {
        groups: vec![
            OffsetFetchRequestGroup {
                group_id: "g1".into(),
                topics: None,
                ..Default::default()
            },
            OffsetFetchRequestGroup {
                group_id: "g2".into(),
                topics: Some(vec![OffsetFetchRequestTopics {
                    name: "a".into(),
                    partition_indexes: [0, 1][..].into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            OffsetFetchRequestGroup {
                group_id: "none".into(),
                topics: None,
                ..Default::default()
            },
        ],
        require_stable: true,
        ..Default::default()
    };
    let response = d.coordinator.offset_fetch(8, request);
    assert_eq!(response.groups.len(), 3);
    assert_eq!(response.groups[0].topics.len(), 2);
    let g2: Vec<i64> = response.groups[1].topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(g2, vec![20, -1]);
    assert!(response.groups[2].topics.is_empty());
    assert!(response.groups.iter().all(|g| g.error_code == NONE));
}

#[test]
fn offset_delete_spares_subscribed_topics() {
    let mut d = Driver::new();
    let delete = |group: &str, topic: &str| OffsetDeleteRequest {
        group_id: group.into(),
        topics: vec![OffsetDeleteRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
        }],
    };
    assert_eq!(
        d.coordinator.offset_delete(delete("nope", "t")).error_code,
        GROUP_ID_NOT_FOUND
    );
    let (a, generation) = d.stable_single(G, &["t"], 0);
    d.commit(G, &a, generation, &[("t", 0, 5), ("old", 0, 6)], 1);
    let response = d.coordinator.offset_delete(delete(G, "t"));
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        GROUP_SUBSCRIBED_TO_TOPIC
    );
    let response = d.coordinator.offset_delete(delete(G, "old"));
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.topics[0].partitions[0].error_code, NONE);
    d.drain();
    assert_eq!(d.fetch(G, "old", 0), -1);
    assert_eq!(d.fetch(G, "t", 0), 5);
    assert_eq!(
        d.log.last().unwrap().value,
        None,
        "a tombstone is persisted"
    );
}

#[test]
fn delete_groups_only_deletes_empty_groups() {
    let mut d = Driver::new();
    d.commit("idle", "", -1, &[("t", 0, 1)], 0);
    let (_a, _) = d.stable_single(G, &["t"], 0);
    let response = d.coordinator.delete_groups(&DeleteGroupsRequest {
        groups_names: vec!["idle".into(), G.into(), "nope".into(), "".into()],
        ..Default::default()
    });
    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![NONE, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND, INVALID_GROUP_ID]
    );
    d.drain();
    assert_eq!(d.fetch("idle", "t", 0), -1);
    assert_eq!(d.state("idle").0, "Dead");
    let tombstones = d
        .log
        .iter()
        .rev()
        .take(2)
        .filter(|r| r.value.is_none())
        .count();
    assert_eq!(tombstones, 2, "the offset and the group");
}

#[test]
fn list_and_describe_groups() {
    let mut d = Driver::new();
    d.commit("idle", "", -1, &[("t", 0, 1)], 0);
    let (a, _) = d.stable_single(G, &["t"], 0);
    let list = |d: &Driver, states: &[&str], types: &[&str]| -> Vec<String> {
        d.coordinator
            .list_groups(&ListGroupsRequest {
                states_filter: states.iter().map(|s| s.to_string()).collect(),
                types_filter: types.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .groups
            .into_iter()
            .map(|g| format!("{}:{}:{}", g.group_id, g.group_state, g.protocol_type))
            .collect()
    };
    assert_eq!(list(&d, &[], &[]), vec!["g:Stable:consumer", "idle:Empty:"]);
    assert_eq!(list(&d, &["stable"], &[]), vec!["g:Stable:consumer"]);
    assert_eq!(list(&d, &[], &["Classic"]).len(), 2);
    assert!(list(&d, &[], &["consumer"]).is_empty());

    let described = d.coordinator.describe_groups(&DescribeGroupsRequest {
        groups: vec![G.into(), "nope".into()],
        include_authorized_operations: true,
        ..Default::default()
    });
    assert_eq!(described.groups[0].authorized_operations, 328);
    let g = &described.groups[0];
    assert_eq!(
        (g.group_state.as_str(), g.protocol_data.as_str()),
        ("Stable", "range")
    );
    assert_eq!(g.members[0].member_id, a);
    assert_eq!(g.members[0].client_host, "/127.0.0.1");
    assert_eq!(g.members[0].member_assignment.as_ref(), b"a1");
    assert_eq!(
        (
            described.groups[1].error_code,
            described.groups[1].group_state.as_str()
        ),
        (NONE, "Dead")
    );
}

#[test]
fn replaying_the_records_restores_offsets_and_groups() {
    let mut d = Driver::new();
    let (a, generation) = d.stable_single(G, &["t"], 0);
    d.commit(G, &a, generation, &[("t", 0, 100), ("t", 1, 200)], 1);
    d.commit(G, &a, generation, &[("t", 0, 150)], 2);
    d.commit("gone", "", -1, &[("t", 0, 1)], 2);
    d.coordinator.delete_groups(&DeleteGroupsRequest {
        groups_names: vec!["gone".into()],
        ..Default::default()
    });
    d.commit("simple", "", -1, &[("x", 3, 33)], 3);
    d.drain();

    let mut restarted = Driver::new();
    for record in &d.log {
        restarted
            .coordinator
            .load(&record.key, record.value.as_deref(), 10)
            .unwrap();
    }
    assert_eq!(restarted.fetch(G, "t", 0), 150);
    assert_eq!(restarted.fetch(G, "t", 1), 200);
    assert_eq!(restarted.fetch("simple", "x", 3), 33);
    assert_eq!(restarted.state("gone").0, "Dead");
    assert_eq!(restarted.state(G), ("Stable".into(), 1));
    // The member carries on with its generation after the restart.
    assert_eq!(restarted.heartbeat(G, &a, generation, 20), NONE);
    let sync = restarted.sync(G, &a, generation, &[], 21);
    assert_eq!(restarted.synced(&sync).unwrap().assignment.as_ref(), b"a1");
    assert_eq!(restarted.coordinator.group_count(), 2);
}

#[test]
fn a_restored_member_that_never_returns_is_evicted() {
    let mut d = Driver::new();
    let (a, generation) = d.stable_single(G, &["t"], 0);
    d.commit(G, &a, generation, &[("t", 0, 9)], 0);
    let mut restarted = Driver::new();
    for record in &d.log {
        restarted
            .coordinator
            .load(&record.key, record.value.as_deref(), 1_000)
            .unwrap();
    }
    restarted.tick(1_000 + i64::from(SESSION_MS) + 1);
    assert_eq!(restarted.state(G), ("Empty".into(), 0));
    assert_eq!(restarted.fetch(G, "t", 0), 9);
    // The group became empty: that is persisted too.
    let last = restarted.log.last().unwrap();
    assert!(last.value.is_some());
}

#[test]
fn corrupt_records_are_refused_without_effect() {
    let mut c = Coordinator::new(GroupConfig::default(), 1);
    assert!(c.load(b"\x00", None, 0).is_err());
    assert!(c.load(b"\x00\x07abc", None, 0).is_err());
    let key = rill_group::record::RecordKey::Offset {
        group_id: "g".into(),
        topic: "t".into(),
        partition: 0,
    };
    assert!(
        c.load(&key.encode().unwrap(), Some(b"\x00\x03"), 0)
            .is_err()
    );
    assert_eq!(c.group_count(), 0);
}

#[test]
fn offsets_of_a_group_empty_for_the_retention_time_expire() {
    let retention = 60_000;
    let mut d = Driver::with(GroupConfig {
        offsets_retention_ms: retention,
        offsets_retention_check_interval_ms: 1_000,
        ..config()
    });
    d.commit("idle", "", -1, &[("t", 0, 1)], 0);
    let (a, generation) = d.stable_single(G, &["t"], 0);
    d.commit(G, &a, generation, &[("t", 0, 5)], 0);
    // `a` stays alive the whole time: its group's offsets must stay.
    let mut now = 0;
    while now <= retention + 2_000 {
        d.heartbeat(G, &a, generation, now);
        d.tick(now);
        now += 1_000;
    }
    assert_eq!(d.fetch("idle", "t", 0), -1);
    assert_eq!(d.state("idle").0, "Dead");
    assert_eq!(d.fetch(G, "t", 0), 5);
    assert!(d.log.iter().any(|r| r.value.is_none()));
}

#[test]
fn find_coordinator_single_and_batched() {
    let node = CoordinatorNode {
        node_id: 1,
        host: "localhost",
        port: 9092,
    };
    let single = find_coordinator(
        2,
        &FindCoordinatorRequest {
            key: "g".into(),
            key_type: 0,
            ..Default::default()
        },
        node,
    );
    assert_eq!(
        (
            single.error_code,
            single.node_id,
            single.host.as_str(),
            single.port
        ),
        (NONE, 1, "localhost", 9092)
    );
    let batched = find_coordinator(
        4,
        &FindCoordinatorRequest {
            key_type: 0,
            coordinator_keys: vec!["a".into(), "b".into()],
            ..Default::default()
        },
        node,
    );
    assert_eq!(batched.coordinators.len(), 2);
    assert!(
        batched
            .coordinators
            .iter()
            .all(|c| c.error_code == NONE && c.node_id == 1)
    );
    let txn = find_coordinator(
        2,
        &FindCoordinatorRequest {
            key: "tx".into(),
            key_type: 1,
            ..Default::default()
        },
        node,
    );
    assert_eq!(txn.error_code, COORDINATOR_NOT_AVAILABLE);
}

#[test]
fn a_loading_coordinator_asks_clients_to_retry() {
    let mut c = Coordinator::loading(config(), 1);
    let mut d = Driver::new();
    d.commit("g", "", -1, &[("t", 0, 5)], 0);
    for record in &d.log {
        c.load(&record.key, record.value.as_deref(), 0).unwrap();
    }
    let fetch = || OffsetFetchRequest {
        group_id: "g".into(),
        topics: None,
        ..Default::default()
    };
    assert_eq!(
        c.offset_fetch(7, fetch()).error_code,
        COORDINATOR_LOAD_IN_PROGRESS
    );
    let heartbeat = c.heartbeat(
        HeartbeatRequest {
            group_id: "g".into(),
            ..Default::default()
        },
        0,
    );
    assert_eq!(heartbeat.error_code, COORDINATOR_LOAD_IN_PROGRESS);
    let listed = c.list_groups(&ListGroupsRequest::default());
    assert_eq!(listed.error_code, COORDINATOR_LOAD_IN_PROGRESS);
    c.finish_loading();
    let fetched = c.offset_fetch(7, fetch());
    assert_eq!(fetched.error_code, NONE);
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 5);
}
