//! Cost of recording one latency sample (target: ≤ 50 ns): straight into the registry,
//! through the `LatencySink` the hot stages hold, and a whole timed sample as a hook
//! takes it (clock reads included).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gf_core::latency::{self, micros_between, stage};
use gf_core::{Event, Payload, SharedClock, SharedLatency, Source, SystemClock};
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
    // What `book_applied` and the replay's `market_ingest` cost per message: one
    // monotonic read and a sample through the shared sink.
    let sink: SharedLatency = std::sync::Arc::new(m.clone());
    c.bench_function("latency_sink_record", |b| {
        b.iter(|| sink.record(black_box(stage::BOOK_APPLIED), black_box(1234)));
    });
    c.bench_function("latency_sink_timed_sample", |b| {
        let started = std::time::Instant::now();
        b.iter(|| {
            sink.record(
                stage::BOOK_APPLIED,
                latency::micros(black_box(started).elapsed()),
            )
        });
    });
    // What `decision` costs: a wall-clock read through the daemon's `Clock`.
    let clock: SharedClock = std::sync::Arc::new(SystemClock);
    let ts = clock.now();
    c.bench_function("latency_sink_clock_sample", |b| {
        b.iter(|| sink.record(stage::DECISION, micros_between(black_box(ts), clock.now())));
    });
}

criterion_group!(benches, latency_record);
criterion_main!(benches);
