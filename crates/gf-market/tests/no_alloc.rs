//! The hot path allocates nothing: after warm-up, a steady stream of book updates goes
//! through [`FeedProcessor::process_without_events`] and through
//! [`FeedProcessor::process`], events and all, with zero heap allocations per message
//! (a counting global allocator for this whole test process). The events own their
//! data without allocating: the pair's symbol is shared, and a side's changed levels
//! are held inline up to [`gf_core::INLINE_LEVELS`]; only a side with more than that
//! allocates, and the test counts exactly those.

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
    for depth in [10, 100] {
        let (mut feed, updates) = warmed_up(depth);
        let mut out = Vec::with_capacity(4);
        let region = Region::new(GLOBAL);
        let (mut spilled, mut levels) = (0, 0);
        for line in &updates {
            out.clear();
            let ingest = feed.process(line, &mut out).unwrap();
            let gf_core::Payload::BookUpdate(u) = &out[0] else {
                panic!("{out:?}")
            };
            assert_eq!(ingest.touched.as_slice(), std::slice::from_ref(&u.pair));
            // A side beyond the inline capacity is the one allocation allowed.
            for side in [&u.bids, &u.asks] {
                spilled += usize::from(side.len() > gf_core::INLINE_LEVELS);
                levels += side.len();
            }
        }
        let change = region.change();
        println!(
            "depth {depth}: process: {} allocations over {MEASURED} updates carrying \
             {levels} levels ({spilled} sides beyond {} levels)",
            change.allocations,
            gf_core::INLINE_LEVELS
        );
        assert_eq!(
            (change.allocations, change.reallocations),
            (spilled, 0),
            "depth {depth}: {change:?}"
        );
        // The stream is not all one-level updates: the inline capacity is exercised.
        assert!(levels > MEASURED, "{levels}");
    }
}
