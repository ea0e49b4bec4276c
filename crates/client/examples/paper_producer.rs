//! The paper's sample producer, line for line:
//!
//! ```text
//! producer = new Producer(...);
//! message = new Message("test message str".getBytes());
//! set = new MessageSet(message);
//! producer.send("topic1", set);
//! ```
//!
//! Run against a broker: `cargo run -p rill-client --example paper_producer -- 127.0.0.1:9092`.
//! With no argument it starts an embedded broker (rill-testkit).

use rill_client::{Message, MessageSet, Producer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (brokers, _embedded) = brokers()?;

    let producer = Producer::connect(&brokers)?;
    let message = Message::new("test message str".as_bytes());
    let set = MessageSet::new(message);
    producer.send("topic1", set)?;

    println!("sent one message set to topic1");
    Ok(())
}

/// The brokers from the command line, or an embedded broker with `topic1`.
fn brokers() -> Result<(String, Option<rill_testkit::Broker>), rill_testkit::Error> {
    if let Some(brokers) = std::env::args().nth(1) {
        return Ok((brokers, None));
    }
    let broker = rill_testkit::Broker::start()?;
    broker.create_topic("topic1", 1)?;
    Ok((broker.bootstrap(), Some(broker)))
}
