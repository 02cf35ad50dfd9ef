//! Evaluating every condition on one market event (no breach). Goal: ≤ 1 µs.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;

use common::{Env, pair};
use gf_core::config::HaltConfig;
use gf_core::{Event, Payload, Side, Source};
use gf_halt::condition::{ConditionSet, EvalContext};

fn bench(c: &mut Criterion) {
    let env = Env::open(&HaltConfig::default(), Path::new(":memory:"));
    env.coordinator
        .watch_pairs(&[pair("XRP/USD"), pair("DOGE/USD")]);
    *env.view.total_dd.lock() = Decimal::new(3, 0);
    *env.view.vol.lock() = Some(Decimal::new(12, 1));
    let trade = Event::new(
        env.now(),
        Source::Market,
        Payload::Trade {
            pair: pair("XRP/USD"),
            side: Side::Buy,
            price: Decimal::new(5, 1),
            qty: Decimal::ONE,
            trade_id: 1,
        },
    );
    let mut group = c.benchmark_group("condition_eval");
    group.bench_function("coordinator_evaluate_trade", |b| {
        b.iter(|| black_box(env.coordinator.evaluate(black_box(&trade))));
    });

    let mut set = ConditionSet::from_config(&HaltConfig::default());
    let view = &*env.view;
    group.bench_function("condition_set_observe_trade", |b| {
        b.iter(|| {
            let ctx = EvalContext {
                now: env.now(),
                portfolio: view,
            };
            black_box(set.observe(black_box(&trade), &ctx, &mut |_| {}))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
