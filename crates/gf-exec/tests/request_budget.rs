//! Ten minutes of simulated trading on Kraken's Starter tier (paused tokio time) against a
//! mock that counts requests like Kraken: the dead man's switch, order-status sync and
//! strategy traffic share the REST counter without starving each other, the counter is
//! never exceeded, and fill detection keeps going. Prints the fill-detection latency
//! (execution at the mock → `Fill` on the bus).

#![allow(clippy::unwrap_used)]

mod common;
use common::TokioClock;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gf_core::config::Config;
use gf_core::{
    ClientOrderId, Clock, EventBus, EventKind, KindSet, OrderRequest, Pair, Payload, Side, Source,
    TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::ratelimit::{Limits, Tier};
use gf_exec::sim::{MockConfig, MockKraken};
use gf_exec::{DeadManConfig, DeadManSwitch, Exchange, KrakenClient, KrakenConfig};
use rust_decimal_macros::dec;
use tokio::time::Instant;

/// The daemon's order-status sync period (`gf-daemon` `ORDER_SYNC_EVERY`).
const SYNC_EVERY: Duration = Duration::from_secs(1);

struct Run {
    /// Seconds from execution at the mock to the `Fill` event, one per executed order.
    latencies: Vec<f64>,
    executed: usize,
    refreshes: usize,
    rate_limited: usize,
    peak_milli: u64,
    switch_lapsed: bool,
}

fn order(id: String, limit: Option<rust_decimal::Decimal>) -> OrderRequest {
    let (id, pair) = (ClientOrderId::new(id), Pair::new("XRP/USD").unwrap());
    match limit {
        Some(price) => OrderRequest::limit(id, pair, Side::Buy, dec!(20), price),
        None => OrderRequest::market(id, pair, Side::Buy, dec!(20)),
    }
}

/// Trades for ten minutes: a market buy every 30 s and a resting limit buy every 30 s
/// (offset by 15 s) that the market fills 7 s later; balances are read every 20 s.
async fn ten_minutes_on_starter(switch_secs: u32) -> Run {
    let clock = Arc::new(TokioClock::new());
    let server = MockKraken::start(MockConfig {
        clock: clock.clone(),
        rest_limits: Some(Limits::rest(Tier::Starter)),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dead_man = DeadManConfig::new(switch_secs, false);
    let mut cfg = KrakenConfig::new(server.url());
    cfg.dead_man_refresh = Some(dead_man.refresh_every);
    cfg.timeout = Duration::from_secs(30);
    let bus = EventBus::new(8192);
    let events = Publisher::new(Some(bus.clone()), clock.clone(), Source::Exec);
    let client = Arc::new(
        KrakenClient::new(cfg, Arc::new(server.credentials()), events.clone())
            .unwrap()
            .with_gate(TradingGate::new_open()),
    );
    let mut fills = bus.subscribe(KindSet::of(&[EventKind::Fill]));
    let seen: Arc<parking_lot::Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(ev) = fills.recv().await {
                if let Payload::Fill(f) = &ev.payload {
                    seen.lock()
                        .entry(f.order_id.as_str().to_owned())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    let sync = client.spawn_order_sync(SYNC_EVERY);
    let keeper = DeadManSwitch::spawn(client.clone(), dead_man, events);
    let reader = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let _ = client.balances().await;
            }
        })
    };

    let start = Instant::now();
    let end = start + Duration::from_secs(600);
    let mut executed_at: HashMap<String, Instant> = HashMap::new();
    let mut lapsed = false;
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        let ack = client
            .place_order(&order(format!("mkt-{n}"), None))
            .await
            .unwrap();
        executed_at.insert(ack.order_id.as_str().to_owned(), Instant::now());
        tokio::time::sleep(Duration::from_secs(15)).await;
        let ack = client
            .place_order(&order(format!("lim-{n}"), Some(dec!(0.40))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(7)).await;
        lapsed |= server
            .dead_man_trigger()
            .is_none_or(|trigger| trigger <= clock.now());
        assert!(server.fill_order(ack.order_id.as_str(), dec!(20), dec!(0.40)));
        executed_at.insert(ack.order_id.as_str().to_owned(), Instant::now());
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    // Let the last fills be seen (bounded wait in paused time).
    let until = Instant::now() + Duration::from_secs(120);
    while seen.lock().len() < executed_at.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sync.abort();
    reader.abort();
    keeper.shutdown().await.unwrap();
    watcher.abort();

    let seen = seen.lock().clone();
    let mut latencies: Vec<f64> = executed_at
        .iter()
        .filter_map(|(id, at)| seen.get(id).map(|s| (*s - *at).as_secs_f64()))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let requests = server.requests();
    Run {
        executed: executed_at.len(),
        latencies,
        refreshes: requests
            .iter()
            .filter(|r| r.endpoint == "CancelAllOrdersAfter" && r.outcome == "ok")
            .count(),
        rate_limited: requests
            .iter()
            .filter(|r| r.outcome.contains("Rate limit"))
            .count(),
        peak_milli: server.peak_counter_milli(),
        switch_lapsed: lapsed,
    }
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::test(start_paused = true)]
async fn default_switch_on_starter_fill_detection_latency() {
    let run = ten_minutes_on_starter(60).await;
    let l = &run.latencies;
    println!(
        "fill detection on Starter, 60 s switch, {} executions in 10 min: \
         p50 {:.1} s, p95 {:.1} s, max {:.1} s ({} switch refreshes, counter peak {:.1}/15)",
        run.executed,
        pct(l, 50),
        pct(l, 95),
        pct(l, 100),
        run.refreshes,
        run.peak_milli as f64 / 1000.0,
    );
    assert_eq!(l.len(), run.executed, "every execution was seen");
    assert_eq!(run.rate_limited, 0, "never over Kraken's counter");
    assert!(run.peak_milli <= 15_000);
    assert!(!run.switch_lapsed);
    assert!(run.refreshes >= 39, "every 15 s: {}", run.refreshes);
    // Sync's share on Starter beside a 60 s switch is 0.17 polls/s: one every ~6 s.
    assert!(pct(l, 100) <= 8.0, "max {:.1} s", pct(l, 100));
}

#[tokio::test(start_paused = true)]
async fn twelve_second_switch_on_starter_is_refused_and_cannot_stop_fill_detection() {
    // `config check` refuses it, naming the numbers …
    let mut cfg = Config::default();
    cfg.exchange.tier = Tier::Starter;
    cfg.exchange.dead_man_switch_secs = 12;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("at least 28 s"), "{err}");
    // … and had it been forced through, the limiter's lanes still keep sync going: the
    // switch's lane gets half the decay (a refresh every ~6 s, inside the 12 s timeout).
    let run = ten_minutes_on_starter(12).await;
    let l = &run.latencies;
    println!(
        "fill detection on Starter, 12 s switch (refused by config check), {} executions: \
         p50 {:.1} s, max {:.1} s ({} refreshes)",
        run.executed,
        pct(l, 50),
        pct(l, 100),
        run.refreshes
    );
    assert_eq!(l.len(), run.executed, "fill detection never stopped");
    assert_eq!(run.rate_limited, 0);
    assert!(!run.switch_lapsed, "the switch stayed armed");
    assert!(pct(l, 100) <= 15.0, "max {:.1} s", pct(l, 100));
}
