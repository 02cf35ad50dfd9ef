//! Time sources: the wall clock for production and a manual clock for tests and replay.
//!
//! Everything that depends on time (daily drawdown resets, staleness, cooldowns, rate
//! windows) takes a [`Clock`] rather than calling `Utc::now()`, so tests can move time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use gf_core::{Clock, ManualClock};
/// use chrono::Duration;
/// let clock = ManualClock::at_ymd_hms(2026, 1, 1, 23, 59, 59);
/// clock.advance(Duration::seconds(1));
/// assert_eq!(clock.now().to_rfc3339(), "2026-01-02T00:00:00+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock standing at `start`.
    #[must_use]
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            nanos: Arc::new(AtomicI64::new(to_nanos(start))),
        }
    }

    /// A manual clock at the given UTC date and time.
    ///
    /// # Panics
    /// If the date or time does not exist (a programming error in a test).
    #[must_use]
    pub fn at_ymd_hms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Self {
        Self::new(
            Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
                .single()
                .expect("valid date and time"),
        )
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let delta = by.num_nanoseconds().unwrap_or(i64::MAX);
        self.nanos.fetch_add(delta, Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        self.nanos.store(to_nanos(to), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::at_ymd_hms(2026, 1, 1, 0, 0, 0)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

fn to_nanos(t: DateTime<Utc>) -> i64 {
    // Representable until the year 2262, which outlives this software.
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::default();
        let b = a.clone();
        a.advance(Duration::milliseconds(1500));
        assert_eq!(b.now(), a.now());
        assert_eq!(b.now().timestamp_millis() % 1000, 500);
        let t = Utc.with_ymd_and_hms(2030, 5, 6, 7, 8, 9).unwrap();
        b.set(t);
        assert_eq!(a.now(), t);
    }

    #[test]
    fn system_clock_moves_forward() {
        let c = SystemClock;
        let t1 = c.now();
        let t2 = c.now();
        assert!(t2 >= t1);
    }
}
