//! ListGroups: every group, filtered by state (v4+) and type (v5+).

use std::sync::Arc;

use rill_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use crate::server::Shared;

pub fn handle(shared: &Arc<Shared>, request: ListGroupsRequest) -> ListGroupsResponse {
    shared.groups.with(|c| c.list_groups(&request))
}
