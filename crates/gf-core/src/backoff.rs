//! Exponential backoff, shared by every reconnecting or retrying task: the public market
//! feed and the private `executions` feed (full jitter), start-up calls, Kraken REST
//! retries, the halt's cancel-all and closure rounds and alert deliveries (no jitter). One
//! rule, one implementation: the n-th delay's bound is `min(max, initial * 2^n)`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff: the bound of the n-th delay (0-based) is `min(max, initial * 2^n)`,
/// saturating, never above `max`. With full jitter ([`Backoff::new`],
/// [`Backoff::with_seed`]) each delay is uniform in `[0, bound]`, so that many clients
/// reconnecting at once spread out; without ([`Backoff::exponential`]) each delay is the
/// bound itself, as a retry schedule a test or an operator can predict.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    /// The jitter generator's state; `None` without jitter.
    jitter: Option<u64>,
}

impl Backoff {
    /// A full-jitter backoff seeded from the process's random hasher keys.
    #[must_use]
    pub fn new(initial: Duration, max: Duration) -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Self::with_seed(initial, max, h.finish())
    }

    /// A full-jitter backoff whose delays are a function of `seed` (for tests).
    #[must_use]
    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
            jitter: Some(seed),
        }
    }

    /// A backoff without jitter: `initial`, `2 * initial`, `4 * initial`… up to `max`
    /// (`Duration::MAX` for no cap).
    #[must_use]
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
            jitter: None,
        }
    }

    /// The bound of the delay after `failures` earlier delays (`initial` for 0), whatever
    /// this backoff's own progress: for a retry loop that counts its attempts itself.
    #[must_use]
    pub fn ceiling_after(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The bound of the next delay.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        self.ceiling_after(self.attempt)
    }

    /// Delays handed out since the start or the last [`Backoff::reset`].
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next delay; grows the bound.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let Some(state) = self.jitter.as_mut() else {
            return ceiling;
        };
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(splitmix(state) % nanos.saturating_add(1))
    }

    /// Back to the initial bound (after a healthy connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// One step of splitmix64: a fast, well-mixed 64-bit sequence from `state` (not for
/// secrets; for jitter and reproducible test data).
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_full_jitter_and_resets() {
        let mut b = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(2), 42);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(
            ceilings,
            vec![100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000]
        );
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        // Jitter: delays are not all equal.
        let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(1), 7);
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10);
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.next_delay(), Duration::ZERO);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn exponential_grows_by_doubling_without_jitter() {
        let mut b = Backoff::exponential(Duration::from_millis(50), Duration::MAX);
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![50, 100, 200, 400, 800, 1600]);
        assert_eq!(b.attempts(), 6);
        assert_eq!(
            b.ceiling_after(3),
            Duration::from_millis(400),
            "stateless: the bound after three failures"
        );
    }

    #[test]
    fn the_cap_is_never_exceeded_and_saturates_instead_of_overflowing() {
        let mut b = Backoff::exponential(Duration::from_millis(200), Duration::from_secs(10));
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            vec![200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        // A first delay above the cap is cut to the cap.
        let mut big = Backoff::exponential(Duration::from_secs(20), Duration::from_secs(10));
        assert_eq!(big.next_delay(), Duration::from_secs(10));
        // No cap: huge attempt counts saturate, they never wrap or panic.
        let open = Backoff::exponential(Duration::from_secs(1), Duration::MAX);
        assert_eq!(open.ceiling_after(31), Duration::from_secs(1 << 31));
        assert_eq!(open.ceiling_after(u32::MAX), open.ceiling_after(32));
        let huge = Backoff::exponential(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling_after(40), Duration::MAX);
    }

    #[test]
    fn reset_starts_the_schedule_again() {
        let mut b = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1));
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_millis(320));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(), Duration::from_millis(10));
        assert_eq!(b.next_delay(), Duration::from_millis(20));
    }

    #[test]
    fn jitter_is_deterministic_for_a_seed_and_differs_between_seeds() {
        let run = |seed| {
            let mut b =
                Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), seed);
            (0..12).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        // Full jitter: every delay within its bound, and the bounds are the
        // exponential schedule's.
        let mut jittered =
            Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), 9);
        let mut plain = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..12 {
            assert_eq!(jittered.ceiling(), plain.ceiling());
            let bound = plain.next_delay();
            assert!(jittered.next_delay() <= bound);
        }
    }
}
