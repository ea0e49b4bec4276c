//! The active controller's decisions as pure functions of state and input:
//! no IO, no clock, no randomness of their own.

pub mod leadership;
pub mod placement;
pub mod sessions;
