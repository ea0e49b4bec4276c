//! IncrementalAlterConfigs: set, delete, append to or subtract from topic
//! configs. Broker configs are static (file, environment, flags).

use std::sync::Arc;

use rill_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use rill_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use crate::cluster::ConfigChange;
use crate::error_code;
use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => {
                let changes: Result<Vec<ConfigChange>, (i16, String)> = resource
                    .configs
                    .iter()
                    .map(|config| {
                        let value = || {
                            config.value.clone().ok_or_else(|| {
                                (
                                    error_code::INVALID_CONFIG,
                                    format!("config `{}` needs a value", config.name),
                                )
                            })
                        };
                        Ok(match config.config_operation {
                            0 => ConfigChange::Set(config.name.clone(), value()?),
                            1 => ConfigChange::Delete(config.name.clone()),
                            2 => ConfigChange::Append(config.name.clone(), value()?),
                            3 => ConfigChange::Subtract(config.name.clone(), value()?),
                            other => {
                                return Err((
                                    error_code::INVALID_REQUEST,
                                    format!("unknown config operation {other}"),
                                ));
                            }
                        })
                    })
                    .collect();
                match changes {
                    Ok(changes) => shared
                        .cluster
                        .alter_topic_configs(
                            &resource.resource_name,
                            &changes,
                            request.validate_only,
                        )
                        .await
                        .map_err(|failure| (failure.code, failure.message)),
                    Err(failure) => Err(failure),
                }
            }
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
    IncrementalAlterConfigsResponse {
        responses,
        ..Default::default()
    }
}
