//! Live start-up reconciliation over 127.0.0.1 against the mock Kraken REST server: an
//! order left open on the account (by a previous run or by hand) is cancelled before the
//! gate can open (`exchange.unknown_orders = "cancel"`, the default) or adopted and
//! tracked (`"adopt"`: its later fill reaches the bus); what was found and done is
//! journaled; and a first failing `AssetPairs` does not abort the launch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gf_core::config::{SecretProviderKind, UnknownOrders};
use gf_core::{
    ClientOrderId, Config, EventKind, KindSet, Mode, OrderPurpose, OrderRequest, OrderType, Pair,
    Payload, Side, Source, SystemClock, TimeInForce, TradingGate,
};
use gf_daemon::app::{Running, Scenario, start_with_env};
use gf_daemon::live::{RECONCILIATION_KIND, env_from_pairs};
use gf_exec::events::Publisher;
use gf_exec::sim::{DEFAULT_SECRET_B64, Fault, MockConfig, MockKraken, MockKrakenHandle};
use gf_exec::{Exchange as _, KrakenClient, KrakenConfig};
use gf_market::sim::{SimConfig, SimServer};
use rust_decimal::Decimal;

const API_KEY: &str = "GfLiveReconcileMockKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn pair(s: &str) -> Pair {
    Pair::new(s).unwrap()
}

async fn mock_kraken() -> MockKrakenHandle {
    assert_eq!(API_KEY.len(), 56);
    MockKraken::start(MockConfig {
        api_key: API_KEY.into(),
        secret_b64: DEFAULT_SECRET_B64.into(),
        balances: BTreeMap::from([
            ("ZUSD".to_owned(), Decimal::from(50_000)),
            ("XXRP".to_owned(), Decimal::from(300)),
        ]),
        prices: BTreeMap::from([
            (pair("XRP/USD"), Decimal::new(218_445, 5)),
            (pair("DOGE/USD"), Decimal::new(17_234, 5)),
        ]),
        nonce_window: 1_000_000,
        ..MockConfig::default()
    })
    .await
    .unwrap()
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
        .place_order(&OrderRequest {
            client_order_id: ClientOrderId::new("byhand1"),
            pair: pair("XRP/USD"),
            side: Side::Buy,
            order_type: OrderType::Limit,
            qty: Decimal::from(20),
            limit_price: Some(Decimal::ONE),
            time_in_force: TimeInForce::Gtc,
            reduce_only: false,
            user_ref: None,
            purpose: OrderPurpose::Normal,
            closure_seal: None,
        })
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
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.mode = Mode::Live;
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.exchange.rest_url = kraken.url();
    cfg.exchange.ws_auth_url = kraken.ws_url();
    cfg.exchange.tier = "pro".into();
    cfg.exchange.unknown_orders = policy;
    cfg.market.ws_url = ws.url();
    cfg.secrets.provider = SecretProviderKind::Env;
    start_with_env(
        cfg,
        Scenario::Normal,
        Arc::new(SystemClock),
        env_from_pairs([
            ("KRAKEN_API_KEY", API_KEY),
            ("KRAKEN_API_SECRET", DEFAULT_SECRET_B64),
        ]),
    )
    .await
    .unwrap()
}

fn reconciliation(running: &Running) -> serde_json::Value {
    let records = running.daemon.halt.journal().records(1_000).unwrap();
    let found: Vec<_> = records
        .into_iter()
        .filter(|r| r.kind == RECONCILIATION_KIND)
        .collect();
    assert_eq!(found.len(), 1, "one reconciliation record per start");
    found[0].detail.clone()
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
