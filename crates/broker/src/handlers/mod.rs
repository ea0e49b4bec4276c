//! One file per Kafka API: each turns a decoded request into its response
//! (parse → apply → encode, with the encoding done by the generated codec).
//! This file holds the table of what Rill supports and the dispatch.

use std::sync::Arc;

use bytes::Bytes;
use rill_protocol::codec::Decoder;
use rill_protocol::messages::RequestHeader;
use rill_protocol::{ApiKey, ProduceFrame, RequestBody, ResponseBody};
use tokio::sync::watch;

use crate::response::Response;
use crate::server::Shared;

mod alter_configs;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_quorum;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod queue;
mod sync_group;

pub use queue::{Queue, Share};

/// The APIs Rill answers and the versions of each, from which ApiVersions
/// answers are built. Ranges reach down to what the clients we test with
/// still send (librdkafka 2.x, kafka-python, KafkaJS 2.2, Java 3.x/4.x).
/// Produce v0–v2 are advertised but refused with UNSUPPORTED_VERSION, as
/// Kafka 4.0 does: librdkafka before 2.11.1 turns compression off unless it
/// sees Produce v0 in the list (KAFKA-18659).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    // Fetch v4 is the first that carries record batch v2, the only format
    // Rill stores.
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 0, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 0, 7),
    (ApiKey::DeleteTopics, 0, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    // Consumer groups (crates/group): the classic protocol and KIP-848
    // (ConsumerGroupHeartbeat, with OffsetCommit/OffsetFetch v9).
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 0, 9),
    (ApiKey::OffsetFetch, 0, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 0),
];

/// The versions of `api` Rill supports, if any.
pub fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|(_, min, max)| (*min, *max))
}

/// A request ready to be answered. The size difference between variants
/// does not matter: a connection holds one request at a time.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    Api {
        header: RequestHeader,
        api: ApiKey,
        version: i16,
        body: RequestBody,
    },
    /// A Produce request, read in place: the one API whose decode is on
    /// every message's path (see `rill_protocol::produce`).
    Produce {
        header: RequestHeader,
        version: i16,
        body: ProduceFrame,
    },
    /// An ApiVersions request of a version Rill does not know: answered with
    /// UNSUPPORTED_VERSION and the supported list, encoded as v0 (KIP-511), so
    /// the client can retry with a version both sides know.
    ApiVersionsTooNew { correlation_id: i32 },
}

impl Request {
    pub fn api_name(&self) -> &'static str {
        match self {
            Request::Api { api, .. } => api.name(),
            Request::Produce { .. } => ApiKey::Produce.name(),
            Request::ApiVersionsTooNew { .. } => ApiKey::ApiVersions.name(),
        }
    }

    /// Whether answering may wait on something besides this broker's own
    /// work (a long-polling fetch, acks=all, a join). Only a produce
    /// request with acks 0 or 1 is known not to.
    pub fn may_wait(&self) -> bool {
        !matches!(self, Request::Produce { body, .. } if produce::is_fast(body))
    }
}

/// Decodes a request frame, or says why the connection must close (as Kafka
/// closes it on an unknown API or an unsupported version).
pub fn parse(frame: Bytes) -> Result<Request, String> {
    let mut decoder = Decoder::new(frame);
    let header = match rill_protocol::decode_request_header(&mut decoder) {
        Ok(header) => header,
        Err(
            rill_protocol::HeaderError::UnknownApi(header)
            | rill_protocol::HeaderError::UnsupportedVersion(header),
        ) => {
            if header.request_api_key == ApiKey::ApiVersions as i16 {
                return Ok(Request::ApiVersionsTooNew {
                    correlation_id: header.correlation_id,
                });
            }
            return Err(format!(
                "unknown api key {} version {}",
                header.request_api_key, header.request_api_version
            ));
        }
        Err(error) => return Err(format!("bad request header: {error}")),
    };
    let version = header.request_api_version;
    let api = ApiKey::from_i16(header.request_api_key)
        .ok_or_else(|| format!("unknown api key {}", header.request_api_key))?;
    let Some((min, max)) = supported_versions(api) else {
        return Err(format!("{} is not supported", api.name()));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            return Ok(Request::ApiVersionsTooNew {
                correlation_id: header.correlation_id,
            });
        }
        return Err(format!(
            "{} v{version} is not supported (Rill supports v{min}-v{max})",
            api.name()
        ));
    }
    let cannot = |error| format!("cannot decode {} v{version}: {error}", api.name());
    if api == ApiKey::Produce {
        let body = ProduceFrame::decode(&mut decoder, version).map_err(cannot)?;
        return Ok(Request::Produce {
            header,
            version,
            body,
        });
    }
    let body = RequestBody::decode(api, version, &mut decoder).map_err(cannot)?;
    Ok(Request::Api {
        header,
        api,
        version,
        body,
    })
}

/// Answers a request and, for a produce request, those queued behind it
/// that join its run (`produce::handle`): one answer per request taken, in
/// order, `None` where the client expects none (acks=0).
/// `client_host` is the peer's address as Kafka shows it (`/127.0.0.1`),
/// which group members report in DescribeGroups.
pub async fn handle(
    shared: &Arc<Shared>,
    request: Request,
    queue: &mut Queue,
    client_host: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<Option<Response>> {
    let (correlation_id, api, version, body) = match request {
        Request::Produce {
            header,
            version,
            body,
        } => return produce::handle(shared, header.correlation_id, version, body, queue).await,
        Request::ApiVersionsTooNew { correlation_id } => (
            correlation_id,
            ApiKey::ApiVersions,
            0,
            ResponseBody::from(api_versions::unsupported()),
        ),
        Request::Api {
            header,
            api,
            version,
            body,
        } => {
            let client_id = header.client_id.as_deref().unwrap_or("");
            let client = Client {
                id: client_id,
                host: client_host,
            };
            let Some(body) = dispatch(shared, version, body, client, shutdown).await else {
                return vec![None];
            };
            (header.correlation_id, api, version, body)
        }
    };
    vec![Response::answer(correlation_id, api, version, &body)]
}

/// Who sent a request.
#[derive(Clone, Copy)]
struct Client<'a> {
    id: &'a str,
    host: &'a str,
}

async fn dispatch(
    shared: &Arc<Shared>,
    version: i16,
    body: RequestBody,
    client: Client<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<ResponseBody> {
    Some(match body {
        RequestBody::ApiVersions(_) => api_versions::handle().into(),
        RequestBody::Metadata(request) => metadata::handle(shared, version, request).await.into(),
        RequestBody::Fetch(request) => fetch::handle(shared, version, request, shutdown)
            .await
            .into(),
        RequestBody::ListOffsets(request) => list_offsets::handle(shared, version, request).into(),
        RequestBody::OffsetForLeaderEpoch(request) => {
            offset_for_leader_epoch::handle(shared, request).into()
        }
        RequestBody::CreateTopics(request) => {
            create_topics::handle(shared, version, request).await.into()
        }
        RequestBody::DeleteTopics(request) => {
            delete_topics::handle(shared, version, request).await.into()
        }
        RequestBody::CreatePartitions(request) => {
            create_partitions::handle(shared, request).await.into()
        }
        RequestBody::DeleteRecords(request) => delete_records::handle(shared, request).await.into(),
        RequestBody::DescribeConfigs(request) => {
            describe_configs::handle(shared, version, request).into()
        }
        RequestBody::AlterConfigs(request) => alter_configs::handle(shared, request).await.into(),
        RequestBody::IncrementalAlterConfigs(request) => {
            incremental_alter_configs::handle(shared, request)
                .await
                .into()
        }
        RequestBody::DescribeCluster(request) => describe_cluster::handle(shared, request).into(),
        RequestBody::DescribeQuorum(request) => {
            describe_quorum::handle(shared, request).await.into()
        }
        RequestBody::InitProducerId(request) => {
            init_producer_id::handle(shared, request).await.into()
        }
        RequestBody::FindCoordinator(request) => {
            find_coordinator::handle(shared, version, request).into()
        }
        RequestBody::JoinGroup(request) => {
            join_group::handle(shared, version, request, client.id, client.host)
                .await
                .into()
        }
        RequestBody::SyncGroup(request) => {
            sync_group::handle(shared, version, request).await.into()
        }
        RequestBody::Heartbeat(request) => heartbeat::handle(shared, request).into(),
        RequestBody::LeaveGroup(request) => leave_group::handle(shared, version, request).into(),
        RequestBody::OffsetCommit(request) => {
            offset_commit::handle(shared, version, request).await.into()
        }
        RequestBody::OffsetFetch(request) => offset_fetch::handle(shared, version, request).into(),
        RequestBody::OffsetDelete(request) => offset_delete::handle(shared, request).into(),
        RequestBody::ListGroups(request) => list_groups::handle(shared, request).into(),
        RequestBody::DescribeGroups(request) => describe_groups::handle(shared, request).into(),
        RequestBody::DeleteGroups(request) => delete_groups::handle(shared, request).into(),
        RequestBody::ConsumerGroupHeartbeat(request) => {
            consumer_group_heartbeat::handle(shared, request, client.id, client.host).into()
        }
        RequestBody::ConsumerGroupDescribe(request) => {
            consumer_group_describe::handle(shared, request).into()
        }
        other => {
            // `parse` only lets supported APIs through.
            tracing::error!(
                api = other.api_key().name(),
                "no handler for a supported API"
            );
            return None;
        }
    })
}

/// The error code and message fields of a per-resource answer.
pub fn error_fields(outcome: Result<(), (i16, String)>) -> (i16, Option<String>) {
    match outcome {
        Ok(()) => (crate::error_code::NONE, None),
        Err((code, message)) => (code, Some(message)),
    }
}
