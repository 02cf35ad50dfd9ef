//! Fault injection on the order gateway's safety paths, without HTTP: the real halt
//! coordinator (in-memory journal), the real portfolio and pre-trade checks, the gated
//! exchange, and an exchange double that can hold an order until released, lose the
//! answer after the order reached the paper exchange behind it (an ambiguous timeout),
//! reject it, or lose every order update. Paused tokio time and explicit releases; no
//! test sleeps to synchronise.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gf_api::PlaceOrder;
use gf_core::config::{Config, GatewayConfig, HaltConfig, RiskConfig};
use gf_core::event::BookSnapshot;
use gf_core::{
    ApiErrorKind, ClientOrderId, Event, EventBus, Fill, HaltBehaviour, HaltSource, HaltState,
    Level, ManualClock, OrderId, OrderPurpose, OrderRequest, OrderType, Pair, Payload, Position,
    Side, Source, TradingGate,
};
use gf_daemon::gateway::{FeedRead, Gateway, Placed, Refusal, Refused, StatusFilter};
use gf_exec::events::Publisher;
use gf_exec::{
    DeadManStatus, Exchange, GatedExchange, OrderAck, OrderInfo, OrderRef, PaperConfig,
    PaperExchange, Reconciled,
};
use gf_halt::{HaltCoordinator, Journal};
use gf_risk::{Portfolio, RiskLimits, SharedPortfolio};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Every wait in these tests ends by this deadline (paused time: it costs nothing).
const DEADLINE: Duration = Duration::from_secs(30);

fn xrp() -> Pair {
    Pair::new("XRP/USD").unwrap()
}

/// What the double does with the next order it is asked to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Passes it on.
    Pass,
    /// Waits for [`Faulty::release`], then passes it on.
    Hold,
    /// Passes it on (it rests at the paper exchange), then answers a timeout: the
    /// answer was lost on the way back. Kraken: a request that timed out may still have
    /// been processed, so the outcome is unknown until the order is looked up.
    TimeoutAfter,
    /// Answers a timeout without passing it on: it never reached the exchange.
    TimeoutBefore,
    /// Refuses it, as the exchange does with `EOrder:Insufficient funds` (definitive: it
    /// was never placed).
    Reject,
}

/// An exchange double in front of `inner`. Only placement is faulty; cancels and lookups
/// pass through.
struct Faulty {
    inner: Arc<dyn Exchange>,
    mode: Mutex<Mode>,
    release: Semaphore,
    /// Placements asked of the double.
    asked: watch::Sender<usize>,
    /// Placements passed on to `inner`, by client order id.
    passed: Mutex<Vec<ClientOrderId>>,
    /// How many of the next look-ups fail (a network error).
    failing_lookups: Mutex<usize>,
    /// Look-ups asked of the double.
    lookups: watch::Sender<usize>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty")
            .field("mode", &*self.mode.lock())
            .finish_non_exhaustive()
    }
}

impl Faulty {
    fn new(inner: Arc<dyn Exchange>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            mode: Mutex::new(Mode::Pass),
            release: Semaphore::new(0),
            asked: watch::channel(0).0,
            passed: Mutex::new(Vec::new()),
            failing_lookups: Mutex::new(0),
            lookups: watch::channel(0).0,
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock() = mode;
    }

    /// Lets one held placement go on.
    fn release(&self) {
        self.release.add_permits(1);
    }

    fn passed(&self) -> Vec<ClientOrderId> {
        self.passed.lock().clone()
    }

    /// Waits until `n` placements were asked of the double.
    async fn asked(&self, n: usize) {
        let mut rx = self.asked.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|k| *k >= n))
            .await
            .expect("the placement reaches the double")
            .unwrap();
    }

    async fn pass(&self, order: &OrderRequest) -> Result<OrderAck, gf_exec::Error> {
        self.passed.lock().push(order.client_order_id.clone());
        self.inner.place_order(order).await
    }
}

fn timeout_error() -> gf_exec::Error {
    gf_exec::Error::Timeout {
        endpoint: "AddOrder".into(),
        millis: 5_000,
    }
}

#[async_trait]
impl Exchange for Faulty {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, gf_exec::Error> {
        let mode = *self.mode.lock();
        self.asked.send_modify(|n| *n += 1);
        match mode {
            Mode::Pass => self.pass(order).await,
            Mode::Hold => {
                self.release.acquire().await.unwrap().forget();
                self.pass(order).await
            }
            Mode::TimeoutAfter => {
                // The paper exchange takes it (and publishes its update); the answer is
                // lost on the way back.
                let _ack = self.pass(order).await?;
                Err(timeout_error())
            }
            Mode::TimeoutBefore => Err(timeout_error()),
            Mode::Reject => Err(gf_exec::Error::Rejected {
                client_order_id: order.client_order_id.to_string(),
                reason: "EOrder:Insufficient funds".into(),
                kind: ApiErrorKind::InsufficientFunds,
            }),
        }
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), gf_exec::Error> {
        self.inner.cancel_order(order).await
    }

    async fn cancel_all(&self) -> Result<u32, gf_exec::Error> {
        self.inner.cancel_all().await
    }

    async fn cancel_all_after(&self, secs: u32) -> Result<DeadManStatus, gf_exec::Error> {
        self.inner.cancel_all_after(secs).await
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, gf_exec::Error> {
        self.inner.open_orders().await
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, gf_exec::Error> {
        self.inner.order_status(order).await
    }

    async fn reconcile_order(
        &self,
        id: &ClientOrderId,
    ) -> Result<Option<Reconciled>, gf_exec::Error> {
        self.lookups.send_modify(|n| *n += 1);
        {
            let mut failing = self.failing_lookups.lock();
            if *failing > 0 {
                *failing -= 1;
                return Err(gf_exec::Error::Network {
                    endpoint: "QueryOrders".into(),
                    message: "connection reset".into(),
                });
            }
        }
        self.inner.reconcile_order(id).await
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, gf_exec::Error> {
        self.inner.balances().await
    }

    async fn open_positions(&self) -> Result<Vec<Position>, gf_exec::Error> {
        self.inner.open_positions().await
    }

    async fn check(&self) -> Result<(), gf_exec::Error> {
        self.inner.check().await
    }
}

/// How an [`Env`] is built.
struct Opts {
    gateway: GatewayConfig,
    risk: RiskConfig,
    /// The paper exchange publishes nothing (its order updates and fills are lost).
    lose_events: bool,
    /// The double sits in front of the gate (the gateway → double → gate → paper)
    /// instead of behind it (gateway → gate → double → paper).
    double_before_gate: bool,
    /// The journal is full before the coordinator opens: every write fails.
    journal_full: bool,
}

impl Opts {
    /// The defaults, with one open order per token (`gateway.max_open_orders = 1`): a
    /// reservation that is not released shows as the next order's 429.
    fn one_open_order() -> Self {
        let d = Self::default();
        Self {
            gateway: GatewayConfig {
                max_open_orders: 1,
                ..d.gateway
            },
            ..d
        }
    }
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            gateway: GatewayConfig {
                orders_per_second: 1_000,
                order_burst: 1_000,
                max_open_orders: 1_000,
                ..GatewayConfig::default()
            },
            risk: RiskConfig {
                max_open_orders: 1_000,
                max_orders_per_window: 100_000,
                max_price_age_secs: 86_400,
                ..RiskConfig::default()
            },
            lose_events: false,
            double_before_gate: false,
            journal_full: false,
        }
    }
}

#[allow(dead_code)]
struct Env {
    clock: ManualClock,
    bus: EventBus,
    paper: Arc<PaperExchange>,
    /// The faulty double the gateway's orders go through.
    double: Arc<Faulty>,
    /// Counts what reaches the paper exchange when the double sits before the gate.
    wire: Arc<Faulty>,
    gate: TradingGate,
    halt: HaltCoordinator,
    portfolio: SharedPortfolio,
    gateway: Gateway,
    _stop: DropGuard,
}

/// Fills `journal` up to a page cap so that every later write fails with `SQLITE_FULL`
/// (as gf-halt's journal tests do).
fn fill_to_the_brim(journal: &Journal) {
    let pages = journal.set_max_pages(1).unwrap();
    assert!(pages > 1, "capped at the current size, {pages} pages");
    for size in [4000, 1000, 300, 100, 30, 1] {
        let mut written = 0;
        while journal
            .append("filler", "test", &serde_json::json!("x".repeat(size)))
            .is_ok()
        {
            written += 1;
            assert!(written < 100, "the page cap is not enforced");
        }
    }
}

fn env(opts: Opts) -> Env {
    let clock = ManualClock::at_ymd_hms(2026, 12, 1, 9, 0, 0);
    let shared_clock: gf_core::SharedClock = Arc::new(clock.clone());
    let bus = EventBus::new(1 << 16);
    let portfolio = SharedPortfolio::new(
        Portfolio::from_config(&Config::default(), shared_clock.clone()).unwrap(),
        RiskLimits::from_config(&opts.risk).unwrap(),
    );
    let paper_bus = (!opts.lose_events).then(|| bus.clone());
    let paper = Arc::new(PaperExchange::new(
        PaperConfig::default(),
        Publisher::new(paper_bus, shared_clock.clone(), Source::Paper),
    ));
    let publisher = Publisher::new(Some(bus.clone()), shared_clock.clone(), Source::Exec);
    let gate = TradingGate::new_closed();
    let (double, wire, gated, to_gateway): (_, _, Arc<dyn Exchange>, Arc<dyn Exchange>) =
        if opts.double_before_gate {
            let wire = Faulty::new(paper.clone());
            let gated: Arc<dyn Exchange> =
                Arc::new(GatedExchange::new(wire.clone(), gate.clone(), publisher));
            let double = Faulty::new(gated.clone());
            (double.clone(), wire, gated, double)
        } else {
            let double = Faulty::new(paper.clone());
            let gated: Arc<dyn Exchange> =
                Arc::new(GatedExchange::new(double.clone(), gate.clone(), publisher));
            (double.clone(), double, gated.clone(), gated)
        };
    let journal = Arc::new(Journal::in_memory(shared_clock.clone()).unwrap());
    if opts.journal_full {
        // Before the coordinator installs its hook: the failure halts only once a
        // write of the gateway's fails.
        fill_to_the_brim(&journal);
    }
    let halt_cfg = HaltConfig {
        behaviour: HaltBehaviour::CancelOnly,
        closure_backoff_ms: 10,
        ..HaltConfig::default()
    };
    let halt = HaltCoordinator::builder(&halt_cfg, journal, gate.clone())
        .exchange(gated)
        .portfolio(Arc::new(portfolio.clone()))
        .bus(bus.clone())
        .clock(shared_clock.clone())
        .exchange_timeout(Duration::from_secs(60))
        .open()
        .unwrap();
    assert!(gate.is_open(), "a fresh journal starts running");
    let gateway = Gateway::new(
        opts.gateway,
        shared_clock,
        bus.clone(),
        portfolio.clone(),
        halt.clone(),
        to_gateway,
    );
    let stop = CancellationToken::new();
    tokio::spawn(
        portfolio
            .clone()
            .run(bus.subscribe(SharedPortfolio::kinds()), stop.clone()),
    );
    let sub = bus.subscribe(Gateway::kinds());
    let following = gateway.clone();
    let stopped = stop.clone();
    tokio::spawn(async move { following.run(sub, stopped).await });
    let e = Env {
        clock,
        bus,
        paper,
        double,
        wire,
        gate,
        halt,
        portfolio,
        gateway,
        _stop: stop.drop_guard(),
    };
    e.book();
    e
}

impl Env {
    /// XRP/USD at 0.50 / 0.51 for the portfolio (marks) and the paper exchange (book).
    fn book(&self) {
        self.book_with_ask_qty(100_000);
    }

    /// As [`Env::book`], with `qty` XRP offered at 0.51 and nothing above.
    fn book_with_ask_qty(&self, qty: i64) {
        let ev = Event::new(
            self.clock_now(),
            Source::Test,
            Payload::BookSnapshot(BookSnapshot {
                pair: xrp(),
                bids: vec![Level::new(Decimal::new(50, 2), Decimal::from(100_000))],
                asks: vec![Level::new(Decimal::new(51, 2), Decimal::from(qty))],
                checksum: 0,
            }),
        );
        self.portfolio.apply_event(&ev).unwrap();
        self.paper.on_event(&ev);
        assert!(self.portfolio.read(|p| p.mark(&xrp())).is_some());
    }

    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        gf_core::Clock::now(&self.clock)
    }

    async fn place(&self, trader: &str, order: PlaceOrder) -> Result<Placed, Refused> {
        tokio::time::timeout(DEADLINE, self.gateway.place(trader, order))
            .await
            .expect("place answers")
    }

    /// Waits until `pred` holds, re-checking whenever the gateway's state changes.
    async fn until(&self, what: &str, pred: impl Fn(&Gateway) -> bool) {
        let wait = async {
            loop {
                let changed = self.gateway.changed();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if pred(&self.gateway) {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("{what}: never came true"));
    }

    /// Waits until `trader`'s order `id` has `status`.
    async fn until_status(&self, trader: &str, id: &str, status: &str) -> gf_api::GatewayOrder {
        self.until(&format!("{trader}/{id} {status}"), |g| {
            g.order(trader, id).is_some_and(|o| o.status == status)
        })
        .await;
        self.gateway.order(trader, id).unwrap()
    }

    /// Places in a task of its own (a caller that can be aborted, or runs concurrently).
    fn spawn_place(
        &self,
        trader: &str,
        order: PlaceOrder,
    ) -> tokio::task::JoinHandle<Result<Placed, Refused>> {
        let (g, trader) = (self.gateway.clone(), trader.to_owned());
        tokio::spawn(async move { g.place(&trader, order).await })
    }

    /// Orders resting at the paper exchange.
    async fn resting(&self) -> usize {
        self.paper.open_orders().await.unwrap().len()
    }
}

/// A resting limit buy of `qty` XRP at 0.49 (3 % under the market, inside the collar).
fn buy(id: &str, qty: i64) -> PlaceOrder {
    PlaceOrder {
        client_order_id: id.into(),
        pair: "XRP/USD".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        qty: Decimal::from(qty),
        limit_price: Some(Decimal::new(49, 2)),
        time_in_force: None,
        post_only: false,
    }
}

fn refused(result: Result<Placed, Refused>) -> Refused {
    match result {
        Ok(placed) => panic!("accepted: {placed:?}"),
        Err(r) => r,
    }
}

fn placed(result: Result<Placed, Refused>) -> Placed {
    match result {
        Ok(placed) => placed,
        Err(r) => panic!("refused: {r:?}"),
    }
}

fn rate_limited(r: &Refused) -> (&'static str, u64) {
    match r.refusal {
        Refusal::RateLimited {
            limit,
            retry_after_secs,
            ..
        } => (limit, retry_after_secs),
        ref other => panic!("not rate limited: {other:?}"),
    }
}

// ------------------------------------------------------------- 1. halt during placement

/// The order passed the gate and sits inside a slow exchange when the halt comes: the
/// halt waits for it (the gate's drain), the order lands, and the halt's second
/// cancel-all cancels it. A concurrent retry waits and gets the same order; a new order
/// is refused `halted`; one order reached the exchange.
#[tokio::test(start_paused = true)]
async fn a_halt_while_the_order_is_inside_a_slow_exchange_drains_and_cancels_it() {
    let e = env(Opts::default());
    e.double.set(Mode::Hold);
    let first = e.spawn_place("alice", buy("a-1", 100));
    e.double.asked(1).await;
    assert_eq!(e.gate.in_flight(), 1, "the order holds a gate permit");

    let retry = e.spawn_place("alice", buy("a-1", 100));
    // The same id with another body is a conflict at once, in flight or not.
    let r = refused(e.place("alice", buy("a-1", 200)).await);
    assert_eq!(
        r.refusal,
        Refusal::Conflict {
            client_order_id: "a-1".into(),
            fields: vec!["qty"],
        }
    );
    let outcome = e.halt.halt(HaltSource::Cli, "drill").await;
    assert!(outcome.started);
    assert!(!e.gate.is_open());
    assert_eq!(
        e.halt.state(),
        HaltState::Halting,
        "the halt waits for the drain"
    );

    // A new order is refused at once, naming the halt; the retry is still waiting.
    let r = refused(e.place("alice", buy("a-2", 100)).await);
    assert!(!r.replayed);
    match &r.refusal {
        Refusal::Halted {
            halt_id, reason, ..
        } => {
            assert_eq!(*halt_id, Some(outcome.halt_id));
            assert_eq!(reason.as_deref(), Some("drill"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !retry.is_finished(),
        "the retry waits for the first attempt"
    );
    assert!(
        e.wire.passed().is_empty(),
        "nothing reached the paper exchange yet"
    );

    // The held order lands; the halt's drain ends, its second cancel-all cancels it.
    e.double.release();
    let first = placed(first.await.unwrap());
    assert!(!first.replayed);
    let again = placed(retry.await.unwrap());
    assert!(again.replayed, "the retry answers with the first order");
    assert_eq!(
        again.order.exchange_client_order_id,
        first.order.exchange_client_order_id
    );
    let mut state = e.halt.watch_state();
    tokio::time::timeout(DEADLINE, state.wait_for(|s| *s == HaltState::Halted))
        .await
        .unwrap()
        .unwrap();
    let order = e.until_status("alice", "a-1", "cancelled").await;
    assert_eq!(
        order.exchange_client_order_id,
        first.order.exchange_client_order_id
    );
    assert_eq!(e.resting().await, 0, "nothing rests after the halt");
    assert_eq!(e.gate.in_flight(), 0);

    // One order reached the exchange, ever; a later retry replays the final state.
    assert_eq!(e.wire.passed().len(), 1);
    assert_eq!(
        e.wire.passed()[0].as_str(),
        first.order.exchange_client_order_id
    );
    let late = placed(e.place("alice", buy("a-1", 100)).await);
    assert!(late.replayed);
    assert_eq!(late.order.status, "cancelled");
    assert_eq!(e.wire.passed().len(), 1);
    // The refused id stays refused, as the first answer said.
    let r = refused(e.place("alice", buy("a-2", 100)).await);
    assert!(r.replayed);
    assert_eq!(r.refusal.code(), "halted");
}

/// The order was admitted (gate open, journaled, checked) but had not passed the gate
/// when the halt closed it: the gated exchange refuses it, the answer is `halted` (final),
/// a concurrent retry gets the same refusal, and nothing reaches the exchange.
#[tokio::test(start_paused = true)]
async fn a_halt_before_the_order_passed_the_gate_refuses_it_halted_for_good() {
    let e = env(Opts {
        double_before_gate: true,
        ..Opts::one_open_order()
    });
    e.double.set(Mode::Hold);
    let first = e.spawn_place("alice", buy("a-1", 100));
    e.double.asked(1).await;
    assert_eq!(e.gate.in_flight(), 0, "not yet through the gate");
    let retry = e.spawn_place("alice", buy("a-1", 100));
    let outcome = e.halt.halt(HaltSource::Cli, "drill").await;
    e.double.release();

    let r = refused(first.await.unwrap());
    assert!(!r.replayed);
    match &r.refusal {
        Refusal::Halted { halt_id, .. } => assert_eq!(*halt_id, Some(outcome.halt_id)),
        other => panic!("{other:?}"),
    }
    let again = refused(retry.await.unwrap());
    assert!(again.replayed, "the retry waited and got the first answer");
    assert_eq!(again.refusal, r.refusal);
    assert!(e.wire.passed().is_empty(), "nothing reached the exchange");
    assert_eq!(e.resting().await, 0);
    assert!(
        e.gateway.order("alice", "a-1").is_none(),
        "never sent: no order"
    );
    // The portfolio's reservation and the open-order count were released.
    assert_eq!(e.portfolio.open_orders(), 0);
    let r = refused(e.place("alice", buy("a-3", 100)).await);
    assert_eq!(r.refusal.code(), "halted", "not rate limited: {r:?}");
}

/// A caller that goes away while its order is inside the exchange (an HTTP client that
/// disconnects: the server drops the handler's future) must not leave the id in flight
/// for ever: the placement completes, and a retry answers with it.
#[tokio::test(start_paused = true)]
async fn a_caller_that_goes_away_mid_placement_leaves_an_answer_for_its_retry() {
    let e = env(Opts {
        gateway: GatewayConfig {
            max_open_orders: 2,
            ..Opts::default().gateway
        },
        ..Opts::default()
    });
    e.double.set(Mode::Hold);
    let first = e.spawn_place("alice", buy("a-1", 100));
    e.double.asked(1).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    e.double.release();

    let retry = tokio::time::timeout(
        Duration::from_secs(10),
        e.gateway.place("alice", buy("a-1", 100)),
    )
    .await
    .expect("the retry of an abandoned placement answers (it waited for ever)");
    let again = placed(retry);
    assert!(again.replayed, "no second order");
    assert_eq!(e.wire.passed().len(), 1);
    assert_eq!(e.resting().await, 1);
}

// ------------------------------------------------------------- 2. ambiguous failure

/// The order reached the exchange but the answer was lost (a timeout): accepted,
/// `pending` with a reason; the lookup finds it resting; a retry never places a second
/// order; it counts as open until it is terminal.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_pending_then_reconciled_and_never_placed_twice() {
    let e = env(Opts::one_open_order());
    e.double.set(Mode::TimeoutAfter);
    let first = placed(e.place("alice", buy("a-1", 100)).await);
    assert!(!first.replayed);
    assert_eq!(first.order.status, "pending", "{:?}", first.order);
    let reason = first.order.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("lost") && reason.contains("reconciling"),
        "{reason}"
    );
    assert_eq!(e.wire.passed().len(), 1);

    // Reconciliation asks the exchange: it rests there.
    let order = e.until_status("alice", "a-1", "open").await;
    assert!(order.order_id.is_some(), "the exchange's id was learnt");
    assert_eq!(order.reason, None);
    assert_eq!(e.resting().await, 1);

    // A retry (even with the exchange healthy again) places nothing.
    e.double.set(Mode::Pass);
    let again = placed(e.place("alice", buy("a-1", 100)).await);
    assert!(again.replayed);
    assert_eq!(again.order.status, "open");
    assert_eq!(
        again.order.exchange_client_order_id,
        first.order.exchange_client_order_id
    );
    assert_eq!(e.wire.passed().len(), 1, "never a second order");

    // It holds the token's one open order until it is terminal.
    let r = refused(e.place("alice", buy("a-2", 100)).await);
    assert_eq!(rate_limited(&r).0, "open_orders");
    e.gateway.cancel("alice", "a-1").await.unwrap();
    e.until_status("alice", "a-1", "cancelled").await;
    let next = placed(e.place("alice", buy("a-2", 100)).await);
    assert_eq!(next.order.status, "open");
}

/// The answer was lost and the order never reached the exchange: the lookup finds
/// nothing, the order ends `rejected` and stops counting as open.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_for_an_order_that_never_arrived_ends_rejected_and_is_released() {
    let e = env(Opts::one_open_order());
    e.double.set(Mode::TimeoutBefore);
    let first = placed(e.place("alice", buy("a-1", 100)).await);
    assert_eq!(first.order.status, "pending");
    let order = e.until_status("alice", "a-1", "rejected").await;
    assert!(
        order.reason.unwrap_or_default().contains("never received"),
        "says why"
    );
    assert!(e.wire.passed().is_empty());
    e.double.set(Mode::Pass);
    let again = placed(e.place("alice", buy("a-1", 100)).await);
    assert!(
        again.replayed,
        "the id names that order: no second placement"
    );
    assert_eq!(again.order.status, "rejected");
    assert!(e.wire.passed().is_empty());
    let next = placed(e.place("alice", buy("a-2", 100)).await);
    assert_eq!(
        next.order.status, "open",
        "the open-order count was released"
    );
}

/// The answer was lost (the order never arrived) and the look-up that should settle it
/// failed too: the order stays `pending` (counted open: for all the gateway knows it may
/// be at the exchange), and the gateway asks again until the exchange answers, instead of
/// leaving it pending, and its open-order place taken, for ever.
#[tokio::test(start_paused = true)]
async fn a_failed_lookup_after_a_lost_answer_is_retried_until_the_exchange_answers() {
    let e = env(Opts::one_open_order());
    e.double.set(Mode::TimeoutBefore);
    *e.double.failing_lookups.lock() = 2;
    let first = placed(e.place("alice", buy("a-1", 100)).await);
    assert_eq!(first.order.status, "pending");
    e.until("the failed look-up is reported", |g| {
        g.order("alice", "a-1")
            .and_then(|o| o.reason)
            .is_some_and(|r| r.contains("lookup failed"))
    })
    .await;
    let order = e.gateway.order("alice", "a-1").unwrap();
    assert_eq!(order.status, "pending", "unknown is not refused");
    let r = refused(e.place("alice", buy("a-2", 100)).await);
    assert_eq!(rate_limited(&r).0, "open_orders", "it still counts as open");

    // The exchange answers again: it never saw the order.
    let order = e.until_status("alice", "a-1", "rejected").await;
    assert!(
        order.reason.unwrap_or_default().contains("never received"),
        "says why"
    );
    assert_eq!(
        *e.double.lookups.borrow(),
        3,
        "asked until answered, then no more"
    );
    assert!(e.wire.passed().is_empty(), "looked up, never placed");
    e.double.set(Mode::Pass);
    let next = placed(e.place("alice", buy("a-2", 100)).await);
    assert_eq!(
        next.order.status, "open",
        "the open-order place was released"
    );
}

/// A limit buy of 100 at 0.51 against 50 offered there: 50 fill at once, 50 rest.
fn crossing(id: &str) -> PlaceOrder {
    PlaceOrder {
        limit_price: Some(Decimal::new(51, 2)),
        ..buy(id, 100)
    }
}

/// Half-way: the order reached the exchange and half of it filled, then the answer was
/// lost. The order is accepted `pending`, the exchange's updates and the lookup bring it
/// to `partially_filled` with its fill (on the feed once, after the order's first frame),
/// and the halt's cancel-all ends it `cancelled` with what filled.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_for_a_half_filled_order_reconciles_its_fill_once() {
    let e = env(Opts::default());
    e.book_with_ask_qty(50);
    let (_, head) = e.gateway.feed_head("alice");
    e.double.set(Mode::TimeoutAfter);
    let first = placed(e.place("alice", crossing("a-1")).await);
    assert_eq!(first.order.status, "pending");
    let order = e.until_status("alice", "a-1", "partially_filled").await;
    e.until("the fill is applied", |g| {
        g.order("alice", "a-1")
            .is_some_and(|o| o.filled_qty.decimal() == Some(Decimal::from(50)))
    })
    .await;
    assert!(order.order_id.is_some());
    let order = e.gateway.order("alice", "a-1").unwrap();
    assert_eq!(
        order.avg_fill_price.unwrap().decimal(),
        Some(Decimal::new(51, 2))
    );
    let fills = e.gateway.fills(Some("alice"), None);
    assert_eq!(fills.len(), 1, "{fills:?}");
    assert_eq!(fills[0].qty.decimal(), Some(Decimal::from(50)));
    assert_eq!(e.resting().await, 1, "the rest rests");

    let outcome = e.halt.halt(HaltSource::Cli, "drill").await;
    assert!(outcome.started);
    let order = e.until_status("alice", "a-1", "cancelled").await;
    assert_eq!(order.filled_qty.decimal(), Some(Decimal::from(50)));
    assert_eq!(e.resting().await, 0);

    // The feed: the order's first frame, then its changes; the fill exactly once and
    // never before the order's first frame.
    let FeedRead::Frames(frames, _) = e.gateway.feed_after("alice", head) else {
        panic!("gap");
    };
    let frames: Vec<serde_json::Value> = frames
        .iter()
        .map(|(_, t)| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(frames[0]["type"], "order", "{frames:?}");
    assert_eq!(frames[0]["order"]["client_order_id"], "a-1");
    let fill_frames: Vec<_> = frames.iter().filter(|f| f["type"] == "fill").collect();
    assert_eq!(fill_frames.len(), 1, "{frames:?}");
    assert_eq!(fill_frames[0]["fill"]["qty"], "50");
    let last_order = frames.iter().rev().find(|f| f["type"] == "order").unwrap();
    assert_eq!(last_order["order"]["status"], "cancelled");
    assert_eq!(e.wire.passed().len(), 1);
}

/// Half-way with every update lost: the lookup alone tells what became of the order, so
/// it must carry the filled quantity too, not only the status.
#[tokio::test(start_paused = true)]
async fn a_lookup_alone_reports_how_much_of_a_half_filled_order_filled() {
    let e = env(Opts {
        lose_events: true,
        ..Opts::default()
    });
    e.book_with_ask_qty(50);
    e.double.set(Mode::TimeoutAfter);
    let first = placed(e.place("alice", crossing("a-1")).await);
    assert_eq!(first.order.status, "pending");
    let order = e.until_status("alice", "a-1", "partially_filled").await;
    assert_eq!(
        order.filled_qty.decimal(),
        Some(Decimal::from(50)),
        "partially filled by how much: {order:?}"
    );
}

// ------------------------------------------------------------- 3. definitive rejection

/// The exchange refuses the order: the final refusal is `exchange_rejected`, a retry
/// gets it again without asking the exchange, the portfolio's open-order reservation and
/// the token's open-order count are released.
#[tokio::test(start_paused = true)]
async fn a_definitive_rejection_is_final_and_releases_every_reservation() {
    let e = env(Opts {
        risk: RiskConfig {
            max_open_orders: 1,
            ..Opts::default().risk
        },
        ..Opts::one_open_order()
    });
    e.double.set(Mode::Reject);
    let r = refused(e.place("alice", buy("a-1", 100)).await);
    assert!(!r.replayed);
    assert_eq!(r.refusal.code(), "exchange_rejected");
    assert!(r.refusal.is_final());
    assert!(
        r.refusal.to_string().contains("Insufficient funds"),
        "{}",
        r.refusal
    );
    assert_eq!(
        e.portfolio.open_orders(),
        0,
        "the risk reservation is released"
    );
    assert_eq!(*e.double.asked.borrow(), 1);

    e.double.set(Mode::Pass);
    let again = refused(e.place("alice", buy("a-1", 100)).await);
    assert!(again.replayed);
    assert_eq!(again.refusal, r.refusal);
    assert_eq!(
        *e.double.asked.borrow(),
        1,
        "a retry does not ask the exchange"
    );

    // Neither the risk check (max 1 open) nor the token (max 1 open) refuses the next.
    let next = placed(e.place("alice", buy("a-2", 100)).await);
    assert_eq!(next.order.status, "open");
    assert_eq!(e.portfolio.open_orders(), 1);
    // … and that one is counted: a third is over both limits, the token's first.
    let r = refused(e.place("alice", buy("a-3", 100)).await);
    assert_eq!(rate_limited(&r).0, "open_orders");
}

// ------------------------------------------------------------- 4. journal failure

/// The journal cannot record the order: `not_journaled`, nothing reaches the exchange,
/// the failed write halts (fail closed), and the refusal is not recorded under the id: a
/// retry is a new attempt, not a replay (here refused `halted`, since the failure halted
/// trading). The feed tells of the halt and the resume; once the journal is repaired and
/// trading resumed, orders are journaled and placed again.
#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_record_the_order_places_nothing_and_a_retry_is_no_replay() {
    let e = env(Opts {
        journal_full: true,
        ..Opts::default()
    });
    let r = refused(e.place("alice", buy("a-1", 100)).await);
    assert!(!r.replayed);
    assert!(matches!(r.refusal, Refusal::NotJournaled(_)), "{r:?}");
    assert_eq!(r.refusal.code(), "not_journaled");
    assert!(!r.refusal.is_final());
    assert_eq!(*e.double.asked.borrow(), 0, "nothing reached the exchange");
    assert!(e.gateway.order("alice", "a-1").is_none());
    assert_eq!(e.portfolio.open_orders(), 0);
    assert!(!e.gate.is_open(), "a failed journal write halts");

    // A retry is not answered as a replay of the failure.
    let again = refused(e.place("alice", buy("a-1", 100)).await);
    assert!(!again.replayed, "{again:?}");
    assert_eq!(again.refusal.code(), "halted");
    assert_eq!(*e.double.asked.borrow(), 0);

    // Another id after repair and resume: the journal records it and it is placed.
    let mut state = e.halt.watch_state();
    tokio::time::timeout(DEADLINE, state.wait_for(|s| *s == HaltState::Halted))
        .await
        .unwrap()
        .unwrap();
    e.halt.journal().set_max_pages(1 << 20).unwrap();
    e.halt.begin_recovery("olga").await.unwrap();
    for item in e.halt.checklist().unwrap().missing() {
        e.halt.complete_item(&item, "olga", None).await.unwrap();
    }
    e.halt.resume("olga").await.unwrap();
    assert!(e.gate.is_open());
    // Alice's feed told her of the halt and of the resume.
    e.until("the halt and the resume reach the feed", |g| {
        let FeedRead::Frames(frames, _) = g.feed_after("alice", 0) else {
            return false;
        };
        let kinds: Vec<serde_json::Value> = frames
            .iter()
            .map(|(_, t)| serde_json::from_str::<serde_json::Value>(t).unwrap()["type"].clone())
            .collect();
        kinds == ["halt", "resume"]
    })
    .await;
    let ok = placed(e.place("alice", buy("a-9", 100)).await);
    assert_eq!(ok.order.status, "open");
    assert_eq!(*e.double.asked.borrow(), 1);
}

// ------------------------------------------------------------- 5. lost events

/// The exchange never publishes order updates or fills: the order stays as its
/// acknowledgement said. Documented semantics: the token's open-order count is released
/// only by an update or a lookup that shows the order terminal, so an order the exchange
/// cancelled silently keeps counting, and the gateway still shows it open after a
/// cancel the exchange accepted.
#[tokio::test(start_paused = true)]
async fn lost_order_updates_leave_the_order_as_acknowledged_and_counted_open() {
    let e = env(Opts {
        lose_events: true,
        gateway: GatewayConfig {
            max_open_orders: 2,
            ..Opts::default().gateway
        },
        ..Opts::default()
    });
    let a = placed(e.place("alice", buy("a-1", 100)).await);
    assert_eq!(a.order.status, "open", "as the acknowledgement said");
    assert!(a.order.order_id.is_some());
    let b = placed(e.place("alice", buy("a-2", 100)).await);
    assert_eq!(b.order.status, "open");
    // Let every task run: no update arrives.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(e.gateway.order("alice", "a-1").unwrap().status, "open");

    // The exchange cancels both (its dead man's switch, say), silently.
    assert_eq!(e.paper.cancel_all().await.unwrap(), 2);
    assert_eq!(e.resting().await, 0);
    assert_eq!(
        e.gateway.orders(Some("alice"), StatusFilter::Open).len(),
        2,
        "the gateway never learnt of the cancels"
    );
    let r = refused(e.place("alice", buy("a-3", 100)).await);
    assert_eq!(
        rate_limited(&r).0,
        "open_orders",
        "both still count as open"
    );

    // A cancel through the gateway: the exchange no longer knows the order.
    let err = e.gateway.cancel("alice", "a-1").await.unwrap_err();
    assert!(
        matches!(err, gf_daemon::gateway::CancelError::Exchange { .. }),
        "{err:?}"
    );
    assert_eq!(e.gateway.order("alice", "a-1").unwrap().status, "open");
    // The open list still names both; nothing was sent twice.
    assert_eq!(e.gateway.open_ids("alice"), vec!["a-1", "a-2"]);
    assert_eq!(e.wire.passed().len(), 2);
}

// ------------------------------------------------------------- 6. the feed under load

fn fill_event(e: &Env, exchange_id: &str, n: usize) -> Event {
    Event::new(
        e.clock_now(),
        Source::Test,
        Payload::Fill(Fill {
            trade_id: format!("T-{exchange_id}-{n}"),
            order_id: OrderId::new(format!("O-{exchange_id}")),
            client_order_id: Some(ClientOrderId::new(exchange_id)),
            pair: xrp(),
            side: Side::Buy,
            qty: Decimal::new(1, 2),
            price: Decimal::new(49, 2),
            fee: Decimal::ZERO,
            ts: e.clock_now(),
            purpose: OrderPurpose::default(),
        }),
    )
}

/// Checks `trader`'s feed: frames numbered `oldest..=head` without a hole, each frame's
/// `seq` its number; `feed_after` answers a gap exactly when frames after `since` were
/// dropped (or `since` is ahead of the head). Returns (oldest, head).
fn check_feed(g: &Gateway, trader: &str, capacity: usize) -> (u64, u64) {
    let (oldest, head) = g.feed_head(trader);
    let kept = usize::try_from(head - oldest + 1).unwrap();
    assert_eq!(
        kept,
        capacity.min(usize::try_from(head).unwrap()),
        "{trader}"
    );
    for since in 0..=head + 2 {
        let read = g.feed_after(trader, since);
        let dropped = since + 1 < oldest;
        if dropped || since > head {
            assert_eq!(
                read,
                FeedRead::Gap { oldest, head },
                "{trader} since {since}"
            );
            continue;
        }
        let FeedRead::Frames(frames, h) = read else {
            panic!("{trader} since {since}: {read:?}");
        };
        assert_eq!(h, head);
        let seqs: Vec<u64> = frames.iter().map(|(s, _)| *s).collect();
        let want: Vec<u64> = (since + 1..=head).collect();
        assert_eq!(seqs, want, "{trader} since {since}: contiguous");
        for (seq, text) in &frames {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["seq"], *seq, "{text}");
        }
    }
    (oldest, head)
}

/// Many traders, more frames than `feed_capacity`, written from several tasks at once:
/// per trader the numbers are contiguous and a read is a gap exactly when frames were
/// dropped; a halt reaches every trader that has a feed (also one that never ordered),
/// numbered after its last frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_under_load_keeps_numbers_contiguous_and_reports_gaps_exactly() {
    const TRADERS: usize = 12;
    const CAPACITY: usize = 16;
    let e = Arc::new(env(Opts {
        gateway: GatewayConfig {
            feed_capacity: CAPACITY,
            ..Opts::default().gateway
        },
        ..Opts::default()
    }));
    let traders: Vec<String> = (0..TRADERS).map(|i| format!("t{i:02}")).collect();
    // One order each, placed concurrently.
    let mut tasks = Vec::new();
    for t in &traders {
        let (g, t) = (e.gateway.clone(), t.clone());
        tasks.push(tokio::spawn(
            async move { g.place(&t, buy("o-1", 10)).await },
        ));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(placed(task.await.unwrap()).order.exchange_client_order_id);
    }
    // Trader i gets 3·i fills, from four writers at once: beyond the capacity for most.
    let mut writers = Vec::new();
    for w in 0..4 {
        let (e, ids) = (Arc::clone(&e), ids.clone());
        writers.push(tokio::spawn(async move {
            for (i, id) in ids.iter().enumerate() {
                for n in (0..3 * i).filter(|n| n % 4 == w) {
                    e.gateway.on_event(&fill_event(&e, id, n));
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    // A replayed fill (same trade id) adds no frame.
    e.gateway.on_event(&fill_event(&e, &ids[1], 0));

    // Each fill numbers the same count of frames (its own, and the order's new state).
    let per_fill = (e.gateway.feed_head("t01").1 - 1) / 3;
    assert!((1..=2).contains(&per_fill), "{per_fill}");
    let mut heads = BTreeMap::new();
    for (i, t) in traders.iter().enumerate() {
        let (_, head) = check_feed(&e.gateway, t, CAPACITY);
        assert_eq!(
            head,
            1 + per_fill * 3 * i as u64,
            "{t}: the order and its fills"
        );
        assert_eq!(e.gateway.fills(Some(t), None).len(), 3 * i);
        heads.insert(t.clone(), head);
    }
    assert!(
        heads.values().any(|h| *h > CAPACITY as u64),
        "frames were dropped"
    );
    // A watcher that only opened its feed; a stranger that never did.
    assert_eq!(e.gateway.feed_head("watcher"), (0, 0));
    assert_eq!(
        e.gateway.feed_after("stranger", 0),
        FeedRead::Frames(Vec::new(), 0)
    );
    assert_eq!(
        e.gateway.feed_after("stranger", 3),
        FeedRead::Gap { oldest: 0, head: 0 }
    );

    // The halt (cancel only): a halt frame for every feed, and each resting order's
    // cancel (the halt's cancel-all may run before its state change is published: the
    // two frames come in either order).
    let outcome = e.halt.halt(HaltSource::Cli, "drill").await;
    heads.insert("watcher".into(), 0);
    e.until("every feed got the halt and every order its cancel", |g| {
        heads.iter().all(|(t, h)| {
            let want = if t == "watcher" { 1 } else { 2 };
            g.feed_head(t).1 == h + want
        })
    })
    .await;
    for (t, h) in &heads {
        let FeedRead::Frames(frames, head) = e.gateway.feed_after(t, *h) else {
            panic!("{t}: gap");
        };
        let mut kinds = Vec::new();
        for (seq, text) in &frames {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["seq"], *seq);
            match v["type"].as_str().unwrap() {
                "halt" => assert_eq!(v["halt"]["id"], outcome.halt_id, "{v}"),
                "order" => assert_eq!(v["order"]["status"], "cancelled", "{v}"),
                other => panic!("{t}: {other}: {v}"),
            }
            kinds.push(v["type"].as_str().unwrap().to_owned());
        }
        kinds.sort();
        let want: &[&str] = if t == "watcher" {
            &["halt"]
        } else {
            &["halt", "order"]
        };
        assert_eq!(kinds, want, "{t}");
        assert_eq!(head, h + want.len() as u64);
        check_feed(&e.gateway, t, CAPACITY);
    }
    assert_eq!(
        e.gateway.feed_after("stranger", 0),
        FeedRead::Frames(Vec::new(), 0),
        "no feed was started for a stranger"
    );
}

// ------------------------------------------------------------- 7. per-token limits

/// The bucket holds `order_burst` orders and refills at `orders_per_second` on the
/// daemon's clock; a refusal says when a retry passes, and a retry then passes (with the
/// same id: a rate refusal is not recorded); each token has its own bucket.
#[tokio::test(start_paused = true)]
async fn the_rate_limit_refills_on_the_clock_and_is_per_token() {
    let e = env(Opts {
        gateway: GatewayConfig {
            orders_per_second: 4,
            order_burst: 3,
            ..Opts::default().gateway
        },
        ..Opts::default()
    });
    let mut n = 0;
    let mut next = |trader: &str| {
        n += 1;
        (trader.to_owned(), buy(&format!("o-{n}"), 10))
    };
    for _ in 0..3 {
        let (t, o) = next("alice");
        placed(e.place(&t, o).await);
    }
    let (t, refused_order) = next("alice");
    let r = refused(e.place(&t, refused_order.clone()).await);
    assert!(!r.replayed);
    assert!(!r.refusal.is_final());
    assert_eq!(rate_limited(&r), ("orders_per_second", 1));
    match r.refusal {
        Refusal::RateLimited { max, .. } => assert_eq!(max, 4),
        _ => unreachable!(),
    }
    // Another token is not limited by alice's orders.
    for _ in 0..3 {
        let (t, o) = next("bob");
        placed(e.place(&t, o).await);
    }
    // 0.2 s refills 0.8 of an order: still refused, a retry in 1 s.
    e.clock.advance(chrono::Duration::milliseconds(200));
    let r = refused(e.place("alice", refused_order.clone()).await);
    assert_eq!(rate_limited(&r), ("orders_per_second", 1));
    // 0.25 s later: 1.8 orders; one passes (with the same id: a rate refusal burns none).
    e.clock.advance(chrono::Duration::milliseconds(250));
    let ok = placed(e.place("alice", refused_order).await);
    assert!(!ok.replayed);
    let (t, o) = next("alice");
    assert_eq!(
        rate_limited(&refused(e.place(&t, o).await)).0,
        "orders_per_second"
    );
    // After the announced wait a retry passes.
    e.clock.advance(chrono::Duration::seconds(1));
    let (t, o) = next("alice");
    placed(e.place(&t, o).await);
    // A long pause refills up to the burst, not beyond.
    e.clock.advance(chrono::Duration::seconds(60));
    for _ in 0..3 {
        let (t, o) = next("alice");
        placed(e.place(&t, o).await);
    }
    let (t, o) = next("alice");
    assert_eq!(
        rate_limited(&refused(e.place(&t, o).await)).0,
        "orders_per_second"
    );
    // Sustained: one order every 1/4 s passes for ever.
    for _ in 0..20 {
        e.clock.advance(chrono::Duration::milliseconds(250));
        let (t, o) = next("alice");
        placed(e.place(&t, o).await);
    }
}

/// The open-order limit is per token, counts orders in flight, and is released when an
/// order ends.
#[tokio::test(start_paused = true)]
async fn the_open_order_limit_is_per_token_and_released_when_an_order_ends() {
    let e = env(Opts {
        gateway: GatewayConfig {
            max_open_orders: 2,
            ..Opts::default().gateway
        },
        ..Opts::default()
    });
    // One order held inside the exchange counts already.
    e.double.set(Mode::Hold);
    let held = e.spawn_place("alice", buy("a-1", 10));
    e.double.asked(1).await;
    e.double.set(Mode::Pass);
    placed(e.place("alice", buy("a-2", 10)).await);
    let r = refused(e.place("alice", buy("a-3", 10)).await);
    assert_eq!(rate_limited(&r), ("open_orders", 1));
    match r.refusal {
        Refusal::RateLimited { max, .. } => assert_eq!(max, 2),
        _ => unreachable!(),
    }
    // Bob has his own count.
    placed(e.place("bob", buy("a-3", 10)).await);
    placed(e.place("bob", buy("a-4", 10)).await);
    e.double.release();
    placed(held.await.unwrap());
    e.gateway.cancel("alice", "a-2").await.unwrap();
    e.until_status("alice", "a-2", "cancelled").await;
    let ok = placed(e.place("alice", buy("a-3", 10)).await);
    assert!(!ok.replayed, "the refused id was not recorded");
    let r = refused(e.place("alice", buy("a-5", 10)).await);
    assert_eq!(rate_limited(&r).0, "open_orders");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_loop_is_counted_not_journaled_one_by_one() {
    let e = env(Opts::default());
    e.book();
    let outcome = e.halt.halt(gf_core::HaltSource::Cli, "loop test").await;
    assert!(outcome.durable);
    let limit = gf_daemon::gateway::REFUSAL_RECORDS_PER_SEC as usize;
    // A client looping on new ids while halted, all within one second of the clock.
    for i in 0..limit + 15 {
        let r = refused(e.place("looper", buy(&format!("l-{i}"), 10)).await);
        assert_eq!(r.refusal.code(), "halted");
    }
    let records = |e: &Env| {
        e.halt
            .journal()
            .records_of_kinds(&[gf_daemon::gateway::REFUSAL_KIND], 1_000)
            .unwrap()
    };
    let wait = async {
        while records(&e).len() < limit {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.unwrap();
    // The background writes have all run (paused time: yielding lets them finish).
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        records(&e).len(),
        limit,
        "one second's budget, not one per refusal"
    );
    // The next second's first record says how many were not recorded one by one.
    e.clock.advance(chrono::Duration::seconds(1));
    refused(e.place("looper", buy("l-next", 10)).await);
    let wait = async {
        while records(&e).len() < limit + 1 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.unwrap();
    let last = records(&e).pop().unwrap();
    assert_eq!(last.actor, "looper");
    assert_eq!(last.detail["client_order_id"], "l-next");
    assert_eq!(last.detail["unrecorded_before"], 15);
    // Another token has its own budget.
    refused(e.place("other", buy("o-1", 10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_share_commits_and_each_is_journaled_once_before_it_is_sent() {
    let e = env(Opts::default());
    e.book();
    let places = (0..64).map(|i| {
        let g = e.gateway.clone();
        tokio::spawn(async move {
            g.place(&format!("t-{}", i % 4), buy(&format!("c-{i}"), 10))
                .await
        })
    });
    for p in futures::future::join_all(places).await {
        placed(p.unwrap());
    }
    let records = e
        .halt
        .journal()
        .records_of_kinds(&[gf_daemon::gateway::ORDER_KIND], 1_000)
        .unwrap();
    assert_eq!(records.len(), 64);
    let mut ids: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r.actor.clone(),
                r.detail["client_order_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 64, "each order once");
    // Every order that rests was journaled: its exchange id is in a record.
    let sent: std::collections::HashSet<String> = records
        .iter()
        .map(|r| {
            r.detail["exchange_client_order_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for o in e.paper.open_orders().await.unwrap() {
        let id = o.client_order_id.unwrap().to_string();
        assert!(sent.contains(&id), "{id} reached the exchange unjournaled");
    }
    assert_eq!(e.resting().await, 64);
}
