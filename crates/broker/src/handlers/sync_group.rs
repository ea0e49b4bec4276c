//! SyncGroup: answered when the leader's assignment arrives.

use std::sync::Arc;

use rill_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    shared.groups.sync_group(version, request).await
}
