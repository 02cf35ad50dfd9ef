//! Halt actions against the exchange: cancel-all with retry, and the closure of a spot
//! account — market sells of what it holds, retried with backoff until a balance read
//! shows it flat (dust below the order minimum aside) or out of attempts.
//!
//! The account is a spot (cash) account: a holding is a balance, not a margin position, so
//! closure orders never carry `reduce_only` (Kraken rejects a reduce-only order without an
//! open margin position). What is sold is read from the exchange — the base asset's
//! balance less what open orders still hold, rounded down to the pair's lot decimals — not
//! taken from the portfolio, which may lag.
//!
//! Closure orders are minted, not declared: each carries a [`gf_core::ClosureSeal`] from
//! the coordinator's [`GateOpener`] ([`ClosureMint`]), checked at minting against the
//! balance-derived position (the order must sell it and not exceed it). Only sealed orders
//! pass the closed gate.
//!
//! Closure orders are idempotent: the client order id of the order for `pair` in round `r`
//! of halt `h` is derived from `(h, pair, r)` ([`closure_client_id`], 32 hex digits, a
//! format Kraken accepts; a later closure pass of the same halt goes on numbering rounds
//! after the earlier passes' attempts). An order whose fate is unknown
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

use gf_core::backoff::Backoff;
use gf_core::config::HaltConfig;
use gf_core::{
    ClientOrderId, GateOpener, OrderPurpose, OrderRequest, OrderStatus, OrderType, Pair, Position,
    Qty, Side, TimeInForce,
};
use gf_exec::{Exchange, OrderRef};

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

    /// The waits between rounds: `backoff`, doubling, at most [`MAX_BACKOFF`], no jitter
    /// (the workspace's one [`Backoff`]).
    #[must_use]
    pub fn schedule(&self) -> Backoff {
        Backoff::exponential(self.backoff, MAX_BACKOFF)
    }

    /// The wait after round `round` (1-based).
    #[must_use]
    pub fn delay(&self, round: u32) -> Duration {
        self.schedule().ceiling_after(round.saturating_sub(1))
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

/// The closure of one base asset (the first configured pair quoting it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairClosure {
    /// The pair the closing orders trade.
    pub pair: Pair,
    /// Side of the closing orders: on a spot account always `Sell` (what is held is sold).
    pub side: Side,
    /// Quantity the first balance read found to sell (rounded down to the lot decimals).
    pub target: Qty,
    /// Quantity the exchange reports filled on our closure orders.
    pub filled: Qty,
    /// Sellable quantity at the last balance read: the base asset's balance less what open
    /// orders hold, rounded down to the lot decimals; 0 below the order minimum.
    #[serde(default)]
    pub left: Qty,
    /// What the last balance read found below the order minimum (or the lot size): too
    /// small to sell, reported, not a failure.
    #[serde(default)]
    pub dust: Qty,
    /// Whether a balance read after the last order resolved confirmed `left`.
    #[serde(default)]
    pub verified: bool,
    /// Client order ids used, in order.
    pub orders: Vec<ClientOrderId>,
    /// Orders whose final fill is still unknown.
    pub unresolved: Vec<ClientOrderId>,
    /// The last error or rejection, if any.
    pub last_error: Option<String>,
}

impl PairClosure {
    /// Quantity still to sell as last read (never negative).
    #[must_use]
    pub fn remaining(&self) -> Qty {
        self.left.max(Decimal::ZERO)
    }

    /// Closed for certain: a balance read after the last order showed nothing sellable
    /// left (dust aside), and no order is unresolved.
    #[must_use]
    pub fn is_flat(&self) -> bool {
        self.verified && self.remaining().is_zero() && self.unresolved.is_empty()
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
    /// Why the account's holdings could not be read at all (nothing is known to be flat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

impl ClosureReport {
    /// One line per position still open, the dust left, and the cancel failure if any.
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
        if let Some(e) = &self.unread {
            parts.push(format!("balances unreadable: {e}"));
        }
        for p in self.pairs.iter().filter(|p| !p.is_flat()) {
            let why = p.last_error.as_deref().unwrap_or(if p.verified {
                "no fill confirmed"
            } else {
                "balance not confirmed"
            });
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
        let dust: Vec<String> = self
            .pairs
            .iter()
            .filter(|p| p.is_flat() && !p.dust.is_zero())
            .map(|p| format!("{} {} {}", p.pair, p.dust, p.pair.base()))
            .collect();
        if parts.is_empty() {
            let mut line = if self.pairs.is_empty() {
                "nothing to close".to_owned()
            } else {
                format!("{} position(s) closed", self.pairs.len())
            };
            if !dust.is_empty() {
                line.push_str(&format!(
                    " (flat with dust below the order minimum: {})",
                    dust.join(", ")
                ));
            }
            line
        } else {
            parts.join("; ")
        }
    }
}

/// The deterministic client order id of a closure order: the first 128 bits of
/// SHA-256 over the halt id, pair and round, as 32 hex digits — a form Kraken accepts
/// as `cl_ord_id` (a UUID without dashes) whatever the halt id or pair, where readable
/// text could exceed Kraken's 18 characters. The same halt, pair and round always give
/// the same id, so a retried placement stays idempotent. The mapping back (id → halt id,
/// round, pair) is journaled: every `closure_result` lists each pair's order ids.
#[must_use]
pub fn closure_client_id(halt_id: u64, pair: &Pair, round: u32) -> ClientOrderId {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("gf-halt closure\n{halt_id}\n{pair}\n{round}"));
    let mut first = [0_u8; 16];
    first.copy_from_slice(&digest[..16]);
    ClientOrderId::from_u128(u128::from_be_bytes(first))
}

/// Mints sealed closure orders with the gate's opener. Only the holder of the opener (the
/// halt coordinator) can build one.
pub struct ClosureMint<'a> {
    opener: &'a GateOpener,
}

impl std::fmt::Debug for ClosureMint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosureMint")
            .field("opener", self.opener)
            .finish()
    }
}

impl<'a> ClosureMint<'a> {
    /// Mints with `opener`.
    #[must_use]
    pub fn new(opener: &'a GateOpener) -> Self {
        Self { opener }
    }

    /// A sealed market order closing `qty` of `held`, the side opposite it. Never
    /// `reduce_only`: on a spot account there is no margin position for it to reduce, and
    /// Kraken rejects a reduce-only order without one.
    ///
    /// `held` is the position as the exchange's balance shows it, not the portfolio's: on
    /// a spot account the holding *is* the balance (the portfolio may lag a fill, or not
    /// know what a previous run or a human bought), and a seal checked against it still
    /// binds the order to this gate, its id, pair and side and caps it at what the account
    /// holds — so a closure can neither buy nor sell more than is there.
    ///
    /// # Errors
    /// [`gf_core::Error::ClosureRefused`] when `held` is flat, or smaller than `qty`.
    pub fn order(
        &self,
        client_order_id: ClientOrderId,
        held: &Position,
        qty: Qty,
    ) -> Result<OrderRequest, gf_core::Error> {
        let seal = self.opener.seal_closure(&client_order_id, held, qty)?;
        Ok(OrderRequest {
            client_order_id,
            pair: held.pair.clone(),
            side: seal.side(),
            order_type: OrderType::Market,
            qty,
            limit_price: None,
            time_in_force: TimeInForce::Gtc,
            reduce_only: false,
            post_only: false,
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
    let mut backoff = policy.schedule();
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
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
    outcome
}

/// `qty` rounded down to `decimals` places (a sell never exceeds what is held).
#[must_use]
pub fn round_down(qty: Qty, decimals: u32) -> Qty {
    qty.round_dp_with_strategy(decimals, rust_decimal::RoundingStrategy::ToZero)
}

/// What can be sold of `free` under `rules`: `(sellable, dust)`. Rounded down to the lot
/// decimals; below the order minimum nothing is sellable and all of it is dust.
#[must_use]
pub fn sellable(free: Qty, rules: Option<gf_exec::LotRules>) -> (Qty, Qty) {
    let free = free.max(Decimal::ZERO);
    let qty = rules.map_or(free, |r| round_down(free, r.lot_decimals));
    let below_min = rules.and_then(|r| r.ordermin).is_some_and(|min| qty < min);
    if qty.is_zero() || below_min {
        (Decimal::ZERO, free)
    } else {
        (qty, free - qty)
    }
}

/// One read of the account: per pair, the free balance of its base asset (balance less
/// what open orders hold). Pairs not listed by the exchange hold nothing.
async fn read_holdings(
    exchange: &dyn Exchange,
    policy: RetryPolicy,
) -> Result<BTreeMap<Pair, Qty>, gf_exec::Error> {
    let positions = policy.bounded("Balance", exchange.open_positions()).await?;
    let open = policy.bounded("OpenOrders", exchange.open_orders()).await?;
    let mut held: BTreeMap<String, Qty> = BTreeMap::new();
    for o in open.iter().filter(|o| o.side == Side::Sell) {
        *held.entry(o.pair.base().to_owned()).or_default() +=
            (o.qty - o.filled_qty).max(Decimal::ZERO);
    }
    Ok(positions
        .into_iter()
        .map(|p| {
            let on_order = held.get(p.pair.base()).copied().unwrap_or_default();
            let free = (p.qty - on_order).max(Decimal::ZERO);
            (p.pair, free)
        })
        .collect())
}

struct Work {
    closure: PairClosure,
    fills: BTreeMap<ClientOrderId, Qty>,
    /// Free balance at the last read (unrounded): the position seals are checked against.
    free: Qty,
    /// Whether any balance read has been taken in (the first sets the target).
    seen: bool,
}

impl Work {
    fn new(pair: Pair) -> Self {
        Self {
            closure: PairClosure {
                pair,
                side: Side::Sell,
                target: Decimal::ZERO,
                filled: Decimal::ZERO,
                left: Decimal::ZERO,
                dust: Decimal::ZERO,
                verified: false,
                orders: Vec::new(),
                unresolved: Vec::new(),
                last_error: None,
            },
            fills: BTreeMap::new(),
            free: Decimal::ZERO,
            seen: false,
        }
    }

    fn refresh_filled(&mut self) {
        self.closure.filled = self.fills.values().copied().sum();
    }

    /// Takes a balance read in (only when no order of ours can still fill).
    fn observe(&mut self, free: Qty, rules: Option<gf_exec::LotRules>) {
        let (qty, dust) = sellable(free, rules);
        self.free = free;
        self.closure.left = qty;
        self.closure.dust = dust;
        self.closure.verified = true;
        if !self.seen {
            self.seen = true;
            self.closure.target = qty;
        }
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
    let held = Position {
        qty: w.free,
        ..Position::flat(w.closure.pair.clone())
    };
    let order = match mint.order(id.clone(), &held, w.closure.left) {
        Ok(order) => order,
        Err(refused) => {
            // Nothing sent: the balance does not hold what this order would sell.
            tracing::warn!(cause = %refused, pair = %w.closure.pair, "closure order not sealed");
            w.closure.last_error = Some(refused.to_string());
            return;
        }
    };
    // Whatever happens next, the balance must be read again before this counts as flat.
    w.closure.verified = false;
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

/// Reads the account and takes the read into every pair no order of ours can still fill.
/// Pairs the exchange lists that are not yet worked on are added. Returns the read error.
async fn observe_all(
    exchange: &dyn Exchange,
    policy: RetryPolicy,
    work: &mut Vec<Work>,
) -> Option<String> {
    let holdings = match read_holdings(exchange, policy).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(cause = %e, "closure could not read the account's balances");
            for w in work.iter_mut() {
                w.closure.verified = false;
            }
            return Some(e.to_string());
        }
    };
    for pair in holdings.keys() {
        add_pair(work, pair);
    }
    for w in work.iter_mut().filter(|w| w.closure.unresolved.is_empty()) {
        let free = holdings.get(&w.closure.pair).copied().unwrap_or_default();
        let rules = exchange.lot_rules(&w.closure.pair);
        w.observe(free, rules);
    }
    None
}

/// Adds `pair` unless a pair with the same base asset is already worked on (its balance is
/// one: selling it through two pairs would sell it twice).
fn add_pair(work: &mut Vec<Work>, pair: &Pair) {
    if !work.iter().any(|w| w.closure.pair.base() == pair.base()) {
        work.push(Work::new(pair.clone()));
    }
}

/// What [`close_positions`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureRun {
    /// Per base asset.
    pub pairs: Vec<PairClosure>,
    /// Rounds used.
    pub rounds: u32,
    /// Set when no read of the balances succeeded at all.
    pub unread: Option<String>,
}

impl ClosureRun {
    /// Every pair flat and the balances read.
    #[must_use]
    pub fn flat(&self) -> bool {
        self.unread.is_none() && self.pairs.iter().all(PairClosure::is_flat)
    }
}

/// Flattens a spot account: sells, with sealed market orders (never `reduce_only`), what
/// the account holds of the base asset of each pair in `pairs` and of each pair the
/// exchange lists as held ([`Exchange::open_positions`]: the configured pairs) — the
/// balance less what open orders still hold, rounded down to the pair's lot decimals
/// ([`Exchange::lot_rules`]). After each order resolves the balance is read again; flat
/// means a read shows nothing sellable left, and a remainder below the order minimum is
/// reported as dust, not as a failure. Round numbers (in the client order ids) start at
/// `first_round`. Cancellation-safe between calls.
pub async fn close_positions(
    exchange: &dyn Exchange,
    mint: &ClosureMint<'_>,
    halt_id: u64,
    pairs: &[Pair],
    policy: RetryPolicy,
    first_round: u32,
) -> ClosureRun {
    let mut work: Vec<Work> = Vec::new();
    for pair in pairs {
        add_pair(&mut work, pair);
    }
    let mut rounds = 0;
    let mut read_once = false;
    let mut unread = None;
    let mut backoff = policy.schedule();
    for round in 1..=policy.max_attempts {
        rounds = round;
        let mut safe = Vec::with_capacity(work.len());
        for w in &mut work {
            safe.push(reconcile(exchange, policy, w).await);
        }
        match observe_all(exchange, policy, &mut work).await {
            None => {
                read_once = true;
                unread = None;
            }
            Some(e) => {
                if !read_once {
                    unread = Some(e.clone());
                }
                for w in &mut work {
                    w.closure.last_error = Some(format!("balance: {e}"));
                }
            }
        }
        let mut placed = false;
        for (i, w) in work.iter_mut().enumerate() {
            // Pairs the read added are safe: nothing of ours was placed for them.
            if safe.get(i).copied().unwrap_or(true)
                && w.closure.verified
                && !w.closure.remaining().is_zero()
            {
                let numbered = first_round.saturating_add(round - 1);
                place(exchange, mint, policy, halt_id, w, numbered).await;
                placed = true;
            }
        }
        // Verify by reading the balance again (pairs with an order still unresolved wait
        // for the next round).
        if placed && observe_all(exchange, policy, &mut work).await.is_none() {
            read_once = true;
        }
        if read_once && work.iter().all(|w| w.closure.is_flat()) {
            break;
        }
        if round < policy.max_attempts {
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
    // A last look at orders still unresolved, so the report says what really happened.
    for w in work.iter_mut().filter(|w| !w.closure.unresolved.is_empty()) {
        reconcile(exchange, policy, w).await;
    }
    ClosureRun {
        pairs: work.into_iter().map(|w| w.closure).collect(),
        rounds,
        unread,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::TradingGate;
    use gf_exec::{DeadManStatus, LotRules, OrderAck, OrderInfo};
    use parking_lot::Mutex;
    use rust_decimal_macros::dec;

    /// What the spot double does with the next closure order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Next {
        /// Fill it at once.
        Fill,
        /// Fill it, then answer with a timeout (the client never sees the ack).
        FillButTimeOut,
        /// Fill this much and leave the rest working.
        Partial(Decimal),
        /// Refuse it: insufficient funds.
        Refuse,
    }

    /// A spot account: balances per asset, market sells that fill from the balance, open
    /// orders that hold funds, scripted failures, and a balance read that can fail.
    #[derive(Default)]
    struct Spot {
        balances: Mutex<BTreeMap<String, Decimal>>,
        pairs: Vec<Pair>,
        rules: BTreeMap<Pair, LotRules>,
        script: Mutex<Vec<Next>>,
        orders: Mutex<BTreeMap<ClientOrderId, OrderInfo>>,
        placed: Mutex<Vec<OrderRequest>>,
        unreadable: bool,
        reads: Mutex<u32>,
    }

    impl Spot {
        fn new(pairs: &[&str], balances: &[(&str, Decimal)]) -> Self {
            Self {
                balances: Mutex::new(
                    balances
                        .iter()
                        .map(|(a, q)| ((*a).to_owned(), *q))
                        .collect(),
                ),
                pairs: pairs.iter().map(|p| pair(p)).collect(),
                ..Self::default()
            }
        }

        fn info(order: &OrderRequest, filled: Decimal, status: OrderStatus) -> OrderInfo {
            OrderInfo {
                order_id: gf_core::OrderId::new(format!("O-{}", order.client_order_id)),
                client_order_id: Some(order.client_order_id.clone()),
                pair: order.pair.clone(),
                side: order.side,
                order_type: order.order_type,
                qty: order.qty,
                filled_qty: filled,
                limit_price: None,
                avg_price: None,
                status,
                reduce_only: order.reduce_only,
                opened_at: None,
            }
        }

        fn sell(&self, order: &OrderRequest, qty: Decimal) {
            *self
                .balances
                .lock()
                .entry(order.pair.base().to_owned())
                .or_default() -= qty;
        }
    }

    #[async_trait::async_trait]
    impl Exchange for Spot {
        async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, gf_exec::Error> {
            self.placed.lock().push(order.clone());
            // Kraken's rule: reduce-only needs an open margin position; a spot account has
            // none.
            if order.reduce_only {
                return Err(gf_exec::Error::Api {
                    endpoint: "AddOrder".into(),
                    kind: gf_core::ApiErrorKind::InvalidArguments,
                    message: "EOrder:Reduce only:No position".into(),
                });
            }
            let next = {
                let mut script = self.script.lock();
                if script.is_empty() {
                    Next::Fill
                } else {
                    script.remove(0)
                }
            };
            let ack = |status| OrderAck {
                order_id: gf_core::OrderId::new(format!("O-{}", order.client_order_id)),
                client_order_id: order.client_order_id.clone(),
                status,
            };
            let (filled, status) = match next {
                Next::Refuse => {
                    return Err(gf_exec::Error::Api {
                        endpoint: "AddOrder".into(),
                        kind: gf_core::ApiErrorKind::InsufficientFunds,
                        message: "EOrder:Insufficient funds".into(),
                    });
                }
                Next::Partial(q) => (q, OrderStatus::PartiallyFilled),
                Next::Fill | Next::FillButTimeOut => (order.qty, OrderStatus::Filled),
            };
            self.sell(order, filled);
            self.orders.lock().insert(
                order.client_order_id.clone(),
                Self::info(order, filled, status),
            );
            if next == Next::FillButTimeOut {
                return Err(gf_exec::Error::Timeout {
                    endpoint: "AddOrder".into(),
                    millis: 5,
                });
            }
            Ok(ack(status))
        }

        async fn cancel_order(&self, order: &OrderRef) -> Result<(), gf_exec::Error> {
            if let OrderRef::Client(id) = order
                && let Some(o) = self.orders.lock().get_mut(id)
            {
                o.status = OrderStatus::Cancelled;
            }
            Ok(())
        }

        async fn cancel_all(&self) -> Result<u32, gf_exec::Error> {
            Ok(0)
        }

        async fn cancel_all_after(&self, _: u32) -> Result<DeadManStatus, gf_exec::Error> {
            Ok(DeadManStatus { trigger_at: None })
        }

        async fn open_orders(&self) -> Result<Vec<OrderInfo>, gf_exec::Error> {
            Ok(self
                .orders
                .lock()
                .values()
                .filter(|o| !o.status.is_terminal())
                .cloned()
                .collect())
        }

        async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, gf_exec::Error> {
            let OrderRef::Client(id) = order else {
                return Err(gf_exec::Error::UnknownOrder(format!("{order:?}")));
            };
            self.orders
                .lock()
                .get(id)
                .cloned()
                .ok_or_else(|| gf_exec::Error::UnknownOrder(id.to_string()))
        }

        async fn balances(&self) -> Result<BTreeMap<String, Decimal>, gf_exec::Error> {
            Ok(self.balances.lock().clone())
        }

        async fn open_positions(&self) -> Result<Vec<Position>, gf_exec::Error> {
            *self.reads.lock() += 1;
            if self.unreadable {
                return Err(gf_exec::Error::Timeout {
                    endpoint: "Balance".into(),
                    millis: 5,
                });
            }
            let balances = self.balances.lock();
            Ok(self
                .pairs
                .iter()
                .filter_map(|p| {
                    let qty = balances.get(p.base()).copied().unwrap_or_default();
                    (!qty.is_zero()).then(|| Position {
                        qty,
                        ..Position::flat(p.clone())
                    })
                })
                .collect())
        }

        async fn check(&self) -> Result<(), gf_exec::Error> {
            Ok(())
        }

        fn lot_rules(&self, pair: &Pair) -> Option<LotRules> {
            self.rules.get(pair).copied()
        }
    }

    /// Closes the account of `ex`, knowing of `known` from the portfolio.
    async fn close(ex: &Spot, halt_id: u64, known: &[&str]) -> ClosureRun {
        let gate = TradingGate::new_closed();
        let opener = gate.take_opener().unwrap();
        let mint = ClosureMint::new(&opener);
        let known: Vec<Pair> = known.iter().map(|p| pair(p)).collect();
        close_positions(ex, &mint, halt_id, &known, policy(), 1).await
    }

    fn pair(s: &str) -> Pair {
        Pair::new(s).unwrap()
    }

    fn held(p: &str, qty: Decimal) -> Position {
        Position {
            qty,
            ..Position::flat(pair(p))
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(10),
            call_timeout: CALL_TIMEOUT,
        }
    }

    fn doge_rules(ordermin: Decimal) -> BTreeMap<Pair, LotRules> {
        BTreeMap::from([(
            pair("DOGE/USD"),
            LotRules {
                lot_decimals: 8,
                ordermin: Some(ordermin),
            },
        )])
    }

    #[test]
    fn ids_are_deterministic_and_orders_are_sealed_against_the_balance() {
        let id = closure_client_id(7, &pair("XRP/USD"), 2);
        assert_eq!(
            id,
            closure_client_id(7, &pair("XRP/USD"), 2),
            "deterministic"
        );
        id.check_kraken().expect("an id Kraken accepts");
        assert_eq!(id.as_str().len(), 32);
        for other in [
            closure_client_id(8, &pair("XRP/USD"), 2),
            closure_client_id(7, &pair("DOGE/USD"), 2),
            closure_client_id(7, &pair("XRP/USD"), 3),
        ] {
            assert_ne!(id, other);
        }
        closure_client_id(u64::MAX, &pair("DOGE/USDT"), u32::MAX)
            .check_kraken()
            .unwrap();
        let gate = TradingGate::new_closed();
        let opener = gate.take_opener().unwrap();
        let mint = ClosureMint::new(&opener);
        let o = mint
            .order(
                closure_client_id(7, &pair("DOGE/USD"), 1),
                &held("DOGE/USD", dec!(50)),
                dec!(50),
            )
            .unwrap();
        assert_eq!(o.side, Side::Sell);
        assert!(!o.reduce_only, "spot: never reduce-only");
        assert!(o.is_closure() && o.is_sealed());
        assert_eq!(o.order_type, OrderType::Market);
        o.validate().unwrap();
        drop(
            gate.enter(&o)
                .expect("a sealed closure passes the closed gate"),
        );
        // More than the balance holds, or nothing held: no seal.
        for (h, qty) in [(dec!(50), dec!(51)), (dec!(0), dec!(1))] {
            let err = mint
                .order(
                    closure_client_id(7, &pair("DOGE/USD"), 1),
                    &held("DOGE/USD", h),
                    qty,
                )
                .unwrap_err();
            assert!(
                matches!(err, gf_core::Error::ClosureRefused { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn sellable_rounds_down_and_leaves_dust_below_the_minimum() {
        let rules = Some(LotRules {
            lot_decimals: 2,
            ordermin: Some(dec!(5)),
        });
        assert_eq!(sellable(dec!(12.349), rules), (dec!(12.34), dec!(0.009)));
        assert_eq!(sellable(dec!(4.999), rules), (dec!(0), dec!(4.999)));
        assert_eq!(sellable(dec!(-1), rules), (dec!(0), dec!(0)));
        assert_eq!(sellable(dec!(0.3), None), (dec!(0.3), dec!(0)));
        assert_eq!(round_down(dec!(0.999), 0), dec!(0));
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
        // The loops' schedule gives the same waits, round after round.
        let mut schedule = p.schedule();
        for round in 1..=40 {
            assert_eq!(schedule.next_delay(), p.delay(round), "round {round}");
        }
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
        let mut ex = gf_exec::MockExchange::new();
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

        let mut ex = gf_exec::MockExchange::new();
        ex.expect_cancel_all()
            .times(1)
            .returning(|| Err(gf_exec::Error::Halted));
        let out = cancel_all_with_retry(&ex, policy()).await;
        assert_eq!(out.cancelled, None);
        assert!(out.error.unwrap().contains("halted"));
    }

    #[tokio::test(start_paused = true)]
    async fn sells_the_balance_less_what_orders_hold_rounded_down_then_verifies() {
        // The portfolio knows nothing of DOGE (bought by hand): the exchange lists it.
        let mut ex = Spot::new(
            &["XRP/USD", "DOGE/USD"],
            &[("DOGE", dec!(1234.567891234)), ("USD", dec!(10))],
        );
        ex.rules = doge_rules(dec!(5));
        // A sell order the cancel did not take holds 34 DOGE.
        let resting = OrderRequest::limit(
            ClientOrderId::new("resting"),
            pair("DOGE/USD"),
            Side::Sell,
            dec!(34),
            dec!(9),
        );
        ex.orders.lock().insert(
            resting.client_order_id.clone(),
            Spot::info(&resting, Decimal::ZERO, OrderStatus::Open),
        );
        let run = close(&ex, 4, &["XRP/USD"]).await;
        assert!(run.flat(), "{run:?}");
        let placed = ex.placed.lock().clone();
        assert_eq!(placed.len(), 1, "{placed:?}");
        assert_eq!(placed[0].qty, dec!(1200.56789123));
        assert_eq!(placed[0].side, Side::Sell);
        assert!(!placed[0].reduce_only);
        let doge = run
            .pairs
            .iter()
            .find(|p| p.pair == pair("DOGE/USD"))
            .unwrap();
        assert_eq!(doge.target, dec!(1200.56789123));
        assert_eq!(doge.filled, dec!(1200.56789123));
        // What is left after the sale is below a lot: dust, and the read that saw it ran
        // after the order (one read before, one after).
        assert_eq!(doge.dust, dec!(0.000000004));
        assert!(doge.verified && doge.is_flat());
        assert_eq!(*ex.reads.lock(), 2);
        let xrp = run
            .pairs
            .iter()
            .find(|p| p.pair == pair("XRP/USD"))
            .unwrap();
        assert!(xrp.is_flat() && xrp.orders.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dust_below_the_order_minimum_is_flat_not_a_failure() {
        let mut ex = Spot::new(&["DOGE/USD"], &[("DOGE", dec!(3.5))]);
        ex.rules = doge_rules(dec!(5));
        let run = close(&ex, 1, &["DOGE/USD"]).await;
        assert!(run.flat(), "{run:?}");
        assert!(ex.placed.lock().is_empty(), "nothing sellable was sold");
        assert_eq!(run.pairs[0].dust, dec!(3.5));
        let report = ClosureReport {
            flat: run.flat(),
            cancel: None,
            rounds: run.rounds,
            pairs: run.pairs,
            unread: None,
        };
        assert!(
            report.detail().contains("dust") && report.detail().contains("3.5 DOGE"),
            "{}",
            report.detail()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_then_reconcile_never_doubles() {
        // Round 1: place times out, but the exchange did fill it. Round 2 must find that
        // out by client id, read the balance and place nothing more.
        let ex = Spot::new(&["XRP/USD"], &[("XRP", dec!(100))]);
        ex.script.lock().push(Next::FillButTimeOut);
        let run = close(&ex, 1, &["XRP/USD"]).await;
        assert_eq!(run.rounds, 2);
        assert!(run.flat(), "{run:?}");
        assert_eq!(ex.placed.lock().len(), 1);
        assert_eq!(run.pairs[0].filled, dec!(100));
        assert_eq!(ex.balances.lock()["XRP"], dec!(0));
    }

    #[tokio::test(start_paused = true)]
    async fn partial_fill_then_rest_in_next_round() {
        let ex = Spot::new(&["XRP/USD"], &[("XRP", dec!(100))]);
        ex.script.lock().push(Next::Partial(dec!(60)));
        let run = close(&ex, 1, &["XRP/USD"]).await;
        assert!(run.flat(), "{run:?}");
        let placed = ex.placed.lock().clone();
        assert_eq!(placed.len(), 2, "{placed:?}");
        assert_eq!(placed[1].qty, dec!(40), "only what the balance still holds");
        assert_eq!(
            placed[1].client_order_id,
            closure_client_id(1, &pair("XRP/USD"), 3)
        );
        assert_eq!(run.pairs[0].filled, dec!(100));
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_are_retried_then_reported() {
        let ex = Spot::new(&["DOGE/USD"], &[("DOGE", dec!(20))]);
        ex.script
            .lock()
            .extend([Next::Refuse, Next::Refuse, Next::Refuse]);
        let run = close(&ex, 3, &["DOGE/USD"]).await;
        assert_eq!(run.rounds, 3);
        assert!(!run.flat());
        assert_eq!(run.pairs[0].remaining(), dec!(20));
        let report = ClosureReport {
            flat: false,
            cancel: None,
            rounds: run.rounds,
            pairs: run.pairs,
            unread: run.unread,
        };
        assert!(
            report.detail().contains("DOGE/USD 20 remaining of 20"),
            "{}",
            report.detail()
        );
        assert!(report.detail().contains("Insufficient funds"));
    }

    #[tokio::test(start_paused = true)]
    async fn unreadable_balances_are_never_flat() {
        let mut ex = Spot::new(&["DOGE/USD"], &[("DOGE", dec!(20))]);
        ex.unreadable = true;
        let run = close(&ex, 1, &[]).await;
        assert!(!run.flat());
        assert!(run.unread.as_deref().is_some_and(|e| e.contains("Balance")));
        assert_eq!(*ex.reads.lock(), 3, "read once per round");
        assert!(ex.placed.lock().is_empty());
        let known = close(&ex, 1, &["DOGE/USD"]).await;
        assert!(!known.flat() && !known.pairs[0].is_flat());
    }
}
