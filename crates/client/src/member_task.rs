//! The background task a group member keeps (heartbeats, auto-commits,
//! rejoins), in either group protocol.

use std::sync::Mutex;

use tokio::task::JoinHandle;

/// Join attempts in a row before giving up, in either protocol: a group that
/// keeps rebalancing this often has a member flapping, and a coordinator
/// still loading or moving after this long is worth telling the caller.
pub(crate) const JOIN_ATTEMPTS_MAX: u32 = 20;

/// Holds a member's background task; at most one runs at a time.
#[derive(Default)]
pub(crate) struct MemberTask(Mutex<Option<JoinHandle<()>>>);

impl MemberTask {
    /// Makes `task` the member's background task, stopping the one it
    /// replaces.
    pub(crate) fn replace(&self, task: JoinHandle<()>) {
        if let Ok(mut slot) = self.0.lock()
            && let Some(previous) = slot.replace(task)
        {
            previous.abort();
        }
    }

    /// Stops the member's background task, if it has one.
    pub(crate) fn stop(&self) {
        if let Ok(mut slot) = self.0.lock()
            && let Some(task) = slot.take()
        {
            task.abort();
        }
    }
}
