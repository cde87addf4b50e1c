//! Helpers shared by the cluster crate's integration tests.

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns true or `limit` passes.
pub fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

pub mod members;
