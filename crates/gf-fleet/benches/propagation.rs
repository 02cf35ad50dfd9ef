//! Fleet halt propagation over loopback: five nodes — each a [`gf_fleet::Fleet`] with its
//! fleet task, a real halt coordinator with the fleet conditions and its run loop — on one
//! real `nats-server -js`. Each round a sixth member writes a fleet halt (compare-and-set)
//! and the round is timed from the write being issued to the last of the five gates
//! closed (each node's halt state leaving Running, which happens right after its gate
//! closed; every gate is checked closed). Then (untimed) an administrator clears it and
//! every node walks its checklist and resumes. Goal (issue 19): p99 ≤ 100 ms.
//!
//! A custom harness (criterion reports means; the goal is on the tail) printing
//! p50/p90/p99/max. `cargo bench -p gf-fleet --bench propagation`; `GF_BENCH_ROUNDS` sets
//! the rounds (default 100). Run without `--bench` (as `cargo test --benches` does) it
//! times 3 rounds, as a smoke test.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use gf_core::latency::nearest_rank as percentile;
use std::time::{Duration, Instant};

use common::{Node, admin, fleet_cfg, nats, until};
use gf_core::HaltState;
use gf_core::config::FleetConfig;

const NODES: usize = 5;

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "propagation/{what} nodes={NODES} n={}: p50 {} p90 {} p99 {} max {}",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 90.0)),
        ms(percentile(&samples, 99.0)),
        ms(samples.last().copied().unwrap_or_default()),
    );
}

async fn run(rounds: usize) {
    let server = nats();
    let url = server.url();
    let mut nodes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        // The daemon's defaults: heartbeats every second, partition after 10 s. The fleet
        // halt travels on the bucket watch, not with the heartbeat.
        let cfg = FleetConfig {
            heartbeat_ms: 1000,
            partition_halt_secs: 10,
            ..fleet_cfg(&url, "bench", &format!("n{i}"))
        };
        nodes.push(Node::start(cfg).await);
    }
    for n in &nodes {
        n.wait_state("running", |s| s == HaltState::Running).await;
        assert!(n.gate.is_open());
    }
    let ops = admin(&url, "bench", "ops").await;
    let mut closed = Vec::with_capacity(rounds);
    let mut acked = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Every node's watcher runs in its own task, subscribed before the write.
        let watchers: Vec<_> = nodes
            .iter()
            .map(|n| {
                let mut rx = n.halt.watch_state();
                tokio::spawn(async move {
                    rx.wait_for(|s| *s != HaltState::Running).await.unwrap();
                    Instant::now()
                })
            })
            .collect();
        let start = Instant::now();
        let (record, created) = ops
            .halt("operator:bench", &format!("round {round}"))
            .await
            .unwrap();
        let ack = start.elapsed();
        assert!(created, "round {round}: {record:?}");
        let mut last = start;
        for w in watchers {
            let at = tokio::time::timeout(common::DEADLINE, w)
                .await
                .expect("every node halts")
                .unwrap();
            last = last.max(at);
        }
        for n in &nodes {
            assert!(!n.gate.is_open(), "round {round}: a gate is still open");
        }
        closed.push(last - start);
        acked.push(ack);

        // Untimed: clear, then every node walks its own checklist.
        assert!(ops.clear("admin:bench").await.unwrap().cleared);
        for n in &nodes {
            let view = n.fleet.view().clone();
            until(&view, "cleared", || view.fleet_halted() == Some(false)).await;
            n.halted().await;
            n.walk_checklist_and_resume("bench").await;
        }
    }
    report("fleet_halt_written_to_last_gate_closed", closed);
    report("fleet_halt_write_acknowledged", acked);
    for n in nodes {
        n.stop().await;
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full {
        std::env::var("GF_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
    } else {
        3
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(rounds));
    if !full {
        println!("propagation: smoke run of {rounds} rounds (pass --bench to measure)");
    }
}
