//! Pre-trade checks: position sizing, price collar, order and position notional, open
//! orders, an order-rate throttle and market-price freshness. Every check ends in a typed
//! [`Verdict`]: `Approved(order)` or `Refused { order, reason }`.
//!
//! Checks run cheapest first and stop at the first refusal:
//!
//! 1. the order is self-consistent ([`OrderRequest::validate`]) and for a known pair;
//! 2. its client order id is not already open;
//! 3. a reduce-only or halt-closure order really reduces the position;
//! 4. the pair has a market price, no older than `max_price_age_secs` — never guessed;
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
            (qty / lot).floor() * lot
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
        let cutoff = now - self.limits.order_window;
        self.sent.iter().filter(|t| **t > cutoff).count()
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
                    let cutoff = now - self.limits.order_window;
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
                    .ok_or_else(|| overflow("price deviation"))?;
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
