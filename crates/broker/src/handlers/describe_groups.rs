//! DescribeGroups: state, protocol and members of groups.

use std::sync::Arc;

use rill_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use crate::server::Shared;

pub fn handle(shared: &Arc<Shared>, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    shared.groups.with(|c| c.describe_groups(&request))
}
