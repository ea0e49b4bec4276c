//! The two clocks a producer reads per message, each as cheap as it can be.
//!
//! Measured on the 2-core VM the benchmarks run on (docs/BENCHMARKS.md):
//! `clock_gettime` of a precise clock takes 23 ns, `SystemTime::now()` turned
//! into Unix milliseconds 34.5 ns, and a coarse clock 3 ns. At 1.5 M
//! messages a second one precise read per message is 3.5 % of a core.

/// Milliseconds since the Unix epoch: a record's timestamp when its
/// producer gave none.
#[inline]
pub(crate) fn wall_ms() -> i64 {
    #[cfg(target_os = "linux")]
    {
        linux_ms(rustix::time::ClockId::Realtime)
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// Monotonic milliseconds from an arbitrary origin, only as fine as the
/// kernel's tick (1-10 ms): enough to age metadata that lives for minutes,
/// and read without the time stamp counter.
#[inline]
pub(crate) fn coarse_ms() -> i64 {
    #[cfg(target_os = "linux")]
    {
        linux_ms(rustix::time::ClockId::MonotonicCoarse)
    }
    #[cfg(not(target_os = "linux"))]
    {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        ORIGIN
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as i64
    }
}

/// `clock`'s reading in whole milliseconds.
#[cfg(target_os = "linux")]
#[inline]
fn linux_ms(clock: rustix::time::ClockId) -> i64 {
    let now = rustix::time::clock_gettime(clock);
    now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_is_unix_milliseconds() {
        let std_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (wall_ms() - std_ms).abs() < 1_000,
            "{} vs {std_ms}",
            wall_ms()
        );
    }

    #[test]
    fn the_coarse_clock_moves_forward_in_milliseconds() {
        let before = coarse_ms();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let after = coarse_ms();
        // A tick of up to 10 ms on either side.
        assert!(
            (30..1_000).contains(&(after - before)),
            "{before} → {after}"
        );
    }
}
