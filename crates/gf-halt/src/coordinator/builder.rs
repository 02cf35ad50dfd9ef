//! [`HaltCoordinatorBuilder`]: assembles a [`HaltCoordinator`] from its parts.
//!
//! The exchange and the portfolio view are required and enforced by the type: `open`
//! exists only once both are given, so a coordinator that could not cancel orders or read
//! drawdown cannot be built by forgetting one. The bus, the clock, the exchange timeout,
//! the watched pairs and the condition set have defaults.

use std::sync::Arc;
use std::time::Duration;

use gf_core::config::HaltConfig;
use gf_core::{EventBus, Pair, SharedClock, TradingGate};
use gf_exec::Exchange;
use gf_risk::PortfolioView;

use super::HaltCoordinator;
use crate::condition::ConditionSet;
use crate::error::Error;
use crate::journal::Journal;

/// Capacity of the bus a builder creates when none is given.
pub const DEFAULT_BUS_CAPACITY: usize = 4096;

/// Type state of a [`HaltCoordinatorBuilder`] whose exchange is not given yet: `open` is
/// not available.
#[derive(Debug, Clone, Copy)]
pub struct MissingExchange;

/// Type state of a [`HaltCoordinatorBuilder`] whose portfolio view is not given yet:
/// `open` is not available.
#[derive(Debug, Clone, Copy)]
pub struct MissingPortfolio;

/// Builds a [`HaltCoordinator`]; start with [`HaltCoordinator::builder`].
///
/// Required: the exchange ([`HaltCoordinatorBuilder::exchange`]) and the portfolio view
/// ([`HaltCoordinatorBuilder::portfolio`]); without either there is no `open`:
///
/// ```compile_fail,E0599
/// use std::sync::Arc;
/// use gf_core::{config::HaltConfig, TradingGate};
/// use gf_halt::{HaltCoordinator, Journal};
/// use gf_risk::PortfolioView;
///
/// fn build(cfg: &HaltConfig, journal: Arc<Journal>, view: Arc<dyn PortfolioView>) {
///     // No exchange: there is no `open`.
///     let _ = HaltCoordinator::builder(cfg, journal, TradingGate::new_closed())
///         .portfolio(view)
///         .open();
/// }
/// ```
///
/// The same with the exchange given compiles:
///
/// ```
/// use std::sync::Arc;
/// use gf_core::{config::HaltConfig, TradingGate};
/// use gf_exec::Exchange;
/// use gf_halt::{HaltCoordinator, Journal};
/// use gf_risk::PortfolioView;
///
/// fn build(
///     cfg: &HaltConfig,
///     journal: Arc<Journal>,
///     exchange: Arc<dyn Exchange>,
///     view: Arc<dyn PortfolioView>,
/// ) -> Result<HaltCoordinator, gf_halt::Error> {
///     HaltCoordinator::builder(cfg, journal, TradingGate::new_closed())
///         .portfolio(view)
///         .exchange(exchange)
///         .open()
/// }
/// ```
///
/// Defaults: a fresh bus of [`DEFAULT_BUS_CAPACITY`] (reach it with
/// [`HaltCoordinator::bus`]), the journal's clock, the exchange timeout
/// [`super::DEFAULT_EXCHANGE_TIMEOUT`], no watched pairs, and the condition set of the
/// configuration.
pub struct HaltCoordinatorBuilder<'a, X = MissingExchange, P = MissingPortfolio> {
    cfg: &'a HaltConfig,
    journal: Arc<Journal>,
    gate: TradingGate,
    exchange: X,
    portfolio: P,
    bus: Option<EventBus>,
    clock: Option<SharedClock>,
    exchange_timeout: Option<Duration>,
    conditions: Option<ConditionSet>,
    watch: Vec<Pair>,
}

impl<X, P> std::fmt::Debug for HaltCoordinatorBuilder<'_, X, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaltCoordinatorBuilder")
            .field("gate", &self.gate)
            .field("exchange", &std::any::type_name::<X>())
            .field("portfolio", &std::any::type_name::<P>())
            .field("bus", &self.bus)
            .field("exchange_timeout", &self.exchange_timeout)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl HaltCoordinator {
    /// Starts building a coordinator over `journal` (see [`Journal::open_data_dir`], or
    /// [`Journal::in_memory`] for research) that controls `gate`. Give it the exchange
    /// and the portfolio view, then [`HaltCoordinatorBuilder::open`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use gf_core::{config::HaltConfig, EventBus, HaltState, ManualClock, Pair, TradingGate};
    /// use gf_exec::NullExchange;
    /// use gf_halt::{HaltCoordinator, Journal};
    /// use gf_risk::NullPortfolio;
    ///
    /// let clock = Arc::new(ManualClock::default());
    /// let journal = Arc::new(Journal::in_memory(clock.clone()).unwrap());
    /// let gate = TradingGate::new_closed();
    /// let xrp: Pair = "XRP/USD".parse().unwrap();
    /// let halt = HaltCoordinator::builder(&HaltConfig::default(), journal, gate.clone())
    ///     .exchange(Arc::new(NullExchange))
    ///     .portfolio(Arc::new(NullPortfolio::default()))
    ///     .bus(EventBus::new(1024))
    ///     .clock(clock)
    ///     .exchange_timeout(Duration::from_secs(5))
    ///     .watch_pairs(&[xrp])
    ///     .open()
    ///     .unwrap();
    /// assert_eq!(halt.state(), HaltState::Running);
    /// assert!(gate.is_open(), "a fresh journal starts running");
    /// ```
    #[must_use]
    pub fn builder(
        cfg: &HaltConfig,
        journal: Arc<Journal>,
        gate: TradingGate,
    ) -> HaltCoordinatorBuilder<'_, MissingExchange, MissingPortfolio> {
        HaltCoordinatorBuilder {
            cfg,
            journal,
            gate,
            exchange: MissingExchange,
            portfolio: MissingPortfolio,
            bus: None,
            clock: None,
            exchange_timeout: None,
            conditions: None,
            watch: Vec::new(),
        }
    }

    /// The bus the coordinator publishes its state changes and alerts on (the one given
    /// to the builder, or the one it created).
    #[must_use]
    pub fn bus(&self) -> &EventBus {
        &self.shared.bus
    }
}

impl<'a, P> HaltCoordinatorBuilder<'a, MissingExchange, P> {
    /// The exchange the coordinator cancels on and closes positions through (required).
    #[must_use]
    pub fn exchange(
        self,
        exchange: Arc<dyn Exchange>,
    ) -> HaltCoordinatorBuilder<'a, Arc<dyn Exchange>, P> {
        HaltCoordinatorBuilder {
            cfg: self.cfg,
            journal: self.journal,
            gate: self.gate,
            exchange,
            portfolio: self.portfolio,
            bus: self.bus,
            clock: self.clock,
            exchange_timeout: self.exchange_timeout,
            conditions: self.conditions,
            watch: self.watch,
        }
    }
}

impl<'a, X> HaltCoordinatorBuilder<'a, X, MissingPortfolio> {
    /// The portfolio view the conditions read and the closure sizes from (required).
    #[must_use]
    pub fn portfolio(
        self,
        portfolio: Arc<dyn PortfolioView>,
    ) -> HaltCoordinatorBuilder<'a, X, Arc<dyn PortfolioView>> {
        HaltCoordinatorBuilder {
            cfg: self.cfg,
            journal: self.journal,
            gate: self.gate,
            exchange: self.exchange,
            portfolio,
            bus: self.bus,
            clock: self.clock,
            exchange_timeout: self.exchange_timeout,
            conditions: self.conditions,
            watch: self.watch,
        }
    }
}

impl<X, P> HaltCoordinatorBuilder<'_, X, P> {
    /// The bus to publish on (default: a fresh bus of [`DEFAULT_BUS_CAPACITY`]).
    #[must_use]
    pub fn bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The clock (default: the journal's clock, so the journal and the coordinator never
    /// disagree on the time).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The exchange's request timeout (`exchange.timeout_ms`), as
    /// [`HaltCoordinator::set_exchange_timeout`] sets it later.
    #[must_use]
    pub fn exchange_timeout(mut self, timeout: Duration) -> Self {
        self.exchange_timeout = Some(timeout);
        self
    }

    /// Pairs whose market-data staleness is measured from the moment the coordinator
    /// opens, as [`HaltCoordinator::watch_pairs`] does later. Adds to earlier calls.
    #[must_use]
    pub fn watch_pairs(mut self, pairs: &[Pair]) -> Self {
        self.watch.extend_from_slice(pairs);
        self
    }

    /// Replaces the condition set built from the configuration (e.g.
    /// [`ConditionSet::empty`] for a run without halts), as
    /// [`HaltCoordinator::set_conditions`] does later.
    #[must_use]
    pub fn conditions(mut self, set: ConditionSet) -> Self {
        self.conditions = Some(set);
        self
    }
}

impl HaltCoordinatorBuilder<'_, Arc<dyn Exchange>, Arc<dyn PortfolioView>> {
    /// Takes over the journal and restores the state it records.
    ///
    /// The gate is closed first. The state is derived from the journal: the newest
    /// snapshot, but a `halt_triggered` record not followed by a resume means Halted
    /// whatever the snapshot says, and so does a halt the witness holds because it could
    /// not be journaled. If the journal verifies and its state was Running, the
    /// coordinator starts Running and opens the gate; if the state was anything else it
    /// starts Halted with the checklist as it was. If the journal fails verification it
    /// starts Halted, with a halt `auto:journal_missing` (missing, empty or replaced in a
    /// data directory that has run before) or `auto:journal_integrity` (an edited or
    /// re-chained record, a rollback behind the witness) naming the record, and
    /// [`super::HaltStatus::journal_problem`] says which. A broken journal stays broken:
    /// every later start halts again until an administrator adopts a new one
    /// ([`crate::journal::adopt`]).
    ///
    /// From then on any failed journal write — the coordinator's, or anyone else's on
    /// this journal — closes the gate and halts (`auto:journal_unwritable`).
    ///
    /// # Errors
    /// [`Error::Database`] when the database cannot be read or the restore point written;
    /// [`Error::GateOpenerTaken`] when another holder took the gate's opener.
    pub fn open(self) -> Result<HaltCoordinator, Error> {
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::clone(self.journal.clock()));
        let bus = self
            .bus
            .unwrap_or_else(|| EventBus::new(DEFAULT_BUS_CAPACITY));
        let halt = HaltCoordinator::restore(
            self.cfg,
            self.journal,
            self.gate,
            self.exchange,
            self.portfolio,
            bus,
            clock,
        )?;
        if let Some(timeout) = self.exchange_timeout {
            halt.set_exchange_timeout(timeout);
        }
        if let Some(set) = self.conditions {
            halt.set_conditions(set);
        }
        halt.watch_pairs(&self.watch);
        Ok(halt)
    }
}
