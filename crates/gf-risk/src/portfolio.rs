//! The portfolio: positions, cash, marks, equity, drawdowns, consecutive losses,
//! volatility and closed round trips, with a serialisable snapshot.
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
//! closed), so the identity holds to the last decimal whatever the rounding of the
//! pro-rata share; a fill that crosses zero closes the position and opens the rest on the
//! other side at the fill price. The average entry shown is `cost basis / qty`.
//!
//! # Drawdowns
//!
//! Peak equity is the highest equity seen (the initial equity to start with); total
//! drawdown is `(peak - equity) / peak × 100`. Daily drawdown is measured from the equity
//! at the start of the current UTC day, which is captured at the first change after
//! midnight by the [`Clock`]; both are clamped to `[0, 100]`.

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
/// Closed round trips kept in the snapshot for display (statistics cover all of them).
pub const RECENT_TRADES: usize = 200;
/// Trade ids remembered to refuse a fill delivered twice.
pub const RECENT_FILL_IDS: usize = 4096;

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

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A fill changed a position.
    Fill(FillReport),
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
            *out.entry(pair.base().to_owned()).or_insert(Decimal::ZERO) += st.qty;
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
        self.s.positions.values().map(|p| p.realised).sum()
    }

    /// Unrealised P&L of all pairs at their marks.
    #[must_use]
    pub fn unrealised_pnl(&self) -> Decimal {
        self.positions_value - self.s.positions.values().map(|p| p.cost).sum::<Decimal>()
    }

    /// Fees paid on all pairs.
    #[must_use]
    pub fn fees(&self) -> Decimal {
        self.s.positions.values().map(|p| p.fees).sum()
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

    /// The latest closed round trips, oldest first.
    pub fn recent_trades(&self) -> impl Iterator<Item = &ClosedTrade> {
        self.s.recent_trades.iter()
    }

    /// Trading statistics over every closed round trip.
    #[must_use]
    pub fn statistics(&self) -> TradingStats {
        self.s.stats.stats()
    }

    fn roll_day(&mut self) {
        let today = self.clock.now().date_naive();
        if today != self.s.day {
            self.s.day = today;
            self.s.day_start_equity = self.equity;
        }
    }

    /// Moves equity after a change and updates the peak and maximum drawdown.
    fn set_equity(&mut self, equity: Decimal) {
        self.equity = equity;
        if equity > self.s.peak_equity {
            self.s.peak_equity = equity;
        } else {
            let dd = pct_of(self.s.peak_equity - equity, self.s.peak_equity);
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
            Payload::Fill(fill) => return self.apply_fill(fill).map(Applied::Fill),
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
        let (value, exposure) = checked(st.valuation(Some(price)), "position value", pair)?;
        let positions_value = checked(
            (self.positions_value - st.value).checked_add(value),
            "position value",
            pair,
        )?;
        let total_exposure = checked(
            (self.exposure - st.exposure).checked_add(exposure),
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
                        .and_then(|v| v.checked_div(fill.qty)),
                    "fee split",
                )?
            };
            opening_fee = fill.fee - close_fee;
            let released = if close_qty == held {
                cost
            } else {
                c(
                    cost.checked_mul(close_qty)
                        .and_then(|v| v.checked_div(held)),
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
            t.exit_qty += close_qty;
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
            let t = trip.get_or_insert_with(|| OpenTrip {
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
        };
        let (value, exposure) = checked(
            next.valuation(st.mark.map(|m| m.price)),
            "position value",
            pair,
        )?;
        let positions_value = c(
            (self.positions_value - st.value).checked_add(value),
            "position value",
        )?;
        let total_exposure = c(
            (self.exposure - st.exposure).checked_add(exposure),
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
            (st.cost / st.qty).abs()
        },
        mark: st.mark.map(|m| m.price),
        realised_pnl: st.realised,
        unrealised_pnl: st.value - st.cost,
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
        pct_of(self.s.peak_equity - self.equity, self.s.peak_equity)
    }

    fn daily_drawdown_pct(&self) -> Decimal {
        if self.clock.now().date_naive() != self.s.day {
            // A new UTC day began and nothing moved since: it starts at today's equity.
            return Decimal::ZERO;
        }
        pct_of(
            self.s.day_start_equity - self.equity,
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
