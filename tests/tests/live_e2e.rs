//! Live mode end to end over 127.0.0.1: the daemon in-process with `mode = live`, its
//! credentials from the env provider (an injected lookup, not the process environment),
//! trading against the mock Kraken REST server (gf-exec `sim`) on market data from the
//! WebSocket test server (gf-market `sim`) replaying the crash recording. The mock checks
//! every API-Key, API-Sign and nonce; the test reads what it recorded: signed orders
//! accepted, the dead man's switch armed while running, and on the automatic halt a
//! CancelAll and reduce-only closure orders that flatten the positions. Plus the refusals
//! of `--live` without usable credentials.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use gf_core::config::SecretProviderKind;
use gf_core::{Config, EventBus, EventKind, KindSet, Payload, RecvError, SystemClock};
use gf_daemon::app::{Running, Scenario, start_with_env};
use gf_daemon::live::{EnvLookup, env_from_pairs};
use gf_e2e::live::{self, pair};
use gf_e2e::{Http, eventually};
use gf_exec::sim::{DEFAULT_SECRET_B64, MockKrakenHandle, RecordedRequest};
use gf_market::sim::{SimConfig, SimServer};
use rust_decimal::Decimal;
use serde_json::json;

/// The account's cash on the mock (the default `exchange.paper_balances` is 100 000 USD).
const START_USD: i64 = 80_000;

/// A key of Kraken's shape (56 base64-alphabet characters) that the mock accepts.
const API_KEY: &str = "GfLiveE2eMockKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A client order id in the form the daemon generates: 32 hex digits (a UUID's simple
/// form, which Kraken accepts as `cl_ord_id`).
fn kraken_uuid(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn mock_kraken() -> MockKrakenHandle {
    // Cash only, so every base-asset unit the account holds is one the daemon bought.
    live::mock_kraken(API_KEY, &[("ZUSD", Decimal::from(START_USD))]).await
}

/// Keeps the mock's market price at the mid of the WebSocket books the daemon sees, as
/// Kraken's matching engine follows its own book: market orders fill where the market is.
fn follow_market(kraken: Arc<MockKrakenHandle>, bus: &EventBus) -> tokio::task::JoinHandle<()> {
    let mut sub = bus.subscribe(KindSet::of(&[
        EventKind::BookSnapshot,
        EventKind::BookUpdate,
    ]));
    tokio::spawn(async move {
        loop {
            let ev = match sub.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged { .. }) => continue,
                Err(RecvError::Closed) => break,
            };
            let (pair, bid, ask) = match &ev.payload {
                Payload::BookSnapshot(s) => (&s.pair, s.bids.first(), s.asks.first()),
                Payload::BookUpdate(u) => (&u.pair, u.best_bid.as_ref(), u.best_ask.as_ref()),
                _ => continue,
            };
            if let (Some(bid), Some(ask)) = (bid, ask) {
                kraken.set_price(pair, (bid.price + ask.price) / Decimal::TWO);
            }
        }
    })
}

fn live_config(dir: &std::path::Path, rest_url: &str, ws_url: &str) -> Config {
    let mut cfg = live::live_config(dir, rest_url, ws_url);
    // The shortest switch `config check` accepts on the pro tier.
    cfg.exchange.dead_man_switch_secs = 8;
    cfg
}

fn env_with(key: &str, secret: &str) -> EnvLookup {
    env_from_pairs([("KRAKEN_API_KEY", key), ("KRAKEN_API_SECRET", secret)])
}

fn param<'a>(r: &'a RecordedRequest, key: &str) -> Option<&'a str> {
    r.params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn err_text(result: anyhow::Result<Running>) -> String {
    match result {
        Ok(_) => panic!("live mode started without usable credentials"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_signs_orders_and_halt_cancels_all_and_flattens_on_the_mock() {
    let kraken = Arc::new(mock_kraken().await);
    let recording = std::fs::read(gf_e2e::fixture("market/crash.jsonl")).unwrap();
    let ws = SimServer::start(&recording, SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = live_config(dir.path(), &kraken.url(), &ws.url());
    cfg.exchange.disarm_on_shutdown = true;
    // Live runs no strategy unless one is chosen explicitly.
    cfg.strategy.kind = Some(gf_core::config::StrategyKind::HoldLong);
    let running = start_with_env(
        cfg,
        Scenario::Crash,
        Arc::new(SystemClock),
        env_with(API_KEY, DEFAULT_SECRET_B64),
    )
    .await
    .unwrap();
    let follower = follow_market(kraken.clone(), &running.daemon.bus);
    let token = running.operator_token.clone().unwrap();
    let http = Http::new(&running.url());

    // The starting cash is the account's, not `exchange.paper_balances`.
    assert_eq!(
        running.daemon.portfolio.read(|p| p.initial_equity()),
        Decimal::from(START_USD)
    );
    assert!(running.daemon.live.is_some());

    // Fills are pushed once the private `executions` feed is subscribed and caught up; the
    // status says so (the dashboard and console show `polled` as a warning).
    eventually(Duration::from_secs(30), "fills pushed", || async {
        let s = http.get("/api/v1/halt/status", Some(&token)).await?;
        Ok((s.body["fills"] == "pushed").then_some(()))
    })
    .await
    .unwrap();

    // The WebSocket crash trips an automatic halt.
    let status = eventually(Duration::from_secs(90), "the automatic halt", || async {
        let s = http.get("/api/v1/halt/status", Some(&token)).await?;
        Ok((s.body["state"] == "halted").then_some(s.body))
    })
    .await
    .unwrap();
    assert_eq!(status["gate_open"], false, "{status}");
    let source = status["halt"]["source"].as_str().unwrap();
    assert!(source.starts_with("auto:"), "{status}");
    assert_eq!(status["halt"]["closure"]["flat"], true, "{status}");
    assert!(
        ws.handle().count("subscribe", "book") >= 1,
        "the daemon subscribed to the WebSocket books"
    );

    // Fills were pushed: the daemon subscribed to the private `executions` channel with a
    // token it fetched (`GetWebSocketsToken`).
    assert!(
        kraken.ws_subscribes().iter().any(|o| o == "ok"),
        "{:?}",
        kraken.ws_subscribes()
    );
    let requests = kraken.requests();
    assert!(requests.iter().any(|r| r.endpoint == "GetWebSocketsToken"));
    let private: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.nonce.is_some() || r.api_key.is_some())
        .collect();
    // Every private call carried our key, a fresh nonce and a signature the mock verified.
    assert!(!private.is_empty());
    for r in &private {
        assert_eq!(r.api_key.as_deref(), Some(API_KEY), "{r:?}");
        assert!(
            !r.outcome.starts_with("EAPI:Invalid"),
            "rejected by the mock: {r:?}"
        );
    }
    let mut nonces: Vec<u64> = private.iter().filter_map(|r| r.nonce).collect();
    nonces.sort_unstable();
    let sent = nonces.len();
    nonces.dedup();
    assert_eq!(nonces.len(), sent, "a nonce was reused");

    // Opening orders: signed, accepted, for the strategy (not reduce-only).
    let cancel_all = requests
        .iter()
        .position(|r| r.endpoint == "CancelAll")
        .expect("the halt sent CancelAll");
    assert_eq!(requests[cancel_all].outcome, "ok");
    let buys: Vec<&RecordedRequest> = requests[..cancel_all]
        .iter()
        .filter(|r| r.endpoint == "AddOrder" && r.outcome == "ok")
        .collect();
    assert!(!buys.is_empty(), "no order accepted before the halt");
    let mut bought: BTreeMap<String, Decimal> = BTreeMap::new();
    for b in &buys {
        assert_eq!(param(b, "type"), Some("buy"), "{b:?}");
        assert_eq!(param(b, "reduce_only"), None, "{b:?}");
        assert!(param(b, "cl_ord_id").is_some_and(kraken_uuid), "{b:?}");
        *bought
            .entry(param(b, "pair").unwrap().to_owned())
            .or_default() += param(b, "volume").unwrap().parse::<Decimal>().unwrap();
    }

    // The dead man's switch was armed while running.
    let armed = requests[..cancel_all].iter().any(|r| {
        r.endpoint == "CancelAllOrdersAfter"
            && r.outcome == "ok"
            && param(r, "timeout") == Some("8")
    });
    assert!(armed, "no CancelAllOrdersAfter before the halt");

    // Closure: plain sells (a spot account has no margin position for reduce-only) after
    // the CancelAll, of what the balances held: as much as was bought, per pair.
    let mut closed: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in requests[cancel_all..]
        .iter()
        .filter(|r| r.endpoint == "AddOrder" && r.outcome == "ok")
    {
        assert_eq!(param(r, "reduce_only"), None, "{r:?}");
        assert_eq!(param(r, "type"), Some("sell"), "{r:?}");
        assert_eq!(param(r, "ordertype"), Some("market"), "{r:?}");
        assert!(param(r, "cl_ord_id").is_some_and(kraken_uuid), "{r:?}");
        *closed
            .entry(param(r, "pair").unwrap().to_owned())
            .or_default() += param(r, "volume").unwrap().parse::<Decimal>().unwrap();
    }
    assert_eq!(closed, bought, "closure orders flatten what was bought");
    let balances = kraken.balances();
    for asset in ["XXRP", "XXDG"] {
        assert_eq!(
            balances.get(asset).copied().unwrap_or_default(),
            Decimal::ZERO,
            "{asset} left on the account: {balances:?}"
        );
    }
    assert!(
        kraken.orders().iter().all(|o| o.status != "open"),
        "orders left open on the mock"
    );

    // The portfolio agrees once the order sync has reported the closure fills.
    let positions = eventually(Duration::from_secs(10), "a flat portfolio", || async {
        let p = http.get("/api/v1/positions", Some(&token)).await?;
        Ok((p.body["positions"] == json!([])).then_some(p.body))
    })
    .await
    .unwrap();
    // The portfolio's cash is the account's, and the crash cost money.
    let cash: Decimal = positions["cash"].as_str().unwrap().parse().unwrap();
    assert_eq!(cash, kraken.balances()["ZUSD"], "{positions}");
    assert!(cash < Decimal::from(START_USD), "{positions}");
    assert!(
        positions["realised_pnl"].as_str().unwrap().starts_with('-'),
        "{positions}"
    );

    // Manual rotation needs an admin token; it re-tests the credentials against the
    // exchange and journals the attempt.
    let denied = http
        .post(
            "/api/v1/secrets/rotate",
            Some(&token),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(denied.status, 403, "{}", denied.body);
    let admin = running
        .create_token("root", gf_daemon::auth::Role::Admin)
        .unwrap();
    let rotated = http
        .post(
            "/api/v1/secrets/rotate",
            Some(&admin),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(rotated.status, 200, "{}", rotated.body);

    // Credential accesses are journaled, without the secret.
    let journal = running.daemon.halt.journal().clone();
    journal.verify().unwrap();
    let audit: Vec<_> = journal
        .records(10_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == gf_daemon::live::AUDIT_KIND)
        .collect();
    assert!(
        audit
            .iter()
            .any(|r| r.actor == "startup" && r.detail["action"] == "load"),
        "{audit:?}"
    );
    let text = serde_json::to_string(&audit.iter().map(|r| &r.detail).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains(DEFAULT_SECRET_B64) && !text.contains(API_KEY));

    // Halted, the keeper goes on refreshing the switch while the daemon lives (a `hold`
    // halt keeps resting orders); a clean shutdown disarms it as configured.
    assert!(kraken.dead_man_trigger().is_some());
    running.stop().await;
    assert_eq!(kraken.dead_man_trigger(), None);
    assert!(kraken.requests().iter().any(|r| {
        r.endpoint == "CancelAllOrdersAfter"
            && param(r, "timeout") == Some("0")
            && r.outcome == "ok"
    }));
    follower.abort();
    let _ = follower.await;
    ws.shutdown().await;
    Arc::into_inner(kraken).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_refuses_to_start_without_usable_credentials() {
    let kraken = mock_kraken().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = live_config(dir.path(), &kraken.url(), "ws://127.0.0.1:9");
    let start = |cfg: Config, env: EnvLookup| {
        start_with_env(cfg, Scenario::Normal, Arc::new(SystemClock), env)
    };

    // Provider `none`: the config check names the setting, and so does the daemon.
    let mut none = cfg.clone();
    none.secrets.provider = SecretProviderKind::None;
    let invalid = none.validate().unwrap_err().to_string();
    assert!(invalid.contains("secrets.provider"), "{invalid}");
    let err = err_text(start(none, env_with(API_KEY, DEFAULT_SECRET_B64)).await);
    assert!(err.contains("secrets.provider"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // A variable missing: named.
    let only_key = env_from_pairs([("KRAKEN_API_KEY", API_KEY)]);
    let err = err_text(start(cfg.clone(), only_key).await);
    assert_eq!(
        err,
        "live mode needs valid Kraken credentials: environment variable `KRAKEN_API_SECRET` is not set"
    );
    assert!(!err.contains(API_KEY), "{err}");

    // Malformed fields: named, values never shown.
    let short_secret = base64::engine::general_purpose::STANDARD.encode([9_u8; 20]);
    let err = err_text(start(cfg.clone(), env_with(API_KEY, &short_secret)).await);
    assert!(err.contains("api_secret"), "{err}");
    assert!(
        !err.contains(&short_secret) && !err.contains(API_KEY),
        "{err}"
    );
    let err = err_text(start(cfg.clone(), env_with("short-key", DEFAULT_SECRET_B64)).await);
    assert!(err.contains("api_key"), "{err}");
    assert!(!err.contains("short-key"), "{err}");

    // Well-formed but not the account's: the exchange refuses them at the Balance check.
    let stranger = "S".repeat(56);
    let err = err_text(start(cfg.clone(), env_with(&stranger, DEFAULT_SECRET_B64)).await);
    assert!(err.contains("EAPI:Invalid key"), "{err}");
    assert!(
        !err.contains(&stranger) && !err.contains(DEFAULT_SECRET_B64),
        "{err}"
    );

    // A pair Kraken does not list: named.
    let mut unlisted = cfg.clone();
    unlisted.market.pairs.push(pair("ETH/USD"));
    let err = err_text(start(unlisted, env_with(API_KEY, DEFAULT_SECRET_B64)).await);
    assert_eq!(err, "live mode: kraken does not list market.pairs ETH/USD");

    // Nothing was ever traded or armed.
    let requests = kraken.requests();
    assert!(requests.iter().any(|r| r.endpoint == "Balance"));
    assert!(
        requests
            .iter()
            .all(|r| r.endpoint == "Balance" || r.endpoint == "AssetPairs"),
        "{requests:?}"
    );
    kraken.shutdown().await;
}
