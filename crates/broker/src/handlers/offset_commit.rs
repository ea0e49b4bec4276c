//! OffsetCommit: acknowledged once the offsets are in `__consumer_offsets`.

use std::sync::Arc;

use rill_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    shared.groups.offset_commit(version, request)
}
