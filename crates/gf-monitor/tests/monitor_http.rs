//! The monitor as the daemon uses it: `/readyz`, `/livez`, `/metrics` over a loopback
//! socket, the bus loop driving alerts to a real channel, startup validation, and the
//! dashboard payload.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gf_core::config::{ChannelKind, MonitorConfig};
use gf_core::{
    AlertStatus, Clock, Event, EventBus, EventKind, HaltSource, HaltState, KindSet, ManualClock,
    Pair, Payload, Position, Source,
};
use gf_monitor::health::{CheckOutcome, FnCheck};
use gf_monitor::{CONTENT_TYPE, Error, MonitorBuilder};
use gf_risk::MockPortfolioView;
use rust_decimal_macros::dec;
use serde_json::Value;

use common::{CaptureServer, channel};

#[tokio::test]
async fn one_unhealthy_check_makes_readyz_say_not_ready() {
    let db_ok = Arc::new(AtomicBool::new(true));
    let flag = db_ok.clone();
    let dir = tempfile::tempdir().unwrap();
    let monitor = MonitorBuilder::new(&MonitorConfig::default(), Arc::new(ManualClock::default()))
        .data_dir(dir.path())
        .check(Arc::new(FnCheck::new("exchange", || async {
            CheckOutcome::healthy("SystemStatus online")
        })))
        .check(Arc::new(FnCheck::new("database", move || {
            let ok = flag.load(Ordering::SeqCst);
            async move {
                if ok {
                    CheckOutcome::healthy("journal writable")
                } else {
                    CheckOutcome::unhealthy("database is locked")
                }
            }
        })))
        .build()
        .unwrap();
    let (addr, _server) = common::serve(gf_monitor::http::router(Arc::new(monitor))).await;
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap()
        }
    };

    let r = get("/readyz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["ready"], true);

    db_ok.store(false, Ordering::SeqCst);
    let r = get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["status"], "unhealthy");
    assert!(body.get("checks").is_none(), "terse unless ?verbose");

    let body: Value = get("/readyz?verbose").await.json().await.unwrap();
    let checks = body["checks"].as_array().unwrap();
    let names: Vec<_> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["memory", "data_dir", "disk", "exchange", "database"]
    );
    let db = &checks[4];
    assert_eq!(db["status"], "unhealthy");
    assert_eq!(db["message"], "database is locked");
    assert!(db["latency_micros"].is_u64());

    let r = get("/livez").await;
    assert_eq!(r.status(), 200, "liveness ignores readiness");

    let r = get("/metrics").await;
    assert_eq!(r.headers()["content-type"], CONTENT_TYPE);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("gf_health_check_status{check=\"database\"} 2"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn the_bus_loop_raises_alerts_to_channels_and_back_onto_the_bus() {
    let hook = CaptureServer::start().await;
    let config = MonitorConfig {
        channels: vec![channel(
            "ops",
            ChannelKind::Webhook,
            &format!("url = \"{}\"", hook.url("/alerts")),
        )],
        ..MonitorConfig::default()
    };
    let bus = EventBus::new(1024);
    let monitor = Arc::new(
        MonitorBuilder::new(&config, Arc::new(gf_core::SystemClock))
            .bus(bus.clone())
            .build()
            .unwrap(),
    );
    let mut alerts = bus.subscribe(KindSet::of(&[EventKind::Alert]));
    let stop = tokio_util::sync::CancellationToken::new();
    let runner = tokio::spawn(monitor.clone().run(
        bus.subscribe_all(),
        stop.clone(),
        Duration::from_secs(30),
    ));

    let now = chrono::Utc::now();
    bus.publish(Event::new(
        now,
        Source::Halt,
        Payload::HaltTriggered {
            source: HaltSource::Signal,
            reason: "SIGUSR1".into(),
        },
    ));
    let ev = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.source, Source::Monitor);
    let Payload::Alert {
        key,
        severity,
        status,
        summary,
    } = &ev.payload
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (key.as_str(), *severity, *status),
        ("halt", gf_core::Severity::Critical, AlertStatus::Firing)
    );
    assert!(summary.contains("SIGUSR1"), "{summary}");

    bus.publish(Event::new(
        now,
        Source::Halt,
        Payload::Resumed {
            operator: "alice".into(),
        },
    ));
    let ev = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            &ev.payload,
            Payload::Alert {
                status: AlertStatus::Resolved,
                ..
            }
        ),
        "{ev:?}"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();
    let got = hook.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].json()["status"], "firing");
    assert_eq!(got[1].json()["status"], "resolved");
    assert!(
        monitor
            .render_metrics()
            .unwrap()
            .contains("gf_alerts_total{severity=\"critical\",status=\"firing\"} 1")
    );
}

#[test]
fn an_invalid_channel_is_a_startup_error_naming_it() {
    let mut config = MonitorConfig {
        channels: vec![
            channel("log", ChannelKind::Log, ""),
            channel("team-slack", ChannelKind::Slack, ""),
        ],
        ..MonitorConfig::default()
    };
    let err = MonitorBuilder::new(&config, Arc::new(ManualClock::default()))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::ChannelConfig { channel, key, .. } if channel == "team-slack" && key == "url"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "channel `team-slack`: invalid `url`: missing"
    );

    config.channels = vec![channel(
        "mail",
        ChannelKind::Email,
        "host = \"smtp.example.invalid\"\nfrom = \"gf@example.invalid\"\nto = \"nobody\"",
    )];
    let err = MonitorBuilder::new(&config, Arc::new(ManualClock::default()))
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("channel `mail`: invalid `to`: \"nobody\" is not an e-mail address"),
        "{err}"
    );
}

#[tokio::test]
async fn the_dashboard_snapshot_carries_state_conditions_positions_latency_and_alerts() {
    let clock = ManualClock::default();
    let xrp = Pair::new("XRP/USD").unwrap();
    let mut view = MockPortfolioView::new();
    view.expect_equity().return_const(dec!(9800));
    view.expect_total_drawdown_pct().return_const(dec!(2));
    view.expect_daily_drawdown_pct().return_const(dec!(1.5));
    view.expect_exposure().return_const(dec!(510));
    view.expect_trading_stats()
        .return_const(gf_risk::TradingStats {
            count: 2,
            ..Default::default()
        });
    let mut pos = Position::flat(xrp.clone());
    pos.qty = dec!(1000);
    pos.avg_entry = dec!(0.5);
    pos.mark = Some(dec!(0.51));
    view.expect_positions().return_const(vec![pos]);
    let monitor = MonitorBuilder::new(&MonitorConfig::default(), Arc::new(clock.clone()))
        .portfolio(Arc::new(view))
        .market_pairs(vec![xrp.clone()], Duration::from_secs(60))
        .build()
        .unwrap();
    let ev = |p| Event::new(clock.now(), Source::Test, p);
    monitor.on_event(&ev(Payload::HaltStateChanged {
        from: HaltState::Running,
        to: HaltState::Halted,
        source: HaltSource::Api("bob".into()),
        reason: "manual".into(),
    }));
    monitor.on_event(&ev(Payload::ConditionValue {
        id: "max_daily_drawdown".into(),
        value: dec!(1.5),
        threshold: dec!(2),
        triggered: false,
    }));
    monitor.on_event(&ev(Payload::Staleness {
        pair: xrp.clone(),
        stale: true,
        age_ms: 70_000,
        threshold_ms: 60_000,
    }));
    for m in [100, 200, 300] {
        monitor.on_event(&ev(Payload::Latency {
            stage: "market_ingest".into(),
            micros: m,
        }));
    }
    monitor.tick();
    let readiness = monitor.readiness().await;
    assert!(!readiness.ready, "no market data yet for XRP/USD");
    let snap = monitor.dashboard_snapshot();
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["halt_state"], "halted");
    assert_eq!(json["halt_source"], "api:bob");
    assert_eq!(json["conditions"][0]["id"], "max_daily_drawdown");
    assert_eq!(json["conditions"][0]["value"], "1.5");
    assert_eq!(json["portfolio"]["equity"], "9800");
    assert_eq!(json["portfolio"]["positions"][0]["pair"], "XRP/USD");
    assert_eq!(json["latency"]["market_ingest"]["p50"], 200);
    let keys: Vec<_> = json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["data_stale:XRP/USD", "halt"]);
    assert_eq!(json["health"]["ready"], false);
    assert!(json["system"]["resident_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn channels_from_a_config_file_build() {
    let text = r#"
[[monitor.channels]]
name = "ops-mail"
kind = "email"
min_severity = "warning"
host = "smtp.example.com"
username = "gal-friday"
password_env = "GF_SMTP_PASSWORD"
from = "Gal-Friday <gf@example.com>"
to = ["oncall@example.com"]

[[monitor.channels]]
name = "team"
kind = "slack"
url = "https://hooks.slack.invalid/services/T0/B0/x"
timeout_ms = 2000

[[monitor.channels]]
name = "pager"
kind = "sms"
min_severity = "critical"
url = "https://api.twilio.invalid/2010-04-01/Accounts/AC1/Messages.json"
account_sid = "AC1"
auth_token_env = "GF_TWILIO_TOKEN"
from = "+15550000"
to = "+15551111"
"#;
    let config = gf_core::Config::from_toml_str(text).unwrap();
    let env = |k: &str| matches!(k, "GF_SMTP_PASSWORD" | "GF_TWILIO_TOKEN").then(|| "x".to_owned());
    let monitor = MonitorBuilder::new(&config.monitor, Arc::new(ManualClock::default()))
        .env(env)
        .build()
        .unwrap();
    assert_eq!(
        monitor.alerts().dispatcher().channel_names(),
        ["ops-mail", "team", "pager"]
    );
    // Without the secret in the environment, startup names the channel and the key.
    let err = MonitorBuilder::new(&config.monitor, Arc::new(ManualClock::default()))
        .env(|_| None)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "channel `ops-mail`: invalid `password_env`: environment variable GF_SMTP_PASSWORD is not set"
    );
}

#[tokio::test]
async fn the_exchange_reachability_check_over_http() {
    use gf_core::HealthStatus;
    use gf_monitor::HealthCheck;
    use gf_monitor::health::HttpCheck;

    let up = CaptureServer::start().await;
    let check = HttpCheck::new(
        "exchange",
        &up.url("/0/public/SystemStatus"),
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    let out = check.check().await;
    assert_eq!(out.status, HealthStatus::Healthy, "{out:?}");
    assert_eq!(up.requests()[0].path, "/0/public/SystemStatus");

    let failing = CaptureServer::scripted(vec![503]).await;
    let out = HttpCheck::new(
        "exchange",
        &failing.url("/s"),
        Duration::from_secs(2),
        Duration::from_secs(1),
    )
    .check()
    .await;
    assert_eq!(out.status, HealthStatus::Unhealthy);
    assert!(out.message.contains("503"), "{out:?}");

    let down = format!("http://127.0.0.1:{}/s", common::closed_port());
    let out = HttpCheck::new(
        "exchange",
        &down,
        Duration::from_secs(2),
        Duration::from_secs(1),
    )
    .check()
    .await;
    assert_eq!(out.status, HealthStatus::Unhealthy);
    assert!(out.message.starts_with("unreachable"), "{out:?}");

    let hanging = CaptureServer::hanging().await;
    let out = HttpCheck::new(
        "exchange",
        &hanging.url("/s"),
        Duration::from_millis(200),
        Duration::from_millis(100),
    )
    .check()
    .await;
    assert_eq!(out.status, HealthStatus::Unhealthy, "{out:?}");
}

#[tokio::test]
async fn the_log_channel_delivers() {
    let config = MonitorConfig {
        channels: vec![channel("log", ChannelKind::Log, "")],
        ..MonitorConfig::default()
    };
    let clock = ManualClock::default();
    let monitor = MonitorBuilder::new(&config, Arc::new(clock.clone()))
        .build()
        .unwrap();
    monitor.on_event(&Event::new(
        clock.now(),
        Source::Halt,
        Payload::HaltTriggered {
            source: HaltSource::Cli,
            reason: "drill".into(),
        },
    ));
    let reports = monitor.alerts().dispatcher().flush().await;
    assert_eq!(reports.len(), 1);
    assert!(reports[0].delivered());
    assert_eq!(monitor.metrics().notifications("log", true), 1);
}

/// A portfolio whose equity the test sets.
#[derive(Default)]
struct FakeView {
    equity: parking_lot::Mutex<rust_decimal::Decimal>,
}

impl gf_risk::PortfolioView for FakeView {
    fn equity(&self) -> rust_decimal::Decimal {
        *self.equity.lock()
    }
    fn peak_equity(&self) -> rust_decimal::Decimal {
        *self.equity.lock()
    }
    fn total_drawdown_pct(&self) -> rust_decimal::Decimal {
        rust_decimal::Decimal::ZERO
    }
    fn daily_drawdown_pct(&self) -> rust_decimal::Decimal {
        rust_decimal::Decimal::ZERO
    }
    fn consecutive_losses(&self) -> u32 {
        0
    }
    fn positions(&self) -> Vec<Position> {
        Vec::new()
    }
    fn exposure(&self) -> rust_decimal::Decimal {
        rust_decimal::Decimal::ZERO
    }
    fn volatility_pct(&self, _: &Pair) -> Option<rust_decimal::Decimal> {
        None
    }
}

#[test]
fn daily_pnl_restarts_when_the_utc_day_changes_on_the_clock() {
    let clock = ManualClock::at_ymd_hms(2026, 3, 1, 23, 0, 0);
    let view = Arc::new(FakeView {
        equity: parking_lot::Mutex::new(dec!(10000)),
    });
    let monitor = MonitorBuilder::new(&MonitorConfig::default(), Arc::new(clock.clone()))
        .portfolio(view.clone())
        .build()
        .unwrap();
    let daily = |m: &gf_monitor::Monitor| m.dashboard_snapshot().portfolio.unwrap().daily_pnl;
    monitor.tick();
    assert_eq!(daily(&monitor), dec!(0));
    *view.equity.lock() = dec!(10100.25);
    monitor.tick();
    assert_eq!(daily(&monitor), dec!(100.25));
    clock.advance(chrono::Duration::hours(1));
    monitor.tick();
    assert_eq!(
        daily(&monitor),
        dec!(0),
        "a new UTC day starts from the current equity"
    );
    *view.equity.lock() = dec!(10050);
    monitor.tick();
    assert_eq!(daily(&monitor), dec!(-50.25));
    let text = monitor.render_metrics().unwrap();
    assert!(
        text.contains("gf_pnl_quote{scope=\"daily\"} -50.25"),
        "{text}"
    );
    assert_eq!(
        monitor.dashboard_snapshot().stats.unwrap().count,
        0,
        "the view's default statistics"
    );
}

#[tokio::test]
async fn market_data_freshness_is_fed_by_bus_events() {
    let clock = ManualClock::default();
    let xrp = Pair::new("XRP/USD").unwrap();
    let monitor = MonitorBuilder::new(&MonitorConfig::default(), Arc::new(clock.clone()))
        .market_pairs(vec![xrp.clone()], Duration::from_secs(60))
        .build()
        .unwrap();
    let market = |r: &gf_monitor::Readiness| {
        r.checks
            .iter()
            .find(|c| c.name == "market_data")
            .unwrap()
            .status
    };
    assert_eq!(
        market(&monitor.readiness().await),
        gf_core::HealthStatus::Unhealthy
    );
    monitor.on_event(&Event::new(
        clock.now(),
        Source::Market,
        Payload::Trade {
            pair: xrp,
            side: gf_core::Side::Buy,
            price: dec!(0.5),
            qty: dec!(10),
            trade_id: 1,
        },
    ));
    assert_eq!(
        market(&monitor.readiness().await),
        gf_core::HealthStatus::Healthy
    );
    clock.advance(chrono::Duration::seconds(61));
    let r = monitor.readiness().await;
    assert_eq!(market(&r), gf_core::HealthStatus::Unhealthy);
    assert!(!r.ready);
}
