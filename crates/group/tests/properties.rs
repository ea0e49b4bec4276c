//! Random sequences of group requests and clock steps: the coordinator never
//! panics, answers every delayed request exactly once, never lowers a
//! generation, and once every client falls silent the group empties and
//! every waiting request has been answered. (Generations only grow while the
//! group exists: an empty group without offsets is deleted and a new one
//! starts again.)

mod common;

use common::*;
use proptest::prelude::*;
use rill_group::Reply;
use rill_group::error_code::*;
use rill_protocol::messages::{HeartbeatRequest, LeaveGroupRequest};

const G: &str = "g";
const CLIENTS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Join {
        client: usize,
        version: i16,
        topics: usize,
        with_instance: bool,
    },
    Sync {
        client: usize,
    },
    Heartbeat {
        client: usize,
    },
    Leave {
        client: usize,
    },
    Commit {
        client: usize,
        offset: i64,
    },
    Tick {
        ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        (
            client.clone(),
            prop_oneof![Just(3i16), Just(5i16)],
            1..3usize,
            any::<bool>()
        )
            .prop_map(|(client, version, topics, with_instance)| Op::Join {
                client,
                version,
                topics,
                with_instance
            }),
        client.clone().prop_map(|client| Op::Sync { client }),
        client.clone().prop_map(|client| Op::Heartbeat { client }),
        client.clone().prop_map(|client| Op::Leave { client }),
        (client, 0..1000i64).prop_map(|(client, offset)| Op::Commit { client, offset }),
        (0..15_000i64).prop_map(|ms| Op::Tick { ms }),
    ]
}

/// What one client believes about its membership.
#[derive(Debug, Clone, Default)]
struct ClientView {
    member_id: String,
    generation: i32,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_sequence_keeps_the_coordinator_consistent(ops in proptest::collection::vec(op(), 1..60)) {
        let mut d = Driver::new();
        let mut now = 0i64;
        let mut clients = vec![ClientView::default(); CLIENTS];
        let mut pending_joins = Vec::new();
        let mut pending_syncs = Vec::new();
        let mut highest_generation = 0;
        let mut joins = 0;
        for op in ops {
            match op {
                Op::Join { client, version, topics, with_instance } => {
                joins += 1;
                    let names: Vec<&str> = ["t", "u"][..topics].to_vec();
                    let mut request = join_request(G, &clients[client].member_id, &range(&names));
                    if with_instance && version >= 5 {
                        request.group_instance_id = Some(format!("i{client}"));
                    }
                    match d.join(version, request, now) {
                        Reply::Now(answer) => {
                            if answer.error_code == NONE || answer.error_code == MEMBER_ID_REQUIRED {
                                clients[client].member_id = answer.member_id.clone();
                                clients[client].generation = answer.generation_id;
                            }
                            if answer.error_code == UNKNOWN_MEMBER_ID || answer.error_code == FENCED_INSTANCE_ID {
                                clients[client] = ClientView::default();
                            }
                        }
                        Reply::Pending(token) => pending_joins.push((client, token)),
                    }
                }
                Op::Sync { client } => {
                    let view = clients[client].clone();
                    let reply = d.sync(G, &view.member_id, view.generation, &[(&view.member_id, b"x")], now);
                    if let Reply::Pending(token) = reply {
                        pending_syncs.push(token);
                    }
                }
                Op::Heartbeat { client } => {
                    let view = &clients[client];
                    let request = HeartbeatRequest {
                        group_id: G.into(),
                        generation_id: view.generation,
                        member_id: view.member_id.clone(),
                        ..Default::default()
                    };
                    d.coordinator.heartbeat(request, now);
                    d.drain();
                }
                Op::Leave { client } => {
                    let request = LeaveGroupRequest {
                        group_id: G.into(),
                        member_id: clients[client].member_id.clone(),
                        ..Default::default()
                    };
                    d.coordinator.leave_group(1, request, now);
                    d.drain();
                    clients[client] = ClientView::default();
                }
                Op::Commit { client, offset } => {
                    let view = clients[client].clone();
                    d.commit(G, &view.member_id, view.generation, &[("t", 0, offset)], now);
                }
                Op::Tick { ms } => {
                    now += ms;
                    d.tick(now);
                }
            }
            // Answers that arrived: the client learns its id and generation.
            let mut still_pending = Vec::new();
            for (client, token) in pending_joins {
                let Some(answer) = d.joins.get(&token) else {
                    still_pending.push((client, token));
                    continue;
                };
                if answer.error_code == NONE {
                    prop_assert!(answer.generation_id >= highest_generation);
                    highest_generation = answer.generation_id;
                    clients[client].member_id = answer.member_id.clone();
                    clients[client].generation = answer.generation_id;
                }
            }
            pending_joins = still_pending;
            pending_syncs.retain(|token| !d.syncs.contains_key(token));
            let (state, members) = d.state(G);
            // A v3 client that joins again before its first answer arrives
            // adds a second member (what KIP-394's MEMBER_ID_REQUIRED fixes
            // from v4): members are bounded by joins, not by clients.
            prop_assert!(members <= joins);
            if state == "Dead" {
                // A group that emptied and had no offsets was deleted; a new
                // one starts again at generation 1.
                highest_generation = 0;
            }
        }
        // Everyone falls silent: sessions and rebalances time out.
        for _ in 0..4 {
            now += i64::from(REBALANCE_MS) + i64::from(SESSION_MS) + 1;
            d.tick(now);
        }
        for (_, token) in &pending_joins {
            prop_assert!(d.joins.contains_key(token), "a JoinGroup was never answered");
        }
        for token in &pending_syncs {
            prop_assert!(d.syncs.contains_key(token), "a SyncGroup was never answered");
        }
        let (state, members) = d.state(G);
        prop_assert_eq!(members, 0);
        prop_assert!(state == "Empty" || state == "Dead", "{}", state);
    }
}
