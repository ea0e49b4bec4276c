//! Sleeps finer than tokio's timer. Tokio rounds every sleep up to its
//! 1 ms tick, and mio's epoll timeout is whole milliseconds, so a paced
//! loop on `tokio::time::sleep` sends in bursts at least ~1.06 ms apart
//! (measured with `perf sched timehist`), however near the next message is
//! due. On Linux a timerfd on the runtime's reactor wakes the loop within
//! tens of microseconds; elsewhere, or if the timerfd cannot be made, this
//! is tokio's timer.

use std::time::Instant;

pub(super) struct FineTimer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
}

impl FineTimer {
    /// Must be called inside a tokio runtime (the timerfd joins its reactor).
    pub(super) fn new() -> FineTimer {
        FineTimer {
            #[cfg(target_os = "linux")]
            fd: linux::timerfd().ok(),
        }
    }

    /// Returns at `due` or soon after; at once if it has passed. A wake-up
    /// left over from an earlier, abandoned wait may end this one early:
    /// callers look at the clock again after every wait.
    pub(super) async fn sleep_until(&self, due: Instant) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd
            && linux::sleep_until(fd, due).await.is_ok()
        {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::OwnedFd;
    use std::time::Instant;

    use rustix::io::Errno;
    use rustix::time::{
        Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
        timerfd_settime,
    };
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    pub(super) fn timerfd() -> std::io::Result<AsyncFd<OwnedFd>> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the `OwnedFd` is the timerfd's only owner and moves into
        // the `AsyncFd`, so the descriptor stays open and the same for the
        // `AsyncFd`'s whole life.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(Into::into)
    }

    pub(super) async fn sleep_until(fd: &AsyncFd<OwnedFd>, due: Instant) -> std::io::Result<()> {
        let wait = due.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        // A wait past i64 seconds cannot be set: tokio's timer takes it.
        let value = Timespec::try_from(wait).map_err(std::io::Error::other)?;
        let once = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &once)?;
        loop {
            let mut ready = fd.readable().await?;
            // The count of expirations; reading it rearms readiness.
            let mut expirations = [0u8; 8];
            match rustix::io::read(ready.get_inner(), &mut expirations) {
                Ok(_) => return Ok(()),
                Err(Errno::AGAIN) => ready.clear_ready(),
                Err(error) => return Err(error.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::FineTimer;

    #[tokio::test]
    async fn sleeps_until_the_time_given_and_not_for_a_time_passed() {
        let timer = FineTimer::new();
        for wait in [Duration::from_micros(300), Duration::from_millis(2)] {
            let due = Instant::now() + wait;
            timer.sleep_until(due).await;
            assert!(Instant::now() >= due, "woke before {wait:?} passed");
        }
        let started = Instant::now();
        timer.sleep_until(started - Duration::from_millis(5)).await;
        timer.sleep_until(started).await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
