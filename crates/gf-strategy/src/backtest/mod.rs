//! The deterministic backtest driver: "what would the kill switch have done on this data?"
//!
//! A [`Backtest`] runs a recording (the format `gf-daemon market record` writes) through
//! the daemon's own code — gf-market's book code ([`Recording`]), gf-risk's portfolio and
//! pre-trade checks, gf-core's gate, gf-exec's paper exchange behind the
//! [`GatedExchange`], gf-halt's coordinator with the configured conditions, and the
//! strategy through [`SignalExecutor`] — not a copy of any of it. What differs is the
//! driving:
//!
//! - **One clock: the recording's event time.** A [`ManualClock`] is set to each event's
//!   recorded time before anything sees it, so the daily drawdown rolls at UTC midnight of
//!   event time, staleness is judged in recorded time, and the coordinator's periodic duty
//!   ([`HaltCoordinator::tick`]) runs each time event time passes
//!   [`gf_halt::coordinator::SWEEP_INTERVAL`].
//! - **One fixed order.** Events go round a single loop: each recorded event is published
//!   on the bus, then every event on the bus is dispatched, oldest first, to the paper
//!   exchange, the portfolio, the halt coordinator and the strategy (in that order, each
//!   seeing only the kinds it subscribes to in the daemon). Whatever they publish (fills,
//!   order updates, condition values, halts) is dispatched next, before the next recorded
//!   event. A halt's closure runs to its end before the recording moves on.
//! - **Nothing random.** Client order ids are sequential ([`OrderIds::Sequential`]), the
//!   journal's key is a fixed, public backtest key, and the async halt code runs on a
//!   single-threaded Tokio runtime with paused time (its retry delays pass instantly and
//!   in order).
//!
//! Same recording and configuration ⇒ byte-identical journal and report.

pub mod report;
pub mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gf_core::{
    Config, Event, EventBus, EventKind, HaltState, KindSet, ManualClock, Payload, SharedClock,
    Source, Subscription, TradingGate, TryRecvError,
};
use gf_exec::events::Publisher;
use gf_exec::{Exchange, GatedExchange, PaperConfig, PaperExchange};
use gf_halt::{ConditionSet, HaltCoordinator, Journal, JournalKey, JournalRecord};
use gf_market::Recording;
use gf_risk::{
    ClosedTrade, Portfolio, PortfolioConfig, PortfolioView, RiskLimits, SharedPortfolio,
    TradingStats,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::StrategyKind;
use crate::execute::{OrderIds, SignalExecutor};
use crate::strategy::{Strategy, by_kind};

/// The backtest journal's key. Public on purpose: a backtest journal is a research
/// artefact, not evidence, and a fixed key makes its MACs reproducible.
pub const BACKTEST_JOURNAL_KEY: [u8; 32] = *b"gal-friday backtest journal key!";

/// How long (in the runtime's paused time) a halt's closure may take before the driver
/// moves on without it. Retries pass instantly in paused time, so only a closure that
/// cannot finish reaches this.
const CLOSURE_LIMIT: Duration = Duration::from_secs(600);

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The recording has no timestamped message.
    #[error("the recording has no message with a timestamp: nothing to replay")]
    NoTimestamps,
    /// The configuration is not usable for a backtest.
    #[error("configuration: {0}")]
    Config(String),
    /// The risk code refused its configuration.
    #[error("risk: {0}")]
    Risk(#[from] gf_risk::Error),
    /// The halt code or its journal failed.
    #[error("halt: {0}")]
    Halt(#[from] gf_halt::Error),
    /// The driver lost events on its own bus (a defect: it drains after every event).
    #[error("the backtest bus dropped {0} event(s); the run would not be faithful")]
    Lost(u64),
    /// The runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// A backtest: a recording, a configuration and a strategy.
///
/// ```
/// use gf_strategy::backtest::Backtest;
/// use gf_strategy::StrategyKind;
/// let config = gf_core::Config::default();
/// let run = Backtest::new(&config, gf_market::bundled::PAPER, StrategyKind::EmaCross)
///     .run()
///     .unwrap();
/// assert!(run.market_events > 1000);
/// ```
#[derive(Debug, Clone)]
pub struct Backtest<'a> {
    config: Config,
    input: Input<'a>,
    strategy: StrategyKind,
    halts: bool,
    journal: Option<PathBuf>,
    latency: Option<gf_core::SharedLatency>,
}

impl<'a> Backtest<'a> {
    /// A backtest of `recording` under `config` with one of the example strategies.
    /// Paper mode is implied: the paper exchange fills, seeded with
    /// `exchange.paper_balances`.
    #[must_use]
    pub fn new(config: &Config, recording: &'a [u8], strategy: StrategyKind) -> Self {
        Self {
            config: config.clone(),
            input: Input::Bytes(recording),
            strategy,
            halts: true,
            journal: None,
            latency: None,
        }
    }

    /// A backtest of a recording parsed once ([`Parsed::parse`]), for running many
    /// backtests of the same data (a sweep): the book code's work is not repeated. The
    /// parse must have used the same `[market]` settings as `config`.
    #[must_use]
    pub fn from_parsed(config: &Config, parsed: &'a Parsed, strategy: StrategyKind) -> Self {
        Self {
            config: config.clone(),
            input: Input::Parsed(parsed),
            strategy,
            halts: true,
            journal: None,
            latency: None,
        }
    }

    /// With `false`, no condition is registered: the same run without the kill switch,
    /// to see what the halts saved.
    #[must_use]
    pub fn halts(mut self, enabled: bool) -> Self {
        self.halts = enabled;
        self
    }

    /// Keeps the journal in a SQLite file at `path` (created; it must not exist) instead
    /// of in memory.
    #[must_use]
    pub fn journal_file(mut self, path: impl AsRef<Path>) -> Self {
        self.journal = Some(path.as_ref().to_path_buf());
        self
    }

    /// Records the strategy's `decision` and `order_sent` latencies into `sink`, as the
    /// daemon does. They are measured on the backtest's clock, which stands at each
    /// event's recorded time while it is handled: what they show is the clock's own
    /// resolution, not the strategy's speed (zero unless something advanced the clock).
    #[must_use]
    pub fn latency(mut self, sink: gf_core::SharedLatency) -> Self {
        self.latency = Some(sink);
        self
    }

    /// The configuration the backtest runs under.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs the example strategy chosen in [`Backtest::new`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn run(&self) -> Result<Run, Error> {
        let mut strategy = by_kind(self.strategy);
        self.run_with(strategy.as_mut())
    }

    /// Runs `strategy` (your own, see `examples/custom_strategy.rs`).
    ///
    /// # Errors
    /// See [`Error`].
    pub fn run_with(&self, strategy: &mut dyn Strategy) -> Result<Run, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Called from async code: the driver needs a runtime of its own (paused time,
            // one thread), which cannot be entered from this thread.
            return std::thread::scope(|scope| {
                scope
                    .spawn(|| self.run_here(strategy))
                    .join()
                    .unwrap_or_else(|_| Err(Error::Config("the backtest thread panicked".into())))
            });
        }
        self.run_here(strategy)
    }

    fn run_here(&self, strategy: &mut dyn Strategy) -> Result<Run, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()?;
        match self.input {
            Input::Bytes(bytes) => {
                let parsed = Parsed::parse(&self.config, bytes)?;
                runtime.block_on(self.drive(&parsed, strategy))
            }
            Input::Parsed(parsed) => runtime.block_on(self.drive(parsed, strategy)),
        }
    }

    async fn drive(&self, parsed: &Parsed, strategy: &mut dyn Strategy) -> Result<Run, Error> {
        let cfg = &self.config;
        let pairs = &cfg.market.pairs;
        let start = parsed.start;
        let clock = Arc::new(ManualClock::new(start));
        let shared: SharedClock = clock.clone();
        let bus = EventBus::new(1 << 16);
        let sub = bus.subscribe_all();
        let gate = TradingGate::new_closed();
        let key = JournalKey::from_bytes(BACKTEST_JOURNAL_KEY);
        let journal = match &self.journal {
            Some(path) => {
                if path.exists() {
                    return Err(Error::Config(format!(
                        "the journal file {} exists already; a backtest writes a new one",
                        path.display()
                    )));
                }
                Journal::open(path, shared.clone(), key)?
            }
            None => Journal::open(Path::new(":memory:"), shared.clone(), key)?,
        };
        let limits = RiskLimits::from_config(&cfg.risk)?;
        let portfolio = SharedPortfolio::new(
            Portfolio::new(PortfolioConfig::from_config(cfg), shared.clone())?,
            limits,
        );
        portfolio.write(|p| p.seed_holdings(&cfg.exchange.paper_balances))?;
        let paper = Arc::new(PaperExchange::new(
            PaperConfig::from_config(&cfg.exchange),
            Publisher::new(Some(bus.clone()), shared.clone(), Source::Paper),
        ));
        let exchange: Arc<dyn Exchange> = Arc::new(GatedExchange::new(
            paper.clone(),
            gate.clone(),
            Publisher::new(Some(bus.clone()), shared.clone(), Source::Exec),
        ));
        let view: Arc<dyn gf_risk::PortfolioView> = Arc::new(portfolio.clone());
        let conditions = if self.halts {
            ConditionSet::from_config(&cfg.halt)
        } else {
            ConditionSet::empty()
        };
        let halt = HaltCoordinator::builder(&cfg.halt, Arc::new(journal), gate.clone())
            .exchange(exchange.clone())
            .portfolio(view)
            .bus(bus.clone())
            .clock(shared.clone())
            .exchange_timeout(Duration::from_millis(cfg.exchange.timeout_ms))
            .conditions(conditions)
            .watch_pairs(pairs)
            .open()?;
        if halt.state() != HaltState::Running {
            return Err(Error::Config(format!(
                "the halt coordinator starts {}, not running",
                halt.state()
            )));
        }
        let mut executor = SignalExecutor::new(
            bus.clone(),
            shared.clone(),
            portfolio.clone(),
            halt.clone(),
            exchange,
            OrderIds::Sequential,
        );
        if let Some(sink) = &self.latency {
            executor = executor.with_latency(sink.clone());
        }
        let starting_equity = portfolio.equity();
        let mut driver = Driver {
            clock,
            bus,
            sub,
            paper,
            portfolio,
            halt,
            executor,
            strategy,
            kinds: Kinds {
                paper: KindSet::of(&[
                    EventKind::BookSnapshot,
                    EventKind::BookUpdate,
                    EventKind::BookInvalid,
                ]),
                risk: SharedPortfolio::kinds(),
                halt: KindSet::of(&[]),
                strategy: SignalExecutor::kinds(),
            },
            log: Log::default(),
            trades_seen: 0,
            next_tick: start + sweep_interval(),
            trigger_equity: None,
            start,
            base: tokio::time::Instant::now(),
            flipped: std::collections::BTreeMap::new(),
        };
        driver.kinds.halt = driver.halt.subscription_kinds();
        driver.log.equity.push(EquityPoint {
            at: start,
            equity: starting_equity,
        });

        for event in &parsed.events {
            driver.market(Arc::clone(event)).await?;
        }
        let end = driver.clock_now();
        // The last interval's duty, then whatever it started.
        driver.halt.tick().await;
        driver.settle().await?;

        let (final_equity, statistics, max_drawdown_pct) = driver.portfolio.read(|p| {
            (
                PortfolioView::equity(p),
                p.statistics(),
                p.max_drawdown_pct(),
            )
        });
        let journal = driver.halt.journal().records(usize::MAX)?;
        let Log {
            trades,
            fills,
            halts,
            equity,
            market_events,
            events,
            signals,
            refused,
        } = driver.log;
        Ok(Run {
            strategy: driver.strategy.name().to_owned(),
            halts_enabled: self.halts,
            start,
            end,
            messages: parsed.messages,
            checksum_mismatches: parsed.checksum_mismatches,
            market_events,
            events,
            signals,
            refused,
            starting_equity,
            final_equity,
            max_drawdown_pct,
            statistics,
            trades,
            fills,
            halts,
            equity,
            journal,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Input<'a> {
    Bytes(&'a [u8]),
    Parsed(&'a Parsed),
}

/// A recording run through the book code once: its events with their recorded times.
/// Every backtest runs from one ([`Backtest::new`] parses its bytes first).
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Built once, published by reference in every run.
    events: Vec<Arc<Event>>,
    start: DateTime<Utc>,
    messages: u64,
    checksum_mismatches: u64,
}

impl Parsed {
    /// Parses `recording` with `config`'s `[market]` settings (pairs, book depth,
    /// staleness), as [`Backtest::new`] would.
    ///
    /// # Errors
    /// [`Error::NoTimestamps`].
    pub fn parse(config: &Config, recording: &[u8]) -> Result<Self, Error> {
        let mut r = Recording::new(
            recording,
            Some(config.market.book_depth as usize),
            Some(&config.market.pairs),
            Duration::from_secs(config.market.staleness_secs),
        );
        let start = r.first_time().ok_or(Error::NoTimestamps)?;
        let mut batch = Vec::new();
        let mut events = Vec::new();
        while r.next_message(&mut batch) {
            events.extend(
                batch
                    .drain(..)
                    .map(|(at, payload)| Arc::new(Event::new(at, Source::Replay, payload))),
            );
        }
        Ok(Self {
            events,
            start,
            messages: r.messages(),
            checksum_mismatches: r.stats().mismatches(),
        })
    }

    /// Market events held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether it holds no event.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

fn sweep_interval() -> chrono::Duration {
    chrono::Duration::from_std(gf_halt::coordinator::SWEEP_INTERVAL)
        .unwrap_or(chrono::Duration::seconds(1))
}

/// The kinds each consumer subscribes to in the daemon.
struct Kinds {
    paper: KindSet,
    risk: KindSet,
    halt: KindSet,
    strategy: KindSet,
}

#[derive(Default)]
struct Log {
    trades: Vec<ClosedTrade>,
    fills: Vec<FillRecord>,
    halts: Vec<HaltRecord>,
    equity: Vec<EquityPoint>,
    market_events: u64,
    events: u64,
    signals: u64,
    refused: u64,
}

struct Driver<'s> {
    clock: Arc<ManualClock>,
    bus: EventBus,
    sub: Subscription,
    paper: Arc<PaperExchange>,
    portfolio: SharedPortfolio,
    halt: HaltCoordinator,
    executor: SignalExecutor,
    strategy: &'s mut dyn Strategy,
    kinds: Kinds,
    log: Log,
    trades_seen: u64,
    next_tick: DateTime<Utc>,
    /// Equity at the moment the last halt started.
    trigger_equity: Option<Decimal>,
    /// The recording's first time and the runtime instant that stands for it.
    start: DateTime<Utc>,
    base: tokio::time::Instant,
    /// Conditions that flipped to breached: when, value, threshold.
    flipped: std::collections::BTreeMap<String, (DateTime<Utc>, Decimal, Decimal)>,
}

impl Driver<'_> {
    fn clock_now(&self) -> DateTime<Utc> {
        gf_core::Clock::now(&*self.clock)
    }

    /// One recorded event: the clock moves to its time (never backwards), the periodic
    /// duty runs for every interval that passed, then the event and everything it causes.
    async fn market(&mut self, event: Arc<Event>) -> Result<(), Error> {
        let at = event.ts;
        if at > self.clock_now() {
            // While a halt acts, its tasks (the closure's settling and retries) run on the
            // runtime's paused time, which stands for event time: the recording waits for
            // them up to each event's time, as the paper daemon's paced replay does, so
            // the market moves on during a closure as it would live. Once halted (the
            // late-fill watch) it waits at each sweep interval; while running nothing else
            // waits on time and the driver does not wait.
            if self.halt.state() == HaltState::Halting {
                self.wait_until(at).await?;
            }
            // The duty runs at each interval boundary passed, at that boundary's time.
            // After a long hole only the last boundary matters: conditions read the
            // current state, so one sweep at the hole's end stands for the rest.
            if at >= self.next_tick {
                let step = sweep_interval();
                let missed =
                    (at - self.next_tick).num_milliseconds() / step.num_milliseconds().max(1);
                if missed > 1 {
                    self.next_tick += step * i32::try_from(missed - 1).unwrap_or(i32::MAX);
                }
                while self.next_tick <= at {
                    if self.halt.state() != HaltState::Running {
                        self.wait_until(self.next_tick).await?;
                    }
                    self.clock.set(self.next_tick);
                    let before = self.halt.state();
                    self.halt.tick().await;
                    self.note_trigger(before);
                    self.pump().await?;
                    self.next_tick += step;
                }
            }
            self.clock.set(at);
        }
        self.log.market_events += 1;
        self.bus.publish_arc(event);
        self.pump().await?;
        self.sample_equity(at);
        Ok(())
    }

    /// Lets the runtime's paused time reach event time `at`, dispatching what the halt's
    /// tasks publish meanwhile.
    async fn wait_until(&mut self, at: DateTime<Utc>) -> Result<(), Error> {
        let offset = (at - self.start).to_std().unwrap_or_default();
        let due = self.base + offset;
        let sleep = tokio::time::sleep_until(due);
        tokio::pin!(sleep);
        loop {
            self.pump().await?;
            tokio::select! {
                biased;
                ev = self.sub.recv() => match ev {
                    Ok(ev) => self.dispatch(&ev).await,
                    Err(gf_core::RecvError::Lagged { missed }) => return Err(Error::Lost(missed)),
                    Err(gf_core::RecvError::Closed) => return Ok(()),
                },
                () = &mut sleep => return self.pump().await,
            }
        }
    }

    /// At the end of the recording: dispatches every event on the bus, and waits (in
    /// paused runtime time) for a halt in progress to finish its closure, dispatching what
    /// it publishes meanwhile.
    async fn settle(&mut self) -> Result<(), Error> {
        self.pump().await?;
        if self.halt.state() != HaltState::Halting {
            return Ok(());
        }
        let mut state = self.halt.watch_state();
        let limit = tokio::time::Instant::now() + CLOSURE_LIMIT;
        loop {
            self.pump().await?;
            if *state.borrow_and_update() != HaltState::Halting {
                break;
            }
            tokio::select! {
                biased;
                ev = self.sub.recv() => match ev {
                    Ok(ev) => self.dispatch(&ev).await,
                    Err(gf_core::RecvError::Lagged { missed }) => return Err(Error::Lost(missed)),
                    Err(gf_core::RecvError::Closed) => break,
                },
                changed = state.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(limit) => {
                    tracing::warn!("backtest: a halt's closure did not finish; moving on");
                    break;
                }
            }
        }
        self.pump().await
    }

    /// Dispatches every event already on the bus, oldest first (including those the
    /// dispatch itself publishes).
    async fn pump(&mut self) -> Result<(), Error> {
        loop {
            match self.sub.try_recv() {
                Ok(ev) => self.dispatch(&ev).await,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return Ok(()),
                Err(TryRecvError::Lagged { missed }) => return Err(Error::Lost(missed)),
            }
        }
    }

    async fn dispatch(&mut self, ev: &Event) {
        self.log.events += 1;
        let kind = ev.kind();
        if self.kinds.paper.contains(kind) {
            self.paper.on_event(ev);
        }
        if self.kinds.risk.contains(kind) {
            if let Err(err) = self.portfolio.apply_event(ev) {
                tracing::warn!(cause = %err, kind = %kind, "backtest risk: event refused");
            }
            if kind == EventKind::Fill {
                self.collect_trades();
            }
        }
        if self.kinds.halt.contains(kind) {
            let before = self.halt.state();
            self.halt.on_event(ev).await;
            self.note_trigger(before);
        }
        if self.kinds.strategy.contains(kind)
            && let Some(outcome) = self.executor.on_market(&mut *self.strategy, ev).await
        {
            self.log.signals += 1;
            if !matches!(outcome, crate::SignalOutcome::Placed(_)) {
                self.log.refused += 1;
            }
        }
        self.observe(ev);
    }

    /// Keeps the equity at the moment a halt starts: the closure's fills are still on the
    /// bus, not yet applied.
    fn note_trigger(&mut self, before: HaltState) {
        if before == HaltState::Running && self.halt.state() != HaltState::Running {
            self.trigger_equity = Some(self.portfolio.equity());
        }
    }

    fn collect_trades(&mut self) {
        let (count, recent) = self.portfolio.read(|p| {
            let count = p.statistics().count;
            let new = usize::try_from(count.saturating_sub(self.trades_seen)).unwrap_or(0);
            let recent: Vec<ClosedTrade> = p.recent_trades().cloned().collect();
            let skip = recent.len().saturating_sub(new);
            (count, recent.into_iter().skip(skip).collect::<Vec<_>>())
        });
        self.trades_seen = count;
        self.log.trades.extend(recent);
    }

    fn observe(&mut self, ev: &Event) {
        match &ev.payload {
            Payload::Fill(f) => self.log.fills.push(FillRecord {
                at: f.ts,
                pair: f.pair.to_string(),
                side: f.side.to_string(),
                qty: f.qty,
                price: f.price,
                fee: f.fee,
                closure: f.purpose != gf_core::OrderPurpose::Normal,
            }),
            // A new halt (a trigger while one is in force is only recorded on it).
            Payload::HaltStateChanged {
                to: HaltState::Halting,
                source,
                reason,
                ..
            } => {
                let condition = source.to_string().strip_prefix("auto:").map(str::to_owned);
                // The value the condition flipped with: its `ConditionValue`, published
                // at the same instant, may come before or after this event (the bus's
                // lanes do not keep the order between them).
                let (value, threshold) = condition
                    .as_ref()
                    .and_then(|c| self.flipped.remove(c))
                    .filter(|(at, _, _)| *at == ev.ts)
                    .map_or((None, None), |(_, v, t)| (Some(v), Some(t)));
                self.log.halts.push(HaltRecord {
                    at: ev.ts,
                    source: source.to_string(),
                    condition,
                    reason: reason.clone(),
                    value,
                    threshold,
                    equity: self
                        .trigger_equity
                        .take()
                        .unwrap_or_else(|| self.portfolio.equity()),
                    closure: None,
                    closure_flat: None,
                });
            }
            Payload::ConditionValue {
                id,
                value,
                threshold,
                triggered,
            } => {
                if !triggered {
                    self.flipped.remove(id);
                    return;
                }
                match self.log.halts.last_mut() {
                    Some(h)
                        if h.condition.as_deref() == Some(id.as_str())
                            && h.value.is_none()
                            && h.at == ev.ts =>
                    {
                        h.value = Some(*value);
                        h.threshold = Some(*threshold);
                    }
                    _ => {
                        self.flipped
                            .entry(id.clone())
                            .or_insert((ev.ts, *value, *threshold));
                    }
                }
            }
            Payload::ClosureResult { flat, detail } => {
                if let Some(h) = self.log.halts.last_mut()
                    && h.closure.is_none()
                {
                    h.closure = Some(detail.clone());
                    h.closure_flat = Some(*flat);
                }
            }
            _ => {}
        }
    }

    /// Keeps the equity at most once a second of event time (the last value of each
    /// second), enough for any chart; the report thins it further.
    fn sample_equity(&mut self, at: DateTime<Utc>) {
        let equity = self.portfolio.equity();
        match self.log.equity.last_mut() {
            Some(last) if last.at.timestamp() == at.timestamp() => {
                if last.equity != equity {
                    last.equity = equity;
                }
            }
            Some(last) if last.equity == equity => {}
            _ => self.log.equity.push(EquityPoint { at, equity }),
        }
    }
}

/// One fill of the run (strategy orders and halt closures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    /// When it executed (event time).
    pub at: DateTime<Utc>,
    /// The pair.
    pub pair: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Quantity.
    pub qty: Decimal,
    /// Price.
    pub price: Decimal,
    /// Fee, in quote currency.
    pub fee: Decimal,
    /// Whether it was a halt-closure order.
    pub closure: bool,
}

/// A halt that fired during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltRecord {
    /// When (event time).
    pub at: DateTime<Utc>,
    /// `auto:<condition>` (or another source).
    pub source: String,
    /// The condition id, for an automatic halt.
    pub condition: Option<String>,
    /// The coordinator's reason.
    pub reason: String,
    /// The condition's value when it fired.
    pub value: Option<Decimal>,
    /// Its threshold.
    pub threshold: Option<Decimal>,
    /// Equity when it fired (before its closure).
    pub equity: Decimal,
    /// The closure's result (`ClosureResult` detail), once it finished.
    pub closure: Option<String>,
    /// Whether the closure left every position flat.
    pub closure_flat: Option<bool>,
}

/// Equity at a point of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquityPoint {
    /// Event time.
    pub at: DateTime<Utc>,
    /// Equity, in quote currency.
    pub equity: Decimal,
}

/// What a backtest did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The strategy's name.
    pub strategy: String,
    /// Whether the halt conditions were live.
    pub halts_enabled: bool,
    /// The first recorded time.
    pub start: DateTime<Utc>,
    /// The last recorded time.
    pub end: DateTime<Utc>,
    /// Recording lines read.
    pub messages: u64,
    /// Book checksum mismatches the book code found.
    pub checksum_mismatches: u64,
    /// Market events replayed (book, trade, staleness…).
    pub market_events: u64,
    /// Every event dispatched (market events and what they caused).
    pub events: u64,
    /// Signals the strategy gave.
    pub signals: u64,
    /// Signals that did not become an order (not sized, refused, halted).
    pub refused: u64,
    /// Equity at the start.
    pub starting_equity: Decimal,
    /// Equity at the end.
    pub final_equity: Decimal,
    /// The largest total drawdown, percent.
    pub max_drawdown_pct: Decimal,
    /// Win rate, profit factor, Sharpe, max drawdown… over the closed round trips.
    pub statistics: TradingStats,
    /// The closed round trips.
    pub trades: Vec<ClosedTrade>,
    /// Every fill.
    pub fills: Vec<FillRecord>,
    /// Every halt that fired.
    pub halts: Vec<HaltRecord>,
    /// The equity curve (at most one point a second of event time).
    pub equity: Vec<EquityPoint>,
    /// The journal the run wrote, oldest first.
    #[serde(skip)]
    pub journal: Vec<JournalRecord>,
}

impl Run {
    /// The journal as JSON lines, one record per line (ids, times, kinds, details, MACs):
    /// byte-identical for identical runs.
    ///
    /// # Errors
    /// When a record does not serialise (it always does).
    pub fn journal_jsonl(&self) -> Result<String, serde_json::Error> {
        let mut out = String::new();
        for r in &self.journal {
            out.push_str(&serde_json::to_string(r)?);
            out.push('\n');
        }
        Ok(out)
    }

    /// Profit or loss over the run: final minus starting equity.
    #[must_use]
    pub fn pnl(&self) -> Decimal {
        self.final_equity - self.starting_equity
    }
}
