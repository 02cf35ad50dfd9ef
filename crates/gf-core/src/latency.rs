//! Latency samples of the pipeline's hot stages, recorded straight into a shared sink.
//!
//! A market message arrives hundreds of times a second; publishing a
//! [`Payload::Latency`](crate::Payload::Latency) event for each (an allocation and a bus
//! send on the lossy lane) would cost more than the work it measures. The stages on that
//! path record into a [`LatencySink`] instead: the daemon hands every component the same
//! sink (gf-monitor's metrics registry, a few atomic adds per sample) and research code
//! hands none, which records nothing and reads no clock.
//!
//! The stage names are the series gf-monitor exports (`gf_latency_seconds{stage}`):
//! - [`stage::MARKET_INGEST`]: live, the message's exchange timestamp to its receipt
//!   (the daemon's clock); paper, the replayed message's due time (its recorded time
//!   scaled by the replay speed; at full speed, the moment it is read) to its events being
//!   on the bus;
//! - [`stage::BOOK_APPLIED`]: one message parsed and applied to its book, checksum
//!   verified;
//! - [`stage::DECISION`]: a market event's publication (its time stamp) to the strategy's
//!   answer, signal or none;
//! - [`stage::ORDER_SENT`]: a signal (or a gateway request) to the order being handed to
//!   the exchange client;
//! - [`stage::ORDER_ACK`]: the exchange client's call to the exchange's acknowledgement.

use std::sync::Arc;
use std::time::Duration;

/// The stage names (gf-monitor's `STAGES`).
pub mod stage {
    /// Exchange time stamp (live) or due time (replay) to the message's events published.
    pub const MARKET_INGEST: &str = "market_ingest";
    /// One message parsed and applied to its book, checksum included.
    pub const BOOK_APPLIED: &str = "book_applied";
    /// Market event to the strategy's answer.
    pub const DECISION: &str = "decision";
    /// Signal or gateway request to the order handed to the exchange client.
    pub const ORDER_SENT: &str = "order_sent";
    /// Order placed to the exchange's acknowledgement.
    pub const ORDER_ACK: &str = "order_ack";
}

/// Where latency samples go. Implementations must be cheap (tens of nanoseconds) and
/// never block: they are called on the market-data path.
pub trait LatencySink: Send + Sync + std::fmt::Debug {
    /// Records that `stage` took `micros` microseconds.
    fn record(&self, stage: &'static str, micros: u64);
}

/// A shared sink; `None` where one is optional records nothing.
pub type SharedLatency = Arc<dyn LatencySink>;

/// The market-data stages (`market_ingest`, `book_applied`) time one message in this many:
/// the first, then every sixteenth. A timed sample costs two or three clock reads (about
/// 40 ns each on a virtual machine without a fast TSC) besides the ~8 ns of the sample
/// itself — too much to pay on every message of a path budgeted at a few hundred
/// nanoseconds; one in sixteen keeps it under 10 ns a message and the percentiles
/// representative. Their histogram counts are therefore messages ÷ 16.
pub const MARKET_SAMPLE_EVERY: u64 = 16;

/// Whether message number `n` (counted from 1) of a market source is timed.
#[must_use]
#[inline]
pub fn market_sampled(n: u64) -> bool {
    n % MARKET_SAMPLE_EVERY == 1
}

/// A sink that drops every sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLatency;

impl LatencySink for NoLatency {
    #[inline]
    fn record(&self, _stage: &'static str, _micros: u64) {}
}

/// A sink that keeps every sample, in order: for tests and tools, not the hot path.
///
/// ```
/// use gf_core::latency::{LatencyLog, stage};
/// use gf_core::LatencySink;
/// let log = LatencyLog::default();
/// log.record(stage::DECISION, 7);
/// assert_eq!(log.of(stage::DECISION), [7]);
/// ```
#[derive(Debug, Default)]
pub struct LatencyLog {
    samples: std::sync::Mutex<Vec<(&'static str, u64)>>,
}

impl LatencyLog {
    /// Every sample so far, in order.
    #[must_use]
    pub fn samples(&self) -> Vec<(&'static str, u64)> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The samples of one stage, in order.
    #[must_use]
    pub fn of(&self, stage: &str) -> Vec<u64> {
        self.samples()
            .into_iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, us)| us)
            .collect()
    }
}

impl LatencySink for LatencyLog {
    fn record(&self, stage: &'static str, micros: u64) {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((stage, micros));
    }
}

/// The nearest-rank `pct` percentile (0–100) of `sorted` (ascending); zero when empty.
/// Benchmarks report their p50/p90/p99 with it.
///
/// ```
/// use std::time::Duration;
/// let ms = |n| Duration::from_millis(n);
/// let v: Vec<Duration> = (1..=100).map(ms).collect();
/// assert_eq!(gf_core::latency::nearest_rank(&v, 99.0), ms(99));
/// assert_eq!(gf_core::latency::nearest_rank(&v, 50.0), ms(50));
/// assert_eq!(gf_core::latency::nearest_rank(&[], 50.0), Duration::ZERO);
/// ```
#[must_use]
pub fn nearest_rank(sorted: &[Duration], pct: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `d` in whole microseconds, saturating.
#[must_use]
#[inline]
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `later - earlier` in whole microseconds, `0` when `later` is earlier (a clock that
/// stepped back, an exchange clock ahead of ours), saturating.
#[must_use]
#[inline]
pub fn micros_between(
    earlier: chrono::DateTime<chrono::Utc>,
    later: chrono::DateTime<chrono::Utc>,
) -> u64 {
    if later <= earlier {
        return 0;
    }
    (later - earlier)
        .num_microseconds()
        .map_or(u64::MAX, |us| u64::try_from(us).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn durations_convert_and_saturate() {
        assert_eq!(micros(Duration::from_nanos(2_999)), 2);
        assert_eq!(micros(Duration::MAX), u64::MAX);
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let later = t + chrono::Duration::microseconds(1_500);
        assert_eq!(micros_between(t, later), 1_500);
        assert_eq!(micros_between(later, t), 0);
    }

    #[test]
    fn one_market_message_in_sixteen_is_timed_starting_with_the_first() {
        let timed: Vec<u64> = (1..=40).filter(|n| market_sampled(*n)).collect();
        assert_eq!(timed, [1, 17, 33]);
    }

    #[test]
    fn the_null_sink_accepts_anything() {
        let sink: SharedLatency = Arc::new(NoLatency);
        sink.record(stage::DECISION, 5);
    }
}
