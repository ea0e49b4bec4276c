//! rill-records: Kafka record batch v2 bytes, without IO.
//!
//! - [`batch`]: a zero-copy view of a record batch header, its validation
//!   (length, magic, CRC32C, counts) and the in-place rewrites the log does.
//! - [`varint`]: the zigzag varints records are made of.
//! - [`crc`]: CRC32C, folded with carry-less multiplication on long inputs.
//! - [`compression`]: the gzip, snappy, lz4 and zstd codecs, framed as Kafka
//!   clients frame them, with a bound on decompressed size.
//! - [`record`]: records and their encoding; [`record::decode_batch`] takes a
//!   whole batch apart into records with absolute offsets and timestamps.
//! - [`builder`]: [`builder::BatchBuilder`] writes records as a complete batch.
//! - [`region`]: [`region::FileRegion`], whole batches in a log file, as the
//!   log reads them and a fetch answer sends them.

pub mod batch;
pub mod builder;
pub mod compression;
pub mod crc;
pub mod produced;
pub mod record;
pub mod region;
pub mod varint;
