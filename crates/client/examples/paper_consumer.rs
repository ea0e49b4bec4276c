//! The paper's sample consumer, line for line:
//!
//! ```text
//! streams[] = Consumer.createMessageStreams("topic1", 1)
//! for (message : streams[0]) {
//!     bytes = message.payload();
//!     // do something with the bytes
//! }
//! ```
//!
//! Run against a broker: `cargo run -p rill-client --example paper_consumer -- 127.0.0.1:9092`
//! (it never ends, as the paper's streams never do). With no argument it
//! starts an embedded broker, publishes three messages, and stops after
//! reading them, so it can run in CI.

use rill_client::{Consumer, Message, MessageSet, Producer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::args().nth(1);
    let embedded = match brokers {
        Some(_) => None,
        None => Some(embedded_broker_with_messages()?),
    };
    let brokers =
        brokers.unwrap_or_else(|| embedded.as_ref().map(|b| b.bootstrap()).unwrap_or_default());
    let consumer = Consumer::connect(&brokers, None)?;

    let mut streams = consumer.create_message_streams("topic1", 1)?;
    for message in &mut streams[0] {
        let bytes = message.payload();
        // do something with the bytes
        println!("{}", String::from_utf8_lossy(bytes));
        if embedded.is_some() && message.offset() == 2 {
            break;
        }
    }
    Ok(())
}

fn embedded_broker_with_messages() -> Result<rill_testkit::Broker, Box<dyn std::error::Error>> {
    let broker = rill_testkit::Broker::start()?;
    broker.create_topic("topic1", 1)?;
    let producer = Producer::connect(&broker.bootstrap())?;
    let set: MessageSet = ["first", "second", "third"]
        .into_iter()
        .map(Message::new)
        .collect();
    producer.send("topic1", set)?;
    Ok(broker)
}
