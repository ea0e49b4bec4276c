//! ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile and leave in one
//! request; the assignment is computed by the coordinator.

use std::sync::Arc;

use rill_group::ClientInfo;
use rill_protocol::Uuid;
use rill_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use crate::handlers::now_ms;
use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    request: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    client_host: &str,
) -> ConsumerGroupHeartbeatResponse {
    let lookup = |name: &str| {
        let topic = shared.cluster.topic(name)?;
        let partitions = i32::try_from(topic.partitions.len()).ok()?;
        Some((Uuid::from_bytes(topic.id.0), partitions))
    };
    let client = ClientInfo {
        client_id,
        client_host,
    };
    shared
        .groups
        .with(|c| c.consumer_group_heartbeat(request, &lookup, client, now_ms()))
}
