//! A real Prometheus server (the Debian package `prometheus`) scrapes the monitor's
//! `/metrics` on a loopback port, and its HTTP API returns our samples.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::config::MonitorConfig;
use gf_core::{
    ApiErrorKind, Clock, Event, HaltSource, HaltState, ManualClock, Pair, Payload, Position, Source,
};
use gf_monitor::MonitorBuilder;
use gf_risk::MockPortfolioView;
use gf_risk::TradingStats;
use rust_decimal_macros::dec;
use serde_json::Value;

fn prometheus_binary() -> String {
    let candidates = [
        std::env::var("GF_PROMETHEUS").ok(),
        Some("/usr/bin/prometheus".into()),
    ];
    for c in candidates.into_iter().flatten() {
        if std::path::Path::new(&c).exists() {
            return c;
        }
    }
    panic!(
        "the Prometheus server is missing: install it with `apt-get install -y prometheus` (or set GF_PROMETHEUS to its path)"
    );
}

async fn query(client: &reqwest::Client, port: u16, q: &str) -> Vec<Value> {
    let res = client
        .post(format!("http://127.0.0.1:{port}/api/v1/query"))
        .form(&[("query", q)])
        .send()
        .await;
    let Ok(res) = res else { return Vec::new() };
    let Ok(body) = res.json::<Value>().await else {
        return Vec::new();
    };
    assert_ne!(body["status"], "error", "query {q} failed: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The sample's value exactly as Prometheus printed it.
fn raw(sample: &Value) -> &str {
    sample["value"][1].as_str().unwrap()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_registry_and_its_api_returns_the_samples() {
    let bin = prometheus_binary();
    let clock = ManualClock::default();
    let xrp = Pair::new("XRP/USD").unwrap();
    let mut view = MockPortfolioView::new();
    view.expect_equity().return_const(dec!(10250.5));
    view.expect_total_drawdown_pct().return_const(dec!(3.5));
    view.expect_daily_drawdown_pct().return_const(dec!(0.5));
    let mut pos = Position::flat(xrp.clone());
    pos.qty = dec!(1000);
    pos.avg_entry = dec!(0.5);
    pos.mark = Some(dec!(0.52));
    view.expect_positions().return_const(vec![pos]);
    view.expect_trading_stats().return_const(TradingStats {
        count: 7,
        winners: 4,
        losers: 3,
        win_rate_pct: Some(dec!(57.14)),
        total_pnl: dec!(42.5),
        ..TradingStats::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let monitor = Arc::new(
        MonitorBuilder::new(&MonitorConfig::default(), Arc::new(clock.clone()))
            .portfolio(Arc::new(view))
            .data_dir(dir.path())
            .build()
            .unwrap(),
    );
    let ev = |p| Event::new(clock.now(), Source::Test, p);
    for micros in [120, 480, 2_500] {
        monitor.on_event(&ev(Payload::Latency {
            stage: "order_ack".into(),
            micros,
        }));
    }
    monitor.on_event(&ev(Payload::Latency {
        stage: "halt_gate_closed".into(),
        micros: 3,
    }));
    monitor.on_event(&ev(Payload::ApiError {
        endpoint: "AddOrder".into(),
        kind: ApiErrorKind::RateLimit,
        message: "EAPI:Rate limit exceeded".into(),
        retryable: true,
    }));
    monitor.on_event(&ev(Payload::HaltStateChanged {
        from: HaltState::Running,
        to: HaltState::Halted,
        source: HaltSource::Cli,
        reason: "operator request".into(),
    }));
    monitor.on_event(&ev(Payload::BookInvalid {
        pair: xrp.clone(),
        reason: "checksum mismatch".into(),
    }));
    monitor.tick();

    let (addr, _server) = common::serve(gf_monitor::http::router(monitor.clone())).await;

    let prom_port = common::closed_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: gf\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let tsdb = dir.path().join("tsdb");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let acks = loop {
        let r = query(
            &client,
            prom_port,
            "gf_latency_seconds_count{stage=\"order_ack\"}",
        )
        .await;
        if !r.is_empty() {
            break r;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("prometheus exited with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never returned the samples"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(raw(&acks[0]), "3");
    assert_eq!(acks[0]["metric"]["job"], "gf");

    let up = query(&client, prom_port, "up{job=\"gf\"}").await;
    assert_eq!(raw(&up[0]), "1", "the scrape succeeded");

    // A real histogram: bucket series with `le`, usable by histogram_quantile.
    let buckets = query(
        &client,
        prom_port,
        "gf_latency_seconds_bucket{stage=\"order_ack\",le=\"0.0005\"}",
    )
    .await;
    assert_eq!(raw(&buckets[0]), "2", "120 µs and 480 µs are under 0.5 ms");
    let q = query(
        &client,
        prom_port,
        "histogram_quantile(0.5, gf_latency_seconds_bucket{stage=\"order_ack\"})",
    )
    .await;
    assert!(value(&q[0]) > 0.0 && value(&q[0]) <= 0.0005, "{q:?}");

    let checks: [(&str, f64); 11] = [
        ("gf_api_errors_total{kind=\"rate_limit\"}", 1.0),
        ("gf_api_errors_total{kind=\"timeout\"}", 0.0),
        ("gf_halt_state{state=\"halted\"}", 1.0),
        ("gf_halt_state{state=\"running\"}", 0.0),
        ("gf_book_checksum_mismatches_total{pair=\"XRP/USD\"}", 1.0),
        ("gf_trading_trades", 7.0),
        ("gf_exposure_quote{pair=\"XRP/USD\"}", 520.0),
        ("gf_drawdown_ratio{scope=\"total\"}", 0.035),
        ("gf_equity_quote", 10250.5),
        ("gf_pnl_quote{scope=\"realised\"}", 42.5),
        ("gf_trading_win_ratio", 0.5714),
    ];
    for (q, expected) in checks {
        let r = query(&client, prom_port, q).await;
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        assert!((value(&r[0]) - expected).abs() < 1e-9, "{q}: {r:?}");
    }
    let halt = query(&client, prom_port, "gf_halt_info").await;
    assert_eq!(halt[0]["metric"]["reason"], "operator request");
    assert_eq!(halt[0]["metric"]["state"], "halted");
    let rss = query(&client, prom_port, "gf_process_resident_memory_bytes").await;
    assert!(value(&rss[0]) > 1e6, "{rss:?}");

    child.kill().await.unwrap();
}
