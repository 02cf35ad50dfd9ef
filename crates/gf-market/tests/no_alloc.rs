//! The hot path allocates nothing: after warm-up, a steady stream of depth-10 book
//! updates goes through [`FeedProcessor::process_without_events`] with zero heap
//! allocations per message (a counting global allocator for this whole test process).
//! [`FeedProcessor::process`] allocates only for the events it hands out (the pair's
//! name and the changed levels in owned `gf_core` events, and the `Ingest` list); that
//! figure is pinned too, so a regression shows.

#![allow(clippy::unwrap_used)]

use std::alloc::System;

use gf_market::FeedProcessor;
use gf_market::fixtures::book_stream;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARM_UP: usize = 2_000;
const MEASURED: usize = 10_000;

fn warmed_up(depth: usize) -> (FeedProcessor, Vec<String>) {
    let stream = book_stream(depth, WARM_UP + MEASURED, 42);
    let mut feed = stream.processor(true);
    for line in &stream.updates[..WARM_UP] {
        feed.process_without_events(line).unwrap();
    }
    (feed, stream.updates[WARM_UP..].to_vec())
}

/// One test function: the allocator counts the whole process, so nothing may run beside.
#[test]
fn hot_path_allocations() {
    steady_state_updates_allocate_nothing();
    process_allocates_only_for_the_events_it_returns();
}

fn steady_state_updates_allocate_nothing() {
    for depth in [10, 100] {
        let (mut feed, updates) = warmed_up(depth);
        let region = Region::new(GLOBAL);
        for line in &updates {
            feed.process_without_events(line).unwrap();
        }
        let change = region.change();
        let stats = feed.stats();
        assert_eq!(stats.mismatches(), 0);
        assert_eq!(stats.updates_verified(), (WARM_UP + MEASURED) as u64);
        println!(
            "depth {depth}: {} allocations, {} reallocations over {MEASURED} updates",
            change.allocations, change.reallocations
        );
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "depth {depth}: {change:?}"
        );
    }
}

fn process_allocates_only_for_the_events_it_returns() {
    let (mut feed, updates) = warmed_up(10);
    let mut out = Vec::with_capacity(4);
    let region = Region::new(GLOBAL);
    let mut expected = 0;
    for line in &updates {
        out.clear();
        let ingest = feed.process(line, &mut out).unwrap();
        let gf_core::Payload::BookUpdate(u) = &out[0] else {
            panic!("{out:?}")
        };
        // The event's pair name and non-empty level lists, the Ingest list and its pair.
        expected += 1 + usize::from(!u.bids.is_empty()) + usize::from(!u.asks.is_empty()) + 2;
        drop(ingest);
    }
    let change = region.change();
    println!(
        "process: {} allocations over {MEASURED} updates ({:.2} per update)",
        change.allocations,
        change.allocations as f64 / MEASURED as f64
    );
    assert_eq!(change.allocations, expected);
}
