//! rill-protocol: the Kafka wire protocol as values, with no IO.
//!
//! - `codec`: `Encoder`/`Decoder` and the wire primitives; every length read
//!   from the wire is checked against the bytes left before allocating.
//! - `messages`: generated from Kafka's JSON specs by `cargo xtask codegen`
//!   (see CONTRIBUTING.md, "Code generation"); one module per spec file,
//!   each struct with `encode`, `encoded_len` and `decode` for every version.
//! - `api`: generated `ApiKey` table and the `RequestBody`/`ResponseBody` enums.
//! - `produce`: a Produce request checked and read in place (`ProduceFrame`),
//!   topic names and record batches borrowed from the frame: the broker's path.
//! - `header`: reading a request header before its API is known.
//! - `frame`: the 4-byte size prefix of every frame.
//! - `records`, `uuid`: the `records` field (bytes or file regions) and `Uuid`.
//! - `error_code`: Kafka's error codes, their names, which are retriable.

pub mod api;
pub mod codec;
pub mod error_code;
pub mod frame;
pub mod header;
pub mod messages;
pub mod produce;
pub mod records;
pub mod uuid;

pub use api::{ApiKey, RequestBody, ResponseBody};
pub use codec::{
    Decode, DecodeError, Decoder, Encode, EncodeError, EncodedFrame, Encoder, InlineVec,
    RawTaggedField,
};
pub use header::{HeaderError, decode_request_header};
pub use produce::ProduceFrame;
pub use records::{FileRegion, Records};
pub use uuid::Uuid;
