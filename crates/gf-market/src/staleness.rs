//! Per-pair staleness: time since the last book or trade message, against a threshold.
//!
//! The tracker is pure: callers pass the current time (from a [`gf_core::Clock`] live, or
//! the recording's time in a replay) and receive [`Payload::Staleness`] events when a
//! pair crosses the threshold and again when it is fresh.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gf_core::{Pair, Payload};

#[derive(Debug, Clone, Copy)]
struct Freshness {
    last: DateTime<Utc>,
    stale: bool,
}

/// Tracks the age of each pair's data.
///
/// ```
/// use gf_market::StalenessTracker;
/// use gf_core::{Clock, ManualClock, Payload};
/// use std::time::Duration;
/// let clock = ManualClock::default();
/// let pair = "XRP/USD".parse().unwrap();
/// let mut tracker = StalenessTracker::new(Duration::from_secs(60));
/// tracker.register(&pair, clock.now());
/// let mut out = Vec::new();
/// clock.advance(chrono::Duration::seconds(61));
/// tracker.check(clock.now(), &mut out);
/// assert!(matches!(out[0], Payload::Staleness { stale: true, age_ms: 61_000, .. }));
/// ```
#[derive(Debug, Clone)]
pub struct StalenessTracker {
    threshold: Duration,
    pairs: BTreeMap<Pair, Freshness>,
}

fn millis(d: chrono::Duration) -> u64 {
    u64::try_from(d.num_milliseconds()).unwrap_or(0)
}

impl StalenessTracker {
    /// A tracker with the given threshold.
    #[must_use]
    pub fn new(threshold: Duration) -> Self {
        Self {
            threshold,
            pairs: BTreeMap::new(),
        }
    }

    /// The threshold.
    #[must_use]
    pub fn threshold(&self) -> Duration {
        self.threshold
    }

    fn threshold_ms(&self) -> u64 {
        u64::try_from(self.threshold.as_millis()).unwrap_or(u64::MAX)
    }

    fn threshold_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.threshold).unwrap_or(chrono::Duration::MAX)
    }

    /// Starts watching `pair` as if it had data at `now` (no-op when already watched).
    pub fn register(&mut self, pair: &Pair, now: DateTime<Utc>) {
        self.pairs.entry(pair.clone()).or_insert(Freshness {
            last: now,
            stale: false,
        });
    }

    /// Records data for `pair` at `now`; publishes "fresh again" if it was stale.
    pub fn touch(&mut self, pair: &Pair, now: DateTime<Utc>, out: &mut Vec<Payload>) {
        let threshold_ms = self.threshold_ms();
        match self.pairs.get_mut(pair) {
            Some(f) => {
                if f.stale {
                    out.push(Payload::Staleness {
                        pair: pair.clone(),
                        stale: false,
                        age_ms: millis(now - f.last),
                        threshold_ms,
                    });
                    f.stale = false;
                }
                f.last = f.last.max(now);
            }
            None => {
                self.pairs.insert(
                    pair.clone(),
                    Freshness {
                        last: now,
                        stale: false,
                    },
                );
            }
        }
    }

    /// Publishes a stale event for each pair whose age reached the threshold at `now`.
    pub fn check(&mut self, now: DateTime<Utc>, out: &mut Vec<Payload>) {
        let threshold = self.threshold_chrono();
        let threshold_ms = self.threshold_ms();
        for (pair, f) in &mut self.pairs {
            let age = now - f.last;
            if !f.stale && age >= threshold {
                f.stale = true;
                out.push(Payload::Staleness {
                    pair: pair.clone(),
                    stale: true,
                    age_ms: millis(age),
                    threshold_ms,
                });
            }
        }
    }

    /// The earliest time a fresh pair becomes stale, if any pair is fresh.
    #[must_use]
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let threshold = self.threshold_chrono();
        self.pairs
            .values()
            .filter(|f| !f.stale)
            .filter_map(|f| f.last.checked_add_signed(threshold))
            .min()
    }

    /// Whether `pair` is currently stale.
    #[must_use]
    pub fn is_stale(&self, pair: &Pair) -> bool {
        self.pairs.get(pair).is_some_and(|f| f.stale)
    }

    /// Age of `pair`'s data at `now`, if watched.
    #[must_use]
    pub fn age(&self, pair: &Pair, now: DateTime<Utc>) -> Option<Duration> {
        self.pairs
            .get(pair)
            .map(|f| (now - f.last).to_std().unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{Clock, ManualClock};

    #[test]
    fn crosses_threshold_once_then_fresh_again() {
        let clock = ManualClock::default();
        let xrp: Pair = "XRP/USD".parse().unwrap();
        let doge: Pair = "DOGE/USD".parse().unwrap();
        let mut t = StalenessTracker::new(Duration::from_secs(60));
        t.register(&xrp, clock.now());
        t.register(&doge, clock.now());
        let mut out = Vec::new();
        clock.advance(chrono::Duration::seconds(30));
        t.touch(&doge, clock.now(), &mut out);
        clock.advance(chrono::Duration::milliseconds(29_999));
        t.check(clock.now(), &mut out);
        assert!(out.is_empty());
        assert_eq!(
            t.next_deadline(),
            Some(clock.now() + chrono::Duration::milliseconds(1))
        );
        clock.advance(chrono::Duration::milliseconds(1));
        t.check(clock.now(), &mut out);
        t.check(clock.now(), &mut out);
        assert_eq!(
            out,
            vec![Payload::Staleness {
                pair: xrp.clone(),
                stale: true,
                age_ms: 60_000,
                threshold_ms: 60_000
            }]
        );
        assert!(t.is_stale(&xrp));
        assert!(!t.is_stale(&doge));
        out.clear();
        clock.advance(chrono::Duration::seconds(10));
        t.touch(&xrp, clock.now(), &mut out);
        assert_eq!(
            out,
            vec![Payload::Staleness {
                pair: xrp.clone(),
                stale: false,
                age_ms: 70_000,
                threshold_ms: 60_000
            }]
        );
        assert_eq!(t.age(&xrp, clock.now()), Some(Duration::ZERO));
        assert_eq!(t.threshold(), Duration::from_secs(60));
        // An absurd threshold never overflows: nothing is ever due.
        let mut forever = StalenessTracker::new(Duration::from_secs(u64::MAX));
        forever.register(&xrp, clock.now());
        forever.check(clock.now(), &mut out);
        assert_eq!(forever.next_deadline(), None);
        assert!(!forever.is_stale(&xrp));
        // Unregistered pairs are registered on first touch.
        let btc: Pair = "BTC/USD".parse().unwrap();
        t.touch(&btc, clock.now(), &mut out);
        assert_eq!(t.age(&btc, clock.now()), Some(Duration::ZERO));
    }
}
