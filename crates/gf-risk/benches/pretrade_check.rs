//! Pre-trade check of one order with every check on (validation, pair, duplicate id,
//! price freshness, collar, order and position notional, open orders, throttle), and of
//! a whole signal (sizing, then the check), directly and through the shared handle.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gf_core::config::RiskConfig;
use gf_core::{ClientOrderId, Clock, ManualClock, OrderRequest, Pair, Side};
use gf_risk::{
    Portfolio, PortfolioConfig, PreTradeCheck, PreTradeChecker, RiskLimits, SharedPortfolio,
};
use rust_decimal::Decimal;

fn setup() -> (Portfolio, PreTradeChecker, DateTime<Utc>, Pair) {
    let clock = ManualClock::at_ymd_hms(2026, 1, 1, 12, 0, 0);
    let xrp: Pair = "XRP/USD".parse().unwrap();
    let mut portfolio = Portfolio::new(
        PortfolioConfig {
            pairs: vec![xrp.clone(), "DOGE/USD".parse().unwrap()],
            initial_cash: Decimal::new(100_000, 0),
            volatility_window: 60,
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    portfolio
        .mark_price(&xrp, Decimal::new(5000, 4), clock.now())
        .unwrap();
    let mut checker =
        PreTradeChecker::new(RiskLimits::from_config(&RiskConfig::default()).unwrap());
    // A realistic state: some orders open and recently sent.
    for i in 0..5 {
        let v = checker.check(order(&xrp, &format!("warm-{i}")), &portfolio, clock.now());
        assert!(v.is_approved());
    }
    (portfolio, checker, clock.now(), xrp)
}

fn order(pair: &Pair, id: &str) -> OrderRequest {
    OrderRequest::limit(
        ClientOrderId::new(id),
        pair.clone(),
        Side::Buy,
        Decimal::new(20_000, 0),
        Decimal::new(5010, 4),
    )
}

fn bench(c: &mut Criterion) {
    let (portfolio, checker, now, xrp) = setup();
    let mut group = c.benchmark_group("pretrade_check");

    group.bench_function("order_all_checks", |b| {
        b.iter_batched_ref(
            || (checker.clone(), order(&xrp, "bench-1")),
            |(checker, order)| {
                let v = checker.check(order.clone(), &portfolio, now);
                assert!(v.is_approved());
                black_box(v)
            },
            BatchSize::SmallInput,
        );
    });

    group.bench_function("signal_size_then_check", |b| {
        b.iter_batched_ref(
            || checker.clone(),
            |checker| {
                let entry = Decimal::new(5010, 4);
                let stop = Decimal::new(4900, 4);
                let qty = checker
                    .size(&portfolio, &xrp, Side::Buy, entry, stop)
                    .unwrap();
                let mut o = order(&xrp, "bench-2");
                o.qty = qty;
                let v = checker.check(o, &portfolio, now);
                assert!(v.is_approved());
                black_box(v)
            },
            BatchSize::SmallInput,
        );
    });

    // Through the shared handle (locks, clock read); the order is released each time so
    // the state stays the same.
    let (portfolio, _, _, xrp) = setup();
    let shared = SharedPortfolio::new(
        portfolio,
        RiskLimits::from_config(&RiskConfig::default()).unwrap(),
    );
    let id = ClientOrderId::new("bench-3");
    group.bench_function("shared_handle_check", |b| {
        b.iter(|| {
            let v = shared.check(order(&xrp, "bench-3"));
            shared.release(&id);
            black_box(v)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
