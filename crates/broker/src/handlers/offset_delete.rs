//! OffsetDelete: removes offsets of topics a group no longer consumes.

use std::sync::Arc;

use rill_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::server::Shared;

pub fn handle(shared: &Arc<Shared>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    shared.groups.with(|c| c.offset_delete(request))
}
