//! Backtest throughput: market events per second through the whole safety stack (book
//! code, paper exchange, portfolio, every halt condition live, the EMA strategy through
//! the signal executor), on the bundled recordings.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gf_core::Config;
use gf_strategy::StrategyKind;
use gf_strategy::backtest::{Backtest, Parsed};

fn backtest(c: &mut Criterion) {
    let config = Config::default();
    let mut group = c.benchmark_group("backtest");
    group.sample_size(20);
    for (name, recording, strategy) in [
        (
            "paper_ema_cross",
            gf_market::bundled::PAPER,
            StrategyKind::EmaCross,
        ),
        (
            "crash_hold_long",
            gf_market::bundled::CRASH,
            StrategyKind::HoldLong,
        ),
    ] {
        let events = Backtest::new(&config, recording, strategy)
            .run()
            .expect("the bundled recording runs")
            .market_events;
        group.throughput(Throughput::Elements(events));
        // From the recording's bytes: the book code included.
        group.bench_function(format!("{name}/from_bytes"), |b| {
            b.iter(|| {
                Backtest::new(&config, recording, strategy)
                    .run()
                    .expect("the bundled recording runs")
            });
        });
        // Parsed once (as a sweep and `gf-daemon backtest` do): the safety stack alone.
        let parsed = Parsed::parse(&config, recording).expect("the bundled recording parses");
        group.bench_function(format!("{name}/parsed"), |b| {
            b.iter(|| {
                Backtest::from_parsed(&config, &parsed, strategy)
                    .run()
                    .expect("the bundled recording runs")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, backtest);
criterion_main!(benches);
