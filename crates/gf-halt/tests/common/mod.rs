//! Test doubles shared by the integration tests and the benchmarks: a stateful fake
//! exchange that records every call in order, and a settable portfolio view.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use tokio::sync::Notify;

use gf_core::config::HaltConfig;
use gf_core::{
    ApiErrorKind, ClientOrderId, Clock, EventBus, ManualClock, OrderId, OrderRequest, OrderStatus,
    Pair, Position, Side, TradingGate,
};
use gf_exec::{DeadManStatus, Exchange, OrderAck, OrderInfo, OrderRef, Reconciled};
use gf_halt::{HaltCoordinator, Journal, JournalKey};
use gf_risk::PortfolioView;

/// One call the fake received, with a global sequence number.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Place(OrderRequest),
    CancelAll,
    CancelOrder(OrderRef),
    Status(OrderRef),
    DeadMan(u32),
}

/// A stateful fake exchange: market orders fill at once unless told to reject.
#[derive(Debug, Default)]
pub struct FakeExchange {
    seq: AtomicU64,
    calls: Mutex<Vec<(u64, Call)>>,
    orders: Mutex<HashMap<ClientOrderId, OrderInfo>>,
    /// Reject every closure order with "insufficient funds".
    pub reject_closures: AtomicBool,
    /// Fail cancel-all with a non-retryable error.
    pub fail_cancel_all: AtomicBool,
    /// How many orders each cancel-all reports cancelled (0 unless set).
    pub cancelled_per_cancel_all: AtomicU64,
    /// Never answer cancel-all (a hung exchange).
    pub hang_cancel_all: AtomicBool,
    /// When the first cancel-all arrived.
    pub first_cancel_at: Mutex<Option<Instant>>,
    pub cancel_seen: Notify,
    /// What the (spot) account holds of each pair's base asset; fills move it.
    pub holdings: Mutex<BTreeMap<Pair, Decimal>>,
    /// Quantity `reconcile_order` reports it published as new fills, per client order id
    /// (taken once; 0 otherwise, as when every execution was already published).
    pub publish_on_reconcile: Mutex<HashMap<ClientOrderId, Decimal>>,
    /// How long `reconcile_order` takes (tokio time).
    pub reconcile_delay: Mutex<std::time::Duration>,
}

impl FakeExchange {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn record(&self, call: Call) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.calls.lock().push((seq, call));
        seq
    }

    pub fn calls(&self) -> Vec<(u64, Call)> {
        let mut c = self.calls.lock().clone();
        c.sort_by_key(|(s, _)| *s);
        c
    }

    pub fn placed(&self) -> Vec<OrderRequest> {
        self.calls()
            .into_iter()
            .filter_map(|(_, c)| match c {
                Call::Place(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    pub fn closure_orders(&self) -> Vec<OrderRequest> {
        self.placed()
            .into_iter()
            .filter(|o| o.is_closure())
            .collect()
    }

    pub fn cancel_all_count(&self) -> usize {
        self.calls()
            .iter()
            .filter(|(_, c)| matches!(c, Call::CancelAll))
            .count()
    }

    pub fn reset_calls(&self) {
        self.calls.lock().clear();
        *self.first_cancel_at.lock() = None;
    }
}

#[async_trait]
impl Exchange for FakeExchange {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, gf_exec::Error> {
        self.record(Call::Place(order.clone()));
        if order.is_closure() && self.reject_closures.load(Ordering::SeqCst) {
            return Err(gf_exec::Error::Api {
                endpoint: "AddOrder".into(),
                kind: ApiErrorKind::InsufficientFunds,
                message: "EOrder:Insufficient funds".into(),
            });
        }
        let order_id = OrderId::new(format!("O{}", self.seq.load(Ordering::SeqCst)));
        let signed = match order.side {
            Side::Buy => order.qty,
            Side::Sell => -order.qty,
        };
        *self.holdings.lock().entry(order.pair.clone()).or_default() += signed;
        self.orders.lock().insert(
            order.client_order_id.clone(),
            OrderInfo {
                order_id: order_id.clone(),
                client_order_id: Some(order.client_order_id.clone()),
                pair: order.pair.clone(),
                side: order.side,
                order_type: order.order_type,
                qty: order.qty,
                filled_qty: order.qty,
                limit_price: order.limit_price,
                avg_price: Some(Decimal::new(5, 1)),
                status: OrderStatus::Filled,
                reduce_only: order.reduce_only,
                opened_at: None,
            },
        );
        Ok(OrderAck {
            order_id,
            client_order_id: order.client_order_id.clone(),
            status: OrderStatus::Filled,
        })
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), gf_exec::Error> {
        self.record(Call::CancelOrder(order.clone()));
        Ok(())
    }

    async fn cancel_all(&self) -> Result<u32, gf_exec::Error> {
        {
            let mut first = self.first_cancel_at.lock();
            if first.is_none() {
                *first = Some(Instant::now());
            }
        }
        self.record(Call::CancelAll);
        self.cancel_seen.notify_waiters();
        if self.hang_cancel_all.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail_cancel_all.load(Ordering::SeqCst) {
            return Err(gf_exec::Error::Api {
                endpoint: "CancelAll".into(),
                kind: ApiErrorKind::PermissionDenied,
                message: "EGeneral:Permission denied".into(),
            });
        }
        Ok(u32::try_from(self.cancelled_per_cancel_all.load(Ordering::SeqCst)).unwrap_or(u32::MAX))
    }

    async fn cancel_all_after(&self, timeout_secs: u32) -> Result<DeadManStatus, gf_exec::Error> {
        self.record(Call::DeadMan(timeout_secs));
        Ok(DeadManStatus { trigger_at: None })
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, gf_exec::Error> {
        Ok(Vec::new())
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, gf_exec::Error> {
        self.record(Call::Status(order.clone()));
        let OrderRef::Client(id) = order else {
            return Err(gf_exec::Error::UnknownOrder(format!("{order:?}")));
        };
        self.orders
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| gf_exec::Error::UnknownOrder(id.to_string()))
    }

    async fn reconcile_order(
        &self,
        id: &ClientOrderId,
    ) -> Result<Option<Reconciled>, gf_exec::Error> {
        let delay = *self.reconcile_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let published = self
            .publish_on_reconcile
            .lock()
            .remove(id)
            .unwrap_or_default();
        match self.order_status(&OrderRef::Client(id.clone())).await {
            Ok(info) => Ok(Some(Reconciled { info, published })),
            Err(gf_exec::Error::UnknownOrder(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, gf_exec::Error> {
        Ok(BTreeMap::new())
    }

    async fn open_positions(&self) -> Result<Vec<Position>, gf_exec::Error> {
        Ok(self
            .holdings
            .lock()
            .iter()
            .filter(|(_, q)| !q.is_zero())
            .map(|(p, q)| Position {
                qty: *q,
                ..Position::flat(p.clone())
            })
            .collect())
    }

    async fn check(&self) -> Result<(), gf_exec::Error> {
        Ok(())
    }
}

/// A portfolio view whose figures tests set.
#[derive(Debug, Default)]
pub struct View {
    pub total_dd: Mutex<Decimal>,
    pub daily_dd: Mutex<Decimal>,
    pub losses: Mutex<u32>,
    pub exposure: Mutex<Decimal>,
    pub vol: Mutex<Option<Decimal>>,
    pub positions: Mutex<Vec<Position>>,
}

impl View {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl PortfolioView for View {
    fn equity(&self) -> Decimal {
        Decimal::new(100_000, 0)
    }
    fn peak_equity(&self) -> Decimal {
        Decimal::new(100_000, 0)
    }
    fn total_drawdown_pct(&self) -> Decimal {
        *self.total_dd.lock()
    }
    fn daily_drawdown_pct(&self) -> Decimal {
        *self.daily_dd.lock()
    }
    fn consecutive_losses(&self) -> u32 {
        *self.losses.lock()
    }
    fn positions(&self) -> Vec<Position> {
        self.positions.lock().clone()
    }
    fn exposure(&self) -> Decimal {
        *self.exposure.lock()
    }
    fn volatility_pct(&self, _pair: &Pair) -> Option<Decimal> {
        *self.vol.lock()
    }
}

pub fn pair(s: &str) -> Pair {
    Pair::new(s).unwrap()
}

pub fn position(p: &str, qty: Decimal) -> Position {
    let mut pos = Position::flat(pair(p));
    pos.qty = qty;
    pos.avg_entry = Decimal::new(5, 1);
    pos
}

pub fn normal_order(i: u64) -> OrderRequest {
    OrderRequest::market(
        ClientOrderId::new(format!("strat-{i}")),
        pair("XRP/USD"),
        Side::Buy,
        Decimal::ONE,
    )
}

/// Everything a coordinator test needs.
pub struct Env {
    pub coordinator: HaltCoordinator,
    pub exchange: Arc<FakeExchange>,
    pub view: Arc<View>,
    pub gate: TradingGate,
    pub bus: EventBus,
    pub clock: ManualClock,
}

impl Env {
    pub fn open(cfg: &HaltConfig, db: &Path) -> Self {
        Self::open_with(
            cfg,
            db,
            FakeExchange::new(),
            View::new(),
            ManualClock::default(),
        )
    }

    pub fn open_with(
        cfg: &HaltConfig,
        db: &Path,
        exchange: Arc<FakeExchange>,
        view: Arc<View>,
        clock: ManualClock,
    ) -> Self {
        let journal = Journal::open(db, Arc::new(clock.clone()), test_key()).unwrap();
        Self::open_journal(cfg, Arc::new(journal), exchange, view, clock)
    }

    /// A coordinator on an already opened journal (e.g. one bound to a data directory).
    pub fn open_journal(
        cfg: &HaltConfig,
        journal: Arc<Journal>,
        exchange: Arc<FakeExchange>,
        view: Arc<View>,
        clock: ManualClock,
    ) -> Self {
        let gate = TradingGate::new_closed();
        let bus = EventBus::new(4096);
        let coordinator = HaltCoordinator::builder(cfg, journal, gate.clone())
            .exchange(exchange.clone())
            .portfolio(view.clone())
            .bus(bus.clone())
            .clock(Arc::new(clock.clone()))
            .open()
            .unwrap();
        Self {
            coordinator,
            exchange,
            view,
            gate,
            bus,
            clock,
        }
    }

    /// The portfolio and the exchange's balances both hold `positions`.
    pub fn hold(&self, positions: Vec<Position>) {
        *self.exchange.holdings.lock() =
            positions.iter().map(|p| (p.pair.clone(), p.qty)).collect();
        *self.view.positions.lock() = positions;
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

/// The journal key of the tests' journals.
pub fn test_key() -> JournalKey {
    JournalKey::from_bytes([42; 32])
}

/// A fast config: closure retries without long waits.
pub fn fast_cfg() -> HaltConfig {
    HaltConfig {
        closure_max_attempts: 3,
        closure_backoff_ms: 1,
        ..HaltConfig::default()
    }
}

/// Waits until `c` is Halted (failing after 30 s: a bound on a broken test, not a timing).
pub async fn halted(c: &HaltCoordinator) {
    let mut rx = c.watch_state();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        rx.wait_for(|s| *s == gf_core::HaltState::Halted),
    )
    .await
    .expect("halted in time")
    .unwrap();
}
