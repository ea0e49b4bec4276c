//! ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile and leave in one
//! request; the assignment is computed by the coordinator.

use std::sync::Arc;

use rill_group::{ClientInfo, TopicLookup};
use rill_protocol::Uuid;
use rill_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use crate::clock::now_ms;
use crate::cluster::Cluster;
use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    request: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    client_host: &str,
) -> ConsumerGroupHeartbeatResponse {
    let lookup = Topics(&shared.cluster);
    let client = ClientInfo {
        client_id,
        client_host,
    };
    shared
        .groups
        .with(|c| c.consumer_group_heartbeat(request, &lookup, client, now_ms()))
}

/// The cluster's topics as the coordinator looks them up.
struct Topics<'a>(&'a Cluster);

impl TopicLookup for Topics<'_> {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        let topic = self.0.topic(name)?;
        let partitions = i32::try_from(topic.partitions.len()).ok()?;
        Some((Uuid::from_bytes(topic.id.0), partitions))
    }

    fn names(&self) -> Vec<String> {
        self.0
            .topics()
            .iter()
            .filter(|topic| !topic.internal)
            .map(|topic| topic.name.clone())
            .collect()
    }
}
