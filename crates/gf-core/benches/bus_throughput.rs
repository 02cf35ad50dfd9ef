//! Bus throughput: one publisher, four subscribers; events delivered per subscriber per
//! second (criterion reports elements/s = events each subscriber received per second).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gf_core::{Event, EventBus, Payload, Source};

const EVENTS: u64 = 100_000;
const SUBSCRIBERS: usize = 4;

fn bus_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let template = Event::new(
        Utc::now(),
        Source::Test,
        Payload::Latency {
            stage: "bench".into(),
            micros: 1,
        },
    );
    let mut group = c.benchmark_group("bus");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);
    group.bench_function("publish_1_to_4_subscribers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let bus = EventBus::new((EVENTS as usize).next_power_of_two());
                let subs: Vec<_> = (0..SUBSCRIBERS).map(|_| bus.subscribe_all()).collect();
                let events: Vec<_> = (0..EVENTS)
                    .map(|_| std::sync::Arc::new(template.clone()))
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let handles: Vec<_> = subs
                        .into_iter()
                        .map(|mut sub| {
                            tokio::spawn(async move {
                                let mut got = 0u64;
                                while got < EVENTS {
                                    sub.recv().await.expect("no lag at this capacity");
                                    got += 1;
                                }
                            })
                        })
                        .collect();
                    for ev in events {
                        bus.publish_arc(ev);
                    }
                    for h in handles {
                        h.await.unwrap();
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, bus_throughput);
criterion_main!(benches);
