//! Idempotent order entry against the mock Kraken: every `AddOrder` carries a `deadline`,
//! an attempt whose answer is lost is looked up until that deadline has passed, and one
//! `cl_ord_id` never becomes two orders. Paused tokio time: the client's timeouts, the
//! mock's processing delays and both sides' `deadline` arithmetic share one virtual clock,
//! so "processed before / after the deadline" does not depend on the machine's load.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gf_core::{
    ClientOrderId, Clock, EventBus, EventKind, KindSet, OrderRequest, OrderStatus, Pair, Payload,
    Side, Source, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::ratelimit::Limits;
use gf_exec::sim::{DEADLINE_ELAPSED, Fault, MockConfig, MockKraken, MockKrakenHandle};
use gf_exec::{Error, Exchange, KrakenClient, KrakenConfig};
use rust_decimal_macros::dec;

use common::{TokioClock, wait_for};

fn limit_buy(id: &str) -> OrderRequest {
    OrderRequest::limit(
        ClientOrderId::new(id),
        Pair::new("XRP/USD").unwrap(),
        Side::Buy,
        dec!(10),
        dec!(0.40),
    )
}

/// A client timing out after 300 ms, sending `deadline` 1 s ahead, deciding 200 ms after it;
/// the mock and the client read the time from `clock`.
async fn setup(
    max_retries: u32,
    clock: &Arc<TokioClock>,
) -> (MockKrakenHandle, KrakenClient, EventBus) {
    let server = MockKraken::start(MockConfig {
        clock: clock.clone(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let bus = EventBus::new(1024);
    let mut cfg = KrakenConfig::new(server.url());
    cfg.timeout = Duration::from_millis(300);
    cfg.order_deadline = Duration::from_secs(1);
    cfg.deadline_margin = Duration::from_millis(200);
    cfg.max_retries = max_retries;
    cfg.retry_backoff = Duration::from_millis(10);
    cfg.rest_limits = Limits {
        max: 1000,
        decay_milli_per_sec: 1_000_000,
        priority_reserve: 10,
    };
    cfg.trading_limits = cfg.rest_limits;
    let client = KrakenClient::new(
        cfg,
        Arc::new(server.credentials()),
        Publisher::new(Some(bus.clone()), clock.clone(), Source::Exec),
    )
    .unwrap()
    .with_gate(TradingGate::new_open());
    (server, client, bus)
}

fn orders_with(server: &MockKrakenHandle, cl: &str) -> usize {
    server
        .orders()
        .iter()
        .filter(|o| o.cl_ord_id.as_deref() == Some(cl))
        .count()
}

/// The `deadline` of each `AddOrder` the mock received (in the order recorded), with the
/// outcome.
fn add_order_deadlines(server: &MockKrakenHandle) -> Vec<(DateTime<Utc>, String)> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "AddOrder")
        .map(|r| {
            let text = r
                .params
                .iter()
                .find(|(k, _)| k == "deadline")
                .map(|(_, v)| v.clone())
                .expect("every AddOrder carries a deadline");
            let at = DateTime::parse_from_rfc3339(&text)
                .expect("RFC 3339")
                .with_timezone(&Utc);
            (at, r.outcome)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn first_add_order_processed_after_the_client_timeout_is_found_not_sent_again() {
    let clock = Arc::new(TokioClock::new());
    let (server, client, bus) = setup(2, &clock).await;
    let mut updates = bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
    // The exchange queues the request 700 ms: past the client's 300 ms timeout, before
    // the order's 1 s deadline. It is placed while the client no longer listens.
    server.faults().inject(
        Some("AddOrder"),
        Fault::ProcessLate(Duration::from_millis(700)),
    );
    let sent = clock.now();
    let ack = client.place_order(&limit_buy("late-1")).await.unwrap();
    let returned = clock.now();

    assert_eq!(orders_with(&server, "late-1"), 1, "exactly one order");
    let placed = server.orders().into_iter().next().unwrap();
    assert_eq!(ack.order_id.as_str(), placed.txid, "the client reports it");
    assert_eq!(ack.status, OrderStatus::Open);
    let adds = add_order_deadlines(&server);
    assert_eq!(adds.len(), 1, "no second AddOrder: {adds:?}");
    assert_eq!(adds[0].1, "ok");
    // 1 s after the send (stamped to the millisecond), which lies within the call.
    let deadline = adds[0].0;
    assert!(
        deadline >= sent + chrono::Duration::milliseconds(999)
            && deadline <= returned + chrono::Duration::seconds(1),
        "deadline {deadline} for a send between {sent} and {returned}"
    );
    let reported = std::iter::from_fn(|| updates.try_recv().ok()).any(|ev| {
        matches!(&ev.payload, Payload::OrderUpdate { order_id: Some(id), status, .. }
            if id.as_str() == placed.txid && *status == OrderStatus::Open)
    });
    assert!(reported, "an OrderUpdate names the order");
}

#[tokio::test(start_paused = true)]
async fn add_order_processed_after_its_deadline_is_not_placed_and_sent_again_only_then() {
    let (server, client, _bus) = setup(2, &Arc::new(TokioClock::new())).await;
    // Queued past its deadline: the mock's matching engine rejects it.
    server.faults().inject(
        Some("AddOrder"),
        Fault::ProcessLate(Duration::from_millis(1500)),
    );
    let ack = client.place_order(&limit_buy("late-2")).await.unwrap();
    // Let the late request finish at the mock (it is recorded when processed).
    wait_for(
        "both AddOrder attempts at the mock",
        Duration::from_secs(10),
        || add_order_deadlines(&server).len() >= 2,
    )
    .await;
    assert_eq!(orders_with(&server, "late-2"), 1, "exactly one order");
    assert_eq!(ack.order_id.as_str(), server.orders()[0].txid);
    let mut adds = add_order_deadlines(&server);
    adds.sort_by_key(|(at, _)| *at);
    assert_eq!(adds.len(), 2, "{adds:?}");
    assert_eq!(
        adds[0].1, DEADLINE_ELAPSED,
        "the first expired at the exchange"
    );
    assert_eq!(adds[1].1, "ok");
    // The second was sent only after the first's deadline and the clock margin had passed
    // (its own deadline lies 1 s after its send).
    let gap = adds[1].0 - adds[0].0;
    assert!(gap >= chrono::Duration::milliseconds(1200), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn without_retries_an_expired_order_is_reported_failed_and_never_placed() {
    let (server, client, _bus) = setup(0, &Arc::new(TokioClock::new())).await;
    server.faults().inject(
        Some("AddOrder"),
        Fault::ProcessLate(Duration::from_millis(1500)),
    );
    let err = client.place_order(&limit_buy("late-3")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    wait_for(
        "the late AddOrder at the mock",
        Duration::from_secs(10),
        || !add_order_deadlines(&server).is_empty(),
    )
    .await;
    assert_eq!(orders_with(&server, "late-3"), 0);
    assert_eq!(add_order_deadlines(&server)[0].1, DEADLINE_ELAPSED);
}
