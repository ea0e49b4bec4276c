//! ApiVersions: what Rill supports, built from [`super::SUPPORTED_APIS`].

use rill_protocol::ApiKey;
use rill_protocol::messages::ApiVersionsResponse;
use rill_protocol::messages::api_versions_response::ApiVersion;

use super::SUPPORTED_APIS;
use crate::error_code;

pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: error_code::NONE,
        api_keys: supported(),
        ..Default::default()
    }
}

/// The answer to a version Rill does not know; the caller encodes it as v0.
/// As Kafka does (KIP-511), it lists only ApiVersions' own range: all the
/// client needs to pick a version and ask again.
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: error_code::UNSUPPORTED_VERSION,
        api_keys: supported()
            .into_iter()
            .filter(|api| api.api_key == ApiKey::ApiVersions as i16)
            .collect(),
        ..Default::default()
    }
}

fn supported() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(api, min, max)| ApiVersion {
            api_key: *api as i16,
            min_version: *min,
            max_version: *max,
            ..Default::default()
        })
        .collect()
}
