//! A client-side rate limiter modelled on Kraken's decaying API counter, with a priority
//! lane for halt-closure traffic.
//!
//! Kraken keeps a per-key counter that each call raises (by 1 for most private calls) and
//! that decays at a tier-dependent rate; calls beyond the tier's maximum are refused with
//! `EAPI:Rate limit exceeded`. Order placement and cancellation count on a separate
//! matching-engine counter with larger limits. [`RateLimiter`] mirrors one such counter so
//! the client waits instead of being refused.
//!
//! Normal calls wait in FIFO order and may only fill the counter up to `max - reserve`;
//! [`Lane::Priority`] calls (halt-closure orders, cancel-all, the dead man's switch) never
//! queue behind them and may use the reserved headroom.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::Error;

/// One counter's limits: the maximum and the decay, in thousandths of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The counter's maximum, in points.
    pub max: u32,
    /// Decay per second, in thousandths of a point (`330` = 0.33/s).
    pub decay_milli_per_sec: u32,
    /// Points kept free for the priority lane.
    pub priority_reserve: u32,
}

/// Kraken verification tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Starter: REST max 15, decay 0.33/s; engine threshold 60, decay 1/s.
    Starter,
    /// Intermediate: REST max 20, decay 0.5/s; engine threshold 125, decay 2.34/s.
    Intermediate,
    /// Pro: REST max 20, decay 1/s; engine threshold 180, decay 3.75/s.
    Pro,
}

impl std::str::FromStr for Tier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "starter" => Ok(Tier::Starter),
            "intermediate" => Ok(Tier::Intermediate),
            "pro" => Ok(Tier::Pro),
            other => Err(Error::Config {
                key: "exchange.tier".into(),
                value: other.into(),
                reason: "expected starter, intermediate or pro".into(),
            }),
        }
    }
}

impl Tier {
    /// The REST API counter (per key) of this tier, with 2 points reserved for priority.
    #[must_use]
    pub fn rest_limits(self) -> Limits {
        let (max, decay_milli_per_sec) = match self {
            Tier::Starter => (15, 330),
            Tier::Intermediate => (20, 500),
            Tier::Pro => (20, 1000),
        };
        Limits {
            max,
            decay_milli_per_sec,
            priority_reserve: 2,
        }
    }

    /// The matching-engine counter of this tier (orders and cancels), with 10 points
    /// reserved for priority.
    #[must_use]
    pub fn trading_limits(self) -> Limits {
        let (max, decay_milli_per_sec) = match self {
            Tier::Starter => (60, 1000),
            Tier::Intermediate => (125, 2340),
            Tier::Pro => (180, 3750),
        };
        Limits {
            max,
            decay_milli_per_sec,
            priority_reserve: 10,
        }
    }
}

/// Which lane a call waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Ordinary traffic: FIFO, capped below the maximum by the priority reserve.
    Normal,
    /// Halt traffic: never queues behind normal calls; may use the whole counter.
    Priority,
}

#[derive(Debug)]
struct State {
    counter_milli: u64,
    at: Instant,
}

/// A decaying counter that makes callers wait until their cost fits.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    state: Mutex<State>,
    fifo: tokio::sync::Mutex<()>,
    peak_milli: AtomicU64,
}

impl RateLimiter {
    /// A limiter with an empty counter.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        let reserve = limits.priority_reserve.min(limits.max.saturating_sub(1));
        Self {
            limits: Limits {
                priority_reserve: reserve,
                ..limits
            },
            state: Mutex::new(State {
                counter_milli: 0,
                at: Instant::now(),
            }),
            fifo: tokio::sync::Mutex::new(()),
            peak_milli: AtomicU64::new(0),
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn decay(&self, s: &mut State, now: Instant) {
        let rate = u128::from(self.limits.decay_milli_per_sec.max(1));
        let elapsed = now.saturating_duration_since(s.at).as_micros();
        let decayed = elapsed * rate / 1_000_000;
        if decayed >= u128::from(s.counter_milli) {
            s.counter_milli = 0;
            s.at = now;
        } else {
            // `decayed` < counter, so it fits in u64; advance only by the time it stands for
            // so that rounding never loses decay.
            s.counter_milli -= u64::try_from(decayed).unwrap_or(0);
            let used = u64::try_from(decayed * 1_000_000 / rate).unwrap_or(0);
            s.at += Duration::from_micros(used);
        }
    }

    /// Tries to take `cost` points now; on failure returns how long to wait.
    fn try_take(&self, lane: Lane, cost: u32) -> Result<(), Duration> {
        let cap = u64::from(match lane {
            Lane::Normal => self.limits.max - self.limits.priority_reserve,
            Lane::Priority => self.limits.max,
        }) * 1000;
        let cost = (u64::from(cost) * 1000).min(cap);
        let now = Instant::now();
        let mut s = self.state.lock();
        self.decay(&mut s, now);
        if s.counter_milli + cost <= cap {
            s.counter_milli += cost;
            self.peak_milli
                .fetch_max(s.counter_milli, Ordering::Relaxed);
            return Ok(());
        }
        let excess = s.counter_milli + cost - cap;
        let rate = u64::from(self.limits.decay_milli_per_sec.max(1));
        Err(Duration::from_micros((excess * 1_000_000).div_ceil(rate))
            .max(Duration::from_millis(1)))
    }

    /// Waits until `cost` points fit, then takes them. Cancellation-safe: a dropped
    /// future takes nothing.
    pub async fn acquire(&self, lane: Lane, cost: u32) {
        if cost == 0 {
            return;
        }
        let _turn = match lane {
            Lane::Normal => Some(self.fifo.lock().await),
            Lane::Priority => None,
        };
        loop {
            match self.try_take(lane, cost) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Raises the counter to the normal lane's cap (after the exchange said "rate limit
    /// exceeded": its counter is fuller than ours), so normal calls wait for decay while
    /// the priority lane keeps its reserve.
    pub fn saturate(&self) {
        let cap = u64::from(self.limits.max - self.limits.priority_reserve) * 1000;
        let mut s = self.state.lock();
        self.decay(&mut s, Instant::now());
        s.counter_milli = s.counter_milli.max(cap);
    }

    /// The current counter, in thousandths of a point.
    #[must_use]
    pub fn level_milli(&self) -> u64 {
        let mut s = self.state.lock();
        self.decay(&mut s, Instant::now());
        s.counter_milli
    }

    /// The highest counter value reached so far, in thousandths of a point.
    #[must_use]
    pub fn peak_milli(&self) -> u64 {
        self.peak_milli.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limits(max: u32, decay: u32, reserve: u32) -> Limits {
        Limits {
            max,
            decay_milli_per_sec: decay,
            priority_reserve: reserve,
        }
    }

    #[test]
    fn tiers_match_krakens_table() {
        assert_eq!("starter".parse::<Tier>().unwrap().rest_limits().max, 15);
        assert_eq!(Tier::Intermediate.rest_limits().decay_milli_per_sec, 500);
        assert_eq!(Tier::Pro.rest_limits().decay_milli_per_sec, 1000);
        assert_eq!(Tier::Pro.trading_limits().max, 180);
        let err = "gold".parse::<Tier>().unwrap_err().to_string();
        assert!(err.contains("gold") && err.contains("exchange.tier"));
    }

    #[tokio::test(start_paused = true)]
    async fn normal_calls_wait_for_decay_and_never_exceed_cap() {
        let rl = RateLimiter::new(limits(15, 330, 2));
        let start = Instant::now();
        for _ in 0..13 {
            rl.acquire(Lane::Normal, 1).await;
        }
        assert_eq!(
            Instant::now(),
            start,
            "13 calls fit in the normal cap at once"
        );
        rl.acquire(Lane::Normal, 1).await;
        let waited = Instant::now() - start;
        // One point at 0.33/s takes ~3.03 s to decay.
        assert!(
            waited >= Duration::from_millis(3000) && waited < Duration::from_millis(3100),
            "{waited:?}"
        );
        assert!(rl.peak_milli() <= 13_000);
    }

    #[tokio::test(start_paused = true)]
    async fn priority_lane_uses_reserve_without_waiting() {
        let rl = RateLimiter::new(limits(15, 330, 2));
        for _ in 0..13 {
            rl.acquire(Lane::Normal, 1).await;
        }
        let start = Instant::now();
        rl.acquire(Lane::Priority, 1).await;
        rl.acquire(Lane::Priority, 1).await;
        assert_eq!(Instant::now(), start);
        assert_eq!(rl.peak_milli(), 15_000);
    }

    #[tokio::test(start_paused = true)]
    async fn priority_does_not_queue_behind_waiting_normal_calls() {
        let rl = Arc::new(RateLimiter::new(limits(10, 1000, 3)));
        for _ in 0..7 {
            rl.acquire(Lane::Normal, 1).await;
        }
        // Ten normal calls now queue for decay.
        let mut waiting = Vec::new();
        for _ in 0..10 {
            let rl = rl.clone();
            waiting.push(tokio::spawn(async move {
                rl.acquire(Lane::Normal, 1).await;
                Instant::now()
            }));
        }
        tokio::task::yield_now().await;
        let start = Instant::now();
        rl.acquire(Lane::Priority, 1).await;
        assert_eq!(
            Instant::now(),
            start,
            "the closure order went straight through"
        );
        let mut last = start;
        for w in waiting {
            last = last.max(w.await.unwrap());
        }
        assert!(last - start >= Duration::from_secs(10));
        assert!(rl.peak_milli() <= 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_cost_is_free_and_oversized_cost_is_clamped() {
        let rl = RateLimiter::new(limits(5, 1000, 1));
        rl.acquire(Lane::Normal, 0).await;
        assert_eq!(rl.level_milli(), 0);
        rl.acquire(Lane::Normal, 100).await;
        assert_eq!(rl.level_milli(), 4_000);
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(rl.level_milli(), 1_500);
        rl.saturate();
        assert_eq!(rl.level_milli(), 4_000);
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_counter_never_exceeds_max(
            calls in proptest::collection::vec((any::<bool>(), 1u32..4, 0u64..3000), 1..60),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let rl = RateLimiter::new(Limits { max: 15, decay_milli_per_sec: 330, priority_reserve: 2 });
                for (priority, cost, gap_ms) in calls {
                    tokio::time::advance(Duration::from_millis(gap_ms)).await;
                    let lane = if priority { Lane::Priority } else { Lane::Normal };
                    rl.acquire(lane, cost).await;
                    prop_assert!(rl.level_milli() <= 15_000);
                }
                prop_assert!(rl.peak_milli() <= 15_000);
                Ok(())
            })?;
        }
    }
}
