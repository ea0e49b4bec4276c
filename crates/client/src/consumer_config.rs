//! The consumer's settings.

use std::time::Duration;

use crate::assignor::Assignor;
use crate::client::ClientConfig;
use crate::requests::Offset;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// The consumer group; `None` consumes alone (assign mode).
    pub group_id: Option<String>,
    /// Where to start when there is no committed offset, or the position
    /// fell off the log: `Offset::Beginning` or `Offset::End` (Kafka's
    /// `auto.offset.reset`, default latest).
    pub auto_offset_reset: Offset,
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// How long the broker may hold a fetch waiting for data.
    pub fetch_max_wait: Duration,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub partition_max_bytes: i32,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Assignors offered to the group, preferred first (classic protocol).
    pub assignors: Vec<Assignor>,
    /// Which group protocol to speak (Kafka's `group.protocol`).
    pub group_protocol: GroupProtocol,
    /// With [`GroupProtocol::Consumer`], the coordinator's assignor to use
    /// (`uniform` or `range`); `None` lets the broker choose (Kafka's
    /// `group.remote.assignor`).
    pub group_remote_assignor: Option<String>,
}

/// The consumer group protocol (Kafka's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup with a client-side assignor, rebalances
    /// stopping the group (eager) or not (cooperative).
    #[default]
    Classic,
    /// KIP-848: the coordinator assigns, members only heartbeat
    /// (ConsumerGroupHeartbeat) and reconcile; no group-wide pause.
    Consumer,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            auto_offset_reset: Offset::End,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 16 << 20,
            partition_max_bytes: 1 << 20,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
        }
    }
}

impl ConsumerConfig {
    pub fn new(brokers: &str) -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::new(brokers),
            ..ConsumerConfig::default()
        }
    }

    pub fn group(mut self, group_id: &str) -> ConsumerConfig {
        self.group_id = Some(group_id.to_string());
        self
    }

    pub fn from_beginning(mut self) -> ConsumerConfig {
        self.auto_offset_reset = Offset::Beginning;
        self
    }
}
