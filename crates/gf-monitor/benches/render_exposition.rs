//! Cost of rendering the whole exposition with 10 pairs populated (target: ≤ 200 µs).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gf_core::{
    ApiErrorKind, ConnectionState, Event, HaltSource, HaltState, HealthStatus, Pair, Payload,
    Source,
};
use gf_monitor::Metrics;
use gf_monitor::metrics::STAGES;
use gf_risk::TradingStats;
use rust_decimal::Decimal;

const PAIRS: [&str; 10] = [
    "XRP/USD", "DOGE/USD", "BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "LTC/USD",
    "XLM/USD", "LINK/USD",
];

fn populated() -> Metrics {
    let m = Metrics::new();
    let now = chrono::Utc::now();
    let ev = |p| Event::new(now, Source::Test, p);
    for (i, stage) in STAGES.iter().enumerate() {
        for k in 0..100u64 {
            m.record_latency(stage, (i as u64 + 1) * 10 + k * 97);
        }
    }
    for p in PAIRS {
        let pair = Pair::new(p).unwrap();
        m.on_event(&ev(Payload::BookInvalid {
            pair: pair.clone(),
            reason: "checksum".into(),
        }));
        m.on_event(&ev(Payload::Staleness {
            pair: pair.clone(),
            stale: false,
            age_ms: 10,
            threshold_ms: 60_000,
        }));
        for side in [gf_core::Side::Buy, gf_core::Side::Sell] {
            m.on_event(&ev(Payload::Fill(gf_core::Fill {
                trade_id: "T".into(),
                order_id: gf_core::OrderId::new("O"),
                client_order_id: None,
                pair: pair.clone(),
                side,
                qty: Decimal::ONE,
                price: Decimal::ONE,
                fee: Decimal::ZERO,
                ts: now,
                purpose: gf_core::OrderPurpose::default(),
            })));
        }
    }
    for id in gf_core::config::CONDITION_IDS {
        m.on_event(&ev(Payload::ConditionValue {
            id: (*id).into(),
            value: Decimal::new(15, 1),
            threshold: Decimal::TWO,
            triggered: false,
        }));
    }
    for check in ["exchange", "database", "market_data", "memory", "disk"] {
        m.set_health(check, HealthStatus::Healthy);
    }
    m.on_event(&ev(Payload::ApiError {
        endpoint: "AddOrder".into(),
        kind: ApiErrorKind::RateLimit,
        message: "x".into(),
        retryable: true,
    }));
    for state in [ConnectionState::Disconnected, ConnectionState::Connecting] {
        m.on_event(&ev(Payload::Connection {
            state,
            detail: "x".into(),
        }));
    }
    m.on_event(&ev(Payload::HaltStateChanged {
        from: HaltState::Running,
        to: HaltState::Halted,
        source: HaltSource::Cli,
        reason: "test".into(),
    }));
    m.set_trading_stats(&TradingStats {
        count: 10,
        winners: 6,
        losers: 4,
        win_rate_pct: Some(Decimal::new(60, 0)),
        ..TradingStats::default()
    });
    m.set_daily_pnl(Decimal::new(-125, 1));
    m
}

fn render_exposition(c: &mut Criterion) {
    let m = populated();
    let size = m.render().unwrap().len();
    println!("exposition size with 10 pairs: {size} bytes");
    c.bench_function("render_exposition_10_pairs", |b| {
        b.iter(|| black_box(m.render().unwrap()))
    });
}

criterion_group!(benches, render_exposition);
criterion_main!(benches);
