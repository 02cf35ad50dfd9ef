//! The coordinator builder: its defaults and the options it applies before the first event.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{FakeExchange, View, fast_cfg, pair};
use gf_core::{Clock, HaltSource, HaltState, KindSet, ManualClock, Payload, TradingGate};
use gf_halt::coordinator::kinds;
use gf_halt::{ConditionSet, HaltCoordinator, Journal};

fn journal(clock: &ManualClock) -> Arc<Journal> {
    Arc::new(Journal::in_memory(Arc::new(clock.clone())).expect("an in-memory journal"))
}

#[tokio::test(start_paused = true)]
async fn builder_defaults_to_the_journals_clock_and_a_bus_of_its_own() {
    let clock = ManualClock::at_ymd_hms(2026, 3, 1, 12, 0, 0);
    let gate = TradingGate::new_closed();
    let halt = HaltCoordinator::builder(&fast_cfg(), journal(&clock), gate.clone())
        .exchange(FakeExchange::new())
        .portfolio(View::new())
        .open()
        .unwrap();
    assert!(gate.is_open(), "a fresh journal restores Running");
    let mut sub = halt.bus().subscribe(KindSet::critical());
    clock.advance(chrono::Duration::hours(3));

    let outcome = halt.halt(HaltSource::Cli, "builder defaults").await;
    assert!(outcome.started);
    assert!(!gate.is_open());
    let changed = std::iter::from_fn(|| sub.try_recv().ok())
        .find(|e| matches!(e.payload, Payload::HaltStateChanged { .. }))
        .expect("the state change is published on the coordinator's own bus");
    assert_eq!(changed.ts, clock.now(), "stamped by the journal's clock");
    let records = halt.journal().records(100).unwrap();
    let triggered = records
        .iter()
        .find(|r| r.kind == kinds::HALT_TRIGGERED)
        .expect("the trigger is journaled");
    assert_eq!(triggered.ts, Some(clock.now()));
}

#[tokio::test(start_paused = true)]
async fn watched_pairs_go_stale_from_the_moment_the_coordinator_opens() {
    let clock = ManualClock::at_ymd_hms(2026, 3, 1, 12, 0, 0);
    let watched = HaltCoordinator::builder(&fast_cfg(), journal(&clock), TradingGate::new_closed())
        .exchange(FakeExchange::new())
        .portfolio(View::new())
        .watch_pairs(&[pair("DOGE/USD")])
        .open()
        .unwrap();
    let unwatched =
        HaltCoordinator::builder(&fast_cfg(), journal(&clock), TradingGate::new_closed())
            .exchange(FakeExchange::new())
            .portfolio(View::new())
            .open()
            .unwrap();
    let silenced =
        HaltCoordinator::builder(&fast_cfg(), journal(&clock), TradingGate::new_closed())
            .exchange(FakeExchange::new())
            .portfolio(View::new())
            .conditions(ConditionSet::empty())
            .watch_pairs(&[pair("DOGE/USD")])
            .open()
            .unwrap();
    assert!(silenced.conditions().is_empty());

    // DOGE never delivers a price: past the staleness threshold only the coordinator that
    // watches it (with the configured conditions) halts.
    clock.advance(chrono::Duration::minutes(10));
    let outcomes = watched.sweep().await;
    assert!(outcomes.iter().any(|o| o.started), "{outcomes:?}");
    assert_eq!(
        watched.status().halt.unwrap().source,
        HaltSource::Auto("market_data_staleness".into())
    );
    assert!(unwatched.sweep().await.is_empty());
    assert!(silenced.sweep().await.is_empty());
    assert_eq!(unwatched.state(), HaltState::Running);
    assert_eq!(silenced.state(), HaltState::Running);
}
