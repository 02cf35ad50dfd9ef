//! Helpers shared by this crate's integration tests: waiting for a condition with a
//! deadline instead of sleeping for a guessed time.

#![allow(dead_code)]

use std::time::Duration;

/// Polls `check` until it holds, pausing briefly between polls so other tasks run; panics
/// naming `what` when `limit` passes first. Uses tokio's clock, so it also works with
/// paused time.
pub async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Wall time that moves with tokio's clock: with paused time, the mock's and the client's
/// `deadline` arithmetic runs on the same virtual time as their timeouts and delays.
#[derive(Debug)]
pub struct TokioClock {
    start: chrono::DateTime<chrono::Utc>,
    t0: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading the current wall time now, then moving with tokio's clock.
    pub fn new() -> Self {
        Self {
            start: chrono::Utc::now(),
            t0: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl gf_core::Clock for TokioClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let elapsed = tokio::time::Instant::now() - self.t0;
        self.start + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}
