//! Applying a mark to a 20-position portfolio and recomputing equity and drawdown (total
//! and daily), directly, from a bus event, and at a minute boundary (which also adds a
//! log return to the rolling volatility).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use chrono::Duration;
use criterion::{Criterion, criterion_group, criterion_main};
use gf_core::{
    Clock, Event, Fill, ManualClock, OrderId, OrderPurpose, Pair, Payload, Side, Source,
};
use gf_risk::{Portfolio, PortfolioConfig, PortfolioView};
use rust_decimal::Decimal;

fn portfolio_with_20_positions() -> (Portfolio, ManualClock, Vec<Pair>) {
    let clock = ManualClock::at_ymd_hms(2026, 1, 1, 12, 0, 0);
    let pairs: Vec<Pair> = (0..20)
        .map(|i| format!("C{i}/USD").parse().unwrap())
        .collect();
    let mut p = Portfolio::new(
        PortfolioConfig {
            pairs: pairs.clone(),
            initial_cash: Decimal::new(1_000_000, 0),
            volatility_window: 60,
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    for (i, pair) in pairs.iter().enumerate() {
        let price = Decimal::new(5000 + i64::try_from(i).unwrap() * 37, 4);
        p.mark_price(pair, price, clock.now()).unwrap();
        p.apply_fill(&Fill {
            trade_id: format!("t{i}"),
            order_id: OrderId::new(format!("o{i}")),
            client_order_id: None,
            pair: pair.clone(),
            side: if i % 3 == 0 { Side::Sell } else { Side::Buy },
            qty: Decimal::new(12_345_678, 4),
            price,
            fee: Decimal::new(25, 2),
            ts: clock.now(),
            purpose: OrderPurpose::Normal,
        })
        .unwrap();
    }
    assert_eq!(p.positions().len(), 20);
    (p, clock, pairs)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("portfolio_mark");

    let (mut p, clock, pairs) = portfolio_with_20_positions();
    let now = clock.now();
    let prices = [Decimal::new(5123, 4), Decimal::new(4987, 4)];
    let mut i = 0usize;
    group.bench_function("mark_20_positions_equity_drawdown", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let pair = &pairs[i % 20];
            p.mark_price(pair, prices[i & 1], now).unwrap();
            black_box((p.equity(), p.total_drawdown_pct(), p.daily_drawdown_pct()))
        });
    });

    let (mut p, clock, pairs) = portfolio_with_20_positions();
    let events: Vec<Event> = (0..40)
        .map(|k| {
            Event::new(
                clock.now(),
                Source::Market,
                Payload::Trade {
                    pair: pairs[k % 20].clone(),
                    side: Side::Buy,
                    price: prices[k & 1],
                    qty: Decimal::ONE,
                    trade_id: k as u64,
                },
            )
        })
        .collect();
    let mut k = 0usize;
    group.bench_function("trade_event_20_positions", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            p.apply_event(&events[k % 40]).unwrap();
            black_box((p.equity(), p.total_drawdown_pct()))
        });
    });

    let (mut p, clock, pairs) = portfolio_with_20_positions();
    let mut ts = clock.now();
    let mut j = 0usize;
    group.bench_function("mark_at_minute_boundary_with_volatility", |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            ts += Duration::minutes(1);
            p.mark_price(&pairs[0], prices[j & 1], ts).unwrap();
            black_box((p.equity(), p.volatility_pct(&pairs[0])))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
