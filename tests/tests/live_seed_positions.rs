//! Positions seeded from the account's balances, live over 127.0.0.1 against the mock
//! Kraken REST server and the WebSocket test server: the account already holds XRP when
//! the daemon starts, so the portfolio holds it as a position (unpriced until its first
//! mark, which becomes its entry) and the start-up reconciliation record says so; after a
//! restart with different balances, the balances replace the restored position and the
//! restored cash (a withdrawal: no loss, no drawdown); and an operator halt with
//! `close_positions` sells the whole holding to flat by balance, the portfolio agreeing.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::{HaltBehaviour, SystemClock};
use gf_daemon::app::{Running, Scenario, start_with_env};
use gf_e2e::live::{self, pair};
use gf_e2e::{Http, eventually};
use gf_exec::sim::MockKrakenHandle;
use gf_market::sim::{SimConfig, SimServer};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const API_KEY: &str = "GfLiveSeedMockKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const START_USD: i64 = 50_000;
/// The USD left after a withdrawal while the daemon was down.
const AFTER_WITHDRAWAL_USD: i64 = 42_000;

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("a decimal string, got {v}"))
        .parse()
        .unwrap()
}

async fn mock_kraken() -> MockKrakenHandle {
    // XRP held before the daemon ever ran (Kraken's asset name for XRP is XXRP).
    live::mock_kraken(
        API_KEY,
        &[
            ("ZUSD", Decimal::from(START_USD)),
            ("XXRP", Decimal::from(300)),
        ],
    )
    .await
}

async fn start(dir: &std::path::Path, kraken: &MockKrakenHandle, ws: &SimServer) -> Running {
    try_start(dir, kraken, ws).await.unwrap()
}

async fn try_start(
    dir: &std::path::Path,
    kraken: &MockKrakenHandle,
    ws: &SimServer,
) -> anyhow::Result<Running> {
    let cfg = live::live_config(dir, &kraken.url(), &ws.url());
    assert_eq!(cfg.halt.behaviour, HaltBehaviour::ClosePositions);
    start_with_env(
        cfg,
        Scenario::Normal,
        Arc::new(SystemClock),
        live::mock_credentials(API_KEY),
    )
    .await
}

/// This start's reconciliation record (the latest).
fn reconciliation(running: &Running) -> Value {
    live::reconciliations(running)
        .pop()
        .expect("a start-up reconciliation record")
}

/// The XRP position once it has a mark, from the API.
async fn priced_xrp(http: &Http, token: &str) -> Value {
    eventually(Duration::from_secs(30), "a marked XRP position", || async {
        let p = http.get("/api/v1/positions", Some(token)).await?;
        let xrp = p.body["positions"]
            .as_array()
            .and_then(|all| all.iter().find(|x| x["pair"] == "XRP/USD"))
            .cloned();
        Ok(xrp
            .filter(|x| !x["mark"].is_null())
            .map(|x| json!({ "position": x, "all": p.body })))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_base_asset_is_a_position_and_a_halt_sells_it_to_flat_by_balance() {
    let kraken = mock_kraken().await;
    let recording = std::fs::read(gf_e2e::fixture("market/paper.jsonl")).unwrap();
    let ws = SimServer::start(
        &recording,
        SimConfig {
            loop_recording: true,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // First start: the 300 XRP the account holds are seeded.
    let running = start(dir.path(), &kraken, &ws).await;
    let token = running.operator_token.clone().unwrap();
    let http = Http::new(&running.url());
    let found = reconciliation(&running);
    assert_eq!(
        found["positions"],
        json!([{
            "pair": "XRP/USD",
            "balance": "300",
            "portfolio_before": "0",
            "action": "seeded",
            "replaced_avg_entry": null,
        }]),
        "{found}"
    );
    assert_eq!(
        found["cash"],
        json!({
            "currency": "USD",
            "balance": "50000",
            "portfolio_before": "50000",
            "action": "kept",
        }),
        "{found}"
    );
    assert_eq!(
        running
            .daemon
            .portfolio
            .read(|p| p.position_qty(&pair("XRP/USD"))),
        Some(Decimal::from(300))
    );
    // Priced by its first mark: that is its entry, and its value a deposit, not a profit.
    let seen = priced_xrp(&http, &token).await;
    let (position, all) = (&seen["position"], &seen["all"]);
    assert_eq!(dec(&position["qty"]), Decimal::from(300), "{seen}");
    let entry = dec(&position["avg_entry"]);
    assert!(entry > Decimal::ZERO, "{seen}");
    let initial = running.daemon.portfolio.read(|p| p.initial_equity());
    assert_eq!(
        initial,
        Decimal::from(START_USD) + Decimal::from(300) * entry,
        "{seen}"
    );
    assert!(dec(&all["exposure"]) > Decimal::ZERO, "{seen}");
    assert_eq!(dec(&all["cash"]), Decimal::from(START_USD), "{seen}");
    running.stop().await;

    // Some XRP and some USD left the account while the daemon was down: the balances win
    // over the restored snapshot, and the record says what was replaced.
    kraken.set_balance("XXRP", Decimal::from(250));
    kraken.set_balance("ZUSD", Decimal::from(AFTER_WITHDRAWAL_USD));
    let running = start(dir.path(), &kraken, &ws).await;
    let token = running
        .create_token("seed-test", gf_daemon::auth::Role::Operator)
        .unwrap();
    let http = Http::new(&running.url());
    let found = reconciliation(&running);
    let record = &found["positions"][0];
    assert_eq!(
        (&record["pair"], &record["action"], &record["balance"]),
        (&json!("XRP/USD"), &json!("replaced"), &json!("250")),
        "{found}"
    );
    assert_eq!(
        dec(&record["portfolio_before"]),
        Decimal::from(300),
        "{found}"
    );
    assert_eq!(dec(&record["replaced_avg_entry"]), entry, "{found}");
    assert_eq!(
        found["cash"],
        json!({
            "currency": "USD",
            "balance": AFTER_WITHDRAWAL_USD.to_string(),
            "portfolio_before": START_USD.to_string(),
            "action": "replaced",
        }),
        "{found}"
    );
    assert_eq!(
        running.daemon.portfolio.read(|p| p.cash()),
        Decimal::from(AFTER_WITHDRAWAL_USD)
    );
    let seen = priced_xrp(&http, &token).await;
    let (position, all) = (&seen["position"], &seen["all"]);
    assert_eq!(dec(&position["qty"]), Decimal::from(250), "{seen}");
    assert_eq!(
        dec(&all["cash"]),
        Decimal::from(AFTER_WITHDRAWAL_USD),
        "{seen}"
    );
    // The withdrawal is not a loss: the starting equity moved with it (the replaced
    // holding left at its cost, the new one came in at its first price), and no drawdown
    // appeared (without the moved baselines the 8,000 gone would read as ~16 %).
    let entry = dec(&position["avg_entry"]);
    assert_eq!(
        running.daemon.portfolio.read(|p| p.initial_equity()),
        Decimal::from(AFTER_WITHDRAWAL_USD) + Decimal::from(250) * entry,
        "{seen}"
    );
    for dd in ["total_drawdown_pct", "daily_drawdown_pct"] {
        assert!(dec(&all[dd]) < Decimal::ONE, "{dd}: {seen}");
    }

    // The operator halts: the closure sells the whole holding, and the account is flat.
    let halted = http
        .post(
            "/api/v1/halt",
            Some(&token),
            &json!({ "reason": "seeded holding closure" }),
        )
        .await
        .unwrap();
    assert!(
        halted.status == 202 || halted.status == 200,
        "{}",
        halted.body
    );
    let status = eventually(Duration::from_secs(30), "the closure", || async {
        let s = http.get("/api/v1/halt/status", Some(&token)).await?;
        Ok((s.body["halt"]["closure"]["flat"] == true).then_some(s.body))
    })
    .await
    .unwrap();
    assert_eq!(status["state"], "halted", "{status}");
    let sold: Decimal = kraken
        .requests()
        .iter()
        .filter(|r| r.endpoint == "AddOrder" && r.outcome == "ok")
        .inspect(|r| {
            assert!(
                r.params.iter().any(|(k, v)| k == "type" && v == "sell"),
                "{r:?}"
            );
        })
        .filter_map(|r| r.params.iter().find(|(k, _)| k == "volume"))
        .map(|(_, v)| v.parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(sold, Decimal::from(250), "the closure sold the holding");
    assert_eq!(
        kraken.balances().get("XXRP").copied().unwrap_or_default(),
        Decimal::ZERO
    );
    // The portfolio agrees once the closure's fill is reported.
    let flat = eventually(Duration::from_secs(30), "a flat portfolio", || async {
        let p = http.get("/api/v1/positions", Some(&token)).await?;
        Ok((p.body["positions"] == json!([])).then_some(p.body))
    })
    .await
    .unwrap();
    assert!(
        dec(&flat["cash"]) > Decimal::from(AFTER_WITHDRAWAL_USD),
        "{flat}"
    );

    running.stop().await;
    ws.shutdown().await;
    kraken.shutdown().await;
}

/// A quote balance no spot account can have is refused: live mode does not start on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_quote_balance_refuses_the_live_start() {
    let kraken = mock_kraken().await;
    kraken.set_balance("ZUSD", Decimal::new(-5, 1));
    let recording = std::fs::read(gf_e2e::fixture("market/paper.jsonl")).unwrap();
    let ws = SimServer::start(&recording, SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Err(err) = try_start(dir.path(), &kraken, &ws).await else {
        panic!("live mode started on a negative USD balance");
    };
    let message = format!("{err:#}");
    assert!(message.contains("invalid USD balance -0.5"), "{message}");
    assert!(message.contains("must not be negative"), "{message}");
    // Nothing was ordered.
    assert!(
        kraken.requests().iter().all(|r| r.endpoint != "AddOrder"),
        "{:?}",
        kraken.requests()
    );
    ws.shutdown().await;
    kraken.shutdown().await;
}
