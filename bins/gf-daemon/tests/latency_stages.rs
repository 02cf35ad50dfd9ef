//! Every latency stage gf-monitor exports receives samples in a paper session that trades:
//! the replay records `market_ingest` and `book_applied`, the strategy runner `decision`
//! and `order_sent`, the paper exchange `order_ack`. An order placed through the order
//! gateway is timed too: `order_sent` from its admission, `order_ack`. A halt at the end
//! times `halt_gate_closed`, `halt_cancel_sent` and `halt_flat`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::{Config, EventKind, KindSet, SystemClock, TryRecvError};
use gf_daemon::app::{Scenario, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trading_paper_session_samples_every_pipeline_stage() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    // The normal scenario's strategy (ema_cross) on its looped recording, replayed fast
    // enough to cross its averages within seconds.
    cfg.market.replay_speed = 50.into();
    // A halt at the end flattens, so the halt stages (gate closed, cancel sent, flat) are
    // timed too.
    cfg.halt.behaviour = gf_core::HaltBehaviour::ClosePositions;
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let mut fills = running
        .daemon
        .bus
        .subscribe(KindSet::of(&[EventKind::Fill]));

    let pipeline = [
        "market_ingest",
        "book_applied",
        "decision",
        "order_sent",
        "order_ack",
    ];
    let metrics = running.daemon.monitor.metrics().clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut filled = 0u64;
    loop {
        loop {
            match fills.try_recv() {
                Ok(_) => filled += 1,
                Err(TryRecvError::Empty) => break,
                Err(e) => panic!("fill feed: {e:?}"),
            }
        }
        let latency = metrics.latency_percentiles();
        let missing: Vec<&str> = pipeline
            .iter()
            .copied()
            .filter(|s| latency.get(*s).is_none_or(|p| p.samples == 0))
            .collect();
        if filled > 0 && missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s: {filled} fills, stages without samples {missing:?} ({latency:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A halt times its own stages: every stage gf-monitor exports has samples.
    let outcome = running
        .daemon
        .halt
        .halt(gf_core::HaltSource::Cli, "latency stages test")
        .await;
    assert!(outcome.durable);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let latency = metrics.latency_percentiles();
        let missing: Vec<&str> = gf_monitor::STAGES
            .iter()
            .copied()
            .filter(|s| latency.get(*s).is_none_or(|p| p.samples == 0))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the halt, stages without samples {missing:?} ({latency:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each stage is also exported as a histogram series with a non-zero count.
    let text = metrics.render().unwrap();
    for stage in gf_monitor::STAGES {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("gf_latency_seconds_count{{stage=\"{stage}\"}}")))
            .unwrap_or_else(|| panic!("no count series for {stage}"));
        let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count > 0, "{line}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_through_the_gateway_is_timed_from_admission_to_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    // Orders come only from the gateway.
    cfg.strategy.kind = Some(gf_core::config::StrategyKind::None);
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let pair: gf_core::Pair = "XRP/USD".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.daemon.portfolio.read(|p| p.mark(&pair)).is_none() {
        assert!(Instant::now() < deadline, "no XRP/USD price within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let metrics = running.daemon.monitor.metrics().clone();
    let samples = |stage: &str| {
        metrics
            .latency_percentiles()
            .get(stage)
            .map_or(0, |p| p.samples)
    };
    assert_eq!(samples("order_sent"), 0);

    // A resting limit buy, ~4 % below the market (inside the price collar).
    let placed = running
        .daemon
        .gateway
        .place(
            "strat-a",
            gf_api::PlaceOrder {
                client_order_id: "lat-1".into(),
                pair: "XRP/USD".into(),
                side: gf_core::Side::Buy,
                order_type: gf_core::OrderType::Limit,
                qty: 10.into(),
                limit_price: Some(rust_decimal::Decimal::new(210, 2)),
                time_in_force: None,
                post_only: false,
            },
        )
        .await
        .unwrap();
    assert!(!placed.replayed);
    assert_eq!(
        samples("order_sent"),
        1,
        "recorded before the order is sent"
    );
    // The acknowledgement's sample travels as a bus event to the monitor.
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples("order_ack") == 0 {
        assert!(Instant::now() < deadline, "no order_ack sample within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().await;
}
