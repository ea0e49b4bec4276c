//! LeaveGroup: removes members (v3+: a batch) and rebalances at once.

use std::sync::Arc;

use rill_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::clock::now_ms;
use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    shared
        .groups
        .with(|c| c.leave_group(version, request, now_ms()))
}
