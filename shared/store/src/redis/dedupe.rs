//! Where a shard keeps its dedupe entries: fields of time-bucket hashes.
//!
//! Every accepted message id must be remembered for the dedupe window
//! (7 days by default), so a shard holds one entry per event of the last
//! week. One Redis key per entry, each with its own expiry, was the first
//! layout; it made a Redis restart slow, because loading a key with a TTL
//! costs about 2.3x a hash field (2M entries, redis-server alone: 1.60-1.73 s
//! as keys, 0.67-0.75 s as fields of 8 hashes), and a Redis restart's load
//! is part of every outage it causes.
//!
//! So entries are fields of `seg:{sN}:dd:<bucket>` hashes, one per
//! `bucket = now / B` with `B = window / 4`. A bucket hash expires one window
//! (plus one bucket of slack for clock skew) after its bucket ends, so an
//! entry lives at least the window after it was accepted; a lookup reads
//! every bucket that can hold an entry of the last window, plus one on each
//! side, so writers whose clocks differ by less than `B` (42 h at the default
//! window) still see each other's entries. A duplicate is therefore caught
//! for at least the window and at most 1.5 windows after acceptance,
//! where per-id keys caught it for exactly the window.
//!
//! Time is Redis's clock (`TIME`, sampled once a minute and carried forward
//! on the local monotonic clock; [`ServerClock`]), as it was for the per-id
//! key TTLs, so the window holds whatever the nodes' clocks say (they may be
//! manual). Tests can measure it on the `now_ms` callers pass instead
//! (`DedupeClock::Caller`).
//!
//! A bucket holds a quarter window of a shard's ids and is freed whole when
//! it expires; the Redis the tests and `deploy/local` start frees expired
//! keys in the background (`lazyfree-lazy-expire yes`) so that does not
//! stall it.
//!
//! Upgrade: per-id keys written before this layout stay live for a window.
//! Nodes of the older layout do not read buckets, so stop them all before
//! starting nodes of this one (a rolling upgrade would not catch a retry
//! that lands on a node of the other version).
//! The ingest script records, per shard, until when that may be
//! (`legacy_until`, 0 on a shard that never ingested before) and checks them
//! until then; it answers "send the per-id key names" if a caller left them
//! out meanwhile. The store remembers each shard's `legacy_until`, so callers
//! stop sending those names once the window has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Windows longer than this (about 100 years) are treated as this long, so
/// the arithmetic below cannot overflow.
const MAX_WINDOW_MS: u64 = 100 * 366 * 86_400_000;

/// The window as used: at most [`MAX_WINDOW_MS`].
pub(crate) fn window(window_ms: u64) -> i64 {
    window_ms.min(MAX_WINDOW_MS) as i64
}

/// Bucket length for a dedupe window (at least 1 ms).
pub(crate) fn bucket_ms(window_ms: u64) -> i64 {
    (window(window_ms) / 4).max(1)
}

/// The buckets an ingest at `now_ms` reads, the written one (`now`'s) first.
pub(crate) fn buckets(now_ms: i64, window_ms: u64) -> Vec<i64> {
    let b = bucket_ms(window_ms);
    let cur = now_ms.div_euclid(b);
    let oldest = now_ms
        .saturating_sub(window(window_ms))
        .div_euclid(b)
        .saturating_sub(1);
    std::iter::once(cur)
        .chain((oldest..=cur.saturating_add(1)).filter(|&k| k != cur))
        .collect()
}

/// TTL of the bucket written at `now_ms`: until one window and one bucket
/// after the bucket ends, so every entry in it outlives the window.
pub(crate) fn written_ttl_ms(now_ms: i64, window_ms: u64) -> i64 {
    let b = bucket_ms(window_ms);
    let into_bucket = now_ms.rem_euclid(b);
    (b - into_bucket) + window(window_ms) + b
}

/// How long a sample of Redis's clock is carried forward before it is read
/// again (bounds the drift between the local and Redis's clock).
const CLOCK_RESAMPLE: Duration = Duration::from_secs(60);

/// Redis's wall clock, read with `TIME` now and then and carried forward
/// on the local monotonic clock in between.
#[derive(Default)]
pub(crate) struct ServerClock {
    sample: Mutex<Option<(Instant, i64)>>,
}

impl ServerClock {
    /// Redis's time in ms; `time` reads `TIME` as (seconds, microseconds).
    pub(crate) fn now_ms<E>(&self, time: impl FnOnce() -> Result<(i64, i64), E>) -> Result<i64, E> {
        let mut sample = self.sample.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, ms)) = *sample
            && at.elapsed() < CLOCK_RESAMPLE
        {
            return Ok(ms.saturating_add(at.elapsed().as_millis() as i64));
        }
        let (secs, micros) = time()?;
        let ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        *sample = Some((Instant::now(), ms));
        Ok(ms)
    }
}

/// Per shard, until when the per-id keys of the older layout may be live,
/// as the ingest script last reported. Unknown shards send the names.
#[derive(Default)]
pub(crate) struct LegacyWindow {
    until: Mutex<HashMap<u32, i64>>,
}

impl LegacyWindow {
    /// Whether an ingest at `now_ms` must send per-id key names.
    pub(crate) fn needed(&self, shard: u32, now_ms: i64) -> bool {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.get(&shard).is_none_or(|&u| now_ms < u)
    }

    /// Records what the script reported.
    pub(crate) fn learn(&self, shard: u32, until_ms: i64) {
        self.until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard, until_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const WEEK: u64 = 7 * DAY as u64;

    #[test]
    fn every_instant_of_the_window_falls_in_a_read_bucket() {
        let b = bucket_ms(WEEK);
        for now in [0, 1, b - 1, b, 10 * b + 17, 123 * DAY + 5] {
            let read = buckets(now, WEEK);
            assert_eq!(read[0], now.div_euclid(b), "written bucket first");
            // Accepted anywhere in the window, even by a writer whose clock
            // is almost one bucket ahead or behind.
            for accepted in [
                now - WEEK as i64,
                now - 1,
                now,
                now + b - 1,
                now - WEEK as i64 - b + 1,
            ] {
                let k = accepted.div_euclid(b);
                assert!(
                    read.contains(&k),
                    "now {now}: bucket of {accepted} not read"
                );
            }
            let mut sorted = read.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), read.len(), "no bucket read twice");
            assert_eq!(read.len(), 7, "4 buckets per window, plus the edges");
        }
    }

    #[test]
    fn a_written_bucket_outlives_the_window_of_its_last_entry() {
        let b = bucket_ms(WEEK);
        for now in [0, 1, b - 1, b, 5 * b + 3] {
            let ttl = written_ttl_ms(now, WEEK);
            let end = (now.div_euclid(b) + 1) * b;
            // The latest entry of the bucket is accepted just before `end`.
            assert!(now + ttl >= end - 1 + WEEK as i64);
            assert!(ttl <= WEEK as i64 + 2 * b);
        }
    }

    #[test]
    fn tiny_windows_still_have_one_millisecond_buckets() {
        assert_eq!(bucket_ms(0), 1);
        assert_eq!(bucket_ms(3), 1);
        let read = buckets(100, 3);
        assert!(read.contains(&97) && read.contains(&100) && read.contains(&101));
    }

    #[test]
    fn absurd_windows_do_not_overflow() {
        for now in [i64::MIN, -1, 0, i64::MAX] {
            let read = buckets(now, u64::MAX);
            assert!(!read.is_empty());
            assert!(written_ttl_ms(now, u64::MAX) > 0);
        }
    }

    #[test]
    fn the_server_clock_is_read_once_and_carried_forward() {
        let clock = ServerClock::default();
        let first = clock
            .now_ms(|| Ok::<_, ()>((1_700_000_000, 123_456)))
            .unwrap();
        assert_eq!(first, 1_700_000_000_123);
        // Within the resample period the sample is carried, not read again.
        let again = clock
            .now_ms(|| -> Result<(i64, i64), ()> { panic!("read again") })
            .unwrap();
        assert!(again >= first && again < first + 60_000);
        // A failed first read is the caller's error.
        assert_eq!(
            ServerClock::default().now_ms(|| Err::<(i64, i64), _>("down")),
            Err("down")
        );
    }

    #[test]
    fn names_are_sent_until_the_reported_window_passes() {
        let w = LegacyWindow::default();
        assert!(w.needed(3, 0), "unknown shard");
        w.learn(3, 1_000);
        assert!(w.needed(3, 999));
        assert!(!w.needed(3, 1_000));
        assert!(w.needed(4, 5_000), "other shards stay unknown");
        w.learn(4, 0);
        assert!(!w.needed(4, 0));
    }
}
