//! Test helpers shared by the workspace's tests: temporary data directories and polling with a
//! deadline (tests never sleep to wait for state).

use std::time::{Duration, Instant};

/// A temporary data directory, removed on drop.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("spillway-test-").tempdir().expect("create temp dir")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub fn eventually<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
