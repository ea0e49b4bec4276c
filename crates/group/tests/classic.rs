//! The classic group protocol, driven request by request.

mod common;

use bytes::Bytes;
use common::*;
use rill_group::error_code::*;
use rill_group::{GroupConfig, Reply};
use rill_protocol::messages::leave_group_request::MemberIdentity;
use rill_protocol::messages::{HeartbeatRequest, LeaveGroupRequest};

const G: &str = "g";

#[test]
fn v4_join_asks_for_a_member_id_then_a_lone_member_leads_and_syncs() {
    let mut d = Driver::new();
    let (id, generation) = d.stable_single(G, &["t"], 0);
    assert!(id.starts_with("client-"));
    assert_eq!(generation, 1);
    assert_eq!(d.state(G), ("Stable".into(), 1));
    assert_eq!(d.heartbeat(G, &id, generation, 1), NONE);
}

#[test]
fn v3_join_with_empty_member_id_joins_at_once() {
    let mut d = Driver::new();
    let reply = d.join(3, join_request(G, "", &range(&["t"])), 0);
    let joined = d.joined(&reply).unwrap();
    assert_eq!(joined.error_code, NONE);
    assert!(!joined.member_id.is_empty());
    assert_eq!(joined.members.len(), 1);
}

#[test]
fn a_second_member_rebalances_the_group_and_both_get_their_assignment() {
    let mut d = Driver::new();
    let (a, gen1) = d.stable_single(G, &["t"], 0);
    let (b, b_join) = d.join_new(G, &range(&["t"]), 10);
    assert!(d.joined(&b_join).is_none(), "waits for the other member");
    assert_eq!(d.state(G).0, "PreparingRebalance");
    assert_eq!(d.heartbeat(G, &a, gen1, 20), REBALANCE_IN_PROGRESS);
    let a_join = d.join(5, join_request(G, &a, &range(&["t"])), 30);
    let a_joined = d.joined(&a_join).unwrap();
    let b_joined = d.joined(&b_join).unwrap();
    assert_eq!(a_joined.generation_id, gen1 + 1);
    assert_eq!(b_joined.generation_id, gen1 + 1);
    assert_eq!(a_joined.leader, a, "the leader stays the leader");
    assert_eq!(a_joined.members.len(), 2, "the leader sees every member");
    assert!(b_joined.members.is_empty());
    assert_eq!(a_joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(d.state(G).0, "CompletingRebalance");

    let b_sync = d.sync(G, &b, gen1 + 1, &[], 40);
    assert!(
        d.synced(&b_sync).is_none(),
        "a follower waits for the leader"
    );
    let a_sync = d.sync(G, &a, gen1 + 1, &[(&a, b"pa"), (&b, b"pb")], 50);
    assert_eq!(d.synced(&a_sync).unwrap().assignment.as_ref(), b"pa");
    assert_eq!(d.synced(&b_sync).unwrap().assignment.as_ref(), b"pb");
    assert_eq!(d.state(G), ("Stable".into(), 2));
}

#[test]
fn join_errors() {
    let mut d = Driver::new();
    let now = 0;
    let mut error = |request, version| {
        let reply = d.join(version, request, now);
        match reply {
            Reply::Now(response) => response.error_code,
            Reply::Pending(_) => panic!("an error is answered at once"),
        }
    };
    assert_eq!(
        error(join_request("", "", &range(&["t"])), 5),
        INVALID_GROUP_ID
    );
    let mut short = join_request(G, "", &range(&["t"]));
    short.session_timeout_ms = 10;
    assert_eq!(error(short, 5), INVALID_SESSION_TIMEOUT);
    assert_eq!(
        error(join_request(G, "", &[]), 5),
        INCONSISTENT_GROUP_PROTOCOL
    );
    assert_eq!(
        error(join_request("unknown", "m-1", &range(&["t"])), 5),
        UNKNOWN_MEMBER_ID
    );
    let huge = vec![("range", Bytes::from(vec![0u8; 300 * 1024]))];
    assert_eq!(error(join_request(G, "", &huge), 5), INVALID_REQUEST);
}

#[test]
fn members_must_share_the_protocol_type_and_a_protocol() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let mut other_type = join_request(G, "", &range(&["t"]));
    other_type.protocol_type = "connect".into();
    let Reply::Now(answer) = d.join(5, other_type, 1) else {
        panic!()
    };
    assert_eq!(answer.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let other_protocol = join_request(G, "", &[("roundrobin", subscription(&["t"]))]);
    let Reply::Now(answer) = d.join(5, other_protocol, 1) else {
        panic!()
    };
    assert_eq!(answer.error_code, INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(
        d.state(G),
        ("Stable".into(), 1),
        "a refused join changes nothing"
    );
    assert_eq!(d.heartbeat(G, &a, 1, 2), NONE);
}

#[test]
fn the_protocol_most_members_prefer_wins() {
    let mut d = Driver::new();
    let s = subscription(&["t"]);
    let prefs: [Vec<(&str, Bytes)>; 3] = [
        vec![
            ("range", s.clone()),
            ("roundrobin", s.clone()),
            ("sticky", s.clone()),
        ],
        vec![("roundrobin", s.clone()), ("range", s.clone())],
        vec![("roundrobin", s.clone()), ("range", s.clone())],
    ];
    let replies: Vec<_> = prefs
        .iter()
        .map(|p| d.join(3, join_request(G, "", p), 0))
        .collect();
    // v3 members join at once; the first one completed the first
    // generation alone, the others started a new rebalance.
    let first = d.joined(&replies[0]).unwrap();
    assert_eq!(first.protocol_name.as_deref(), Some("range"));
    let others: Vec<String> = replies[1..]
        .iter()
        .filter_map(|r| d.joined(r).map(|j| j.member_id))
        .collect();
    assert!(
        others.is_empty(),
        "still waiting for the first member to rejoin"
    );
    let rejoin = d.join(3, join_request(G, &first.member_id, &prefs[0]), 1);
    let answer = d.joined(&rejoin).unwrap();
    assert_eq!(answer.generation_id, 2);
    assert_eq!(answer.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(answer.members.len(), 3);
}

#[test]
fn sync_errors() {
    let mut d = Driver::new();
    let (a, generation) = d.stable_single(G, &["t"], 0);
    let code = |d: &mut Driver, group: &str, member: &str, generation| {
        let reply = d.sync(group, member, generation, &[], 1);
        d.synced(&reply).unwrap().error_code
    };
    assert_eq!(code(&mut d, "nope", &a, generation), UNKNOWN_MEMBER_ID);
    assert_eq!(code(&mut d, G, "stranger", generation), UNKNOWN_MEMBER_ID);
    assert_eq!(code(&mut d, G, &a, generation + 5), ILLEGAL_GENERATION);
    let stable = d.sync(G, &a, generation, &[], 1);
    assert_eq!(
        d.synced(&stable).unwrap().assignment.as_ref(),
        b"a1",
        "Stable: the current assignment"
    );

    let mut request = rill_protocol::messages::SyncGroupRequest {
        group_id: G.into(),
        generation_id: generation,
        member_id: a.clone(),
        protocol_name: Some("roundrobin".into()),
        ..Default::default()
    };
    let Reply::Now(answer) = d.coordinator.sync_group(5, request.clone(), 1) else {
        panic!()
    };
    assert_eq!(answer.error_code, INCONSISTENT_GROUP_PROTOCOL);
    request.protocol_name = Some("range".into());
    request.protocol_type = Some("consumer".into());
    let Reply::Now(answer) = d.coordinator.sync_group(5, request, 1) else {
        panic!()
    };
    assert_eq!(answer.error_code, NONE);
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));

    let (_b, _) = d.join_new(G, &range(&["t"]), 2);
    assert_eq!(code(&mut d, G, &a, generation), REBALANCE_IN_PROGRESS);
}

#[test]
fn heartbeat_errors() {
    let mut d = Driver::new();
    let (a, generation) = d.stable_single(G, &["t"], 0);
    assert_eq!(d.heartbeat("nope", &a, generation, 1), UNKNOWN_MEMBER_ID);
    assert_eq!(d.heartbeat(G, "stranger", generation, 1), UNKNOWN_MEMBER_ID);
    assert_eq!(d.heartbeat(G, &a, generation - 1, 1), ILLEGAL_GENERATION);
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    let mut d = Driver::new();
    let (a, gen1) = d.stable_single(G, &["t"], 0);
    let (b, b_join) = d.join_new(G, &range(&["t"]), 0);
    let a_join = d.join(5, join_request(G, &a, &range(&["t"])), 0);
    let generation = d.joined(&a_join).unwrap().generation_id;
    assert_eq!(generation, gen1 + 1);
    assert!(d.joined(&b_join).is_some());
    d.sync(G, &b, generation, &[], 0);
    d.sync(G, &a, generation, &[(&a, b"x"), (&b, b"y")], 0);
    assert_eq!(d.state(G), ("Stable".into(), 2));

    // `a` keeps heartbeating, `b` falls silent.
    let session = i64::from(SESSION_MS);
    for now in (1_000..session).step_by(1_000) {
        assert_eq!(d.heartbeat(G, &a, generation, now), NONE);
        d.tick(now);
    }
    assert_eq!(d.state(G), ("Stable".into(), 2));
    d.tick(session + 1);
    assert_eq!(d.state(G).0, "PreparingRebalance");
    assert_eq!(
        d.heartbeat(G, &a, generation, session + 2),
        REBALANCE_IN_PROGRESS
    );
    let rejoin = d.join(5, join_request(G, &a, &range(&["t"])), session + 3);
    let answer = d.joined(&rejoin).unwrap();
    assert_eq!(answer.generation_id, generation + 1);
    assert_eq!(answer.members.len(), 1, "only the live member is left");
    assert_eq!(
        d.heartbeat(G, &b, generation, session + 4),
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn members_that_do_not_rejoin_are_removed_at_the_rebalance_deadline() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let (_b, b_join) = d.join_new(G, &range(&["t"]), 100);
    // `a` keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for now in (1_000..i64::from(REBALANCE_MS)).step_by(1_000) {
        assert_eq!(d.heartbeat(G, &a, 1, now), REBALANCE_IN_PROGRESS);
        d.tick(now);
        assert!(d.joined(&b_join).is_none());
    }
    d.tick(i64::from(REBALANCE_MS) + 100);
    let answer = d.joined(&b_join).unwrap();
    assert_eq!(answer.error_code, NONE);
    assert_eq!(answer.members.len(), 1);
    assert_eq!(
        answer.leader, answer.member_id,
        "the leader left, a new one is chosen"
    );
}

#[test]
fn an_unclaimed_member_id_expires_and_stops_blocking_the_join() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let Reply::Now(first) = d.join(5, join_request(G, "", &range(&["t"])), 10) else {
        panic!()
    };
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    // The new client never comes back; `a` rejoins (metadata changed).
    let changed = range(&["t", "u"]);
    let a_join = d.join(5, join_request(G, &a, &changed), 20);
    assert!(d.joined(&a_join).is_none(), "waits for the pending member");
    d.tick(i64::from(SESSION_MS) + 11);
    assert_eq!(d.joined(&a_join).unwrap().generation_id, 2);
}

#[test]
fn leave_group_v0_and_batched_v3() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let leave = |id: &str| LeaveGroupRequest {
        group_id: G.into(),
        member_id: id.into(),
        ..Default::default()
    };
    let response = d.coordinator.leave_group(0, leave("stranger"), 1);
    assert_eq!(response.error_code, UNKNOWN_MEMBER_ID);
    let response = d.coordinator.leave_group(0, leave("x"), 1);
    assert_eq!(response.error_code, UNKNOWN_MEMBER_ID);
    let response = d.coordinator.leave_group(1, leave(&a), 1);
    assert_eq!(response.error_code, NONE);
    d.drain();
    assert_eq!(d.state(G), ("Empty".into(), 0), "the last member left");

    // Two static members, removed in one batch by instance id (as an admin
    // tool does), plus one unknown and one fenced identity.
    for instance in ["i1", "i2"] {
        let mut request = join_request(G, "", &range(&["t"]));
        request.group_instance_id = Some(instance.into());
        d.join(5, request, 2);
    }
    assert_eq!(d.state(G).1, 2);
    let batch = LeaveGroupRequest {
        group_id: G.into(),
        members: vec![
            MemberIdentity {
                member_id: String::new(),
                group_instance_id: Some("i1".into()),
                ..Default::default()
            },
            MemberIdentity {
                member_id: "wrong".into(),
                group_instance_id: Some("i2".into()),
                ..Default::default()
            },
            MemberIdentity {
                member_id: String::new(),
                group_instance_id: Some("i3".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let response = d.coordinator.leave_group(3, batch, 3);
    d.drain();
    let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![NONE, FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID]);
    assert_eq!(response.error_code, NONE);
    assert_eq!(d.state(G).1, 1, "only i2 is left");
    let unknown_group = d.coordinator.leave_group(
        3,
        LeaveGroupRequest {
            group_id: "nope".into(),
            ..Default::default()
        },
        4,
    );
    assert_eq!(unknown_group.error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn a_graceful_leave_rebalances_at_once() {
    let mut d = Driver::new();
    let (a, gen1) = d.stable_single(G, &["t"], 0);
    let (b, b_join) = d.join_new(G, &range(&["t"]), 0);
    d.join(5, join_request(G, &a, &range(&["t"])), 0);
    let generation = d.joined(&b_join).unwrap().generation_id;
    d.sync(G, &b, generation, &[], 0);
    d.sync(G, &a, generation, &[], 0);
    assert_eq!(generation, gen1 + 1);
    let response = d.coordinator.leave_group(
        1,
        LeaveGroupRequest {
            group_id: G.into(),
            member_id: b.clone(),
            ..Default::default()
        },
        5,
    );
    assert_eq!(response.error_code, NONE);
    assert_eq!(d.heartbeat(G, &a, generation, 6), REBALANCE_IN_PROGRESS);
    let rejoin = d.join(5, join_request(G, &a, &range(&["t"])), 7);
    let answer = d.joined(&rejoin).unwrap();
    assert_eq!(
        answer.generation_id,
        generation + 1,
        "no waiting for the member that left"
    );
}

#[test]
fn a_static_member_restarting_keeps_its_assignment_without_a_rebalance() {
    let mut d = Driver::new();
    let mut request = join_request(G, "", &range(&["t"]));
    request.group_instance_id = Some("box-1".into());
    let first = d.join(5, request.clone(), 0);
    let joined = d
        .joined(&first)
        .expect("static members need no MEMBER_ID_REQUIRED");
    let old_id = joined.member_id.clone();
    assert!(old_id.starts_with("box-1-"));
    d.sync(G, &old_id, joined.generation_id, &[(&old_id, b"mine")], 0);
    assert_eq!(d.state(G).0, "Stable");

    // Restart: same instance id, no member id, same metadata.
    let again = d.join(5, request.clone(), 1_000);
    let Reply::Now(answer) = again else {
        panic!("answered at once")
    };
    assert_eq!(answer.error_code, NONE);
    assert_eq!(
        answer.generation_id, joined.generation_id,
        "no new generation"
    );
    assert_ne!(answer.member_id, old_id);
    assert_eq!(answer.leader, answer.member_id);
    assert_eq!(d.state(G).0, "Stable");
    let sync = d.sync(G, &answer.member_id, answer.generation_id, &[], 1_001);
    assert_eq!(d.synced(&sync).unwrap().assignment.as_ref(), b"mine");

    // The old incarnation is fenced.
    let fenced = d.coordinator.heartbeat(
        HeartbeatRequest {
            group_id: G.into(),
            generation_id: answer.generation_id,
            member_id: old_id.clone(),
            group_instance_id: Some("box-1".into()),
            ..Default::default()
        },
        1_002,
    );
    assert_eq!(fenced.error_code, FENCED_INSTANCE_ID);
    let mut old = request.clone();
    old.member_id = old_id;
    let Reply::Now(answer_old) = d.join(5, old, 1_003) else {
        panic!()
    };
    assert_eq!(answer_old.error_code, FENCED_INSTANCE_ID);

    // A v9 leader restarting learns the members but is told not to assign.
    let mut v9 = request.clone();
    v9.group_instance_id = Some("box-1".into());
    let Reply::Now(answer_v9) = d.join(9, v9, 1_500) else {
        panic!("answered at once")
    };
    assert!(answer_v9.skip_assignment);
    assert_eq!(answer_v9.members.len(), 1);
    assert_eq!(answer_v9.leader, answer_v9.member_id);

    // A restart with a changed subscription does rebalance.
    let mut changed = request;
    changed.protocols = join_request(G, "", &range(&["t", "u"])).protocols;
    let reply = d.join(5, changed, 2_000);
    let answer = d.joined(&reply).unwrap();
    assert_eq!(answer.generation_id, joined.generation_id + 1);
}

#[test]
fn the_initial_delay_gathers_members_started_together() {
    let mut d = Driver::with(GroupConfig {
        initial_rebalance_delay_ms: 100,
        ..config()
    });
    let (_a, a_join) = d.join_new(G, &range(&["t"]), 0);
    let (_b, b_join) = d.join_new(G, &range(&["t"]), 50);
    d.tick(120);
    assert!(
        d.joined(&a_join).is_none(),
        "each newcomer extends the delay"
    );
    d.tick(151);
    let a = d.joined(&a_join).unwrap();
    let b = d.joined(&b_join).unwrap();
    assert_eq!(a.generation_id, 1);
    assert_eq!(b.generation_id, 1);
    assert_eq!(a.members.len() + b.members.len(), 2, "one leader sees both");
}

#[test]
fn cooperative_rejoin_in_stable_triggers_a_rebalance_only_when_metadata_changes() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let (b, b_join) = d.join_new(G, &range(&["t"]), 0);
    d.join(5, join_request(G, &a, &range(&["t"])), 0);
    let generation = d.joined(&b_join).unwrap().generation_id;
    d.sync(G, &b, generation, &[], 0);
    d.sync(G, &a, generation, &[(&a, b"t-0"), (&b, b"")], 0);

    // A follower rejoining with the same metadata learns the generation.
    let same = d.join(5, join_request(G, &b, &range(&["t"])), 1);
    let Reply::Now(answer) = same else {
        panic!("answered at once")
    };
    assert_eq!(answer.generation_id, generation);
    assert_eq!(d.state(G).0, "Stable");

    // After revoking, a cooperative member rejoins with new owned
    // partitions (new metadata): a follow-up rebalance.
    let revoked = vec![("range", subscription(&["t", "owned-changed"]))];
    let b_again = d.join(5, join_request(G, &b, &revoked), 2);
    assert!(d.joined(&b_again).is_none());
    assert_eq!(d.state(G).0, "PreparingRebalance");
    d.join(5, join_request(G, &a, &range(&["t"])), 3);
    assert_eq!(d.joined(&b_again).unwrap().generation_id, generation + 1);
}

#[test]
fn a_lost_join_answer_is_given_again_during_completing_rebalance() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let (b, b_join) = d.join_new(G, &range(&["t"]), 0);
    d.join(5, join_request(G, &a, &range(&["t"])), 0);
    let first = d.joined(&b_join).unwrap();
    let again = d.join(5, join_request(G, &b, &range(&["t"])), 1);
    let Reply::Now(second) = again else { panic!() };
    assert_eq!(second.generation_id, first.generation_id);
    assert_eq!(d.state(G).0, "CompletingRebalance");
}

#[test]
fn a_leader_leaving_during_completing_rebalance_restarts_it() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let (b, b_join) = d.join_new(G, &range(&["t"]), 0);
    d.join(5, join_request(G, &a, &range(&["t"])), 0);
    let generation = d.joined(&b_join).unwrap().generation_id;
    let b_sync = d.sync(G, &b, generation, &[], 1);
    d.coordinator.leave_group(
        1,
        LeaveGroupRequest {
            group_id: G.into(),
            member_id: a,
            ..Default::default()
        },
        2,
    );
    d.drain();
    assert_eq!(d.synced(&b_sync).unwrap().error_code, REBALANCE_IN_PROGRESS);
}

#[test]
fn the_group_size_is_limited() {
    let mut d = Driver::with(GroupConfig {
        group_size_max: 2,
        ..config()
    });
    d.join_new(G, &range(&["t"]), 0);
    d.join_new(G, &range(&["t"]), 0);
    let Reply::Now(answer) = d.join(5, join_request(G, "", &range(&["t"])), 0) else {
        panic!()
    };
    assert_eq!(answer.error_code, GROUP_MAX_SIZE_REACHED);
}

#[test]
fn a_leader_that_never_syncs_is_removed_at_the_rebalance_timeout() {
    let mut d = Driver::new();
    let (a, _) = d.stable_single(G, &["t"], 0);
    let (b, b_join) = d.join_new(G, &range(&["t"]), 0);
    d.join(5, join_request(G, &a, &range(&["t"])), 0);
    let generation = d.joined(&b_join).unwrap().generation_id;
    let b_sync = d.sync(G, &b, generation, &[], 1);
    // The leader `a` heartbeats but never sends SyncGroup.
    for now in (1_000..i64::from(REBALANCE_MS)).step_by(1_000) {
        assert_eq!(d.heartbeat(G, &a, generation, now), NONE);
        d.tick(now);
    }
    assert!(d.synced(&b_sync).is_none());
    d.tick(i64::from(REBALANCE_MS) + 10);
    assert_eq!(d.synced(&b_sync).unwrap().error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(
        d.heartbeat(G, &a, generation, i64::from(REBALANCE_MS) + 11),
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn member_ids_stay_short_whatever_the_client_id() {
    let mut d = Driver::new();
    let long = "c".repeat(30_000);
    let reply = d.coordinator.join_group(
        5,
        join_request(G, "", &range(&["t"])),
        rill_group::ClientInfo {
            client_id: &long,
            client_host: "",
        },
        0,
    );
    let Reply::Now(answer) = reply else { panic!() };
    assert_eq!(answer.error_code, MEMBER_ID_REQUIRED);
    assert!(answer.member_id.len() < 300);
}
