//! The per-token limits: a token bucket for the order rate, and the per-second budget of
//! refusal records in the journal.

use chrono::{DateTime, Utc};
use gf_core::config::Limits;

/// Refusal records one token may write to the journal per second; beyond, they are
/// counted and the next record carries the count.
pub const REFUSAL_RECORDS_PER_SEC: u32 = 20;

#[derive(Debug, Default)]
pub(super) struct RefusalBudget {
    pub(super) second: i64,
    pub(super) used: u32,
    pub(super) unrecorded: u64,
}

#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) at: DateTime<Utc>,
}

impl Bucket {
    /// Takes one order's token, or says in how many whole seconds one will be there.
    pub(super) fn take(&mut self, now: DateTime<Utc>, limits: &Limits) -> Result<(), u64> {
        let rate = f64::from(limits.orders_per_second);
        let burst = f64::from(limits.order_burst);
        let elapsed = (now - self.at)
            .num_microseconds()
            .unwrap_or(i64::MAX)
            .max(0);
        #[allow(clippy::cast_precision_loss)]
        let refill = elapsed as f64 / 1e6 * rate;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) / rate).ceil();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err((wait as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn limits(rate: u32, burst: u32) -> Limits {
        Limits {
            orders_per_second: rate,
            order_burst: burst,
            max_open_orders: 10,
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate_and_says_when_to_retry() {
        let t0 = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap();
        let l = limits(2, 3);
        let mut b = Bucket {
            tokens: 3.0,
            at: t0,
        };
        for _ in 0..3 {
            assert_eq!(b.take(t0, &l), Ok(()));
        }
        assert_eq!(
            b.take(t0, &l),
            Err(1),
            "empty: one token in half a second, said as 1 s"
        );
        // Half a second later one token (2/s) is back, and only one.
        let t1 = t0 + chrono::Duration::milliseconds(500);
        assert_eq!(b.take(t1, &l), Ok(()));
        assert!(b.take(t1, &l).is_err());
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + chrono::Duration::hours(1);
        for _ in 0..3 {
            assert_eq!(b.take(t2, &l), Ok(()));
        }
        assert!(b.take(t2, &l).is_err());
        // Retry-After is whole seconds, rounded up: a quarter token short at 1/s is 1 s.
        let mut short = Bucket {
            tokens: 0.75,
            at: t2,
        };
        assert_eq!(short.take(t2, &limits(1, 1)), Err(1));
        // A clock that went backwards refills nothing.
        let mut back = Bucket {
            tokens: 0.0,
            at: t2,
        };
        assert!(back.take(t0, &l).is_err());
    }
}
