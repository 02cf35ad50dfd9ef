//! Parse + apply + verify the checksum of one Kraken v2 book update, at depth 10 and 100
//! (goal: at least 1 M updates/s on one core), plus the checksum alone; and the same over
//! a generated Kraken-like update stream at depth 10, 100, 500 and 1000 (goal: depth 10
//! at most 200 ns, deeper at most twice that), through the fast path with and without
//! events and through the general serde path.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gf_core::Level;
use gf_market::{Book, FeedProcessor};
use rust_decimal::Decimal;

fn lvl(ticks: i64, lots: i64) -> Level {
    Level {
        price: Decimal::new(ticks, 5),
        qty: Decimal::new(lots, 8),
    }
}

fn json_levels(levels: &[Level]) -> String {
    let parts: Vec<String> = levels
        .iter()
        .map(|l| format!(r#"{{"price":{},"qty":{}}}"#, l.price, l.qty))
        .collect();
    format!("[{}]", parts.join(","))
}

fn message(kind: &str, bids: &[Level], asks: &[Level], checksum: u32) -> String {
    format!(
        r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"XRP/USD","bids":{},"asks":{},"checksum":{checksum},"timestamp":"2026-03-02T14:00:01.123456Z"}}]}}"#,
        json_levels(bids),
        json_levels(asks)
    )
}

/// A snapshot at `depth` and a cycle of updates that returns the book to the snapshot's
/// state, each with its correct checksum: size changes near the top, and an insert that
/// pushes the worst level out followed by its removal bringing that level back in.
fn workload(depth: usize) -> (String, Vec<String>) {
    let bids: Vec<Level> = (0..depth as i64)
        .map(|i| lvl(218_400 - 3 * i, 150_000_000_000 + i * 7_919))
        .collect();
    let asks: Vec<Level> = (0..depth as i64)
        .map(|i| lvl(218_410 + 3 * i, 120_000_000_000 + i * 6_151))
        .collect();
    let mut book = Book::new(depth);
    book.apply_snapshot(&bids, &asks);
    let snapshot = message("snapshot", &bids, &asks, book.checksum());
    let mut updates = Vec::new();
    let mut push = |book: &mut Book, b: Vec<Level>, a: Vec<Level>| {
        book.apply_update(&b, &a);
        updates.push(message("update", &b, &a, book.checksum()));
    };
    for i in 0..8usize {
        let (b, a) = (bids[i % 5], asks[(i + 2) % 5]);
        push(&mut book, vec![lvl_q(b, 33_300_000_000)], vec![]);
        push(&mut book, vec![], vec![lvl_q(a, 9_900_000_000)]);
        push(&mut book, vec![b], vec![a]);
    }
    // Insert inside the spread-side of the bids: the worst bid is pushed out of scope.
    let worst = bids[depth - 1];
    let new = lvl(218_401, 5_000_000_000);
    push(&mut book, vec![new], vec![]);
    push(&mut book, vec![lvl_q(new, 0), worst], vec![]);
    (snapshot, updates)
}

fn lvl_q(l: Level, lots: i64) -> Level {
    Level {
        price: l.price,
        qty: Decimal::new(lots, 8),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("book_update");
    group.throughput(Throughput::Elements(1));
    for depth in [10usize, 100] {
        let (snapshot, updates) = workload(depth);
        let mut feed = FeedProcessor::new(depth, None);
        let mut out = Vec::with_capacity(4);
        feed.process(&snapshot, &mut out).unwrap();
        // Sanity: the whole cycle verifies, twice over.
        for u in updates.iter().chain(&updates) {
            out.clear();
            feed.process(u, &mut out).unwrap();
        }
        assert_eq!(feed.stats().mismatches(), 0);
        let mut i = 0;
        group.bench_function(format!("parse_apply_verify/depth_{depth}"), |b| {
            b.iter(|| {
                out.clear();
                let r = feed.process(black_box(&updates[i]), &mut out);
                i = (i + 1) % updates.len();
                black_box(r.is_ok())
            });
        });
        assert_eq!(feed.stats().mismatches(), 0);
        // The same cycle without events (as `market verify` and a book-only consumer run).
        group.bench_function(format!("parse_apply_verify_quiet/depth_{depth}"), |b| {
            b.iter(|| {
                let r = feed.process_without_events(black_box(&updates[i]));
                i = (i + 1) % updates.len();
                black_box(r.is_ok())
            });
        });
        assert_eq!(feed.stats().mismatches(), 0);
        group.bench_function(format!("parse_only/depth_{depth}"), |b| {
            b.iter(|| black_box(gf_market::message::parse(black_box(&updates[0])).is_ok()));
        });
        let book = feed.book(&"XRP/USD".parse().unwrap()).unwrap().clone();
        group.bench_function(format!("checksum/depth_{depth}"), |b| {
            b.iter(|| black_box(&book).checksum());
        });
        let mut scratch = book.clone();
        let toggle = [lvl(218_399, 1_000_000_000), lvl(218_399, 0)];
        let mut j = 0;
        group.bench_function(format!("apply_only/depth_{depth}"), |b| {
            b.iter(|| {
                scratch.apply_update(black_box(&toggle[j..=j]), &[]);
                j ^= 1;
            });
        });
    }
    group.finish();
}

/// Runs `iters` updates of the stream through `feed`, re-sending the snapshot when the
/// stream ends (once per 20,000 updates), and returns the time taken.
fn run_stream(
    feed: &mut FeedProcessor,
    stream: &gf_market::fixtures::BookStream,
    next: &mut usize,
    iters: u64,
    mut one: impl FnMut(&mut FeedProcessor, &str) -> bool,
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        if *next == stream.updates.len() {
            *next = 0;
            black_box(one(feed, &stream.snapshot));
        }
        black_box(one(feed, black_box(&stream.updates[*next])));
        *next += 1;
    }
    start.elapsed()
}

fn stream_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("book_stream");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for depth in [10usize, 100, 500, 1000] {
        let stream = gf_market::fixtures::book_stream(depth, 20_000, 0x5eed + depth as u64);
        for (name, fast, events) in [
            ("fast_without_events", true, false),
            ("fast_with_events", true, true),
            ("general", false, true),
        ] {
            let mut feed = stream.processor(fast);
            let mut out = Vec::with_capacity(4);
            let mut next = 0;
            group.bench_function(format!("{name}/depth_{depth}"), |b| {
                b.iter_custom(|iters| {
                    run_stream(&mut feed, &stream, &mut next, iters, |feed, line| {
                        if events {
                            out.clear();
                            feed.process(line, &mut out).is_ok()
                        } else {
                            feed.process_without_events(line).is_ok()
                        }
                    })
                });
            });
            let stats = feed.stats();
            assert_eq!(stats.mismatches(), 0, "{name} depth {depth}");
            assert_eq!(stats.malformed, 0, "{name} depth {depth}");
        }
    }
    group.finish();
}

criterion_group!(benches, bench, stream_bench);
criterion_main!(benches);
