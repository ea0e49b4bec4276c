//! The producer's buffer memory (`buffer_memory`): back-pressure on `send`.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Bytes of messages not yet acknowledged (`buffer_memory`): a send takes
/// its share with one atomic operation, a batch gives back all of its
/// messages' shares at once when it is answered.
///
/// A send that finds the buffer full waits until it has drained to
/// `resume_at`, an eighth below the limit, not just until its own message
/// fits: waking at every answered batch made a producer that outruns the
/// broker trade one thread switch per message with the sender task (1.09 M
/// context switches for 2 M one-message batches, half the client's CPU in
/// the kernel's wake-up path). While any send waits, new sends wait too, so
/// a waiting one cannot be starved by others that keep the buffer full.
pub(super) struct Memory {
    used: AtomicUsize,
    limit: usize,
    /// Sends waiting in `take`.
    waiting: AtomicUsize,
    freed: Notify,
}

/// Counts a send as waiting for as long as it exists (the future holding
/// it may be dropped while it waits).
struct WaitingSend<'a>(&'a AtomicUsize);

impl<'a> WaitingSend<'a> {
    fn new(count: &'a AtomicUsize) -> WaitingSend<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        WaitingSend(count)
    }
}

impl Drop for WaitingSend<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Memory {
    pub(super) fn new(limit: usize) -> Memory {
        Memory {
            used: AtomicUsize::new(0),
            limit,
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    fn resume_at(&self) -> usize {
        self.limit - self.limit / 8
    }

    /// Takes `size` bytes at once if no send is waiting and they fit.
    pub(super) fn try_take(&self, size: usize) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0 && self.take_if_fits(size, self.limit)
    }

    /// Takes `size` bytes if they fit under the limit and no more than
    /// `used_max` are in use.
    fn take_if_fits(&self, size: usize, used_max: usize) -> bool {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            // A message always fits an empty buffer (`limit` is at least
            // `max_message_size`, checked at connect).
            if used != 0 && (used + size > self.limit || used > used_max) {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + size,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Waits until `size` bytes fit (back-pressure on `send`).
    pub(super) async fn take(&self, size: usize) {
        if self.try_take(size) {
            return;
        }
        let _waiting = WaitingSend::new(&self.waiting);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            // Sequentially consistent with `give_back`: either this sees
            // the bytes it gave back, or it sees this send waiting and
            // wakes it (the waiter is registered above).
            if self.take_if_fits(size, self.resume_at()) {
                return;
            }
            freed.await;
        }
    }

    pub(super) fn give_back(&self, size: usize) {
        let after = self.used.fetch_sub(size, Ordering::SeqCst) - size;
        if after <= self.resume_at() && self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A send that found the buffer full goes on only once it has drained
    /// by an eighth, and while it waits, new sends do not jump ahead of it.
    #[tokio::test]
    async fn a_blocked_send_resumes_after_an_eighth_drains_and_is_not_overtaken() {
        let memory = Arc::new(Memory::new(8_000));
        assert!(memory.try_take(8_000));
        let waiter = {
            let memory = Arc::clone(&memory);
            tokio::spawn(async move { memory.take(100).await })
        };
        while memory.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Room for the message, but not yet an eighth free: it keeps
        // waiting, and a new send may not take the room either.
        memory.give_back(500);
        assert!(!memory.try_take(100), "a new send overtook a waiting one");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        // 1,000 bytes (an eighth) free: it takes its 100 and new sends go
        // on again.
        memory.give_back(500);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(memory.used.load(Ordering::SeqCst), 7_100);
        assert_eq!(memory.waiting.load(Ordering::SeqCst), 0);
        assert!(memory.try_take(100));
    }
}
