//! AlterConfigs (the legacy form, still sent by kafka-python, KafkaJS and
//! librdkafka's `alter_configs`): the listed configs become the topic's whole
//! set of overrides; every override not listed returns to its default.

use std::sync::Arc;

use rill_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use rill_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use crate::cluster::ConfigChange;
use crate::error_code;
use crate::server::Shared;

pub async fn handle(shared: &Arc<Shared>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => match shared.cluster.topic(&resource.resource_name) {
                None => Err((
                    error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic '{}' does not exist", resource.resource_name),
                )),
                Some(topic) => {
                    let mut changes: Vec<ConfigChange> = topic
                        .overrides
                        .keys()
                        .filter(|name| !resource.configs.iter().any(|c| &c.name == *name))
                        .map(|name| ConfigChange::Delete(name.clone()))
                        .collect();
                    for config in &resource.configs {
                        changes.push(match &config.value {
                            Some(value) => ConfigChange::Set(config.name.clone(), value.clone()),
                            None => ConfigChange::Delete(config.name.clone()),
                        });
                    }
                    shared
                        .cluster
                        .alter_topic_configs(
                            &resource.resource_name,
                            &changes,
                            request.validate_only,
                        )
                        .await
                        .map_err(|failure| (failure.code, failure.message))
                }
            },
            other => Err(super::describe_configs::not_alterable(other)),
        };
        let (error_code, error_message) = super::error_fields(outcome);
        responses.push(AlterConfigsResourceResponse {
            error_code,
            error_message,
            resource_type: resource.resource_type,
            resource_name: resource.resource_name,
            ..Default::default()
        });
    }
    AlterConfigsResponse {
        responses,
        ..Default::default()
    }
}
