//! Live start-up reconciliation over 127.0.0.1 against the mock Kraken REST server: an
//! order left open on the account (by a previous run or by hand) is cancelled before the
//! gate can open (`exchange.unknown_orders = "cancel"`, the default) or adopted and
//! tracked (`"adopt"`: its later fill reaches the bus); what was found and done is
//! journaled; and a first failing `AssetPairs` does not abort the launch.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::config::UnknownOrders;
use gf_core::{
    ClientOrderId, Config, EventKind, KindSet, OrderRequest, Payload, Side, Source, SystemClock,
    TradingGate,
};
use gf_daemon::app::{Running, Scenario, start_with_env};
use gf_e2e::live::{self, pair};
use gf_exec::events::Publisher;
use gf_exec::sim::{Fault, MockKrakenHandle};
use gf_exec::{Exchange as _, KrakenClient, KrakenConfig};
use gf_market::sim::{SimConfig, SimServer};
use rust_decimal::Decimal;

const API_KEY: &str = "GfLiveReconcileMockKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn mock_kraken() -> MockKrakenHandle {
    live::mock_kraken(
        API_KEY,
        &[
            ("ZUSD", Decimal::from(50_000)),
            ("XXRP", Decimal::from(300)),
        ],
    )
    .await
}

/// A resting limit buy far below the market, placed by "a previous run" before the daemon
/// starts. Returns its txid.
async fn leave_an_open_order(kraken: &MockKrakenHandle) -> String {
    let by_hand = KrakenClient::new(
        KrakenConfig::new(kraken.url()),
        Arc::new(kraken.credentials()),
        Publisher::new(None, Arc::new(SystemClock), Source::Test),
    )
    .unwrap()
    .with_gate(TradingGate::new_open());
    by_hand.asset_pairs().await.unwrap();
    let ack = by_hand
        .place_order(&OrderRequest::limit(
            ClientOrderId::new("byhand1"),
            pair("XRP/USD"),
            Side::Buy,
            Decimal::from(20),
            Decimal::ONE,
        ))
        .await
        .unwrap();
    ack.order_id.to_string()
}

async fn start(
    dir: &std::path::Path,
    kraken: &MockKrakenHandle,
    ws: &SimServer,
    policy: UnknownOrders,
) -> Running {
    let mut cfg = live::live_config(dir, &kraken.url(), &ws.url());
    cfg.exchange.unknown_orders = policy;
    start_with_env(
        cfg,
        Scenario::Normal,
        Arc::new(SystemClock),
        live::mock_credentials(API_KEY),
    )
    .await
    .unwrap()
}

fn reconciliation(running: &Running) -> serde_json::Value {
    let found = live::reconciliations(running);
    assert_eq!(found.len(), 1, "one reconciliation record per start");
    found[0].clone()
}

async fn ws_server() -> SimServer {
    let recording = std::fs::read(gf_e2e::fixture("market/paper.jsonl")).unwrap();
    SimServer::start(&recording, SimConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_order_left_on_the_exchange_is_cancelled_by_default() {
    let kraken = mock_kraken().await;
    let txid = leave_an_open_order(&kraken).await;
    // Kraken is busy at the first AssetPairs: start-up retries instead of giving up.
    kraken
        .faults()
        .inject(Some("AssetPairs"), Fault::Unavailable);
    let ws = ws_server().await;
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        Config::from_toml_str("").unwrap().exchange.unknown_orders,
        UnknownOrders::Cancel
    );
    let running = start(dir.path(), &kraken, &ws, UnknownOrders::Cancel).await;

    let order = kraken
        .orders()
        .into_iter()
        .find(|o| o.txid == txid)
        .unwrap();
    assert_eq!(order.status, "canceled", "{order:?}");
    let requests = kraken.requests();
    let cancel = requests
        .iter()
        .position(|r| r.endpoint == "CancelOrder" && r.outcome == "ok")
        .expect("CancelOrder sent");
    assert!(
        requests[..cancel]
            .iter()
            .filter(|r| r.endpoint == "AssetPairs")
            .count()
            >= 2,
        "AssetPairs retried before the reconciliation"
    );
    // Nothing the daemon placed went out before the old order was gone.
    let first_add = requests.iter().position(|r| {
        r.endpoint == "AddOrder"
            && !r
                .params
                .iter()
                .any(|(k, v)| k == "cl_ord_id" && v == "byhand1")
    });
    assert!(first_add.is_none_or(|i| i > cancel), "{requests:?}");

    let found = reconciliation(&running);
    assert_eq!(found["unknown_orders"], "cancel", "{found}");
    assert_eq!(found["open_orders"][0]["txid"], txid.as_str(), "{found}");
    assert_eq!(found["open_orders"][0]["action"], "cancelled", "{found}");
    assert_eq!(found["held"]["XRP"], "300", "{found}");
    assert_eq!(found["system_status"], "online", "{found}");
    assert!(found["recent_closed_orders"].is_array(), "{found}");

    running.stop().await;
    ws.shutdown().await;
    kraken.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_order_stays_open_and_its_fill_reaches_the_bus() {
    let kraken = mock_kraken().await;
    let txid = leave_an_open_order(&kraken).await;
    let ws = ws_server().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &kraken, &ws, UnknownOrders::Adopt).await;
    let mut fills = running
        .daemon
        .bus
        .subscribe(KindSet::of(&[EventKind::Fill]));

    let found = reconciliation(&running);
    assert_eq!(found["open_orders"][0]["action"], "adopted", "{found}");
    assert_eq!(found["open_orders"][0]["tracked_as"], "byhand1", "{found}");
    assert!(
        kraken
            .requests()
            .iter()
            .all(|r| r.endpoint != "CancelOrder"),
        "an adopted order is not cancelled"
    );
    let order = kraken
        .orders()
        .into_iter()
        .find(|o| o.txid == txid)
        .unwrap();
    assert_eq!(order.status, "open");

    // It fills at the exchange; order-status sync reports it like one of ours.
    assert!(kraken.fill_order(&txid, Decimal::from(20), Decimal::ONE));
    let fill = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = fills.recv().await.unwrap();
            if let Payload::Fill(f) = &ev.payload {
                return f.clone();
            }
        }
    })
    .await
    .expect("the adopted order's fill within 20 s");
    assert_eq!(fill.order_id.to_string(), txid);
    assert_eq!(fill.qty, Decimal::from(20));
    assert_eq!(fill.client_order_id, Some(ClientOrderId::new("byhand1")));

    running.stop().await;
    ws.shutdown().await;
    kraken.shutdown().await;
}
