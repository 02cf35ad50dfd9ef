//! Rolling volatility: the standard deviation of 1-minute log returns over a window of
//! minutes, in percent, updated in O(1) per tick.
//!
//! Ticks are bucketed by UTC minute (`timestamp / 60`). The last price seen in a minute is
//! that minute's close. When the first tick of a later minute arrives, the finished
//! minute's log return `ln(close_k / close_{k-1})` enters a ring buffer of `window`
//! returns; minutes without any tick repeat the previous close and so contribute a zero
//! return (at most `window` of them, older ones would fall out anyway). The ring keeps a
//! running sum and sum of squares, so a tick costs a constant amount of work whatever the
//! window, and [`RollingVolatility::volatility_pct`] reads a cached value.
//!
//! The figure is the sample standard deviation (divisor `n - 1`) of the returns in the
//! window, times 100, not annualised. It is `None` until the window is full.
//!
//! Volatility is a statistic, not money: the price ratio is taken in `Decimal`, and only
//! its logarithm and the final square root use `f64` (a `Decimal` logarithm costs about
//! 15 µs, `f64` some 20 ns). Each return and its square are then rounded to 18 decimal
//! places of `Decimal` before they enter the sums, so adding and later subtracting the
//! same value is exact and the running sums never drift from a recomputation.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde::{Deserialize, Serialize};

/// Decimal places kept for each return and squared return.
const RETURN_DP: u32 = 18;

/// Rolling volatility of one price series. Serialises without its derived sums; they are
/// recomputed exactly when it is deserialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "VolatilityState")]
pub struct RollingVolatility {
    window: usize,
    returns: VecDeque<Decimal>,
    /// UTC minute (`timestamp.div_euclid(60)`) of the close being built.
    minute: Option<i64>,
    /// Last price of `minute`.
    close: Option<Decimal>,
    /// Close of the minute before `minute` (the last finished close).
    prev_close: Option<Decimal>,
    #[serde(skip)]
    sum: Decimal,
    #[serde(skip)]
    sum_sq: Decimal,
    #[serde(skip)]
    cached: Option<Decimal>,
}

/// The serialised form of [`RollingVolatility`].
#[derive(Deserialize)]
struct VolatilityState {
    window: usize,
    returns: VecDeque<Decimal>,
    minute: Option<i64>,
    close: Option<Decimal>,
    prev_close: Option<Decimal>,
}

impl From<VolatilityState> for RollingVolatility {
    fn from(s: VolatilityState) -> Self {
        let mut v = RollingVolatility::new(s.window);
        v.minute = s.minute;
        v.close = s.close;
        v.prev_close = s.prev_close;
        let skip = s.returns.len().saturating_sub(v.window);
        for r in s.returns.into_iter().skip(skip) {
            v.push(r.round_dp(RETURN_DP));
        }
        v
    }
}

impl RollingVolatility {
    /// A tracker over `window` one-minute returns (at least 2; smaller values are raised
    /// to 2, since a deviation needs two returns).
    #[must_use]
    pub fn new(window: usize) -> Self {
        let window = window.max(2);
        Self {
            window,
            returns: VecDeque::with_capacity(window),
            minute: None,
            close: None,
            prev_close: None,
            sum: Decimal::ZERO,
            sum_sq: Decimal::ZERO,
            cached: None,
        }
    }

    /// The window, in one-minute returns.
    #[must_use]
    pub fn window(&self) -> usize {
        self.window
    }

    /// Returns currently held (at most the window).
    #[must_use]
    pub fn len(&self) -> usize {
        self.returns.len()
    }

    /// `true` before the first finished return.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.returns.is_empty()
    }

    /// Feeds one price at `ts`. Non-positive prices and ticks from a minute before the
    /// current one are ignored (the return is `false`); the caller validates prices.
    pub fn on_price(&mut self, price: Decimal, ts: DateTime<Utc>) -> bool {
        if price <= Decimal::ZERO {
            return false;
        }
        let minute = ts.timestamp().div_euclid(60);
        match self.minute {
            None => {
                self.minute = Some(minute);
                self.close = Some(price);
            }
            Some(current) if minute == current => self.close = Some(price),
            Some(current) if minute < current => return false,
            Some(current) => {
                if let Some(close) = self.close {
                    if let Some(prev) = self.prev_close {
                        self.push(log_return(close, prev));
                    }
                    self.prev_close = Some(close);
                    // Minutes without ticks repeat the close: zero returns.
                    let gap = usize::try_from(minute - current - 1).unwrap_or(usize::MAX);
                    for _ in 0..gap.min(self.window) {
                        self.push(Decimal::ZERO);
                    }
                }
                self.minute = Some(minute);
                self.close = Some(price);
            }
        }
        true
    }

    /// Sample standard deviation of the window's log returns, percent; `None` until the
    /// window is full.
    #[must_use]
    pub fn volatility_pct(&self) -> Option<Decimal> {
        self.cached
    }

    fn push(&mut self, r: Decimal) {
        if self.returns.len() == self.window
            && let Some(old) = self.returns.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= square(old);
        }
        self.returns.push_back(r);
        self.sum += r;
        self.sum_sq += square(r);
        self.cached = self.compute();
    }

    fn compute(&self) -> Option<Decimal> {
        if self.returns.len() < self.window {
            return None;
        }
        let n = Decimal::from(self.returns.len());
        let mean_sq = self.sum.checked_mul(self.sum)?.checked_div(n)?;
        let var = (self.sum_sq - mean_sq).checked_div(n - Decimal::ONE)?;
        let sd = var.max(Decimal::ZERO).to_f64()?.sqrt();
        Some((Decimal::from_f64(sd)? * Decimal::ONE_HUNDRED).round_dp(RETURN_DP))
    }
}

fn square(r: Decimal) -> Decimal {
    r.checked_mul(r).unwrap_or(Decimal::MAX).round_dp(RETURN_DP)
}

fn log_return(close: Decimal, prev: Decimal) -> Decimal {
    close
        .checked_div(prev)
        .and_then(|ratio| ratio.to_f64())
        .filter(|ratio| *ratio > 0.0)
        .and_then(|ratio| Decimal::from_f64(ratio.ln()))
        .unwrap_or(Decimal::ZERO)
        .round_dp(RETURN_DP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use rust_decimal::MathematicalOps;
    use rust_decimal_macros::dec;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    /// Reference: two-pass sample standard deviation, percent.
    fn reference(returns: &[Decimal]) -> Decimal {
        let n = Decimal::from(returns.len());
        let mean = returns.iter().sum::<Decimal>() / n;
        let var = returns
            .iter()
            .map(|r| (r - mean) * (r - mean))
            .sum::<Decimal>()
            / (n - Decimal::ONE);
        var.sqrt().unwrap() * Decimal::ONE_HUNDRED
    }

    #[test]
    fn none_until_window_full_then_matches_reference() {
        let mut v = RollingVolatility::new(3);
        let prices = [dec!(100), dec!(101), dec!(99), dec!(102), dec!(103)];
        for (i, p) in prices.iter().enumerate() {
            v.on_price(*p, t0() + Duration::minutes(i as i64));
        }
        // Closes 100,101,99,102 are finished (103 is still building): 3 returns.
        assert_eq!(v.len(), 3);
        let expect = reference(&[
            (dec!(101) / dec!(100)).ln(),
            (dec!(99) / dec!(101)).ln(),
            (dec!(102) / dec!(99)).ln(),
        ]);
        let got = v.volatility_pct().unwrap();
        assert!((got - expect).abs() < dec!(0.000001), "{got} vs {expect}");
        // ~2.4 %: a sanity anchor for the unit.
        assert!(got > dec!(2) && got < dec!(3), "{got}");
    }

    #[test]
    fn last_tick_of_a_minute_is_the_close() {
        let mut v = RollingVolatility::new(2);
        v.on_price(dec!(100), t0());
        v.on_price(dec!(200), t0() + Duration::seconds(10));
        v.on_price(dec!(100), t0() + Duration::seconds(59)); // close of minute 0
        v.on_price(dec!(100), t0() + Duration::seconds(60)); // close of minute 1
        v.on_price(dec!(100), t0() + Duration::seconds(120)); // close of minute 2
        v.on_price(dec!(100), t0() + Duration::seconds(180));
        assert_eq!(v.len(), 2);
        assert_eq!(v.volatility_pct(), Some(Decimal::ZERO));
    }

    #[test]
    fn gaps_are_zero_returns_and_old_ticks_are_ignored() {
        let mut v = RollingVolatility::new(4);
        v.on_price(dec!(100), t0());
        v.on_price(dec!(110), t0() + Duration::minutes(1));
        v.on_price(dec!(110), t0() + Duration::minutes(5));
        // returns: ln(1.1), then minutes 2,3,4 repeat 110: three zeros.
        assert_eq!(v.len(), 4);
        assert!(!v.on_price(dec!(1), t0() + Duration::minutes(4)));
        assert!(!v.on_price(dec!(0), t0() + Duration::minutes(6)));
        let expect = reference(&[(dec!(1.1)).ln(), dec!(0), dec!(0), dec!(0)]);
        let got = v.volatility_pct().unwrap();
        assert!((got - expect).abs() < dec!(0.000001));
    }

    #[test]
    fn serde_round_trip_restores_sums() {
        let mut v = RollingVolatility::new(3);
        for (i, p) in [dec!(1), dec!(1.2), dec!(0.9), dec!(1.05), dec!(1.01)]
            .iter()
            .enumerate()
        {
            v.on_price(*p, t0() + Duration::minutes(i as i64));
        }
        let json = serde_json::to_string(&v).unwrap();
        let back: RollingVolatility = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.volatility_pct(), v.volatility_pct());
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_running_sums_equal_recomputation(
            window in 2usize..8,
            ticks in prop::collection::vec((1i64..500_000, 0i64..150), 1..120),
        ) {
            let mut v = RollingVolatility::new(window);
            let mut ts = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            for (p, step) in ticks {
                ts += Duration::seconds(step);
                v.on_price(Decimal::new(p, 4), ts);
            }
            let fresh: RollingVolatility =
                serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            prop_assert_eq!(v.sum, fresh.sum);
            prop_assert_eq!(v.sum_sq, fresh.sum_sq);
            prop_assert!(v.len() <= window);
            if let Some(pct) = v.volatility_pct() {
                prop_assert!(pct >= Decimal::ZERO);
            }
        }
    }
}
