//! Backoff of supervised shard restarts: a runtime that keeps failing (a
//! Redis refusing writes fails every shard at its next checkpoint) must not
//! reload in a tight loop against the Redis that is already in trouble.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first restart's pause; each failure within `QUIET` of the last
/// doubles it, up to `MAX`.
const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(8);
/// A shard that ran this long since its last restart starts over at `FIRST`.
const QUIET: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct RestartBackoff {
    shards: Mutex<HashMap<u32, (u32, Instant)>>,
}

impl RestartBackoff {
    /// How long to wait before restarting `shard`, which failed at `now`.
    pub fn next(&self, shard: u32, now: Instant) -> Duration {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        let (failures, last) = shards.entry(shard).or_insert((0, now));
        if now.duration_since(*last) > QUIET {
            *failures = 0;
        }
        *last = now;
        let pause = FIRST.saturating_mul(1 << (*failures).min(5)).min(MAX);
        *failures += 1;
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_double_the_pause_and_a_quiet_minute_resets_it() {
        let b = RestartBackoff::default();
        let t0 = Instant::now();
        let pauses: Vec<u64> = (0..8)
            .map(|i| b.next(3, t0 + Duration::from_secs(i)).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        // Another shard has its own count.
        assert_eq!(b.next(4, t0), FIRST);
        assert_eq!(b.next(3, t0 + Duration::from_secs(200)), FIRST);
    }
}
