//! Reading a request header when the API and version are not known yet.

use crate::api::ApiKey;
use crate::codec::{Decode, DecodeError, Decoder};
use crate::messages::RequestHeader;

/// Why a request header could not be used. The first two variants carry the
/// header read as far as the correlation id and client id, so the broker can
/// still answer the request it cannot serve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeaderError {
    #[error("unknown api key {}", .0.request_api_key)]
    UnknownApi(RequestHeader),
    #[error(
        "api key {} does not support version {}",
        .0.request_api_key,
        .0.request_api_version
    )]
    UnsupportedVersion(RequestHeader),
    #[error("request header: {0}")]
    Decode(#[from] DecodeError),
}

/// Reads a request header: the api key and version come first and decide
/// the header version (v0, v1 or v2 with tagged fields).
pub fn decode_request_header(dec: &mut Decoder) -> Result<RequestHeader, HeaderError> {
    let start = dec.peek(4)?;
    let api_key = i16::from_be_bytes([start[0], start[1]]);
    let version = i16::from_be_bytes([start[2], start[3]]);
    let Some(key) = ApiKey::from_i16(api_key) else {
        // v1 has the client id; the broker needs nothing more to answer.
        return Err(HeaderError::UnknownApi(RequestHeader::decode(dec, 1)?));
    };
    let header = RequestHeader::decode(dec, key.request_header_version(version))?;
    let (low, high) = key.valid_versions();
    if version < low || version > high {
        return Err(HeaderError::UnsupportedVersion(header));
    }
    Ok(header)
}
