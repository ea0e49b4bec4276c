//! Producer and consumer throughput of the Rill client: 200-byte messages,
//! one partition, acks=1, no compression (the settings bench/
//! client-vs-librdkafka.sh gives librdkafka). A program that prints numbers.
//!
//!   cargo run --release -p rill-client --example client_bench -- BROKERS TOPIC [MESSAGES]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_client::{
    Acks, AsyncConsumer, AsyncProducer, ConsumerConfig, Message, ProducerConfig, TopicPartition,
};

/// Deliveries awaited at once; the producer's buffer memory bounds the rest.
const IN_FLIGHT_MAX: usize = 200_000;
const MESSAGE_BYTES: usize = 200;

#[tokio::main]
async fn main() -> Result<(), rill_client::Error> {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(topic)) = (args.next(), args.next()) else {
        eprintln!("usage: client_bench BROKERS TOPIC [MESSAGES]");
        std::process::exit(2);
    };
    let messages: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000);
    let value = Bytes::from(vec![b'x'; MESSAGE_BYTES]);

    let producer = AsyncProducer::connect(ProducerConfig {
        acks: Acks::Leader,
        ..ProducerConfig::new(&brokers)
    })
    .await?;
    let started = Instant::now();
    let mut pending = VecDeque::with_capacity(IN_FLIGHT_MAX);
    for _ in 0..messages {
        let message = Message::new(value.clone()).to_partition(0);
        pending.push_back(producer.send(&topic, message).await?);
        if pending.len() >= IN_FLIGHT_MAX
            && let Some(oldest) = pending.pop_front()
        {
            oldest.await?;
        }
    }
    for delivery in pending {
        delivery.await?;
    }
    report("produce, acks=1, rill-client", messages, started.elapsed());
    producer.close().await?;

    let consumer = AsyncConsumer::connect(ConsumerConfig::new(&brokers).from_beginning()).await?;
    consumer
        .assign(vec![TopicPartition::new(&topic, 0)])
        .await?;
    let started = Instant::now();
    let mut received = 0;
    while received < messages {
        received += consumer.poll(Duration::from_secs(5)).await?.len();
    }
    report(
        "consume, one consumer, rill-client",
        received,
        started.elapsed(),
    );
    consumer.close().await
}

fn report(what: &str, messages: usize, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{what}: {:.0} msg/s  {:.1} MB/s  ({seconds:.2} s)",
        messages as f64 / seconds,
        (messages * MESSAGE_BYTES) as f64 / seconds / 1e6
    );
}
