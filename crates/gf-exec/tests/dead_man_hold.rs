//! The dead man's switch is refreshed while the daemon lives, halted or not: a `hold`
//! halt leaves resting orders at the (mock) exchange past the switch timeout, and only a
//! process that stops refreshing lets the exchange cancel them. Paused tokio time; the
//! mock's `CancelAllOrdersAfter` runs on a clock that follows it.

mod common;
use common::TokioClock;

use std::sync::Arc;
use std::time::Duration;

use gf_core::{ClientOrderId, Clock, OrderRequest, Pair, Side, Source, TradingGate};
use gf_exec::events::Publisher;
use gf_exec::ratelimit::Limits;
use gf_exec::sim::{MockConfig, MockKraken};
use gf_exec::{DeadManConfig, DeadManSwitch, Exchange, KrakenClient, KrakenConfig};
use rust_decimal_macros::dec;

#[tokio::test(start_paused = true)]
async fn hold_keeps_resting_orders_past_the_switch_timeout() {
    let clock = Arc::new(TokioClock::new());
    let server = MockKraken::start(MockConfig {
        clock: clock.clone(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let mut cfg = KrakenConfig::new(server.url());
    cfg.rest_limits = Limits {
        max: 1000,
        decay_milli_per_sec: 1_000_000,
        priority_reserve: 10,
    };
    cfg.trading_limits = cfg.rest_limits;
    let gate = TradingGate::new_open();
    let events = Publisher::new(None, clock.clone(), Source::Exec);
    let client: Arc<KrakenClient> = Arc::new(
        KrakenClient::new(cfg, Arc::new(server.credentials()), events.clone())
            .unwrap()
            .with_gate(gate.clone()),
    );
    let resting = OrderRequest::limit(
        ClientOrderId::new("resting-1"),
        Pair::new("XRP/USD").unwrap(),
        Side::Buy,
        dec!(10),
        dec!(0.40),
    );
    client.place_order(&resting).await.unwrap();
    let keeper = DeadManSwitch::spawn(client.clone(), DeadManConfig::new(60, false), events);

    // A halt with `hold`: the gate closes, nothing is cancelled.
    gate.close();
    tokio::time::sleep(Duration::from_secs(200)).await;
    let open = client.open_orders().await.unwrap();
    assert_eq!(open.len(), 1, "200 s into a 60 s switch, the order rests");
    assert_eq!(server.orders()[0].status, "open");
    let trigger = server.dead_man_trigger().expect("still armed");
    assert!(trigger > clock.now(), "refreshed ahead of the clock");
    let refreshes = server
        .requests()
        .iter()
        .filter(|r| r.endpoint == "CancelAllOrdersAfter")
        .count();
    assert!(refreshes >= 13, "every 15 s while halted: {refreshes}");

    // The process stops refreshing (no disarm configured): the exchange cancels.
    keeper.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(client.open_orders().await.unwrap().is_empty());
    assert_eq!(server.orders()[0].status, "canceled");
}
