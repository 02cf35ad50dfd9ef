//! The order gateway: orders of external strategies (`POST /api/v1/orders` with a `trader`
//! token) pass the same pre-trade checks and trading gate as the daemon's own, and the
//! client never holds the exchange keys.
//!
//! - **Idempotent**: the trader's `client_order_id` is a key scoped to the trader. A retry
//!   with the same key and body returns the first result (the order as it stands now, or
//!   the same final refusal) and never places a second order; the same key with another
//!   body is a conflict. Concurrent retries wait for the first to settle.
//! - **Exchange ids of our own**: the order sent to the exchange carries a random 128-bit
//!   `cl_ord_id` (a form Kraken accepts), so traders cannot collide with each other or
//!   with the internal strategy.
//! - **Fail closed**: a closed gate refuses before anything else is done; the order is
//!   journaled under the trader's name before it can reach the exchange (no journal, no
//!   order); an exchange answer that was lost leaves the order `pending` and reconciles it
//!   instead of calling it refused.
//! - **Limits per token**: a token bucket of `gateway.orders_per_second` with
//!   `gateway.order_burst`, and at most `gateway.max_open_orders` open orders (in flight
//!   included). Refusals over a limit say when to retry and are not final.
//! - **A sequenced feed per trader** ([`Gateway::feed_after`]): every change of one of its
//!   orders, its fills, and every halt and resume, numbered 1, 2, 3… within an epoch (a
//!   daemon run), kept up to `gateway.feed_capacity` frames so a reconnecting client
//!   resumes from the last number it saw and misses nothing.
//! - **Remembered across restarts**: at start the gateway re-reads its journal records, so
//!   a retry after a restart still finds its first result; orders that were open are
//!   reconciled with the exchange.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gf_api::{GatewayFill, GatewayOrder, Num, OrderFeedFrame, PlaceOrder};
use gf_core::config::{GatewayConfig, Limits};
use gf_core::{
    ClientOrderId, Event, EventBus, EventKind, HaltState, KindSet, OrderRequest, OrderStatus,
    Payload, SharedClock, Source, Subscription,
};
use gf_exec::{Exchange, OrderRef};
use gf_halt::HaltCoordinator;
use gf_risk::{PreTradeCheck, SharedPortfolio, Verdict};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod feed;
mod limits;
mod outcome;
mod request;

pub use feed::FeedRead;
pub use limits::REFUSAL_RECORDS_PER_SEC;
pub use outcome::{CancelError, Placed, Refusal, Refused};
pub use request::{MAX_CLIENT_ORDER_ID, StatusFilter, to_order};

use feed::Feed;
use limits::{Bucket, RefusalBudget};
use outcome::FINAL_CODES;
use request::differences;

/// Journal kind of an order accepted from a trader (written before it can reach the
/// exchange).
pub const ORDER_KIND: &str = "gateway_order";
/// Journal kind of a refused order.
pub const REFUSAL_KIND: &str = "gateway_refusal";
/// Journal kind of a trader's cancel request.
pub const CANCEL_KIND: &str = "gateway_cancel";

type Key = (String, String);

/// One order the gateway tracks.
#[derive(Debug, Clone)]
struct Tracked {
    trader: String,
    client_order_id: String,
    request: OrderRequest,
    order_id: Option<String>,
    status: OrderStatus,
    filled: Decimal,
    filled_by_fills: Decimal,
    filled_notional: Decimal,
    fees: Decimal,
    trades: HashSet<String>,
    /// Fills that arrived before the order's first feed frame.
    unsent_fills: Vec<GatewayFill>,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Counted in its trader's open orders (until terminal).
    counted_open: bool,
}

impl Tracked {
    /// A pending order of trader `key.0` (its id `key.1`), nothing filled yet, counted
    /// open.
    fn pending(
        key: &(String, String),
        request: OrderRequest,
        reason: Option<String>,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            trader: key.0.clone(),
            client_order_id: key.1.clone(),
            request,
            order_id: None,
            status: OrderStatus::Pending,
            filled: Decimal::ZERO,
            filled_by_fills: Decimal::ZERO,
            filled_notional: Decimal::ZERO,
            fees: Decimal::ZERO,
            trades: HashSet::new(),
            unsent_fills: Vec::new(),
            reason,
            created_at,
            updated_at: now,
            counted_open: true,
        }
    }

    fn wire(&self) -> GatewayOrder {
        let r = &self.request;
        GatewayOrder {
            client_order_id: self.client_order_id.clone(),
            trader: self.trader.clone(),
            exchange_client_order_id: r.client_order_id.to_string(),
            order_id: self.order_id.clone(),
            pair: r.pair.to_string(),
            side: word(&r.side),
            order_type: word(&r.order_type),
            qty: Num::from(r.qty),
            limit_price: r.limit_price.map(Num::from),
            time_in_force: word(&r.time_in_force),
            post_only: r.post_only,
            status: word(&self.status),
            filled_qty: Num::from(self.filled),
            avg_fill_price: (!self.filled.is_zero())
                .then(|| self.filled_notional.checked_div(self.filled))
                .flatten()
                .map(Num::from),
            fees: Num::from(self.fees),
            reason: self.reason.clone(),
            created_at: Some(self.created_at),
            updated_at: Some(self.updated_at),
        }
    }
}

fn word<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// How far an order has come; a status never moves back.
fn rank(s: OrderStatus) -> u8 {
    match s {
        OrderStatus::Pending => 0,
        OrderStatus::Open => 1,
        OrderStatus::PartiallyFilled => 2,
        OrderStatus::Filled
        | OrderStatus::Cancelled
        | OrderStatus::Rejected
        | OrderStatus::Expired => 3,
    }
}

#[derive(Debug)]
enum Outcome {
    /// Being placed: replays wait. The order is tracked already, so the exchange's events
    /// for it are not lost.
    InFlight,
    Accepted,
    Refused(Refusal),
}

#[derive(Debug)]
struct Slot {
    request: PlaceOrder,
    outcome: Outcome,
    /// Tracked once it is sent to the exchange (the exchange id is in `by_exchange`).
    tracked: Option<Tracked>,
}

#[derive(Debug)]
struct Trader {
    limits: Limits,
    bucket: Bucket,
    open: usize,
    feed: Feed,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<Key, Slot>,
    by_exchange: HashMap<ClientOrderId, Key>,
    /// Keys in the order they were first seen, for listing and forgetting.
    log: VecDeque<Key>,
    fills: VecDeque<GatewayFill>,
    traders: HashMap<String, Trader>,
}

/// The order gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("epoch", &self.inner.epoch)
            .finish_non_exhaustive()
    }
}

struct Inner {
    cfg: GatewayConfig,
    clock: SharedClock,
    bus: EventBus,
    portfolio: SharedPortfolio,
    halt: HaltCoordinator,
    exchange: Arc<dyn Exchange>,
    epoch: String,
    metrics: Option<gf_monitor::Metrics>,
    /// Records waiting for the group commit, and the lock of whoever writes them
    /// ([`Gateway::journal`]).
    journal_queue: Mutex<Vec<PendingRecord>>,
    journal_writer: tokio::sync::Mutex<()>,
    /// Refusal records per trader in the current second ([`Gateway::journal_refusal`]).
    refusal_budget: Mutex<HashMap<String, RefusalBudget>>,
    state: Mutex<State>,
    /// A slot settled or a frame was appended.
    changed: Notify,
}

impl Gateway {
    /// A gateway placing through `exchange` (the gated one) after `portfolio`'s checks,
    /// journaling with `halt`.
    #[must_use]
    pub fn new(
        cfg: GatewayConfig,
        clock: SharedClock,
        bus: EventBus,
        portfolio: SharedPortfolio,
        halt: HaltCoordinator,
        exchange: Arc<dyn Exchange>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                clock,
                bus,
                portfolio,
                halt,
                exchange,
                epoch: format!("{:016x}", rand::random::<u64>()),
                metrics: None,
                refusal_budget: Mutex::new(HashMap::new()),
                journal_queue: Mutex::new(Vec::new()),
                journal_writer: tokio::sync::Mutex::new(()),
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// Counts every order request in `metrics` (`gf_gateway_orders_total{trader,outcome}`).
    /// Call before cloning the gateway.
    #[must_use]
    pub fn with_metrics(mut self, metrics: gf_monitor::Metrics) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = Some(metrics);
        }
        self
    }

    /// This run's epoch: sequence numbers of the feed start at 1 in each.
    #[must_use]
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// The event kinds [`Gateway::run`] follows.
    #[must_use]
    pub fn kinds() -> KindSet {
        KindSet::of(&[
            EventKind::OrderUpdate,
            EventKind::Fill,
            EventKind::HaltStateChanged,
            EventKind::Resumed,
        ])
    }

    /// Places a trader's order: the request checked, the idempotency key looked up, the
    /// gate, the per-token limits, the journal, the pre-trade checks and the gated
    /// exchange, in that order.
    ///
    /// # Errors
    /// [`Refused`] saying why; see [`Refusal::is_final`].
    pub async fn place(&self, trader: &str, request: PlaceOrder) -> Result<Placed, Refused> {
        let result = self.place_inner(trader, request).await;
        if let Some(m) = &self.inner.metrics {
            let outcome = match &result {
                Ok(p) if p.replayed => "replayed",
                Ok(_) => "accepted",
                Err(r) => r.refusal.code(),
            };
            m.count_gateway_order(trader, outcome);
        }
        result
    }

    async fn place_inner(&self, trader: &str, request: PlaceOrder) -> Result<Placed, Refused> {
        if !self.inner.cfg.enabled {
            return Err(Refusal::Disabled.into());
        }
        let order = to_order(&request)?;
        let key: Key = (trader.to_owned(), request.client_order_id.clone());
        loop {
            let settled = self.inner.changed.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            {
                let mut st = self.inner.state.lock();
                if let Some(slot) = st.slots.get(&key) {
                    let fields = differences(&slot.request, &request);
                    if !fields.is_empty() {
                        return Err(Refusal::Conflict {
                            client_order_id: request.client_order_id,
                            fields,
                        }
                        .into());
                    }
                    match &slot.outcome {
                        Outcome::InFlight => {}
                        Outcome::Accepted => {
                            let order =
                                slot.tracked.as_ref().map(Tracked::wire).unwrap_or_default();
                            return Ok(Placed {
                                order,
                                replayed: true,
                            });
                        }
                        Outcome::Refused(refusal) => {
                            return Err(Refused {
                                refusal: refusal.clone(),
                                replayed: true,
                            });
                        }
                    }
                } else {
                    self.admit(&mut st, &key, &request)?;
                    break;
                }
            }
            settled.await;
        }
        // The placement runs in a task of its own: a caller that goes away (an HTTP client
        // that disconnects drops the handler's future) must neither leave the key in flight
        // for ever (its retries would wait for ever, its open-order place never be
        // released) nor abandon an order that may already be on the wire.
        let this = self.clone();
        match tokio::spawn(async move { this.send(key, request, order).await }).await {
            Ok(result) => Ok(result?),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: only when the runtime shuts down.
            Err(e) => Err(Refusal::Exchange(format!("the placement was abandoned: {e}")).into()),
        }
    }

    /// With the state locked and the key new: refuses on a closed gate (final, recorded
    /// under the key) or over a limit (not recorded), else reserves the key.
    fn admit(&self, st: &mut State, key: &Key, request: &PlaceOrder) -> Result<(), Refused> {
        let inner = &self.inner;
        if !inner.halt.gate().is_open() {
            let refusal = self.halted();
            remember(st, key, request, Outcome::Refused(refusal.clone()), None);
            self.journal_refusal(key, request, &refusal);
            return Err(refusal.into());
        }
        let now = inner.clock.now();
        let cfg = &inner.cfg;
        let trader = st
            .traders
            .entry(key.0.clone())
            .or_insert_with(|| Trader::new(cfg, &key.0, now));
        let limits = trader.limits;
        if trader.open >= limits.max_open_orders as usize {
            let refusal = Refusal::RateLimited {
                limit: "open_orders",
                max: limits.max_open_orders,
                retry_after_secs: 1,
            };
            self.journal_refusal(key, request, &refusal);
            return Err(refusal.into());
        }
        if let Err(retry_after_secs) = trader.bucket.take(now, &limits) {
            let refusal = Refusal::RateLimited {
                limit: "orders_per_second",
                max: limits.orders_per_second,
                retry_after_secs,
            };
            self.journal_refusal(key, request, &refusal);
            return Err(refusal.into());
        }
        trader.open += 1;
        remember(st, key, request, Outcome::InFlight, None);
        evict(st, cfg.max_remembered_orders);
        Ok(())
    }

    /// The refusal for a closed gate, naming the halt in force.
    fn halted(&self) -> Refusal {
        let status = self.inner.halt.status();
        let halt = status.halt.as_ref();
        Refusal::Halted {
            halt_id: halt.map(|h| h.id),
            by: halt.map(|h| h.source.to_string()),
            reason: halt.map(|h| h.reason.clone()),
            state: word(&status.state),
        }
    }

    /// Journals, checks and sends an admitted order, and settles its key.
    async fn send(
        &self,
        key: Key,
        request: PlaceOrder,
        order: OrderRequest,
    ) -> Result<Placed, Refusal> {
        let inner = &self.inner;
        // `order_sent`: from admission to the order handed to the exchange.
        let admitted = inner.clock.now();
        let journaled = self
            .journal(
                ORDER_KIND,
                &key.0,
                json!({
                    "client_order_id": key.1,
                    "exchange_client_order_id": order.client_order_id,
                    "request": request,
                }),
            )
            .await;
        if let Err(e) = journaled {
            // A failed journal write halts through the journal's hook; place nothing.
            tracing::warn!(trader = %key.0, order = %key.1, cause = %e, "gateway order not journaled: not placed");
            self.forget(&key);
            return Err(Refusal::NotJournaled(e.to_string()));
        }
        let order = match inner.portfolio.check(order) {
            Verdict::Approved(order) => order,
            Verdict::Refused { order, reason } => {
                inner.bus.publish(Event::new(
                    inner.clock.now(),
                    Source::Risk,
                    Payload::rejected(&order, reason.to_string()),
                ));
                return Err(self.refuse(&key, &request, Refusal::Risk(reason)));
            }
        };
        // Tracked before it is sent: the exchange's events for it may arrive before its
        // answer does.
        {
            let now = inner.clock.now();
            let mut st = inner.state.lock();
            st.by_exchange
                .insert(order.client_order_id.clone(), key.clone());
            if let Some(slot) = st.slots.get_mut(&key) {
                slot.tracked = Some(Tracked::pending(&key, order.clone(), None, now, now));
            }
        }
        if let Some(m) = &inner.metrics {
            m.record_latency(
                gf_core::latency::stage::ORDER_SENT,
                gf_core::latency::micros_between(admitted, inner.clock.now()),
            );
        }
        match inner.exchange.place_order(&order).await {
            Ok(ack) => Ok(self.accept(&key, |t| {
                t.order_id = Some(ack.order_id.to_string());
                if t.status == OrderStatus::Pending {
                    t.status = ack.status;
                }
            })),
            Err(e) if e.is_ambiguous() => {
                // The order may be at the exchange: never call it refused. It stays
                // pending and is looked up.
                tracing::warn!(trader = %key.0, order = %key.1, cause = %e, "gateway order's answer lost: reconciling");
                let placed = self.accept(&key, |t| {
                    t.reason = Some(format!(
                        "sent; the exchange's answer was lost ({e}): reconciling"
                    ));
                });
                let this = self.clone();
                let id = order.client_order_id.clone();
                tokio::spawn(async move { this.reconcile(&id, false, 0).await });
                Ok(placed)
            }
            Err(e) => {
                inner.portfolio.release(&order.client_order_id);
                let refusal = match e {
                    gf_exec::Error::Halted => self.halted(),
                    gf_exec::Error::Rejected { ref reason, .. }
                        if reason.starts_with("exchange_") =>
                    {
                        let mode = reason
                            .strip_prefix("exchange_")
                            .and_then(|r| r.split(':').next())
                            .unwrap_or("unknown")
                            .to_owned();
                        Refusal::Venue {
                            mode,
                            message: reason.clone(),
                        }
                    }
                    other => Refusal::Exchange(other.to_string()),
                };
                inner
                    .state
                    .lock()
                    .by_exchange
                    .remove(&order.client_order_id);
                Err(self.refuse(&key, &request, refusal))
            }
        }
    }

    /// Settles `key` as accepted, applies `f` to its order and publishes it on the feed.
    fn accept(&self, key: &Key, f: impl FnOnce(&mut Tracked)) -> Placed {
        let now = self.inner.clock.now();
        let order = {
            let mut st = self.inner.state.lock();
            let (order, fills) = st
                .slots
                .get_mut(key)
                .and_then(|slot| {
                    slot.outcome = Outcome::Accepted;
                    let t = slot.tracked.as_mut()?;
                    f(t);
                    t.updated_at = now;
                    Some((t.wire(), std::mem::take(&mut t.unsent_fills)))
                })
                .unwrap_or_default();
            let frame_order = order.clone();
            let cap = self.inner.cfg.feed_capacity;
            if let Some(trader) = st.traders.get_mut(&key.0) {
                trader.feed.push(cap, |seq| OrderFeedFrame::Order {
                    seq,
                    order: frame_order,
                });
                for fill in fills {
                    trader
                        .feed
                        .push(cap, |seq| OrderFeedFrame::Fill { seq, fill });
                }
            }
            settle_open(&mut st, key);
            order
        };
        self.inner.changed.notify_waiters();
        Placed {
            order,
            replayed: false,
        }
    }

    /// Settles `key` with a final refusal (or forgets it for one that is not final).
    fn refuse(&self, key: &Key, request: &PlaceOrder, refusal: Refusal) -> Refusal {
        self.journal_refusal(key, request, &refusal);
        if refusal.is_final() {
            let mut st = self.inner.state.lock();
            // Admitted orders count as open until settled; one whose rejection the
            // exchange already published was released then.
            let open = st.slots.get_mut(key).is_some_and(|slot| {
                slot.outcome = Outcome::Refused(refusal.clone());
                slot.tracked.take().is_none_or(|t| t.counted_open)
            });
            if open && let Some(trader) = st.traders.get_mut(&key.0) {
                trader.open = trader.open.saturating_sub(1);
            }
            drop(st);
            self.inner.changed.notify_waiters();
        } else {
            self.forget(key);
        }
        refusal
    }

    /// Forgets a key that was admitted but decided nothing (the journal failed).
    fn forget(&self, key: &Key) {
        let mut st = self.inner.state.lock();
        if st.slots.remove(key).is_some() {
            st.log.retain(|k| k != key);
            if let Some(trader) = st.traders.get_mut(&key.0) {
                trader.open = trader.open.saturating_sub(1);
            }
        }
        drop(st);
        self.inner.changed.notify_waiters();
    }

    /// Journals a refusal under the trader's name, in the background: the refusal is
    /// answered at once. A final refusal's record carries the request, so that a retry
    /// after a restart still gets it.
    ///
    /// A client refused in a loop (new ids while halted, retries over a limit) must not
    /// flood the journal: at most [`REFUSAL_RECORDS_PER_SEC`] records per token and second
    /// of the clock; beyond that refusals are counted (`gf_gateway_orders_total` still has
    /// each) and the next record says how many were not recorded one by one.
    fn journal_refusal(&self, key: &Key, request: &PlaceOrder, refusal: &Refusal) {
        let second = self.inner.clock.now().timestamp();
        let unrecorded = {
            let mut budgets = self.inner.refusal_budget.lock();
            let b = budgets.entry(key.0.clone()).or_default();
            if b.second != second {
                b.second = second;
                b.used = 0;
            }
            if b.used >= REFUSAL_RECORDS_PER_SEC {
                b.unrecorded += 1;
                return;
            }
            b.used += 1;
            std::mem::take(&mut b.unrecorded)
        };
        let trader = key.0.clone();
        let mut detail = json!({
            "client_order_id": key.1,
            "code": refusal.code(),
            "message": refusal.to_string(),
            "final": refusal.is_final(),
            "request": request,
        });
        if unrecorded > 0 {
            detail["unrecorded_before"] = unrecorded.into();
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.journal(REFUSAL_KIND, &trader, detail).await {
                tracing::warn!(%trader, cause = %e, "gateway refusal not journaled");
            }
        });
    }

    /// Journals one record through the gateway's group commit: the records that arrive
    /// while a commit is in progress are committed together in the next transaction, so
    /// concurrent orders share one `fsync` instead of queueing for one each. Whoever gets
    /// the writer's lock commits every record waiting (its own, if not already written,
    /// and the others'); the rest wait for their answer. No task of its own: nothing
    /// outlives the daemon. Returns once the record is durable.
    async fn journal(
        &self,
        kind: &'static str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(), String> {
        let (done, mut wait) = tokio::sync::oneshot::channel();
        self.inner.journal_queue.lock().push(PendingRecord {
            kind,
            actor: actor.to_owned(),
            detail,
            done,
        });
        let stopped = || "the gateway's journal writer stopped".to_owned();
        loop {
            tokio::select! {
                biased;
                answer = &mut wait => return answer.map_err(|_| stopped())?,
                _writer = self.inner.journal_writer.lock() => {
                    let batch: Vec<PendingRecord> = {
                        let mut queue = self.inner.journal_queue.lock();
                        let n = queue.len().min(MAX_GROUP);
                        queue.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        continue;
                    }
                    let (records, waiters): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .map(|p| ((p.kind.to_owned(), p.actor, p.detail), p.done))
                        .unzip();
                    let result = self
                        .inner
                        .halt
                        .record_many(records)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                    for waiter in waiters {
                        let _ = waiter.send(result.clone());
                    }
                    // Readers of the journal (tests, drills) wait on `changed` too.
                    self.inner.changed.notify_waiters();
                }
            }
        }
    }

    /// Asks the exchange what became of an order whose placement answer was lost. When
    /// the look-up fails and the order is still `pending`, asks again later (see
    /// [`Gateway::reconcile_later`]).
    async fn reconcile(&self, id: &ClientOrderId, restored: bool, attempt: u32) {
        let result = self.inner.exchange.reconcile_order(id).await;
        let now = self.inner.clock.now();
        let mut st = self.inner.state.lock();
        let Some(key) = st.by_exchange.get(id).cloned() else {
            return;
        };
        let cap = self.inner.cfg.feed_capacity;
        let Some(t) = st.slots.get_mut(&key).and_then(|s| s.tracked.as_mut()) else {
            return;
        };
        match result {
            Ok(Some(found)) => {
                t.order_id = Some(found.info.order_id.to_string());
                if rank(found.info.status) >= rank(t.status) {
                    t.status = found.info.status;
                }
                // How much filled, also when the exchange's updates were lost (the fills
                // carry the prices).
                t.filled = t.filled.max(found.info.filled_qty);
                t.reason = None;
            }
            Ok(None) if restored => {
                t.status = OrderStatus::Cancelled;
                t.reason = Some(
                    "unknown to the exchange after the restart: it never reached it, or (paper) the paper exchange's orders ended with the previous run".into(),
                );
            }
            Ok(None) => {
                t.status = OrderStatus::Rejected;
                t.reason = Some("the exchange never received the order".into());
            }
            Err(e) => {
                t.reason = Some(format!("outcome unknown: the lookup failed ({e})"));
                if t.status == OrderStatus::Pending {
                    // It may be at the exchange: it stays pending (and counted open) and
                    // is looked up again until the exchange answers.
                    tokio::spawn(self.reconcile_later(id.clone(), restored, attempt + 1));
                }
            }
        }
        t.updated_at = now;
        let order = t.wire();
        if let Some(trader) = st.traders.get_mut(&key.0) {
            trader
                .feed
                .push(cap, |seq| OrderFeedFrame::Order { seq, order });
        }
        settle_open(&mut st, &key);
        drop(st);
        self.inner.changed.notify_waiters();
    }

    /// [`Gateway::reconcile`] again after a failed look-up, after 2^`attempt` seconds (at
    /// most 64 s). Boxed: `reconcile` spawns it.
    fn reconcile_later(
        &self,
        id: ClientOrderId,
        restored: bool,
        attempt: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1 << attempt.min(6))).await;
            this.reconcile(&id, restored, attempt).await;
        })
    }

    /// Re-reads the gateway's journal records (the newest `gateway.max_remembered_orders`)
    /// so that a retry after a restart finds its first result and never places a second
    /// order: accepted orders come back `pending` until [`Gateway::reconcile_restored`]
    /// asks the exchange, final refusals come back as they were. Returns how many ids
    /// were restored.
    ///
    /// # Errors
    /// [`gf_halt::Error`] when the journal cannot be read.
    pub fn restore(&self) -> Result<usize, gf_halt::Error> {
        let inner = &self.inner;
        let records = inner
            .halt
            .journal()
            .records_of_kinds(&[ORDER_KIND, REFUSAL_KIND], inner.cfg.max_remembered_orders)?;
        let now = inner.clock.now();
        let cfg = &inner.cfg;
        let mut restored = 0;
        let mut st = inner.state.lock();
        for r in records {
            let Some(id) = r.detail["client_order_id"].as_str() else {
                continue;
            };
            let Ok(request) = serde_json::from_value::<PlaceOrder>(r.detail["request"].clone())
            else {
                continue;
            };
            let key: Key = (r.actor.clone(), id.to_owned());
            if r.kind == ORDER_KIND {
                let (Some(sent_as), Ok(mut order)) = (
                    r.detail["exchange_client_order_id"].as_str(),
                    to_order(&request),
                ) else {
                    continue;
                };
                if st.slots.contains_key(&key) {
                    continue;
                }
                order.client_order_id = ClientOrderId::new(sent_as);
                let tracked = Tracked::pending(
                    &key,
                    order,
                    Some("restored after a restart: reconciling with the exchange".into()),
                    r.ts.unwrap_or(now),
                    now,
                );
                st.by_exchange
                    .insert(tracked.request.client_order_id.clone(), key.clone());
                remember(&mut st, &key, &request, Outcome::Accepted, Some(tracked));
                st.traders
                    .entry(key.0.clone())
                    .or_insert_with(|| Trader::new(cfg, &key.0, now))
                    .open += 1;
                restored += 1;
            } else if r.detail["final"] == true {
                let Some(code) = r.detail["code"]
                    .as_str()
                    .and_then(|c| FINAL_CODES.iter().find(|k| **k == c))
                else {
                    continue;
                };
                let refusal = Refusal::Recorded {
                    code,
                    message: r.detail["message"].as_str().unwrap_or_default().to_owned(),
                };
                if let Some(slot) = st.slots.get_mut(&key) {
                    // Its order record came first: the checks or the exchange refused it.
                    slot.outcome = Outcome::Refused(refusal);
                    if let Some(t) = slot.tracked.take() {
                        st.by_exchange.remove(&t.request.client_order_id);
                        if let Some(trader) = st.traders.get_mut(&key.0) {
                            trader.open = trader.open.saturating_sub(1);
                        }
                    }
                } else {
                    remember(&mut st, &key, &request, Outcome::Refused(refusal), None);
                    restored += 1;
                }
            }
        }
        evict(&mut st, cfg.max_remembered_orders);
        Ok(restored)
    }

    /// Asks the exchange about every order [`Gateway::restore`] brought back.
    pub async fn reconcile_restored(&self) {
        let ids: Vec<ClientOrderId> = {
            let st = self.inner.state.lock();
            st.slots
                .values()
                .filter_map(|s| s.tracked.as_ref())
                .filter(|t| t.status == OrderStatus::Pending)
                .map(|t| t.request.client_order_id.clone())
                .collect()
        };
        for id in ids {
            self.reconcile(&id, true, 0).await;
        }
    }

    /// Cancels one of `trader`'s orders by its id.
    ///
    /// # Errors
    /// [`CancelError`]: unknown, already closed, or the exchange refused.
    pub async fn cancel(&self, trader: &str, client_order_id: &str) -> Result<(), CancelError> {
        let exchange_id = {
            let st = self.inner.state.lock();
            let key = (trader.to_owned(), client_order_id.to_owned());
            let t = st
                .slots
                .get(&key)
                .and_then(|s| s.tracked.as_ref())
                .ok_or_else(|| CancelError::Unknown(client_order_id.to_owned()))?;
            if t.status.is_terminal() {
                return Err(CancelError::Closed {
                    id: client_order_id.to_owned(),
                    status: word(&t.status),
                });
            }
            t.request.client_order_id.clone()
        };
        let result = self
            .inner
            .exchange
            .cancel_order(&OrderRef::Client(exchange_id.clone()))
            .await;
        let this = self.clone();
        let detail = json!({
            "client_order_id": client_order_id,
            "exchange_client_order_id": exchange_id,
            "result": match &result { Ok(()) => "accepted".to_owned(), Err(e) => e.to_string() },
        });
        let actor = trader.to_owned();
        tokio::spawn(async move {
            if let Err(e) = this.journal(CANCEL_KIND, &actor, detail).await {
                tracing::warn!(trader = %actor, cause = %e, "gateway cancel not journaled");
            }
        });
        result.map_err(|e| CancelError::Exchange {
            id: client_order_id.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The trader's ids of its orders that are not terminal.
    #[must_use]
    pub fn open_ids(&self, trader: &str) -> Vec<String> {
        let st = self.inner.state.lock();
        st.log
            .iter()
            .filter(|k| k.0 == trader)
            .filter(|k| {
                st.slots
                    .get(*k)
                    .and_then(|s| s.tracked.as_ref())
                    .is_some_and(|t| !t.status.is_terminal())
            })
            .map(|k| k.1.clone())
            .collect()
    }

    /// Orders of `trader` (every trader's with `None`) passing `filter`, newest first.
    #[must_use]
    pub fn orders(&self, trader: Option<&str>, filter: StatusFilter) -> Vec<GatewayOrder> {
        let st = self.inner.state.lock();
        st.log
            .iter()
            .rev()
            .filter(|k| trader.is_none_or(|t| k.0 == t))
            .filter_map(|k| st.slots.get(k)?.tracked.as_ref())
            .filter(|t| filter.admits(t.status))
            .map(Tracked::wire)
            .collect()
    }

    /// Each trader's open orders and counts, and the newest orders.
    #[must_use]
    pub fn summary(&self) -> gf_api::GatewaySummary {
        let st = self.inner.state.lock();
        let mut traders: std::collections::BTreeMap<&str, gf_api::TraderSummary> = st
            .traders
            .iter()
            .map(|(name, t)| {
                (
                    name.as_str(),
                    gf_api::TraderSummary {
                        name: name.clone(),
                        open: t.open as u64,
                        ..gf_api::TraderSummary::default()
                    },
                )
            })
            .collect();
        for ((trader, _), slot) in &st.slots {
            if let Some(line) = traders.get_mut(trader.as_str()) {
                match slot.outcome {
                    Outcome::Accepted => line.accepted += 1,
                    Outcome::Refused(_) => line.refused += 1,
                    Outcome::InFlight => {}
                }
            }
        }
        let recent = st
            .log
            .iter()
            .rev()
            .filter_map(|k| st.slots.get(k)?.tracked.as_ref())
            .take(10)
            .map(Tracked::wire)
            .collect();
        gf_api::GatewaySummary {
            enabled: self.inner.cfg.enabled,
            traders: traders.into_values().collect(),
            recent,
        }
    }

    /// One of `trader`'s orders.
    #[must_use]
    pub fn order(&self, trader: &str, client_order_id: &str) -> Option<GatewayOrder> {
        let st = self.inner.state.lock();
        st.slots
            .get(&(trader.to_owned(), client_order_id.to_owned()))?
            .tracked
            .as_ref()
            .map(Tracked::wire)
    }

    /// Fills of `trader`'s orders (every trader's with `None`) executed after `since`,
    /// oldest first.
    #[must_use]
    pub fn fills(&self, trader: Option<&str>, since: Option<DateTime<Utc>>) -> Vec<GatewayFill> {
        let st = self.inner.state.lock();
        st.fills
            .iter()
            .filter(|f| trader.is_none_or(|t| f.trader == t))
            .filter(|f| since.is_none_or(|s| f.ts.is_some_and(|ts| ts > s)))
            .cloned()
            .collect()
    }

    /// The trader's feed position: (oldest kept, newest). Starts the trader's feed, so
    /// that halts from now on reach it.
    #[must_use]
    pub fn feed_head(&self, trader: &str) -> (u64, u64) {
        let now = self.inner.clock.now();
        let cfg = &self.inner.cfg;
        let mut st = self.inner.state.lock();
        let feed = &st
            .traders
            .entry(trader.to_owned())
            .or_insert_with(|| Trader::new(cfg, trader, now))
            .feed;
        (feed.oldest(), feed.head)
    }

    /// The trader's frames after `since`.
    #[must_use]
    pub fn feed_after(&self, trader: &str, since: u64) -> FeedRead {
        let st = self.inner.state.lock();
        let Some(feed) = st.traders.get(trader).map(|t| &t.feed) else {
            return if since == 0 {
                FeedRead::Frames(Vec::new(), 0)
            } else {
                FeedRead::Gap { oldest: 0, head: 0 }
            };
        };
        if since > feed.head || (since < feed.head && since + 1 < feed.oldest()) {
            return FeedRead::Gap {
                oldest: feed.oldest(),
                head: feed.head,
            };
        }
        let frames = feed
            .frames
            .iter()
            .filter(|(seq, _)| *seq > since)
            .cloned()
            .collect();
        FeedRead::Frames(frames, feed.head)
    }

    /// Resolves when a frame may have been appended (or a slot settled) after the call to
    /// `notified` on the returned future started. Use: create, then read, then await.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.changed.notified()
    }

    /// Follows the exchange's order updates and fills and the halt's transitions until
    /// `stop`.
    pub async fn run(&self, mut sub: Subscription, stop: CancellationToken) {
        loop {
            let ev = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                ev = sub.recv() => ev,
            };
            match ev {
                Ok(ev) => self.on_event(&ev),
                // Order updates and fills ride the lossless lane; a lag skipped nothing
                // this task follows.
                Err(gf_core::RecvError::Lagged { .. }) => {}
                Err(gf_core::RecvError::Closed) => break,
            }
        }
    }

    /// Applies one event.
    pub fn on_event(&self, ev: &Event) {
        let now = self.inner.clock.now();
        let cap = self.inner.cfg.feed_capacity;
        let mut st = self.inner.state.lock();
        let pushed = match &ev.payload {
            Payload::OrderUpdate {
                client_order_id,
                order_id,
                status,
                filled_qty,
                reason,
                ..
            } => {
                let Some(key) = st.by_exchange.get(client_order_id).cloned() else {
                    return;
                };
                let Some(slot) = st.slots.get_mut(&key) else {
                    return;
                };
                let accepted = matches!(slot.outcome, Outcome::Accepted);
                let Some(t) = slot.tracked.as_mut() else {
                    return;
                };
                if t.status.is_terminal() || rank(*status) < rank(t.status) {
                    return;
                }
                let before = (t.status, t.filled, t.order_id.clone(), t.reason.clone());
                t.status = *status;
                if let Some(id) = order_id {
                    t.order_id = Some(id.to_string());
                }
                if *filled_qty > t.filled {
                    // The fills carry prices; the update only says how much.
                    t.filled = *filled_qty;
                }
                if reason.is_some() {
                    t.reason.clone_from(reason);
                }
                if *status == OrderStatus::Cancelled && !self.inner.halt.gate().is_open() {
                    // The halt's cancel-all: say which halt, not only "cancel all".
                    if let Some(h) = self.inner.halt.status().halt {
                        t.reason = Some(format!(
                            "cancelled while halted (halt {}: {}){}",
                            h.id,
                            h.reason,
                            reason
                                .as_deref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ));
                    }
                }
                if before == (t.status, t.filled, t.order_id.clone(), t.reason.clone()) {
                    return;
                }
                t.updated_at = now;
                let order = t.wire();
                if accepted && let Some(trader) = st.traders.get_mut(&key.0) {
                    trader
                        .feed
                        .push(cap, |seq| OrderFeedFrame::Order { seq, order });
                }
                settle_open(&mut st, &key);
                accepted
            }
            Payload::Fill(fill) => {
                let Some(key) = fill
                    .client_order_id
                    .as_ref()
                    .and_then(|id| st.by_exchange.get(id))
                    .cloned()
                else {
                    return;
                };
                let Some(slot) = st.slots.get_mut(&key) else {
                    return;
                };
                let accepted = matches!(slot.outcome, Outcome::Accepted);
                let Some(t) = slot.tracked.as_mut() else {
                    return;
                };
                if !t.trades.insert(fill.trade_id.clone()) {
                    return;
                }
                t.filled_notional += fill.notional();
                t.filled_by_fills += fill.qty;
                t.fees += fill.fee;
                // The updates' cumulative quantity and the fills' sum: whichever has
                // arrived further.
                t.filled = t.filled.max(t.filled_by_fills);
                t.updated_at = now;
                let wire = GatewayFill {
                    client_order_id: key.1.clone(),
                    trader: key.0.clone(),
                    trade_id: fill.trade_id.clone(),
                    order_id: fill.order_id.to_string(),
                    pair: fill.pair.to_string(),
                    side: word(&fill.side),
                    qty: Num::from(fill.qty),
                    price: Num::from(fill.price),
                    fee: Num::from(fill.fee),
                    ts: Some(fill.ts),
                };
                let limit = self.inner.cfg.max_remembered_orders;
                if st.fills.len() >= limit {
                    st.fills.pop_front();
                }
                st.fills.push_back(wire.clone());
                if !accepted {
                    // Its first frame is not out yet: the fill follows it (`accept`).
                    if let Some(t) = st.slots.get_mut(&key).and_then(|s| s.tracked.as_mut()) {
                        t.unsent_fills.push(wire);
                    }
                    return;
                }
                let order = st
                    .slots
                    .get(&key)
                    .and_then(|s| s.tracked.as_ref())
                    .map(Tracked::wire);
                if let Some(trader) = st.traders.get_mut(&key.0) {
                    trader
                        .feed
                        .push(cap, |seq| OrderFeedFrame::Fill { seq, fill: wire });
                    // The order with its new average price and fees.
                    if let Some(order) = order {
                        trader
                            .feed
                            .push(cap, |seq| OrderFeedFrame::Order { seq, order });
                    }
                }
                true
            }
            Payload::HaltStateChanged { from, .. } if *from == HaltState::Running => {
                let status = self.inner.halt.status();
                let Some(halt) = status.halt.as_ref().map(crate::api::wire::halt_info) else {
                    return;
                };
                for trader in st.traders.values_mut() {
                    let halt = halt.clone();
                    trader
                        .feed
                        .push(cap, |seq| OrderFeedFrame::Halt { seq, halt });
                }
                true
            }
            Payload::Resumed { operator } => {
                for trader in st.traders.values_mut() {
                    let resumed_by = Some(operator.clone());
                    trader
                        .feed
                        .push(cap, |seq| OrderFeedFrame::Resume { seq, resumed_by });
                }
                true
            }
            _ => false,
        };
        drop(st);
        if pushed {
            self.inner.changed.notify_waiters();
        }
    }
}

/// Most records one group commit writes.
const MAX_GROUP: usize = 256;

/// A record waiting for the group commit, and who waits for it.
struct PendingRecord {
    kind: &'static str,
    actor: String,
    detail: serde_json::Value,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Releases a terminal order's place in its trader's open orders, once.
fn settle_open(st: &mut State, key: &Key) {
    let Some(t) = st.slots.get_mut(key).and_then(|s| s.tracked.as_mut()) else {
        return;
    };
    if t.counted_open && t.status.is_terminal() {
        t.counted_open = false;
        if let Some(trader) = st.traders.get_mut(&key.0) {
            trader.open = trader.open.saturating_sub(1);
        }
    }
}

/// Records a new key (a slot, and its place in the log).
fn remember(
    st: &mut State,
    key: &Key,
    request: &PlaceOrder,
    outcome: Outcome,
    tracked: Option<Tracked>,
) {
    st.slots.insert(
        key.clone(),
        Slot {
            request: request.clone(),
            outcome,
            tracked,
        },
    );
    st.log.push_back(key.clone());
}

/// Forgets the oldest settled keys beyond `max` (never one in flight or open: its
/// events and retries still need it).
fn evict(st: &mut State, max: usize) {
    while st.slots.len() > max {
        let evictable = st.log.iter().position(|k| {
            st.slots.get(k).is_none_or(|s| match s.outcome {
                Outcome::InFlight => false,
                Outcome::Refused(_) => true,
                Outcome::Accepted => s.tracked.as_ref().is_none_or(|t| t.status.is_terminal()),
            })
        });
        let Some(i) = evictable else { return };
        let Some(key) = st.log.remove(i) else { return };
        if let Some(slot) = st.slots.remove(&key)
            && let Some(t) = slot.tracked
        {
            st.by_exchange.remove(&t.request.client_order_id);
        }
    }
}

impl Trader {
    fn new(cfg: &GatewayConfig, name: &str, now: DateTime<Utc>) -> Self {
        let limits = cfg.limits(name);
        Self {
            limits,
            bucket: Bucket {
                tokens: f64::from(limits.order_burst),
                at: now,
            },
            open: 0,
            feed: Feed::default(),
        }
    }
}
