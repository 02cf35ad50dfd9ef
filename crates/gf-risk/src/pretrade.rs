//! Pre-trade checks: position sizing, price collar, order and position notional, open
//! orders, an order-rate throttle and market-price freshness. Every check ends in a typed
//! [`Verdict`]: `Approved(order)` or `Refused { order, reason }`.
//!
//! Checks run cheapest first and stop at the first refusal:
//!
//! 1. the order is self-consistent ([`OrderRequest::validate`]) and for a known pair;
//! 2. its client order id is not already open;
//! 3. a reduce-only or halt-closure order really reduces the position;
//! 4. no holding seeded from the account's balance is still unpriced (its value is
//!    unknown until its first price: [`crate::portfolio`], "Seeded holdings"), and the
//!    pair has a market price, no older than `max_price_age_secs` — never guessed;
//! 5. a limit price is within `price_collar_pct` of that market price;
//! 6. `qty × price` (limit price, or the market price for market orders) is at most
//!    `max_order_notional`;
//! 7. the resulting position's notional is at most the pair's `max_position_notional`
//!    (an order that shrinks an oversized position passes);
//! 8. fewer than `max_open_orders` orders are open;
//! 9. fewer than `max_orders_per_window` orders were approved in the last
//!    `order_window_secs`.
//!
//! Halt-closure orders only need steps 1–3: flattening is never throttled or priced out.
//! An approved order counts against the throttle and the open orders until an
//! `OrderUpdate` with a terminal status (or [`PreTradeChecker::release`]) frees it. A
//! refused order changes nothing.

use std::collections::{HashSet, VecDeque};
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use gf_core::config::RiskConfig;
use gf_core::{ClientOrderId, OrderRequest, OrderStatus, OrderType, Pair, Price, Qty, Side};

use crate::error::Error;
use crate::portfolio::Portfolio;
use crate::view::PortfolioView;

/// Why an order or a sizing request was refused. Serialises with a stable `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// The order is not self-consistent.
    InvalidOrder {
        /// What is wrong (names the field).
        reason: String,
    },
    /// The pair is not traded by this portfolio.
    UnknownPair {
        /// The pair.
        pair: Pair,
    },
    /// An order with this client order id is already open.
    DuplicateOrderId {
        /// The id.
        client_order_id: ClientOrderId,
    },
    /// A reduce-only or halt-closure order that would open or grow a position.
    WouldNotReduce {
        /// Signed position held.
        position: Decimal,
        /// The order's side.
        side: Side,
        /// The order's quantity.
        qty: Decimal,
    },
    /// A holding seeded from the account's balance has seen no price yet: its value, hence
    /// the exposure, is unknown (any pair's order waits; a halt closure does not).
    UnpricedHolding {
        /// The pair whose holding is unpriced.
        pair: Pair,
    },
    /// No market price has been seen for the pair.
    NoMarketPrice {
        /// The pair.
        pair: Pair,
    },
    /// The market price is older than allowed.
    StalePrice {
        /// The pair.
        pair: Pair,
        /// Age of the price, milliseconds.
        age_ms: i64,
        /// The limit, milliseconds.
        max_age_ms: i64,
    },
    /// The limit price is too far from the market.
    PriceCollar {
        /// The order's limit price.
        limit: Decimal,
        /// The market price.
        market: Decimal,
        /// `|limit - market| / market × 100`.
        deviation_pct: Decimal,
        /// The allowed deviation, percent.
        collar_pct: Decimal,
    },
    /// The order's notional is above the limit.
    OrderNotional {
        /// `qty × price`.
        notional: Decimal,
        /// The limit.
        max: Decimal,
    },
    /// The resulting position's notional would be above the limit.
    PositionNotional {
        /// The resulting position's notional.
        notional: Decimal,
        /// The limit.
        max: Decimal,
    },
    /// Too many orders are open.
    TooManyOpenOrders {
        /// Orders open.
        open: usize,
        /// The limit.
        max: u32,
    },
    /// Too many orders were sent recently.
    Throttled {
        /// Orders approved within the window.
        recent: usize,
        /// The limit.
        max: u32,
        /// The window, seconds.
        window_secs: u64,
    },
    /// A protective stop on the wrong side of (or at) the entry.
    StopOnWrongSide {
        /// Direction of the entry.
        side: Side,
        /// Entry price.
        entry: Decimal,
        /// Stop price.
        stop: Decimal,
    },
    /// A sizing input that is zero or negative.
    InvalidSizingInput {
        /// `entry`, `stop` or `equity`.
        field: String,
        /// The value.
        value: Decimal,
    },
    /// The size, after the caps, rounds down to less than one lot.
    BelowLotSize {
        /// The size before rounding.
        qty: Decimal,
        /// The lot size.
        lot: Decimal,
    },
    /// The figures overflow Decimal's range.
    Overflow {
        /// What was being computed.
        what: String,
    },
}

impl Refusal {
    /// The stable snake_case code (the JSON `code`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidOrder { .. } => "invalid_order",
            Refusal::UnknownPair { .. } => "unknown_pair",
            Refusal::DuplicateOrderId { .. } => "duplicate_order_id",
            Refusal::WouldNotReduce { .. } => "would_not_reduce",
            Refusal::UnpricedHolding { .. } => "unpriced_holding",
            Refusal::NoMarketPrice { .. } => "no_market_price",
            Refusal::StalePrice { .. } => "stale_price",
            Refusal::PriceCollar { .. } => "price_collar",
            Refusal::OrderNotional { .. } => "order_notional",
            Refusal::PositionNotional { .. } => "position_notional",
            Refusal::TooManyOpenOrders { .. } => "too_many_open_orders",
            Refusal::Throttled { .. } => "throttled",
            Refusal::StopOnWrongSide { .. } => "stop_on_wrong_side",
            Refusal::InvalidSizingInput { .. } => "invalid_sizing_input",
            Refusal::BelowLotSize { .. } => "below_lot_size",
            Refusal::Overflow { .. } => "overflow",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InvalidOrder { reason } => write!(f, "{reason}"),
            Refusal::UnknownPair { pair } => write!(f, "unknown pair {pair}"),
            Refusal::DuplicateOrderId { client_order_id } => {
                write!(f, "client order id {client_order_id} is already open")
            }
            Refusal::WouldNotReduce {
                position,
                side,
                qty,
            } => write!(
                f,
                "{side} {qty} would not reduce the position of {position}"
            ),
            Refusal::UnpricedHolding { pair } => write!(
                f,
                "the holding of {pair} seeded from the balance has no price yet"
            ),
            Refusal::NoMarketPrice { pair } => write!(f, "no market price for {pair}"),
            Refusal::StalePrice {
                pair,
                age_ms,
                max_age_ms,
            } => write!(
                f,
                "market price for {pair} is {age_ms} ms old (limit {max_age_ms} ms)"
            ),
            Refusal::PriceCollar {
                limit,
                market,
                deviation_pct,
                collar_pct,
            } => write!(
                f,
                "limit price {limit} is {deviation_pct}% from market {market} (collar {collar_pct}%)"
            ),
            Refusal::OrderNotional { notional, max } => {
                write!(f, "order notional {notional} is above the limit {max}")
            }
            Refusal::PositionNotional { notional, max } => {
                write!(
                    f,
                    "position notional {notional} would be above the limit {max}"
                )
            }
            Refusal::TooManyOpenOrders { open, max } => {
                write!(f, "{open} orders open (limit {max})")
            }
            Refusal::Throttled {
                recent,
                max,
                window_secs,
            } => write!(
                f,
                "{recent} orders in the last {window_secs} s (limit {max})"
            ),
            Refusal::StopOnWrongSide { side, entry, stop } => write!(
                f,
                "stop {stop} is on the wrong side of entry {entry} for a {side}"
            ),
            Refusal::InvalidSizingInput { field, value } => {
                write!(f, "sizing input `{field}` = {value}: must be positive")
            }
            Refusal::BelowLotSize { qty, lot } => {
                write!(f, "size {qty} is below one lot of {lot}")
            }
            Refusal::Overflow { what } => write!(f, "arithmetic overflow computing {what}"),
        }
    }
}

/// The outcome of a pre-trade check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Passed every check; send it.
    Approved(OrderRequest),
    /// Refused; do not send it.
    Refused {
        /// The order, unchanged.
        order: OrderRequest,
        /// Why.
        reason: Refusal,
    },
}

impl Verdict {
    /// `true` when approved.
    #[must_use]
    pub fn is_approved(&self) -> bool {
        matches!(self, Verdict::Approved(_))
    }

    /// The order, approved or not.
    #[must_use]
    pub fn order(&self) -> &OrderRequest {
        match self {
            Verdict::Approved(order) | Verdict::Refused { order, .. } => order,
        }
    }

    /// The refusal, if refused.
    #[must_use]
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Verdict::Approved(_) => None,
            Verdict::Refused { reason, .. } => Some(reason),
        }
    }
}

/// The pre-trade seam: strategies and the daemon ask it before an order goes to gf-exec.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait PreTradeCheck: Send + Sync {
    /// Runs every check. An approved order counts against the throttle and open orders.
    fn check(&self, order: OrderRequest) -> Verdict;

    /// The quantity to trade for an entry at `entry` with a protective `stop`: equity ×
    /// risk-per-trade % / |entry - stop|, capped by the order and position notional
    /// limits, rounded down to the pair's lot size.
    ///
    /// # Errors
    /// A [`Refusal`] saying why no size can be given.
    fn size(&self, pair: &Pair, side: Side, entry: Price, stop: Price) -> Result<Qty, Refusal>;
}

/// Validated limits from `[risk]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskLimits {
    cfg: RiskConfig,
    order_window: Duration,
    max_price_age: Duration,
}

impl RiskLimits {
    /// Validates `[risk]`.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] naming the first key out of range: a negative or zero
    /// notional or lot size, a percent outside `(0, 100]`, a zero count or window.
    pub fn from_config(cfg: &RiskConfig) -> Result<Self, Error> {
        let bad = |key: String, value: String, reason: &'static str| {
            Err::<(), Error>(Error::InvalidLimit { key, value, reason })
        };
        let pct = |key: &str, v: Decimal| {
            if v <= Decimal::ZERO || v > Decimal::ONE_HUNDRED {
                bad(key.into(), v.to_string(), "must be a percent in (0, 100]")
            } else {
                Ok(())
            }
        };
        let positive = |key: &str, v: Decimal| {
            if v <= Decimal::ZERO {
                bad(key.into(), v.to_string(), "must be positive")
            } else {
                Ok(())
            }
        };
        let nonzero = |key: &str, v: u64| {
            if v == 0 {
                bad(key.into(), v.to_string(), "must be at least 1")
            } else {
                Ok(())
            }
        };
        pct("risk.risk_per_trade_pct", cfg.risk_per_trade_pct)?;
        pct("risk.price_collar_pct", cfg.price_collar_pct)?;
        positive("risk.max_order_notional", cfg.max_order_notional)?;
        positive("risk.max_position_notional", cfg.max_position_notional)?;
        positive("risk.lot_size", cfg.lot_size)?;
        nonzero("risk.max_open_orders", cfg.max_open_orders.into())?;
        nonzero(
            "risk.max_orders_per_window",
            cfg.max_orders_per_window.into(),
        )?;
        nonzero("risk.order_window_secs", cfg.order_window_secs)?;
        nonzero("risk.max_price_age_secs", cfg.max_price_age_secs)?;
        for (pair, over) in &cfg.pairs {
            if let Some(v) = over.max_position_notional {
                positive(&format!("risk.pairs.\"{pair}\".max_position_notional"), v)?;
            }
            if let Some(v) = over.lot_size {
                positive(&format!("risk.pairs.\"{pair}\".lot_size"), v)?;
            }
        }
        let secs = |key: &str, v: u64| match i64::try_from(v).ok().and_then(Duration::try_seconds) {
            Some(d) => Ok(d),
            None => Err(Error::InvalidLimit {
                key: key.into(),
                value: v.to_string(),
                reason: "is too large",
            }),
        };
        Ok(Self {
            order_window: secs("risk.order_window_secs", cfg.order_window_secs)?,
            max_price_age: secs("risk.max_price_age_secs", cfg.max_price_age_secs)?,
            cfg: cfg.clone(),
        })
    }

    /// The validated configuration.
    #[must_use]
    pub fn config(&self) -> &RiskConfig {
        &self.cfg
    }

    /// The pair's lot size (its override or the default).
    #[must_use]
    pub fn lot_size(&self, pair: &Pair) -> Decimal {
        self.cfg
            .pairs
            .get(pair)
            .and_then(|p| p.lot_size)
            .unwrap_or(self.cfg.lot_size)
    }

    /// The pair's maximum position notional (its override or the default).
    #[must_use]
    pub fn max_position_notional(&self, pair: &Pair) -> Decimal {
        self.cfg
            .pairs
            .get(pair)
            .and_then(|p| p.max_position_notional)
            .unwrap_or(self.cfg.max_position_notional)
    }

    /// Position sizing (see [`PreTradeCheck::size`]) for an account with `equity` holding
    /// the signed `current` quantity of `pair`.
    ///
    /// The size never makes `|current ± qty| × entry` exceed the pair's maximum position
    /// notional, nor `qty × entry` exceed the maximum order notional.
    ///
    /// # Errors
    /// [`Refusal::InvalidSizingInput`], [`Refusal::StopOnWrongSide`],
    /// [`Refusal::BelowLotSize`], [`Refusal::Overflow`].
    pub fn size(
        &self,
        pair: &Pair,
        side: Side,
        entry: Price,
        stop: Price,
        equity: Decimal,
        current: Qty,
    ) -> Result<Qty, Refusal> {
        let input = |field: &str, value: Decimal| Refusal::InvalidSizingInput {
            field: field.into(),
            value,
        };
        if entry <= Decimal::ZERO {
            return Err(input("entry", entry));
        }
        if stop <= Decimal::ZERO {
            return Err(input("stop", stop));
        }
        if equity <= Decimal::ZERO {
            return Err(input("equity", equity));
        }
        let wrong_side = match side {
            Side::Buy => stop >= entry,
            Side::Sell => stop <= entry,
        };
        if wrong_side {
            return Err(Refusal::StopOnWrongSide { side, entry, stop });
        }
        let overflow = |what: &str| Refusal::Overflow { what: what.into() };
        let risk = equity
            .checked_mul(self.cfg.risk_per_trade_pct)
            .ok_or_else(|| overflow("risk amount"))?
            / Decimal::ONE_HUNDRED;
        let raw = risk
            .checked_div((entry - stop).abs())
            .ok_or_else(|| overflow("size"))?;
        let order_cap = self
            .cfg
            .max_order_notional
            .checked_div(entry)
            .ok_or_else(|| overflow("order cap"))?;
        let position_cap = self
            .max_position_notional(pair)
            .checked_div(entry)
            .ok_or_else(|| overflow("position cap"))?;
        let headroom = position_cap
            .checked_sub(side.sign() * current)
            .ok_or_else(|| overflow("position headroom"))?;
        let qty = raw.min(order_cap).min(headroom);
        let lot = self.lot_size(pair);
        let sized = if qty > Decimal::ZERO {
            qty.checked_div(lot)
                .and_then(|lots| lots.floor().checked_mul(lot))
                .ok_or_else(|| overflow("lots"))?
        } else {
            Decimal::ZERO
        };
        if sized <= Decimal::ZERO {
            return Err(Refusal::BelowLotSize { qty, lot });
        }
        Ok(sized)
    }
}

/// The stateful checker: limits plus the throttle window and the open orders.
#[derive(Debug, Clone, PartialEq)]
pub struct PreTradeChecker {
    limits: RiskLimits,
    sent: VecDeque<DateTime<Utc>>,
    open: HashSet<ClientOrderId>,
}

impl PreTradeChecker {
    /// A checker with no order history.
    #[must_use]
    pub fn new(limits: RiskLimits) -> Self {
        Self {
            limits,
            sent: VecDeque::new(),
            open: HashSet::new(),
        }
    }

    /// The limits.
    #[must_use]
    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    /// Orders approved and not yet finished.
    #[must_use]
    pub fn open_orders(&self) -> usize {
        self.open.len()
    }

    /// Orders approved within the throttle window ending at `now`.
    #[must_use]
    pub fn orders_in_window(&self, now: DateTime<Utc>) -> usize {
        let cutoff = self.window_start(now);
        self.sent.iter().filter(|t| **t > cutoff).count()
    }

    fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.limits.order_window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Frees an open order (e.g. gf-exec failed to send it). `true` if it was open.
    pub fn release(&mut self, client_order_id: &ClientOrderId) -> bool {
        self.open.remove(client_order_id)
    }

    /// Follows an order's lifecycle: a terminal status frees it.
    pub fn on_order_update(&mut self, client_order_id: &ClientOrderId, status: OrderStatus) {
        if status.is_terminal() {
            self.open.remove(client_order_id);
        }
    }

    /// Sizing for `pair` against `portfolio`'s equity and position.
    ///
    /// # Errors
    /// [`Refusal::UnknownPair`], otherwise as [`RiskLimits::size`].
    pub fn size(
        &self,
        portfolio: &Portfolio,
        pair: &Pair,
        side: Side,
        entry: Price,
        stop: Price,
    ) -> Result<Qty, Refusal> {
        let current = portfolio
            .position_qty(pair)
            .ok_or_else(|| Refusal::UnknownPair { pair: pair.clone() })?;
        self.limits
            .size(pair, side, entry, stop, portfolio.equity(), current)
    }

    /// Runs every check at time `now` against `portfolio`; see the module docs for the
    /// order of the checks.
    pub fn check(
        &mut self,
        order: OrderRequest,
        portfolio: &Portfolio,
        now: DateTime<Utc>,
    ) -> Verdict {
        match self.evaluate(&order, portfolio, now) {
            Err(reason) => Verdict::Refused { order, reason },
            Ok(counted) => {
                if counted {
                    let cutoff = self.window_start(now);
                    self.sent.retain(|t| *t > cutoff);
                    self.sent.push_back(now);
                    self.open.insert(order.client_order_id.clone());
                }
                Verdict::Approved(order)
            }
        }
    }

    /// `Ok(true)` to approve and count, `Ok(false)` to approve a closure without counting.
    fn evaluate(
        &self,
        order: &OrderRequest,
        portfolio: &Portfolio,
        now: DateTime<Utc>,
    ) -> Result<bool, Refusal> {
        order.validate().map_err(|e| Refusal::InvalidOrder {
            reason: e.to_string(),
        })?;
        let pair = &order.pair;
        let position = portfolio
            .position_qty(pair)
            .ok_or_else(|| Refusal::UnknownPair { pair: pair.clone() })?;
        if self.open.contains(&order.client_order_id) {
            return Err(Refusal::DuplicateOrderId {
                client_order_id: order.client_order_id.clone(),
            });
        }
        let signed = order.side.sign() * order.qty;
        if order.reduce_only || order.is_closure() {
            let reduces = !position.is_zero()
                && position.is_sign_positive() != signed.is_sign_positive()
                && order.qty <= position.abs();
            if !reduces {
                return Err(Refusal::WouldNotReduce {
                    position,
                    side: order.side,
                    qty: order.qty,
                });
            }
            if order.is_closure() {
                return Ok(false);
            }
        }
        if let Some(unpriced) = portfolio.unpriced().next() {
            return Err(Refusal::UnpricedHolding {
                pair: unpriced.clone(),
            });
        }
        let mark = portfolio
            .mark(pair)
            .ok_or_else(|| Refusal::NoMarketPrice { pair: pair.clone() })?;
        let age = now - mark.ts;
        if age > self.limits.max_price_age {
            return Err(Refusal::StalePrice {
                pair: pair.clone(),
                age_ms: age.num_milliseconds(),
                max_age_ms: self.limits.max_price_age.num_milliseconds(),
            });
        }
        let overflow = |what: &str| Refusal::Overflow { what: what.into() };
        let price = match (order.order_type, order.limit_price) {
            (OrderType::Limit, Some(limit)) => {
                let deviation = (limit - mark.price)
                    .abs()
                    .checked_div(mark.price)
                    .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED))
                    .ok_or_else(|| overflow("price deviation"))?
                    .normalize();
                if deviation > self.limits.cfg.price_collar_pct {
                    return Err(Refusal::PriceCollar {
                        limit,
                        market: mark.price,
                        deviation_pct: deviation,
                        collar_pct: self.limits.cfg.price_collar_pct,
                    });
                }
                limit
            }
            _ => mark.price,
        };
        let notional = order
            .qty
            .checked_mul(price)
            .ok_or_else(|| overflow("order notional"))?;
        if notional > self.limits.cfg.max_order_notional {
            return Err(Refusal::OrderNotional {
                notional,
                max: self.limits.cfg.max_order_notional,
            });
        }
        let after = position
            .checked_add(signed)
            .ok_or_else(|| overflow("position"))?;
        if after.abs() > position.abs() {
            let max = self.limits.max_position_notional(pair);
            let position_notional = after
                .abs()
                .checked_mul(price)
                .ok_or_else(|| overflow("position notional"))?;
            if position_notional > max {
                return Err(Refusal::PositionNotional {
                    notional: position_notional,
                    max,
                });
            }
        }
        if self.open.len() >= self.limits.cfg.max_open_orders as usize {
            return Err(Refusal::TooManyOpenOrders {
                open: self.open.len(),
                max: self.limits.cfg.max_open_orders,
            });
        }
        let recent = self.orders_in_window(now);
        if recent >= self.limits.cfg.max_orders_per_window as usize {
            return Err(Refusal::Throttled {
                recent,
                max: self.limits.cfg.max_orders_per_window,
                window_secs: self.limits.cfg.order_window_secs,
            });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portfolio::test_support::*;
    use chrono::Duration;
    use gf_core::config::PairRiskConfig;
    use gf_core::{Clock, ManualClock, OrderPurpose};
    use rust_decimal_macros::dec;

    fn order(id: &str, side: Side, qty: Decimal, limit: Option<Decimal>) -> OrderRequest {
        let id = ClientOrderId::new(id);
        match limit {
            Some(price) => OrderRequest::limit(id, xrp(), side, qty, price),
            None => OrderRequest::market(id, xrp(), side, qty),
        }
    }

    /// 100 000 USD, XRP marked at 0.5000 at t0, default limits.
    fn setup() -> (Portfolio, ManualClock, PreTradeChecker) {
        let (mut p, clock) = portfolio(dec!(100000));
        p.mark_price(&xrp(), dec!(0.5000), t0()).unwrap();
        let checker =
            PreTradeChecker::new(RiskLimits::from_config(&RiskConfig::default()).unwrap());
        (p, clock, checker)
    }

    #[test]
    fn worked_case_sizing_is_exactly_50000_units() {
        let (p, _clock, checker) = setup();
        assert_eq!(p.equity(), dec!(100000));
        assert_eq!(checker.limits().config().risk_per_trade_pct, dec!(0.5));
        let qty = checker
            .size(&p, &xrp(), Side::Buy, dec!(0.5000), dec!(0.4900))
            .unwrap();
        assert_eq!(qty, dec!(50000));
        // The same risk on the short side.
        let qty = checker
            .size(&p, &xrp(), Side::Sell, dec!(0.5000), dec!(0.5100))
            .unwrap();
        assert_eq!(qty, dec!(50000));
    }

    #[test]
    fn worked_case_collar_refuses_0_6000_against_0_5000() {
        let (p, clock, mut checker) = setup();
        let verdict = checker.check(
            order("c1", Side::Buy, dec!(100), Some(dec!(0.6000))),
            &p,
            clock.now(),
        );
        match verdict.refusal() {
            Some(Refusal::PriceCollar {
                limit,
                market,
                deviation_pct,
                collar_pct,
            }) => {
                assert_eq!(
                    (*limit, *market, *deviation_pct, *collar_pct),
                    (dec!(0.6), dec!(0.5), dec!(20), dec!(5))
                );
            }
            other => panic!("expected a collar refusal, got {other:?}"),
        }
        assert_eq!(
            verdict.refusal().unwrap().to_string(),
            "limit price 0.6000 is 20% from market 0.5000 (collar 5%)"
        );
        assert_eq!(checker.open_orders(), 0);
        // Exactly at the collar passes; just beyond it does not.
        let at = checker.check(
            order("c2", Side::Sell, dec!(100), Some(dec!(0.4750))),
            &p,
            clock.now(),
        );
        assert!(at.is_approved(), "{at:?}");
        let beyond = checker.check(
            order("c3", Side::Sell, dec!(100), Some(dec!(0.4749))),
            &p,
            clock.now(),
        );
        assert_eq!(beyond.refusal().unwrap().code(), "price_collar");
    }

    #[test]
    fn sizing_refusals_and_caps() {
        let (p, _clock, checker) = setup();
        let x = xrp();
        let size = |side, entry, stop| checker.size(&p, &x, side, entry, stop);
        assert_eq!(
            size(Side::Buy, dec!(0.5), dec!(0.51)),
            Err(Refusal::StopOnWrongSide {
                side: Side::Buy,
                entry: dec!(0.5),
                stop: dec!(0.51)
            })
        );
        assert_eq!(
            size(Side::Sell, dec!(0.5), dec!(0.49)).unwrap_err().code(),
            "stop_on_wrong_side"
        );
        assert_eq!(
            size(Side::Buy, dec!(0.5), dec!(0.5))
                .unwrap_err()
                .to_string(),
            "stop 0.5 is on the wrong side of entry 0.5 for a buy"
        );
        assert_eq!(
            size(Side::Buy, dec!(0), dec!(0.5)).unwrap_err().to_string(),
            "sizing input `entry` = 0: must be positive"
        );
        assert_eq!(
            size(Side::Buy, dec!(0.5), dec!(-1)).unwrap_err().code(),
            "invalid_sizing_input"
        );
        // A stop 0.1 % away: raw size 1 000 000 is capped at the order notional
        // (25 000 / 0.5 = 50 000).
        assert_eq!(size(Side::Buy, dec!(0.5), dec!(0.4995)), Ok(dec!(50000)));
        let eth = Pair::new("ETH/USD").unwrap();
        assert_eq!(
            checker.size(&p, &eth, Side::Buy, dec!(1), dec!(0.9)),
            Err(Refusal::UnknownPair { pair: eth })
        );
    }

    #[test]
    fn sizing_rounds_to_lot_and_respects_position_headroom() {
        let (mut p, _clock, _) = setup();
        let mut cfg = RiskConfig::default();
        cfg.pairs.insert(
            xrp(),
            PairRiskConfig {
                max_position_notional: Some(dec!(30000)),
                lot_size: Some(dec!(7)),
            },
        );
        let checker = PreTradeChecker::new(RiskLimits::from_config(&cfg).unwrap());
        // 50 000 rounded down to a multiple of 7.
        let qty = checker
            .size(&p, &xrp(), Side::Buy, dec!(0.5), dec!(0.49))
            .unwrap();
        assert_eq!(qty, dec!(49994));
        // Holding 40 000 XRP (20 000 at 0.5): only 20 000 more fit under 30 000.
        p.apply_fill(&fill(
            "1",
            &xrp(),
            Side::Buy,
            dec!(40000),
            dec!(0.5),
            dec!(0),
        ))
        .unwrap();
        let qty = checker
            .size(&p, &xrp(), Side::Buy, dec!(0.5), dec!(0.49))
            .unwrap();
        assert_eq!(qty, dec!(19999)); // 20 000 rounded down to a multiple of 7
        // Short side: the long position is room to reverse into.
        let qty = checker
            .size(&p, &xrp(), Side::Sell, dec!(0.5), dec!(0.51))
            .unwrap();
        assert_eq!(qty, dec!(49994));
        // A full position leaves less than a lot.
        p.apply_fill(&fill(
            "2",
            &xrp(),
            Side::Buy,
            dec!(20000),
            dec!(0.5),
            dec!(0),
        ))
        .unwrap();
        assert_eq!(
            checker
                .size(&p, &xrp(), Side::Buy, dec!(0.5), dec!(0.49))
                .unwrap_err()
                .code(),
            "below_lot_size"
        );
        // No equity, no size.
        let (empty, _) = portfolio(dec!(0));
        assert_eq!(
            checker
                .size(&empty, &xrp(), Side::Buy, dec!(0.5), dec!(0.49))
                .unwrap_err()
                .to_string(),
            "sizing input `equity` = 0: must be positive"
        );
    }

    #[test]
    fn each_check_refuses_with_its_reason() {
        struct Case {
            name: &'static str,
            order: OrderRequest,
            code: &'static str,
        }
        let (mut p, clock, mut checker) = setup();
        p.apply_fill(&fill(
            "1",
            &xrp(),
            Side::Buy,
            dec!(60000),
            dec!(0.5),
            dec!(0),
        ))
        .unwrap();
        let mut reduce_only = order("r", Side::Buy, dec!(10), None);
        reduce_only.reduce_only = true;
        let mut too_much_closure = order("z", Side::Sell, dec!(60001), None);
        too_much_closure.purpose = OrderPurpose::HaltClosure;
        let mut doge_order = order("d", Side::Buy, dec!(10), None);
        doge_order.pair = doge();
        let mut eth_order = order("e", Side::Buy, dec!(10), None);
        eth_order.pair = Pair::new("ETH/USD").unwrap();
        let cases = [
            Case {
                name: "zero qty",
                order: order("a", Side::Buy, dec!(0), None),
                code: "invalid_order",
            },
            Case {
                name: "unknown pair",
                order: eth_order,
                code: "unknown_pair",
            },
            Case {
                name: "reduce-only that adds",
                order: reduce_only,
                code: "would_not_reduce",
            },
            Case {
                name: "closure larger than the position",
                order: too_much_closure,
                code: "would_not_reduce",
            },
            Case {
                name: "never marked",
                order: doge_order,
                code: "no_market_price",
            },
            Case {
                name: "order notional 30 000 > 25 000",
                order: order("b", Side::Sell, dec!(60000), Some(dec!(0.5))),
                code: "order_notional",
            },
            Case {
                name: "position 60 000 + 50 000 at 0.5 > 50 000",
                order: order("c", Side::Buy, dec!(50000), None),
                code: "position_notional",
            },
        ];
        for case in cases {
            let v = checker.check(case.order, &p, clock.now());
            assert_eq!(
                v.refusal().map(Refusal::code),
                Some(case.code),
                "{}",
                case.name
            );
        }
        // Shrinking the oversized position is fine, and so is a closure (not counted).
        assert!(
            checker
                .check(order("s", Side::Sell, dec!(100), None), &p, clock.now())
                .is_approved()
        );
        let mut closure = order("h", Side::Sell, dec!(60000), None);
        closure.purpose = OrderPurpose::HaltClosure;
        clock.advance(Duration::hours(1)); // even with a stale price
        assert!(checker.check(closure, &p, clock.now()).is_approved());
        assert_eq!(checker.open_orders(), 1);
        let stale = checker.check(order("t", Side::Sell, dec!(100), None), &p, clock.now());
        assert_eq!(
            stale.refusal().unwrap().to_string(),
            "market price for XRP/USD is 3600000 ms old (limit 10000 ms)"
        );
        clock.advance(Duration::hours(-1));
        let dup = checker.check(order("s", Side::Sell, dec!(100), None), &p, clock.now());
        assert_eq!(dup.refusal().unwrap().code(), "duplicate_order_id");
        assert_eq!(dup.order().client_order_id.as_str(), "s");
    }

    #[test]
    fn open_orders_and_throttle_limit_and_recover() {
        let (p, clock, _) = setup();
        let cfg = RiskConfig {
            max_open_orders: 3,
            max_orders_per_window: 4,
            order_window_secs: 60,
            ..RiskConfig::default()
        };
        let mut checker = PreTradeChecker::new(RiskLimits::from_config(&cfg).unwrap());
        for i in 0..3 {
            let v = checker.check(
                order(&format!("o{i}"), Side::Buy, dec!(10), None),
                &p,
                clock.now(),
            );
            assert!(v.is_approved(), "{v:?}");
        }
        let v = checker.check(order("o3", Side::Buy, dec!(10), None), &p, clock.now());
        assert_eq!(
            v.refusal(),
            Some(&Refusal::TooManyOpenOrders { open: 3, max: 3 })
        );
        checker.on_order_update(&ClientOrderId::new("o0"), OrderStatus::Open);
        assert_eq!(checker.open_orders(), 3);
        checker.on_order_update(&ClientOrderId::new("o0"), OrderStatus::Filled);
        assert!(checker.release(&ClientOrderId::new("o1")));
        assert!(!checker.release(&ClientOrderId::new("o1")));
        assert_eq!(checker.open_orders(), 1);
        assert!(
            checker
                .check(order("o4", Side::Buy, dec!(10), None), &p, clock.now())
                .is_approved()
        );
        // Four approvals in the window: the fifth is throttled …
        let v = checker.check(order("o5", Side::Buy, dec!(10), None), &p, clock.now());
        assert_eq!(
            v.refusal().unwrap().to_string(),
            "4 orders in the last 60 s (limit 4)"
        );
        assert_eq!(checker.orders_in_window(clock.now()), 4);
        // … until the window slides past them (the price is refreshed to stay fresh).
        clock.advance(Duration::seconds(61));
        let mut p = p;
        p.mark_price(&xrp(), dec!(0.5), clock.now()).unwrap();
        assert_eq!(checker.orders_in_window(clock.now()), 0);
        assert!(
            checker
                .check(order("o5", Side::Buy, dec!(10), None), &p, clock.now())
                .is_approved()
        );
    }

    #[test]
    fn invalid_limits_name_the_key_and_value() {
        struct Case {
            cfg: RiskConfig,
            expect: &'static str,
        }
        let base = RiskConfig::default;
        let mut pair_override = base();
        pair_override.pairs.insert(
            xrp(),
            PairRiskConfig {
                max_position_notional: Some(dec!(-1)),
                lot_size: None,
            },
        );
        let mut pair_lot = base();
        pair_lot.pairs.insert(
            xrp(),
            PairRiskConfig {
                max_position_notional: None,
                lot_size: Some(dec!(0)),
            },
        );
        let cases = [
            Case {
                cfg: RiskConfig {
                    max_order_notional: dec!(-100),
                    ..base()
                },
                expect: "invalid risk limit `risk.max_order_notional` = -100: must be positive",
            },
            Case {
                cfg: RiskConfig {
                    max_position_notional: dec!(0),
                    ..base()
                },
                expect: "`risk.max_position_notional` = 0: must be positive",
            },
            Case {
                cfg: RiskConfig {
                    risk_per_trade_pct: dec!(-0.5),
                    ..base()
                },
                expect: "`risk.risk_per_trade_pct` = -0.5: must be a percent in (0, 100]",
            },
            Case {
                cfg: RiskConfig {
                    price_collar_pct: dec!(101),
                    ..base()
                },
                expect: "`risk.price_collar_pct` = 101",
            },
            Case {
                cfg: RiskConfig {
                    lot_size: dec!(-1),
                    ..base()
                },
                expect: "`risk.lot_size` = -1",
            },
            Case {
                cfg: RiskConfig {
                    max_open_orders: 0,
                    ..base()
                },
                expect: "`risk.max_open_orders` = 0: must be at least 1",
            },
            Case {
                cfg: RiskConfig {
                    max_orders_per_window: 0,
                    ..base()
                },
                expect: "`risk.max_orders_per_window` = 0",
            },
            Case {
                cfg: RiskConfig {
                    order_window_secs: 0,
                    ..base()
                },
                expect: "`risk.order_window_secs` = 0",
            },
            Case {
                cfg: RiskConfig {
                    max_price_age_secs: u64::MAX,
                    ..base()
                },
                expect: "`risk.max_price_age_secs` = 18446744073709551615: is too large",
            },
            Case {
                cfg: pair_override,
                expect: "`risk.pairs.\"XRP/USD\".max_position_notional` = -1",
            },
            Case {
                cfg: pair_lot,
                expect: "`risk.pairs.\"XRP/USD\".lot_size` = 0",
            },
        ];
        for case in cases {
            let err = RiskLimits::from_config(&case.cfg).unwrap_err();
            assert!(matches!(err, Error::InvalidLimit { .. }));
            assert!(
                err.to_string().contains(case.expect),
                "{err} ⊅ {}",
                case.expect
            );
        }
    }

    #[test]
    fn refusals_serialise_with_a_stable_code() {
        let r = Refusal::Throttled {
            recent: 10,
            max: 10,
            window_secs: 60,
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["code"], r.code());
        let back: Refusal = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let all = [
            Refusal::InvalidOrder { reason: "x".into() },
            Refusal::UnknownPair { pair: xrp() },
            Refusal::DuplicateOrderId {
                client_order_id: ClientOrderId::new("a"),
            },
            Refusal::WouldNotReduce {
                position: dec!(1),
                side: Side::Buy,
                qty: dec!(1),
            },
            Refusal::NoMarketPrice { pair: xrp() },
            Refusal::StalePrice {
                pair: xrp(),
                age_ms: 1,
                max_age_ms: 0,
            },
            Refusal::PriceCollar {
                limit: dec!(1),
                market: dec!(2),
                deviation_pct: dec!(50),
                collar_pct: dec!(5),
            },
            Refusal::OrderNotional {
                notional: dec!(2),
                max: dec!(1),
            },
            Refusal::PositionNotional {
                notional: dec!(2),
                max: dec!(1),
            },
            Refusal::TooManyOpenOrders { open: 2, max: 1 },
            r,
            Refusal::StopOnWrongSide {
                side: Side::Sell,
                entry: dec!(1),
                stop: dec!(1),
            },
            Refusal::InvalidSizingInput {
                field: "entry".into(),
                value: dec!(0),
            },
            Refusal::BelowLotSize {
                qty: dec!(0.5),
                lot: dec!(1),
            },
            Refusal::Overflow {
                what: "size".into(),
            },
        ];
        for refusal in all {
            let json = serde_json::to_value(&refusal).unwrap();
            assert_eq!(json["code"], refusal.code(), "{refusal}");
            assert!(!refusal.to_string().is_empty());
            assert_eq!(refusal.to_string(), refusal.to_string().trim());
        }
    }

    #[test]
    fn mock_stands_in_for_the_checker() {
        let mut mock = MockPreTradeCheck::new();
        mock.expect_check().returning(|order| Verdict::Refused {
            order,
            reason: Refusal::NoMarketPrice { pair: xrp() },
        });
        mock.expect_size().returning(|_, _, _, _| Ok(dec!(42)));
        let checker: &dyn PreTradeCheck = &mock;
        let v = checker.check(order("m", Side::Buy, dec!(1), None));
        assert!(!v.is_approved());
        assert_eq!(
            checker.size(&xrp(), Side::Buy, dec!(1), dec!(0.9)),
            Ok(dec!(42))
        );
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use crate::portfolio::test_support::*;
    use chrono::Duration;
    use gf_core::Clock;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_sizing_never_exceeds_max_position(
            equity in 1i64..100_000_000,
            risk_bp in 1i64..10_000,
            entry in 1i64..1_000_000,
            stop_off in 1i64..999_999,
            current in -2_000_000i64..2_000_000,
            lot_exp in 0u32..4,
            max_pos in 1i64..1_000_000,
            max_order in 1i64..1_000_000,
            buy in any::<bool>(),
        ) {
            let cfg = RiskConfig {
                risk_per_trade_pct: Decimal::new(risk_bp, 2).min(Decimal::ONE_HUNDRED),
                max_position_notional: Decimal::new(max_pos, 0),
                max_order_notional: Decimal::new(max_order, 0),
                lot_size: Decimal::new(1, lot_exp),
                ..RiskConfig::default()
            };
            let limits = RiskLimits::from_config(&cfg).unwrap();
            let entry = Decimal::new(entry, 4);
            let off = Decimal::new(stop_off.min(999_999), 4).min(entry - Decimal::new(1, 4));
            let (side, stop) = if buy {
                (Side::Buy, entry - off)
            } else {
                (Side::Sell, entry + off)
            };
            let current = Decimal::new(current, 1);
            if let Ok(qty) = limits.size(&xrp(), side, entry, stop, Decimal::new(equity, 0), current) {
                prop_assert!(qty > Decimal::ZERO);
                let after = (current + side.sign() * qty).abs();
                // Either within the limit, or an order shrinking an oversized position.
                prop_assert!(after * entry <= cfg.max_position_notional || after < current.abs(),
                    "position {after} × {entry} > {}", cfg.max_position_notional);
                prop_assert!(qty * entry <= cfg.max_order_notional);
                prop_assert!((qty / cfg.lot_size).fract().is_zero());
            }
        }

        #[test]
        fn prop_arbitrary_numbers_never_panic(
            inputs in prop::collection::vec(
                (any_decimal(), any_decimal(), any_decimal(), any_decimal(), any::<bool>(), any::<bool>()),
                1..40,
            ),
        ) {
            let (mut p, clock) = portfolio(Decimal::new(100_000, 0));
            p.mark_price(&xrp(), Decimal::new(5, 1), t0()).unwrap();
            let limits = RiskLimits::from_config(&RiskConfig::default()).unwrap();
            let mut checker = PreTradeChecker::new(limits.clone());
            for (i, (qty, limit, entry, stop, buy, is_limit)) in inputs.into_iter().enumerate() {
                let side = if buy { Side::Buy } else { Side::Sell };
                let _ = checker.size(&p, &xrp(), side, entry, stop);
                let _ = limits.size(&xrp(), side, entry, stop, qty, limit);
                let id = ClientOrderId::new(format!("a{i}"));
                let order = if is_limit {
                    OrderRequest::limit(id, xrp(), side, qty, limit)
                } else {
                    OrderRequest::market(id, xrp(), side, qty)
                };
                let v = checker.check(order, &p, clock.now());
                if let Some(reason) = v.refusal() {
                    prop_assert!(!reason.to_string().is_empty());
                }
            }
        }

        #[test]
        fn prop_refused_order_never_changes_state(
            orders in prop::collection::vec(
                (any::<bool>(), 1i64..200_000, prop::option::of(1i64..10_000), any::<bool>(), 0i64..30, 0u8..6),
                1..40,
            )
        ) {
            let (mut p, clock) = portfolio(Decimal::new(100_000, 0));
            p.mark_price(&xrp(), Decimal::new(5000, 4), t0()).unwrap();
            p.apply_fill(&fill("f", &xrp(), Side::Buy, Decimal::new(1000, 0), Decimal::new(5, 1), Decimal::ZERO)).unwrap();
            let cfg = RiskConfig { max_open_orders: 5, max_orders_per_window: 4, ..RiskConfig::default() };
            let mut checker = PreTradeChecker::new(RiskLimits::from_config(&cfg).unwrap());
            for (i, (buy, qty, limit, reduce, wait, id)) in orders.into_iter().enumerate() {
                clock.advance(Duration::seconds(wait));
                let coid = ClientOrderId::new(format!("c{id}"));
                let pair = if i % 7 == 6 { doge() } else { xrp() };
                let side = if buy { Side::Buy } else { Side::Sell };
                let qty = Decimal::new(qty, 1);
                let mut order = match limit {
                    Some(l) => OrderRequest::limit(coid, pair, side, qty, Decimal::new(l, 4)),
                    None => OrderRequest::market(coid, pair, side, qty),
                };
                order.reduce_only = reduce;
                let before = checker.clone();
                let portfolio_before = p.snapshot();
                let verdict = checker.check(order.clone(), &p, clock.now());
                prop_assert_eq!(verdict.order(), &order);
                if verdict.is_approved() {
                    prop_assert_eq!(checker.open_orders(), before.open_orders() + 1);
                } else {
                    prop_assert_eq!(&checker, &before);
                }
                prop_assert_eq!(p.snapshot(), portfolio_before);
                if i % 5 == 4 {
                    checker.release(&ClientOrderId::new(format!("c{id}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod seed_tests {
    //! Pre-trade while a holding seeded from the balance has no price yet.
    use super::*;
    use crate::portfolio::test_support::*;
    use gf_core::{Clock, OrderPurpose};
    use rust_decimal_macros::dec;

    fn market(id: &str, pair: Pair, side: Side, qty: Decimal) -> OrderRequest {
        OrderRequest::market(ClientOrderId::new(id), pair, side, qty)
    }

    #[test]
    fn orders_wait_for_the_first_price_of_a_seeded_holding_but_a_closure_does_not() {
        let (mut p, clock) = portfolio(dec!(100000));
        let mut checker =
            PreTradeChecker::new(RiskLimits::from_config(&RiskConfig::default()).unwrap());
        let (x, d) = (xrp(), doge());
        // DOGE is marked; the XRP holding (worth far more than the position limit at any
        // realistic price) was just seeded and has no price.
        p.mark_price(&d, dec!(0.1), clock.now()).unwrap();
        p.seed_position(&x, dec!(120000)).unwrap();

        for order in [
            market("a", d.clone(), Side::Buy, dec!(10)),
            market("b", x.clone(), Side::Sell, dec!(10)),
        ] {
            let verdict = checker.check(order, &p, clock.now());
            assert_eq!(
                verdict.refusal(),
                Some(&Refusal::UnpricedHolding { pair: x.clone() }),
                "{verdict:?}"
            );
            assert_eq!(verdict.refusal().unwrap().code(), "unpriced_holding");
        }
        assert_eq!(
            Refusal::UnpricedHolding { pair: x.clone() }.to_string(),
            "the holding of XRP/USD seeded from the balance has no price yet"
        );
        assert_eq!(
            (checker.open_orders(), checker.orders_in_window(clock.now())),
            (0, 0)
        );

        // A halt closure of the holding is never held back.
        let mut closure = market("h", x.clone(), Side::Sell, dec!(120000));
        closure.purpose = OrderPurpose::HaltClosure;
        assert!(checker.check(closure, &p, clock.now()).is_approved());

        // Priced: the holding counts in the position limit (120 000 × 0.5 = 60 000 > 50 000).
        p.mark_price(&x, dec!(0.5), clock.now()).unwrap();
        assert!(
            checker
                .check(market("c", d.clone(), Side::Buy, dec!(10)), &p, clock.now())
                .is_approved()
        );
        let verdict = checker.check(market("e", x.clone(), Side::Buy, dec!(1)), &p, clock.now());
        assert_eq!(
            verdict.refusal().unwrap().code(),
            "position_notional",
            "{verdict:?}"
        );
    }
}

/// Tests that kill mutants `cargo xtask mutants` found alive in the pre-trade checks.
#[cfg(test)]
mod mutant_kills {
    use super::*;
    use crate::portfolio::test_support::{portfolio, t0, xrp};
    use chrono::Duration;

    use rust_decimal_macros::dec;

    fn buy(id: &str) -> OrderRequest {
        OrderRequest::market(ClientOrderId::new(id), xrp(), Side::Buy, dec!(10))
    }

    fn secs(v: u64) -> Duration {
        Duration::seconds(i64::try_from(v).unwrap())
    }

    #[test]
    fn a_price_exactly_as_old_as_the_limit_is_still_fresh() {
        let (mut p, _clock) = portfolio(dec!(100000));
        p.mark_price(&xrp(), dec!(0.5), t0()).unwrap();
        let cfg = RiskConfig::default();
        let mut checker = PreTradeChecker::new(RiskLimits::from_config(&cfg).unwrap());
        let limit = t0() + secs(cfg.max_price_age_secs);
        let v = checker.check(buy("a"), &p, limit);
        assert!(v.is_approved(), "{v:?}");
        let v = checker.check(buy("b"), &p, limit + Duration::milliseconds(1));
        assert_eq!(v.refusal().map(Refusal::code), Some("stale_price"));
    }

    #[test]
    fn an_order_of_exactly_the_maximum_notional_passes() {
        let (mut p, _clock) = portfolio(dec!(100000));
        p.mark_price(&xrp(), dec!(0.5), t0()).unwrap();
        let cfg = RiskConfig::default();
        let mut checker = PreTradeChecker::new(RiskLimits::from_config(&cfg).unwrap());
        let mut at_max = buy("a");
        at_max.qty = cfg.max_order_notional / dec!(0.5);
        let v = checker.check(at_max.clone(), &p, t0());
        assert!(v.is_approved(), "{v:?}");
        let mut over = buy("b");
        over.qty = at_max.qty + Decimal::ONE;
        let v = checker.check(over, &p, t0());
        assert_eq!(v.refusal().map(Refusal::code), Some("order_notional"));
    }

    #[test]
    fn an_order_exactly_a_window_old_no_longer_counts() {
        let (mut p, _clock) = portfolio(dec!(100000));
        p.mark_price(&xrp(), dec!(0.5), t0()).unwrap();
        let cfg = RiskConfig::default();
        let mut checker = PreTradeChecker::new(RiskLimits::from_config(&cfg).unwrap());
        assert!(checker.check(buy("a"), &p, t0()).is_approved());
        let window = secs(cfg.order_window_secs);
        assert_eq!(checker.orders_in_window(t0()), 1);
        assert_eq!(
            checker.orders_in_window(t0() + window - Duration::milliseconds(1)),
            1
        );
        assert_eq!(checker.orders_in_window(t0() + window), 0);
    }

    #[test]
    fn a_percent_of_exactly_100_is_valid_and_above_it_is_not() {
        let mut cfg = RiskConfig {
            risk_per_trade_pct: dec!(100),
            price_collar_pct: dec!(100),
            max_order_notional: dec!(1234),
            ..RiskConfig::default()
        };
        let limits = RiskLimits::from_config(&cfg).unwrap();
        assert_eq!(limits.config(), &cfg, "the limits keep the configuration");
        assert_eq!(limits.config().max_order_notional, dec!(1234));
        cfg.price_collar_pct = dec!(100.01);
        match RiskLimits::from_config(&cfg) {
            Err(Error::InvalidLimit { key, .. }) => assert_eq!(key, "risk.price_collar_pct"),
            other => panic!("expected an invalid limit, got {other:?}"),
        }
    }
}
