//! The web dashboard in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini), against a paper daemon started in this process.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; override with `CHROMIUM` / `CHROMEDRIVER`). Without them the
//! tests fail and say what to install: a browser test that silently skips proves nothing.
//! Every JavaScript error the browser logs fails the test (a probe `console.error` first
//! proves the log is really read). Screenshots go to `target/`: `dashboard-running.png`,
//! `dashboard-halted.png`, `dashboard-phone.png` (390 px wide) and `dashboard-crash.png`.
//! The operator test also places an order through the order gateway as a `trader` and
//! checks that the "Order gateway" card shows the trader and the order. The crash test
//! checks the fleet's "off" pill and renders a fleet halt over three nodes into the fleet
//! card (`window.gfDashboard.previewFleet`: no NATS needed).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use fantoccini::Locator;
use gf_core::{Config, HaltSource, HaltState, Pair, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use gf_daemon::auth::Role;
use serde_json::{Value, json};

use common::browser::{Browser, LAPTOP, LogEntry, WAIT, severe, with_browser};

const PHONE: (u32, u32) = (390, 844);

// ------------------------------------------------------------------ daemon

fn config(dir: &Path, bind: SocketAddr) -> Result<Config> {
    let mut cfg = Config::from_toml_str("")?;
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = bind;
    Ok(cfg)
}

async fn daemon(dir: &Path, bind: SocketAddr) -> Result<Running> {
    start(config(dir, bind)?, Scenario::Normal, Arc::new(SystemClock)).await
}

/// The bundled crash, replayed 20 times faster than recorded, with the order gateway
/// switched off (only the internal strategy trades).
async fn crashing_daemon(dir: &Path) -> Result<Running> {
    let mut cfg = config(dir, "127.0.0.1:0".parse()?)?;
    cfg.market.replay_speed = 20.into();
    cfg.gateway.enabled = false;
    start(cfg, Scenario::Crash, Arc::new(SystemClock)).await
}

/// What the daemon itself says (halt, positions, equity, drawdown), for a failure message
/// that tells a page fault from a daemon that never got there.
fn daemon_view(running: &Running) -> String {
    use gf_risk::PortfolioView;
    let status = running.daemon.halt.status();
    let portfolio = running.daemon.portfolio.read(|p| {
        format!(
            "positions {:?}, equity {}, total drawdown {} %",
            p.positions(),
            p.equity(),
            p.total_drawdown_pct()
        )
    });
    format!(
        "daemon: state {:?}, halt {:?}; {portfolio}",
        status.state, status.halt
    )
}

/// The trader and order the operator test places through the gateway.
const TRADER: &str = "dash-trader";
const CLIENT_ORDER_ID: &str = "dash-1";

/// Creates a `trader` token named [`TRADER`] and places one resting limit buy of XRP/USD
/// (about 4 % under the market, inside the price collar) through `POST /api/v1/orders`,
/// once the daemon has a price for the pair (the risk checks need one). Returns the order
/// as the daemon answered it.
async fn place_resting_order(running: &Running) -> Result<Value> {
    let pair: Pair = "XRP/USD".parse().map_err(|e| anyhow!("{e}"))?;
    running.wait_for_price(&pair, WAIT).await?;
    let token = running.create_token(TRADER, Role::Trader)?;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/orders", running.url()))
        .bearer_auth(token)
        .json(&json!({
            "client_order_id": CLIENT_ORDER_ID,
            "pair": "XRP/USD",
            "side": "buy",
            "type": "limit",
            "qty": "10",
            "limit_price": "2.10",
        }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(
        status == reqwest::StatusCode::CREATED,
        "POST /api/v1/orders answered {status}: {body}"
    );
    Ok(body["order"].clone())
}

/// The cells' text of the gateway card's row for [`TRADER`]'s order, and the reason
/// cell's `title` (the full reason) last.
const ORDER_ROW_JS: &str = "const tr = document.querySelector(\
     '#gateway-orders tr[data-order=\"dash-trader/dash-1\"]'); \
     if (!tr) return null; \
     const cells = [...tr.querySelectorAll('td')].map((td) => td.textContent); \
     cells.push(tr.querySelector('td.reason').getAttribute('title')); \
     return cells";

/// What the gateway card's order row must read for `order` (the daemon's view of it).
fn expected_order_row(order: &gf_api::GatewayOrder) -> Vec<Value> {
    let dash = |s: String| if s.is_empty() { "–".to_owned() } else { s };
    let reason = order.reason.clone().unwrap_or_default();
    let shown = if reason.chars().count() > 40 {
        format!("{}…", reason.chars().take(39).collect::<String>())
    } else {
        dash(reason.clone())
    };
    vec![
        json!(order.trader),
        json!(order.client_order_id),
        json!(order.pair),
        json!(order.side),
        json!(order.order_type),
        json!(dash(order.qty.0.clone())),
        json!(dash(
            order
                .limit_price
                .as_ref()
                .map_or_else(String::new, |p| p.0.clone())
        )),
        json!(order.status),
        json!(dash(order.filled_qty.0.clone())),
        json!(shown),
        if reason.is_empty() {
            Value::Null
        } else {
            json!(reason)
        },
    ]
}

/// Waits until the gateway card shows the daemon's current view of the order in
/// `status`; returns that order.
async fn until_order_row(
    b: &Browser,
    running: &Running,
    status: &str,
) -> Result<gf_api::GatewayOrder> {
    b.until_js(
        &format!("the gateway order row, {status}"),
        &format!("const c = (() => {{ {ORDER_ROW_JS} }})(); return c && c[8] === '{status}'"),
    )
    .await?;
    let order = running
        .daemon
        .gateway
        .order(TRADER, CLIENT_ORDER_ID)
        .context("the daemon knows the order")?;
    let cells = b.js(ORDER_ROW_JS).await?;
    let cells = cells.as_array().context("order row cells")?;
    ensure!(cells.len() == 12, "12 cells and the title: {cells:?}");
    // The first cell is the local time of day the browser formats; the rest are the
    // daemon's text, unchanged (quantities and prices never pass through a float).
    ensure!(
        cells[0].as_str().is_some_and(|t| t.contains(':')),
        "time cell {:?}",
        cells[0]
    );
    assert_eq!(cells[1..].to_vec(), expected_order_row(&order));
    Ok(order)
}

/// Opens the dashboard and signs in with `token`; returns once the state banner shows a
/// state from the daemon.
/// A fleet halt in force over three nodes, the third one stale: the `FleetStatus` the
/// dashboard frame would carry (built from the wire type, so a renamed field fails here).
fn fleet_fixture() -> Value {
    let node = |id: &str, state: gf_api::HaltState, age_ms: u64, stale: bool| gf_api::FleetNode {
        node: id.into(),
        state,
        quote: "USD".into(),
        age_ms,
        stale,
        ..gf_api::FleetNode::default()
    };
    let mut alpha = node("alpha", gf_api::HaltState::Halted, 240, false);
    alpha.equity = gf_api::Num("10000".into());
    alpha.drawdown_pct = gf_api::Num("1.5".into());
    alpha.exposure = gf_api::Num("2500".into());
    alpha.breached = vec!["fleet_halt".into()];
    let beta = node("beta", gf_api::HaltState::Halting, 1250, false);
    let mut gamma = node("gamma", gf_api::HaltState::Running, 75_000, true);
    gamma.equity = gf_api::Num("9000".into());
    gamma.drawdown_pct = gf_api::Num("12.25".into());
    gamma.exposure = gf_api::Num("100.5".into());
    let status = gf_api::FleetStatus {
        enabled: true,
        fleet: "prod".into(),
        node: "alpha".into(),
        connected: true,
        last_contact_ms: Some(240),
        partition_halt_secs: 10,
        halt: Some(gf_api::FleetHaltRecord {
            active: true,
            reason: "drill <b>now</b>".into(),
            by: "operator:alice".into(),
            node: "alpha".into(),
            at: "2026-03-02T14:00:00Z".parse().ok(),
            revision: 7,
            approvals: vec!["admin:bob".into()],
            ..gf_api::FleetHaltRecord::default()
        }),
        nodes: vec![alpha, beta, gamma],
        total_equity: gf_api::Num("19000".into()),
        total_drawdown_pct: gf_api::Num("3.4".into()),
        total_exposure: gf_api::Num("2600.5".into()),
    };
    serde_json::to_value(status).unwrap_or_default()
}

async fn open_and_sign_in(
    b: &Browser,
    url: &str,
    token: &str,
    errors: &mut Vec<LogEntry>,
) -> Result<()> {
    b.client.goto(&format!("{url}/dashboard")).await?;
    b.probe_console(errors).await?;
    let input = b
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#token-input"))
        .await?;
    ensure!(input.is_displayed().await?, "the token form is not shown");
    input.send_keys(token).await?;
    b.click("#token-submit").await?;
    b.until_js(
        "the first dashboard frame",
        "return window.gfDashboard.frames > 0",
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_halts_from_the_page_and_walks_the_checklist() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = Arc::new(daemon(dir.path(), "127.0.0.1:0".parse()?).await?);
    let token = running
        .operator_token
        .clone()
        .context("a fresh data directory gets an operator token")?;
    let url = running.url();
    let d = running.clone();
    let reason = "dashboard test: spread looks wrong";

    with_browser(move |b| async move {
        let mut errors = Vec::new();
        open_and_sign_in(&b, &url, &token, &mut errors).await?;

        // Running, with live content.
        b.until_text("#state-text", "Running").await?;
        let class = b
            .js("return document.getElementById('state-banner').className")
            .await?;
        assert_eq!(class, "banner state-running");
        assert_eq!(b.text("#who").await?, "operator (operator)");
        assert_eq!(b.text("#conn").await?, "live");
        assert!(
            !b.client
                .find(Locator::Id("disconnected"))
                .await?
                .is_displayed()
                .await?
        );
        b.until_js(
            "three frames of history",
            "return window.gfDashboard.historyLength >= 3",
        )
        .await?;
        let equity_path = b
            .js("return document.querySelector('#equity-chart path.equity').getAttribute('d')")
            .await?;
        assert!(
            equity_path
                .as_str()
                .is_some_and(|d| d.starts_with('M') && d.contains('L')),
            "the equity curve is drawn: {equity_path}"
        );
        let conditions = b
            .js("return document.querySelectorAll('#conditions li[data-condition]').length")
            .await?;
        assert!(
            conditions.as_u64() > Some(0),
            "conditions listed: {conditions}"
        );
        let system = b.text("#system").await?;
        assert!(
            system.contains("CPU") && system.contains("Memory"),
            "{system}"
        );
        // Latency percentiles over time, per stage, from the page's own history.
        for micros in [120, 180, 250, 400, 900, 2_500] {
            d.daemon
                .monitor
                .metrics()
                .record_latency("order_ack", micros);
        }
        b.until_js(
            "the order_ack latency chart",
            "const p = document.querySelector('#latency [data-stage=\"order_ack\"] path.p99'); \
             return p && p.getAttribute('d').includes('L')",
        )
        .await?;
        let caption = b
            .text("#latency [data-stage=\"order_ack\"] .caption")
            .await?;
        let served = d.daemon.monitor.metrics().latency_percentiles()["order_ack"];
        for expected in [
            format!("p50 {} µs", served.p50),
            format!("p99 {} µs", served.p99),
            "6 samples".to_owned(),
        ] {
            assert!(caption.contains(&expected), "{expected:?} in {caption:?}");
        }

        // The order gateway: no trader yet; then a trader places a resting order and the
        // card shows the trader's counts and the order.
        assert_eq!(
            b.text("#gateway-traders").await?,
            "no trader has placed an order"
        );
        let badge_shown = b
            .client
            .find(Locator::Id("gateway-badge"))
            .await?
            .is_displayed()
            .await?;
        assert!(!badge_shown, "the gateway is enabled: no \"disabled\" badge");
        let placed = place_resting_order(&d).await?;
        assert_eq!(placed["qty"], "10", "{placed}");
        assert_eq!(placed["limit_price"], "2.10", "{placed}");
        b.until_js(
            "the trader's line in the gateway card",
            "const tr = document.querySelector('#gateway-traders tr[data-trader=\"dash-trader\"]'); \
             return !!tr && JSON.stringify([...tr.querySelectorAll('td')].map((td) => td.textContent)) \
               === JSON.stringify(['dash-trader', '1', '1', '0'])",
        )
        .await?;
        let resting = until_order_row(&b, &d, "open").await?;
        assert_eq!(resting.qty.0, "10");
        assert_eq!(resting.limit_price.map(|p| p.0).as_deref(), Some("2.10"));

        // The whole page, tall enough to show every card.
        b.client.set_window_size(LAPTOP.0, 1800).await?;
        b.screenshot("dashboard-running.png").await?;
        b.client.set_window_size(LAPTOP.0, LAPTOP.1).await?;

        // Cancelling the dialog halts nothing.
        b.click("#halt-button").await?;
        b.until_js(
            "the halt dialog",
            "return document.getElementById('halt-dialog').open",
        )
        .await?;
        b.click("#halt-cancel").await?;
        b.until_js(
            "the dialog to close",
            "return !document.getElementById('halt-dialog').open",
        )
        .await?;
        assert_eq!(d.daemon.halt.state(), HaltState::Running);
        assert_eq!(b.text("#state-text").await?, "Running");

        // Halt with the page's button: a dialog asks for the reason, then confirms.
        b.click("#halt-button").await?;
        b.until_js(
            "the halt dialog",
            "return document.getElementById('halt-dialog').open",
        )
        .await?;
        let confirm = b.client.find(Locator::Id("halt-confirm")).await?;
        assert!(!confirm.is_enabled().await?, "no halt without a reason");
        b.client
            .find(Locator::Id("halt-reason"))
            .await?
            .send_keys(reason)
            .await?;
        assert!(confirm.is_enabled().await?);
        confirm.click().await?;

        b.until_text("#state-text", "Halted").await?;
        assert_eq!(b.text("#state-reason").await?, reason);
        assert_eq!(b.text("#state-source").await?, "api:operator");
        assert!(b.text("#state-since").await?.contains("ago"));
        assert_eq!(b.text("#gate").await?, "order gate closed");
        let class = b
            .js("return document.getElementById('state-banner').className")
            .await?;
        assert_eq!(class, "banner state-halted");
        assert_eq!(
            b.js("return document.getElementById('halt-dialog').open")
                .await?,
            false
        );
        assert!(
            !b.client
                .find(Locator::Id("halt-button"))
                .await?
                .is_enabled()
                .await?
        );

        // The daemon really halted, for the reason typed in the page.
        let status = d.daemon.halt.status();
        assert_eq!(status.state, HaltState::Halted);
        let halt = status.halt.context("a halt is recorded")?;
        assert_eq!(halt.reason, reason);
        assert_eq!(halt.source, HaltSource::Api("operator".into()));

        // The halt cancelled the resting order; the card shows it, and the trader has none
        // open.
        let cancelled = until_order_row(&b, &d, "cancelled").await?;
        eprintln!("gateway order after the halt: {cancelled:?}");
        b.until_js(
            "the trader's open count back to 0",
            "const tr = document.querySelector('#gateway-traders tr[data-trader=\"dash-trader\"]'); \
             return !!tr && tr.children[1].textContent === '0'",
        )
        .await?;

        b.until_js(
            "the recovery checklist",
            "return !document.getElementById('checklist-card').hidden \
             && document.querySelectorAll('#checklist li').length",
        )
        .await?;
        let shot = b.screenshot("dashboard-halted.png").await?;
        eprintln!("screenshot: {}", shot.display());

        // A phone's width: everything reflows into one column, nothing scrolls sideways.
        b.client.set_window_size(PHONE.0, PHONE.1).await?;
        b.until_js(
            "the phone layout",
            &format!("return window.innerWidth <= {}", PHONE.0),
        )
        .await?;
        let overflow = b
            .js("return document.documentElement.scrollWidth - window.innerWidth")
            .await?;
        assert!(
            overflow.as_i64() <= Some(0),
            "horizontal overflow of {overflow} px"
        );
        let button = b
            .client
            .find(Locator::Id("halt-button"))
            .await?
            .rectangle()
            .await?;
        assert!(
            button.0 >= 0.0 && button.0 + button.2 <= f64::from(PHONE.0),
            "{button:?}"
        );
        b.screenshot("dashboard-phone.png").await?;
        b.client.set_window_size(LAPTOP.0, LAPTOP.1).await?;

        // Walk the checklist from the page, one item at a time, then resume.
        let items = b
            .js("return document.querySelectorAll('#checklist li').length")
            .await?
            .as_u64()
            .context("item count")?;
        for done in 1..=items {
            b.click("#checklist button.complete").await?;
            b.until_js(
                &format!("{done} checklist item(s) done"),
                &format!("return document.querySelectorAll('#checklist li.done').length >= {done}"),
            )
            .await?;
        }
        assert_eq!(b.text("#checklist-missing").await?, "all items done");
        b.until_js(
            "the resume button",
            "return !document.getElementById('resume-button').disabled",
        )
        .await?;
        b.click("#resume-button").await?;
        b.until_text("#state-text", "Running").await?;
        assert_eq!(d.daemon.halt.state(), HaltState::Running);
        assert!(b.text("#state-reason").await?.contains(reason));
        let checklist_error = b.text("#checklist-error").await?;
        assert_eq!(checklist_error, "", "no API call failed");

        errors.extend(b.console().await?);
        let severe = severe(&errors);
        assert!(
            severe.is_empty(),
            "JavaScript errors in the console: {severe:#?}"
        );
        Ok(())
    })
    .await?;
    Arc::into_inner(running)
        .context("the daemon is still shared")?
        .stop()
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_refuses_a_bad_token_and_reconnects_after_a_daemon_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = daemon(dir.path(), "127.0.0.1:0".parse()?).await?;
    let token = first.operator_token.clone().context("operator token")?;
    let addr = first.addr;
    let url = first.url();
    let data_dir = dir.path().to_path_buf();

    with_browser(move |b| async move {
        let mut errors = Vec::new();
        // A wrong token is refused at the form and never reaches the sockets.
        b.client.goto(&format!("{url}/dashboard")).await?;
        let input = b
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("token-input"))
            .await?;
        input.send_keys("not-a-token").await?;
        b.click("#token-submit").await?;
        b.until_text("#token-error", "the daemon rejected this token")
            .await?;
        assert!(
            !b.client
                .find(Locator::Id("app"))
                .await?
                .is_displayed()
                .await?
        );
        assert_eq!(b.js("return window.gfDashboard.frames").await?, 0);

        open_and_sign_in(&b, &url, &token, &mut errors).await?;
        b.until_text("#state-text", "Running").await?;

        // A reload keeps the token for the tab: no second prompt.
        b.client.refresh().await?;
        b.until_js(
            "a frame after the reload",
            "return window.gfDashboard.frames > 0",
        )
        .await?;
        assert!(
            !b.client
                .find(Locator::Id("login"))
                .await?
                .is_displayed()
                .await?
        );

        // A halt from elsewhere reaches the page over /ws/halt-status.
        first
            .daemon
            .halt
            .halt(HaltSource::Cli, "before the restart")
            .await;
        b.until_text("#state-text", "Halted").await?;
        assert_eq!(b.text("#state-reason").await?, "before the restart");

        // The daemon goes away: the page says so and keeps trying.
        first.stop().await;
        b.until_js(
            "the disconnected banner",
            "return !document.getElementById('disconnected').hidden",
        )
        .await?;
        assert!(
            b.text("#disconnected")
                .await?
                .starts_with("Disconnected from the daemon.")
        );
        assert_eq!(b.text("#conn").await?, "offline");
        let frames_before = b.js("return window.gfDashboard.frames").await?;

        // It comes back on the same address and data directory: the page reconnects by
        // itself, with the token it kept, and shows the state restored from the journal.
        let second = b
            .until("the daemon to bind its old address again", || {
                let data_dir = data_dir.clone();
                async move { Ok(daemon(&data_dir, addr).await.ok()) }
            })
            .await?;
        assert!(second.operator_token.is_none(), "the token store persisted");
        b.until_js(
            "the banner to clear",
            "return document.getElementById('disconnected').hidden",
        )
        .await?;
        b.until_js(
            "frames from the new daemon",
            &format!("return window.gfDashboard.frames > {frames_before}"),
        )
        .await?;
        assert_eq!(b.text("#state-text").await?, "Halted");
        assert_eq!(b.text("#state-reason").await?, "before the restart");
        assert_eq!(b.text("#conn").await?, "live");
        second.stop().await;

        // The browser logs the refused token's 401 and, while the daemon was down, the
        // refused connections; those are the only errors allowed here.
        errors.extend(b.console().await?);
        let unexpected: Vec<_> = severe(&errors)
            .into_iter()
            .filter(|e| {
                let expected = e.contains("ERR_CONNECTION_REFUSED")
                    || (e.contains("WebSocket connection to") && e.contains(&addr.to_string()))
                    || (e.contains("/api/v1/whoami") && e.contains("401"));
                !expected
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "JavaScript errors in the console: {unexpected:#?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_halt_in_a_crash_shows_its_condition_and_the_drawdown() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = Arc::new(crashing_daemon(dir.path()).await?);
    let token = running.operator_token.clone().context("operator token")?;
    let url = running.url();
    let d = running.clone();

    with_browser(move |b| async move {
        let mut errors = Vec::new();
        open_and_sign_in(&b, &url, &token, &mut errors).await?;

        // The gateway is off: its card says so.
        b.until_js(
            "the gateway's \"disabled\" badge",
            "return !document.getElementById('gateway-badge').hidden",
        )
        .await?;
        assert_eq!(
            b.js("return document.getElementById('gateway-badge').textContent")
                .await?,
            "disabled"
        );
        assert_eq!(
            b.text("#gateway-traders").await?,
            "no trader has placed an order"
        );
        assert_eq!(b.text("#gateway-orders").await?, "no orders yet");

        // The fleet is off: the top bar says so and there is no fleet card.
        b.until_text("#fleet-pill", "fleet: off").await?;
        assert_eq!(
            b.js("return document.getElementById('fleet-card').hidden")
                .await?,
            json!(true)
        );
        assert_eq!(
            b.js("return window.gfDashboard.fleet.enabled").await?,
            json!(false)
        );
        // A fleet halt with three nodes, one stale, rendered as a frame would render it
        // (no NATS here): checked in the same script, before the next frame replaces it.
        let fleet = fleet_fixture();
        let seen = b
            .js(&format!(
                "window.gfDashboard.previewFleet({fleet}); \
                 const rows = [...document.querySelectorAll('#fleet-nodes tr')]; \
                 return {{ \
                   card_hidden: document.getElementById('fleet-card').hidden, \
                   pill: document.getElementById('fleet-pill').textContent, \
                   pill_class: document.getElementById('fleet-pill').className, \
                   halt_class: document.getElementById('fleet-halt').className, \
                   halt: document.getElementById('fleet-halt').textContent, \
                   nodes: rows.map((r) => r.dataset.node), \
                   stale: rows.filter((r) => r.classList.contains('stale')).map((r) => r.dataset.node), \
                   cells: rows.map((r) => [...r.cells].map((c) => c.textContent)), \
                   markup: document.getElementById('fleet-halt').querySelectorAll('b').length \
                 }};"
            ))
            .await?;
        eprintln!("fleet card: {seen:#}");
        assert_eq!(seen["card_hidden"], json!(false));
        assert_eq!(seen["pill"], "fleet prod: HALTED");
        assert_eq!(seen["pill_class"], "pill fleet-alarm");
        assert_eq!(seen["halt_class"], "fleet-halt fleet-halt-active");
        let halt = seen["halt"].as_str().unwrap_or_default();
        assert!(
            halt.contains("drill <b>now</b> — by operator:alice on alpha")
                && halt.contains("revision 7; clear approvals: admin:bob"),
            "{halt}"
        );
        assert_eq!(seen["markup"], 0, "a reason is text, never markup");
        assert_eq!(seen["nodes"], json!(["alpha", "beta", "gamma"]));
        assert_eq!(seen["stale"], json!(["gamma"]));
        assert_eq!(
            seen["cells"][0],
            json!(["alpha (this node)", "halted", "240 ms", "10000 USD", "1.5 %", "2500 USD", "fleet_halt"])
        );
        assert_eq!(
            seen["cells"][2],
            json!(["gamma", "running", "1m 15s (stale)", "9000 USD", "12.25 %", "100.5 USD", "–"])
        );

        // Nobody presses anything: the slide trips a drawdown condition and the page shows
        // the automatic halt and points at the condition that caused it (which may have
        // cleared again once the positions were flattened).
        b.until_text_within("#state-text", "Halted", Duration::from_secs(90))
            .await
            .with_context(|| daemon_view(&d))?;
        let source = b.text("#state-source").await?;
        assert!(source.starts_with("auto:"), "{source}");
        let status = d.daemon.halt.status();
        let halt = status.halt.context("a halt is recorded")?;
        assert_eq!(b.text("#state-reason").await?, halt.reason);
        let HaltSource::Auto(condition) = &halt.source else {
            bail!("expected an automatic halt, got {}", halt.source);
        };
        let row = format!("#conditions li[data-condition=\"{condition}\"]");
        b.until_js(
            "the condition that caused the halt marked",
            &format!(
                "const li = document.querySelector('{row}'); \
                 return li && li.classList.contains('cause')"
            ),
        )
        .await?;
        let text = b.text(&row).await?;
        assert!(text.contains("caused the halt"), "{text}");

        // The equity curve dropped below its peak: the drawdown band has an area (once
        // the history holds at least two points of it).
        let band = b
            .until_js(
                "a shaded drawdown",
                "const dd = window.gfDashboard.maxDrawdownPct; \
                 const r = document.querySelector('#equity-chart path.drawdown').getBBox(); \
                 return dd > 0.1 && r.width * r.height > 1 && [dd, r.width * r.height]",
            )
            .await
            .with_context(|| daemon_view(&d))?;
        eprintln!("drawdown % and band area: {band}");

        b.client.set_window_size(LAPTOP.0, 1800).await?;
        b.screenshot("dashboard-crash.png").await?;

        errors.extend(b.console().await?);
        let severe = severe(&errors);
        assert!(
            severe.is_empty(),
            "JavaScript errors in the console: {severe:#?}"
        );
        Ok(())
    })
    .await?;
    Arc::into_inner(running)
        .context("the daemon is still shared")?
        .stop()
        .await;
    Ok(())
}
