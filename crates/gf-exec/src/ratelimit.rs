//! A client-side rate limiter modelled on Kraken's decaying API counter, split into lanes
//! that each keep a guaranteed share, so no kind of traffic can starve another.
//!
//! Kraken keeps a per-key counter that each call raises (by 1 for most private calls) and
//! that decays at a tier-dependent rate (docs.kraken.com, "Spot REST Rate Limits": Starter
//! max 15, −0.33/s; Intermediate 20, −0.5/s; Pro 20, −1/s); calls beyond the maximum are
//! refused with `EAPI:Rate limit exceeded`. Order placement and cancellation count on a
//! separate matching-engine counter with larger limits. [`RateLimiter`] mirrors one such
//! counter so the client waits instead of being refused.
//!
//! # Lanes and shares
//!
//! The counter is divided into one sub-counter per [`Lane`] — the dead man's switch
//! refresh, order-status sync, halt traffic (cancels, closure, reconciliation) and
//! everything else — each with its own capacity and its own share of the decay rate
//! ([`LanePlan`], [`RateLimiter::shares`]). A lane waits only for its own sub-counter, so
//! a busy lane (a 12 s switch refreshing every 3 s, a polling loop) slows itself down and
//! nobody else. [`Lane::Priority`] may also borrow the normal lane's headroom: a halt
//! outranks strategy reads.
//!
//! Why this never exceeds Kraken's counter: the capacities add up to at most the tier's
//! maximum, and the shares of the decay add up to exactly its rate. Kraken's counter rises
//! by the same costs and falls at the full rate whenever it is above zero; the sum of the
//! sub-counters falls at most that fast (an empty sub-counter's share decays nothing). So
//! the sum stays at or above Kraken's counter, and at or below the maximum. The price is
//! that an idle lane's share of the decay is unused.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

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

/// Kraken verification tiers (`exchange.tier`).
pub use gf_core::config::Tier;

impl Limits {
    /// The REST API counter (per key) of `tier` (the table is
    /// [`Tier::rest_counter`]), with 2 points reserved for priority.
    #[must_use]
    pub fn rest(tier: Tier) -> Self {
        let (max, decay_milli_per_sec) = tier.rest_counter();
        Self {
            max,
            decay_milli_per_sec,
            priority_reserve: 2,
        }
    }

    /// The matching-engine counter of `tier` (orders and cancels: Starter threshold 60,
    /// decay 1/s; Intermediate 125, 2.34/s; Pro 180, 3.75/s), with 10 points reserved for
    /// priority.
    #[must_use]
    pub fn trading(tier: Tier) -> Self {
        let (max, decay_milli_per_sec) = match tier {
            Tier::Starter => (60, 1000),
            Tier::Intermediate => (125, 2340),
            Tier::Pro => (180, 3750),
        };
        Self {
            max,
            decay_milli_per_sec,
            priority_reserve: 10,
        }
    }
}

/// Which lane a call waits in. Each lane has a guaranteed share of the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The dead man's switch refresh (`CancelAllOrdersAfter`).
    DeadMan,
    /// Halt traffic: cancels, cancel-all, closure orders, reconciliation look-ups. May
    /// also use the normal lane's headroom.
    Priority,
    /// Order-status sync: how fills are detected.
    Sync,
    /// Everything else (strategy orders, balance and order reads).
    Normal,
}

impl Lane {
    const ALL: [Lane; 4] = [Lane::DeadMan, Lane::Priority, Lane::Sync, Lane::Normal];

    fn index(self) -> usize {
        match self {
            Lane::DeadMan => 0,
            Lane::Priority => 1,
            Lane::Sync => 2,
            Lane::Normal => 3,
        }
    }
}

/// Which lanes a counter serves besides [`Lane::Priority`] and [`Lane::Normal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LanePlan {
    /// How often the dead man's switch is refreshed (one point each), if it runs on this
    /// counter.
    pub dead_man_every: Option<Duration>,
    /// Whether order-status sync runs on this counter.
    pub sync: bool,
}

/// Share of the decay left after the dead man's switch, in percent, for the priority and
/// sync lanes (the normal lane has the rest); `config check` judges switch timeouts with
/// the same numbers (`gf_core::config::rest_budget`).
const PRIORITY_PCT: u64 = gf_core::config::REST_PRIORITY_SHARE_PCT;
const SYNC_PCT: u64 = gf_core::config::REST_SYNC_SHARE_PCT;
/// The priority lane's share on a counter without sync (the matching-engine counter).
const PRIORITY_PCT_WITHOUT_SYNC: u64 = 30;

/// One lane's share: capacity and decay, thousandths of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The lane's capacity.
    pub cap_milli: u64,
    /// The lane's share of the decay, per second.
    pub rate_milli_per_sec: u64,
}

impl LanePlan {
    /// Thousandths of a point per second the dead man's switch needs (one point per
    /// refresh), at most half the counter's decay.
    fn dead_man_rate(self, decay_milli_per_sec: u64) -> u64 {
        self.dead_man_every.map_or(0, |every| {
            let millis = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
            1_000_000u64.div_ceil(millis).min(decay_milli_per_sec / 2)
        })
    }

    /// The shares of `limits` by lane ([`Lane::DeadMan`], [`Lane::Priority`],
    /// [`Lane::Sync`], [`Lane::Normal`]); capacities add up to at most the maximum, rates
    /// to exactly the decay.
    #[must_use]
    pub fn shares(self, limits: Limits) -> [Share; 4] {
        let max = u64::from(limits.max);
        let rate = u64::from(limits.decay_milli_per_sec.max(1));
        let mut left = max;
        let mut take = |want: u64| {
            let got = want.min(left);
            left -= got;
            got
        };
        let priority = take(u64::from(limits.priority_reserve).max(max / 4).max(1));
        let dead_man = take(if self.dead_man_every.is_some() { 2 } else { 0 });
        let sync = take(if self.sync { (max / 5).max(1) } else { 0 });
        let normal = left;
        let dm_rate = self.dead_man_rate(rate);
        let rest = rate - dm_rate;
        let (p_rate, s_rate) = if self.sync {
            (rest * PRIORITY_PCT / 100, rest * SYNC_PCT / 100)
        } else {
            (rest * PRIORITY_PCT_WITHOUT_SYNC / 100, 0)
        };
        let n_rate = rest - p_rate - s_rate;
        let share = |cap: u64, rate_milli_per_sec: u64| Share {
            cap_milli: cap * 1000,
            rate_milli_per_sec,
        };
        [
            share(dead_man, dm_rate),
            share(priority, p_rate),
            share(sync, s_rate),
            share(normal, n_rate),
        ]
    }
}

#[derive(Debug)]
struct Bucket {
    share: Share,
    counter_milli: u64,
    at: Instant,
}

impl Bucket {
    fn decay(&mut self, now: Instant) {
        let rate = u128::from(self.share.rate_milli_per_sec);
        if rate == 0 {
            self.at = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.at).as_micros();
        let decayed = elapsed * rate / 1_000_000;
        if decayed >= u128::from(self.counter_milli) {
            self.counter_milli = 0;
            self.at = now;
        } else {
            // `decayed` < counter, so it fits in u64; advance only by the time it stands for
            // so that rounding never loses decay.
            self.counter_milli -= u64::try_from(decayed).unwrap_or(0);
            let used = u64::try_from(decayed * 1_000_000 / rate).unwrap_or(0);
            self.at += Duration::from_micros(used);
        }
    }

    fn fits(&self, cost: u64) -> bool {
        self.counter_milli + cost <= self.share.cap_milli
    }

    /// How long until `cost` fits (`None`: never, this bucket has no decay).
    fn wait_for(&self, cost: u64) -> Option<Duration> {
        let excess = (self.counter_milli + cost).saturating_sub(self.share.cap_milli);
        let rate = self.share.rate_milli_per_sec;
        (rate > 0).then(|| {
            Duration::from_micros((excess * 1_000_000).div_ceil(rate)).max(Duration::from_millis(1))
        })
    }
}

/// Counts one call as waiting until dropped (also when the waiting future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A decaying counter split into lanes; callers wait until their cost fits their lane.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    buckets: Mutex<[Bucket; 4]>,
    turns: [tokio::sync::Mutex<()>; 4],
    peak_milli: AtomicU64,
    /// Per lane: calls inside [`RateLimiter::acquire`] that have not got their points yet.
    waiting: [AtomicUsize; 4],
}

impl RateLimiter {
    /// A limiter with an empty counter serving the priority and normal lanes (the
    /// matching-engine counter).
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self::with_lanes(limits, LanePlan::default())
    }

    /// A limiter with an empty counter shared out by `plan`.
    #[must_use]
    pub fn with_lanes(limits: Limits, plan: LanePlan) -> Self {
        let now = Instant::now();
        let shares = plan.shares(limits);
        Self {
            limits,
            buckets: Mutex::new(shares.map(|share| Bucket {
                share,
                counter_milli: 0,
                at: now,
            })),
            turns: Default::default(),
            peak_milli: AtomicU64::new(0),
            waiting: Default::default(),
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Each lane's share, in the order [`Lane::DeadMan`], [`Lane::Priority`],
    /// [`Lane::Sync`], [`Lane::Normal`].
    #[must_use]
    pub fn shares(&self) -> [Share; 4] {
        let b = self.buckets.lock();
        [b[0].share, b[1].share, b[2].share, b[3].share]
    }

    /// The bucket a lane draws on: its own, or the priority lane's when it has no share.
    fn home(buckets: &[Bucket; 4], lane: Lane) -> usize {
        let own = lane.index();
        if buckets[own].share.cap_milli == 0 {
            Lane::Priority.index()
        } else {
            own
        }
    }

    /// Tries to take `cost` points now; on failure returns how long to wait.
    fn try_take(&self, lane: Lane, cost: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        for b in buckets.iter_mut() {
            b.decay(now);
        }
        let home = Self::home(&buckets, lane);
        let cost = (u64::from(cost) * 1000).min(buckets[home].share.cap_milli);
        let mut candidates = vec![home];
        if home == Lane::Priority.index() {
            candidates.push(Lane::Normal.index());
        }
        let mut wait = Duration::MAX;
        for i in candidates {
            let bucket = &mut buckets[i];
            if cost <= bucket.share.cap_milli && bucket.fits(cost) {
                bucket.counter_milli += cost;
                let total: u64 = buckets.iter().map(|b| b.counter_milli).sum();
                self.peak_milli.fetch_max(total, Ordering::Relaxed);
                return Ok(());
            }
            if let Some(w) = bucket.wait_for(cost) {
                wait = wait.min(w);
            }
        }
        Err(if wait == Duration::MAX {
            Duration::from_secs(1)
        } else {
            wait
        })
    }

    /// Waits until `cost` points fit the lane's share, then takes them; calls in one lane
    /// are served in FIFO order. Cancellation-safe: a dropped future takes nothing.
    pub async fn acquire(&self, lane: Lane, cost: u32) {
        if cost == 0 {
            return;
        }
        let _waiting = Waiting::enter(&self.waiting[lane.index()]);
        let _turn = self.turns[lane.index()].lock().await;
        loop {
            match self.try_take(lane, cost) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Calls in `lane` waiting in [`RateLimiter::acquire`] right now (queued behind
    /// another call of the lane or waiting for decay).
    #[must_use]
    pub fn waiting(&self, lane: Lane) -> usize {
        self.waiting[lane.index()].load(Ordering::SeqCst)
    }

    /// Fills the normal and sync lanes (after the exchange said "rate limit exceeded":
    /// its counter is fuller than ours), so they wait for decay while the dead man's switch
    /// and halt traffic keep their shares.
    pub fn saturate(&self) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        for lane in [Lane::Sync, Lane::Normal] {
            let b = &mut buckets[lane.index()];
            b.decay(now);
            b.counter_milli = b.share.cap_milli;
        }
    }

    /// The current counter (all lanes), in thousandths of a point.
    #[must_use]
    pub fn level_milli(&self) -> u64 {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        buckets
            .iter_mut()
            .map(|b| {
                b.decay(now);
                b.counter_milli
            })
            .sum()
    }

    /// One lane's current sub-counter, in thousandths of a point.
    #[must_use]
    pub fn lane_level_milli(&self, lane: Lane) -> u64 {
        let mut buckets = self.buckets.lock();
        let b = &mut buckets[lane.index()];
        b.decay(Instant::now());
        b.counter_milli
    }

    /// The highest counter value (all lanes) reached so far, in thousandths of a point.
    #[must_use]
    pub fn peak_milli(&self) -> u64 {
        self.peak_milli.load(Ordering::Relaxed)
    }

    /// The lanes, for iteration in tests and metrics.
    #[must_use]
    pub fn lanes() -> [Lane; 4] {
        Lane::ALL
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
        assert_eq!(Limits::rest(Tier::Starter).max, 15);
        assert_eq!(Limits::rest(Tier::Intermediate).decay_milli_per_sec, 500);
        assert_eq!(Limits::rest(Tier::Pro).decay_milli_per_sec, 1000);
        assert_eq!(Limits::trading(Tier::Pro).max, 180);
        assert_eq!(
            Limits::trading(Tier::Intermediate).decay_milli_per_sec,
            2340
        );
    }

    #[tokio::test(start_paused = true)]
    async fn normal_calls_wait_for_their_share_of_decay_and_never_exceed_cap() {
        // Priority keeps max(2, 15/4) = 3 points and 30 % of the decay; normal has the
        // other 12 points and 0.231/s.
        let rl = RateLimiter::new(limits(15, 330, 2));
        let shares = rl.shares();
        assert_eq!(shares[1].cap_milli, 3_000);
        assert_eq!(shares[3].cap_milli, 12_000);
        assert_eq!(
            shares.iter().map(|s| s.rate_milli_per_sec).sum::<u64>(),
            330
        );
        let start = Instant::now();
        for _ in 0..12 {
            rl.acquire(Lane::Normal, 1).await;
        }
        assert_eq!(
            Instant::now(),
            start,
            "12 calls fit the normal share at once"
        );
        rl.acquire(Lane::Normal, 1).await;
        let waited = Instant::now() - start;
        // One point at 0.231/s takes ~4.33 s to decay.
        assert!(
            waited >= Duration::from_millis(4300) && waited < Duration::from_millis(4400),
            "{waited:?}"
        );
        assert!(rl.peak_milli() <= 12_000);
    }

    #[tokio::test(start_paused = true)]
    async fn priority_lane_uses_its_share_without_waiting() {
        let rl = RateLimiter::new(limits(15, 330, 2));
        for _ in 0..12 {
            rl.acquire(Lane::Normal, 1).await;
        }
        let start = Instant::now();
        for _ in 0..3 {
            rl.acquire(Lane::Priority, 1).await;
        }
        assert_eq!(Instant::now(), start);
        assert_eq!(rl.peak_milli(), 15_000);
    }

    #[tokio::test(start_paused = true)]
    async fn priority_borrows_normal_headroom_but_not_the_other_way() {
        let rl = RateLimiter::new(limits(15, 330, 2));
        let start = Instant::now();
        for _ in 0..15 {
            rl.acquire(Lane::Priority, 1).await;
        }
        assert_eq!(Instant::now(), start, "3 own points, then 12 borrowed");
        assert_eq!(rl.level_milli(), 15_000);
        assert_eq!(rl.lane_level_milli(Lane::Priority), 3_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_twelve_second_switch_on_starter_cannot_starve_order_sync() {
        // The finding: a 12 s switch refreshed every 3 s needs 0.33 points/s — all of
        // Starter's decay. Its lane gets at most half; sync keeps its share.
        let plan = LanePlan {
            dead_man_every: Some(Duration::from_secs(3)),
            sync: true,
        };
        let rl = Arc::new(RateLimiter::with_lanes(Limits::rest(Tier::Starter), plan));
        let shares = rl.shares();
        assert_eq!(shares[0].rate_milli_per_sec, 165);
        assert_eq!(
            shares.iter().map(|s| s.cap_milli).sum::<u64>(),
            15_000,
            "capacities add up to the maximum"
        );
        let count = |lane: Lane| {
            let rl = rl.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                let end = Instant::now() + Duration::from_secs(600);
                loop {
                    rl.acquire(lane, 1).await;
                    if Instant::now() > end {
                        return n;
                    }
                    n += 1;
                }
            })
        };
        // Every lane asks as fast as it can for ten minutes.
        let tasks = Lane::ALL.map(count);
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        let [dead_man, priority, sync, normal] = [got[0], got[1], got[2], got[3]];
        // Sync: 3 points at once, then 0.107/s → about 67 polls in 600 s.
        assert!((60..=75).contains(&sync), "sync polled {sync} times");
        assert!((95..=105).contains(&dead_man), "dead man {dead_man}");
        // Priority borrows from normal's headroom when both are busy; normal still moves.
        assert!(priority >= 16 && normal >= 12, "{priority} {normal}");
        assert!(rl.peak_milli() <= 15_000);
        // 600 s of decay at 0.33/s plus the 15-point start.
        let total = u64::from(dead_man + priority + sync + normal);
        assert!(total <= 15 + 198 + 1, "{total}");
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
    async fn waiting_counts_callers_until_they_get_their_points_or_give_up() {
        let rl = Arc::new(RateLimiter::new(limits(4, 1000, 1)));
        for _ in 0..3 {
            rl.acquire(Lane::Normal, 1).await;
        }
        assert_eq!(rl.waiting(Lane::Normal), 0, "served at once");
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let rl = rl.clone();
                tokio::spawn(async move { rl.acquire(Lane::Normal, 1).await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(rl.waiting(Lane::Normal), 2);
        assert_eq!(rl.waiting(Lane::Priority), 0);
        // A caller that gives up (its future dropped) no longer counts.
        let mut queued = queued.into_iter();
        let (first, second) = (queued.next().unwrap(), queued.next().unwrap());
        second.abort();
        assert!(second.await.unwrap_err().is_cancelled());
        assert_eq!(rl.waiting(Lane::Normal), 1);
        first.await.unwrap();
        assert_eq!(rl.waiting(Lane::Normal), 0, "served after decay");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_cost_is_free_and_oversized_cost_is_clamped() {
        let rl = RateLimiter::new(limits(5, 1000, 1));
        rl.acquire(Lane::Normal, 0).await;
        assert_eq!(rl.level_milli(), 0);
        rl.acquire(Lane::Normal, 100).await;
        assert_eq!(rl.level_milli(), 4_000);
        // Normal decays at 70 % of 1/s.
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(rl.level_milli(), 2_250);
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
            calls in proptest::collection::vec((0usize..4, 1u32..4, 0u64..3000), 1..60),
            dead_man_secs in proptest::option::of(1u64..30),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let plan = LanePlan {
                    dead_man_every: dead_man_secs.map(Duration::from_secs),
                    sync: true,
                };
                let rl = RateLimiter::with_lanes(Limits::rest(Tier::Starter), plan);
                for (lane, cost, gap_ms) in calls {
                    tokio::time::advance(Duration::from_millis(gap_ms)).await;
                    let lane = RateLimiter::lanes()[lane];
                    rl.acquire(lane, cost).await;
                    prop_assert!(rl.level_milli() <= 15_000);
                }
                prop_assert!(rl.peak_milli() <= 15_000);
                Ok(())
            })?;
        }
    }
}
