//! rill-log
