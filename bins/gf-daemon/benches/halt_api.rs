//! `POST /api/v1/halt` over loopback while 100 clients poll `GET /api/v1/halt/status`:
//! the latency an operator sees when everything else is busy reading.
//!
//! Each reader polls every `GF_BENCH_READER_INTERVAL_MS` (default 100 ms: 1 000 reads/s
//! in all, far above 100 dashboards); `0` makes every reader a tight loop, which on a
//! 2-core machine measures CPU saturation by the in-process load generator rather than
//! the API.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gf_core::Config;
use gf_daemon::app::{Scenario, start};

fn halt_api(c: &mut Criterion) {
    // The daemon, the readers and the operator's client each get their own runtime, as
    // they would be separate processes; they still share the machine's cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    let running = rt
        .block_on(start(cfg, Scenario::Normal, Arc::new(gf_core::SystemClock)))
        .unwrap();
    let token = running.operator_token.clone().unwrap();
    let url = running.url();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let interval = std::env::var("GF_BENCH_READER_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(100);
    eprintln!("halt_api: 100 readers, one status read each every {interval} ms");
    for _ in 0..100 {
        let (client, url, token, stop) = (client.clone(), url.clone(), token.clone(), stop.clone());
        load_rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client
                    .get(format!("{url}/api/v1/halt/status"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                if interval > 0 {
                    tokio::time::sleep(Duration::from_millis(interval)).await;
                }
            }
        });
    }
    // Its own connection pool: hyper drives a connection on the runtime that opened it.
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("halt_api");
    group.sample_size(50);
    group.bench_function("post_halt_under_100_status_readers", |b| {
        b.iter_custom(|iters| {
            client_rt.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let start = Instant::now();
                    let resp = client
                        .post(format!("{url}/api/v1/halt"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({ "reason": format!("bench {i}") }))
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success());
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
    // Criterion reports the mean; the target is on the tail, so sample it directly too.
    let mut samples: Vec<Duration> = client_rt.block_on(async {
        let mut v = Vec::with_capacity(1000);
        for i in 0..1000 {
            let start = Instant::now();
            let resp = client
                .post(format!("{url}/api/v1/halt"))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "reason": format!("tail {i}") }))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            v.push(start.elapsed());
        }
        v
    });
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    eprintln!(
        "halt_api/post_halt_under_100_status_readers: p50 {:?}, p99 {:?}, max {:?} over {} requests",
        pct(50),
        pct(99),
        samples[samples.len() - 1],
        samples.len()
    );
    stop.store(true, Ordering::Relaxed);
    rt.block_on(running.stop());
}

criterion_group!(benches, halt_api);
criterion_main!(benches);
