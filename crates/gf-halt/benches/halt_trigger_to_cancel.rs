//! Trigger (a breaching market event in) → gate closed and cancel-all issued to a fake
//! exchange. Goal: p99 ≤ 50 µs with the in-memory journal, ≤ 100 µs with the SQLite file
//! journal (whose single-transaction, HMAC-chained write of the halt runs alongside).
//! Prints p50/p99/max after the run, and the same for trigger → durable (the trigger's
//! outcome returned, i.e. its journal transaction committed). `data_dir_journal` is the
//! daemon's own journal: bound to a locked data directory, with the witness written
//! outside it after every commit.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;
use rust_decimal::Decimal;

use common::{Env, FakeExchange, View, pair, test_key};
use gf_core::config::HaltConfig;
use gf_core::{Clock, Event, HaltBehaviour, HaltState, ManualClock, Payload, Side, Source};
use gf_halt::{DataDir, Journal};

/// Where the journal lives.
#[derive(Clone, Copy)]
enum Store {
    /// SQLite in memory.
    Memory,
    /// A SQLite file bound to no data directory.
    File,
    /// The daemon's journal: a locked data directory and a witness outside it.
    DataDir,
}

fn breaching_trade(env: &Env) -> Event {
    Event::new(
        env.now(),
        Source::Market,
        Payload::Trade {
            pair: pair("XRP/USD"),
            side: Side::Sell,
            price: Decimal::new(5, 1),
            qty: Decimal::ONE,
            trade_id: 1,
        },
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn bench(c: &mut Criterion) {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = HaltConfig {
        behaviour: HaltBehaviour::CancelOnly,
        ..HaltConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let durable: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut group = c.benchmark_group("halt_trigger_to_cancel");
    group.sample_size(20);
    for (name, store, rt) in [
        ("memory_journal", Store::Memory, &current),
        ("file_journal", Store::File, &current),
        ("data_dir_journal", Store::DataDir, &current),
        ("memory_journal_multi_thread", Store::Memory, &multi),
    ] {
        samples.lock().clear();
        durable.lock().clear();
        let counter = std::sync::atomic::AtomicU64::new(0);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let view = View::new();
                    *view.total_dd.lock() = Decimal::new(16, 0);
                    let clock = ManualClock::default();
                    let root = dir.path().join(format!("run-{n}"));
                    let journal = match store {
                        Store::Memory => Journal::open(
                            Path::new(":memory:"),
                            Arc::new(clock.clone()),
                            test_key(),
                        ),
                        Store::File => {
                            std::fs::create_dir_all(&root).unwrap();
                            Journal::open(
                                &root.join("bench.sqlite"),
                                Arc::new(clock.clone()),
                                test_key(),
                            )
                        }
                        Store::DataDir => Journal::open_data_dir(
                            DataDir::open(&root.join("data"), clock.now()).unwrap(),
                            Arc::new(clock.clone()),
                            test_key(),
                            &root.join("witness"),
                        ),
                    }
                    .unwrap();
                    let env = Env::open_journal(
                        &cfg,
                        Arc::new(journal),
                        FakeExchange::new(),
                        view,
                        clock,
                    );
                    let event = breaching_trade(&env);
                    // In the daemon the evaluation path is hot (it runs on every market
                    // event); warm it with one quiet evaluation so a fresh coordinator's
                    // first-touch page faults are not counted.
                    *env.view.total_dd.lock() = Decimal::ONE;
                    let _ = env.coordinator.evaluate(&event);
                    *env.view.total_dd.lock() = Decimal::new(16, 0);
                    let coordinator = env.coordinator.clone();
                    let exchange = env.exchange.clone();
                    let gate = env.gate.clone();
                    // Measured inside a task, as in the daemon (where the bus loop is one).
                    let (took, durable_after) = rt.block_on(async move {
                        tokio::spawn(async move {
                            let start = Instant::now();
                            let outcome = coordinator.on_event(&event).await;
                            let durable_after = start.elapsed();
                            assert!(outcome.is_some_and(|o| o.started && o.durable));
                            assert!(!gate.is_open());
                            loop {
                                let seen = *exchange.first_cancel_at.lock();
                                if let Some(at) = seen {
                                    break (at.saturating_duration_since(start), durable_after);
                                }
                                let notified = exchange.cancel_seen.notified();
                                if exchange.first_cancel_at.lock().is_none() {
                                    notified.await;
                                }
                            }
                        })
                        .await
                        .unwrap()
                    });
                    rt.block_on(async {
                        let mut rx = env.coordinator.watch_state();
                        rx.wait_for(|s| *s == HaltState::Halted).await.unwrap();
                    });
                    drop(env);
                    let _ = std::fs::remove_dir_all(&root);
                    samples.lock().push(took);
                    durable.lock().push(durable_after);
                    total += took;
                }
                total
            });
        });
        let mut all = samples.lock().clone();
        if all.is_empty() {
            continue;
        }
        all.sort();
        println!(
            "halt_trigger_to_cancel/{name}: n={} p50={:?} p99={:?} max={:?}",
            all.len(),
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            all.last().copied().unwrap_or_default()
        );
        let mut all = durable.lock().clone();
        all.sort();
        println!(
            "halt_trigger_to_durable/{name}: n={} p50={:?} p99={:?} max={:?}",
            all.len(),
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            all.last().copied().unwrap_or_default()
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
