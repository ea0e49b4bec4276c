//! DescribeCluster: the cluster's unfenced brokers and its active controller.

use std::sync::Arc;

use rill_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use rill_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use crate::error_code;
use crate::server::Shared;

/// Kafka's endpoint types: brokers (1) or controllers (2).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(shared: &Arc<Shared>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS && request.endpoint_type != 2 {
        return DescribeClusterResponse {
            error_code: error_code::UNSUPPORTED_VERSION,
            error_message: Some(format!("unknown endpoint type {}", request.endpoint_type)),
            endpoint_type: request.endpoint_type,
            cluster_id: shared.cluster.cluster_id().to_string(),
            ..Default::default()
        };
    }
    DescribeClusterResponse {
        error_code: error_code::NONE,
        endpoint_type: request.endpoint_type,
        cluster_id: shared.cluster.cluster_id().to_string(),
        controller_id: shared.cluster.active_controller(),
        cluster_authorized_operations: if request.include_cluster_authorized_operations {
            super::metadata::CLUSTER_OPERATIONS
        } else {
            i32::MIN
        },
        brokers: shared
            .cluster
            .live_brokers(&shared.advertised_host, shared.advertised_port)
            .into_iter()
            .map(|(broker_id, host, port, rack)| DescribeClusterBroker {
                broker_id,
                host,
                port,
                rack,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
