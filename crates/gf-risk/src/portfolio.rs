//! The portfolio: positions, cash, marks, equity and its daily curve, drawdowns,
//! consecutive losses, volatility and closed round trips, with a serialisable snapshot.
//!
//! # Accounting
//!
//! Each pair keeps a signed quantity and a signed *cost basis* (the sum of `±qty × price`
//! of the open quantity). Cash is in the quote currency; a buy pays `qty × price + fee`,
//! a sell receives `qty × price - fee`. Then, exactly, for any sequence of fills and marks:
//!
//! ```text
//! equity = cash + Σ qty × mark
//!        = initial cash + realised P&L + unrealised P&L - fees
//! unrealised = qty × mark - cost basis        (zero while a pair has no mark)
//! ```
//!
//! Reducing a position releases the cost basis pro rata (all of it when the position is
//! closed; the share is rounded to [`SHARE_DP`] places), so the identity holds to the last
//! decimal whatever the rounding of the share; a fill that crosses zero closes the position and opens the rest on the
//! other side at the fill price. The average entry shown is `cost basis / qty`.
//!
//! # Drawdowns
//!
//! Peak equity is the highest equity seen (the initial equity to start with); total
//! drawdown is `(peak - equity) / peak × 100`. Daily drawdown is measured from the equity
//! at the start of the current UTC day, which is captured at the first change after
//! midnight by the [`Clock`]; both are clamped to `[0, 100]`.
//!
//! # Seeded holdings
//!
//! A quantity the account already holds when the daemon starts (live: the exchange
//! balance of a traded base asset) is *seeded* ([`Portfolio::seed_position`]): the
//! position holds it, but its entry price is unknown. Until the first price after seeding
//! — a mark or a fill of the pair, whichever comes first — the holding is *unpriced*: it
//! has no mark and no cost, counts zero in equity and exposure, and pre-trade refuses
//! every order but a halt closure ([`crate::Refusal::UnpricedHolding`]), since the
//! exposure is not known. That first price becomes its entry (unrealised P&L starts at
//! zero) and the holding's value at that price is added to initial, peak and
//! start-of-day equity (a deposit: no phantom profit, drawdown or P&L). Seeding a
//! quantity that differs from the position held (a restored snapshot that disagrees with
//! the balance) replaces the position: the old one is withdrawn at its value (its cost
//! leaves initial equity, its open round trip is dropped) and the new quantity is
//! unpriced until the next price. The cash is seeded the same way
//! ([`Portfolio::seed_cash`], live: the quote currency's balance): a balance that differs
//! from the cash held is a deposit or a withdrawal of the difference, moving initial, peak
//! and start-of-day equity with it. Trading statistics keep starting from the cash.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use gf_core::config::Config;
use gf_core::{Event, Fill, Pair, Payload, Position, SharedClock, Side};

use crate::error::Error;
use crate::stats::{ClosedTrade, StatsAccumulator, TradingStats};
use crate::view::PortfolioView;
use crate::volatility::RollingVolatility;

/// Snapshot format version written by this crate.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Decimal places of a pro-rata share of cost basis or fee. Kraken quantities have at
/// most 8 places and prices at most 10, so notionals are exact; rounding shares to 16
/// places keeps every sum within Decimal's 28 digits, hence exact, for accounts below
/// about 10^12 in the quote currency.
pub const SHARE_DP: u32 = 16;
/// Closed round trips kept in the snapshot for display (statistics cover all of them).
pub const RECENT_TRADES: usize = 200;
/// Days of the daily equity curve kept in the snapshot (two years).
pub const EQUITY_CURVE_DAYS: usize = 730;
/// Trade ids remembered to refuse a fill delivered twice.
pub const RECENT_FILL_IDS: usize = 1024;
/// The largest quantity a holding may be seeded with (10^15 units: above the whole supply
/// of any asset Kraken lists); more is a misread balance, refused.
pub const MAX_SEED_QTY: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);
/// The most decimal places a seeded holding may have (Kraken reports balances with at most
/// 10); more is a misread balance, refused.
pub const MAX_SEED_DP: u32 = 18;

/// How to build a [`Portfolio`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortfolioConfig {
    /// The pairs traded; all must share one quote currency.
    pub pairs: Vec<Pair>,
    /// Starting cash in the quote currency.
    pub initial_cash: Decimal,
    /// Volatility window, in one-minute returns (at least 2).
    pub volatility_window: usize,
}

impl PortfolioConfig {
    /// Pairs from `market.pairs`, the window from `halt.volatility_window_mins`, and the
    /// starting cash from `exchange.paper_balances[<quote>]` (zero when absent; in live
    /// mode pass the account balance instead).
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        let quote = config
            .market
            .pairs
            .first()
            .map(|p| p.quote().to_owned())
            .unwrap_or_default();
        Self {
            pairs: config.market.pairs.clone(),
            initial_cash: config
                .exchange
                .paper_balances
                .get(&quote)
                .copied()
                .unwrap_or(Decimal::ZERO),
            volatility_window: usize::try_from(config.halt.volatility_window_mins)
                .unwrap_or(usize::MAX),
        }
    }
}

/// The latest market price of a pair and when it was observed (the event's timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Mid of best bid and ask, or the last trade.
    pub price: Decimal,
    /// When the market data was produced.
    pub ts: DateTime<Utc>,
}

/// One UTC day of the equity curve: equity at the day's start, its extremes, and its
/// latest value (the close, once the day is over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyEquity {
    /// The UTC day.
    pub date: NaiveDate,
    /// Equity at the start of the day.
    pub open: Decimal,
    /// Highest equity of the day.
    pub high: Decimal,
    /// Lowest equity of the day.
    pub low: Decimal,
    /// Latest equity of the day.
    pub close: Decimal,
}

impl DailyEquity {
    fn start(date: NaiveDate, equity: Decimal) -> Self {
        Self {
            date,
            open: equity,
            high: equity,
            low: equity,
            close: equity,
        }
    }
}

/// A round trip still open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenTrip {
    side: Side,
    opened_at: DateTime<Utc>,
    entry_qty: Decimal,
    entry_notional: Decimal,
    exit_qty: Decimal,
    exit_notional: Decimal,
    realised: Decimal,
    fees: Decimal,
}

/// Per-pair book-keeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PairState {
    qty: Decimal,
    cost: Decimal,
    realised: Decimal,
    fees: Decimal,
    mark: Option<Mark>,
    trip: Option<OpenTrip>,
    volatility: RollingVolatility,
    /// `qty × mark`, or `cost` while unmarked (derived).
    #[serde(skip)]
    value: Decimal,
    /// `|qty| × mark`, or `|cost|` while unmarked (derived).
    #[serde(skip)]
    exposure: Decimal,
    /// A seeded holding whose entry is not known yet: no mark, no cost, valued at zero
    /// until the first price (see the module docs, "Seeded holdings").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unpriced: bool,
}

impl PairState {
    fn new(window: usize) -> Self {
        Self {
            qty: Decimal::ZERO,
            cost: Decimal::ZERO,
            realised: Decimal::ZERO,
            fees: Decimal::ZERO,
            mark: None,
            trip: None,
            volatility: RollingVolatility::new(window),
            value: Decimal::ZERO,
            exposure: Decimal::ZERO,
            unpriced: false,
        }
    }

    /// `(value, exposure)` at `price`, or at cost when `price` is `None`.
    fn valuation(&self, price: Option<Decimal>) -> Option<(Decimal, Decimal)> {
        match price {
            Some(p) => Some((self.qty.checked_mul(p)?, self.qty.abs().checked_mul(p)?)),
            None => Some((self.cost, self.cost.abs())),
        }
    }
}

/// The serialisable state of a [`Portfolio`]: everything needed to restore it exactly
/// (derived sums are recomputed on restore). gf-halt persists it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioSnapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The quote currency equity is measured in.
    pub quote: String,
    /// Starting equity (for statistics).
    pub initial_equity: Decimal,
    /// Quote-currency cash.
    pub cash: Decimal,
    /// Highest equity seen.
    pub peak_equity: Decimal,
    /// Largest total drawdown seen, percent.
    pub max_drawdown_pct: Decimal,
    /// The UTC day the daily drawdown refers to.
    pub day: NaiveDate,
    /// Equity at the start of `day`.
    pub day_start_equity: Decimal,
    /// Consecutive losing round trips.
    pub consecutive_losses: u32,
    /// Statistics totals.
    pub stats: StatsAccumulator,
    /// The latest closed round trips, oldest first, at most [`RECENT_TRADES`].
    pub recent_trades: VecDeque<ClosedTrade>,
    /// Recently applied trade ids, oldest first, at most [`RECENT_FILL_IDS`].
    pub recent_fill_ids: VecDeque<String>,
    /// The daily equity curve, oldest first, at most [`EQUITY_CURVE_DAYS`] days.
    #[serde(default)]
    pub equity_curve: VecDeque<DailyEquity>,
    #[serde(rename = "pairs")]
    positions: BTreeMap<Pair, PairState>,
}

/// What applying a fill changed (an audit record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillReport {
    /// The pair.
    pub pair: Pair,
    /// Signed quantity before.
    pub qty_before: Decimal,
    /// Signed quantity after.
    pub qty_after: Decimal,
    /// Realised P&L of this fill, before fees.
    pub realised: Decimal,
    /// The fee paid.
    pub fee: Decimal,
    /// The round trip this fill closed, if any.
    pub closed: Option<ClosedTrade>,
}

/// What seeding a holding changed (an audit record; the daemon journals it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedReport {
    /// The pair whose base asset is held.
    pub pair: Pair,
    /// Signed quantity the portfolio held before (a restored snapshot's, or zero).
    pub qty_before: Decimal,
    /// The quantity held now (the balance); unpriced until the first price.
    pub qty_after: Decimal,
    /// Average entry of the position replaced, when there was one.
    pub replaced_avg_entry: Option<Decimal>,
}

/// What replacing the cash by the account's quote balance changed (an audit record; the
/// daemon journals it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashReport {
    /// The quote currency.
    pub currency: String,
    /// The cash the portfolio held before (a restored snapshot's).
    pub cash_before: Decimal,
    /// The cash held now (the balance).
    pub cash_after: Decimal,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A fill changed a position.
    Fill(Box<FillReport>),
    /// A pair was marked at this price.
    Marked {
        /// The pair.
        pair: Pair,
        /// The mark.
        price: Decimal,
    },
    /// Market data that cannot mark (a one-sided book, data older than the mark held).
    NotMarked,
    /// Not an event the portfolio uses.
    Ignored,
}

/// Portfolio and risk figures. Single owner; share it with [`crate::SharedPortfolio`].
pub struct Portfolio {
    s: PortfolioSnapshot,
    clock: SharedClock,
    fill_ids: HashSet<String>,
    positions_value: Decimal,
    exposure: Decimal,
    equity: Decimal,
}

impl fmt::Debug for Portfolio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portfolio")
            .field("equity", &self.equity)
            .field("cash", &self.s.cash)
            .field("peak_equity", &self.s.peak_equity)
            .field("pairs", &self.s.positions.len())
            .finish_non_exhaustive()
    }
}

fn checked<T>(v: Option<T>, what: &'static str, pair: &Pair) -> Result<T, Error> {
    v.ok_or_else(|| Error::Overflow {
        what,
        pair: pair.clone(),
    })
}

fn pct_of(fall: Decimal, base: Decimal) -> Decimal {
    if fall <= Decimal::ZERO {
        // At or above the base (the usual case at a new high): no division needed.
        return Decimal::ZERO;
    }
    if base <= Decimal::ZERO {
        return if fall > Decimal::ZERO {
            Decimal::ONE_HUNDRED
        } else {
            Decimal::ZERO
        };
    }
    fall.checked_div(base)
        .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED))
        .unwrap_or(Decimal::ONE_HUNDRED)
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
}

impl Portfolio {
    /// A flat portfolio holding `config.initial_cash`.
    ///
    /// # Errors
    /// [`Error::NoPairs`], [`Error::MixedQuote`] when the pairs do not share a quote
    /// currency, [`Error::InvalidInitialCash`] for negative cash, and
    /// [`Error::InvalidLimit`] for a volatility window under 2.
    pub fn new(config: PortfolioConfig, clock: SharedClock) -> Result<Self, Error> {
        let first = config.pairs.first().ok_or(Error::NoPairs)?;
        let quote = first.quote().to_owned();
        for pair in &config.pairs {
            if pair.quote() != quote {
                return Err(Error::MixedQuote {
                    pair: pair.clone(),
                    quote: pair.quote().to_owned(),
                    expected: quote,
                });
            }
        }
        if config.initial_cash < Decimal::ZERO {
            return Err(Error::InvalidInitialCash {
                value: config.initial_cash,
            });
        }
        if config.volatility_window < 2 {
            return Err(Error::InvalidLimit {
                key: "halt.volatility_window_mins".into(),
                value: config.volatility_window.to_string(),
                reason: "must be at least 2 (a deviation needs two returns)",
            });
        }
        let now = clock.now();
        let cash = config.initial_cash;
        let positions = config
            .pairs
            .iter()
            .map(|p| (p.clone(), PairState::new(config.volatility_window)))
            .collect();
        let s = PortfolioSnapshot {
            version: SNAPSHOT_VERSION,
            quote,
            initial_equity: cash,
            cash,
            peak_equity: cash,
            max_drawdown_pct: Decimal::ZERO,
            day: now.date_naive(),
            day_start_equity: cash,
            consecutive_losses: 0,
            stats: StatsAccumulator::new(cash),
            recent_trades: VecDeque::new(),
            recent_fill_ids: VecDeque::new(),
            equity_curve: VecDeque::from([DailyEquity::start(now.date_naive(), cash)]),
            positions,
        };
        Ok(Self {
            s,
            clock,
            fill_ids: HashSet::new(),
            positions_value: Decimal::ZERO,
            exposure: Decimal::ZERO,
            equity: cash,
        })
    }

    /// A portfolio from its configuration file sections and `clock`.
    ///
    /// # Errors
    /// As [`Portfolio::new`].
    pub fn from_config(config: &Config, clock: SharedClock) -> Result<Self, Error> {
        Self::new(PortfolioConfig::from_config(config), clock)
    }

    /// Restores a portfolio from a snapshot; every figure reads back identically.
    ///
    /// # Errors
    /// [`Error::InvalidSnapshot`] for an unknown version, an empty or mixed-quote pair
    /// set, or values that overflow.
    pub fn restore(snapshot: PortfolioSnapshot, clock: SharedClock) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidSnapshot { reason };
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(invalid(format!(
                "version {} is not the supported {SNAPSHOT_VERSION}",
                snapshot.version
            )));
        }
        if snapshot.positions.is_empty() {
            return Err(invalid("no pairs".into()));
        }
        if let Some(p) = snapshot
            .positions
            .keys()
            .find(|p| p.quote() != snapshot.quote)
        {
            return Err(invalid(format!(
                "pair {p} is not quoted in {}",
                snapshot.quote
            )));
        }
        if let Some((p, _)) = snapshot.positions.iter().find(|(_, st)| {
            st.unpriced && (st.qty <= Decimal::ZERO || !st.cost.is_zero() || st.mark.is_some())
        }) {
            return Err(invalid(format!(
                "pair {p} is unpriced but not a positive holding without cost and mark"
            )));
        }
        let fill_ids = snapshot.recent_fill_ids.iter().cloned().collect();
        let mut portfolio = Self {
            s: snapshot,
            clock,
            fill_ids,
            positions_value: Decimal::ZERO,
            exposure: Decimal::ZERO,
            equity: Decimal::ZERO,
        };
        portfolio
            .recompute()
            .map_err(|e| invalid(format!("cannot value positions: {e}")))?;
        Ok(portfolio)
    }

    /// Restores from the JSON written by [`Portfolio::snapshot_json`].
    ///
    /// # Errors
    /// [`Error::SnapshotJson`] for malformed JSON, otherwise as [`Portfolio::restore`].
    pub fn restore_json(json: &str, clock: SharedClock) -> Result<Self, Error> {
        Self::restore(serde_json::from_str(json)?, clock)
    }

    /// The serialisable state.
    #[must_use]
    pub fn snapshot(&self) -> PortfolioSnapshot {
        self.s.clone()
    }

    /// The state as JSON.
    ///
    /// # Errors
    /// [`Error::SnapshotJson`] if serialisation fails (it does not for this type).
    pub fn snapshot_json(&self) -> Result<String, Error> {
        Ok(serde_json::to_string(&self.s)?)
    }

    /// Recomputes the derived sums from the per-pair state.
    fn recompute(&mut self) -> Result<(), Error> {
        let mut total_value = Decimal::ZERO;
        let mut total_exposure = Decimal::ZERO;
        for (pair, st) in &mut self.s.positions {
            let (value, exposure) = checked(
                st.valuation(st.mark.map(|m| m.price)),
                "position value",
                pair,
            )?;
            st.value = value;
            st.exposure = exposure;
            total_value = checked(total_value.checked_add(value), "position value", pair)?;
            total_exposure = checked(total_exposure.checked_add(exposure), "exposure", pair)?;
        }
        let any = self.s.positions.keys().next().cloned();
        let any = any.as_ref().ok_or(Error::NoPairs)?;
        self.equity = checked(self.s.cash.checked_add(total_value), "equity", any)?;
        self.positions_value = total_value;
        self.exposure = total_exposure;
        Ok(())
    }

    /// The clock used for the daily reset.
    #[must_use]
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The quote currency.
    #[must_use]
    pub fn quote(&self) -> &str {
        &self.s.quote
    }

    /// The configured pairs.
    pub fn pairs(&self) -> impl Iterator<Item = &Pair> {
        self.s.positions.keys()
    }

    /// Quote-currency cash.
    #[must_use]
    pub fn cash(&self) -> Decimal {
        self.s.cash
    }

    /// Balances per asset: the quote currency's cash and each base asset's signed holding.
    #[must_use]
    pub fn balances(&self) -> BTreeMap<String, Decimal> {
        let mut out = BTreeMap::from([(self.s.quote.clone(), self.s.cash)]);
        for (pair, st) in &self.s.positions {
            let held = out.entry(pair.base().to_owned()).or_insert(Decimal::ZERO);
            *held = held.saturating_add(st.qty);
        }
        out
    }

    /// Starting equity.
    #[must_use]
    pub fn initial_equity(&self) -> Decimal {
        self.s.initial_equity
    }

    /// Largest total drawdown seen, percent.
    #[must_use]
    pub fn max_drawdown_pct(&self) -> Decimal {
        self.s.max_drawdown_pct
    }

    /// Realised P&L of all pairs, before fees.
    #[must_use]
    pub fn realised_pnl(&self) -> Decimal {
        saturating_sum(self.s.positions.values().map(|p| p.realised))
    }

    /// Unrealised P&L of all pairs at their marks.
    #[must_use]
    pub fn unrealised_pnl(&self) -> Decimal {
        self.positions_value
            .saturating_sub(saturating_sum(self.s.positions.values().map(|p| p.cost)))
    }

    /// Fees paid on all pairs.
    #[must_use]
    pub fn fees(&self) -> Decimal {
        saturating_sum(self.s.positions.values().map(|p| p.fees))
    }

    /// The latest mark of a pair.
    #[must_use]
    pub fn mark(&self, pair: &Pair) -> Option<Mark> {
        self.s.positions.get(pair).and_then(|p| p.mark)
    }

    /// Signed quantity held in a pair; `None` for a pair not configured.
    #[must_use]
    pub fn position_qty(&self, pair: &Pair) -> Option<Decimal> {
        self.s.positions.get(pair).map(|p| p.qty)
    }

    /// The position in a pair (flat ones included); `None` for a pair not configured.
    #[must_use]
    pub fn position(&self, pair: &Pair) -> Option<Position> {
        self.s.positions.get(pair).map(|st| to_position(pair, st))
    }

    /// The daily equity curve, oldest first (days with no change are absent).
    pub fn equity_curve(&self) -> impl Iterator<Item = &DailyEquity> {
        self.s.equity_curve.iter()
    }

    /// The latest closed round trips, oldest first.
    pub fn recent_trades(&self) -> impl Iterator<Item = &ClosedTrade> {
        self.s.recent_trades.iter()
    }

    /// Trading statistics over every closed round trip.
    #[must_use]
    pub fn statistics(&self) -> TradingStats {
        self.s.stats.stats()
    }

    /// The pairs holding a seeded quantity whose entry is not known yet (no price seen
    /// since seeding): their value, hence equity and exposure, leave them out.
    pub fn unpriced(&self) -> impl Iterator<Item = &Pair> {
        self.s
            .positions
            .iter()
            .filter(|(_, st)| st.unpriced)
            .map(|(pair, _)| pair)
    }

    /// Whether `pair` holds a seeded quantity not priced yet.
    #[must_use]
    pub fn is_unpriced(&self, pair: &Pair) -> bool {
        self.s.positions.get(pair).is_some_and(|st| st.unpriced)
    }

    fn check_holding(&self, pair: &Pair, qty: Decimal) -> Result<(), Error> {
        self.known(pair)?;
        let bad = |reason| {
            Err(Error::InvalidHolding {
                pair: pair.clone(),
                qty,
                reason,
            })
        };
        if qty < Decimal::ZERO {
            return bad("must not be negative (a spot balance never is)");
        }
        if qty > MAX_SEED_QTY {
            return bad("above the largest holding accepted (10^15 units)");
        }
        if qty.normalize().scale() > MAX_SEED_DP {
            return bad("more than 18 decimal places");
        }
        Ok(())
    }

    /// Seeds the holding of `pair`'s base asset: the position becomes `qty` (at least zero,
    /// a spot balance), unpriced until the first mark or fill of the pair, whose price
    /// becomes its entry (module docs, "Seeded holdings"). A position already at `qty` is
    /// kept as it is, entry included (`Ok(None)`); a different one is replaced.
    ///
    /// # Errors
    /// [`Error::UnknownPair`]; [`Error::InvalidHolding`] for a negative quantity, one above
    /// [`MAX_SEED_QTY`] or with more than [`MAX_SEED_DP`] decimal places;
    /// [`Error::Overflow`] for absurd values. The portfolio is unchanged on error.
    pub fn seed_position(
        &mut self,
        pair: &Pair,
        qty: Decimal,
    ) -> Result<Option<SeedReport>, Error> {
        self.check_holding(pair, qty)?;
        let st = self
            .s
            .positions
            .get(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        if st.qty == qty {
            return Ok(None);
        }
        let c = |v: Option<Decimal>, what| checked(v, what, pair);
        // The old position leaves at its value; its cost leaves initial equity, so that
        // equity - initial = realised + unrealised - fees still holds.
        let positions_value = c(self.positions_value.checked_sub(st.value), "position value")?;
        let exposure = c(self.exposure.checked_sub(st.exposure), "exposure")?;
        let equity = c(self.s.cash.checked_add(positions_value), "equity")?;
        let initial = c(self.s.initial_equity.checked_sub(st.cost), "initial equity")?;
        let report = SeedReport {
            pair: pair.clone(),
            qty_before: st.qty,
            qty_after: qty,
            replaced_avg_entry: (!st.qty.is_zero() && !st.unpriced)
                .then(|| to_position(pair, st).avg_entry),
        };
        let withdrawn = st.value;

        // Commit.
        self.roll_day();
        let st = self
            .s
            .positions
            .get_mut(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        st.qty = qty;
        st.cost = Decimal::ZERO;
        st.trip = None;
        st.value = Decimal::ZERO;
        st.exposure = Decimal::ZERO;
        st.unpriced = !qty.is_zero();
        if st.unpriced {
            // The next price, not an old one, sets the entry; pre-trade sees no mark.
            st.mark = None;
        }
        self.positions_value = positions_value;
        self.exposure = exposure;
        self.s.initial_equity = initial;
        self.shift_baseline(-withdrawn);
        self.set_equity(equity);
        Ok(Some(report))
    }

    /// Seeds every pair from `balances` (by asset: the pair's base asset, zero when
    /// absent), as [`Portfolio::seed_position`]; returns what changed. All or nothing.
    ///
    /// # Errors
    /// As [`Portfolio::seed_position`]; nothing is seeded then.
    pub fn seed_holdings(
        &mut self,
        balances: &BTreeMap<String, Decimal>,
    ) -> Result<Vec<SeedReport>, Error> {
        let pairs: Vec<Pair> = self.s.positions.keys().cloned().collect();
        let held = |pair: &Pair| balances.get(pair.base()).copied().unwrap_or(Decimal::ZERO);
        for pair in &pairs {
            self.check_holding(pair, held(pair))?;
        }
        let saved = (
            self.s.clone(),
            self.positions_value,
            self.exposure,
            self.equity,
        );
        let mut reports = Vec::new();
        for pair in &pairs {
            match self.seed_position(pair, held(pair)) {
                Ok(report) => reports.extend(report),
                Err(e) => {
                    (self.s, self.positions_value, self.exposure, self.equity) = saved;
                    return Err(e);
                }
            }
        }
        Ok(reports)
    }

    /// Sets the quote-currency cash to the account's `balance` (module docs, "Seeded
    /// holdings"): the difference is a deposit or a withdrawal, not a gain or a loss, so
    /// it moves initial, peak and start-of-day equity with the cash — P&L and the fall
    /// from the peak stay as they were. Cash already at `balance` is kept (`Ok(None)`).
    ///
    /// # Errors
    /// [`Error::InvalidBalance`] for a negative balance, one above [`MAX_SEED_QTY`] or with
    /// more than [`MAX_SEED_DP`] decimal places; [`Error::Overflow`] for absurd values.
    /// The portfolio is unchanged on error.
    pub fn seed_cash(&mut self, balance: Decimal) -> Result<Option<CashReport>, Error> {
        let bad = |reason| {
            Err(Error::InvalidBalance {
                currency: self.s.quote.clone(),
                balance,
                reason,
            })
        };
        if balance < Decimal::ZERO {
            return bad("must not be negative (a spot balance never is)");
        }
        if balance > MAX_SEED_QTY {
            return bad("above the largest balance accepted (10^15 units)");
        }
        if balance.normalize().scale() > MAX_SEED_DP {
            return bad("more than 18 decimal places");
        }
        if balance == self.s.cash {
            return Ok(None);
        }
        let any = self.s.positions.keys().next().cloned();
        let any = any.as_ref().ok_or(Error::NoPairs)?;
        let c = |v: Option<Decimal>, what| checked(v, what, any);
        let delta = c(balance.checked_sub(self.s.cash), "cash")?;
        let equity = c(balance.checked_add(self.positions_value), "equity")?;
        let initial = c(self.s.initial_equity.checked_add(delta), "initial equity")?;
        let report = CashReport {
            currency: self.s.quote.clone(),
            cash_before: self.s.cash,
            cash_after: balance,
        };

        // Commit.
        self.roll_day();
        self.s.cash = balance;
        self.s.initial_equity = initial;
        self.shift_baseline(delta);
        self.set_equity(equity);
        Ok(Some(report))
    }

    /// Prices an unpriced holding at `price`: its entry, and a deposit of its value into
    /// the equity baselines. No-op for a priced pair.
    fn price_holding(&mut self, pair: &Pair, price: Decimal) -> Result<(), Error> {
        let st = self
            .s
            .positions
            .get(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        if !st.unpriced {
            return Ok(());
        }
        let c = |v: Option<Decimal>, what| checked(v, what, pair);
        // Unpriced: value, exposure and cost are zero, so these add the holding whole.
        let deposit = c(st.qty.checked_mul(price), "position value")?;
        let positions_value = c(self.positions_value.checked_add(deposit), "position value")?;
        let exposure = c(self.exposure.checked_add(deposit.abs()), "exposure")?;
        let equity = c(self.s.cash.checked_add(positions_value), "equity")?;
        let initial = c(self.s.initial_equity.checked_add(deposit), "initial equity")?;

        // Commit.
        self.roll_day();
        let st = self
            .s
            .positions
            .get_mut(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        st.cost = deposit;
        st.value = deposit;
        st.exposure = deposit.abs();
        st.unpriced = false;
        self.positions_value = positions_value;
        self.exposure = exposure;
        self.s.initial_equity = initial;
        self.shift_baseline(deposit);
        self.set_equity(equity);
        Ok(())
    }

    /// Moves peak and start-of-day equity, and today's curve, by a deposit (`delta > 0`)
    /// or a withdrawal: neither is a gain or a drawdown.
    fn shift_baseline(&mut self, delta: Decimal) {
        self.s.peak_equity = self.s.peak_equity.saturating_add(delta);
        self.s.day_start_equity = self.s.day_start_equity.saturating_add(delta);
        if let Some(day) = self.s.equity_curve.back_mut() {
            day.open = day.open.saturating_add(delta);
            day.high = day.high.saturating_add(delta);
            day.low = day.low.saturating_add(delta);
        }
    }

    fn roll_day(&mut self) {
        let today = self.clock.now().date_naive();
        if today != self.s.day {
            self.s.day = today;
            self.s.day_start_equity = self.equity;
            self.s
                .equity_curve
                .push_back(DailyEquity::start(today, self.equity));
            while self.s.equity_curve.len() > EQUITY_CURVE_DAYS {
                self.s.equity_curve.pop_front();
            }
        }
    }

    /// Moves equity after a change and updates the peak and maximum drawdown.
    fn set_equity(&mut self, equity: Decimal) {
        self.equity = equity;
        if let Some(day) = self.s.equity_curve.back_mut() {
            day.close = equity;
            day.high = day.high.max(equity);
            day.low = day.low.min(equity);
        }
        if equity > self.s.peak_equity {
            self.s.peak_equity = equity;
        } else {
            let dd = pct_of(
                self.s.peak_equity.saturating_sub(equity),
                self.s.peak_equity,
            );
            if dd > self.s.max_drawdown_pct {
                self.s.max_drawdown_pct = dd;
            }
        }
    }

    /// Applies a bus event: fills change positions, book snapshots and updates mark to the
    /// mid of best bid and ask, trades and tickers mark to the last price. Other kinds
    /// are [`Applied::Ignored`].
    ///
    /// # Errors
    /// As [`Portfolio::apply_fill`] and [`Portfolio::mark_price`]; the portfolio is
    /// unchanged when an error is returned.
    pub fn apply_event(&mut self, event: &Event) -> Result<Applied, Error> {
        let (pair, price) = match &event.payload {
            Payload::Fill(fill) => {
                return self.apply_fill(fill).map(|r| Applied::Fill(Box::new(r)));
            }
            Payload::BookSnapshot(b) => match (b.bids.first(), b.asks.first()) {
                (Some(bid), Some(ask)) => (&b.pair, mid(bid.price, ask.price)),
                _ => return self.known(&b.pair).map(|()| Applied::NotMarked),
            },
            Payload::BookUpdate(u) => match (u.best_bid, u.best_ask) {
                (Some(bid), Some(ask)) => (&u.pair, mid(bid.price, ask.price)),
                _ => return self.known(&u.pair).map(|()| Applied::NotMarked),
            },
            Payload::Trade { pair, price, .. } => (pair, *price),
            Payload::Ticker { pair, last, .. } => (pair, *last),
            _ => return Ok(Applied::Ignored),
        };
        if self.mark_price(pair, price, event.ts)? {
            Ok(Applied::Marked {
                pair: pair.clone(),
                price,
            })
        } else {
            Ok(Applied::NotMarked)
        }
    }

    fn known(&self, pair: &Pair) -> Result<(), Error> {
        if self.s.positions.contains_key(pair) {
            Ok(())
        } else {
            Err(Error::UnknownPair { pair: pair.clone() })
        }
    }

    /// Marks a pair at `price` observed at `ts`, updating equity, drawdowns and volatility.
    /// Returns `false` (and changes nothing) when `ts` is older than the mark held.
    ///
    /// # Errors
    /// [`Error::UnknownPair`], [`Error::InvalidPrice`] for a price ≤ 0,
    /// [`Error::Overflow`] for an absurd price.
    pub fn mark_price(
        &mut self,
        pair: &Pair,
        price: Decimal,
        ts: DateTime<Utc>,
    ) -> Result<bool, Error> {
        if price <= Decimal::ZERO {
            return Err(Error::InvalidPrice {
                pair: pair.clone(),
                price,
            });
        }
        let st = self
            .s
            .positions
            .get(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        if st.mark.is_some_and(|m| ts < m.ts) {
            return Ok(false);
        }
        if !st.unpriced && st.mark.is_some_and(|m| m.price == price) {
            // The same price again (a book update below the top, a trade at the mark):
            // value, exposure and equity stand as they are; only the mark's time, the
            // volatility sample and the day move.
            self.roll_day();
            if let Some(st) = self.s.positions.get_mut(pair) {
                st.mark = Some(Mark { price, ts });
                st.volatility.on_price(price, ts);
            }
            return Ok(true);
        }
        if st.unpriced {
            // The first price after seeding is the holding's entry.
            self.price_holding(pair, price)?;
        }
        let st = self
            .s
            .positions
            .get(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        let (value, exposure) = checked(st.valuation(Some(price)), "position value", pair)?;
        let positions_value = checked(
            self.positions_value
                .checked_sub(st.value)
                .and_then(|v| v.checked_add(value)),
            "position value",
            pair,
        )?;
        let total_exposure = checked(
            self.exposure
                .checked_sub(st.exposure)
                .and_then(|v| v.checked_add(exposure)),
            "exposure",
            pair,
        )?;
        let equity = checked(self.s.cash.checked_add(positions_value), "equity", pair)?;
        self.roll_day();
        let st = self
            .s
            .positions
            .get_mut(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        st.mark = Some(Mark { price, ts });
        st.value = value;
        st.exposure = exposure;
        st.volatility.on_price(price, ts);
        self.positions_value = positions_value;
        self.exposure = total_exposure;
        self.set_equity(equity);
        Ok(true)
    }

    fn validate_fill(&self, fill: &Fill) -> Result<(), Error> {
        let bad = |field: &'static str, value: Decimal, reason: &'static str| {
            Err(Error::InvalidFill {
                trade_id: fill.trade_id.clone(),
                field,
                value,
                reason,
            })
        };
        if fill.qty <= Decimal::ZERO {
            return bad("qty", fill.qty, "must be positive");
        }
        if fill.price <= Decimal::ZERO {
            return bad("price", fill.price, "must be positive");
        }
        if fill.fee < Decimal::ZERO {
            return bad("fee", fill.fee, "must not be negative");
        }
        self.known(&fill.pair)?;
        if self.fill_ids.contains(&fill.trade_id) {
            return Err(Error::DuplicateFill {
                trade_id: fill.trade_id.clone(),
                pair: fill.pair.clone(),
            });
        }
        Ok(())
    }

    /// Applies one execution: partial fills add to or reduce a position, a fill larger
    /// than the position closes it and opens the remainder on the other side.
    ///
    /// # Errors
    /// [`Error::InvalidFill`] for a quantity or price ≤ 0 or a negative fee,
    /// [`Error::UnknownPair`], [`Error::DuplicateFill`] for a trade id already applied,
    /// [`Error::Overflow`] for absurd sizes. The portfolio is unchanged on error.
    pub fn apply_fill(&mut self, fill: &Fill) -> Result<FillReport, Error> {
        self.validate_fill(fill)?;
        if self.is_unpriced(&fill.pair) {
            // The fill's price is the first price of the seeded holding: its entry. All or
            // nothing with the fill itself.
            let saved = (
                self.s.clone(),
                self.positions_value,
                self.exposure,
                self.equity,
            );
            self.price_holding(&fill.pair, fill.price)?;
            return match self.apply_fill(fill) {
                Ok(report) => Ok(report),
                Err(e) => {
                    (self.s, self.positions_value, self.exposure, self.equity) = saved;
                    Err(e)
                }
            };
        }
        let pair = &fill.pair;
        let st = self
            .s
            .positions
            .get(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        let c = |v: Option<Decimal>, what| checked(v, what, pair);

        // Compute everything first; commit only when no arithmetic overflowed.
        let dir = fill.side.sign();
        let notional = c(fill.qty.checked_mul(fill.price), "fill notional")?;
        let cash = c(
            self.s
                .cash
                .checked_sub(dir * notional)
                .and_then(|v| v.checked_sub(fill.fee)),
            "cash",
        )?;
        let mut qty = st.qty;
        let mut cost = st.cost;
        let mut realised = Decimal::ZERO;
        let mut trip = st.trip.clone();
        let mut closed = None;
        let opening_qty;
        let mut opening_fee = fill.fee;
        let increases = qty.is_zero() || (qty > Decimal::ZERO) == (fill.side == Side::Buy);
        if increases {
            opening_qty = fill.qty;
        } else {
            let held = qty.abs();
            let close_qty = fill.qty.min(held);
            opening_qty = fill.qty - close_qty;
            let close_fee = if opening_qty.is_zero() {
                fill.fee
            } else {
                c(
                    fill.fee
                        .checked_mul(close_qty)
                        .and_then(|v| v.checked_div(fill.qty))
                        .map(|v| v.round_dp(SHARE_DP)),
                    "fee split",
                )?
            };
            opening_fee = fill.fee - close_fee;
            let released = if close_qty == held {
                cost
            } else {
                c(
                    cost.checked_mul(close_qty)
                        .and_then(|v| v.checked_div(held))
                        .map(|v| v.round_dp(SHARE_DP)),
                    "cost basis",
                )?
            };
            let close_notional = c(close_qty.checked_mul(fill.price), "fill notional")?;
            let pos_sign = if qty > Decimal::ZERO {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            realised = c(
                (pos_sign * close_notional).checked_sub(released),
                "realised",
            )?;
            cost -= released;
            qty -= pos_sign * close_qty;
            let t = trip.get_or_insert_with(|| OpenTrip {
                side: if pos_sign > Decimal::ZERO {
                    Side::Buy
                } else {
                    Side::Sell
                },
                opened_at: fill.ts,
                entry_qty: held,
                entry_notional: released.abs(),
                exit_qty: Decimal::ZERO,
                exit_notional: Decimal::ZERO,
                realised: Decimal::ZERO,
                fees: Decimal::ZERO,
            });
            t.exit_qty = t.exit_qty.saturating_add(close_qty);
            t.exit_notional = c(t.exit_notional.checked_add(close_notional), "exit notional")?;
            t.realised = c(t.realised.checked_add(realised), "realised")?;
            t.fees = c(t.fees.checked_add(close_fee), "fees")?;
            if qty.is_zero() {
                cost = Decimal::ZERO;
                closed = trip.take().map(|t| close_trip(pair, t, fill.ts));
            }
        }
        if !opening_qty.is_zero() {
            let open_notional = c(opening_qty.checked_mul(fill.price), "fill notional")?;
            cost = c(cost.checked_add(dir * open_notional), "cost basis")?;
            qty = c(qty.checked_add(dir * opening_qty), "position qty")?;
            let t = trip.get_or_insert(OpenTrip {
                side: fill.side,
                opened_at: fill.ts,
                entry_qty: Decimal::ZERO,
                entry_notional: Decimal::ZERO,
                exit_qty: Decimal::ZERO,
                exit_notional: Decimal::ZERO,
                realised: Decimal::ZERO,
                fees: Decimal::ZERO,
            });
            t.entry_qty = c(t.entry_qty.checked_add(opening_qty), "entry qty")?;
            t.entry_notional = c(
                t.entry_notional.checked_add(open_notional),
                "entry notional",
            )?;
            t.fees = c(t.fees.checked_add(opening_fee), "fees")?;
        }
        let realised_total = c(st.realised.checked_add(realised), "realised")?;
        let fees_total = c(st.fees.checked_add(fill.fee), "fees")?;
        let mut next = PairState {
            qty,
            cost,
            realised: realised_total,
            fees: fees_total,
            mark: st.mark,
            trip,
            volatility: RollingVolatility::new(2),
            value: Decimal::ZERO,
            exposure: Decimal::ZERO,
            unpriced: false,
        };
        let (value, exposure) = checked(
            next.valuation(st.mark.map(|m| m.price)),
            "position value",
            pair,
        )?;
        let positions_value = c(
            self.positions_value
                .checked_sub(st.value)
                .and_then(|v| v.checked_add(value)),
            "position value",
        )?;
        let total_exposure = c(
            self.exposure
                .checked_sub(st.exposure)
                .and_then(|v| v.checked_add(exposure)),
            "exposure",
        )?;
        let equity = c(cash.checked_add(positions_value), "equity")?;
        let qty_before = st.qty;

        // Commit.
        self.roll_day();
        let st = self
            .s
            .positions
            .get_mut(pair)
            .ok_or_else(|| Error::UnknownPair { pair: pair.clone() })?;
        next.volatility = std::mem::replace(&mut st.volatility, RollingVolatility::new(2));
        next.value = value;
        next.exposure = exposure;
        *st = next;
        self.s.cash = cash;
        self.positions_value = positions_value;
        self.exposure = total_exposure;
        self.set_equity(equity);
        self.remember_fill(&fill.trade_id);
        if let Some(trade) = &closed {
            self.record_trade(trade.clone());
        }
        Ok(FillReport {
            pair: pair.clone(),
            qty_before,
            qty_after: qty,
            realised,
            fee: fill.fee,
            closed,
        })
    }

    fn remember_fill(&mut self, trade_id: &str) {
        self.fill_ids.insert(trade_id.to_owned());
        self.s.recent_fill_ids.push_back(trade_id.to_owned());
        while self.s.recent_fill_ids.len() > RECENT_FILL_IDS {
            if let Some(old) = self.s.recent_fill_ids.pop_front() {
                self.fill_ids.remove(&old);
            }
        }
    }

    fn record_trade(&mut self, trade: ClosedTrade) {
        if trade.net_pnl < Decimal::ZERO {
            self.s.consecutive_losses = self.s.consecutive_losses.saturating_add(1);
        } else if trade.net_pnl > Decimal::ZERO {
            self.s.consecutive_losses = 0;
        }
        self.s.stats.record(&trade);
        self.s.recent_trades.push_back(trade);
        while self.s.recent_trades.len() > RECENT_TRADES {
            self.s.recent_trades.pop_front();
        }
    }
}

fn saturating_sum(values: impl Iterator<Item = Decimal>) -> Decimal {
    values.fold(Decimal::ZERO, Decimal::saturating_add)
}

fn mid(bid: Decimal, ask: Decimal) -> Decimal {
    // (bid + ask) / 2 without overflowing for huge prices.
    bid / Decimal::TWO + ask / Decimal::TWO
}

fn close_trip(pair: &Pair, t: OpenTrip, at: DateTime<Utc>) -> ClosedTrade {
    let avg = |notional: Decimal, qty: Decimal| notional.checked_div(qty).unwrap_or(Decimal::ZERO);
    ClosedTrade {
        pair: pair.clone(),
        side: t.side,
        qty: t.entry_qty,
        avg_entry: avg(t.entry_notional, t.entry_qty),
        avg_exit: avg(t.exit_notional, t.exit_qty),
        opened_at: t.opened_at,
        closed_at: at,
        realised_pnl: t.realised,
        fees: t.fees,
        net_pnl: t.realised.saturating_sub(t.fees),
    }
}

fn to_position(pair: &Pair, st: &PairState) -> Position {
    Position {
        pair: pair.clone(),
        qty: st.qty,
        avg_entry: if st.qty.is_zero() {
            Decimal::ZERO
        } else {
            st.cost.checked_div(st.qty).unwrap_or(Decimal::ZERO).abs()
        },
        mark: st.mark.map(|m| m.price),
        realised_pnl: st.realised,
        unrealised_pnl: st.value.saturating_sub(st.cost),
        fees: st.fees,
    }
}

impl PortfolioView for Portfolio {
    fn equity(&self) -> Decimal {
        self.equity
    }

    fn peak_equity(&self) -> Decimal {
        self.s.peak_equity
    }

    fn total_drawdown_pct(&self) -> Decimal {
        pct_of(
            self.s.peak_equity.saturating_sub(self.equity),
            self.s.peak_equity,
        )
    }

    fn daily_drawdown_pct(&self) -> Decimal {
        if self.clock.now().date_naive() != self.s.day {
            // A new UTC day began and nothing moved since: it starts at today's equity.
            return Decimal::ZERO;
        }
        pct_of(
            self.s.day_start_equity.saturating_sub(self.equity),
            self.s.day_start_equity,
        )
    }

    fn consecutive_losses(&self) -> u32 {
        self.s.consecutive_losses
    }

    fn positions(&self) -> Vec<Position> {
        self.s
            .positions
            .iter()
            .filter(|(_, st)| !st.qty.is_zero())
            .map(|(pair, st)| to_position(pair, st))
            .collect()
    }

    fn exposure(&self) -> Decimal {
        self.exposure
    }

    fn volatility_pct(&self, pair: &Pair) -> Option<Decimal> {
        self.s
            .positions
            .get(pair)
            .and_then(|p| p.volatility.volatility_pct())
    }

    fn trading_stats(&self) -> TradingStats {
        self.statistics()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders shared by the unit and property tests.
    use super::*;
    use chrono::TimeZone;
    use gf_core::{ManualClock, OrderId, OrderPurpose};
    use proptest::prelude::*;
    use std::sync::Arc;

    pub fn xrp() -> Pair {
        Pair::new("XRP/USD").unwrap()
    }

    pub fn doge() -> Pair {
        Pair::new("DOGE/USD").unwrap()
    }

    pub fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
    }

    pub fn portfolio(cash: Decimal) -> (Portfolio, ManualClock) {
        let clock = ManualClock::new(t0());
        let p = Portfolio::new(
            PortfolioConfig {
                pairs: vec![xrp(), doge()],
                initial_cash: cash,
                volatility_window: 3,
            },
            Arc::new(clock.clone()),
        )
        .unwrap();
        (p, clock)
    }

    /// Any decimal: ordinary values, extremes and the smallest steps.
    pub fn any_decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            6 => (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => Just(Decimal::MAX),
            1 => Just(Decimal::MIN),
            1 => Just(Decimal::new(1, 28)),
            1 => Just(Decimal::ZERO),
        ]
    }

    pub fn fill(
        id: &str,
        pair: &Pair,
        side: Side,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
    ) -> Fill {
        Fill {
            trade_id: id.to_owned(),
            order_id: OrderId::new(format!("O-{id}")),
            client_order_id: None,
            pair: pair.clone(),
            side,
            qty,
            price,
            fee,
            ts: t0(),
            purpose: OrderPurpose::Normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use chrono::{Duration, TimeZone};
    use gf_core::{BookSnapshot, BookUpdate, Clock, Level, Source};
    use rust_decimal_macros::dec;

    fn identity_holds(p: &Portfolio) {
        assert_eq!(
            p.equity() - p.initial_equity(),
            p.realised_pnl() + p.unrealised_pnl() - p.fees()
        );
    }

    #[test]
    fn fills_open_add_reduce_reverse_and_close() {
        let (mut p, _clock) = portfolio(dec!(10000));
        let x = xrp();
        p.apply_fill(&fill("1", &x, Side::Buy, dec!(100), dec!(1.00), dec!(0.1)))
            .unwrap();
        assert_eq!(p.cash(), dec!(9899.9));
        // Unmarked: valued at cost, no unrealised P&L.
        assert_eq!(p.equity(), dec!(9999.9));
        p.mark_price(&x, dec!(1.10), t0()).unwrap();
        assert_eq!(p.equity(), dec!(10009.9));
        assert_eq!(p.position(&x).unwrap().unrealised_pnl, dec!(10));

        p.apply_fill(&fill("2", &x, Side::Buy, dec!(100), dec!(1.20), dec!(0.1)))
            .unwrap();
        let pos = p.position(&x).unwrap();
        assert_eq!((pos.qty, pos.avg_entry), (dec!(200), dec!(1.10)));
        assert_eq!(p.equity(), dec!(9999.8));

        let r = p
            .apply_fill(&fill("3", &x, Side::Sell, dec!(50), dec!(1.30), dec!(0.05)))
            .unwrap();
        assert_eq!(
            (r.qty_before, r.qty_after, r.realised),
            (dec!(200), dec!(150), dec!(10))
        );
        assert!(r.closed.is_none());
        assert_eq!(p.cash(), dec!(9844.75));
        assert_eq!(p.equity(), dec!(10009.75));
        identity_holds(&p);

        // Sell 250: closes 150 at a loss and opens a 100 short.
        let r = p
            .apply_fill(&fill(
                "4",
                &x,
                Side::Sell,
                dec!(250),
                dec!(1.00),
                dec!(0.25),
            ))
            .unwrap();
        assert_eq!(r.realised, dec!(-15));
        let trip = r.closed.unwrap();
        assert_eq!(trip.side, Side::Buy);
        assert_eq!(trip.qty, dec!(200));
        assert_eq!(trip.avg_entry, dec!(1.10));
        assert_eq!(trip.avg_exit, dec!(1.075)); // (50 × 1.30 + 150 × 1.00) / 200
        assert_eq!(trip.realised_pnl, dec!(-5));
        assert_eq!(trip.fees, dec!(0.40));
        assert_eq!(trip.net_pnl, dec!(-5.40));
        assert_eq!(p.consecutive_losses(), 1);
        let pos = p.position(&x).unwrap();
        assert_eq!((pos.qty, pos.avg_entry), (dec!(-100), dec!(1.00)));
        assert_eq!(pos.side(), Some(Side::Sell));
        assert_eq!(p.equity(), dec!(9984.5));
        identity_holds(&p);

        // Buy back the short at a profit: a win resets the loss streak.
        let r = p
            .apply_fill(&fill("5", &x, Side::Buy, dec!(100), dec!(0.90), dec!(0.1)))
            .unwrap();
        let trip = r.closed.unwrap();
        assert_eq!((trip.side, trip.net_pnl), (Side::Sell, dec!(9.8)));
        assert_eq!(p.consecutive_losses(), 0);
        assert_eq!(p.equity(), dec!(10004.4));
        assert!(p.positions().is_empty());
        assert_eq!(p.exposure(), Decimal::ZERO);
        identity_holds(&p);
        let stats = p.statistics();
        assert_eq!((stats.count, stats.winners, stats.losers), (2, 1, 1));
        assert_eq!(stats.total_pnl, dec!(4.4));
        assert_eq!(p.recent_trades().count(), 2);
        assert_eq!(p.balances()["USD"], dec!(10004.4));
        assert_eq!(p.balances()["XRP"], Decimal::ZERO);
    }

    #[test]
    fn consecutive_losses_count_and_reset() {
        let (mut p, _clock) = portfolio(dec!(1000));
        let x = xrp();
        let mut id = 0;
        let mut trip = |p: &mut Portfolio, exit: Decimal| {
            id += 2;
            p.apply_fill(&fill(
                &id.to_string(),
                &x,
                Side::Buy,
                dec!(1),
                dec!(10),
                dec!(0),
            ))
            .unwrap();
            p.apply_fill(&fill(
                &(id + 1).to_string(),
                &x,
                Side::Sell,
                dec!(1),
                exit,
                dec!(0),
            ))
            .unwrap();
        };
        trip(&mut p, dec!(9));
        trip(&mut p, dec!(8));
        assert_eq!(p.consecutive_losses(), 2);
        trip(&mut p, dec!(10)); // break-even: neither a loss nor a win
        assert_eq!(p.consecutive_losses(), 2);
        trip(&mut p, dec!(7));
        assert_eq!(p.consecutive_losses(), 3);
        trip(&mut p, dec!(11));
        assert_eq!(p.consecutive_losses(), 0);
    }

    #[test]
    fn bad_fills_are_typed_errors_and_change_nothing() {
        let (mut p, _clock) = portfolio(dec!(1000));
        let x = xrp();
        p.apply_fill(&fill("ok", &x, Side::Buy, dec!(1), dec!(1), dec!(0)))
            .unwrap();
        let before = p.snapshot();
        struct Case {
            fill: Fill,
            expect: &'static str,
        }
        let eth = Pair::new("ETH/USD").unwrap();
        let cases = [
            Case {
                fill: fill("a", &eth, Side::Buy, dec!(1), dec!(1), dec!(0)),
                expect: "unknown pair ETH/USD",
            },
            Case {
                fill: fill("b", &x, Side::Buy, dec!(-3), dec!(1), dec!(0)),
                expect: "invalid fill b: field `qty` = -3: must be positive",
            },
            Case {
                fill: fill("c", &x, Side::Sell, dec!(0), dec!(1), dec!(0)),
                expect: "field `qty` = 0",
            },
            Case {
                fill: fill("d", &x, Side::Buy, dec!(1), dec!(0), dec!(0)),
                expect: "invalid fill d: field `price` = 0: must be positive",
            },
            Case {
                fill: fill("e", &x, Side::Buy, dec!(1), dec!(1), dec!(-0.5)),
                expect: "field `fee` = -0.5: must not be negative",
            },
            Case {
                fill: fill("ok", &x, Side::Buy, dec!(1), dec!(1), dec!(0)),
                expect: "duplicate fill ok for XRP/USD",
            },
            Case {
                fill: fill("f", &x, Side::Buy, Decimal::MAX, dec!(2), dec!(0)),
                expect: "arithmetic overflow computing fill notional for XRP/USD",
            },
        ];
        for case in cases {
            let err = p.apply_fill(&case.fill).unwrap_err().to_string();
            assert!(err.contains(case.expect), "{err} ⊅ {}", case.expect);
            assert_eq!(p.snapshot(), before);
        }
    }

    #[test]
    fn bad_marks_are_typed_errors() {
        let (mut p, _clock) = portfolio(dec!(1000));
        let err = p.mark_price(&xrp(), dec!(0), t0()).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidPrice {
                pair: xrp(),
                price: dec!(0)
            }
        );
        assert!(err.to_string().contains("invalid price 0 for XRP/USD"));
        let eth = Pair::new("ETH/USD").unwrap();
        assert_eq!(
            p.mark_price(&eth, dec!(1), t0()).unwrap_err(),
            Error::UnknownPair { pair: eth }
        );
        // A position too large to value at an absurd price.
        p.apply_fill(&fill(
            "1",
            &xrp(),
            Side::Buy,
            dec!(1000000),
            dec!(0.001),
            dec!(0),
        ))
        .unwrap();
        let err = p.mark_price(&xrp(), Decimal::MAX, t0()).unwrap_err();
        assert!(matches!(err, Error::Overflow { .. }), "{err}");
        assert_eq!(p.mark(&xrp()), None);
    }

    #[test]
    fn market_data_events_mark_to_mid_or_last() {
        let (mut p, _clock) = portfolio(dec!(1000));
        let x = xrp();
        p.apply_fill(&fill("1", &x, Side::Buy, dec!(10), dec!(1), dec!(0)))
            .unwrap();
        let ev = |secs: i64, payload: Payload| {
            Event::new(t0() + Duration::seconds(secs), Source::Market, payload)
        };
        let lvl = |p: Decimal| Level::new(p, dec!(5));
        let snapshot = ev(
            1,
            Payload::BookSnapshot(BookSnapshot {
                pair: x.clone(),
                bids: vec![lvl(dec!(1.10)), lvl(dec!(1.00))],
                asks: vec![lvl(dec!(1.20)), lvl(dec!(1.30))],
                checksum: 0,
            }),
        );
        assert_eq!(
            p.apply_event(&snapshot).unwrap(),
            Applied::Marked {
                pair: x.clone(),
                price: dec!(1.15)
            }
        );
        assert_eq!(p.equity(), dec!(1001.5));
        let one_sided = ev(
            2,
            Payload::BookSnapshot(BookSnapshot {
                pair: x.clone(),
                bids: vec![],
                asks: vec![lvl(dec!(1.20))],
                checksum: 0,
            }),
        );
        assert_eq!(p.apply_event(&one_sided).unwrap(), Applied::NotMarked);
        let update = ev(
            3,
            Payload::BookUpdate(BookUpdate {
                pair: x.clone(),
                bids: Default::default(),
                asks: Default::default(),
                checksum: 0,
                best_bid: Some(lvl(dec!(1.20))),
                best_ask: Some(lvl(dec!(1.24))),
            }),
        );
        p.apply_event(&update).unwrap();
        assert_eq!(p.mark(&x).unwrap().price, dec!(1.22));
        let no_best = ev(
            3,
            Payload::BookUpdate(BookUpdate {
                pair: x.clone(),
                bids: Default::default(),
                asks: Default::default(),
                checksum: 0,
                best_bid: None,
                best_ask: Some(lvl(dec!(1.24))),
            }),
        );
        assert_eq!(p.apply_event(&no_best).unwrap(), Applied::NotMarked);
        let trade = ev(
            4,
            Payload::Trade {
                pair: x.clone(),
                side: Side::Sell,
                price: dec!(1.05),
                qty: dec!(3),
                trade_id: 9,
            },
        );
        p.apply_event(&trade).unwrap();
        assert_eq!(p.mark(&x).unwrap().price, dec!(1.05));
        let ticker = ev(
            5,
            Payload::Ticker {
                pair: x.clone(),
                bid: dec!(0.9),
                ask: dec!(1.1),
                last: dec!(0.95),
                volume: dec!(1),
            },
        );
        p.apply_event(&ticker).unwrap();
        let mark = p.mark(&x).unwrap();
        assert_eq!(
            (mark.price, mark.ts),
            (dec!(0.95), t0() + Duration::seconds(5))
        );
        // Older data does not move the mark back.
        assert_eq!(p.apply_event(&trade).unwrap(), Applied::NotMarked);
        assert_eq!(p.mark(&x).unwrap().price, dec!(0.95));
        // A fill event goes through apply_fill.
        let f = ev(
            6,
            Payload::Fill(fill("2", &x, Side::Sell, dec!(10), dec!(1), dec!(0))),
        );
        assert!(matches!(p.apply_event(&f).unwrap(), Applied::Fill(r) if r.qty_after.is_zero()));
        let other = ev(
            7,
            Payload::Resumed {
                operator: "alice".into(),
            },
        );
        assert_eq!(p.apply_event(&other).unwrap(), Applied::Ignored);
        let unknown = ev(
            8,
            Payload::BookSnapshot(BookSnapshot {
                pair: Pair::new("ETH/USD").unwrap(),
                bids: vec![],
                asks: vec![],
                checksum: 0,
            }),
        );
        assert!(matches!(
            p.apply_event(&unknown),
            Err(Error::UnknownPair { .. })
        ));
    }

    #[test]
    fn daily_drawdown_resets_at_utc_midnight() {
        let clock = gf_core::ManualClock::at_ymd_hms(2026, 1, 1, 10, 0, 0);
        let mut p = Portfolio::new(
            PortfolioConfig {
                pairs: vec![xrp()],
                initial_cash: dec!(1000),
                volatility_window: 60,
            },
            std::sync::Arc::new(clock.clone()),
        )
        .unwrap();
        let x = xrp();
        p.apply_fill(&fill("1", &x, Side::Buy, dec!(1000), dec!(1), dec!(0)))
            .unwrap();
        p.mark_price(&x, dec!(1.2), clock.now()).unwrap();
        p.mark_price(&x, dec!(0.9), clock.now()).unwrap();
        assert_eq!(p.peak_equity(), dec!(1200));
        assert_eq!(p.total_drawdown_pct(), dec!(25));
        assert_eq!(p.daily_drawdown_pct(), dec!(10)); // from 1000 at the day's start

        clock.set(Utc.with_ymd_and_hms(2026, 1, 1, 23, 59, 59).unwrap());
        assert_eq!(p.daily_drawdown_pct(), dec!(10));
        clock.advance(Duration::seconds(1)); // 2026-01-02T00:00:00Z
        assert_eq!(p.daily_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.total_drawdown_pct(), dec!(25));

        // The new day starts at 900: a fall to 810 is 10 % today, 32.5 % overall.
        p.mark_price(&x, dec!(0.81), clock.now()).unwrap();
        assert_eq!(p.daily_drawdown_pct(), dec!(10));
        assert_eq!(p.total_drawdown_pct(), dec!(32.5));
        assert_eq!(p.max_drawdown_pct(), dec!(32.5));
        // Recovering above the day's start is no drawdown.
        p.mark_price(&x, dec!(1.0), clock.now()).unwrap();
        assert_eq!(p.daily_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.max_drawdown_pct(), dec!(32.5));

        let curve: Vec<_> = p.equity_curve().copied().collect();
        let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        assert_eq!(
            curve,
            vec![
                DailyEquity {
                    date: day(1),
                    open: dec!(1000),
                    high: dec!(1200),
                    low: dec!(900),
                    close: dec!(900)
                },
                DailyEquity {
                    date: day(2),
                    open: dec!(900),
                    high: dec!(1000),
                    low: dec!(810),
                    close: dec!(1000)
                },
            ]
        );
    }

    #[test]
    fn restored_snapshot_yields_identical_numbers() {
        let (mut p, clock) = portfolio(dec!(5000));
        let (x, d) = (xrp(), doge());
        for i in 0..6i64 {
            let ts = t0() + Duration::minutes(i);
            p.mark_price(&x, dec!(0.5) + Decimal::new(i, 2), ts)
                .unwrap();
            p.mark_price(&d, dec!(0.1) - Decimal::new(i, 3), ts)
                .unwrap();
        }
        p.apply_fill(&fill("1", &x, Side::Buy, dec!(1000), dec!(0.52), dec!(0.4)))
            .unwrap();
        p.apply_fill(&fill(
            "2",
            &d,
            Side::Sell,
            dec!(3000),
            dec!(0.097),
            dec!(0.3),
        ))
        .unwrap();
        p.apply_fill(&fill("3", &x, Side::Sell, dec!(400), dec!(0.56), dec!(0.2)))
            .unwrap();
        p.apply_fill(&fill("4", &x, Side::Sell, dec!(600), dec!(0.50), dec!(0.2)))
            .unwrap();
        clock.advance(Duration::days(1));
        p.mark_price(&d, dec!(0.11), clock.now()).unwrap();

        let json = p.snapshot_json().unwrap();
        let q = Portfolio::restore_json(&json, std::sync::Arc::new(clock.clone())).unwrap();
        assert_eq!(q.equity(), p.equity());
        assert_eq!(q.peak_equity(), p.peak_equity());
        assert_eq!(q.total_drawdown_pct(), p.total_drawdown_pct());
        assert_eq!(q.daily_drawdown_pct(), p.daily_drawdown_pct());
        assert_eq!(q.consecutive_losses(), p.consecutive_losses());
        assert_eq!(q.positions(), p.positions());
        assert_eq!(q.exposure(), p.exposure());
        assert_eq!(q.volatility_pct(&x), p.volatility_pct(&x));
        assert!(q.volatility_pct(&x).is_some());
        assert_eq!(q.statistics(), p.statistics());
        assert_eq!(q.max_drawdown_pct(), p.max_drawdown_pct());
        assert_eq!(q.snapshot(), p.snapshot());
        assert_eq!(q.snapshot_json().unwrap(), json);
        // Duplicate detection survives the restart.
        let mut q = q;
        assert!(matches!(
            q.apply_fill(&fill("4", &x, Side::Sell, dec!(1), dec!(0.5), dec!(0))),
            Err(Error::DuplicateFill { .. })
        ));
    }

    #[test]
    fn restore_rejects_inconsistent_snapshots() {
        let (p, clock) = portfolio(dec!(100));
        let arc = || -> SharedClock { std::sync::Arc::new(clock.clone()) };
        let mut s = p.snapshot();
        s.version = 99;
        let err = Portfolio::restore(s, arc()).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
        let mut s = p.snapshot();
        s.quote = "EUR".into();
        let err = Portfolio::restore(s, arc()).unwrap_err();
        assert!(err.to_string().contains("not quoted in EUR"), "{err}");
        let mut s = p.snapshot();
        s.positions.clear();
        assert!(Portfolio::restore(s, arc()).is_err());
        let err = Portfolio::restore_json("{\"version\":1", arc()).unwrap_err();
        assert!(matches!(err, Error::SnapshotJson(_)), "{err}");
        let err = Portfolio::restore_json("[]", arc()).unwrap_err();
        assert!(err.to_string().starts_with("snapshot json:"), "{err}");
    }

    #[test]
    fn construction_validates_its_inputs() {
        let clock: SharedClock = std::sync::Arc::new(gf_core::ManualClock::default());
        let cfg = |pairs: Vec<Pair>, cash: Decimal, window: usize| PortfolioConfig {
            pairs,
            initial_cash: cash,
            volatility_window: window,
        };
        assert_eq!(
            Portfolio::new(cfg(vec![], dec!(1), 60), clock.clone()).unwrap_err(),
            Error::NoPairs
        );
        let eur = Pair::new("XRP/EUR").unwrap();
        let err = Portfolio::new(cfg(vec![xrp(), eur], dec!(1), 60), clock.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pair XRP/EUR is quoted in EUR, but the portfolio is in USD"
        );
        let err = Portfolio::new(cfg(vec![xrp()], dec!(-5), 60), clock.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid initial cash -5: must not be negative"
        );
        let err = Portfolio::new(cfg(vec![xrp()], dec!(5), 1), clock.clone()).unwrap_err();
        assert!(
            err.to_string().contains("halt.volatility_window_mins"),
            "{err}"
        );

        let config = Config::default();
        let p = Portfolio::from_config(&config, clock).unwrap();
        assert_eq!(p.equity(), dec!(100000));
        assert_eq!(p.quote(), "USD");
        assert_eq!(p.pairs().count(), 2);
        assert!(format!("{p:?}").contains("equity: 100000"));
    }

    #[test]
    fn drawdown_of_a_wiped_out_account_is_capped() {
        let (mut p, _clock) = portfolio(dec!(100));
        let x = xrp();
        p.apply_fill(&fill("1", &x, Side::Sell, dec!(100), dec!(1), dec!(0)))
            .unwrap();
        p.mark_price(&x, dec!(5), t0()).unwrap(); // short squeezed: equity -300
        assert_eq!(p.equity(), dec!(-300));
        assert_eq!(p.total_drawdown_pct(), dec!(100));
        assert_eq!(p.daily_drawdown_pct(), dec!(100));
        assert_eq!(p.max_drawdown_pct(), dec!(100));
        assert_eq!(p.exposure(), dec!(500));
    }
}

#[cfg(test)]
mod property_tests {
    use super::test_support::*;
    use super::*;
    use chrono::Duration;
    use gf_core::{Clock, ManualClock};
    use proptest::prelude::*;
    use std::sync::Arc;

    #[derive(Debug, Clone)]
    enum Op {
        Fill {
            doge: bool,
            buy: bool,
            qty: i64,
            price: i64,
            fee: i64,
        },
        Mark {
            doge: bool,
            price: i64,
        },
        Wait {
            minutes: i64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (any::<bool>(), any::<bool>(), 1i64..100_000, 1i64..50_000, 0i64..500).prop_map(
                |(doge, buy, qty, price, fee)| Op::Fill { doge, buy, qty, price, fee }
            ),
            3 => (any::<bool>(), 1i64..50_000).prop_map(|(doge, price)| Op::Mark { doge, price }),
            1 => (0i64..2000).prop_map(|minutes| Op::Wait { minutes }),
        ]
    }

    /// Applies `ops`, calling `check` after each one.
    fn run(ops: &[Op], mut check: impl FnMut(&Portfolio)) -> (Portfolio, ManualClock) {
        let (mut p, clock) = portfolio(Decimal::new(1_000_000, 0));
        for (i, op) in ops.iter().enumerate() {
            let pair = |doge: bool| if doge { doge_pair() } else { xrp() };
            match *op {
                Op::Fill {
                    doge,
                    buy,
                    qty,
                    price,
                    fee,
                } => {
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let mut f = fill(
                        &i.to_string(),
                        &pair(doge),
                        side,
                        Decimal::new(qty, 2),
                        Decimal::new(price, 4),
                        Decimal::new(fee, 2),
                    );
                    f.ts = clock.now();
                    p.apply_fill(&f).unwrap();
                }
                Op::Mark { doge, price } => {
                    p.mark_price(&pair(doge), Decimal::new(price, 4), clock.now())
                        .unwrap();
                }
                Op::Wait { minutes } => clock.advance(Duration::minutes(minutes)),
            }
            check(&p);
        }
        (p, clock)
    }

    fn doge_pair() -> Pair {
        doge()
    }

    proptest! {
        #[test]
        fn prop_pnl_conservation(ops in prop::collection::vec(op(), 1..60)) {
            run(&ops, |p| {
                let change = p.equity() - p.initial_equity();
                assert_eq!(change, p.realised_pnl() + p.unrealised_pnl() - p.fees());
                let from_positions: Decimal = p
                    .positions()
                    .iter()
                    .map(|pos| pos.realised_pnl + pos.unrealised_pnl - pos.fees)
                    .sum();
                let flat: Decimal = p
                    .pairs()
                    .filter_map(|pair| p.position(pair))
                    .filter(|pos| pos.qty.is_zero())
                    .map(|pos| pos.realised_pnl - pos.fees)
                    .sum();
                assert_eq!(change, from_positions + flat);
                let stats = p.statistics();
                assert_eq!(stats.count, stats.winners + stats.losers
                    + p.recent_trades().filter(|t| t.net_pnl.is_zero()).count() as u64);
            });
        }

        #[test]
        fn prop_drawdown_stays_within_0_and_100(ops in prop::collection::vec(op(), 1..60)) {
            run(&ops, |p| {
                for dd in [p.total_drawdown_pct(), p.daily_drawdown_pct(), p.max_drawdown_pct()] {
                    assert!(dd >= Decimal::ZERO && dd <= Decimal::ONE_HUNDRED, "{dd}");
                }
                assert!(p.max_drawdown_pct() >= p.total_drawdown_pct());
                assert!(p.peak_equity() >= p.equity());
            });
        }

        #[test]
        fn prop_restored_snapshot_is_identical(ops in prop::collection::vec(op(), 1..60)) {
            let (p, clock) = run(&ops, |_| {});
            let json = p.snapshot_json().unwrap();
            let q = Portfolio::restore_json(&json, Arc::new(clock)).unwrap();
            prop_assert_eq!(q.equity(), p.equity());
            prop_assert_eq!(q.total_drawdown_pct(), p.total_drawdown_pct());
            prop_assert_eq!(q.daily_drawdown_pct(), p.daily_drawdown_pct());
            prop_assert_eq!(q.exposure(), p.exposure());
            prop_assert_eq!(q.positions(), p.positions());
            prop_assert_eq!(q.volatility_pct(&xrp()), p.volatility_pct(&xrp()));
            prop_assert_eq!(q.statistics(), p.statistics());
            prop_assert_eq!(q.snapshot(), p.snapshot());
        }

        #[test]
        fn prop_arbitrary_numbers_never_panic(
            inputs in prop::collection::vec((any_decimal(), any_decimal(), any_decimal(), any::<bool>()), 1..40),
            garbage in ".{0,200}",
        ) {
            let (mut p, clock) = portfolio(Decimal::new(1_000_000, 0));
            for (i, (qty, price, fee, buy)) in inputs.into_iter().enumerate() {
                let side = if buy { Side::Buy } else { Side::Sell };
                let before = p.snapshot();
                if p.apply_fill(&fill(&i.to_string(), &xrp(), side, qty, price, fee)).is_err() {
                    prop_assert_eq!(p.snapshot(), before);
                }
                let before = p.snapshot();
                if p.mark_price(&xrp(), price, clock.now()).is_err() {
                    prop_assert_eq!(p.snapshot(), before);
                }
                let _ = (p.equity(), p.total_drawdown_pct(), p.daily_drawdown_pct());
                let _ = (p.positions(), p.statistics(), p.balances(), p.unrealised_pnl());
                let _ = (p.realised_pnl(), p.fees(), p.volatility_pct(&xrp()));
            }
            prop_assert!(Portfolio::restore_json(&garbage, Arc::new(clock)).is_err());
        }

        #[test]
        fn prop_exposure_is_sum_of_position_notionals(ops in prop::collection::vec(op(), 1..60)) {
            run(&ops, |p| {
                // Unmarked positions are valued at cost, which `Position::exposure`
                // approximates as |qty| × avg_entry (a rounded quotient).
                let sum: Decimal = p.positions().iter().map(Position::exposure).sum();
                let tolerance = Decimal::new(1, 18);
                assert!((p.exposure() - sum).abs() < tolerance, "{} vs {sum}", p.exposure());
                let marked: Decimal = p
                    .positions()
                    .iter()
                    .filter_map(|pos| pos.mark.map(|m| pos.qty.abs() * m))
                    .sum();
                let all_marked = p.positions().iter().all(|pos| pos.mark.is_some());
                if all_marked {
                    assert_eq!(p.exposure(), marked);
                }
            });
        }
    }
}

#[cfg(test)]
mod seed_tests {
    //! Holdings seeded from the account's balances (module docs, "Seeded holdings").
    use super::test_support::*;
    use super::*;
    use gf_core::Clock;
    use rust_decimal_macros::dec;

    fn identity_holds(p: &Portfolio) {
        assert_eq!(
            p.equity() - p.initial_equity(),
            p.realised_pnl() + p.unrealised_pnl() - p.fees()
        );
    }

    #[test]
    fn a_seeded_holding_is_unpriced_until_its_first_mark_which_becomes_its_entry() {
        let (mut p, clock) = portfolio(dec!(1000));
        let x = xrp();
        let report = p.seed_position(&x, dec!(100)).unwrap().unwrap();
        assert_eq!(
            report,
            SeedReport {
                pair: x.clone(),
                qty_before: Decimal::ZERO,
                qty_after: dec!(100),
                replaced_avg_entry: None,
            }
        );
        // Unpriced: held, but neither valued nor marked.
        assert!(p.is_unpriced(&x));
        assert_eq!(p.unpriced().collect::<Vec<_>>(), [&x]);
        assert_eq!(p.position_qty(&x), Some(dec!(100)));
        assert_eq!(p.mark(&x), None);
        assert_eq!((p.equity(), p.exposure()), (dec!(1000), Decimal::ZERO));
        assert_eq!(p.balances()["XRP"], dec!(100));
        assert_eq!(p.positions().len(), 1);
        identity_holds(&p);

        // The first mark is the entry: no P&L, and the value is a deposit, not a gain.
        assert!(p.mark_price(&x, dec!(0.5), clock.now()).unwrap());
        assert!(!p.is_unpriced(&x));
        let pos = p.position(&x).unwrap();
        assert_eq!(
            (pos.avg_entry, pos.unrealised_pnl),
            (dec!(0.5), Decimal::ZERO)
        );
        assert_eq!(p.equity(), dec!(1050));
        assert_eq!(p.initial_equity(), dec!(1050));
        assert_eq!(p.peak_equity(), dec!(1050));
        assert_eq!(p.exposure(), dec!(50));
        assert_eq!(p.total_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.daily_drawdown_pct(), Decimal::ZERO);
        let today = p.equity_curve().last().copied().unwrap();
        assert_eq!(
            (today.open, today.low, today.close),
            (dec!(1050), dec!(1050), dec!(1050))
        );
        identity_holds(&p);

        // From then on it is a position like any other.
        p.mark_price(&x, dec!(0.4), clock.now()).unwrap();
        assert_eq!(p.equity(), dec!(1040));
        assert_eq!(p.unrealised_pnl(), dec!(-10));
        assert_eq!(p.exposure(), dec!(40));
        assert_eq!(p.total_drawdown_pct(), dec!(10) / dec!(1050) * dec!(100));
        identity_holds(&p);
    }

    #[test]
    fn a_fill_before_any_mark_prices_the_holding_at_the_fill() {
        let (mut p, _clock) = portfolio(dec!(1000));
        let x = xrp();
        p.seed_position(&x, dec!(100)).unwrap();
        // A halt closure sells it before market data arrived.
        let report = p
            .apply_fill(&fill("s1", &x, Side::Sell, dec!(100), dec!(0.6), dec!(0.1)))
            .unwrap();
        assert_eq!(
            (report.qty_before, report.qty_after),
            (dec!(100), Decimal::ZERO)
        );
        assert_eq!(report.realised, Decimal::ZERO);
        assert!(!p.is_unpriced(&x));
        assert_eq!(p.cash(), dec!(1059.9));
        assert_eq!(p.equity(), dec!(1059.9));
        assert_eq!(p.initial_equity(), dec!(1060));
        assert_eq!(p.fees(), dec!(0.1));
        let trip = p.recent_trades().last().unwrap();
        assert_eq!((trip.avg_entry, trip.net_pnl), (dec!(0.6), dec!(-0.1)));
        identity_holds(&p);

        // A failing fill leaves an unpriced holding as it was.
        let (mut p, _clock) = portfolio(dec!(1000));
        p.seed_position(&x, dec!(100)).unwrap();
        let before = p.snapshot();
        let err = p
            .apply_fill(&fill("s2", &x, Side::Buy, Decimal::MAX, dec!(2), dec!(0)))
            .unwrap_err();
        assert!(matches!(err, Error::Overflow { .. }), "{err}");
        assert_eq!(p.snapshot(), before);
        assert!(p.is_unpriced(&x));
    }

    #[test]
    fn impossible_holdings_are_refused_and_change_nothing() {
        let (mut p, _clock) = portfolio(dec!(1000));
        let x = xrp();
        assert_eq!(MAX_SEED_QTY, dec!(1_000_000_000_000_000));
        let before = p.snapshot();
        for (qty, reason) in [
            (dec!(-1), "must not be negative"),
            (MAX_SEED_QTY + Decimal::ONE, "above the largest holding"),
            (Decimal::new(1, 19), "more than 18 decimal places"),
        ] {
            let err = p.seed_position(&x, qty).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidHolding { pair, qty: q, .. } if *pair == x && *q == qty),
                "{err}"
            );
            assert!(err.to_string().contains(reason), "{err}");
            assert!(err.to_string().contains("XRP/USD"), "{err}");
        }
        let err = p
            .seed_position(&Pair::new("ETH/USD").unwrap(), dec!(1))
            .unwrap_err();
        assert!(matches!(err, Error::UnknownPair { .. }), "{err}");
        assert_eq!(p.snapshot(), before);
        // The largest and the finest accepted.
        assert!(p.seed_position(&x, MAX_SEED_QTY).unwrap().is_some());
        assert!(p.seed_position(&x, Decimal::new(1, 18)).unwrap().is_some());
        assert!(p.seed_position(&x, Decimal::ZERO).unwrap().is_some());
        assert!(!p.is_unpriced(&x));
        assert_eq!(p.equity(), dec!(1000));

        // From balances: all or nothing.
        let before = p.snapshot();
        let balances =
            BTreeMap::from([("XRP".to_owned(), dec!(10)), ("DOGE".to_owned(), dec!(-3))]);
        assert!(matches!(
            p.seed_holdings(&balances).unwrap_err(),
            Error::InvalidHolding { .. }
        ));
        assert_eq!(p.snapshot(), before);
    }

    #[test]
    fn seeding_from_balances_keeps_a_matching_position_and_replaces_a_different_one() {
        let (mut p, clock) = portfolio(dec!(1000));
        let (x, d) = (xrp(), doge());
        p.apply_fill(&fill("b1", &x, Side::Buy, dec!(100), dec!(0.5), dec!(0)))
            .unwrap();
        p.mark_price(&x, dec!(0.6), clock.now()).unwrap();
        assert_eq!(p.equity(), dec!(1010));

        // The balance agrees: the position and its entry are kept; DOGE is not held.
        let same = BTreeMap::from([("XRP".to_owned(), dec!(100)), ("USD".to_owned(), dec!(1))]);
        assert_eq!(p.seed_holdings(&same).unwrap(), []);
        assert_eq!(p.position(&x).unwrap().avg_entry, dec!(0.5));
        assert_eq!(p.position_qty(&d), Some(Decimal::ZERO));

        // The balance differs: the balance wins, its entry is the next price.
        let peak = p.peak_equity();
        let differs = BTreeMap::from([("XRP".to_owned(), dec!(80)), ("DOGE".to_owned(), dec!(5))]);
        let reports = p.seed_holdings(&differs).unwrap();
        assert_eq!(
            reports,
            [
                SeedReport {
                    pair: d.clone(),
                    qty_before: Decimal::ZERO,
                    qty_after: dec!(5),
                    replaced_avg_entry: None,
                },
                SeedReport {
                    pair: x.clone(),
                    qty_before: dec!(100),
                    qty_after: dec!(80),
                    replaced_avg_entry: Some(dec!(0.5)),
                },
            ]
        );
        assert!(p.is_unpriced(&x) && p.is_unpriced(&d));
        assert_eq!(p.mark(&x), None, "an old mark does not price it");
        // The old position left at its value: no drawdown, no P&L.
        assert_eq!(p.equity(), dec!(950));
        assert_eq!(p.peak_equity(), peak - dec!(60));
        assert_eq!(p.total_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.exposure(), Decimal::ZERO);
        identity_holds(&p);
        p.mark_price(&x, dec!(0.7), clock.now()).unwrap();
        assert_eq!(p.position(&x).unwrap().avg_entry, dec!(0.7));
        assert_eq!(p.equity(), dec!(1006));
        assert_eq!(p.exposure(), dec!(56));
        assert!(p.is_unpriced(&d));
        identity_holds(&p);
    }

    #[test]
    fn an_unpriced_holding_survives_a_snapshot_and_a_tampered_one_is_refused() {
        let (mut p, clock) = portfolio(dec!(1000));
        let x = xrp();
        p.seed_position(&x, dec!(100)).unwrap();
        let json = p.snapshot_json().unwrap();
        assert!(json.contains("\"unpriced\":true"), "{json}");
        let mut q = Portfolio::restore_json(&json, std::sync::Arc::new(clock.clone())).unwrap();
        assert!(q.is_unpriced(&x));
        assert_eq!(q.snapshot(), p.snapshot());
        q.mark_price(&x, dec!(2), clock.now()).unwrap();
        assert_eq!(q.initial_equity(), dec!(1200));
        // A priced portfolio's snapshot does not mention the flag (older snapshots read back).
        assert!(!q.snapshot_json().unwrap().contains("unpriced"));

        let mut s = p.snapshot();
        s.positions.get_mut(&x).unwrap().cost = dec!(5);
        let err = Portfolio::restore(s, std::sync::Arc::new(clock.clone())).unwrap_err();
        assert!(err.to_string().contains("unpriced"), "{err}");
    }

    #[test]
    fn replacing_the_cash_moves_the_baselines_not_the_pnl() {
        let (mut p, clock) = portfolio(dec!(1000));
        let x = xrp();
        p.apply_fill(&fill("b1", &x, Side::Buy, dec!(100), dec!(0.5), dec!(0.1)))
            .unwrap();
        p.mark_price(&x, dec!(0.6), clock.now()).unwrap();
        assert_eq!((p.cash(), p.equity()), (dec!(949.9), dec!(1009.9)));
        assert_eq!(p.peak_equity(), dec!(1009.9));
        let max_dd = p.max_drawdown_pct();
        assert!(max_dd > Decimal::ZERO, "the fee dipped below the start");

        // 449.9 were withdrawn while the daemon was down: the balance is the cash.
        let report = p.seed_cash(dec!(500)).unwrap().unwrap();
        assert_eq!(
            report,
            CashReport {
                currency: "USD".into(),
                cash_before: dec!(949.9),
                cash_after: dec!(500),
            }
        );
        assert_eq!(p.cash(), dec!(500));
        assert_eq!(p.balances()["USD"], dec!(500));
        assert_eq!(p.equity(), dec!(560));
        assert_eq!(p.initial_equity(), dec!(550.1));
        assert_eq!(p.equity() - p.initial_equity(), dec!(9.9), "P&L as before");
        assert_eq!(
            (p.realised_pnl(), p.unrealised_pnl(), p.fees()),
            (Decimal::ZERO, dec!(10), dec!(0.1))
        );
        identity_holds(&p);
        // Neither a drawdown nor a new peak: the baselines moved with the cash.
        assert_eq!(p.peak_equity(), dec!(560));
        assert_eq!(p.total_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.daily_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.max_drawdown_pct(), max_dd);
        let today = p.equity_curve().last().copied().unwrap();
        assert_eq!(
            (today.open, today.high, today.close),
            (dec!(550.1), dec!(560), dec!(560))
        );
        // The position and its entry are untouched.
        let pos = p.position(&x).unwrap();
        assert_eq!((pos.qty, pos.avg_entry), (dec!(100), dec!(0.5)));
        assert_eq!(p.exposure(), dec!(60));

        // A fall from the peak stays the same fall in the quote currency.
        p.mark_price(&x, dec!(0.55), clock.now()).unwrap();
        assert_eq!(p.peak_equity() - p.equity(), dec!(5));
        p.seed_cash(dec!(250)).unwrap().unwrap();
        assert_eq!(p.peak_equity() - p.equity(), dec!(5));
        assert_eq!(p.equity() - p.initial_equity(), dec!(4.9));
        identity_holds(&p);

        // A deposit likewise: no phantom profit, and no new peak.
        p.seed_cash(dec!(10_000)).unwrap().unwrap();
        assert_eq!(p.equity(), dec!(10_055));
        assert_eq!(p.peak_equity(), dec!(10_060));
        assert_eq!(p.equity() - p.initial_equity(), dec!(4.9));
        identity_holds(&p);
        assert_eq!(p.statistics().total_pnl, Decimal::ZERO);

        // Survives a snapshot.
        let q = Portfolio::restore_json(
            &p.snapshot_json().unwrap(),
            std::sync::Arc::new(clock.clone()),
        )
        .unwrap();
        assert_eq!(q.snapshot(), p.snapshot());
        assert_eq!(q.cash(), dec!(10_000));
    }

    #[test]
    fn a_withdrawal_is_not_a_drawdown_even_across_midnight() {
        let (mut p, clock) = portfolio(dec!(1000));
        // The daemon was down over midnight; 90% of the cash left the account.
        clock.advance(chrono::Duration::hours(20));
        p.seed_cash(dec!(100)).unwrap().unwrap();
        assert_eq!(p.equity(), dec!(100));
        assert_eq!(p.peak_equity(), dec!(100));
        assert_eq!(p.total_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.daily_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.max_drawdown_pct(), Decimal::ZERO);
        let days: Vec<_> = p.equity_curve().copied().collect();
        assert_eq!(days.len(), 2, "{days:?}");
        assert_eq!(days[0].close, dec!(1000));
        assert_eq!(
            (days[1].date, days[1].open, days[1].low, days[1].close),
            (clock.now().date_naive(), dec!(100), dec!(100), dec!(100))
        );
        identity_holds(&p);
        // Everything withdrawn from a flat account: zero, and still no drawdown.
        p.seed_cash(Decimal::ZERO).unwrap().unwrap();
        assert_eq!(
            (p.equity(), p.initial_equity()),
            (Decimal::ZERO, Decimal::ZERO)
        );
        assert_eq!(p.total_drawdown_pct(), Decimal::ZERO);
        assert_eq!(p.daily_drawdown_pct(), Decimal::ZERO);
    }

    #[test]
    fn cash_equal_to_the_balance_is_kept() {
        let (mut p, clock) = portfolio(dec!(1000));
        let x = xrp();
        p.apply_fill(&fill("b1", &x, Side::Buy, dec!(100), dec!(0.5), dec!(0)))
            .unwrap();
        p.mark_price(&x, dec!(0.4), clock.now()).unwrap();
        let before = p.snapshot();
        assert_eq!(p.seed_cash(dec!(950.000)).unwrap(), None);
        assert_eq!(p.snapshot(), before);
        assert_eq!(p.total_drawdown_pct(), dec!(1));
    }

    #[test]
    fn an_impossible_balance_is_refused_and_changes_nothing() {
        let (mut p, _clock) = portfolio(dec!(1000));
        let before = p.snapshot();
        for (balance, reason) in [
            (dec!(-0.01), "must not be negative"),
            (MAX_SEED_QTY + Decimal::ONE, "above the largest balance"),
            (Decimal::new(1, 19), "more than 18 decimal places"),
        ] {
            let err = p.seed_cash(balance).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidBalance { currency, balance: b, .. }
                    if currency == "USD" && *b == balance),
                "{err}"
            );
            assert!(err.to_string().contains(reason), "{err}");
            assert!(err.to_string().contains("USD"), "{err}");
            assert_eq!(p.snapshot(), before);
        }
        // The largest and the finest accepted (each from the start: together they need
        // more digits than Decimal has, module docs "Accounting").
        for balance in [MAX_SEED_QTY, Decimal::new(1, 18), Decimal::ZERO] {
            let (mut p, _clock) = portfolio(dec!(1000));
            assert!(p.seed_cash(balance).unwrap().is_some());
            assert_eq!((p.cash(), p.equity()), (balance, balance));
            identity_holds(&p);
        }
    }

    proptest::proptest! {
        /// Seeding at any point of a random session keeps every accounting identity:
        /// P&L conservation, drawdowns within [0, 100], exposure = Σ |qty| × price of the
        /// priced positions, and an identical restore.
        #[test]
        fn prop_seeding_keeps_the_books_consistent(
            ops in proptest::collection::vec(
                (0u8..4, proptest::bool::ANY, proptest::bool::ANY, 0i64..100_000, 1i64..50_000),
                1..60,
            )
        ) {
            let (mut p, clock) = portfolio(Decimal::new(1_000_000, 0));
            for (i, (kind, on_doge, buy, qty, price)) in ops.into_iter().enumerate() {
                let pair = if on_doge { doge() } else { xrp() };
                let (qty, price) = (Decimal::new(qty, 2), Decimal::new(price, 4));
                match kind {
                    0 => {
                        p.seed_position(&pair, qty).unwrap();
                    }
                    3 => {
                        // A deposit or a withdrawal while the daemon was down: neither P&L
                        // nor the fall from the peak move.
                        let (pnl, fall, before) = (
                            p.equity() - p.initial_equity(),
                            p.peak_equity() - p.equity(),
                            p.cash(),
                        );
                        let balance = qty * Decimal::from(20);
                        let report = p.seed_cash(balance).unwrap();
                        proptest::prop_assert_eq!(report.is_some(), balance != before);
                        proptest::prop_assert_eq!(p.cash(), balance);
                        proptest::prop_assert_eq!(p.equity() - p.initial_equity(), pnl);
                        proptest::prop_assert_eq!(p.peak_equity() - p.equity(), fall);
                    }
                    1 => {
                        if !qty.is_zero() {
                            let side = if buy { Side::Buy } else { Side::Sell };
                            let f = fill(&i.to_string(), &pair, side, qty, price, Decimal::ONE);
                            p.apply_fill(&f).unwrap();
                        }
                    }
                    _ => {
                        p.mark_price(&pair, price, clock.now()).unwrap();
                    }
                }
                proptest::prop_assert_eq!(
                    p.equity() - p.initial_equity(),
                    p.realised_pnl() + p.unrealised_pnl() - p.fees()
                );
                for dd in [p.total_drawdown_pct(), p.daily_drawdown_pct(), p.max_drawdown_pct()] {
                    proptest::prop_assert!(dd >= Decimal::ZERO && dd <= Decimal::ONE_HUNDRED);
                }
                let priced: Decimal = p
                    .s
                    .positions
                    .values()
                    .filter(|st| !st.unpriced)
                    .map(|st| st.mark.map_or(st.cost.abs(), |m| st.qty.abs() * m.price))
                    .sum();
                proptest::prop_assert_eq!(p.exposure(), priced);
                for pair in p.unpriced() {
                    proptest::prop_assert_eq!(p.mark(pair), None);
                }
            }
            let q = Portfolio::restore_json(
                &p.snapshot_json().unwrap(),
                std::sync::Arc::new(clock.clone()),
            )
            .unwrap();
            proptest::prop_assert_eq!(q.snapshot(), p.snapshot());
            proptest::prop_assert_eq!(q.equity(), p.equity());
            proptest::prop_assert_eq!(q.exposure(), p.exposure());
        }
    }
}

/// Tests that kill mutants `cargo xtask mutants` found alive in the drawdown code.
#[cfg(test)]
mod mutant_kills {
    use super::*;
    use gf_core::Clock;
    use rust_decimal_macros::dec;

    #[test]
    fn percent_of_a_base_is_capped_to_0_100_and_a_lost_base_is_all_or_nothing() {
        assert_eq!(pct_of(dec!(25), dec!(100)), dec!(25));
        assert_eq!(pct_of(dec!(150), dec!(100)), dec!(100));
        assert_eq!(pct_of(dec!(-5), dec!(100)), Decimal::ZERO);
        // No positive base: any fall is all of it, no fall is none.
        assert_eq!(pct_of(dec!(5), Decimal::ZERO), dec!(100));
        assert_eq!(pct_of(dec!(5), dec!(-1)), dec!(100));
        assert_eq!(pct_of(Decimal::ZERO, Decimal::ZERO), Decimal::ZERO);
        assert_eq!(pct_of(dec!(-5), dec!(-1)), Decimal::ZERO);
    }

    #[test]
    fn the_equity_curve_keeps_exactly_its_last_days() {
        let (mut p, clock) = test_support::portfolio(dec!(1000));
        let x = test_support::xrp();
        for _ in 0..EQUITY_CURVE_DAYS + 5 {
            clock.advance(chrono::Duration::days(1));
            p.mark_price(&x, dec!(0.5), clock.now()).unwrap();
        }
        let days: Vec<NaiveDate> = p.equity_curve().map(|d| d.date).collect();
        assert_eq!(days.len(), EQUITY_CURVE_DAYS);
        assert_eq!(days.last().copied(), Some(clock.now().date_naive()));
    }
}
