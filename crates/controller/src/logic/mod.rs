//! The active controller's decisions as pure functions of state and input: no IO, no clock.

pub mod sessions;
