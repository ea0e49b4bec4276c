//! DeleteGroups: removes empty groups and their offsets.

use std::sync::Arc;

use rill_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::server::Shared;

pub fn handle(shared: &Arc<Shared>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    shared.groups.with(|c| c.delete_groups(&request))
}
