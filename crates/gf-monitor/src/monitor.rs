//! [`Monitor`]: the one object the daemon holds — it feeds every bus event to the metrics
//! and the alert manager, runs health checks, and answers `/metrics`, `/readyz` and the
//! dashboard.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use gf_core::config::MonitorConfig;
use gf_core::{
    Event, EventBus, HaltState, Pair, Payload, RecvError, SharedClock, Source, Subscription,
};
use gf_risk::PortfolioView;

use crate::alert::{AlertManager, AlertRule, Inhibition, default_rules};
use crate::channel::{Dispatcher, EnvLookup, build_channels};
use crate::dashboard::{ConditionView, DashboardSnapshot, PortfolioFigures};
use crate::health::{
    DiskCheck, FreshnessCheck, HealthCheck, HealthRegistry, MemoryCheck, Readiness,
    WritableDirCheck,
};
use crate::system::{SystemSample, SystemSampler};
use crate::{Error, Metrics};

/// Builds a [`Monitor`] from `[monitor]` configuration.
pub struct MonitorBuilder {
    config: MonitorConfig,
    clock: SharedClock,
    bus: Option<EventBus>,
    portfolio: Option<Arc<dyn PortfolioView>>,
    data_dir: Option<PathBuf>,
    pairs: Vec<Pair>,
    max_staleness: Duration,
    env: Box<EnvLookup>,
    checks: Vec<Arc<dyn HealthCheck>>,
    rules: Option<(Vec<AlertRule>, Vec<Inhibition>)>,
    check_timeout: Duration,
}

impl std::fmt::Debug for MonitorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MonitorBuilder {
    /// Starts from the `[monitor]` section and a clock.
    #[must_use]
    pub fn new(config: &MonitorConfig, clock: SharedClock) -> Self {
        Self {
            config: config.clone(),
            clock,
            bus: None,
            portfolio: None,
            data_dir: None,
            pairs: Vec::new(),
            max_staleness: Duration::from_secs(60),
            env: Box::new(|k| std::env::var(k).ok()),
            checks: Vec::new(),
            rules: None,
            check_timeout: Duration::from_secs(2),
        }
    }

    /// Publishes alerts and health results on `bus`.
    #[must_use]
    pub fn bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Reads equity, drawdown and positions from gf-risk.
    #[must_use]
    pub fn portfolio(mut self, view: Arc<dyn PortfolioView>) -> Self {
        self.portfolio = Some(view);
        self
    }

    /// Adds the data directory's writable and free-disk checks.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds the market-data freshness check for `pairs`.
    #[must_use]
    pub fn market_pairs(mut self, pairs: Vec<Pair>, max_staleness: Duration) -> Self {
        self.pairs = pairs;
        self.max_staleness = max_staleness;
        self
    }

    /// Resolves `*_env` channel secrets with `env` instead of the process environment.
    #[must_use]
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Box::new(env);
        self
    }

    /// Registers another health check (exchange, database …).
    #[must_use]
    pub fn check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Replaces the default alert rules.
    #[must_use]
    pub fn rules(mut self, rules: Vec<AlertRule>, inhibitions: Vec<Inhibition>) -> Self {
        self.rules = Some((rules, inhibitions));
        self
    }

    /// Timeout of each health check (default 2 s).
    #[must_use]
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// Builds the monitor, validating every channel.
    ///
    /// # Errors
    /// [`Error::ChannelConfig`] naming the channel and key at fault, or [`Error::Rule`].
    pub fn build(self) -> Result<Monitor, Error> {
        let metrics = Metrics::new();
        let channels = build_channels(&self.config.channels, &*self.env)?;
        let dispatcher = Dispatcher::new(channels, metrics.clone(), self.clock.clone());
        let (rules, inhibitions) = self.rules.unwrap_or_else(|| default_rules(&self.config));
        let alerts = AlertManager::new(
            rules,
            inhibitions,
            dispatcher,
            self.bus.clone(),
            self.clock.clone(),
            metrics.clone(),
        )?;
        let mut health = HealthRegistry::new(self.check_timeout, self.clock.clone());
        health.register(Arc::new(MemoryCheck::new(self.config.max_memory_mib)));
        if let Some(dir) = &self.data_dir {
            health.register(Arc::new(WritableDirCheck::new("data_dir", dir)));
            health.register(Arc::new(DiskCheck::new(dir, self.config.min_disk_free_mib)));
        }
        let freshness = (!self.pairs.is_empty()).then(|| {
            FreshnessCheck::new(self.pairs.clone(), self.max_staleness, self.clock.clone())
        });
        if let Some(f) = &freshness {
            health.register(Arc::new(f.clone()));
        }
        for c in self.checks {
            health.register(c);
        }
        Ok(Monitor {
            sampler: Mutex::new(SystemSampler::new(
                self.data_dir.clone().unwrap_or_else(|| PathBuf::from(".")),
            )),
            metrics,
            alerts,
            health,
            freshness,
            portfolio: self.portfolio,
            bus: self.bus,
            clock: self.clock,
            dash: Mutex::new(DashState::default()),
        })
    }
}

#[derive(Debug, Default)]
struct DashState {
    halt_state: Option<HaltState>,
    halt_source: Option<String>,
    halt_reason: Option<String>,
    conditions: BTreeMap<String, ConditionView>,
    readiness: Option<Readiness>,
    system: Option<SystemSample>,
    /// The UTC day and the equity when it began (or when monitoring started).
    day_start: Option<(chrono::NaiveDate, Decimal)>,
    daily_pnl: Decimal,
}

/// Metrics, alerts, health and dashboard in one place.
///
/// ```
/// use std::sync::Arc;
/// use gf_core::{config::MonitorConfig, Event, ManualClock, Clock, Payload, Source};
/// use gf_monitor::MonitorBuilder;
/// let clock = ManualClock::default();
/// let monitor = MonitorBuilder::new(&MonitorConfig::default(), Arc::new(clock.clone()))
///     .build()
///     .unwrap();
/// monitor.on_event(&Event::new(clock.now(), Source::Exec,
///     Payload::Latency { stage: "order_ack".into(), micros: 850 }));
/// assert!(monitor.render_metrics().unwrap().contains("gf_latency_seconds_count{stage=\"order_ack\"} 1"));
/// assert_eq!(monitor.dashboard_snapshot().latency["order_ack"].p50, 850);
/// ```
pub struct Monitor {
    metrics: Metrics,
    alerts: AlertManager,
    health: HealthRegistry,
    freshness: Option<FreshnessCheck>,
    portfolio: Option<Arc<dyn PortfolioView>>,
    bus: Option<EventBus>,
    clock: SharedClock,
    sampler: Mutex<SystemSampler>,
    dash: Mutex<DashState>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("alerts", &self.alerts)
            .field("health", &self.health.names())
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// The metrics registry.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The alert manager (active alerts, silences, delivery reports).
    #[must_use]
    pub fn alerts(&self) -> &AlertManager {
        &self.alerts
    }

    /// Handles one bus event: metrics, freshness, dashboard state, alert rules. Events
    /// this monitor published itself (alerts, health) only touch the metrics.
    pub fn on_event(&self, event: &Event) {
        self.metrics.on_event(event);
        if let Some(f) = &self.freshness
            && let Some(pair) = market_pair(&event.payload)
        {
            f.note(pair, event.ts);
        }
        match &event.payload {
            Payload::HaltStateChanged {
                to, source, reason, ..
            } => {
                let mut d = self.dash.lock();
                d.halt_state = Some(*to);
                d.halt_source = Some(source.to_string());
                d.halt_reason = Some(reason.clone());
            }
            Payload::Resumed { operator } => {
                let mut d = self.dash.lock();
                d.halt_state = Some(HaltState::Running);
                d.halt_source = Some(operator.clone());
                d.halt_reason = Some("resumed".into());
            }
            Payload::ConditionValue {
                id,
                value,
                threshold,
                triggered,
            } => {
                self.dash.lock().conditions.insert(
                    id.clone(),
                    ConditionView {
                        id: id.clone(),
                        value: *value,
                        threshold: *threshold,
                        triggered: *triggered,
                        updated_at: event.ts,
                    },
                );
            }
            _ => {}
        }
        if event.source != Source::Monitor {
            self.alerts.on_event(event);
        }
    }

    /// Periodic work (about once a second): process sample, portfolio figures (with the
    /// daily P&L: equity now minus equity when the UTC day began, by the monitor's
    /// clock), and the time-windowed alert rules.
    pub fn tick(&self) {
        let sample = self.sampler.lock().sample();
        self.metrics.observe_system(&sample);
        self.dash.lock().system = Some(sample);
        if let Some(view) = &self.portfolio {
            self.metrics.observe_portfolio(view.as_ref());
            self.alerts.observe_portfolio(view.as_ref());
            let equity = view.equity();
            let today = self.clock.now().date_naive();
            let mut d = self.dash.lock();
            let start = match d.day_start {
                Some((day, start)) if day == today => start,
                _ => {
                    d.day_start = Some((today, equity));
                    equity
                }
            };
            d.daily_pnl = equity - start;
            self.metrics.set_daily_pnl(d.daily_pnl);
        }
        self.alerts.tick();
    }

    /// The OpenMetrics exposition for `GET /metrics` (content type
    /// [`crate::CONTENT_TYPE`]).
    ///
    /// # Errors
    /// [`Error::Encode`] if encoding fails.
    pub fn render_metrics(&self) -> Result<String, Error> {
        self.metrics.render()
    }

    /// Runs every health check now and returns the aggregate for `/readyz`. Results are
    /// recorded in the metrics and, when a check's status changes, published on the bus.
    pub async fn readiness(&self) -> Readiness {
        let r = self.health.run().await;
        let previous = self.dash.lock().readiness.replace(r.clone());
        for c in &r.checks {
            self.metrics.set_health(&c.name, c.status);
            let changed = previous
                .as_ref()
                .and_then(|p| p.checks.iter().find(|o| o.name == c.name))
                .is_none_or(|o| o.status != c.status);
            if changed && let Some(bus) = &self.bus {
                bus.publish(Event::new(
                    self.clock.now(),
                    Source::Monitor,
                    Payload::Health {
                        check: c.name.clone(),
                        status: c.status,
                        message: c.message.clone(),
                        latency_micros: c.latency_micros,
                    },
                ));
            }
        }
        r
    }

    /// A snapshot for the dashboard WebSocket.
    #[must_use]
    pub fn dashboard_snapshot(&self) -> DashboardSnapshot {
        let daily_pnl = self.dash.lock().daily_pnl;
        let portfolio = self.portfolio.as_ref().map(|v| {
            let positions = v.positions();
            PortfolioFigures {
                equity: v.equity(),
                total_drawdown_pct: v.total_drawdown_pct(),
                daily_drawdown_pct: v.daily_drawdown_pct(),
                exposure: v.exposure(),
                unrealised_pnl: positions.iter().map(|p| p.unrealised_pnl).sum(),
                daily_pnl,
                positions,
            }
        });
        let stats = match &self.portfolio {
            Some(v) => Some(v.trading_stats()),
            None => self.metrics.trading_stats(),
        };
        let d = self.dash.lock();
        DashboardSnapshot {
            ts: self.clock.now(),
            halt_state: d.halt_state.unwrap_or(HaltState::Running),
            halt_source: d.halt_source.clone(),
            halt_reason: d.halt_reason.clone(),
            conditions: d.conditions.values().cloned().collect(),
            portfolio,
            stats,
            latency: self.metrics.latency_percentiles(),
            alerts: self.alerts.active(),
            health: d.readiness.clone(),
            system: d.system,
        }
    }

    /// Consumes the bus until `shutdown` is cancelled: every event goes to
    /// [`Self::on_event`]; once a second [`Self::tick`]; every `health_every` the health
    /// checks run. Lagging is logged, never fatal. Shutdown is checked first (`biased`);
    /// on shutdown it waits for deliveries in flight (each bounded by its channel's
    /// timeout and retries). Dropping the future instead stops monitoring at once;
    /// deliveries already started finish in their own tasks.
    pub async fn run(
        self: Arc<Self>,
        mut events: Subscription,
        shutdown: CancellationToken,
        health_every: Duration,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut health = tokio::time::interval(health_every.max(Duration::from_millis(100)));
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(ev) => self.on_event(&ev),
                    Err(RecvError::Lagged { missed }) => {
                        tracing::warn!(missed, "monitor lagged behind the bus");
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => self.tick(),
                _ = health.tick() => { self.readiness().await; }
            }
        }
        // Let deliveries in flight finish (each has its own timeout).
        self.alerts.dispatcher().flush().await;
    }
}

fn market_pair(p: &Payload) -> Option<&Pair> {
    match p {
        Payload::BookSnapshot(s) => Some(&s.pair),
        Payload::BookUpdate(u) => Some(&u.pair),
        Payload::Trade { pair, .. } | Payload::Ticker { pair, .. } => Some(pair),
        _ => None,
    }
}
