//! The controller's decisions as pure functions: no IO, no clock, no randomness of their own.

pub mod placement;
