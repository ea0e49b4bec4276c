//! FindCoordinator: this broker coordinates every group.

use std::sync::Arc;

use rill_group::CoordinatorNode;
use rill_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let node = CoordinatorNode {
        node_id: shared.config.node_id,
        host: &shared.advertised_host,
        port: shared.advertised_port,
    };
    rill_group::find_coordinator(version, &request, node)
}
