//! Brokers as the metadata records them (KIP-631): who registered, where
//! clients reach them, and whether they may lead partitions.

use serde::{Deserialize, Serialize};

use crate::id::Uuid;

/// An address a broker serves clients on (Kafka's `BrokerEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The listener's name, `PLAINTEXT` for Rill's one listener today.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's security protocol id: 0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT,
    /// 3 SASL_SSL.
    pub security_protocol: i16,
}

/// A broker's current registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    /// Random per process start: tells a restarted broker from a duplicate.
    pub incarnation: Uuid,
    /// The broker epoch of this registration; changes to it must name it.
    pub epoch: i64,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not offered to clients. A new
    /// registration starts fenced.
    pub fenced: bool,
    /// The broker asked to stop and is handing over its partitions (KIP-841).
    pub in_controlled_shutdown: bool,
}
