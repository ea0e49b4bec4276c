//! rill-broker
