//! Consumer groups through the client against a real in-process broker.

use std::collections::BTreeMap;
use std::time::Duration;

use rill_client::{
    Assignor, AsyncConsumer, AsyncProducer, ConsumerConfig, GroupProtocol, Message, MessageSet,
    ProducerConfig,
};
use rill_testkit::Broker;

fn group_config(broker: &Broker, group: &str, assignor: Assignor) -> ConsumerConfig {
    ConsumerConfig {
        heartbeat_interval: Duration::from_millis(100),
        auto_commit_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        rebalance_timeout: Duration::from_secs(5),
        assignors: vec![assignor],
        ..ConsumerConfig::new(&broker.bootstrap())
            .group(group)
            .from_beginning()
    }
}

async fn produce(broker: &Broker, topic: &str, range: std::ops::Range<usize>) {
    let producer = AsyncProducer::connect(ProducerConfig::new(&broker.bootstrap()))
        .await
        .unwrap();
    let set: MessageSet = range
        .map(|i| Message::with_key(format!("k{i}"), i.to_string()))
        .collect();
    producer.send_set(topic, set).await.unwrap();
    producer.close().await.unwrap();
}

/// Polls every consumer until `n` messages came in all; returns message
/// number -> how many times it was seen.
async fn drain(consumers: &[&AsyncConsumer], n: usize) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.values().sum::<usize>() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} arrived",
            seen.len()
        );
        for consumer in consumers {
            for message in consumer.poll(Duration::from_millis(50)).await.unwrap() {
                let i: usize = std::str::from_utf8(message.payload())
                    .unwrap()
                    .parse()
                    .unwrap();
                *seen.entry(i).or_insert(0) += 1;
            }
        }
    }
    seen
}

async fn two_members_split_then_one_takes_over(assignor: Assignor, protocol: GroupProtocol) {
    let broker = Broker::start().unwrap();
    broker.create_topic("g", 6).unwrap();
    let config = || ConsumerConfig {
        group_protocol: protocol,
        ..group_config(&broker, "grp", assignor)
    };
    let a = AsyncConsumer::connect(config()).await.unwrap();
    let b = AsyncConsumer::connect(config()).await.unwrap();
    let (joined_a, joined_b) = tokio::join!(a.subscribe(&["g"]), b.subscribe(&["g"]));
    joined_a.unwrap();
    joined_b.unwrap();
    // Wait until the group settled with both members holding partitions.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while a.assignment().len() + b.assignment().len() != 6
        || a.assignment().is_empty()
        || b.assignment().is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no balanced assignment: {:?} / {:?}",
            a.assignment(),
            b.assignment()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.assignment().len(), 3);
    assert!(a.assignment().iter().all(|tp| !b.assignment().contains(tp)));
    if protocol == GroupProtocol::Consumer {
        // The group really is a KIP-848 group: a classic member is refused.
        let classic = AsyncConsumer::connect(group_config(&broker, "grp", assignor))
            .await
            .unwrap();
        let refused = classic.subscribe(&["g"]).await;
        assert!(
            matches!(
                refused,
                Err(rill_client::Error::Kafka {
                    code: rill_client::code::INCONSISTENT_GROUP_PROTOCOL,
                    ..
                })
            ),
            "{refused:?}"
        );
    }

    produce(&broker, "g", 0..300).await;
    let seen = drain(&[&a, &b], 300).await;
    assert_eq!(seen.len(), 300);
    assert!(
        seen.values().all(|&count| count == 1),
        "a message came twice"
    );
    a.commit().await.unwrap();
    b.commit().await.unwrap();

    // "a" leaves: "b" takes every partition and resumes from the commits.
    a.close().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while b.assignment().len() != 6 {
        assert!(tokio::time::Instant::now() < deadline, "no takeover");
        assert!(b.poll(Duration::from_millis(50)).await.unwrap().is_empty());
    }
    produce(&broker, "g", 300..400).await;
    let seen = drain(&[&b], 100).await;
    assert!(
        seen.keys().all(|&i| i >= 300),
        "committed messages came again"
    );
    b.close().await.unwrap();
}

#[tokio::test]
async fn range_group_splits_partitions_and_rebalances() {
    two_members_split_then_one_takes_over(Assignor::Range, GroupProtocol::Classic).await;
}

#[tokio::test]
async fn cooperative_sticky_group_splits_partitions_and_rebalances() {
    two_members_split_then_one_takes_over(Assignor::CooperativeSticky, GroupProtocol::Classic)
        .await;
}

#[tokio::test]
async fn kip848_group_splits_partitions_and_hands_them_over() {
    // The coordinator assigns; the assignor field is ignored.
    two_members_split_then_one_takes_over(Assignor::Range, GroupProtocol::Consumer).await;
}

async fn added_partitions_are_assigned(assignor: Assignor) {
    let broker = Broker::start().unwrap();
    broker.create_topic("grow", 2).unwrap();
    let config = |broker: &Broker| {
        let mut config = group_config(broker, "growers", assignor);
        // The leader looks for new partitions at every metadata refresh.
        config.client.metadata_max_age = Duration::from_millis(300);
        config
    };
    let a = AsyncConsumer::connect(config(&broker)).await.unwrap();
    let b = AsyncConsumer::connect(config(&broker)).await.unwrap();
    let (joined_a, joined_b) = tokio::join!(a.subscribe(&["grow"]), b.subscribe(&["grow"]));
    joined_a.unwrap();
    joined_b.unwrap();
    let admin =
        rill_client::AdminClient::connect(rill_client::ClientConfig::new(&broker.bootstrap()))
            .await
            .unwrap();
    admin.create_partitions("grow", 4).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut all: Vec<i32> = a
            .assignment()
            .iter()
            .chain(b.assignment().iter())
            .map(|tp| tp.partition)
            .collect();
        all.sort();
        if all == [0, 1, 2, 3] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions 2 and 3 were never assigned: {all:?}"
        );
        // Polling drives nothing here (membership runs in its own task);
        // it just passes the time.
        let _ = a.poll(Duration::from_millis(50)).await;
        let _ = b.poll(Duration::from_millis(50)).await;
    }
    // Messages on the new partitions reach the group.
    produce(&broker, "grow", 0..200).await;
    let seen = drain(&[&a, &b], 200).await;
    assert_eq!(seen.len(), 200);
}

#[tokio::test]
async fn range_group_picks_up_added_partitions() {
    added_partitions_are_assigned(Assignor::Range).await;
}

#[tokio::test]
async fn cooperative_sticky_group_picks_up_added_partitions() {
    added_partitions_are_assigned(Assignor::CooperativeSticky).await;
}
