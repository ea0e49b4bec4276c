//! A response ready to send: header and body encoded into one frame, whose
//! record bytes may still be regions of log files (sent with `sendfile(2)`).

use rill_protocol::codec::{Encode, EncodeError, EncodedFrame, Encoder};
use rill_protocol::messages::ResponseHeader;
use rill_protocol::{ApiKey, ResponseBody};

/// A response ready to send: its header and body, already encoded.
pub struct Response {
    pub frame: EncodedFrame,
}

impl Response {
    /// Encodes `header` then `body`, prefixed by the frame size.
    pub fn encode(
        header: &ResponseHeader,
        header_version: i16,
        body: &ResponseBody,
        body_version: i16,
    ) -> Result<Response, EncodeError> {
        let len = header.encoded_len(header_version)? + body.encoded_len(body_version)?;
        let size = i32::try_from(len).map_err(|_| EncodeError::TooLong {
            what: "response",
            len,
        })?;
        let mut encoder = Encoder::with_capacity(4 + len.min(64 * 1024));
        encoder.put_i32(size);
        header.encode(&mut encoder, header_version)?;
        body.encode(&mut encoder, body_version)?;
        Ok(Response {
            frame: encoder.finish(),
        })
    }

    /// The answer to request `correlation_id` of `api` at `version`; `None`
    /// when the body cannot be encoded at that version.
    pub fn answer(
        correlation_id: i32,
        api: ApiKey,
        version: i16,
        body: &ResponseBody,
    ) -> Option<Response> {
        let header = ResponseHeader {
            correlation_id,
            ..Default::default()
        };
        match Response::encode(&header, api.response_header_version(version), body, version) {
            Ok(response) => Some(response),
            Err(error) => {
                // A handler built a response its version cannot carry: a bug.
                // Closing is better than a frame the client cannot parse.
                tracing::error!(api = api.name(), version, %error, "cannot encode response");
                None
            }
        }
    }
}
