//! The KIP-848 consumer group protocol: server-side assignment and the
//! reconciliation that never gives a partition to two members at once.

mod common;

use std::collections::BTreeSet;

use common::*;
use rill_group::error_code::*;
use rill_group::{ClientInfo, Coordinator};
use rill_protocol::Uuid;
use rill_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use rill_protocol::messages::*;

const TOPIC_ID: Uuid = Uuid([7; 16]);

fn lookup(name: &str) -> Option<(Uuid, i32)> {
    (name == "t").then_some((TOPIC_ID, 6))
}

struct Member {
    id: String,
    epoch: i32,
    owned: BTreeSet<i32>,
}

fn beat(c: &mut Coordinator, m: &mut Member, now: i64, assignor: Option<&str>) -> i16 {
    let request = ConsumerGroupHeartbeatRequest {
        group_id: "cg".into(),
        member_id: m.id.clone(),
        member_epoch: m.epoch,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        server_assignor: assignor.map(str::to_string),
        topic_partitions: Some(vec![TopicPartitions {
            topic_id: TOPIC_ID,
            partitions: m.owned.iter().copied().collect(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let client = ClientInfo {
        client_id: "cli",
        client_host: "",
    };
    let response = c.consumer_group_heartbeat(request, &lookup, client, now);
    if response.error_code == NONE {
        m.id = response.member_id.unwrap();
        m.epoch = response.member_epoch;
        if let Some(assignment) = response.assignment {
            // The client revokes and takes exactly what it is told.
            m.owned = assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().copied())
                .collect();
        }
    }
    response.error_code
}

fn join(c: &mut Coordinator, now: i64, assignor: Option<&str>) -> Member {
    let mut m = Member {
        id: String::new(),
        epoch: 0,
        owned: BTreeSet::new(),
    };
    assert_eq!(beat(c, &mut m, now, assignor), NONE);
    assert!(!m.id.is_empty());
    m
}

fn disjoint(members: &[&Member]) -> bool {
    let total: usize = members.iter().map(|m| m.owned.len()).sum();
    let union: BTreeSet<i32> = members
        .iter()
        .flat_map(|m| m.owned.iter().copied())
        .collect();
    total == union.len()
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let mut c = Coordinator::new(config(), 1);
    let mut a = join(&mut c, 0, None);
    assert_eq!(a.owned, (0..6).collect());
    let mut b = join(&mut c, 1, None);
    assert!(b.owned.is_empty(), "all partitions are still owned by a");
    // Every step keeps ownership disjoint.
    for now in 2..10 {
        assert_eq!(beat(&mut c, &mut a, now, None), NONE);
        assert!(disjoint(&[&a, &b]));
        assert_eq!(beat(&mut c, &mut b, now, None), NONE);
        assert!(disjoint(&[&a, &b]));
    }
    assert_eq!((a.owned.len(), b.owned.len()), (3, 3));
    assert_eq!(a.epoch, b.epoch);
    let described = c.consumer_group_describe(&ConsumerGroupDescribeRequest {
        group_ids: vec!["cg".into()],
        ..Default::default()
    });
    assert_eq!(described.groups[0].group_state, "Stable");
    assert_eq!(described.groups[0].assignor_name, "uniform");
}

#[test]
fn a_leaving_or_silent_member_s_partitions_go_to_the_others() {
    let mut c = Coordinator::new(config(), 1);
    let mut a = join(&mut c, 0, None);
    let mut b = join(&mut c, 0, None);
    let mut d = join(&mut c, 0, None);
    for now in 1..8 {
        for m in [&mut a, &mut b, &mut d] {
            beat(&mut c, m, now, None);
        }
    }
    assert_eq!((a.owned.len(), b.owned.len(), d.owned.len()), (2, 2, 2));
    // b leaves.
    let mut leaving = Member { epoch: -1, ..b };
    assert_eq!(beat(&mut c, &mut leaving, 10, None), NONE);
    for now in 11..15 {
        beat(&mut c, &mut a, now, None);
        beat(&mut c, &mut d, now, None);
    }
    assert_eq!(a.owned.len() + d.owned.len(), 6);
    assert!(disjoint(&[&a, &d]));
    // d falls silent past the session timeout.
    let session = i64::from(config().consumer_session_timeout_ms);
    for now in (20..session + 100).step_by(1_000) {
        beat(&mut c, &mut a, now, None);
        c.tick(now);
    }
    beat(&mut c, &mut a, session + 200, None);
    assert_eq!(a.owned, (0..6).collect());
}

#[test]
fn stale_or_unknown_members_are_refused() {
    let mut c = Coordinator::new(config(), 1);
    let mut a = join(&mut c, 0, None);
    let mut stale = Member {
        id: a.id.clone(),
        epoch: a.epoch + 5,
        owned: BTreeSet::new(),
    };
    assert_eq!(beat(&mut c, &mut stale, 1, None), FENCED_MEMBER_EPOCH);
    let mut ghost = Member {
        id: "ghost".into(),
        epoch: 3,
        owned: BTreeSet::new(),
    };
    assert_eq!(beat(&mut c, &mut ghost, 1, None), UNKNOWN_MEMBER_ID);
    assert_eq!(
        beat(&mut c, &mut a, 1, Some("sticky")),
        UNSUPPORTED_ASSIGNOR
    );
}

#[test]
fn the_range_assignor_gives_contiguous_ranges() {
    let mut c = Coordinator::new(config(), 1);
    let mut a = join(&mut c, 0, Some("range"));
    let mut b = join(&mut c, 0, Some("range"));
    for now in 1..8 {
        beat(&mut c, &mut a, now, Some("range"));
        beat(&mut c, &mut b, now, Some("range"));
    }
    let (first, second) = if a.id < b.id { (&a, &b) } else { (&b, &a) };
    assert_eq!(first.owned, (0..3).collect());
    assert_eq!(second.owned, (3..6).collect());
}

#[test]
fn commits_carry_the_member_epoch_and_classic_joins_are_refused() {
    let mut d = Driver::new();
    let a = join(&mut d.coordinator, 0, None);
    assert_eq!(
        d.commit("cg", &a.id, a.epoch, &[("t", 0, 5)], 1),
        vec![NONE]
    );
    assert_eq!(
        d.commit("cg", &a.id, a.epoch - 1, &[("t", 0, 6)], 1),
        vec![STALE_MEMBER_EPOCH]
    );
    assert_eq!(
        d.commit("cg", "ghost", 1, &[("t", 0, 6)], 1),
        vec![UNKNOWN_MEMBER_ID]
    );
    assert_eq!(d.fetch("cg", "t", 0), 5);
    // OffsetFetch v9: a member names itself and its epoch.
    let fetch_as = |d: &Driver, member: Option<&str>, epoch: i32| {
        let request = OffsetFetchRequest {
            groups: vec![offset_fetch_request::OffsetFetchRequestGroup {
                group_id: "cg".into(),
                member_id: member.map(str::to_string),
                member_epoch: epoch,
                topics: None,
                ..Default::default()
            }],
            ..Default::default()
        };
        let response = d.coordinator.offset_fetch(9, request);
        let group = &response.groups[0];
        let offset = group
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == 0)
            .map(|p| p.committed_offset);
        (group.error_code, offset)
    };
    assert_eq!(fetch_as(&d, Some(&a.id), a.epoch), (NONE, Some(5)));
    assert_eq!(fetch_as(&d, None, -1), (NONE, Some(5)), "an admin client");
    assert_eq!(
        fetch_as(&d, Some(&a.id), a.epoch - 1),
        (STALE_MEMBER_EPOCH, None)
    );
    assert_eq!(fetch_as(&d, Some("ghost"), 1), (UNKNOWN_MEMBER_ID, None));
    let rill_group::Reply::Now(answer) = d.join(5, join_request("cg", "", &range(&["t"])), 2)
    else {
        panic!("refused at once")
    };
    assert_eq!(answer.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let listed = d.coordinator.list_groups(&ListGroupsRequest {
        types_filter: vec!["consumer".into()],
        ..Default::default()
    });
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_state, "Stable");
}

mod random {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Beat(usize),
        Leave(usize),
        Tick(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4usize).prop_map(Op::Beat),
            1 => (0..4usize).prop_map(Op::Leave),
            1 => (0..20_000i64).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Whatever members join, heartbeat, leave or fall silent, no two
        /// members ever own a partition at once; and once the live members
        /// keep heartbeating, they own all partitions between them.
        #[test]
        fn ownership_stays_disjoint_and_converges(ops in proptest::collection::vec(op(), 1..80)) {
            let mut c = Coordinator::new(config(), 3);
            let mut members: Vec<Option<Member>> = (0..4).map(|_| None).collect();
            // When each member last heard from the coordinator. A member
            // that was silent for its rebalance timeout (30 s here, shorter
            // than the session) may have been fenced for not revoking in
            // time; like a real client it then stops using its partitions.
            let mut heard = [0i64; 4];
            let session = 30_000;
            let mut now = 0;
            for op in ops {
                match op {
                    Op::Beat(i) => {
                        let mut m = members[i].take().unwrap_or(Member { id: String::new(), epoch: 0, owned: BTreeSet::new() });
                        let code = beat(&mut c, &mut m, now, None);
                        // A fenced or forgotten member starts again from scratch.
                        members[i] = (code == NONE).then_some(m);
                        heard[i] = now;
                    }
                    Op::Leave(i) => {
                        if let Some(mut m) = members[i].take() {
                            m.epoch = -1;
                            beat(&mut c, &mut m, now, None);
                        }
                    }
                    Op::Tick(ms) => {
                        now += ms;
                        c.tick(now);
                    }
                }
                for (slot, heard) in members.iter_mut().zip(heard) {
                    if now - heard >= session {
                        *slot = None;
                    }
                }
                let live: Vec<&Member> = members.iter().flatten().collect();
                prop_assert!(disjoint(&live));
            }
            // The survivors keep heartbeating while the silent ones' sessions
            // run out (45 s), then a few more rounds.
            for _ in 0..14 {
                now += 5_000;
                c.tick(now);
                for slot in members.iter_mut() {
                    if let Some(m) = slot.as_mut()
                        && beat(&mut c, m, now, None) != NONE
                    {
                        *slot = None;
                    }
                }
                let live: Vec<&Member> = members.iter().flatten().collect();
                prop_assert!(disjoint(&live));
            }
            let live: Vec<&Member> = members.iter().flatten().collect();
            if !live.is_empty() {
                let owned: BTreeSet<i32> = live.iter().flat_map(|m| m.owned.iter().copied()).collect();
                prop_assert_eq!(owned, (0..6).collect::<BTreeSet<i32>>());
            }
        }
    }
}

/// Three topics, two of which a regex subscription matches.
struct Orders;

impl rill_group::TopicLookup for Orders {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        match name {
            "orders-eu" => Some((Uuid([1; 16]), 2)),
            "orders-us" => Some((Uuid([2; 16]), 3)),
            "payments" => Some((Uuid([3; 16]), 4)),
            _ => None,
        }
    }

    fn names(&self) -> Vec<String> {
        ["orders-eu", "orders-us", "payments"]
            .map(str::to_string)
            .to_vec()
    }
}

#[test]
fn a_regex_subscription_takes_every_matching_topic_and_a_bad_regex_is_refused() {
    let mut c = Coordinator::new(config(), 5);
    let client = ClientInfo {
        client_id: "cli",
        client_host: "",
    };
    let join = |c: &mut Coordinator, regex: &str| {
        let request = ConsumerGroupHeartbeatRequest {
            group_id: "rx".into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_regex: Some(regex.into()),
            topic_partitions: Some(Vec::new()),
            ..Default::default()
        };
        c.consumer_group_heartbeat(request, &Orders, client, 0)
    };
    let refused = join(&mut c, "orders-(");
    assert_eq!(refused.error_code, INVALID_REGULAR_EXPRESSION);
    // The whole name must match: "orders-e" alone would not.
    let joined = join(&mut c, "orders-.*");
    assert_eq!(joined.error_code, NONE);
    let assigned: BTreeSet<(u8, i32)> = joined
        .assignment
        .unwrap()
        .topic_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |&p| (t.topic_id.0[0], p)))
        .collect();
    assert_eq!(
        assigned,
        [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
            .into_iter()
            .collect()
    );
    let partial = join(&mut c, "orders-e");
    assert_eq!(partial.error_code, NONE);
    assert!(
        partial
            .assignment
            .is_none_or(|a| a.topic_partitions.iter().all(|t| t.partitions.is_empty())),
        "a regex matching no whole topic name subscribes to nothing"
    );
}

#[test]
fn a_static_member_back_within_its_session_keeps_its_partitions_without_a_rebalance() {
    let mut c = Coordinator::new(config(), 9);
    let client = ClientInfo {
        client_id: "cli",
        client_host: "",
    };
    let beat = |c: &mut Coordinator, member_id: &str, epoch: i32, owned: &[i32], now: i64| {
        let request = ConsumerGroupHeartbeatRequest {
            group_id: "static".into(),
            member_id: member_id.into(),
            member_epoch: epoch,
            instance_id: Some("host-1".into()),
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: (epoch == 0).then(|| vec!["t".into()]),
            topic_partitions: Some(vec![TopicPartitions {
                topic_id: TOPIC_ID,
                partitions: owned.into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        c.consumer_group_heartbeat(request, &lookup, client, now)
    };
    let first = beat(&mut c, "", 0, &[], 0);
    assert_eq!(first.error_code, NONE);
    let id = first.member_id.clone().unwrap();
    let epoch = first.member_epoch;
    let owned: Vec<i32> = first.assignment.unwrap().topic_partitions[0]
        .partitions
        .to_vec();
    assert_eq!(owned.len(), 6);
    assert_eq!(beat(&mut c, &id, epoch, &owned, 100).error_code, NONE);

    // Another process claiming the instance id while it is active is refused.
    assert_eq!(
        beat(&mut c, "", 0, &[], 200).error_code,
        UNRELEASED_INSTANCE_ID
    );

    // The member leaves for a moment (a restart) ...
    let left = beat(&mut c, &id, -2, &owned, 300);
    assert_eq!((left.error_code, left.member_epoch), (NONE, -2));
    // ... and its next incarnation gets the same epoch and partitions at once.
    let back = beat(&mut c, "", 0, &[], 400);
    assert_eq!(back.error_code, NONE);
    assert_ne!(back.member_id.as_deref(), Some(id.as_str()));
    assert_eq!(back.member_epoch, epoch, "no rebalance");
    assert_eq!(
        back.assignment.unwrap().topic_partitions[0].partitions[..],
        owned[..]
    );

    // Left for longer than the session timeout, it is gone for good.
    let back_id = back.member_id.unwrap();
    assert_eq!(beat(&mut c, &back_id, -2, &owned, 500).error_code, NONE);
    let state = |c: &Coordinator| {
        let listed = c.list_groups(&ListGroupsRequest {
            types_filter: vec!["consumer".into()],
            ..Default::default()
        });
        listed.groups[0].group_state.clone()
    };
    c.tick(1_000);
    assert_eq!(state(&c), "Stable", "still reserved within the session");
    c.tick(500 + i64::from(config().consumer_session_timeout_ms) + 1);
    assert_eq!(state(&c), "Empty", "gone after the session timeout");
}
