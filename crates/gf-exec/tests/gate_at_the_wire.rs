//! The trading gate is checked where each `AddOrder` is written, not before the rate
//! limiter or the retry loop: the Kraken client against the mock Kraken over loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use gf_core::{
    ClientOrderId, EventBus, EventKind, KindSet, OrderRequest, OrderStatus, OrderType, Pair,
    Payload, Side, Source, Subscription, SystemClock, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::ratelimit::{Lane, Limits};
use gf_exec::sim::{Fault, MockConfig, MockKraken, MockKrakenHandle};
use gf_exec::{Error, Exchange, GatedExchange, KrakenClient, KrakenConfig};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use common::wait_for;

fn order(id: &str) -> OrderRequest {
    OrderRequest::limit(
        ClientOrderId::new(id),
        Pair::new("XRP/USD").unwrap(),
        Side::Buy,
        dec!(10),
        dec!(0.40),
    )
}

struct Setup {
    server: MockKrakenHandle,
    client: Arc<KrakenClient>,
    exchange: GatedExchange<Arc<KrakenClient>>,
    gate: TradingGate,
    bus: EventBus,
}

async fn setup(tune: impl FnOnce(&mut KrakenConfig)) -> Setup {
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    let bus = EventBus::new(4096);
    let mut cfg = KrakenConfig::new(server.url());
    cfg.timeout = Duration::from_secs(2);
    cfg.retry_backoff = Duration::from_millis(10);
    let roomy = Limits {
        max: 1000,
        decay_milli_per_sec: 1_000_000,
        priority_reserve: 10,
    };
    cfg.rest_limits = roomy;
    cfg.trading_limits = roomy;
    tune(&mut cfg);
    let gate = TradingGate::new_open();
    let events = || Publisher::new(Some(bus.clone()), Arc::new(SystemClock), Source::Exec);
    let client = Arc::new(
        KrakenClient::new(cfg, Arc::new(server.credentials()), events())
            .unwrap()
            .with_gate(gate.clone()),
    );
    let exchange = Arc::clone(&client).into_gated(events()).unwrap();
    Setup {
        server,
        client,
        exchange,
        gate,
        bus,
    }
}

/// The `AddOrder` requests the mock received for `id`, with their outcomes.
fn add_orders(server: &MockKrakenHandle, id: &str) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| {
            r.endpoint == "AddOrder"
                && r.params
                    .iter()
                    .any(|(k, v)| k == "cl_ord_id" && v.as_str() == id)
        })
        .map(|r| r.outcome)
        .collect()
}

/// The last `OrderUpdate` published for `id`.
fn last_update(sub: &mut Subscription, id: &str) -> Option<(OrderStatus, String)> {
    std::iter::from_fn(|| sub.try_recv().ok())
        .filter_map(|ev| match &ev.payload {
            Payload::OrderUpdate {
                client_order_id,
                status,
                reason,
                ..
            } if client_order_id.as_str() == id => {
                Some((*status, reason.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .last()
}

#[tokio::test]
async fn an_order_waiting_for_the_rate_limiter_is_refused_at_the_wire_when_the_gate_closes() {
    // Matching-engine budget of 3 points, 1 kept for the priority lane, 2 points decay per
    // second: two orders fill the normal lane, the third waits about half a second.
    let tight = Limits {
        max: 3,
        decay_milli_per_sec: 2_000,
        priority_reserve: 1,
    };
    let s = setup(|c| c.trading_limits = tight).await;
    let mut updates = s.bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
    for id in ["n1", "n2"] {
        s.exchange.place_order(&order(id)).await.unwrap();
    }
    let exchange = Arc::new(s.exchange);
    let waiting = tokio::spawn({
        let exchange = Arc::clone(&exchange);
        async move { exchange.place_order(&order("n3")).await }
    });
    // n3 passes the early check (the gate is open) and parks in the limiter.
    wait_for(
        "n3 to wait in the rate limiter",
        Duration::from_secs(10),
        || s.client.trading_limiter().waiting(Lane::Normal) == 1,
    )
    .await;
    assert!(!waiting.is_finished(), "n3 waits for the limiter");
    assert!(s.gate.close());

    // Refused after the limiter's wait, at the wire: it was past the early check.
    let refused = waiting.await.unwrap();
    assert!(matches!(refused, Err(Error::Halted)), "{refused:?}");
    assert_eq!(s.client.trading_limiter().waiting(Lane::Normal), 0);
    assert!(
        add_orders(&s.server, "n3").is_empty(),
        "nothing reached Kraken"
    );
    assert_eq!(add_orders(&s.server, "n2"), ["ok"]);
    let (status, reason) = last_update(&mut updates, "n3").unwrap();
    assert_eq!(status, OrderStatus::Rejected);
    assert!(reason.contains("halted"), "{reason}");
    assert_eq!(s.gate.in_flight(), 0);
    assert!(
        s.gate.in_flight_orders().is_empty(),
        "nothing was on the wire across the close"
    );
}

#[tokio::test]
async fn a_retry_after_the_gate_closed_is_refused_at_the_wire() {
    let s = setup(|c| {
        c.max_retries = 3;
        c.retry_backoff = Duration::from_millis(50);
    })
    .await;
    let mut api_errors = s.bus.subscribe(KindSet::of(&[EventKind::ApiError]));
    let mut updates = s.bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
    s.server.faults().inject(Some("AddOrder"), Fault::RateLimit);
    let placing = tokio::spawn({
        let client = Arc::clone(&s.client);
        async move { client.place_order(&order("retried")).await }
    });
    // The first attempt is answered "rate limit exceeded" (retryable, nothing placed);
    // the halt closes the gate during the backoff.
    let ev = api_errors.recv().await.unwrap();
    assert!(
        matches!(&ev.payload, Payload::ApiError { endpoint, .. } if endpoint == "AddOrder"),
        "{ev:?}"
    );
    s.gate.close();

    let refused = placing.await.unwrap();
    assert!(matches!(refused, Err(Error::Halted)), "{refused:?}");
    assert_eq!(
        add_orders(&s.server, "retried"),
        ["fault:rate_limit"],
        "the retry never reached Kraken"
    );
    assert!(s.server.orders().is_empty());
    let (status, _) = last_update(&mut updates, "retried").unwrap();
    assert_eq!(status, OrderStatus::Rejected);
}

#[tokio::test]
async fn an_attempt_with_an_unknown_outcome_is_kept_for_the_halt_to_reconcile() {
    let s = setup(|c| {
        c.timeout = Duration::from_millis(200);
        c.max_retries = 2;
        c.retry_backoff = Duration::from_millis(50);
    })
    .await;
    let mut api_errors = s.bus.subscribe(KindSet::of(&[EventKind::ApiError]));
    let mut updates = s.bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
    s.server
        .faults()
        .inject(Some("AddOrder"), Fault::Stall(Duration::from_secs(1)));
    let placing = tokio::spawn({
        let client = Arc::clone(&s.client);
        async move { client.place_order(&order("unknown")).await }
    });
    let ev = api_errors.recv().await.unwrap();
    assert!(
        matches!(&ev.payload, Payload::ApiError { endpoint, .. } if endpoint == "AddOrder"),
        "{ev:?}"
    );
    s.gate.close();

    // The client looks for the order (not found), then its retry is refused at the wire:
    // the outcome of the first attempt stays unknown, and the gate remembers it.
    let err = placing.await.unwrap().unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    // The stalled attempt was abandoned by the client (the mock drops it unrecorded); a
    // retry would have been answered and recorded.
    assert!(add_orders(&s.server, "unknown").is_empty());
    assert!(s.server.orders().is_empty());
    let (status, reason) = last_update(&mut updates, "unknown").unwrap();
    assert_eq!(status, OrderStatus::Pending);
    assert!(reason.contains("outcome unknown"), "{reason}");
    assert_eq!(
        s.gate.in_flight_orders(),
        vec![ClientOrderId::new("unknown")]
    );
}

#[tokio::test]
async fn reconcile_publishes_the_fill_of_an_order_the_client_lost_track_of() {
    let s = setup(|c| {
        c.timeout = Duration::from_millis(200);
        c.max_retries = 0;
    })
    .await;
    let mut fills = s.bus.subscribe(KindSet::of(&[EventKind::Fill]));
    // Placed and filled at Kraken, but the answer is lost and so is the look-up after it.
    s.server.faults().inject(
        Some("AddOrder"),
        Fault::DropAfterAccept(Duration::from_secs(1)),
    );
    s.server
        .faults()
        .inject(Some("OpenOrders"), Fault::Unavailable);
    let mut market = order("lost");
    market.order_type = OrderType::Market;
    market.limit_price = None;
    let err = s.exchange.place_order(&market).await.unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    assert_eq!(
        s.client.sync_orders().await.unwrap(),
        0,
        "the client never knew it"
    );
    assert!(fills.try_recv().is_err());

    let found = s
        .exchange
        .reconcile_order(&ClientOrderId::new("lost"))
        .await
        .unwrap()
        .expect("Kraken has it");
    assert_eq!(found.info.status, OrderStatus::Filled);
    assert_eq!(found.published, dec!(10));
    let fill = match &fills.try_recv().unwrap().payload {
        Payload::Fill(f) => f.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        (fill.qty, fill.side, fill.client_order_id),
        (dec!(10), Side::Buy, Some(ClientOrderId::new("lost")))
    );
    // Asking again publishes nothing twice.
    let again = s
        .exchange
        .reconcile_order(&ClientOrderId::new("lost"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.published, Decimal::ZERO);
    assert!(fills.try_recv().is_err());
    assert!(
        s.exchange
            .reconcile_order(&ClientOrderId::new("never-sent"))
            .await
            .unwrap()
            .is_none()
    );
}
