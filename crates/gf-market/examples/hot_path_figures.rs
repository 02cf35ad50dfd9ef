//! Figures for the market-data hot path on a busy machine: each figure is the fastest of
//! many short batches (a batch that was never preempted), so other load on the machine
//! inflates it far less than a mean does. Criterion (`cargo bench -p gf-market --bench
//! book_apply -- book_stream`) measures the same paths with statistics.
//!
//! `cargo run --release -p gf-market --features fixtures --example hot_path_figures
//! [-- --write FILE | --profile | --once | --once-events]`: ns per book update at depth 10, 100, 500 and 1000 through the fast
//! path (without and with events) and the general serde path; then messages per second
//! verifying a 100,000-message depth-10 recording in memory (`--write FILE` also writes
//! that recording, e.g. for timing `gf-daemon market verify FILE`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use gf_market::fixtures::{BookStream, book_stream};

const BATCH: usize = 1_000;
const BATCHES: usize = 400;

/// The fastest batch's time per message.
fn min_batch(stream: &BookStream, fast: bool, events: bool) -> f64 {
    let mut feed = stream.processor(fast);
    let mut out = Vec::with_capacity(4);
    let mut next = 0;
    let mut best = Duration::MAX;
    for _ in 0..BATCHES {
        if next + BATCH > stream.updates.len() {
            next = 0;
            feed.process(&stream.snapshot, &mut out).unwrap();
        }
        let batch = &stream.updates[next..next + BATCH];
        next += BATCH;
        let start = Instant::now();
        for line in batch {
            if events {
                out.clear();
                black_box(feed.process(black_box(line), &mut out).is_ok());
            } else {
                black_box(feed.process_without_events(black_box(line)).is_ok());
            }
        }
        best = best.min(start.elapsed());
    }
    assert_eq!(feed.stats().mismatches(), 0);
    best.as_secs_f64() * 1e9 / BATCH as f64
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--profile") {
        // For `perf record`: the depth-10 quiet path alone, for a while.
        let stream = book_stream(10, 20_000, 0x5eed + 10);
        for _ in 0..40 {
            min_batch(&stream, true, false);
        }
        return;
    }
    let once = std::env::args().nth(1);
    if matches!(once.as_deref(), Some("--once" | "--once-events")) {
        // For instruction counts (`valgrind --tool=callgrind
        // --toggle-collect='*FeedProcessor*process*'`): each depth-10 update once,
        // without or with events.
        let stream = book_stream(10, 20_000, 0x5eed + 10);
        let mut feed = stream.processor(true);
        let mut out = Vec::with_capacity(4);
        for line in &stream.updates {
            if once.as_deref() == Some("--once") {
                black_box(feed.process_without_events(black_box(line)).is_ok());
            } else {
                out.clear();
                black_box(feed.process(black_box(line), &mut out).is_ok());
            }
        }
        assert_eq!(feed.stats().mismatches(), 0);
        return;
    }
    println!("ns per update (fastest batch of {BATCH}, {BATCHES} batches)");
    println!(
        "{:>6} {:>14} {:>14} {:>10}",
        "depth", "fast, quiet", "fast, events", "general"
    );
    for depth in [10usize, 100, 500, 1000] {
        let stream = book_stream(depth, 20_000, 0x5eed + depth as u64);
        println!(
            "{depth:>6} {:>14.0} {:>14.0} {:>10.0}",
            min_batch(&stream, true, false),
            min_batch(&stream, true, true),
            min_batch(&stream, false, true),
        );
    }
    let recording = book_stream(10, 100_000 - 3, 0x5eed).recording();
    let messages = recording.lines().count();
    let mut best = Duration::MAX;
    for _ in 0..10 {
        let start = Instant::now();
        let report = gf_market::verify::verify_bytes(recording.as_bytes());
        best = best.min(start.elapsed());
        assert!(report.passed());
    }
    println!(
        "verify (in memory): {messages} messages in {:.1} ms = {:.2} M messages/s",
        best.as_secs_f64() * 1e3,
        messages as f64 / best.as_secs_f64() / 1e6
    );
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--write")
        && let Some(path) = args.next()
    {
        std::fs::write(&path, &recording).unwrap();
        println!("wrote {path}");
    }
}
