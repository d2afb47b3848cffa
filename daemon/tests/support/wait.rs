//! Waiting for a condition, the one way the daemon's tests wait.

use std::time::{Duration, Instant};

/// Polls `check` every 10 ms until it holds; panics naming `what` after
/// `within`. Returns how long it took.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// [`eventually`] for a test without a runtime: the thread sleeps between
/// checks.
pub fn eventually_blocking(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}
