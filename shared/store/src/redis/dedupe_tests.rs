#![allow(clippy::unwrap_used)]
//! Dedupe buckets against a real `redis-server`: the window on the callers'
//! clocks, skew between writers, expiry, and the per-id keys of the older
//! layout during an upgrade.

use super::keys::scoped;
use super::*;
use crate::test_support::item;
use crate::traits::{AppendOutcome, EventLog};

const WINDOW: u64 = 1_000_000;
const T0: i64 = 50_000_000;

fn server(window: u64) -> (RedisProcess, RedisStore) {
    let p = RedisProcess::start(Fsync::Always).unwrap();
    let mut opts = RedisOptions::new(p.url());
    opts.dedupe_window_ms = window;
    opts.dedupe_clock = DedupeClock::Caller;
    (p, RedisStore::connect(opts).unwrap())
}

fn one(log: &ShardStore, id: &str, now: i64) -> AppendOutcome {
    log.append(&[item("t", id, "p")], now).unwrap()[0]
}

fn raw<T: ::redis::FromRedisValue>(s: &RedisStore, cmd: &mut ::redis::Cmd) -> T {
    s.with_conn(|c| cmd.query(c)).unwrap()
}

#[test]
fn a_retry_within_the_window_is_a_duplicate_and_after_one_and_a_half_it_is_new() {
    let (_p, s) = server(WINDOW);
    let log = s.shard(1, Fence::new("n", 1));
    assert_eq!(one(&log, "m", T0), AppendOutcome::Accepted { seq: 1 });
    let w = WINDOW as i64;
    for later in [1, w / 2, w - 1, w] {
        assert_eq!(
            one(&log, "m", T0 + later),
            AppendOutcome::Duplicate { seq: 1 },
            "{later} ms later"
        );
    }
    // A writer whose clock is behind by most of a bucket still sees it.
    assert_eq!(
        one(&log, "m", T0 - w / 4 + 1),
        AppendOutcome::Duplicate { seq: 1 }
    );
    // Past 1.5 windows no bucket that can hold it is read any more.
    assert_eq!(
        one(&log, "m", T0 + w + w / 2 + w / 4),
        AppendOutcome::Accepted { seq: 2 }
    );
}

#[test]
fn a_bucket_expires_a_window_after_it_ends_and_never_sooner() {
    let (_p, s) = server(WINDOW);
    let log = s.shard(2, Fence::new("n", 1));
    one(&log, "m", T0);
    let b = T0.div_euclid(WINDOW as i64 / 4);
    let key = format!("{}dd:{b}", keys::shard(2));
    let ttl: i64 = raw(&s, ::redis::cmd("PTTL").arg(&key));
    assert!(ttl >= WINDOW as i64, "ttl {ttl}");
    assert!(ttl <= WINDOW as i64 * 3 / 2 + 1_000, "ttl {ttl}");
    let stored: Option<u64> = raw(&s, ::redis::cmd("HGET").arg(&key).arg(scoped("t", "m")));
    assert_eq!(stored, Some(1));
    // No per-id key is written.
    let per_id: i64 = raw(
        &s,
        ::redis::cmd("EXISTS").arg(format!("{}d:{}", keys::shard(2), scoped("t", "m"))),
    );
    assert_eq!(per_id, 0);
}

#[test]
fn by_default_the_window_is_on_redis_s_clock_not_the_caller_s() {
    let p = RedisProcess::start(Fsync::Always).unwrap();
    let mut opts = RedisOptions::new(p.url());
    opts.dedupe_window_ms = WINDOW;
    let s = RedisStore::connect(opts).unwrap();
    let log = s.shard(3, Fence::new("n", 1));
    // Callers whose clocks say 1970 and 2286: the same Redis time.
    assert_eq!(one(&log, "m", 0), AppendOutcome::Accepted { seq: 1 });
    assert_eq!(
        one(&log, "m", 10_000_000_000_000),
        AppendOutcome::Duplicate { seq: 1 }
    );
    let (secs, _): (i64, i64) = raw(&s, &mut ::redis::cmd("TIME"));
    let bucket = (secs * 1000).div_euclid(WINDOW as i64 / 4);
    let written: i64 = raw(
        &s,
        ::redis::cmd("EXISTS")
            .arg(format!("{}dd:{bucket}", keys::shard(3)))
            .arg(format!("{}dd:{}", keys::shard(3), bucket - 1)),
    );
    assert_eq!(
        written, 1,
        "the bucket of Redis's time (or the one before) holds it"
    );
}

#[test]
fn redis_expires_old_buckets_by_itself() {
    // A 40 ms window: buckets of 10 ms expire within 60 ms of their end.
    let (_p, s) = server(40);
    let log = s.shard(1, Fence::new("n", 1));
    one(&log, "m", T0);
    let key = format!("{}dd:{}", keys::shard(1), T0.div_euclid(10));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = raw(&s, ::redis::cmd("EXISTS").arg(&key));
        if n == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bucket never expired");
        std::thread::yield_now();
    }
}

/// Writes what the older layout left: a seq counter and a per-id key.
fn older_layout(s: &RedisStore, shard: u32, id: &str, seq: u64) {
    let p = keys::shard(shard);
    let _: () = raw(s, ::redis::cmd("SET").arg(format!("{p}seq")).arg(seq));
    let _: () = raw(
        s,
        ::redis::cmd("SET")
            .arg(format!("{p}d:{}", scoped("t", id)))
            .arg(seq)
            .arg("PX")
            .arg(60_000),
    );
}

#[test]
fn per_id_keys_of_the_older_layout_are_honoured_for_one_window() {
    let (_p, s) = server(WINDOW);
    older_layout(&s, 5, "old", 41);
    let log = s.shard(5, Fence::new("n", 1));
    assert_eq!(one(&log, "old", T0), AppendOutcome::Duplicate { seq: 41 });
    assert_eq!(one(&log, "new", T0), AppendOutcome::Accepted { seq: 42 });
    assert_eq!(
        one(&log, "new", T0 + 1),
        AppendOutcome::Duplicate { seq: 42 }
    );
    // A store that starts now learns the same window from the script.
    let other = RedisStore::connect(s.options().clone()).unwrap();
    let log2 = other.shard(5, Fence::new("n2", 1));
    assert_eq!(
        one(&log2, "old", T0 + 10),
        AppendOutcome::Duplicate { seq: 41 }
    );
    assert!(other.legacy_dedupe().needed(5, T0 + WINDOW as i64 - 1));
    assert!(!other.legacy_dedupe().needed(5, T0 + WINDOW as i64));
    // A window after the first ingest under buckets, per-id keys (which the
    // older layout wrote with a TTL of one window) are no longer read: this
    // one is still in Redis, and ignored.
    assert_eq!(
        one(&log2, "old", T0 + WINDOW as i64),
        AppendOutcome::Accepted { seq: 43 }
    );
}

#[test]
fn a_fresh_shard_never_reads_per_id_keys() {
    let (_p, s) = server(WINDOW);
    let log = s.shard(6, Fence::new("n", 1));
    one(&log, "a", T0);
    assert!(!s.legacy_dedupe().needed(6, T0));
    // Even a per-id key appearing later is not read: the layout is known.
    older_layout(&s, 6, "b", 1);
    assert_eq!(one(&log, "b", T0), AppendOutcome::Accepted { seq: 2 });
}

#[test]
fn a_caller_that_left_out_per_id_names_is_asked_again_and_sends_them() {
    let (_p, s) = server(WINDOW);
    let log = s.shard(7, Fence::new("n", 1));
    one(&log, "a", T0);
    assert!(!s.legacy_dedupe().needed(7, T0));
    // The shard's record is lost (say, a Redis that lost writes) while its
    // counter survived: per-id keys may be live again.
    let _: i64 = raw(
        &s,
        ::redis::cmd("DEL").arg(format!("{}ddmeta", keys::shard(7))),
    );
    older_layout(&s, 7, "b", 9);
    assert_eq!(one(&log, "b", T0 + 1), AppendOutcome::Duplicate { seq: 9 });
    assert!(s.legacy_dedupe().needed(7, T0 + 1));
}

#[test]
fn duplicates_within_one_batch_and_across_buckets_keep_their_first_seq() {
    let (_p, s) = server(WINDOW);
    let log = s.shard(8, Fence::new("n", 1));
    let out = log
        .append(
            &[
                item("t", "a", "1"),
                item("t", "a", "2"),
                item("t", "b", "3"),
            ],
            T0,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 1 },
            AppendOutcome::Duplicate { seq: 1 },
            AppendOutcome::Accepted { seq: 2 },
        ]
    );
    // Two buckets later, "c" is written to another bucket and "a" is found
    // in the first one.
    let later = T0 + WINDOW as i64 / 2;
    let out = log
        .append(&[item("t", "c", "4"), item("t", "a", "5")], later)
        .unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Accepted { seq: 3 },
            AppendOutcome::Duplicate { seq: 1 },
        ]
    );
    let payloads: Vec<Vec<u8>> = log
        .read_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(payloads, vec![b"1".to_vec(), b"3".to_vec(), b"4".to_vec()]);
}
