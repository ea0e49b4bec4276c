//! ConsumerGroupDescribe (KIP-848): epochs, members and assignments.

use std::sync::Arc;

use rill_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};

use crate::server::Shared;

pub fn handle(
    shared: &Arc<Shared>,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    shared.groups.with(|c| c.consumer_group_describe(&request))
}
