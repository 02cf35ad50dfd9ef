//! A halt across an order on the wire: an exchange double whose transport holds a normal
//! order for 3 s (the request crawls to the matching engine, which executes it only then),
//! and which, like the Kraken client, learns of executions only by asking (a
//! reconciliation) or by its order sync a second later; behind the gated exchange, with
//! the real portfolio and its risk task, under paused tokio time. Nothing admitted after the close reaches the double; the order already on
//! the wire is waited for (bounded by the exchange timeout), reconciled by client order id
//! and flattened — in the halt's own closure when it resolves in time, in a second closure
//! round (journaled) when it lands after the closure reported flat.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use gf_core::config::{Config, HaltConfig, RiskConfig};
use gf_core::{
    ClientOrderId, EventBus, Fill, HaltSource, HaltState, ManualClock, OrderId, OrderPurpose,
    OrderRequest, OrderStatus, Pair, Position, Side, Source, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::{DeadManStatus, Exchange, GatedExchange, OrderAck, OrderInfo, OrderRef, Reconciled};
use gf_halt::{Error, HaltCoordinator, Journal};
use gf_risk::{Portfolio, PortfolioView, RiskLimits, SharedPortfolio};

const HOLD: Duration = Duration::from_secs(3);

/// The double's order sync: an execution nobody asked about is published this much later.
const SYNC_DELAY: Duration = Duration::from_secs(1);

fn xrp() -> Pair {
    Pair::new("XRP/USD").unwrap()
}

fn market(id: &str, side: Side, qty: Decimal) -> OrderRequest {
    OrderRequest::market(ClientOrderId::new(id), xrp(), side, qty)
}

/// An exchange whose transport is slow: a normal order leaves this process at once (it is
/// on the wire) but reaches the matching engine, which fills it at 0.5, only after
/// [`HOLD`]; until then the exchange does not know it. Sealed closure orders fill on
/// arrival. An execution is published as a fill when reconciled, or by the order sync
/// [`SYNC_DELAY`] after it happened, whichever comes first, once.
struct SlowWire {
    me: Weak<SlowWire>,
    events: Publisher,
    /// Every order that reached the wire, with when.
    wire: Mutex<Vec<(Instant, OrderRequest)>>,
    /// Executed orders, and whether their fill was published.
    executed: Mutex<HashMap<ClientOrderId, (OrderInfo, OrderPurpose, bool)>>,
    trades: AtomicU64,
}

impl SlowWire {
    fn new(events: Publisher) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            events,
            wire: Mutex::new(Vec::new()),
            executed: Mutex::new(HashMap::new()),
            trades: AtomicU64::new(0),
        })
    }

    fn wire(&self) -> Vec<(Instant, OrderRequest)> {
        self.wire.lock().clone()
    }

    /// Publishes the fill of `id` unless already published; returns the quantity.
    fn publish(&self, id: &ClientOrderId) -> Decimal {
        let (info, purpose) = {
            let mut executed = self.executed.lock();
            match executed.get_mut(id) {
                Some((info, purpose, published)) if !*published => {
                    *published = true;
                    (info.clone(), *purpose)
                }
                _ => return Decimal::ZERO,
            }
        };
        self.events.fill(Fill {
            trade_id: format!("T-{}", info.order_id),
            order_id: info.order_id.clone(),
            client_order_id: Some(id.clone()),
            pair: info.pair.clone(),
            side: info.side,
            qty: info.filled_qty,
            price: info.avg_price.unwrap_or_default(),
            fee: Decimal::ZERO,
            ts: self.events.clock().now(),
            purpose,
        });
        info.filled_qty
    }
}

#[async_trait]
impl Exchange for SlowWire {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, gf_exec::Error> {
        self.wire.lock().push((Instant::now(), order.clone()));
        if !order.is_sealed() {
            tokio::time::sleep(HOLD).await;
        }
        let n = self.trades.fetch_add(1, Ordering::SeqCst);
        let order_id = OrderId::new(format!("O{n}"));
        let info = OrderInfo {
            order_id: order_id.clone(),
            client_order_id: Some(order.client_order_id.clone()),
            pair: order.pair.clone(),
            side: order.side,
            order_type: order.order_type,
            qty: order.qty,
            filled_qty: order.qty,
            limit_price: None,
            avg_price: Some(Decimal::new(5, 1)),
            status: OrderStatus::Filled,
            reduce_only: order.reduce_only,
            opened_at: None,
        };
        self.executed
            .lock()
            .insert(order.client_order_id.clone(), (info, order.purpose, false));
        // The order sync reports what nobody asked about.
        let me = self.me.clone();
        let id = order.client_order_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SYNC_DELAY).await;
            if let Some(me) = me.upgrade() {
                me.publish(&id);
            }
        });
        Ok(OrderAck {
            order_id,
            client_order_id: order.client_order_id.clone(),
            status: OrderStatus::Filled,
        })
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), gf_exec::Error> {
        Err(gf_exec::Error::UnknownOrder(format!("{order:?}")))
    }

    async fn cancel_all(&self) -> Result<u32, gf_exec::Error> {
        Ok(0)
    }

    async fn cancel_all_after(&self, _: u32) -> Result<DeadManStatus, gf_exec::Error> {
        Ok(DeadManStatus { trigger_at: None })
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, gf_exec::Error> {
        Ok(Vec::new())
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, gf_exec::Error> {
        let OrderRef::Client(id) = order else {
            return Err(gf_exec::Error::UnknownOrder(format!("{order:?}")));
        };
        self.executed
            .lock()
            .get(id)
            .map(|(info, _, _)| info.clone())
            .ok_or_else(|| gf_exec::Error::UnknownOrder(id.to_string()))
    }

    async fn reconcile_order(
        &self,
        id: &ClientOrderId,
    ) -> Result<Option<Reconciled>, gf_exec::Error> {
        let Some(info) = self
            .executed
            .lock()
            .get(id)
            .map(|(info, _, _)| info.clone())
        else {
            return Ok(None);
        };
        let published = self.publish(id);
        Ok(Some(Reconciled { info, published }))
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, gf_exec::Error> {
        Ok(BTreeMap::new())
    }

    async fn open_positions(&self) -> Result<Vec<Position>, gf_exec::Error> {
        // A spot account: what it holds is the net of every execution, published or not.
        let mut held: BTreeMap<Pair, Decimal> = BTreeMap::new();
        for (info, _, _) in self.executed.lock().values() {
            let signed = match info.side {
                Side::Buy => info.filled_qty,
                Side::Sell => -info.filled_qty,
            };
            *held.entry(info.pair.clone()).or_default() += signed;
        }
        Ok(held
            .into_iter()
            .filter(|(_, q)| !q.is_zero())
            .map(|(pair, qty)| Position {
                qty,
                ..Position::flat(pair)
            })
            .collect())
    }

    async fn check(&self) -> Result<(), gf_exec::Error> {
        Ok(())
    }
}

struct Env {
    halt: HaltCoordinator,
    gate: TradingGate,
    double: Arc<SlowWire>,
    exchange: Arc<dyn Exchange>,
    portfolio: SharedPortfolio,
    _stop: DropGuard,
}

/// A running coordinator (its event loop too) and risk task around the double, with the
/// exchange's request timeout `timeout`.
fn start(timeout: Duration) -> Env {
    let clock = ManualClock::default();
    let bus = EventBus::new(4096);
    let portfolio = SharedPortfolio::new(
        Portfolio::from_config(&Config::default(), Arc::new(clock.clone())).unwrap(),
        RiskLimits::from_config(&RiskConfig::default()).unwrap(),
    );
    let double = SlowWire::new(Publisher::new(
        Some(bus.clone()),
        Arc::new(clock.clone()),
        Source::Exec,
    ));
    let gate = TradingGate::new_closed();
    let exchange: Arc<dyn Exchange> = Arc::new(GatedExchange::new(
        Arc::clone(&double),
        gate.clone(),
        Publisher::new(Some(bus.clone()), Arc::new(clock.clone()), Source::Exec),
    ));
    let cfg = HaltConfig {
        closure_max_attempts: 3,
        closure_backoff_ms: 10,
        ..HaltConfig::default()
    };
    let journal = Arc::new(Journal::in_memory(Arc::new(clock.clone())).unwrap());
    let halt = HaltCoordinator::builder(&cfg, journal, gate.clone())
        .exchange(Arc::clone(&exchange))
        .portfolio(Arc::new(portfolio.clone()))
        .bus(bus.clone())
        .clock(Arc::new(clock.clone()))
        .exchange_timeout(timeout)
        .open()
        .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(
        portfolio
            .clone()
            .run(bus.subscribe(SharedPortfolio::kinds()), stop.clone()),
    );
    let sub = bus.subscribe(halt.subscription_kinds());
    let looping = halt.clone();
    let stopped = stop.clone();
    tokio::spawn(async move { looping.run(sub, stopped).await });
    Env {
        halt,
        gate,
        double,
        exchange,
        portfolio,
        _stop: stop.drop_guard(),
    }
}

fn position(portfolio: &SharedPortfolio) -> Decimal {
    portfolio
        .positions()
        .into_iter()
        .find(|p| p.pair == xrp())
        .map_or(Decimal::ZERO, |p| p.qty)
}

/// The `closure_result` records: (round, flat, detail).
fn closure_results(halt: &HaltCoordinator) -> Vec<(u64, bool, String)> {
    halt.journal()
        .records(1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "closure_result")
        .map(|r| {
            (
                r.detail["round"].as_u64().unwrap(),
                r.detail["flat"].as_bool().unwrap(),
                r.detail["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Puts a buy of 100 XRP on the wire at t0, halts at t0 + 1 s, then checks that nothing
/// admitted after the close reaches the wire. Returns when the close returned.
async fn halt_across_a_buy_on_the_wire(env: &Env) -> Instant {
    assert!(env.gate.is_open(), "a fresh journal starts running");
    let strategy = Arc::clone(&env.exchange);
    let on_the_wire = tokio::spawn(async move {
        strategy
            .place_order(&market("buy-1", Side::Buy, dec!(100)))
            .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.double.wire().len(), 1, "the buy is on the wire");
    assert_eq!(env.gate.in_flight(), 1);

    let outcome = env.halt.halt(HaltSource::Cli, "operator").await;
    assert!(outcome.started);
    let closed_at = Instant::now();
    assert!(!env.gate.is_open());

    // After the close: an ordinary order, and one that only says it is a closure.
    let refused = env
        .exchange
        .place_order(&market("buy-2", Side::Buy, dec!(5)))
        .await;
    assert!(
        matches!(refused, Err(gf_exec::Error::Halted)),
        "{refused:?}"
    );
    let mut mislabelled = market("fake-closure", Side::Sell, dec!(100));
    mislabelled.purpose = OrderPurpose::HaltClosure;
    let refused = env.exchange.place_order(&mislabelled).await;
    assert!(
        matches!(refused, Err(gf_exec::Error::InvalidOrder(_))),
        "{refused:?}"
    );

    let ack = on_the_wire.await.unwrap().unwrap();
    assert_eq!(
        ack.status,
        OrderStatus::Filled,
        "the buy executed after the halt"
    );
    closed_at
}

/// Waits (paused time, at most 15 s) until the portfolio holds `qty` XRP.
async fn until_holding(env: &Env, qty: Decimal) {
    for _ in 0..60 {
        if position(&env.portfolio) == qty {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "holding {} XRP, expected {qty}; closures: {:?}",
        position(&env.portfolio),
        closure_results(&env.halt)
    );
}

/// Everything that reached the wire after the close is a sealed closure, and the closures
/// sold exactly what the late buy bought.
fn only_sealed_closures_after(env: &Env, closed_at: Instant) -> Decimal {
    let wire = env.double.wire();
    assert_eq!(wire[0].1.client_order_id.as_str(), "buy-1");
    let mut sold = Decimal::ZERO;
    for (at, order) in &wire[1..] {
        assert!(*at >= closed_at);
        assert!(
            order.is_sealed() && order.is_closure(),
            "{} reached the wire after the close",
            order.client_order_id
        );
        assert_eq!(order.side, Side::Sell);
        sold += order.qty;
    }
    sold
}

#[tokio::test(start_paused = true)]
async fn the_halt_waits_for_the_order_on_the_wire_and_flattens_its_fill() {
    // The exchange timeout (5 s) covers the 3 s hold: the halt waits for the buy.
    let env = start(Duration::from_secs(5));
    let closed_at = halt_across_a_buy_on_the_wire(&env).await;
    let mut state = env.halt.watch_state();
    state.wait_for(|s| *s == HaltState::Halted).await.unwrap();
    until_holding(&env, Decimal::ZERO).await;

    assert_eq!(only_sealed_closures_after(&env, closed_at), dec!(100));
    let wire = env.double.wire();
    let first_closure = wire[1].0;
    assert!(
        first_closure >= closed_at + Duration::from_secs(2),
        "no closure before the order on the wire resolved"
    );
    // The halt's own closure (round 1) saw the fill: it was reconciled and reached the
    // portfolio before the closure computed positions.
    assert_eq!(
        closure_results(&env.halt),
        [(1, true, "1 position(s) closed".to_owned())]
    );
    assert_eq!(env.halt.state(), HaltState::Halted);
    assert!(!env.gate.is_open());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(env.double.wire().len(), 2, "no further closure");
}

#[tokio::test(start_paused = true)]
async fn a_fill_landing_after_the_closure_reported_flat_is_closed_in_a_second_round() {
    // The exchange timeout (1 s) is shorter than the hold: the halt gives up waiting,
    // finds nothing at the exchange, reports flat; the buy fills 0.5 s later.
    let env = start(Duration::from_secs(1));
    let mut state = env.halt.watch_state();
    let closed_at = halt_across_a_buy_on_the_wire(&env).await;
    state.wait_for(|s| *s == HaltState::Halted).await.unwrap();
    assert_eq!(
        closure_results(&env.halt),
        [(1, true, "nothing to close".to_owned())],
        "the halt's own closure saw no position"
    );
    assert_eq!(env.double.wire().len(), 1, "no closure order yet");

    // The buy executes at t0 + 3 s, its fill reaches the portfolio a second later …
    until_holding(&env, dec!(100)).await;
    // … and a second closure round sells it.
    until_holding(&env, Decimal::ZERO).await;
    assert_eq!(only_sealed_closures_after(&env, closed_at), dec!(100));
    let results = closure_results(&env.halt);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(
        results[1],
        (2, true, "1 position(s) closed".to_owned()),
        "{results:?}"
    );
    // The second round started after the late fill, not before.
    let wire = env.double.wire();
    assert!(wire[1].0 >= closed_at + Duration::from_secs(2));
    assert_eq!(env.halt.state(), HaltState::Halted);
    assert!(!env.gate.is_open());
    assert!(env.halt.journal().verify().is_ok());

    // Flat stays flat: no further round.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(closure_results(&env.halt).len(), 2);
    assert_eq!(env.double.wire().len(), 2);
}

#[tokio::test]
async fn only_one_coordinator_holds_the_gate_opener() {
    let clock: gf_core::SharedClock = Arc::new(ManualClock::default());
    let open = |gate: &TradingGate| {
        let double = SlowWire::new(Publisher::new(None, clock.clone(), Source::Exec));
        let portfolio = SharedPortfolio::new(
            Portfolio::from_config(&Config::default(), clock.clone()).unwrap(),
            RiskLimits::from_config(&RiskConfig::default()).unwrap(),
        );
        let journal = Arc::new(Journal::in_memory(clock.clone()).unwrap());
        HaltCoordinator::builder(&HaltConfig::default(), journal, gate.clone())
            .exchange(double)
            .portfolio(Arc::new(portfolio))
            .bus(EventBus::new(64))
            .clock(clock.clone())
            .open()
    };
    let gate = TradingGate::new_closed();
    let halt = open(&gate).unwrap();
    assert!(gate.is_open(), "the coordinator opened it on restore");
    assert!(
        gate.take_opener().is_none(),
        "the coordinator keeps the opener"
    );
    let second = open(&gate).unwrap_err();
    assert!(matches!(second, Error::GateOpenerTaken), "{second}");
    assert!(
        !gate.is_open(),
        "a refused coordinator still closed the gate"
    );

    // Whoever took the opener first, a coordinator cannot be built on that gate.
    let taken = TradingGate::new_closed();
    let _opener = taken.take_opener().unwrap();
    assert!(matches!(open(&taken), Err(Error::GateOpenerTaken)));
    assert!(!taken.is_open());
    drop(halt);
}
