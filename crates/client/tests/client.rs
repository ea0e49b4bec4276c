//! The client against a real in-process Rill broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_client::{
    Acks, AdminClient, AsyncConsumer, AsyncProducer, ClientConfig, Compression, Consumer,
    ConsumerConfig, Message, MessageSet, NewTopic, Offset, Producer, ProducerConfig,
    TopicPartition, key_partition,
};
use rill_testkit::Broker;

async fn consume_n(consumer: &AsyncConsumer, n: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while messages.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} messages arrived",
            messages.len()
        );
        messages.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    messages
}

#[test]
fn paper_api_publishes_a_set_and_streams_divide_partitions() {
    let broker = Broker::start().unwrap();
    broker.create_topic("topic1", 6).unwrap();
    let producer = Producer::connect(&broker.bootstrap()).unwrap();
    let set: MessageSet = (0..60)
        .map(|i| {
            Message::with_key(format!("key-{i}"), format!("message {i}")).header("n", i.to_string())
        })
        .collect();
    let written = producer.send("topic1", set).unwrap();
    assert_eq!(written.len(), 60);

    let consumer = Consumer::connect(&broker.bootstrap(), None).unwrap();
    let mut streams = consumer.create_message_streams("topic1", 3).unwrap();
    let mut seen = BTreeMap::new();
    let mut partitions_of_stream: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); 3];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "streams stalled at {}",
            seen.len()
        );
        for (index, stream) in streams.iter_mut().enumerate() {
            if let Some(message) = stream.next_timeout(Duration::from_millis(20)) {
                partitions_of_stream[index].insert(message.partition());
                let n: usize = std::str::from_utf8(message.headers()[0].value.as_ref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(message.payload(), format!("message {n}").as_bytes());
                assert_eq!(
                    message.key().unwrap().as_ref(),
                    format!("key-{n}").as_bytes()
                );
                assert_eq!(message.topic(), "topic1");
                assert!(message.timestamp().is_some());
                assert!(seen.insert(n, message.offset()).is_none(), "{n} twice");
            }
        }
    }
    // Six partitions over three streams: two each, no partition in two streams.
    let all: Vec<i32> = partitions_of_stream.iter().flatten().copied().collect();
    assert_eq!(all.len(), 6, "{partitions_of_stream:?}");
    for partitions in &partitions_of_stream {
        assert_eq!(partitions.len(), 2, "{partitions_of_stream:?}");
    }
    // Each message went where murmur2 of its key says.
    for (i, delivery) in written.iter().enumerate() {
        assert_eq!(
            delivery.partition,
            key_partition(format!("key-{i}").as_bytes(), 6)
        );
        assert_eq!(seen[&i], delivery.offset);
    }
}

#[tokio::test]
async fn async_producer_batches_and_returns_offsets_for_every_codec() {
    let broker = Broker::start().unwrap();
    for (index, compression) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("codec-{index}");
        broker.create_topic(&topic, 2).unwrap();
        let producer = AsyncProducer::connect(ProducerConfig {
            compression,
            ..ProducerConfig::new(&broker.bootstrap())
        })
        .await
        .unwrap();
        let mut futures = Vec::new();
        for i in 0..500 {
            let message = Message::with_key(format!("k{}", i % 7), vec![b'x'; 200]);
            futures.push(producer.send(&topic, message).await.unwrap());
        }
        let mut offsets: HashMap<i32, Vec<i64>> = HashMap::new();
        for (i, future) in futures.into_iter().enumerate() {
            let delivered = future.await.unwrap();
            assert_eq!(
                delivered.partition,
                key_partition(format!("k{}", i % 7).as_bytes(), 2)
            );
            offsets
                .entry(delivered.partition)
                .or_default()
                .push(delivered.offset);
        }
        for list in offsets.values() {
            let expected: Vec<i64> = (0..list.len() as i64).collect();
            assert_eq!(list, &expected, "{compression:?}: offsets not contiguous");
        }
        producer.close().await.unwrap();

        let consumer =
            AsyncConsumer::connect(ConsumerConfig::new(&broker.bootstrap()).from_beginning())
                .await
                .unwrap();
        consumer.assign_topic(&topic).await.unwrap();
        let messages = consume_n(&consumer, 500).await;
        assert_eq!(messages.len(), 500);
        assert!(messages.iter().all(|m| m.payload() == [b'x'; 200]));
        consumer.close().await.unwrap();
    }
}

#[tokio::test]
async fn acks_zero_and_one_deliver() {
    let broker = Broker::start().unwrap();
    broker.create_topic("acks", 1).unwrap();
    for acks in [Acks::None, Acks::Leader] {
        let producer = AsyncProducer::connect(ProducerConfig {
            acks,
            ..ProducerConfig::new(&broker.bootstrap())
        })
        .await
        .unwrap();
        let delivered = producer
            .send_set("acks", MessageSet::new(Message::new("hello")))
            .await
            .unwrap();
        assert_eq!(delivered[0].offset < 0, acks == Acks::None);
        producer.close().await.unwrap();
    }
    let consumer =
        AsyncConsumer::connect(ConsumerConfig::new(&broker.bootstrap()).from_beginning())
            .await
            .unwrap();
    consumer.assign_topic("acks").await.unwrap();
    let messages = consume_n(&consumer, 2).await;
    assert!(messages.iter().all(|m| m.payload() == b"hello"));
}

/// Each message is encoded into its batch by the `send` that queues it: a
/// message refused there (first of a batch or not) fails alone, and the
/// messages around it are delivered in order.
#[tokio::test]
async fn a_message_with_a_negative_timestamp_is_refused_alone() {
    let broker = Broker::start().unwrap();
    broker.create_topic("stamps", 1).unwrap();
    let producer = AsyncProducer::connect(ProducerConfig {
        linger: Duration::from_millis(50),
        ..ProducerConfig::new(&broker.bootstrap())
    })
    .await
    .unwrap();
    let refused = producer
        .send("stamps", Message::new("first, refused").at(-5))
        .await;
    assert!(
        matches!(refused, Err(rill_client::Error::NegativeTimestamp(-5))),
        "{:?}",
        refused.err()
    );
    let stamped = producer
        .send("stamps", Message::new("stamped").at(1_000))
        .await
        .unwrap();
    let refused = producer
        .send("stamps", Message::new("refused").at(-2))
        .await;
    assert!(matches!(
        refused,
        Err(rill_client::Error::NegativeTimestamp(-2))
    ));
    let unstamped = producer
        .send("stamps", Message::new("unstamped"))
        .await
        .unwrap();
    let stamped = stamped.await.unwrap();
    let unstamped = unstamped.await.unwrap();
    assert_eq!((stamped.offset, unstamped.offset), (0, 1));
    assert_eq!(stamped.timestamp, 1_000);
    producer.close().await.unwrap();

    let consumer =
        AsyncConsumer::connect(ConsumerConfig::new(&broker.bootstrap()).from_beginning())
            .await
            .unwrap();
    consumer.assign_topic("stamps").await.unwrap();
    let messages = consume_n(&consumer, 2).await;
    let got: Vec<(&[u8], Option<i64>)> = messages
        .iter()
        .map(|message| (message.payload(), message.timestamp()))
        .collect();
    assert_eq!(got[0], (&b"stamped"[..], Some(1_000)));
    assert_eq!(got[1].0, b"unstamped");
    assert!(got[1].1.is_some_and(|timestamp| timestamp >= 1_000));
}

#[tokio::test]
async fn seek_rewinds_to_offsets_timestamps_and_ends_and_pause_holds_back() {
    let broker = Broker::start().unwrap();
    broker.create_topic("seek", 1).unwrap();
    let producer = AsyncProducer::connect(ProducerConfig::new(&broker.bootstrap()))
        .await
        .unwrap();
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let set: MessageSet = (0..10)
        .map(|i| Message::new(format!("m{i}")).at(base + i * 1000))
        .collect();
    producer.send_set("seek", set).await.unwrap();

    let consumer =
        AsyncConsumer::connect(ConsumerConfig::new(&broker.bootstrap()).from_beginning())
            .await
            .unwrap();
    let tp = TopicPartition::new("seek", 0);
    consumer.assign(vec![tp.clone()]).await.unwrap();
    assert_eq!(consume_n(&consumer, 10).await[0].offset(), 0);

    consumer.seek(&tp, Offset::At(7)).unwrap();
    assert_eq!(consume_n(&consumer, 1).await[0].payload(), b"m7");
    consumer.seek(&tp, Offset::Timestamp(base + 4500)).unwrap();
    assert_eq!(consume_n(&consumer, 1).await[0].payload(), b"m5");
    consumer.seek(&tp, Offset::Beginning).unwrap();
    assert_eq!(consume_n(&consumer, 1).await[0].payload(), b"m0");

    consumer.seek(&tp, Offset::End).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), 10);
    consumer.pause(std::slice::from_ref(&tp));
    producer
        .send_set("seek", MessageSet::new(Message::new("after")))
        .await
        .unwrap();
    assert!(
        consumer
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    consumer.resume(std::slice::from_ref(&tp));
    let messages = consume_n(&consumer, 1).await;
    assert_eq!(messages[0].payload(), b"after");
    assert_eq!(messages[0].offset(), 10);
}

#[tokio::test]
async fn admin_manages_topics_configs_and_offsets() {
    let broker = Broker::start().unwrap();
    let admin = AdminClient::connect(ClientConfig::new(&broker.bootstrap()))
        .await
        .unwrap();
    admin
        .create_topics(vec![
            NewTopic::new("admin-a", 3).config("retention.ms", "60000"),
        ])
        .await
        .unwrap();
    let error = admin
        .create_topics(vec![NewTopic::new("admin-a", 3)])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(rill_client::code::TOPIC_ALREADY_EXISTS));

    let names: Vec<String> = admin
        .list_topics()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert!(names.contains(&"admin-a".to_string()));
    assert_eq!(
        admin
            .describe_topic("admin-a")
            .await
            .unwrap()
            .partitions
            .len(),
        3
    );
    let retention = |configs: Vec<rill_client::ConfigEntry>| {
        configs
            .into_iter()
            .find(|c| c.name == "retention.ms")
            .and_then(|c| c.value)
    };
    assert_eq!(
        retention(admin.describe_configs(Some("admin-a"), None).await.unwrap()).as_deref(),
        Some("60000")
    );
    admin
        .alter_topic_configs(
            "admin-a",
            vec![("retention.ms".into(), Some("120000".into()))],
        )
        .await
        .unwrap();
    assert_eq!(
        retention(admin.describe_configs(Some("admin-a"), None).await.unwrap()).as_deref(),
        Some("120000")
    );

    let producer = AsyncProducer::connect(ProducerConfig::new(&broker.bootstrap()))
        .await
        .unwrap();
    // One batch per message: Rill's ListOffsets answers a timestamp with the
    // base offset of the batch holding it.
    for i in 0..5 {
        let message = Message::new("x").to_partition(1).at(1000 + i);
        producer
            .send_set("admin-a", MessageSet::new(message))
            .await
            .unwrap();
    }
    let ends = admin.list_offsets("admin-a", Offset::End).await.unwrap();
    assert_eq!(ends, BTreeMap::from([(0, 0), (1, 5), (2, 0)]));
    let at = admin
        .list_offsets("admin-a", Offset::Timestamp(1003))
        .await
        .unwrap();
    assert_eq!(at[&1], 3);

    admin.create_partitions("admin-a", 4).await.unwrap();
    assert_eq!(
        admin
            .describe_topic("admin-a")
            .await
            .unwrap()
            .partitions
            .len(),
        4
    );
    admin.delete_topics(&["admin-a".to_string()]).await.unwrap();
    assert!(matches!(
        admin.describe_topic("admin-a").await,
        Err(rill_client::Error::UnknownTopic(_))
    ));
    assert!(matches!(
        admin.delete_topics(&["admin-a".to_string()]).await,
        Err(rill_client::Error::UnknownTopic(_))
    ));
}

/// Sends every message to the last partition.
struct LastPartition;

impl rill_client::Partitioner for LastPartition {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, partition_count: i32) -> i32 {
        partition_count - 1
    }
}

#[tokio::test]
async fn custom_partitioner_and_a_small_buffer_that_makes_send_wait() {
    let broker = Broker::start().unwrap();
    broker.create_topic("small", 3).unwrap();
    // Room for about four messages: `send` must wait for answers to free it.
    let producer = AsyncProducer::connect(ProducerConfig {
        buffer_memory: 2048,
        max_message_size: 1024,
        partitioner: std::sync::Arc::new(LastPartition),
        ..ProducerConfig::new(&broker.bootstrap())
    })
    .await
    .unwrap();
    let mut futures = Vec::new();
    for i in 0..200 {
        let message = Message::with_key(format!("k{i}"), vec![b'v'; 400]);
        futures.push(producer.send("small", message).await.unwrap());
    }
    for (i, future) in futures.into_iter().enumerate() {
        let delivered = future.await.unwrap();
        assert_eq!(delivered.partition, 2);
        assert_eq!(delivered.offset, i as i64);
    }
    let too_big = producer
        .send("small", Message::new(vec![0u8; 2000]))
        .await
        .err()
        .unwrap();
    assert!(matches!(
        too_big,
        rill_client::Error::MessageTooLarge { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_carry_on_across_a_broker_restart() {
    let mut broker = Broker::start().unwrap();
    broker.create_topic("restart", 1).unwrap();
    let producer = AsyncProducer::connect(ProducerConfig::new(&broker.bootstrap()))
        .await
        .unwrap();
    let consumer =
        AsyncConsumer::connect(ConsumerConfig::new(&broker.bootstrap()).from_beginning())
            .await
            .unwrap();
    consumer.assign_topic("restart").await.unwrap();
    producer
        .send_set("restart", MessageSet::new(Message::new("before")))
        .await
        .unwrap();
    assert_eq!(consume_n(&consumer, 1).await[0].payload(), b"before");

    tokio::task::block_in_place(|| broker.restart()).unwrap();

    // The old connections are dead: both sides reconnect and retry.
    let delivered = producer
        .send_set("restart", MessageSet::new(Message::new("after")))
        .await
        .unwrap();
    assert_eq!(delivered[0].offset, 1);
    let messages = consume_n(&consumer, 1).await;
    assert_eq!(messages[0].payload(), b"after");
    assert_eq!(messages[0].offset(), 1);
}

#[tokio::test]
async fn producer_sees_new_partitions_once_its_metadata_ages() {
    let broker = Broker::start().unwrap();
    broker.create_topic("grow", 1).unwrap();
    let mut config = ProducerConfig::new(&broker.bootstrap());
    config.client.metadata_max_age = Duration::from_millis(100);
    let producer = AsyncProducer::connect(config).await.unwrap();
    producer
        .send_set("grow", MessageSet::new(Message::new("a")))
        .await
        .unwrap();
    let admin = AdminClient::connect(ClientConfig::new(&broker.bootstrap()))
        .await
        .unwrap();
    admin.create_partitions("grow", 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let delivered = producer
        .send_set("grow", MessageSet::new(Message::new("b").to_partition(1)))
        .await
        .unwrap();
    assert_eq!((delivered[0].partition, delivered[0].offset), (1, 0));
}

#[test]
fn sending_to_a_new_topic_creates_it_unless_the_producer_says_not_to() {
    let broker = Broker::start().unwrap();
    // As Kafka producers do: the first send asks the broker to create the
    // topic (the broker's auto_create_topics_enable is on by default).
    let producer = Producer::connect(&broker.bootstrap()).unwrap();
    let written = producer
        .send("born-on-send", vec![Message::new("first")].into())
        .unwrap();
    assert_eq!(written[0].offset, 0);

    let config = ProducerConfig {
        auto_create_topics: false,
        ..ProducerConfig::new(&broker.bootstrap())
    };
    let producer = Producer::new(config).unwrap();
    let started = std::time::Instant::now();
    let refused = producer.send("never-created", vec![Message::new("x")].into());
    assert!(
        matches!(refused, Err(rill_client::Error::UnknownTopic(ref topic)) if topic == "never-created"),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused topic fails at once"
    );
}

/// A producer with one-message batches and several of them on the wire at
/// once: every message lands at the offset of its place in the send order,
/// with and without idempotence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_together_keep_their_order() {
    let broker = Broker::start().unwrap();
    for (topic, acks) in [("inflight-all", Acks::All), ("inflight-one", Acks::Leader)] {
        broker.create_topic(topic, 1).unwrap();
        let producer = AsyncProducer::connect(ProducerConfig {
            acks,
            batch_size: 1,
            linger: Duration::ZERO,
            max_in_flight: 5,
            ..ProducerConfig::new(&broker.bootstrap())
        })
        .await
        .unwrap();
        let mut futures = Vec::new();
        for i in 0..2000 {
            futures.push(
                producer
                    .send(topic, Message::new(i.to_string()))
                    .await
                    .unwrap(),
            );
        }
        for (i, future) in futures.into_iter().enumerate() {
            assert_eq!(future.await.unwrap().offset, i as i64, "{topic}");
        }
        let consumer =
            AsyncConsumer::connect(ConsumerConfig::new(&broker.bootstrap()).from_beginning())
                .await
                .unwrap();
        consumer.assign_topic(topic).await.unwrap();
        for (i, message) in consume_n(&consumer, 2000).await.iter().enumerate() {
            assert_eq!(message.payload(), i.to_string().as_bytes(), "{topic}");
        }
    }
}

/// Keyless messages stick to a partition until its batch is sent, whether
/// the batch filled or its linger ran out: a producer slower than its
/// batch size still spreads over every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_messages_move_on_when_a_batch_goes_out_by_linger() {
    let broker = Broker::start().unwrap();
    broker.create_topic("spread", 4).unwrap();
    let producer = AsyncProducer::connect(ProducerConfig {
        linger: Duration::from_millis(1),
        ..ProducerConfig::new(&broker.bootstrap())
    })
    .await
    .unwrap();
    let mut partitions = BTreeSet::new();
    for i in 0..40 {
        // Each message waits for its delivery: every batch holds one and
        // goes out by linger, far below the batch size.
        let sent = producer.send("spread", Message::new(i.to_string())).await;
        partitions.insert(sent.unwrap().await.unwrap().partition);
    }
    assert!(partitions.len() >= 3, "40 batches went to {partitions:?}");
}

/// An idempotent producer whose batch is refused for good (a keyless
/// message on a compacted topic) has a hole in its sequence: the batches
/// behind it are refused as out of order, and the producer must take a new
/// producer id and resend them, in order, rather than fail them or stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_good_resets_the_idempotent_producer() {
    let broker = Broker::start().unwrap();
    let admin = AdminClient::connect(ClientConfig::new(&broker.bootstrap()))
        .await
        .unwrap();
    admin
        .create_topics(vec![
            NewTopic::new("hole", 1).config("cleanup.policy", "compact"),
        ])
        .await
        .unwrap();
    let producer = AsyncProducer::connect(ProducerConfig {
        batch_size: 1,
        linger: Duration::ZERO,
        max_in_flight: 5,
        ..ProducerConfig::new(&broker.bootstrap())
    })
    .await
    .unwrap();
    let keyed = |i: usize| Message::with_key(format!("k{i}"), format!("v{i}"));
    let mut futures = vec![producer.send("hole", keyed(0)).await.unwrap()];
    let refused = producer.send("hole", Message::new("no key")).await.unwrap();
    for i in 1..=40 {
        futures.push(producer.send("hole", keyed(i)).await.unwrap());
    }
    let error = refused.await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(rill_client::code::INVALID_RECORD),
        "{error}"
    );
    let mut offsets = Vec::new();
    for future in futures {
        offsets.push(future.await.unwrap().offset);
    }
    assert!(
        offsets.windows(2).all(|pair| pair[0] < pair[1]),
        "{offsets:?}"
    );
    // And it goes on working after the reset.
    let after = producer
        .send_set("hole", MessageSet::new(keyed(41)))
        .await
        .unwrap();
    assert!(after[0].offset > *offsets.last().unwrap());

    let consumer =
        AsyncConsumer::connect(ConsumerConfig::new(&broker.bootstrap()).from_beginning())
            .await
            .unwrap();
    consumer.assign_topic("hole").await.unwrap();
    let keys: Vec<Vec<u8>> = consume_n(&consumer, 42)
        .await
        .iter()
        .map(|message| message.key().unwrap().to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = (0..=41).map(|i| format!("k{i}").into_bytes()).collect();
    assert_eq!(keys, expected);
}
