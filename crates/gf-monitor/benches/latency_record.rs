//! Cost of recording one latency sample (target: ≤ 50 ns).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gf_core::{Event, Payload, Source};
use gf_monitor::Metrics;

fn latency_record(c: &mut Criterion) {
    let m = Metrics::new();
    let mut micros = 0u64;
    c.bench_function("latency_record_known_stage", |b| {
        b.iter(|| {
            micros = (micros + 37) % 100_000;
            m.record_latency(black_box("order_ack"), black_box(micros));
        });
    });
    c.bench_function("latency_record_unknown_stage", |b| {
        b.iter(|| m.record_latency(black_box("strategy_custom"), black_box(1234)));
    });
    let ev = Event::new(
        chrono::Utc::now(),
        Source::Exec,
        Payload::Latency {
            stage: "order_ack".into(),
            micros: 850,
        },
    );
    c.bench_function("latency_on_event", |b| {
        b.iter(|| m.on_event(black_box(&ev)))
    });
}

criterion_group!(benches, latency_record);
criterion_main!(benches);
