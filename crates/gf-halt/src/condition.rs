//! Halt conditions: the [`Condition`] trait, the seven built-in conditions and the
//! [`ConditionSet`] that dispatches each event only to the conditions it concerns.
//!
//! **The comparison**: a condition is breached when `value > threshold`, strictly. A 16 %
//! drawdown over a 15 % limit halts; 15 % exactly does not. The same holds for counts: with
//! `max_consecutive_losses = 5` the sixth consecutive loss halts, and with
//! `max_api_errors_per_min = 10` the eleventh error within a rolling minute halts.
//!
//! A breach fires on the edge (clear → breached); a condition that stays breached does not
//! fire again until it has cleared. Resume is refused while any condition is breached.

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use gf_core::config::HaltConfig;
use gf_core::event::ExchangeSystem;
use gf_core::{Event, EventKind, HaltBehaviour, KindSet, Pair, Payload};
use gf_risk::PortfolioView;

use crate::checklist::ItemSpec;

/// What a condition may look at while evaluating.
pub struct EvalContext<'a> {
    /// The current time, from the coordinator's clock.
    pub now: DateTime<Utc>,
    /// gf-risk's portfolio figures.
    pub portfolio: &'a dyn PortfolioView,
}

impl fmt::Debug for EvalContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvalContext")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A halt condition. Adding one is implementing this trait and registering it with
/// [`ConditionSet::register`].
pub trait Condition: Send + fmt::Debug {
    /// Stable id (one of [`gf_core::config::CONDITION_IDS`] for the built-ins).
    fn id(&self) -> &str;
    /// Human name.
    fn name(&self) -> &str;
    /// The limit; breached when the value is strictly greater.
    fn threshold(&self) -> Decimal;
    /// Event kinds that can move the value.
    fn kinds(&self) -> KindSet;
    /// Takes in one event (of a kind in [`Condition::kinds`]) and returns the value now.
    /// Must be cheap: it runs on every market event.
    fn observe(&mut self, event: &Event, ctx: &EvalContext<'_>) -> Decimal;
    /// Re-evaluates from time and the portfolio alone (periodic sweep, resume check).
    fn sample(&mut self, ctx: &EvalContext<'_>) -> Decimal;
    /// Which pair or component is worst, for the reason text.
    fn detail(&self) -> Option<String> {
        None
    }
    /// Checklist items this condition adds when it causes a halt.
    fn recovery_items(&self) -> Vec<ItemSpec> {
        Vec::new()
    }
    /// Starts watching a pair (time-based conditions measure from `now`).
    fn watch_pair(&mut self, _pair: &Pair, _now: DateTime<Utc>) {}
}

/// A condition's state, for the API and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionStatus {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Limit.
    pub threshold: Decimal,
    /// Latest value.
    pub value: Decimal,
    /// `value > threshold`.
    pub triggered: bool,
    /// When it was last evaluated; `None` before the first evaluation.
    pub last_evaluated: Option<DateTime<Utc>>,
    /// Worst pair or component.
    pub detail: Option<String>,
    /// What a halt it causes does.
    pub behaviour: HaltBehaviour,
}

/// A condition that just went from clear to breached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// Condition id.
    pub id: String,
    /// Value that breached.
    pub value: Decimal,
    /// The limit.
    pub threshold: Decimal,
    /// Worst pair or component.
    pub detail: Option<String>,
    /// Behaviour for the halt.
    pub behaviour: HaltBehaviour,
    /// Checklist items the halt adds.
    pub recovery_items: Vec<ItemSpec>,
    /// `"<name> <value> > <threshold>"`.
    pub reason: String,
}

fn price_kinds() -> KindSet {
    KindSet::of(&[
        EventKind::Trade,
        EventKind::Ticker,
        EventKind::BookUpdate,
        EventKind::BookSnapshot,
    ])
}

/// The pair a market-data payload is about.
#[must_use]
pub fn event_pair(payload: &Payload) -> Option<&Pair> {
    match payload {
        Payload::Trade { pair, .. }
        | Payload::Ticker { pair, .. }
        | Payload::BookInvalid { pair, .. }
        | Payload::Staleness { pair, .. } => Some(pair),
        Payload::BookSnapshot(s) => Some(&s.pair),
        Payload::BookUpdate(u) => Some(&u.pair),
        _ => None,
    }
}

/// A condition read straight from one [`PortfolioView`] figure.
pub struct PortfolioMetric {
    id: &'static str,
    name: &'static str,
    threshold: Decimal,
    kinds: KindSet,
    metric: fn(&dyn PortfolioView) -> Decimal,
    items: &'static [(&'static str, &'static str)],
}

impl fmt::Debug for PortfolioMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortfolioMetric")
            .field("id", &self.id)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl PortfolioMetric {
    /// `max_total_drawdown`: drawdown from peak equity, percent.
    #[must_use]
    pub fn total_drawdown(threshold_pct: Decimal) -> Self {
        Self {
            id: "max_total_drawdown",
            name: "max total drawdown %",
            threshold: threshold_pct,
            kinds: price_kinds().with(EventKind::Fill),
            metric: |p| p.total_drawdown_pct(),
            items: &[("review_drawdown_cause", "Review what caused the drawdown")],
        }
    }

    /// `max_daily_drawdown`: drawdown from the start-of-UTC-day equity, percent.
    #[must_use]
    pub fn daily_drawdown(threshold_pct: Decimal) -> Self {
        Self {
            id: "max_daily_drawdown",
            name: "max daily drawdown %",
            threshold: threshold_pct,
            kinds: price_kinds().with(EventKind::Fill),
            metric: |p| p.daily_drawdown_pct(),
            items: &[("review_drawdown_cause", "Review what caused the drawdown")],
        }
    }

    /// `max_consecutive_losses`: consecutive losing round trips.
    #[must_use]
    pub fn consecutive_losses(max: u32) -> Self {
        Self {
            id: "max_consecutive_losses",
            name: "max consecutive losses",
            threshold: Decimal::from(max),
            kinds: KindSet::of(&[EventKind::Fill]),
            metric: |p| Decimal::from(p.consecutive_losses()),
            items: &[(
                "review_strategy_losses",
                "Review the strategy's losing trades",
            )],
        }
    }

    /// `position_risk`: total open exposure, quote currency.
    #[must_use]
    pub fn position_risk(max_exposure: Decimal) -> Self {
        Self {
            id: "position_risk",
            name: "position exposure",
            threshold: max_exposure,
            kinds: price_kinds().with(EventKind::Fill),
            metric: |p| p.exposure(),
            items: &[(
                "review_exposure_limits",
                "Review open exposure against the limits",
            )],
        }
    }
}

impl Condition for PortfolioMetric {
    fn id(&self) -> &str {
        self.id
    }
    fn name(&self) -> &str {
        self.name
    }
    fn threshold(&self) -> Decimal {
        self.threshold
    }
    fn kinds(&self) -> KindSet {
        self.kinds
    }
    fn observe(&mut self, _event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        (self.metric)(ctx.portfolio)
    }
    fn sample(&mut self, ctx: &EvalContext<'_>) -> Decimal {
        (self.metric)(ctx.portfolio)
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        self.items
            .iter()
            .map(|(id, title)| ItemSpec::new(*id, *title))
            .collect()
    }
}

/// `market_volatility`: the worst rolling volatility over the pairs seen, percent.
#[derive(Debug)]
pub struct Volatility {
    threshold: Decimal,
    pairs: Vec<(Pair, Decimal)>,
    worst: Option<usize>,
}

impl Volatility {
    /// With the limit in percent.
    #[must_use]
    pub fn new(threshold_pct: Decimal) -> Self {
        Self {
            threshold: threshold_pct,
            pairs: Vec::new(),
            worst: None,
        }
    }

    fn set(&mut self, pair: &Pair, value: Decimal) {
        match self.pairs.iter_mut().find(|(p, _)| p == pair) {
            Some(slot) => slot.1 = value,
            None => self.pairs.push((pair.clone(), value)),
        }
    }

    fn value(&mut self) -> Decimal {
        self.worst = self
            .pairs
            .iter()
            .enumerate()
            .max_by_key(|(_, (_, v))| *v)
            .map(|(i, _)| i);
        self.worst.map_or(Decimal::ZERO, |i| self.pairs[i].1)
    }
}

impl Condition for Volatility {
    fn id(&self) -> &str {
        "market_volatility"
    }
    fn name(&self) -> &str {
        "market volatility %"
    }
    fn threshold(&self) -> Decimal {
        self.threshold
    }
    fn kinds(&self) -> KindSet {
        price_kinds()
    }
    fn observe(&mut self, event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        if let Some(pair) = event_pair(&event.payload)
            && let Some(v) = ctx.portfolio.volatility_pct(pair)
        {
            self.set(pair, v);
        }
        self.value()
    }
    fn sample(&mut self, ctx: &EvalContext<'_>) -> Decimal {
        for (pair, v) in &mut self.pairs {
            if let Some(now) = ctx.portfolio.volatility_pct(pair) {
                *v = now;
            }
        }
        self.value()
    }
    fn detail(&self) -> Option<String> {
        self.worst.map(|i| self.pairs[i].0.to_string())
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "confirm_volatility_normal",
            "Confirm volatility is back to normal",
        )]
    }
}

/// `api_error_rate`: `ApiError` events in the rolling minute before now (by the clock).
#[derive(Debug)]
pub struct ApiErrorRate {
    threshold: Decimal,
    window: VecDeque<DateTime<Utc>>,
    cap: usize,
}

impl ApiErrorRate {
    /// With the limit in errors per minute.
    #[must_use]
    pub fn new(max_per_min: u32) -> Self {
        let cap = usize::try_from(max_per_min).unwrap_or(usize::MAX / 4);
        Self {
            threshold: Decimal::from(max_per_min),
            window: VecDeque::new(),
            // Keep a few more than the limit: enough to show how far over it is.
            cap: cap.saturating_mul(4).max(16),
        }
    }

    fn evict(&mut self, now: DateTime<Utc>) -> Decimal {
        let horizon = now - Duration::minutes(1);
        while self.window.front().is_some_and(|t| *t <= horizon) {
            self.window.pop_front();
        }
        Decimal::from(self.window.len())
    }
}

impl Condition for ApiErrorRate {
    fn id(&self) -> &str {
        "api_error_rate"
    }
    fn name(&self) -> &str {
        "api errors per minute"
    }
    fn threshold(&self) -> Decimal {
        self.threshold
    }
    fn kinds(&self) -> KindSet {
        KindSet::of(&[EventKind::ApiError])
    }
    fn observe(&mut self, event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        if matches!(event.payload, Payload::ApiError { .. }) {
            if self.window.len() >= self.cap {
                self.window.pop_front();
            }
            self.window.push_back(ctx.now);
        }
        self.evict(ctx.now)
    }
    fn sample(&mut self, ctx: &EvalContext<'_>) -> Decimal {
        self.evict(ctx.now)
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "confirm_exchange_status",
            "Confirm the exchange's status page and API are healthy",
        )]
    }
}

/// `market_data_staleness`: seconds since the last market-data message of the stalest
/// watched pair, from the clock (plus gf-market's own `Staleness` reports).
#[derive(Debug)]
pub struct Staleness {
    threshold: Decimal,
    last_seen: Vec<(Pair, DateTime<Utc>)>,
    worst: Option<usize>,
}

impl Staleness {
    /// With the limit in seconds.
    #[must_use]
    pub fn new(max_secs: u64) -> Self {
        Self {
            threshold: Decimal::from(max_secs),
            last_seen: Vec::new(),
            worst: None,
        }
    }

    fn slot(&mut self, pair: &Pair, now: DateTime<Utc>) -> &mut DateTime<Utc> {
        let idx = match self.last_seen.iter().position(|(p, _)| p == pair) {
            Some(i) => i,
            None => {
                self.last_seen.push((pair.clone(), now));
                self.last_seen.len() - 1
            }
        };
        &mut self.last_seen[idx].1
    }

    fn value(&mut self, now: DateTime<Utc>) -> Decimal {
        self.worst = self
            .last_seen
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, t))| *t)
            .map(|(i, _)| i);
        self.worst.map_or(Decimal::ZERO, |i| {
            let ms = (now - self.last_seen[i].1).num_milliseconds().max(0);
            Decimal::new(ms, 3)
        })
    }
}

impl Condition for Staleness {
    fn id(&self) -> &str {
        "market_data_staleness"
    }
    fn name(&self) -> &str {
        "market data age (s)"
    }
    fn threshold(&self) -> Decimal {
        self.threshold
    }
    fn kinds(&self) -> KindSet {
        price_kinds().with(EventKind::Staleness)
    }
    fn observe(&mut self, event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        match &event.payload {
            Payload::Staleness {
                pair,
                stale,
                age_ms,
                ..
            } => {
                let now = ctx.now;
                let slot = self.slot(pair, now);
                if *stale {
                    let age = Duration::milliseconds(i64::try_from(*age_ms).unwrap_or(i64::MAX));
                    let seen = now.checked_sub_signed(age).unwrap_or(DateTime::UNIX_EPOCH);
                    *slot = (*slot).min(seen);
                } else {
                    *slot = now;
                }
            }
            payload => {
                if let Some(pair) = event_pair(payload) {
                    *self.slot(pair, ctx.now) = ctx.now;
                }
            }
        }
        self.value(ctx.now)
    }
    fn sample(&mut self, ctx: &EvalContext<'_>) -> Decimal {
        self.value(ctx.now)
    }
    fn detail(&self) -> Option<String> {
        self.worst.map(|i| self.last_seen[i].0.to_string())
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "confirm_market_data_restored",
            "Confirm the market data feed is restored",
        )]
    }
    fn watch_pair(&mut self, pair: &Pair, now: DateTime<Utc>) {
        self.slot(pair, now);
    }
}

/// The condition id of [`DiskSpace`].
pub const DISK_SPACE_LOW: &str = "disk_space_low";

/// Samples the free space (bytes available to the process) of the file system holding
/// the data directory; `None` when it cannot be read.
pub type FreeSpaceSampler = Box<dyn FnMut() -> Option<u64> + Send>;

/// Free space on the data directory's file system below a minimum: halts *before* the
/// disk is full, while the journal can still record the halt. Time-based (sampled by the
/// sweep, not by events). The value is the shortfall in MiB (`minimum − free`, never
/// negative), so it is breached when anything is missing: threshold 0.
pub struct DiskSpace {
    min_free_mib: u64,
    sampler: FreeSpaceSampler,
    last_free_mib: Option<u64>,
}

impl fmt::Debug for DiskSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskSpace")
            .field("min_free_mib", &self.min_free_mib)
            .field("last_free_mib", &self.last_free_mib)
            .finish_non_exhaustive()
    }
}

impl DiskSpace {
    /// Halt when fewer than `min_free_mib` MiB are free, as `sampler` reads it.
    #[must_use]
    pub fn new(min_free_mib: u64, sampler: FreeSpaceSampler) -> Self {
        Self {
            min_free_mib,
            sampler,
            last_free_mib: None,
        }
    }
}

impl Condition for DiskSpace {
    fn id(&self) -> &str {
        DISK_SPACE_LOW
    }
    fn name(&self) -> &str {
        "data-dir free disk shortfall MiB"
    }
    fn threshold(&self) -> Decimal {
        Decimal::ZERO
    }
    fn kinds(&self) -> KindSet {
        KindSet::NONE
    }
    fn observe(&mut self, _event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        self.sample(ctx)
    }
    fn sample(&mut self, _ctx: &EvalContext<'_>) -> Decimal {
        // Unknown free space (statvfs failed) is not a breach by itself: a journal that
        // cannot be written halts on its own.
        self.last_free_mib = (self.sampler)().map(|b| b / (1024 * 1024));
        match self.last_free_mib {
            Some(free) => Decimal::from(self.min_free_mib.saturating_sub(free)),
            None => Decimal::ZERO,
        }
    }
    fn detail(&self) -> Option<String> {
        Some(match self.last_free_mib {
            Some(free) => format!("{free} MiB free, {} MiB required", self.min_free_mib),
            None => "free space unknown".to_owned(),
        })
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "free_disk_space",
            "Free space on the data directory's disk (the journal needs it) and check it verifies",
        )]
    }
}

/// The condition id of [`ExchangeStatus`].
pub const EXCHANGE_STATUS: &str = "exchange_status";

/// The exchange's own trading mode (Kraken's WebSocket `status` channel and REST
/// `SystemStatus`, published as [`Payload::ExchangeStatus`]): breached while Kraken
/// reports `maintenance` — no order can be placed or cancelled then — or a value it does
/// not document (fail closed). Value 1 when breached, 0 otherwise; threshold 0. While
/// breached, resume is refused. `cancel_only` and `post_only` do not halt: the order path
/// refuses what the mode does not allow (gf-exec's gated exchange).
#[derive(Debug)]
pub struct ExchangeStatus {
    system: ExchangeSystem,
    detail: String,
}

impl ExchangeStatus {
    /// Starting from what start-up read (REST `SystemStatus`).
    #[must_use]
    pub fn new(initial: ExchangeSystem, detail: impl Into<String>) -> Self {
        Self {
            system: initial,
            detail: detail.into(),
        }
    }

    fn value(&self) -> Decimal {
        if self.system.halts() {
            Decimal::ONE
        } else {
            Decimal::ZERO
        }
    }
}

impl Condition for ExchangeStatus {
    fn id(&self) -> &str {
        EXCHANGE_STATUS
    }
    fn name(&self) -> &str {
        "exchange not trading (maintenance)"
    }
    fn threshold(&self) -> Decimal {
        Decimal::ZERO
    }
    fn kinds(&self) -> KindSet {
        KindSet::of(&[EventKind::ExchangeStatus])
    }
    fn observe(&mut self, event: &Event, _ctx: &EvalContext<'_>) -> Decimal {
        if let Payload::ExchangeStatus { system, detail } = &event.payload {
            self.system = *system;
            self.detail.clone_from(detail);
        }
        self.value()
    }
    fn sample(&mut self, _ctx: &EvalContext<'_>) -> Decimal {
        self.value()
    }
    fn detail(&self) -> Option<String> {
        Some(format!("kraken reports {} ({})", self.system, self.detail))
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "confirm_exchange_online",
            "Confirm Kraken reports `online` again (status.kraken.com, SystemStatus) and check open orders",
        )]
    }
}

struct Entry {
    cond: Box<dyn Condition>,
    status: ConditionStatus,
    last_published: Option<DateTime<Utc>>,
}

/// How often an unchanged-flag value change is reported to `on_change`, at most.
const PUBLISH_EVERY: Duration = Duration::seconds(1);

/// The registered conditions with a per-event-kind dispatch table.
pub struct ConditionSet {
    entries: Vec<Entry>,
    by_kind: Vec<Vec<usize>>,
    kinds: KindSet,
}

impl fmt::Debug for ConditionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.status))
            .finish()
    }
}

impl Default for ConditionSet {
    fn default() -> Self {
        Self::empty()
    }
}

impl ConditionSet {
    /// No conditions.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
            by_kind: vec![Vec::new(); EventKind::ALL.len()],
            kinds: KindSet::NONE,
        }
    }

    /// The seven built-in conditions with the configured thresholds, minus those disabled
    /// under `[halt.conditions.<id>] enabled = false`.
    #[must_use]
    pub fn from_config(cfg: &HaltConfig) -> Self {
        let mut set = Self::empty();
        let all: Vec<Box<dyn Condition>> = vec![
            Box::new(PortfolioMetric::total_drawdown(cfg.max_total_drawdown_pct)),
            Box::new(PortfolioMetric::daily_drawdown(cfg.max_daily_drawdown_pct)),
            Box::new(PortfolioMetric::consecutive_losses(
                cfg.max_consecutive_losses,
            )),
            Box::new(Volatility::new(cfg.max_volatility_pct)),
            Box::new(ApiErrorRate::new(cfg.max_api_errors_per_min)),
            Box::new(Staleness::new(cfg.max_staleness_secs)),
            Box::new(PortfolioMetric::position_risk(cfg.max_exposure_notional)),
        ];
        for cond in all {
            let over = cfg.conditions.get(cond.id());
            if over.and_then(|c| c.enabled) == Some(false) {
                continue;
            }
            let behaviour = over.and_then(|c| c.behaviour).unwrap_or(cfg.behaviour);
            set.register(cond, behaviour);
        }
        set
    }

    /// Adds a condition.
    pub fn register(&mut self, cond: Box<dyn Condition>, behaviour: HaltBehaviour) {
        let idx = self.entries.len();
        let kinds = cond.kinds();
        for kind in EventKind::ALL {
            if kinds.contains(*kind) {
                self.by_kind[*kind as usize].push(idx);
                self.kinds = self.kinds.with(*kind);
            }
        }
        self.entries.push(Entry {
            status: ConditionStatus {
                id: cond.id().to_owned(),
                name: cond.name().to_owned(),
                threshold: cond.threshold(),
                value: Decimal::ZERO,
                triggered: false,
                last_evaluated: None,
                detail: None,
                behaviour,
            },
            cond,
            last_published: None,
        });
    }

    /// Every kind some condition listens to (subscribe with this).
    #[must_use]
    pub fn kinds(&self) -> KindSet {
        self.kinds
    }

    /// Starts watching a pair in every condition.
    pub fn watch_pair(&mut self, pair: &Pair, now: DateTime<Utc>) {
        for e in &mut self.entries {
            e.cond.watch_pair(pair, now);
        }
    }

    /// Feeds one event to the conditions that listen to its kind. `on_change` sees each
    /// status whose triggered flag flipped, or whose value changed and was last reported
    /// at least a second ago. Returns the conditions that just became breached.
    pub fn observe(
        &mut self,
        event: &Event,
        ctx: &EvalContext<'_>,
        on_change: &mut dyn FnMut(&ConditionStatus),
    ) -> Vec<Breach> {
        let mut breaches = Vec::new();
        let Some(targets) = self.by_kind.get(event.kind() as usize) else {
            return breaches;
        };
        for &idx in targets {
            let entry = &mut self.entries[idx];
            let value = entry.cond.observe(event, ctx);
            if let Some(b) = Self::update(entry, value, ctx.now, on_change) {
                breaches.push(b);
            }
        }
        breaches
    }

    /// Re-samples every condition (the periodic sweep and the resume check).
    pub fn sweep(
        &mut self,
        ctx: &EvalContext<'_>,
        on_change: &mut dyn FnMut(&ConditionStatus),
    ) -> Vec<Breach> {
        let mut breaches = Vec::new();
        for entry in &mut self.entries {
            let value = entry.cond.sample(ctx);
            if let Some(b) = Self::update(entry, value, ctx.now, on_change) {
                breaches.push(b);
            }
        }
        breaches
    }

    fn update(
        entry: &mut Entry,
        value: Decimal,
        now: DateTime<Utc>,
        on_change: &mut dyn FnMut(&ConditionStatus),
    ) -> Option<Breach> {
        let status = &mut entry.status;
        let was = status.triggered;
        let changed = status.value != value;
        status.value = value;
        status.triggered = value > status.threshold;
        status.last_evaluated = Some(now);
        let flipped = was != status.triggered;
        if flipped {
            status.detail = entry.cond.detail();
        }
        let due = entry
            .last_published
            .is_none_or(|t| now - t >= PUBLISH_EVERY);
        if flipped || (changed && due) {
            if !flipped {
                status.detail = entry.cond.detail();
            }
            entry.last_published = Some(now);
            on_change(status);
        }
        if status.triggered && !was {
            let detail = entry.cond.detail();
            // Four decimals are plenty for a person; the exact value is in `Breach::value`.
            let shown = status.value.round_dp(4).normalize();
            let reason = match &detail {
                Some(d) => format!("{} {shown} > {} ({d})", status.name, status.threshold),
                None => format!("{} {shown} > {}", status.name, status.threshold),
            };
            Some(Breach {
                id: status.id.clone(),
                value,
                threshold: status.threshold,
                detail,
                behaviour: status.behaviour,
                recovery_items: entry.cond.recovery_items(),
                reason,
            })
        } else {
            None
        }
    }

    /// Every condition's status, in registration order.
    #[must_use]
    pub fn statuses(&self) -> Vec<ConditionStatus> {
        self.entries.iter().map(|e| e.status.clone()).collect()
    }

    /// Ids of the conditions breached at their last evaluation.
    #[must_use]
    pub fn breached(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.status.triggered)
            .map(|e| e.status.id.clone())
            .collect()
    }

    /// Checklist items of a condition, by id (empty when unknown).
    #[must_use]
    pub fn recovery_items(&self, id: &str) -> Vec<ItemSpec> {
        self.entries
            .iter()
            .find(|e| e.status.id == id)
            .map(|e| e.cond.recovery_items())
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use gf_core::config::{CONDITION_IDS, ConditionConfig};
    use gf_core::{ApiErrorKind, ManualClock, Position, Side, Source, clock::Clock};
    use rust_decimal_macros::dec;

    /// A settable portfolio view.
    #[derive(Debug, Default)]
    pub(crate) struct View {
        pub total: Decimal,
        pub daily: Decimal,
        pub losses: u32,
        pub exposure: Decimal,
        pub vol: Option<Decimal>,
        pub positions: Vec<Position>,
    }

    impl PortfolioView for View {
        fn equity(&self) -> Decimal {
            dec!(100000)
        }
        fn peak_equity(&self) -> Decimal {
            dec!(100000)
        }
        fn total_drawdown_pct(&self) -> Decimal {
            self.total
        }
        fn daily_drawdown_pct(&self) -> Decimal {
            self.daily
        }
        fn consecutive_losses(&self) -> u32 {
            self.losses
        }
        fn positions(&self) -> Vec<Position> {
            self.positions.clone()
        }
        fn exposure(&self) -> Decimal {
            self.exposure
        }
        fn volatility_pct(&self, _pair: &Pair) -> Option<Decimal> {
            self.vol
        }
    }

    pub(crate) fn pair(s: &str) -> Pair {
        Pair::new(s).unwrap()
    }

    pub(crate) fn trade(clock: &ManualClock, p: &str) -> Event {
        Event::new(
            clock.now(),
            Source::Test,
            Payload::Trade {
                pair: pair(p),
                side: Side::Buy,
                price: dec!(0.5),
                qty: dec!(10),
                trade_id: 1,
            },
        )
    }

    fn api_error(clock: &ManualClock) -> Event {
        Event::new(
            clock.now(),
            Source::Exec,
            Payload::ApiError {
                endpoint: "AddOrder".into(),
                kind: ApiErrorKind::ServiceUnavailable,
                message: "EService:Unavailable".into(),
                retryable: true,
            },
        )
    }

    fn fill(clock: &ManualClock) -> Event {
        Event::new(
            clock.now(),
            Source::Exec,
            Payload::Fill(gf_core::Fill {
                trade_id: "T1".into(),
                order_id: gf_core::OrderId::new("O1"),
                client_order_id: None,
                pair: pair("XRP/USD"),
                side: Side::Sell,
                qty: dec!(1),
                price: dec!(0.5),
                fee: dec!(0),
                ts: clock.now(),
                purpose: gf_core::OrderPurpose::Normal,
            }),
        )
    }

    fn observe(
        set: &mut ConditionSet,
        view: &View,
        clock: &ManualClock,
        ev: &Event,
    ) -> Vec<Breach> {
        let ctx = EvalContext {
            now: clock.now(),
            portfolio: view,
        };
        set.observe(ev, &ctx, &mut |_| {})
    }

    #[test]
    fn ids_match_the_config_vocabulary() {
        let set = ConditionSet::from_config(&HaltConfig::default());
        let ids: Vec<String> = set.statuses().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, CONDITION_IDS);
    }

    #[test]
    fn disabled_conditions_and_behaviour_overrides() {
        let mut cfg = HaltConfig::default();
        cfg.conditions.insert(
            "market_volatility".into(),
            ConditionConfig {
                enabled: Some(false),
                behaviour: None,
            },
        );
        cfg.conditions.insert(
            "api_error_rate".into(),
            ConditionConfig {
                enabled: None,
                behaviour: Some(HaltBehaviour::CancelOnly),
            },
        );
        let set = ConditionSet::from_config(&cfg);
        let st = set.statuses();
        assert_eq!(st.len(), 6);
        assert!(st.iter().all(|s| s.id != "market_volatility"));
        let api = st.iter().find(|s| s.id == "api_error_rate").unwrap();
        assert_eq!(api.behaviour, HaltBehaviour::CancelOnly);
        let dd = st.iter().find(|s| s.id == "max_total_drawdown").unwrap();
        assert_eq!(dd.behaviour, HaltBehaviour::ClosePositions);
    }

    /// Each condition triggers strictly above its threshold, never at it.
    #[test]
    fn each_condition_triggers_exactly_above_its_threshold() {
        struct Case {
            id: &'static str,
            at: fn(&mut View),
            over: fn(&mut View),
        }
        let cases = [
            Case {
                id: "max_total_drawdown",
                at: |v| v.total = dec!(15),
                over: |v| v.total = dec!(16),
            },
            Case {
                id: "max_daily_drawdown",
                at: |v| v.daily = dec!(2),
                over: |v| v.daily = dec!(2.01),
            },
            Case {
                id: "max_consecutive_losses",
                at: |v| v.losses = 5,
                over: |v| v.losses = 6,
            },
            Case {
                id: "market_volatility",
                at: |v| v.vol = Some(dec!(5)),
                over: |v| v.vol = Some(dec!(5.0001)),
            },
            Case {
                id: "position_risk",
                at: |v| v.exposure = dec!(100000),
                over: |v| v.exposure = dec!(100000.01),
            },
        ];
        for case in cases {
            let clock = ManualClock::default();
            let mut set = ConditionSet::from_config(&HaltConfig::default());
            let mut view = View::default();
            (case.at)(&mut view);
            let ev = if case.id == "max_consecutive_losses" {
                fill(&clock)
            } else {
                trade(&clock, "XRP/USD")
            };
            assert!(
                observe(&mut set, &view, &clock, &ev).is_empty(),
                "{} must not trigger at its threshold",
                case.id
            );
            (case.over)(&mut view);
            let breaches = observe(&mut set, &view, &clock, &ev);
            assert_eq!(breaches.len(), 1, "{}", case.id);
            assert_eq!(breaches[0].id, case.id);
            assert!(!breaches[0].recovery_items.is_empty());
            // Edge-triggered: staying breached does not fire again.
            assert!(
                observe(&mut set, &view, &clock, &ev).is_empty(),
                "{}",
                case.id
            );
            assert_eq!(set.breached(), vec![case.id.to_owned()]);
        }
    }

    #[test]
    fn seed_case_sixteen_percent_over_fifteen_halts() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let view = View {
            total: dec!(16),
            ..View::default()
        };
        let b = observe(&mut set, &view, &clock, &trade(&clock, "XRP/USD"));
        assert_eq!(b[0].id, "max_total_drawdown");
        assert_eq!(b[0].reason, "max total drawdown % 16 > 15");
        assert_eq!(b[0].behaviour, HaltBehaviour::ClosePositions);
    }

    #[test]
    fn reasons_show_four_decimals_and_breaches_keep_the_exact_value() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let view = View {
            daily: dec!(2.01110493007659934034800),
            ..View::default()
        };
        let b = observe(&mut set, &view, &clock, &trade(&clock, "XRP/USD"));
        assert_eq!(b[0].reason, "max daily drawdown % 2.0111 > 2");
        assert_eq!(b[0].value, dec!(2.01110493007659934034800));
    }

    #[test]
    fn api_error_rate_counts_a_rolling_minute() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let view = View::default();
        for _ in 0..10 {
            assert!(observe(&mut set, &view, &clock, &api_error(&clock)).is_empty());
            clock.advance(Duration::seconds(5));
        }
        // 10 errors within 50 s: at the limit. One minute after the first, it has aged out.
        clock.advance(Duration::seconds(10));
        assert!(observe(&mut set, &view, &clock, &api_error(&clock)).is_empty());
        let b = observe(&mut set, &view, &clock, &api_error(&clock));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].id, "api_error_rate");
        assert_eq!(b[0].value, dec!(11));
        // The sweep lets the window drain.
        clock.advance(Duration::minutes(2));
        let ctx = EvalContext {
            now: clock.now(),
            portfolio: &view,
        };
        set.sweep(&ctx, &mut |_| {});
        assert!(set.breached().is_empty());
    }

    #[test]
    fn staleness_by_sweep_and_by_report() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let view = View::default();
        set.watch_pair(&pair("DOGE/USD"), clock.now());
        observe(&mut set, &view, &clock, &trade(&clock, "XRP/USD"));
        clock.advance(Duration::seconds(60));
        let ctx = EvalContext {
            now: clock.now(),
            portfolio: &view,
        };
        assert!(set.sweep(&ctx, &mut |_| {}).is_empty(), "60 s is the limit");
        clock.advance(Duration::milliseconds(1));
        let ctx = EvalContext {
            now: clock.now(),
            portfolio: &view,
        };
        let b = set.sweep(&ctx, &mut |_| {});
        assert_eq!(b[0].id, "market_data_staleness");
        assert_eq!(b[0].value, dec!(60.001));
        assert_eq!(b[0].detail.as_deref(), Some("DOGE/USD"));
        // Fresh data on both pairs clears it.
        observe(&mut set, &view, &clock, &trade(&clock, "XRP/USD"));
        observe(&mut set, &view, &clock, &trade(&clock, "DOGE/USD"));
        assert!(set.breached().is_empty());
        // gf-market's own report moves last-seen back.
        let report = Event::new(
            clock.now(),
            Source::Market,
            Payload::Staleness {
                pair: pair("XRP/USD"),
                stale: true,
                age_ms: 61_000,
                threshold_ms: 60_000,
            },
        );
        let b = observe(&mut set, &view, &clock, &report);
        assert_eq!(b[0].value, dec!(61));
    }

    #[test]
    fn absurd_staleness_report_does_not_panic() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let view = View::default();
        let report = Event::new(
            clock.now(),
            Source::Market,
            Payload::Staleness {
                pair: pair("XRP/USD"),
                stale: true,
                age_ms: u64::MAX,
                threshold_ms: 0,
            },
        );
        let b = observe(&mut set, &view, &clock, &report);
        assert_eq!(b[0].id, "market_data_staleness");
        assert!(b[0].value > dec!(1000000));
    }

    #[test]
    fn volatility_reports_the_worst_pair() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let mut view = View {
            vol: Some(dec!(1)),
            ..View::default()
        };
        observe(&mut set, &view, &clock, &trade(&clock, "XRP/USD"));
        view.vol = Some(dec!(7));
        let b = observe(&mut set, &view, &clock, &trade(&clock, "DOGE/USD"));
        assert_eq!(b[0].detail.as_deref(), Some("DOGE/USD"));
        assert!(b[0].reason.contains("(DOGE/USD)"), "{}", b[0].reason);
    }

    #[test]
    fn value_changes_are_reported_at_most_once_a_second() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let mut view = View::default();
        let mut seen = Vec::new();
        for i in 1..=5 {
            view.total = Decimal::from(i);
            let ctx = EvalContext {
                now: clock.now(),
                portfolio: &view,
            };
            set.observe(&trade(&clock, "XRP/USD"), &ctx, &mut |s| {
                if s.id == "max_total_drawdown" {
                    seen.push(s.value);
                }
            });
            clock.advance(Duration::milliseconds(400));
        }
        // t=0 → 1, t=1.2 → 4; the flips would be reported at once.
        assert_eq!(seen, vec![dec!(1), dec!(4)]);
    }

    #[test]
    fn unrelated_events_touch_nothing() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let view = View {
            total: dec!(50),
            ..View::default()
        };
        let ev = Event::new(
            clock.now(),
            Source::Test,
            Payload::Latency {
                stage: "x".into(),
                micros: 1,
            },
        );
        assert!(observe(&mut set, &view, &clock, &ev).is_empty());
        assert!(set.statuses().iter().all(|s| s.last_evaluated.is_none()));
        assert!(!set.kinds().contains(EventKind::Latency));
        assert!(set.kinds().contains(EventKind::ApiError));
    }
}

#[cfg(test)]
mod property_tests {
    use super::tests::{View, trade};
    use super::*;
    use gf_core::{Clock, ManualClock};
    use proptest::prelude::*;

    proptest! {
        /// The triggered flag is exactly `value > threshold`, whatever the sequence.
        #[test]
        fn prop_triggered_iff_strictly_above(values in proptest::collection::vec(0u32..3000, 1..30)) {
            let clock = ManualClock::default();
            let mut set = ConditionSet::from_config(&HaltConfig::default());
            let mut view = View::default();
            let mut breaches = 0;
            let mut was = false;
            for v in values {
                view.total = Decimal::new(i64::from(v), 2);
                let ctx = EvalContext { now: clock.now(), portfolio: &view };
                breaches += set.observe(&trade(&clock, "XRP/USD"), &ctx, &mut |_| {})
                    .iter().filter(|b| b.id == "max_total_drawdown").count();
                let now_breached = view.total > Decimal::new(15, 0);
                let st = set.statuses().into_iter().find(|s| s.id == "max_total_drawdown").unwrap();
                prop_assert_eq!(st.triggered, now_breached);
                if now_breached && !was {
                    prop_assert!(breaches > 0);
                }
                was = now_breached;
            }
        }
    }
}

/// Tests that kill mutants `cargo xtask mutants` found alive: what each condition is
/// called and asks for, the time-based and exchange conditions without the coordinator,
/// and the exact edges of windows and reporting.
#[cfg(test)]
mod mutant_kills {
    use std::sync::Arc;

    use super::tests::{View, pair, trade};
    use super::*;
    use gf_core::{ApiErrorKind, BookSnapshot, BookUpdate, Clock, ManualClock, Source};
    use parking_lot::Mutex;
    use rust_decimal_macros::dec;

    const MIB: u64 = 1024 * 1024;

    fn ctx<'a>(clock: &ManualClock, view: &'a View) -> EvalContext<'a> {
        EvalContext {
            now: clock.now(),
            portfolio: view,
        }
    }

    fn event(clock: &ManualClock, payload: Payload) -> Event {
        Event::new(clock.now(), Source::Test, payload)
    }

    fn api_error(clock: &ManualClock) -> Event {
        event(
            clock,
            Payload::ApiError {
                endpoint: "AddOrder".into(),
                kind: ApiErrorKind::ServiceUnavailable,
                message: "EService:Unavailable".into(),
                retryable: true,
            },
        )
    }

    fn all_conditions() -> ConditionSet {
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        set.register(
            Box::new(DiskSpace::new(100, Box::new(|| None))),
            HaltBehaviour::Hold,
        );
        set.register(
            Box::new(ExchangeStatus::new(ExchangeSystem::Online, "rest")),
            HaltBehaviour::Hold,
        );
        set
    }

    #[test]
    fn debug_output_shows_what_identifies_a_condition() {
        let clock = ManualClock::default();
        let view = View::default();
        let c = ctx(&clock, &view);
        assert_eq!(
            format!("{c:?}"),
            format!("EvalContext {{ now: {:?}, .. }}", clock.now())
        );
        let dd = PortfolioMetric::total_drawdown(dec!(15));
        assert_eq!(
            format!("{dd:?}"),
            "PortfolioMetric { id: \"max_total_drawdown\", threshold: 15, .. }"
        );
        let disk = DiskSpace::new(100, Box::new(|| None));
        assert_eq!(
            format!("{disk:?}"),
            "DiskSpace { min_free_mib: 100, last_free_mib: None, .. }"
        );
        assert_eq!(format!("{:?}", ConditionSet::empty()), "[]");
        let mut set = ConditionSet::default();
        set.register(Box::new(dd), HaltBehaviour::Hold);
        let text = format!("{set:?}");
        assert!(
            text.starts_with("[ConditionStatus { id: \"max_total_drawdown\""),
            "{text}"
        );
    }

    #[test]
    fn every_market_data_payload_names_its_pair() {
        let p = pair("XRP/USD");
        let payloads = [
            Payload::BookSnapshot(BookSnapshot {
                pair: p.clone(),
                bids: vec![],
                asks: vec![],
                checksum: 0,
            }),
            Payload::BookUpdate(BookUpdate {
                pair: p.clone(),
                bids: Default::default(),
                asks: Default::default(),
                checksum: 0,
                best_bid: None,
                best_ask: None,
            }),
            Payload::BookInvalid {
                pair: p.clone(),
                reason: "checksum".into(),
            },
            Payload::Ticker {
                pair: p.clone(),
                bid: dec!(1),
                ask: dec!(1),
                last: dec!(1),
                volume: dec!(1),
            },
            Payload::Staleness {
                pair: p.clone(),
                stale: true,
                age_ms: 1,
                threshold_ms: 1,
            },
        ];
        for payload in &payloads {
            assert_eq!(event_pair(payload), Some(&p), "{payload:?}");
        }
        let clock = ManualClock::default();
        assert_eq!(event_pair(&trade(&clock, "XRP/USD").payload), Some(&p));
        assert_eq!(event_pair(&api_error(&clock).payload), None);
    }

    #[test]
    fn every_condition_has_its_name_threshold_kinds_and_items() {
        let set = all_conditions();
        let got: Vec<(String, String, Decimal)> = set
            .statuses()
            .into_iter()
            .map(|s| (s.id, s.name, s.threshold))
            .collect();
        let want = [
            ("max_total_drawdown", "max total drawdown %", dec!(15)),
            ("max_daily_drawdown", "max daily drawdown %", dec!(2)),
            ("max_consecutive_losses", "max consecutive losses", dec!(5)),
            ("market_volatility", "market volatility %", dec!(5)),
            ("api_error_rate", "api errors per minute", dec!(10)),
            ("market_data_staleness", "market data age (s)", dec!(60)),
            ("position_risk", "position exposure", dec!(100000)),
            (
                "disk_space_low",
                "data-dir free disk shortfall MiB",
                dec!(0),
            ),
            (
                "exchange_status",
                "exchange not trading (maintenance)",
                dec!(0),
            ),
        ];
        let want: Vec<(String, String, Decimal)> = want
            .iter()
            .map(|(i, n, t)| ((*i).to_owned(), (*n).to_owned(), *t))
            .collect();
        assert_eq!(got, want);
        let items = |id: &str| -> Vec<String> {
            set.recovery_items(id).into_iter().map(|i| i.id).collect()
        };
        assert_eq!(items("max_total_drawdown"), ["review_drawdown_cause"]);
        assert_eq!(items("max_daily_drawdown"), ["review_drawdown_cause"]);
        assert_eq!(items("max_consecutive_losses"), ["review_strategy_losses"]);
        assert_eq!(items("market_volatility"), ["confirm_volatility_normal"]);
        assert_eq!(items("api_error_rate"), ["confirm_exchange_status"]);
        assert_eq!(
            items("market_data_staleness"),
            ["confirm_market_data_restored"]
        );
        assert_eq!(items("position_risk"), ["review_exposure_limits"]);
        assert_eq!(items("disk_space_low"), ["free_disk_space"]);
        assert_eq!(items("exchange_status"), ["confirm_exchange_online"]);
        assert!(items("unknown").is_empty());

        let prices = [
            EventKind::Trade,
            EventKind::Ticker,
            EventKind::BookUpdate,
            EventKind::BookSnapshot,
        ];
        let with = |extra: &[EventKind]| KindSet::of(&[&prices[..], extra].concat());
        assert_eq!(
            PortfolioMetric::total_drawdown(dec!(1)).kinds(),
            with(&[EventKind::Fill])
        );
        assert_eq!(
            PortfolioMetric::daily_drawdown(dec!(1)).kinds(),
            with(&[EventKind::Fill])
        );
        assert_eq!(
            PortfolioMetric::position_risk(dec!(1)).kinds(),
            with(&[EventKind::Fill])
        );
        assert_eq!(
            PortfolioMetric::consecutive_losses(1).kinds(),
            KindSet::of(&[EventKind::Fill])
        );
        assert_eq!(Volatility::new(dec!(1)).kinds(), with(&[]));
        assert_eq!(Staleness::new(1).kinds(), with(&[EventKind::Staleness]));
        assert_eq!(
            ApiErrorRate::new(1).kinds(),
            KindSet::of(&[EventKind::ApiError])
        );
        assert_eq!(
            ExchangeStatus::new(ExchangeSystem::Online, "").kinds(),
            KindSet::of(&[EventKind::ExchangeStatus])
        );
        assert_eq!(DiskSpace::new(1, Box::new(|| None)).kinds(), KindSet::NONE);
        assert_eq!(
            set.kinds(),
            with(&[
                EventKind::Fill,
                EventKind::ApiError,
                EventKind::Staleness,
                EventKind::ExchangeStatus
            ])
        );
    }

    #[test]
    fn the_sweep_rereads_every_portfolio_figure_and_volatility() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let mut view = View {
            vol: Some(dec!(1)),
            ..View::default()
        };
        assert!(
            set.observe(&trade(&clock, "XRP/USD"), &ctx(&clock, &view), &mut |_| {})
                .is_empty()
        );
        view.total = dec!(16);
        view.daily = dec!(3);
        view.losses = 6;
        view.exposure = dec!(200000);
        view.vol = Some(dec!(7));
        let breaches = set.sweep(&ctx(&clock, &view), &mut |_| {});
        let ids: Vec<&str> = breaches.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "max_total_drawdown",
                "max_daily_drawdown",
                "max_consecutive_losses",
                "market_volatility",
                "position_risk"
            ]
        );
        let value = |id: &str| breaches.iter().find(|b| b.id == id).unwrap().value;
        assert_eq!(value("max_total_drawdown"), dec!(16));
        assert_eq!(value("max_daily_drawdown"), dec!(3));
        assert_eq!(value("max_consecutive_losses"), dec!(6));
        assert_eq!(value("market_volatility"), dec!(7));
        assert_eq!(value("position_risk"), dec!(200000));
        let vol = breaches
            .iter()
            .find(|b| b.id == "market_volatility")
            .unwrap();
        assert_eq!(vol.detail.as_deref(), Some("XRP/USD"));
        assert_eq!(vol.reason, "market volatility % 7 > 5 (XRP/USD)");
        // A pair whose volatility is unknown now keeps its last figure.
        view.vol = None;
        set.sweep(&ctx(&clock, &view), &mut |_| {});
        let st = set.statuses();
        let vol = st.iter().find(|s| s.id == "market_volatility").unwrap();
        assert_eq!(vol.value, dec!(7));
    }

    #[test]
    fn disk_space_is_the_shortfall_in_whole_mib() {
        let clock = ManualClock::default();
        let view = View::default();
        let free: Arc<Mutex<Option<u64>>> = Arc::new(Mutex::new(Some(250 * MIB)));
        let reading = Arc::clone(&free);
        let mut disk = DiskSpace::new(100, Box::new(move || *reading.lock()));
        assert_eq!(disk.id(), DISK_SPACE_LOW);
        assert_eq!(disk.sample(&ctx(&clock, &view)), Decimal::ZERO);
        assert_eq!(
            disk.detail().as_deref(),
            Some("250 MiB free, 100 MiB required")
        );
        *free.lock() = Some(40 * MIB + 123);
        assert_eq!(disk.sample(&ctx(&clock, &view)), dec!(60));
        assert_eq!(
            disk.detail().as_deref(),
            Some("40 MiB free, 100 MiB required")
        );
        *free.lock() = Some(0);
        assert_eq!(
            disk.observe(&trade(&clock, "XRP/USD"), &ctx(&clock, &view)),
            dec!(100)
        );
        *free.lock() = None;
        assert_eq!(disk.sample(&ctx(&clock, &view)), Decimal::ZERO);
        assert_eq!(disk.detail().as_deref(), Some("free space unknown"));

        // Through the set: the sweep finds it, no event reaches it.
        *free.lock() = Some(40 * MIB);
        let reading = Arc::clone(&free);
        let mut set = ConditionSet::empty();
        set.register(
            Box::new(DiskSpace::new(100, Box::new(move || *reading.lock()))),
            HaltBehaviour::Hold,
        );
        assert!(
            set.observe(&trade(&clock, "XRP/USD"), &ctx(&clock, &view), &mut |_| {})
                .is_empty()
        );
        let b = set.sweep(&ctx(&clock, &view), &mut |_| {});
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].reason,
            "data-dir free disk shortfall MiB 60 > 0 (40 MiB free, 100 MiB required)"
        );
        assert_eq!(b[0].behaviour, HaltBehaviour::Hold);
    }

    #[test]
    fn exchange_status_breaches_in_maintenance_and_undocumented_modes() {
        let clock = ManualClock::default();
        let view = View::default();
        let mut c = ExchangeStatus::new(ExchangeSystem::Online, "rest SystemStatus");
        assert_eq!(c.id(), EXCHANGE_STATUS);
        assert_eq!(c.sample(&ctx(&clock, &view)), Decimal::ZERO);
        assert_eq!(
            c.detail().as_deref(),
            Some("kraken reports online (rest SystemStatus)")
        );
        for (system, value) in [
            (ExchangeSystem::Maintenance, Decimal::ONE),
            (ExchangeSystem::CancelOnly, Decimal::ZERO),
            (ExchangeSystem::Unknown, Decimal::ONE),
            (ExchangeSystem::PostOnly, Decimal::ZERO),
            (ExchangeSystem::Maintenance, Decimal::ONE),
        ] {
            let ev = event(
                &clock,
                Payload::ExchangeStatus {
                    system,
                    detail: "ws status".into(),
                },
            );
            assert_eq!(c.observe(&ev, &ctx(&clock, &view)), value, "{system}");
            assert_eq!(c.sample(&ctx(&clock, &view)), value, "{system}");
        }
        assert_eq!(
            c.detail().as_deref(),
            Some("kraken reports maintenance (ws status)")
        );
        // Anything else leaves the mode as it was.
        assert_eq!(
            c.observe(&trade(&clock, "XRP/USD"), &ctx(&clock, &view)),
            Decimal::ONE
        );
    }

    #[test]
    fn api_errors_age_out_at_exactly_a_minute_and_the_window_is_capped() {
        let clock = ManualClock::default();
        let view = View::default();
        // A limit of 2 keeps at least 16 timestamps; a limit of 10 keeps 40.
        let mut low = ApiErrorRate::new(2);
        let mut high = ApiErrorRate::new(10);
        for _ in 0..50 {
            low.observe(&api_error(&clock), &ctx(&clock, &view));
            high.observe(&api_error(&clock), &ctx(&clock, &view));
        }
        assert_eq!(low.sample(&ctx(&clock, &view)), dec!(16));
        assert_eq!(high.sample(&ctx(&clock, &view)), dec!(40));
        // Other events add nothing.
        assert_eq!(
            high.observe(&trade(&clock, "XRP/USD"), &ctx(&clock, &view)),
            dec!(40)
        );
        clock.advance(Duration::milliseconds(59_999));
        assert_eq!(high.sample(&ctx(&clock, &view)), dec!(40));
        clock.advance(Duration::milliseconds(1));
        assert_eq!(
            high.sample(&ctx(&clock, &view)),
            Decimal::ZERO,
            "an error exactly a minute old is out of the window"
        );
    }

    #[test]
    fn a_fresh_staleness_report_resets_the_age_and_an_older_time_wins() {
        let clock = ManualClock::default();
        let view = View::default();
        let mut c = Staleness::new(60);
        c.watch_pair(&pair("XRP/USD"), clock.now());
        clock.advance(Duration::seconds(10));
        assert_eq!(c.sample(&ctx(&clock, &view)), dec!(10));
        let report = |stale: bool, age_ms: u64| {
            event(
                &clock,
                Payload::Staleness {
                    pair: pair("XRP/USD"),
                    stale,
                    age_ms,
                    threshold_ms: 60_000,
                },
            )
        };
        // A report younger than what the clock measured keeps the older time.
        assert_eq!(
            c.observe(&report(true, 5_000), &ctx(&clock, &view)),
            dec!(10)
        );
        assert_eq!(
            c.observe(&report(true, 70_000), &ctx(&clock, &view)),
            dec!(70)
        );
        assert_eq!(c.detail().as_deref(), Some("XRP/USD"));
        assert_eq!(
            c.observe(&report(false, 0), &ctx(&clock, &view)),
            Decimal::ZERO
        );
        // Watching an already watched pair does not reset it.
        clock.advance(Duration::seconds(3));
        c.watch_pair(&pair("XRP/USD"), clock.now());
        assert_eq!(c.sample(&ctx(&clock, &view)), dec!(3));
        assert_eq!(Staleness::new(1).sample(&ctx(&clock, &view)), Decimal::ZERO);
    }

    #[test]
    fn value_changes_are_reported_a_second_apart_and_flips_at_once() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let mut view = View::default();
        let step = |set: &mut ConditionSet, view: &View| -> Vec<(Decimal, bool)> {
            let mut seen = Vec::new();
            set.observe(&trade(&clock, "XRP/USD"), &ctx(&clock, view), &mut |s| {
                if s.id == "max_total_drawdown" {
                    seen.push((s.value, s.triggered));
                }
            });
            seen
        };
        view.total = dec!(1);
        assert_eq!(step(&mut set, &view), [(dec!(1), false)]);
        clock.advance(Duration::seconds(1));
        view.total = dec!(2);
        assert_eq!(step(&mut set, &view), [(dec!(2), false)], "a second later");
        clock.advance(Duration::milliseconds(500));
        view.total = dec!(3);
        assert!(step(&mut set, &view).is_empty(), "half a second later");
        clock.advance(Duration::milliseconds(100));
        view.total = dec!(16);
        assert_eq!(step(&mut set, &view), [(dec!(16), true)], "a flip");
        clock.advance(Duration::milliseconds(100));
        view.total = dec!(1);
        assert_eq!(step(&mut set, &view), [(dec!(1), false)], "a flip back");
        clock.advance(Duration::seconds(5));
        assert!(step(&mut set, &view).is_empty(), "unchanged");
        let st = set.statuses();
        let dd = st.iter().find(|s| s.id == "max_total_drawdown").unwrap();
        assert_eq!(dd.last_evaluated, Some(clock.now()));
        assert!(set.breached().is_empty());
    }

    #[test]
    fn a_reported_change_refreshes_the_worst_pair() {
        let clock = ManualClock::default();
        let mut set = ConditionSet::from_config(&HaltConfig::default());
        let mut view = View {
            vol: Some(dec!(1)),
            ..View::default()
        };
        let detail = |set: &ConditionSet| {
            set.statuses()
                .into_iter()
                .find(|s| s.id == "market_volatility")
                .unwrap()
                .detail
        };
        set.observe(&trade(&clock, "XRP/USD"), &ctx(&clock, &view), &mut |_| {});
        assert_eq!(detail(&set).as_deref(), Some("XRP/USD"));
        clock.advance(Duration::seconds(2));
        view.vol = Some(dec!(3));
        set.observe(&trade(&clock, "DOGE/USD"), &ctx(&clock, &view), &mut |_| {});
        assert_eq!(detail(&set).as_deref(), Some("DOGE/USD"));
    }
}
