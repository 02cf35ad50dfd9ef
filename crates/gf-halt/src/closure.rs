//! Halt actions against the exchange: cancel-all with retry, and position closure with
//! reduce-only market orders, retried with backoff until flat or out of attempts.
//!
//! Closure orders are minted, not declared: each carries a [`gf_core::ClosureSeal`] from
//! the coordinator's [`GateOpener`] ([`ClosureMint`]), checked at minting against the
//! portfolio's position in the pair (the order must reduce it and not exceed it). Only
//! sealed orders pass the closed gate.
//!
//! Closure orders are idempotent: the client order id of the order for `pair` in round `r`
//! of halt `h` is `gfh-<h>-<BASEQUOTE>-<r>` (a later closure pass of the same halt goes on
//! numbering rounds after the earlier passes' attempts). An order whose fate is unknown
//! (timeout, network error, still open) is reconciled by
//! [`Exchange::reconcile_order`] — which also publishes any execution not yet published,
//! so the portfolio learns of it — before anything more is placed for that pair, and a
//! still-working order is cancelled first, so a retry never doubles a close. The quantity
//! closed is tracked from the exchange's own `filled_qty` of each of our orders, never
//! re-read from a possibly lagging portfolio.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use gf_core::config::HaltConfig;
use gf_core::{
    ClientOrderId, GateOpener, OrderPurpose, OrderRequest, OrderStatus, OrderType, Pair, Position,
    Qty, Side, TimeInForce,
};
use gf_exec::{Exchange, OrderRef};
use gf_risk::PortfolioView;

/// Longest wait between two closure rounds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Longest the halt waits for one exchange call before treating it as timed out (and
/// retrying, or reconciling a placement by its client order id).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Retry policy for cancel-all and closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Rounds (attempts) at most; at least 1.
    pub max_attempts: u32,
    /// Wait after the first failed round; doubles each round up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// Bound on every exchange call.
    pub call_timeout: Duration,
}

impl RetryPolicy {
    /// From `halt.closure_max_attempts` and `halt.closure_backoff_ms`, with [`CALL_TIMEOUT`].
    #[must_use]
    pub fn from_config(cfg: &HaltConfig) -> Self {
        Self {
            max_attempts: cfg.closure_max_attempts.max(1),
            backoff: Duration::from_millis(cfg.closure_backoff_ms),
            call_timeout: CALL_TIMEOUT,
        }
    }

    /// Runs one exchange call under [`RetryPolicy::call_timeout`]; a call that does not
    /// answer in time becomes [`gf_exec::Error::Timeout`] (retryable).
    ///
    /// # Errors
    /// The call's own error, or the timeout.
    pub async fn bounded<T>(
        &self,
        endpoint: &str,
        call: impl Future<Output = Result<T, gf_exec::Error>>,
    ) -> Result<T, gf_exec::Error> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(gf_exec::Error::Timeout {
                    endpoint: endpoint.to_owned(),
                    millis: u64::try_from(self.call_timeout.as_millis()).unwrap_or(u64::MAX),
                })
            })
    }

    /// The wait after round `round` (1-based).
    #[must_use]
    pub fn delay(&self, round: u32) -> Duration {
        let factor = 1_u32
            .checked_shl(round.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// What cancel-all achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOutcome {
    /// Orders the exchange reported cancelled (summed over calls), when a call succeeded.
    pub cancelled: Option<u32>,
    /// Calls made.
    pub attempts: u32,
    /// The last error, when no call succeeded.
    pub error: Option<String>,
}

/// The closure of one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairClosure {
    /// The pair.
    pub pair: Pair,
    /// Side of the closing orders (opposite the position).
    pub side: Side,
    /// Quantity to close (|position|).
    pub target: Qty,
    /// Quantity the exchange reports filled on our closure orders.
    pub filled: Qty,
    /// Client order ids used, in order.
    pub orders: Vec<ClientOrderId>,
    /// Orders whose final fill is still unknown.
    pub unresolved: Vec<ClientOrderId>,
    /// The last error or rejection, if any.
    pub last_error: Option<String>,
}

impl PairClosure {
    /// Quantity still open (never negative).
    #[must_use]
    pub fn remaining(&self) -> Qty {
        (self.target - self.filled).max(Decimal::ZERO)
    }

    /// Closed for certain: nothing remaining, nothing unresolved.
    #[must_use]
    pub fn is_flat(&self) -> bool {
        self.remaining().is_zero() && self.unresolved.is_empty()
    }
}

/// The outcome of a halt's actions, journaled and published as `ClosureResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosureReport {
    /// Every position closed (vacuously true when there was nothing to close, or the
    /// behaviour does not close).
    pub flat: bool,
    /// Cancel-all, unless the behaviour is `hold`.
    pub cancel: Option<CancelOutcome>,
    /// Closure rounds used.
    pub rounds: u32,
    /// Per position.
    pub pairs: Vec<PairClosure>,
}

impl ClosureReport {
    /// One line per position still open, and the cancel failure if any.
    #[must_use]
    pub fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(CancelOutcome {
            cancelled: None,
            error: Some(e),
            ..
        }) = &self.cancel
        {
            parts.push(format!("cancel-all failed: {e}"));
        }
        for p in self.pairs.iter().filter(|p| !p.is_flat()) {
            let why = p.last_error.as_deref().unwrap_or("no fill confirmed");
            let unresolved = if p.unresolved.is_empty() {
                String::new()
            } else {
                format!(", {} order(s) unresolved", p.unresolved.len())
            };
            parts.push(format!(
                "{} {} remaining of {}{unresolved}: {why}",
                p.pair,
                p.remaining(),
                p.target
            ));
        }
        if parts.is_empty() {
            if self.pairs.is_empty() {
                "nothing to close".to_owned()
            } else {
                format!("{} position(s) closed", self.pairs.len())
            }
        } else {
            parts.join("; ")
        }
    }
}

/// The deterministic client order id of a closure order.
#[must_use]
pub fn closure_client_id(halt_id: u64, pair: &Pair, round: u32) -> ClientOrderId {
    ClientOrderId::new(format!(
        "gfh-{halt_id}-{}{}-{round}",
        pair.base(),
        pair.quote()
    ))
}

/// Mints sealed closure orders: the gate's opener, and the portfolio every seal is checked
/// against. Only the holder of the opener (the halt coordinator) can build one.
pub struct ClosureMint<'a> {
    opener: &'a GateOpener,
    portfolio: &'a dyn PortfolioView,
}

impl std::fmt::Debug for ClosureMint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosureMint")
            .field("opener", self.opener)
            .finish_non_exhaustive()
    }
}

impl<'a> ClosureMint<'a> {
    /// Mints with `opener`, checking against `portfolio`.
    #[must_use]
    pub fn new(opener: &'a GateOpener, portfolio: &'a dyn PortfolioView) -> Self {
        Self { opener, portfolio }
    }

    /// A sealed reduce-only market order closing `qty` of the position in `pair`, the side
    /// opposite the position's as the portfolio holds it now.
    ///
    /// # Errors
    /// [`gf_core::Error::ClosureRefused`] when the portfolio shows no position in `pair`,
    /// or one smaller than `qty`.
    pub fn order(
        &self,
        client_order_id: ClientOrderId,
        pair: &Pair,
        qty: Qty,
    ) -> Result<OrderRequest, gf_core::Error> {
        let position = self
            .portfolio
            .positions()
            .into_iter()
            .find(|p| &p.pair == pair)
            .unwrap_or_else(|| Position::flat(pair.clone()));
        let seal = self.opener.seal_closure(&client_order_id, &position, qty)?;
        Ok(OrderRequest {
            client_order_id,
            pair: pair.clone(),
            side: seal.side(),
            order_type: OrderType::Market,
            qty,
            limit_price: None,
            time_in_force: TimeInForce::Gtc,
            reduce_only: true,
            user_ref: None,
            purpose: OrderPurpose::HaltClosure,
            closure_seal: Some(seal),
        })
    }
}

/// Calls `cancel_all` until it succeeds, a non-retryable error, or the attempts run out.
/// Cancellation-safe (dropping it stops between calls).
pub async fn cancel_all_with_retry(exchange: &dyn Exchange, policy: RetryPolicy) -> CancelOutcome {
    let mut outcome = CancelOutcome {
        cancelled: None,
        attempts: 0,
        error: None,
    };
    for round in 1..=policy.max_attempts {
        outcome.attempts = round;
        match policy.bounded("CancelAll", exchange.cancel_all()).await {
            Ok(n) => {
                outcome.cancelled = Some(n);
                outcome.error = None;
                return outcome;
            }
            Err(e) => {
                tracing::warn!(cause = %e, attempt = round, "halt cancel-all failed");
                let retry = e.is_retryable();
                outcome.error = Some(e.to_string());
                if !retry {
                    return outcome;
                }
            }
        }
        if round < policy.max_attempts {
            tokio::time::sleep(policy.delay(round)).await;
        }
    }
    outcome
}

struct Work {
    closure: PairClosure,
    fills: BTreeMap<ClientOrderId, Qty>,
}

impl Work {
    fn refresh_filled(&mut self) {
        self.closure.filled = self.fills.values().copied().sum();
    }
}

/// Reconciles the unresolved orders of one pair. Returns `true` when it is safe to place
/// another order (no earlier order can still fill).
async fn reconcile(exchange: &dyn Exchange, policy: RetryPolicy, w: &mut Work) -> bool {
    let mut safe = true;
    let pending = std::mem::take(&mut w.closure.unresolved);
    for id in pending {
        let r = OrderRef::Client(id.clone());
        match policy
            .bounded("QueryOrders", exchange.reconcile_order(&id))
            .await
        {
            Ok(Some(found)) => {
                let info = found.info;
                w.fills.insert(id.clone(), info.filled_qty);
                if !info.status.is_terminal() {
                    safe = false;
                    if let Err(e) = policy
                        .bounded("CancelOrder", exchange.cancel_order(&r))
                        .await
                    {
                        w.closure.last_error = Some(format!("cancel {id}: {e}"));
                    }
                    w.closure.unresolved.push(id);
                }
            }
            Ok(None) => {
                // Never reached the exchange: nothing filled, nothing can.
                w.fills.insert(id, Decimal::ZERO);
            }
            Err(e) => {
                safe = false;
                w.closure.last_error = Some(format!("status of {id}: {e}"));
                w.closure.unresolved.push(id);
            }
        }
    }
    w.refresh_filled();
    safe
}

async fn place(
    exchange: &dyn Exchange,
    mint: &ClosureMint<'_>,
    policy: RetryPolicy,
    halt_id: u64,
    w: &mut Work,
    round: u32,
) {
    let id = closure_client_id(halt_id, &w.closure.pair, round);
    let order = match mint.order(id.clone(), &w.closure.pair, w.closure.remaining()) {
        Ok(order) => order,
        Err(refused) => {
            // Nothing sent: the portfolio does not hold what this order would close.
            tracing::warn!(cause = %refused, pair = %w.closure.pair, "closure order not sealed");
            w.closure.last_error = Some(refused.to_string());
            return;
        }
    };
    w.closure.orders.push(id.clone());
    match policy
        .bounded("AddOrder", exchange.place_order(&order))
        .await
    {
        Ok(ack) => match ack.status {
            OrderStatus::Filled => {
                // Ask once more so that the execution is published before this closure
                // reports (a client may learn fills only by asking): a position the
                // portfolio still shows after a flat closure is then a late fill.
                let filled = match policy
                    .bounded("QueryOrders", exchange.reconcile_order(&id))
                    .await
                {
                    Ok(Some(found)) => found.info.filled_qty,
                    _ => order.qty,
                };
                w.fills.insert(id, filled);
            }
            OrderStatus::Rejected => {
                w.fills.insert(id.clone(), Decimal::ZERO);
                w.closure.last_error = Some(format!("{id} rejected by the exchange"));
            }
            _ => w.closure.unresolved.push(id),
        },
        Err(e) => {
            tracing::warn!(cause = %e, pair = %w.closure.pair, order = %id, "closure order failed");
            w.closure.last_error = Some(e.to_string());
            if e.is_retryable() {
                // It may have been placed: reconcile before anything else.
                w.closure.unresolved.push(id);
            } else {
                w.fills.insert(id, Decimal::ZERO);
            }
        }
    }
    w.refresh_filled();
}

/// Flattens `positions` (flat ones are skipped) with sealed reduce-only market orders.
/// Round numbers (in the client order ids) start at `first_round`. Returns the per-pair
/// outcome and the rounds used. Cancellation-safe between calls.
pub async fn close_positions(
    exchange: &dyn Exchange,
    mint: &ClosureMint<'_>,
    halt_id: u64,
    positions: &[Position],
    policy: RetryPolicy,
    first_round: u32,
) -> (Vec<PairClosure>, u32) {
    let mut work: Vec<Work> = positions
        .iter()
        .filter(|p| !p.qty.is_zero())
        .map(|p| Work {
            closure: PairClosure {
                pair: p.pair.clone(),
                side: if p.qty > Decimal::ZERO {
                    Side::Sell
                } else {
                    Side::Buy
                },
                target: p.qty.abs(),
                filled: Decimal::ZERO,
                orders: Vec::new(),
                unresolved: Vec::new(),
                last_error: None,
            },
            fills: BTreeMap::new(),
        })
        .collect();
    let mut rounds = 0;
    for round in 1..=policy.max_attempts {
        if work.iter().all(|w| w.closure.is_flat()) {
            break;
        }
        rounds = round;
        for w in work.iter_mut().filter(|w| !w.closure.is_flat()) {
            if reconcile(exchange, policy, w).await && !w.closure.remaining().is_zero() {
                let numbered = first_round.saturating_add(round - 1);
                place(exchange, mint, policy, halt_id, w, numbered).await;
            }
        }
        if work.iter().all(|w| w.closure.is_flat()) {
            break;
        }
        if round < policy.max_attempts {
            tokio::time::sleep(policy.delay(round)).await;
        }
    }
    // A last look at orders still unresolved, so the report says what really happened.
    for w in work.iter_mut().filter(|w| !w.closure.unresolved.is_empty()) {
        reconcile(exchange, policy, w).await;
    }
    (work.into_iter().map(|w| w.closure).collect(), rounds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::TradingGate;
    use gf_exec::{MockExchange, OrderAck, OrderInfo, Reconciled};
    use rust_decimal_macros::dec;

    /// A portfolio holding fixed positions.
    struct Held(Vec<Position>);

    impl PortfolioView for Held {
        fn equity(&self) -> Decimal {
            Decimal::ONE_HUNDRED
        }
        fn peak_equity(&self) -> Decimal {
            Decimal::ONE_HUNDRED
        }
        fn total_drawdown_pct(&self) -> Decimal {
            Decimal::ZERO
        }
        fn daily_drawdown_pct(&self) -> Decimal {
            Decimal::ZERO
        }
        fn consecutive_losses(&self) -> u32 {
            0
        }
        fn positions(&self) -> Vec<Position> {
            self.0.clone()
        }
        fn exposure(&self) -> Decimal {
            Decimal::ZERO
        }
        fn volatility_pct(&self, _: &Pair) -> Option<Decimal> {
            None
        }
    }

    /// Closes `positions` through `ex` with seals checked against them.
    async fn close(
        ex: &MockExchange,
        halt_id: u64,
        positions: &[Position],
    ) -> (Vec<PairClosure>, u32) {
        let gate = TradingGate::new_closed();
        let opener = gate.take_opener().unwrap();
        let held = Held(positions.to_vec());
        let mint = ClosureMint::new(&opener, &held);
        close_positions(ex, &mint, halt_id, positions, policy(), 1).await
    }

    fn found(info: OrderInfo) -> Option<Reconciled> {
        Some(Reconciled {
            info,
            published: Decimal::ZERO,
        })
    }

    fn pair(s: &str) -> Pair {
        Pair::new(s).unwrap()
    }

    fn position(p: &str, qty: Decimal) -> Position {
        let mut pos = Position::flat(pair(p));
        pos.qty = qty;
        pos.avg_entry = dec!(0.5);
        pos
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(10),
            call_timeout: CALL_TIMEOUT,
        }
    }

    fn info(id: &ClientOrderId, status: OrderStatus, filled: Decimal) -> OrderInfo {
        OrderInfo {
            order_id: gf_core::OrderId::new("O"),
            client_order_id: Some(id.clone()),
            pair: pair("XRP/USD"),
            side: Side::Sell,
            order_type: OrderType::Market,
            qty: dec!(100),
            filled_qty: filled,
            limit_price: None,
            avg_price: None,
            status,
            reduce_only: true,
            opened_at: None,
        }
    }

    #[test]
    fn ids_are_deterministic_and_orders_are_sealed_against_the_portfolio() {
        let id = closure_client_id(7, &pair("XRP/USD"), 2);
        assert_eq!(id.as_str(), "gfh-7-XRPUSD-2");
        let gate = TradingGate::new_closed();
        let opener = gate.take_opener().unwrap();
        let held = Held(vec![position("DOGE/USD", dec!(-50))]);
        let mint = ClosureMint::new(&opener, &held);
        let o = mint
            .order(
                closure_client_id(7, &pair("DOGE/USD"), 1),
                &pair("DOGE/USD"),
                dec!(50),
            )
            .unwrap();
        assert_eq!(o.side, Side::Buy);
        assert!(o.reduce_only && o.is_closure() && o.is_sealed());
        assert_eq!(o.order_type, OrderType::Market);
        o.validate().unwrap();
        drop(
            gate.enter(&o)
                .expect("a sealed closure passes the closed gate"),
        );
        // More than the portfolio holds, or a pair it does not hold: no seal.
        for (p, qty) in [("DOGE/USD", dec!(51)), ("XRP/USD", dec!(1))] {
            let err = mint
                .order(closure_client_id(7, &pair(p), 1), &pair(p), qty)
                .unwrap_err();
            assert!(
                matches!(err, gf_core::Error::ClosureRefused { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 40,
            backoff: Duration::from_millis(200),
            call_timeout: CALL_TIMEOUT,
        };
        assert_eq!(p.delay(1), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(800));
        assert_eq!(p.delay(39), MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_times_out() {
        let p = policy();
        let hung = p
            .bounded(
                "CancelAll",
                std::future::pending::<Result<u32, gf_exec::Error>>(),
            )
            .await;
        assert!(matches!(
            hung,
            Err(gf_exec::Error::Timeout { ref endpoint, millis: 10_000 }) if endpoint == "CancelAll"
        ));
        assert!(hung.unwrap_err().is_retryable());
        assert_eq!(p.bounded("X", async { Ok(3) }).await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_all_retries_retryable_and_stops_on_fatal() {
        let mut ex = MockExchange::new();
        let mut calls = 0;
        ex.expect_cancel_all().times(3).returning(move || {
            calls += 1;
            if calls < 3 {
                Err(gf_exec::Error::Timeout {
                    endpoint: "CancelAll".into(),
                    millis: 5,
                })
            } else {
                Ok(4)
            }
        });
        let out = cancel_all_with_retry(&ex, policy()).await;
        assert_eq!(out.cancelled, Some(4));
        assert_eq!(out.attempts, 3);

        let mut ex = MockExchange::new();
        ex.expect_cancel_all()
            .times(1)
            .returning(|| Err(gf_exec::Error::Halted));
        let out = cancel_all_with_retry(&ex, policy()).await;
        assert_eq!(out.cancelled, None);
        assert!(out.error.unwrap().contains("halted"));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_then_reconcile_never_doubles() {
        // Round 1: place times out, but the exchange did fill it. Round 2 must find that
        // out by client id and place nothing more.
        let mut ex = MockExchange::new();
        ex.expect_place_order().times(1).returning(|_| {
            Err(gf_exec::Error::Timeout {
                endpoint: "AddOrder".into(),
                millis: 5,
            })
        });
        ex.expect_reconcile_order()
            .times(1)
            .returning(|id| Ok(found(info(id, OrderStatus::Filled, dec!(100)))));
        let (pairs, rounds) = close(&ex, 1, &[position("XRP/USD", dec!(100))]).await;
        assert_eq!(rounds, 2);
        assert!(pairs[0].is_flat(), "{pairs:?}");
        assert_eq!(pairs[0].orders.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn partial_fill_then_rest_in_next_round() {
        let mut ex = MockExchange::new();
        let mut n = 0;
        ex.expect_place_order().times(2).returning(move |o| {
            n += 1;
            if n == 1 {
                assert_eq!(o.qty, dec!(100));
                Ok(OrderAck {
                    order_id: gf_core::OrderId::new("O1"),
                    client_order_id: o.client_order_id.clone(),
                    status: OrderStatus::Open,
                })
            } else {
                assert_eq!(o.qty, dec!(40), "only the remainder");
                assert_eq!(o.client_order_id.as_str(), "gfh-1-XRPUSD-3");
                Ok(OrderAck {
                    order_id: gf_core::OrderId::new("O2"),
                    client_order_id: o.client_order_id.clone(),
                    status: OrderStatus::Filled,
                })
            }
        });
        let mut status_calls = 0;
        ex.expect_reconcile_order().returning(move |id| {
            if id.as_str() != "gfh-1-XRPUSD-1" {
                return Ok(found(info(id, OrderStatus::Filled, dec!(40))));
            }
            status_calls += 1;
            // First look: still open with 60 filled; second: cancelled at 60.
            if status_calls == 1 {
                Ok(found(info(id, OrderStatus::PartiallyFilled, dec!(60))))
            } else {
                Ok(found(info(id, OrderStatus::Cancelled, dec!(60))))
            }
        });
        ex.expect_cancel_order().times(1).returning(|_| Ok(()));
        let (pairs, _) = close(&ex, 1, &[position("XRP/USD", dec!(100))]).await;
        assert!(pairs[0].is_flat(), "{pairs:?}");
        assert_eq!(pairs[0].filled, dec!(100));
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_are_retried_then_reported() {
        let mut ex = MockExchange::new();
        ex.expect_place_order().times(3).returning(|_| {
            Err(gf_exec::Error::Api {
                endpoint: "AddOrder".into(),
                kind: gf_core::ApiErrorKind::InsufficientFunds,
                message: "EOrder:Insufficient funds".into(),
            })
        });
        let (pairs, rounds) = close(&ex, 3, &[position("DOGE/USD", dec!(-20))]).await;
        assert_eq!(rounds, 3);
        assert!(!pairs[0].is_flat());
        assert_eq!(pairs[0].remaining(), dec!(20));
        let report = ClosureReport {
            flat: false,
            cancel: None,
            rounds,
            pairs,
        };
        assert!(
            report.detail().contains("DOGE/USD 20 remaining of 20"),
            "{}",
            report.detail()
        );
        assert!(report.detail().contains("Insufficient funds"));
    }
}
