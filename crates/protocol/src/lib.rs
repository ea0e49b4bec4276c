//! rill-protocol
