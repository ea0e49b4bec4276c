//! rill-records
