//! JoinGroup: answered when the group's rebalance completes.

use std::sync::Arc;

use rill_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: JoinGroupRequest,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    shared
        .groups
        .join_group(version, request, client_id, client_host)
        .await
}
