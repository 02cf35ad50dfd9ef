//! Decisions are made on every event they need, however far the daemon's risk and halt
//! subscribers lag: API errors and fills published before a flood larger than the bus's
//! ring (which overwrites market data) still reach the halt conditions and the portfolio.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use gf_core::{
    ApiErrorKind, Event, Fill, HaltState, ManualClock, OrderId, OrderPurpose, Pair, Payload, Side,
    Source,
};
use gf_daemon::app::build;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

/// More than the daemon bus's ring (1 << 16 events).
const FLOOD: u64 = 70_000;

fn latency(clock: &ManualClock, i: u64) -> Event {
    use gf_core::Clock;
    Event::new(
        clock.now(),
        Source::Market,
        Payload::Latency {
            stage: "ingest".into(),
            micros: i,
        },
    )
}

#[tokio::test]
async fn api_errors_and_fills_before_a_flood_still_reach_halt_and_risk() {
    use gf_core::Clock;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = gf_core::Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, 0).unwrap());
    let (d, _) = build(cfg, Arc::new(clock.clone())).unwrap();
    assert_eq!(d.halt.state(), HaltState::Running);

    // The daemon's own subscriptions for its halt and risk tasks.
    let stop = CancellationToken::new();
    let halt_sub = d.bus.subscribe(d.halt.subscription_kinds());
    let risk_sub = d.bus.subscribe(gf_risk::SharedPortfolio::kinds());
    let halt = d.halt.clone();
    let halt_task = tokio::spawn({
        let stop = stop.clone();
        async move { halt.run(halt_sub, stop).await }
    });
    let risk_task = tokio::spawn(d.portfolio.clone().run(risk_sub, stop.clone()));

    // On this single-threaded runtime nothing else runs until the loop ends: both tasks
    // are a whole ring behind before they read their first event.
    let xrp = Pair::new("XRP/USD").unwrap();
    let limit = d.config.halt.max_api_errors_per_min;
    for i in 0..=u64::from(limit) {
        d.bus.publish(Event::new(
            clock.now(),
            Source::Exec,
            Payload::ApiError {
                endpoint: "AddOrder".into(),
                kind: ApiErrorKind::ServiceUnavailable,
                message: format!("EService:Unavailable #{i}"),
                retryable: true,
            },
        ));
        d.bus.publish(Event::new(
            clock.now(),
            Source::Paper,
            Payload::Fill(Fill {
                trade_id: format!("T{i}"),
                order_id: OrderId::new(format!("O{i}")),
                client_order_id: None,
                pair: xrp.clone(),
                side: Side::Buy,
                qty: Decimal::TEN,
                price: Decimal::new(5, 1),
                fee: Decimal::ZERO,
                ts: clock.now(),
                purpose: OrderPurpose::Normal,
            }),
        ));
    }
    for i in 0..FLOOD {
        d.bus.publish(latency(&clock, i));
    }

    let halted = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(h) = d.halt.status().halt {
                return h;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the API-error condition saw every error and halted");
    assert_eq!(halted.source.to_string(), "auto:api_error_rate");
    let bought = Decimal::TEN * Decimal::from(u64::from(limit) + 1);
    let position = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let held = d.portfolio.read(|p| p.position_qty(&xrp));
            if held == Some(bought) {
                return held;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every fill reached the portfolio");
    assert_eq!(position, Some(bought));

    stop.cancel();
    halt_task.await.unwrap();
    let report = risk_task.await.unwrap();
    assert!(report.lagged >= FLOOD - (1 << 16), "{report:?}");
}
