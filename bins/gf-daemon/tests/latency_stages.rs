//! Every latency stage gf-monitor exports receives samples in a paper session that trades:
//! the replay records `market_ingest` and `book_applied`, the strategy runner `decision`
//! and `order_sent`, the paper exchange `order_ack`. An order placed through the order
//! gateway is timed too: `order_sent` from its admission, `order_ack`. A halt at the end
//! times `halt_gate_closed`, `halt_cancel_sent` and `halt_flat`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::{Config, EventKind, KindSet, SystemClock};
use gf_daemon::app::{Scenario, start};

/// Waits until every stage of `stages` has samples (and, with `need_fill`, a fill was
/// seen), re-checking at each event of `events`, for at most `within`.
async fn until_sampled(
    metrics: &gf_monitor::Metrics,
    events: &mut gf_core::Subscription,
    stages: &[&str],
    need_fill: bool,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    let mut filled = !need_fill;
    loop {
        let latency = metrics.latency_percentiles();
        let missing: Vec<&str> = stages
            .iter()
            .copied()
            .filter(|s| latency.get(*s).is_none_or(|p| p.samples == 0))
            .collect();
        if filled && missing.is_empty() {
            return;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ev)) => filled |= ev.kind() == EventKind::Fill,
            Ok(Err(gf_core::RecvError::Lagged { .. })) => {}
            Ok(Err(e)) => panic!("event bus: {e}"),
            Err(_) => panic!(
                "after {within:?}: filled {filled}, stages without samples {missing:?} ({latency:?})"
            ),
        }
    }
}

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
    // Woken by the bus (the looped replay never stops), never by a timer.
    let mut events = running.daemon.bus.subscribe(KindSet::of(&[
        EventKind::BookSnapshot,
        EventKind::BookUpdate,
        EventKind::Fill,
        EventKind::Latency,
    ]));
    let metrics = running.daemon.monitor.metrics().clone();
    let pipeline = [
        "market_ingest",
        "book_applied",
        "decision",
        "order_sent",
        "order_ack",
    ];
    until_sampled(
        &metrics,
        &mut events,
        &pipeline,
        true,
        Duration::from_secs(120),
    )
    .await;

    // A halt times its own stages: every stage gf-monitor exports has samples.
    let outcome = running
        .daemon
        .halt
        .halt(gf_core::HaltSource::Cli, "latency stages test")
        .await;
    assert!(outcome.durable);
    until_sampled(
        &metrics,
        &mut events,
        &gf_monitor::STAGES,
        false,
        Duration::from_secs(60),
    )
    .await;

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
    running
        .wait_for_price(&pair, Duration::from_secs(30))
        .await
        .unwrap();
    let mut events = running.daemon.bus.subscribe(KindSet::of(&[
        EventKind::BookSnapshot,
        EventKind::BookUpdate,
        EventKind::Latency,
    ]));
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
    until_sampled(
        &metrics,
        &mut events,
        &["order_ack"],
        false,
        Duration::from_secs(30),
    )
    .await;
    running.stop().await;
}
