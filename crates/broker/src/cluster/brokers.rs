//! The cluster as clients and operators are told of it: the brokers they
//! may use, the active controller, and the controller quorum.

use rill_controller::describe::QuorumInfo;

use super::Cluster;

impl Cluster {
    /// The brokers clients are told of: the registered, unfenced ones, by
    /// id, with their host and port. A node whose broker never registered
    /// (the in-process harness) is told of itself alone.
    pub fn live_brokers(&self, host: &str, port: i32) -> Vec<(i32, String, i32, Option<String>)> {
        let image = self.quorum.node.image();
        let me = self.config.node_id;
        if image.broker(me).is_none() {
            return vec![(me, host.to_string(), port, None)];
        }
        image
            .brokers()
            .filter(|broker| !broker.fenced)
            .filter_map(|broker| {
                let listener = broker.listeners.first()?;
                let port = i32::from(listener.port);
                Some((broker.id, listener.host.clone(), port, broker.rack.clone()))
            })
            .collect()
    }

    /// The controller quorum as its leader sees it.
    pub async fn describe_quorum(&self) -> QuorumInfo {
        self.quorum.describe().await
    }

    /// The controller quorum as this node sees it (no network call).
    pub fn local_quorum(&self) -> QuorumInfo {
        self.quorum.node.describe()
    }

    /// The quorum's voters and where their controller listeners are
    /// (none for a quorum of one, which has no listener).
    pub fn controller_endpoints(&self) -> Vec<(i32, String, u16)> {
        self.config.voter_endpoints()
    }

    /// The node leading the controller quorum, as far as this node knows;
    /// -1 (Kafka's "unknown") while there is none, as during an election.
    pub fn active_controller(&self) -> i32 {
        self.quorum
            .node
            .leader()
            .and_then(|leader| i32::try_from(leader).ok())
            .unwrap_or(-1)
    }
}
