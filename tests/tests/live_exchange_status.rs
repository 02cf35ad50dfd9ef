//! Kraken's own trading mode in live mode, end to end over 127.0.0.1 against the mock
//! Kraken REST server (gf-exec `sim`) and the WebSocket test server (gf-market `sim`):
//! `maintenance` on the v2 `status` channel halts (`auto:exchange_status`) and resume is
//! refused until Kraken is `online` again; `cancel_only` (read from `SystemStatus` at
//! start-up and on the channel) lets cancels through and no new order; the mode is shown
//! in `GET /api/v1/halt/status`; a first `AssetPairs` failure at start-up is retried.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gf_core::{ClientOrderId, HaltSource, OrderRequest, Side, SystemClock};
use gf_daemon::app::{Running, Scenario, start_with_env};
use gf_e2e::live::{self, pair};
use gf_e2e::{Http, eventually};
use gf_exec::Exchange as _;
use gf_exec::sim::{Fault, MockKrakenHandle};
use gf_market::sim::{SimConfig, SimServer};
use rust_decimal::Decimal;
use serde_json::Value;

const API_KEY: &str = "GfLiveStatusMockKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn mock_kraken() -> MockKrakenHandle {
    live::mock_kraken(API_KEY, &[("ZUSD", Decimal::from(50_000))]).await
}

async fn start(dir: &std::path::Path, kraken: &MockKrakenHandle, ws: &SimServer) -> Running {
    start_with_env(
        live::live_config(dir, &kraken.url(), &ws.url()),
        Scenario::Crash,
        std::sync::Arc::new(SystemClock),
        live::mock_credentials(API_KEY),
    )
    .await
    .unwrap()
}

async fn status(http: &Http, token: &str) -> Value {
    http.get("/api/v1/halt/status", Some(token))
        .await
        .unwrap()
        .body
}

fn buy(id: &str) -> OrderRequest {
    OrderRequest::limit(
        ClientOrderId::new(id),
        pair("XRP/USD"),
        Side::Buy,
        Decimal::from(10),
        Decimal::new(2, 0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_on_the_status_channel_halts_and_holds_resume_until_online() {
    let kraken = mock_kraken().await;
    let recording = std::fs::read(gf_e2e::fixture("market/crash.jsonl")).unwrap();
    let ws = SimServer::start(&recording, SimConfig::default())
        .await
        .unwrap();
    // Kraken announces maintenance on the v2 `status` channel as the daemon connects.
    ws.handle().set_system_status("maintenance");
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &kraken, &ws).await;
    let token = running.operator_token.clone().unwrap();
    let http = Http::new(&running.url());

    let halted = eventually(Duration::from_secs(30), "the maintenance halt", || async {
        let s = status(&http, &token).await;
        Ok((s["state"] == "halted").then_some(s))
    })
    .await
    .unwrap();
    assert_eq!(halted["halt"]["source"], "auto:exchange_status", "{halted}");
    assert_eq!(halted["exchange_status"], "maintenance", "{halted}");
    assert_eq!(halted["gate_open"], false, "{halted}");

    // Recovery has its own item, and resume is refused while Kraken is in maintenance.
    let halt = &running.daemon.halt;
    halt.begin_recovery("alice").await.unwrap();
    let items: Vec<String> = halt
        .checklist()
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(
        items.iter().any(|i| i == "confirm_exchange_online"),
        "{items:?}"
    );
    for item in &items {
        halt.complete_item(item, "alice", None).await.unwrap();
    }
    let refused = halt.resume("alice").await.unwrap_err().to_string();
    assert!(refused.contains("exchange_status"), "{refused}");

    // Kraken is back: the channel says so, the status shows it, resume goes through.
    ws.handle().set_system_status("online");
    eventually(Duration::from_secs(10), "kraken online again", || async {
        Ok((status(&http, &token).await["exchange_status"] == "online").then_some(()))
    })
    .await
    .unwrap();
    let resumed = eventually(Duration::from_secs(10), "resume", || async {
        if halt.state() != gf_core::HaltState::Recovering {
            halt.begin_recovery("alice").await.ok();
            for item in halt.status().checklist_missing {
                halt.complete_item(&item, "alice", None).await.ok();
            }
        }
        Ok(halt.resume("alice").await.ok())
    })
    .await;
    assert!(resumed.is_ok(), "{resumed:?}");
    assert_eq!(status(&http, &token).await["state"], "running");

    running.stop().await;
    ws.shutdown().await;
    kraken.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_only_passes_cancels_and_no_new_order_and_start_up_retries_asset_pairs() {
    let kraken = mock_kraken().await;
    kraken.set_system_status("cancel_only");
    // The first AssetPairs fails as a busy Kraken would; start-up retries it.
    kraken
        .faults()
        .inject(Some("AssetPairs"), Fault::Unavailable);
    let recording = std::fs::read(gf_e2e::fixture("market/crash.jsonl")).unwrap();
    let ws = SimServer::start(&recording, SimConfig::default())
        .await
        .unwrap();
    ws.handle().set_system_status("cancel_only");
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &kraken, &ws).await;
    let token = running.operator_token.clone().unwrap();
    let http = Http::new(&running.url());

    let asset_pairs: Vec<String> = kraken
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "AssetPairs")
        .map(|r| r.outcome)
        .collect();
    assert_eq!(asset_pairs, ["fault:unavailable", "ok"]);

    let s = status(&http, &token).await;
    assert_eq!(s["exchange_status"], "cancel_only", "{s}");
    assert_eq!(s["state"], "running", "cancel_only does not halt: {s}");

    // A new order is refused before it is sent, naming the mode.
    let err = running
        .daemon
        .exchange
        .place_order(&buy("status-test-1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("exchange_cancel_only"), "{err}");

    // Cancels go through: an operator halt's CancelAll reaches Kraken.
    running
        .daemon
        .halt
        .halt(HaltSource::Api("alice".into()), "cancel_only test")
        .await;
    eventually(
        Duration::from_secs(20),
        "CancelAll at the exchange",
        || async {
            Ok(kraken
                .requests()
                .iter()
                .any(|r| r.endpoint == "CancelAll" && r.outcome == "ok")
                .then_some(()))
        },
    )
    .await
    .unwrap();
    // Nothing the daemon placed (strategy or test) reached Kraken.
    let added: Vec<_> = kraken
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "AddOrder")
        .collect();
    assert!(added.is_empty(), "{added:?}");

    running.stop().await;
    ws.shutdown().await;
    kraken.shutdown().await;
}
