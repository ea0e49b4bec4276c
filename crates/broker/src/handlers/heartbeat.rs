//! Heartbeat: keeps a member's session alive and tells it of rebalances.

use std::sync::Arc;

use rill_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::clock::now_ms;
use crate::server::Shared;

pub fn handle(shared: &Arc<Shared>, request: HeartbeatRequest) -> HeartbeatResponse {
    shared.groups.with(|c| c.heartbeat(request, now_ms()))
}
