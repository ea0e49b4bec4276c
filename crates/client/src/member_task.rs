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
        if let Some(previous) = self.slot().replace(task) {
            previous.abort();
        }
    }

    /// Stops the member's background task, if it has one.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.slot().take() {
            task.abort();
        }
    }

    /// The slot, whatever a panic elsewhere did to the lock: a handle swap
    /// cannot be left half done, and dropping the new handle instead would
    /// leave its task running where nothing can stop it.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
