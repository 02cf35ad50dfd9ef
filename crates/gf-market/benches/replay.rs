//! Full replay of the paper fixture: through the feed processor alone (verify), and onto
//! the event bus at full speed (`ReplaySource`). Reported as messages per second.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gf_core::{EventBus, ManualClock};
use gf_market::fixtures::{Scenario, generate};
use gf_market::verify::verify_reader;
use gf_market::{MarketSource, ReplaySource};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

fn bench(c: &mut Criterion) {
    let recording = generate(Scenario::Paper);
    let lines = recording.iter().filter(|b| **b == b'\n').count() as u64;
    let mut group = c.benchmark_group("replay_paper_fixture");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(20);
    group.bench_function("verify", |b| {
        b.iter(|| {
            let report = verify_reader(recording.as_slice()).unwrap();
            assert!(report.passed());
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    group.bench_function("replay_to_bus", |b| {
        b.to_async(&rt).iter(|| async {
            let bus = EventBus::new(1 << 12);
            let _subscriber = bus.subscribe_all();
            let mut source = ReplaySource::from_bytes(recording.clone(), Decimal::ZERO).unwrap();
            let stats = source
                .run(
                    bus,
                    Arc::new(ManualClock::default()),
                    CancellationToken::new(),
                )
                .await
                .unwrap();
            assert_eq!(stats.mismatches(), 0);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
