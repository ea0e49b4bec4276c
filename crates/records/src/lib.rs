//! rill-records: Kafka record batch v2 bytes, without IO.
//!
//! - [`batch`]: a zero-copy view of a record batch header, its validation
//!   (length, magic, CRC32C, counts) and the in-place rewrites the log does.

pub mod batch;
