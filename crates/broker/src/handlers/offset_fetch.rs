//! OffsetFetch: committed offsets of one group (v0-v7) or many (v8+).

use std::sync::Arc;

use rill_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    shared.groups.with(|c| c.offset_fetch(version, request))
}
