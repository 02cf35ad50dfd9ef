//! The metrics registry: system, trading, latency, halt and error metrics, rendered in the
//! OpenMetrics text format that Prometheus scrapes.
//!
//! Names follow Prometheus conventions: `gf_` prefix, base units (seconds, bytes, ratios
//! in `[0, 1]`), `_total` on counters (added by the encoder), real histograms with buckets.
//! Money stays [`Decimal`] everywhere in the crate; it becomes `f64` only here, when a
//! gauge is set, because a Prometheus sample is a float by definition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use gf_core::{
    ApiErrorKind, ConnectionState, Event, EventKind, HaltState, HealthStatus, Payload, Severity,
};
use gf_risk::{PortfolioView, TradingStats};

use crate::Error;

/// The `Content-Type` of [`Metrics::render`]'s output (OpenMetrics 1.0 text format, which
/// Prometheus negotiates and parses natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The latency stages with their own histogram series; any other stage name is counted
/// under [`OTHER_STAGE`] so that label cardinality stays bounded.
pub const STAGES: [&str; 8] = [
    "market_ingest",
    "book_applied",
    "decision",
    "order_sent",
    "order_ack",
    "halt_gate_closed",
    "halt_cancel_sent",
    "halt_flat",
];

/// The label for stage names not in [`STAGES`].
pub const OTHER_STAGE: &str = "other";

/// Histogram bucket bounds for latencies, microseconds: 10 µs to 10 s (exposed in
/// seconds).
const LATENCY_BOUNDS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A classic Prometheus histogram of durations, lock-free: one atomic counter per bucket
/// and an exact integer sum in microseconds. (prometheus-client's own `Histogram` takes a
/// mutex per observation; a latency sample is on the trading hot path.) A scrape racing
/// an observation may see the sum one sample ahead of the buckets, as with any
/// lock-free client; `_count` is always the `+Inf` bucket.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Non-cumulative counts; the last slot is the `+Inf` overflow bucket.
    counts: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            inner: Arc::new(HistogramInner {
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                sum_us: AtomicU64::new(0),
            }),
        }
    }
}

impl LatencyHistogram {
    /// Records one duration.
    #[inline]
    pub fn observe_micros(&self, micros: u64) {
        let idx = LATENCY_BOUNDS_US.partition_point(|b| *b < micros);
        self.inner.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        #[allow(clippy::cast_precision_loss)] // bounds and sums in µs are far below 2^53
        let secs = |us: u64| us as f64 / 1e6;
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_US
            .iter()
            .map(|b| secs(*b))
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = secs(self.inner.sum_us.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Samples kept per stage for the dashboard's percentiles.
const RING: usize = 512;

type FloatGauge = Gauge<f64, AtomicU64>;
type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];
type Labels3 = [(&'static str, String); 3];

/// Latency percentiles of one stage, microseconds, over the most recent samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples the figures are computed over.
    pub samples: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// One stage: its histogram series and a lock-free ring of recent samples.
struct StageLatency {
    histogram: LatencyHistogram,
    ring: Box<[AtomicU64]>,
    next: AtomicUsize,
}

impl StageLatency {
    fn new(histogram: LatencyHistogram) -> Self {
        Self {
            histogram,
            ring: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn record(&self, micros: u64) {
        self.histogram.observe_micros(micros);
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        self.ring[slot % RING].store(micros, Ordering::Relaxed);
    }

    fn percentiles(&self) -> Percentiles {
        let written = self.next.load(Ordering::Relaxed);
        let n = written.min(RING);
        if n == 0 {
            return Percentiles::default();
        }
        let mut v: Vec<u64> = self.ring[..n]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        v.sort_unstable();
        let at = |q: usize| v[((n - 1) * q) / 100];
        Percentiles {
            samples: n as u64,
            p50: at(50),
            p90: at(90),
            p99: at(99),
            max: v[n - 1],
        }
    }
}

struct Inner {
    registry: Registry,
    latency: Vec<StageLatency>,
    // system
    cpu_ratio: FloatGauge,
    resident_bytes: Gauge,
    open_fds: Gauge,
    threads: Gauge,
    disk_free_bytes: Gauge,
    journal_head_id: Gauge,
    // trading
    trades: Gauge,
    winners: Gauge,
    losers: Gauge,
    win_ratio: FloatGauge,
    average_win: FloatGauge,
    average_loss: FloatGauge,
    profit_factor: FloatGauge,
    sharpe: FloatGauge,
    drawdown_ratio: Family<Labels1, FloatGauge>,
    max_drawdown_ratio: FloatGauge,
    max_drawdown_quote: FloatGauge,
    pnl: Family<Labels1, FloatGauge>,
    equity: FloatGauge,
    exposure: Family<Labels1, FloatGauge>,
    exposure_pairs: Mutex<BTreeSet<String>>,
    fills: Family<Labels2, Counter>,
    stats: Mutex<Option<TradingStats>>,
    // halt and conditions
    halt_state: Family<Labels1, Gauge>,
    halt_info: Family<Labels3, Gauge>,
    condition_value: Family<Labels1, FloatGauge>,
    condition_threshold: Family<Labels1, FloatGauge>,
    condition_triggered: Family<Labels1, Gauge>,
    // counters
    api_errors: Family<Labels1, Counter>,
    checksum_mismatches: Family<Labels1, Counter>,
    reconnects: Counter,
    disconnected: AtomicBool,
    market_stale: Family<Labels1, Gauge>,
    alerts: Family<Labels2, Counter>,
    notifications: Family<Labels2, Counter>,
    gateway_orders: Family<Labels2, Counter>,
    // the fleet (`[fleet]`)
    fleet_connected: Gauge,
    fleet_halt_active: Gauge,
    fleet_last_contact: FloatGauge,
    fleet_heartbeat_age: Family<Labels1, FloatGauge>,
    health: Family<Labels1, Gauge>,
    /// One counter per [`EventKind`], indexed by its discriminant (no map lookup).
    events: Vec<Counter>,
}

/// The metrics registry. Cheap to clone (one `Arc`); every method takes `&self` and is
/// safe to call from any task.
///
/// ```
/// use gf_monitor::Metrics;
/// let metrics = Metrics::new();
/// metrics.record_latency("order_ack", 1_250);
/// let text = metrics.render().unwrap();
/// assert!(text.contains("gf_latency_seconds_count{stage=\"order_ack\"} 1"));
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// The daemon's hot stages (market ingest, book, decision, order sent) record here
/// directly, without a bus event per sample.
///
/// ```
/// use gf_core::{LatencySink, SharedLatency, latency::stage};
/// let metrics = gf_monitor::Metrics::new();
/// let sink: SharedLatency = std::sync::Arc::new(metrics.clone());
/// sink.record(stage::BOOK_APPLIED, 3);
/// assert_eq!(metrics.latency_percentiles()["book_applied"].samples, 1);
/// ```
impl gf_core::LatencySink for Metrics {
    #[inline]
    fn record(&self, stage: &'static str, micros: u64) {
        self.record_latency(stage, micros);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn ratio() -> Unit {
    Unit::Other("ratio".to_owned())
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

fn pct_ratio(d: Decimal) -> f64 {
    f(d / Decimal::ONE_HUNDRED)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A registry with every metric registered and the fixed series created.
    #[must_use]
    #[allow(clippy::too_many_lines)] // one registration per metric, deliberately flat
    pub fn new() -> Self {
        let mut r = Registry::default();
        macro_rules! reg {
            ($name:literal, $help:literal, $m:expr) => {{
                let m = $m;
                r.register($name, $help, m.clone());
                m
            }};
            ($name:literal, $help:literal, $unit:expr, $m:expr) => {{
                let m = $m;
                r.register_with_unit($name, $help, $unit, m.clone());
                m
            }};
        }

        let latency_family: Family<Labels1, LatencyHistogram> = Family::default();
        r.register_with_unit(
            "gf_latency",
            "Latency per pipeline stage (market ingest to exchange ack; halt trigger to flat). market_ingest: exchange timestamp to receipt live, due time to published in a paper replay",
            Unit::Seconds,
            latency_family.clone(),
        );
        let latency = STAGES
            .iter()
            .chain(std::iter::once(&OTHER_STAGE))
            .map(|s| {
                StageLatency::new(latency_family.get_or_create_owned(&[("stage", (*s).to_owned())]))
            })
            .collect();

        let inner = Inner {
            latency,
            cpu_ratio: reg!(
                "gf_process_cpu_usage",
                "Process CPU usage as a ratio of one core",
                ratio(),
                FloatGauge::default()
            ),
            resident_bytes: reg!(
                "gf_process_resident_memory",
                "Resident memory of the process",
                Unit::Bytes,
                Gauge::default()
            ),
            open_fds: reg!(
                "gf_process_open_fds",
                "Open file descriptors of the process",
                Gauge::default()
            ),
            threads: reg!(
                "gf_process_threads",
                "Threads of the process",
                Gauge::default()
            ),
            disk_free_bytes: reg!(
                "gf_data_dir_disk_free",
                "Free space on the file system of the data directory",
                Unit::Bytes,
                Gauge::default()
            ),
            journal_head_id: reg!(
                "gf_journal_head_id",
                "Id of the last journal record committed (the witness holds the same head)",
                Gauge::default()
            ),
            trades: reg!("gf_trading_trades", "Closed round trips", Gauge::default()),
            winners: reg!(
                "gf_trading_winners",
                "Winning round trips",
                Gauge::default()
            ),
            losers: reg!("gf_trading_losers", "Losing round trips", Gauge::default()),
            win_ratio: reg!(
                "gf_trading_win",
                "Winning round trips over all round trips (NaN before the first)",
                ratio(),
                FloatGauge::default()
            ),
            average_win: reg!(
                "gf_trading_average_win_quote",
                "Mean net P&L of winning round trips, quote currency (NaN before the first)",
                FloatGauge::default()
            ),
            average_loss: reg!(
                "gf_trading_average_loss_quote",
                "Mean net P&L of losing round trips, quote currency, negative (NaN before the first)",
                FloatGauge::default()
            ),
            profit_factor: reg!(
                "gf_trading_profit_factor",
                "Gross profit over gross loss (NaN without losses)",
                FloatGauge::default()
            ),
            sharpe: reg!(
                "gf_trading_sharpe",
                "Annualised Sharpe ratio of daily returns (NaN below two days)",
                FloatGauge::default()
            ),
            drawdown_ratio: reg!(
                "gf_drawdown",
                "Current drawdown from peak equity (scope=total) or from the UTC day's start (scope=daily)",
                ratio(),
                Family::default()
            ),
            max_drawdown_ratio: reg!(
                "gf_max_drawdown",
                "Largest drawdown seen",
                ratio(),
                FloatGauge::default()
            ),
            max_drawdown_quote: reg!(
                "gf_max_drawdown_quote",
                "Largest fall of the realised equity curve, quote currency",
                FloatGauge::default()
            ),
            pnl: reg!(
                "gf_pnl_quote",
                "P&L in quote currency: scope=realised (net, closed round trips), unrealised (open positions), daily (equity change since the UTC day began)",
                Family::default()
            ),
            equity: reg!(
                "gf_equity_quote",
                "Equity in quote currency, positions marked to market",
                FloatGauge::default()
            ),
            exposure: reg!(
                "gf_exposure_quote",
                "Absolute open position notional per pair, quote currency",
                Family::default()
            ),
            exposure_pairs: Mutex::new(BTreeSet::new()),
            fills: reg!("gf_fills", "Executions by pair and side", Family::default()),
            stats: Mutex::new(None),
            halt_state: reg!(
                "gf_halt_state",
                "1 for the current halt state, 0 for the others",
                Family::default()
            ),
            halt_info: reg!(
                "gf_halt_info",
                "The latest halt transition: state, source and reason as labels (value 1)",
                Family::default()
            ),
            condition_value: reg!(
                "gf_condition_value",
                "Current value of each halt condition",
                Family::default()
            ),
            condition_threshold: reg!(
                "gf_condition_threshold",
                "Threshold of each halt condition",
                Family::default()
            ),
            condition_triggered: reg!(
                "gf_condition_triggered",
                "1 when the halt condition is breached",
                Family::default()
            ),
            api_errors: reg!(
                "gf_api_errors",
                "Exchange API errors by kind",
                Family::default()
            ),
            checksum_mismatches: reg!(
                "gf_book_checksum_mismatches",
                "Order books that failed verification, per pair",
                Family::default()
            ),
            reconnects: reg!(
                "gf_market_reconnects",
                "Market-data connection attempts after a disconnect",
                Counter::default()
            ),
            disconnected: AtomicBool::new(false),
            market_stale: reg!(
                "gf_market_data_stale",
                "1 while a pair's market data is stale",
                Family::default()
            ),
            alerts: reg!(
                "gf_alerts",
                "Alert notices raised, by severity and status",
                Family::default()
            ),
            notifications: reg!(
                "gf_alert_notifications",
                "Alert deliveries per channel, outcome=sent or failed",
                Family::default()
            ),
            gateway_orders: reg!(
                "gf_gateway_orders",
                "Orders of external strategies (trader tokens), by trader and outcome: accepted, replayed, or the refusal's code",
                Family::default()
            ),
            fleet_connected: reg!(
                "gf_fleet_connected",
                "1 while NATS answered this node within fleet.partition_halt_secs (0 also when the fleet is off)",
                Gauge::default()
            ),
            fleet_halt_active: reg!(
                "gf_fleet_halt_active",
                "1 while the fleet halt record is active or could not be read",
                Gauge::default()
            ),
            fleet_last_contact: reg!(
                "gf_fleet_last_contact_seconds",
                "Seconds since NATS last answered this node",
                FloatGauge::default()
            ),
            fleet_heartbeat_age: reg!(
                "gf_fleet_heartbeat_age_seconds",
                "Age of each fleet node's newest heartbeat, by node",
                Family::default()
            ),
            health: reg!(
                "gf_health_check_status",
                "Health check outcome: 0 healthy, 1 degraded, 2 unhealthy",
                Family::default()
            ),
            events: {
                let family: Family<Labels1, Counter> = reg!(
                    "gf_bus_events",
                    "Bus events seen, by kind",
                    Family::default()
                );
                let mut v = vec![Counter::default(); EventKind::ALL.len()];
                for kind in EventKind::ALL {
                    v[*kind as usize] =
                        family.get_or_create_owned(&[("kind", kind.name().to_owned())]);
                }
                v
            },
            registry: Registry::default(),
        };
        let mut inner = inner;
        inner.registry = r;
        // Every error kind exists from the start, so `rate()` sees zeros, not gaps.
        for kind in [
            ApiErrorKind::InvalidNonce,
            ApiErrorKind::Authentication,
            ApiErrorKind::PermissionDenied,
            ApiErrorKind::InsufficientFunds,
            ApiErrorKind::RateLimit,
            ApiErrorKind::ServiceUnavailable,
            ApiErrorKind::InvalidArguments,
            ApiErrorKind::UnknownOrder,
            ApiErrorKind::Timeout,
            ApiErrorKind::Network,
            ApiErrorKind::MalformedResponse,
            ApiErrorKind::Other,
        ] {
            drop(inner.api_errors.get_or_create(&[("kind", api_kind(kind))]));
        }
        for state in [
            HaltState::Running,
            HaltState::Halting,
            HaltState::Halted,
            HaltState::Recovering,
        ] {
            inner
                .halt_state
                .get_or_create(&[("state", state.to_string())])
                .set(i64::from(state == HaltState::Running));
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Records one latency sample. Unknown stage names count under `stage="other"`.
    /// Lock-free apart from the histogram's own short mutex.
    #[inline]
    pub fn record_latency(&self, stage: &str, micros: u64) {
        let idx = STAGES
            .iter()
            .position(|s| *s == stage)
            .unwrap_or(STAGES.len());
        self.inner.latency[idx].record(micros);
    }

    /// Percentiles of the recent samples of every stage that has any, by stage name.
    #[must_use]
    pub fn latency_percentiles(&self) -> BTreeMap<String, Percentiles> {
        STAGES
            .iter()
            .chain(std::iter::once(&OTHER_STAGE))
            .zip(&self.inner.latency)
            .map(|(name, s)| ((*name).to_owned(), s.percentiles()))
            .filter(|(_, p)| p.samples > 0)
            .collect()
    }

    /// Updates the metrics one bus event implies (latency, API errors, checksum
    /// mismatches, reconnects, staleness, fills, halt state, condition values, alerts,
    /// health results). Cheap and non-blocking.
    pub fn on_event(&self, event: &Event) {
        let i = &self.inner;
        if let Some(c) = i.events.get(event.kind() as usize) {
            c.inc();
        }
        match &event.payload {
            Payload::Latency { stage, micros } => self.record_latency(stage, *micros),
            Payload::ApiError { kind, .. } => {
                i.api_errors
                    .get_or_create(&[("kind", api_kind(*kind))])
                    .inc();
            }
            Payload::BookInvalid { pair, .. } => {
                i.checksum_mismatches
                    .get_or_create(&[("pair", pair.to_string())])
                    .inc();
            }
            Payload::Connection { state, .. } => match state {
                ConnectionState::Disconnected => i.disconnected.store(true, Ordering::Relaxed),
                ConnectionState::Connecting if i.disconnected.swap(false, Ordering::Relaxed) => {
                    i.reconnects.inc();
                }
                ConnectionState::Connecting | ConnectionState::Connected => {}
            },
            Payload::Staleness { pair, stale, .. } => {
                i.market_stale
                    .get_or_create(&[("pair", pair.to_string())])
                    .set(i64::from(*stale));
            }
            Payload::Fill(fill) => {
                i.fills
                    .get_or_create(&[
                        ("pair", fill.pair.to_string()),
                        ("side", fill.side.to_string()),
                    ])
                    .inc();
            }
            Payload::HaltStateChanged {
                to, source, reason, ..
            } => self.set_halt_state(*to, &source.to_string(), reason),
            Payload::Resumed { operator } => {
                self.set_halt_state(HaltState::Running, operator, "resumed");
            }
            Payload::ConditionValue {
                id,
                value,
                threshold,
                triggered,
            } => {
                let l = [("condition", id.clone())];
                i.condition_value.get_or_create(&l).set(f(*value));
                i.condition_threshold.get_or_create(&l).set(f(*threshold));
                i.condition_triggered
                    .get_or_create(&l)
                    .set(i64::from(*triggered));
            }
            Payload::Health { check, status, .. } => self.set_health(check, *status),
            _ => {}
        }
    }

    /// Sets the halt-state gauges: one series per state, 1 for `state`, and a single
    /// `gf_halt_info` series carrying the source and reason of the latest transition.
    pub fn set_halt_state(&self, state: HaltState, source: &str, reason: &str) {
        let i = &self.inner;
        for s in [
            HaltState::Running,
            HaltState::Halting,
            HaltState::Halted,
            HaltState::Recovering,
        ] {
            i.halt_state
                .get_or_create(&[("state", s.to_string())])
                .set(i64::from(s == state));
        }
        // One series only: the reason is free text, so old label sets are dropped.
        i.halt_info.clear();
        i.halt_info
            .get_or_create(&[
                ("state", state.to_string()),
                ("source", label_text(source, 120)),
                ("reason", label_text(reason, 120)),
            ])
            .set(1);
    }

    /// Records a health check outcome.
    pub fn set_health(&self, check: &str, status: HealthStatus) {
        let v = match status {
            HealthStatus::Healthy => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Unhealthy => 2,
        };
        self.inner
            .health
            .get_or_create(&[("check", check.to_owned())])
            .set(v);
    }

    /// Counts one alert notice (firing or resolved).
    pub fn count_alert(&self, severity: Severity, resolved: bool) {
        let sev = match severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        };
        let status = if resolved { "resolved" } else { "firing" };
        self.inner
            .alerts
            .get_or_create(&[("severity", sev.to_owned()), ("status", status.to_owned())])
            .inc();
    }

    /// Counts one alert delivery outcome for a channel.
    pub fn count_notification(&self, channel: &str, sent: bool) {
        let outcome = if sent { "sent" } else { "failed" };
        self.inner
            .notifications
            .get_or_create(&[
                ("channel", channel.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// Counts one order request of the gateway: `outcome` is `accepted`, `replayed` or the
    /// refusal's code (`halted`, `risk_refused`, `rate_limited`, …).
    pub fn count_gateway_order(&self, trader: &str, outcome: &str) {
        self.inner
            .gateway_orders
            .get_or_create(&[
                ("trader", trader.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// Sets the fleet gauges: NATS reachable, the fleet halt in force (or unknown), seconds
    /// since NATS last answered, and each node's heartbeat age in seconds.
    pub fn set_fleet(
        &self,
        connected: bool,
        halt_active: bool,
        last_contact_secs: f64,
        heartbeat_ages: &[(String, f64)],
    ) {
        let i = &self.inner;
        i.fleet_connected.set(i64::from(connected));
        i.fleet_halt_active.set(i64::from(halt_active));
        i.fleet_last_contact.set(last_contact_secs);
        for (node, age) in heartbeat_ages {
            i.fleet_heartbeat_age
                .get_or_create(&[("node", node.clone())])
                .set(*age);
        }
    }

    /// How many gateway order requests of `trader` ended with `outcome`.
    #[must_use]
    pub fn gateway_orders(&self, trader: &str, outcome: &str) -> u64 {
        self.inner
            .gateway_orders
            .get(&[
                ("trader", trader.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .map_or(0, |c| c.get())
    }

    /// How many deliveries to `channel` ended with `sent` (true) or failed (false).
    #[must_use]
    pub fn notifications(&self, channel: &str, sent: bool) -> u64 {
        let outcome = if sent { "sent" } else { "failed" };
        self.inner
            .notifications
            .get(&[
                ("channel", channel.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .map_or(0, |c| c.get())
    }

    /// Sets the trading statistics gauges (and keeps a copy for the dashboard).
    /// [`Self::observe_portfolio`] does this from the view; call it directly when the
    /// statistics come from elsewhere (a backtest report).
    pub fn set_trading_stats(&self, stats: &TradingStats) {
        let i = &self.inner;
        let opt = |d: Option<Decimal>| d.map_or(f64::NAN, f);
        i.trades.set(int(stats.count));
        i.winners.set(int(stats.winners));
        i.losers.set(int(stats.losers));
        i.win_ratio
            .set(stats.win_rate_pct.map_or(f64::NAN, pct_ratio));
        i.average_win.set(opt(stats.avg_win));
        i.average_loss.set(opt(stats.avg_loss));
        i.profit_factor.set(opt(stats.profit_factor));
        i.sharpe.set(opt(stats.sharpe));
        i.max_drawdown_ratio.set(pct_ratio(stats.max_drawdown_pct));
        i.max_drawdown_quote.set(f(stats.max_drawdown));
        i.pnl
            .get_or_create(&[("scope", "realised".to_owned())])
            .set(f(stats.total_pnl));
        *i.stats.lock() = Some(stats.clone());
    }

    /// Sets the daily P&L (equity now minus equity when the UTC day began), which the
    /// [`crate::Monitor`] tracks with its clock.
    pub fn set_daily_pnl(&self, pnl: Decimal) {
        self.inner
            .pnl
            .get_or_create(&[("scope", "daily".to_owned())])
            .set(f(pnl));
    }

    /// The trading statistics last set.
    #[must_use]
    pub fn trading_stats(&self) -> Option<TradingStats> {
        self.inner.stats.lock().clone()
    }

    /// Reads the portfolio: equity, total and daily drawdown, exposure per pair,
    /// unrealised P&L and the trading statistics.
    pub fn observe_portfolio(&self, view: &dyn PortfolioView) {
        let i = &self.inner;
        self.set_trading_stats(&view.trading_stats());
        i.equity.set(f(view.equity()));
        i.drawdown_ratio
            .get_or_create(&[("scope", "total".to_owned())])
            .set(pct_ratio(view.total_drawdown_pct()));
        i.drawdown_ratio
            .get_or_create(&[("scope", "daily".to_owned())])
            .set(pct_ratio(view.daily_drawdown_pct()));
        // Pairs that went flat report zero rather than disappearing.
        let mut known = i.exposure_pairs.lock();
        for pair in known.iter() {
            i.exposure.get_or_create(&[("pair", pair.clone())]).set(0.0);
        }
        let positions = view.positions();
        let unrealised: Decimal = positions.iter().map(|p| p.unrealised_pnl).sum();
        i.pnl
            .get_or_create(&[("scope", "unrealised".to_owned())])
            .set(f(unrealised));
        for p in positions {
            let mark = p.mark.unwrap_or(p.avg_entry);
            let pair = p.pair.to_string();
            i.exposure
                .get_or_create(&[("pair", pair.clone())])
                .set(f((p.qty * mark).abs()));
            known.insert(pair);
        }
    }

    /// Samples the process and the data directory's file system.
    pub fn observe_system(&self, sample: &crate::system::SystemSample) {
        let i = &self.inner;
        i.cpu_ratio.set(f64::from(sample.cpu_percent) / 100.0);
        i.resident_bytes.set(int(sample.resident_bytes));
        i.open_fds.set(int(sample.open_fds));
        i.threads.set(int(sample.threads));
        if let Some(free) = sample.disk_free_bytes {
            i.disk_free_bytes.set(int(free));
        }
    }

    /// The journal's head: the id of the last record committed.
    pub fn set_journal_head(&self, id: i64) {
        self.inner.journal_head_id.set(id);
    }

    /// Renders the whole registry in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    ///
    /// # Errors
    /// [`Error::Encode`] if a metric fails to encode (does not happen with the metrics
    /// registered here).
    pub fn render(&self) -> Result<String, Error> {
        let mut out = String::with_capacity(16 * 1024);
        encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }
}

fn api_kind(kind: ApiErrorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "other".to_owned())
}

/// Free text as a label value: at most `max` characters, control characters made visible
/// (`\u{1b}`, `\r`, …). The encoder escapes `\`, `"` and line feeds as the exposition
/// format requires; the other control characters (ESC, CR, BEL …) it would pass through raw
/// to whoever reads `/metrics` on a terminal.
fn label_text(s: &str, max: usize) -> String {
    let cut: String = s.chars().take(max).collect();
    gf_core::text::escape_control(&cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{Fill, HaltSource, OrderId, OrderPurpose, Pair, Position, Side, Source};
    use gf_risk::MockPortfolioView;
    use rust_decimal_macros::dec;

    fn ev(payload: Payload) -> Event {
        Event::new(chrono::Utc::now(), Source::Test, payload)
    }

    #[test]
    fn unknown_stages_count_as_other() {
        let m = Metrics::new();
        m.record_latency("order_ack", 100);
        m.record_latency("made_up_stage", 5);
        m.record_latency("another_made_up", 7);
        let text = m.render().unwrap();
        assert!(
            text.contains("gf_latency_seconds_count{stage=\"order_ack\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gf_latency_seconds_count{stage=\"other\"} 2"),
            "{text}"
        );
        assert!(!text.contains("made_up"), "{text}");
    }

    #[test]
    fn exposition_has_help_type_units_and_buckets() {
        let m = Metrics::new();
        m.record_latency("decision", 30);
        let text = m.render().unwrap();
        assert!(text.contains("# TYPE gf_latency_seconds histogram"));
        assert!(text.contains("# HELP gf_latency_seconds "));
        assert!(
            text.contains("gf_latency_seconds_bucket{le=\"0.00005\",stage=\"decision\"} 1")
                || text.contains("gf_latency_seconds_bucket{stage=\"decision\",le=\"5e-5\"} 1")
                || text.contains("stage=\"decision\",le=\"0.00005\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE gf_api_errors counter"));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn events_drive_counters_and_gauges() {
        let m = Metrics::new();
        let pair = Pair::new("XRP/USD").unwrap();
        m.on_event(&ev(Payload::ApiError {
            endpoint: "AddOrder".into(),
            kind: ApiErrorKind::RateLimit,
            message: "EAPI:Rate limit exceeded".into(),
            retryable: true,
        }));
        m.on_event(&ev(Payload::BookInvalid {
            pair: pair.clone(),
            reason: "checksum mismatch".into(),
        }));
        for state in [
            ConnectionState::Connecting,
            ConnectionState::Connected,
            ConnectionState::Disconnected,
            ConnectionState::Connecting,
        ] {
            m.on_event(&ev(Payload::Connection {
                state,
                detail: "attempt".into(),
            }));
        }
        m.on_event(&ev(Payload::HaltStateChanged {
            from: HaltState::Running,
            to: HaltState::Halting,
            source: HaltSource::Auto("max_total_drawdown".into()),
            reason: "drawdown 16% > 15%".into(),
        }));
        m.on_event(&ev(Payload::ConditionValue {
            id: "max_total_drawdown".into(),
            value: dec!(16),
            threshold: dec!(15),
            triggered: true,
        }));
        m.on_event(&ev(Payload::Fill(Fill {
            trade_id: "T1".into(),
            order_id: OrderId::new("O1"),
            client_order_id: None,
            pair: pair.clone(),
            side: Side::Buy,
            qty: dec!(10),
            price: dec!(0.5),
            fee: dec!(0.01),
            ts: chrono::Utc::now(),
            purpose: OrderPurpose::default(),
        })));
        let text = m.render().unwrap();
        for needle in [
            "gf_api_errors_total{kind=\"rate_limit\"} 1",
            "gf_book_checksum_mismatches_total{pair=\"XRP/USD\"} 1",
            "gf_market_reconnects_total 1",
            "gf_halt_state{state=\"halting\"} 1",
            "gf_halt_state{state=\"running\"} 0",
            "reason=\"drawdown 16% > 15%\"",
            "gf_condition_value{condition=\"max_total_drawdown\"} 16.0",
            "gf_condition_triggered{condition=\"max_total_drawdown\"} 1",
            "gf_fills_total{pair=\"XRP/USD\",side=\"buy\"} 1",
            "gf_bus_events_total{kind=\"api_error\"} 1",
            "gf_bus_events_total{kind=\"connection\"} 4",
            "gf_bus_events_total{kind=\"trade\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle}\n{text}");
        }
    }

    #[test]
    fn portfolio_and_stats_become_gauges() {
        let m = Metrics::new();
        let mut view = MockPortfolioView::new();
        view.expect_equity().return_const(dec!(1000));
        view.expect_total_drawdown_pct().return_const(dec!(12.5));
        view.expect_daily_drawdown_pct().return_const(dec!(1));
        let mut pos = Position::flat(Pair::new("DOGE/USD").unwrap());
        pos.qty = dec!(-100);
        pos.avg_entry = dec!(0.2);
        pos.mark = Some(dec!(0.25));
        pos.unrealised_pnl = dec!(-5);
        view.expect_positions().return_const(vec![pos]);
        view.expect_trading_stats().return_const(TradingStats {
            count: 4,
            winners: 3,
            losers: 1,
            win_rate_pct: Some(dec!(75)),
            avg_loss: Some(dec!(-2.5)),
            total_pnl: dec!(-12.5),
            ..TradingStats::default()
        });
        m.observe_portfolio(&view);
        m.set_daily_pnl(dec!(3.25));
        let text = m.render().unwrap();
        for needle in [
            "gf_equity_quote 1000.0",
            "gf_drawdown_ratio{scope=\"total\"} 0.125",
            "gf_exposure_quote{pair=\"DOGE/USD\"} 25.0",
            "gf_trading_trades 4",
            "gf_trading_win_ratio 0.75",
            "gf_trading_average_loss_quote -2.5",
            "gf_trading_profit_factor NaN",
            "gf_pnl_quote{scope=\"realised\"} -12.5",
            "gf_pnl_quote{scope=\"unrealised\"} -5.0",
            "gf_pnl_quote{scope=\"daily\"} 3.25",
        ] {
            assert!(text.contains(needle), "missing {needle}\n{text}");
        }
        assert_eq!(m.trading_stats().unwrap().count, 4);
        // A pair that went flat reads zero rather than keeping its old exposure.
        m.observe_portfolio(&gf_risk::NullPortfolio::with_equity(dec!(1000)));
        assert!(
            m.render()
                .unwrap()
                .contains("gf_exposure_quote{pair=\"DOGE/USD\"} 0.0")
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_exact_sum() {
        let m = Metrics::new();
        for us in [5, 10, 11, 499, 500, 501, 20_000_000] {
            m.record_latency("halt_flat", us);
        }
        let text = m.render().unwrap();
        let line = |le: &str| {
            let prefix = format!("gf_latency_seconds_bucket{{le=\"{le}\",stage=\"halt_flat\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no bucket {le}\n{text}"))
                .to_owned()
        };
        assert_eq!(line("0.00001"), "2", "5 µs and 10 µs (le is inclusive)");
        assert_eq!(line("0.000025"), "3");
        assert_eq!(line("0.0005"), "5", "up to and including 500 µs");
        assert_eq!(line("10.0"), "6");
        assert_eq!(line("+Inf"), "7");
        assert!(text.contains("gf_latency_seconds_count{stage=\"halt_flat\"} 7"));
        assert!(
            text.contains("gf_latency_seconds_sum{stage=\"halt_flat\"} 20.001526"),
            "{text}"
        );
    }

    #[test]
    fn percentiles_over_recent_samples() {
        let m = Metrics::new();
        for v in 1..=100 {
            m.record_latency("order_ack", v);
        }
        let p = m.latency_percentiles()["order_ack"];
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50, 50);
        assert_eq!(p.p99, 99);
        assert_eq!(p.max, 100);
        assert!(!m.latency_percentiles().contains_key("decision"));
    }

    #[test]
    fn halt_reason_and_source_never_reach_a_label_raw() {
        let m = Metrics::new();
        m.set_halt_state(
            HaltState::Halted,
            "api:eve\u{1b}[2K",
            "drill\u{1b}[31m\r\n# HELP forged\n\"quoted\" back\\slash\u{7}\u{0}\u{9b}",
        );
        let text = m.render().unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("gf_halt_info"))
            .unwrap_or_else(|| panic!("no gf_halt_info in\n{text}"));
        assert!(
            !line.chars().any(char::is_control),
            "a control character in {line:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("# HELP forged")),
            "a forged line:\n{text}"
        );
        assert!(
            line.contains(
                r#"reason="drill\\u{1b}[31m\\r\\n# HELP forged\\n\"quoted\" back\\slash\\u{7}\\u{0}\\u{9b}""#
            ),
            "{line}"
        );
        assert!(line.contains(r#"source="api:eve\\u{1b}[2K""#), "{line}");
    }
}
