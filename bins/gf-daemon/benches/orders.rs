//! `POST /api/v1/orders` latency over loopback to a paper daemon, with 1 and 16 concurrent
//! clients: a custom harness (not criterion — criterion reports means, and the goal of
//! issue 18 is on the tail), printing p50/p90/p99/max of every request it timed.
//!
//! The daemon runs in this process on its own runtime (two workers), the clients on
//! another (one worker), each client on its own keep-alive connection; they share the
//! machine's cores, as a strategy on the same host would. Every order is a resting buy
//! far below the market (the price collar is widened for it), so nothing fills and the
//! portfolio does not move; the gateway's and the risk checks' limits are raised so that
//! every order is accepted, and the orders are cancelled between rounds (untimed).
//!
//! Last, it times the journal write every order waits for (one SQLite transaction with
//! `fsync`), alone, to show how much of an order's latency is the disk.
//!
//! `cargo bench -p gf-daemon --bench orders`. `GF_BENCH_ORDERS` sets the orders timed per
//! concurrency (default 4000), `GF_BENCH_SECS` the most time spent on each (default 25 s:
//! on a slow disk fewer orders are timed; the report says how many). Run without `--bench` (as `cargo test --benches` does) it
//! times a few orders only, as a smoke test.

#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

use gf_core::latency::nearest_rank as percentile;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::Config;
use gf_core::config::StrategyKind;
use gf_daemon::app::{Scenario, start};
use gf_daemon::auth::Role;
use rust_decimal::Decimal;

/// Orders kept open at most before the round ends and they are cancelled.
const ROUND: usize = 1000;

/// One timed request: the client's time and the daemon's `Server-Timing` figure.
#[derive(Debug, Clone, Copy)]
struct Sample {
    client: Duration,
    server: Option<Duration>,
}

fn order(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "client_order_id": id,
        "pair": "XRP/USD",
        "side": "buy",
        "type": "limit",
        "qty": "1",
        // XRP/USD trades near 2.18 in the bundled recording: this never fills.
        "limit_price": "1.0",
        "time_in_force": "gtc",
        "post_only": true,
    }))
    .unwrap()
}

/// Places one order and times it. Panics unless it was accepted: a refusal would time
/// another path than the one measured.
async fn place(client: &reqwest::Client, url: &str, token: &str, id: &str) -> Sample {
    let body = order(id);
    let start = Instant::now();
    let resp = client
        .post(format!("{url}/api/v1/orders"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let server = resp
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("gateway;dur="))
        .and_then(|ms| ms.parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1e3));
    let text = resp.text().await.unwrap();
    let client_time = start.elapsed();
    assert_eq!(status.as_u16(), 201, "{id}: {text}");
    Sample {
        client: client_time,
        server,
    }
}

async fn cancel_all(client: &reqwest::Client, url: &str, token: &str) {
    let resp = client
        .delete(format!("{url}/api/v1/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "cancel all: {status} {text}");
    let reply: gf_api::CancelReply = serde_json::from_str(&text).unwrap();
    assert!(reply.failed.is_empty(), "cancel all: {text}");
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn report(clients: usize, samples: &[Sample], wall: Duration) {
    let mut client: Vec<Duration> = samples.iter().map(|s| s.client).collect();
    client.sort();
    let mut server: Vec<Duration> = samples.iter().filter_map(|s| s.server).collect();
    server.sort();
    #[allow(clippy::cast_precision_loss)]
    let rate = samples.len() as f64 / wall.as_secs_f64();
    println!(
        "orders/post_resting_limit clients={clients:>2} n={}: p50 {} p90 {} p99 {} max {} | server (Server-Timing) p50 {} p99 {} max {} | {rate:.0} orders/s",
        client.len(),
        ms(percentile(&client, 50.0)),
        ms(percentile(&client, 90.0)),
        ms(percentile(&client, 99.0)),
        ms(client.last().copied().unwrap_or_default()),
        ms(percentile(&server, 50.0)),
        ms(percentile(&server, 99.0)),
        ms(server.last().copied().unwrap_or_default()),
    );
}

/// Times `total` orders sent by `clients` concurrent clients, in rounds of [`ROUND`]
/// open orders cancelled (untimed) in between; stops early once `budget` has passed.
fn run(
    rt: &tokio::runtime::Runtime,
    url: &str,
    token: &str,
    clients: usize,
    total: usize,
    budget: Duration,
    tag: &str,
) -> (Vec<Sample>, Duration) {
    let deadline = Instant::now() + budget;
    let conns: Vec<reqwest::Client> = (0..clients)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
        })
        .collect();
    let mut samples = Vec::with_capacity(total);
    let mut wall = Duration::ZERO;
    let mut sent = 0;
    let mut round = 0;
    while sent < total && Instant::now() < deadline {
        let this_round = (total - sent).min(ROUND);
        let per_client = this_round.div_ceil(clients);
        let started = Instant::now();
        let handles: Vec<_> = conns
            .iter()
            .enumerate()
            .map(|(c, conn)| {
                let (conn, url, token) = (conn.clone(), url.to_owned(), token.to_owned());
                let tag = format!("{tag}-r{round}-c{c}");
                rt.spawn(async move {
                    let mut v = Vec::with_capacity(per_client);
                    for i in 0..per_client {
                        if Instant::now() >= deadline {
                            break;
                        }
                        v.push(place(&conn, &url, &token, &format!("{tag}-{i}")).await);
                    }
                    v
                })
            })
            .collect();
        for h in handles {
            samples.extend(rt.block_on(h).unwrap());
        }
        wall += started.elapsed();
        sent += per_client * clients;
        round += 1;
        rt.block_on(cancel_all(&conns[0], url, token));
    }
    (samples, wall)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let total: usize = if full {
        std::env::var("GF_BENCH_ORDERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4000)
    } else {
        32
    };
    let daemon_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    // Only the benchmark's orders, all accepted: limits far above what it sends.
    cfg.strategy.kind = Some(StrategyKind::None);
    cfg.gateway.orders_per_second = 1_000_000;
    cfg.gateway.order_burst = 1_000_000;
    cfg.gateway.max_open_orders = 1_000_000;
    cfg.risk.max_orders_per_window = 1_000_000;
    cfg.risk.max_open_orders = 1_000_000;
    // Resting far below the market: the collar must let it through.
    cfg.risk.price_collar_pct = Decimal::from(90);
    let running = daemon_rt
        .block_on(start(cfg, Scenario::Normal, Arc::new(gf_core::SystemClock)))
        .unwrap();
    let url = running.url();
    let token = running.create_token("bench", Role::Trader).unwrap();

    // Wait for the paper book to have prices (poll with a deadline), then warm up.
    let probe = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let resp = client_rt.block_on(
            probe
                .post(format!("{url}/api/v1/orders"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(order(&format!("probe-{attempt}")))
                .send(),
        );
        if resp.is_ok_and(|r| r.status().as_u16() == 201) {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon accepts no order");
        std::thread::sleep(Duration::from_millis(50));
    }
    let warm = if full { 300 } else { 8 };
    let budget = Duration::from_secs(
        std::env::var("GF_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(25),
    );
    run(&client_rt, &url, &token, 1, warm, budget, "warm1");
    run(&client_rt, &url, &token, 16, warm, budget, "warm16");

    println!(
        "orders: {total} resting limit orders per concurrency, keep-alive HTTP/1.1 on 127.0.0.1, paper exchange{}",
        if full {
            ""
        } else {
            " (smoke run: pass --bench to measure)"
        }
    );
    for clients in [1, 16] {
        let (samples, wall) = run(
            &client_rt,
            &url,
            &token,
            clients,
            total,
            budget,
            &format!("c{clients}"),
        );
        report(clients, &samples, wall);
    }
    // What one order costs at least: the journal record written before it may reach the
    // exchange (one SQLite transaction, fsync'd), timed alone.
    let halt = running.daemon.halt.clone();
    let mut journal: Vec<Duration> = daemon_rt.block_on(async {
        let mut v = Vec::with_capacity(total / 4);
        let deadline = Instant::now() + budget;
        for i in 0..(total / 4).max(8) {
            if Instant::now() >= deadline {
                break;
            }
            let start = Instant::now();
            halt.record("bench_probe", "bench", serde_json::json!({ "i": i }))
                .await
                .unwrap();
            v.push(start.elapsed());
        }
        v
    });
    journal.sort();
    println!(
        "orders/journal_record_alone n={}: p50 {} p90 {} p99 {} max {}",
        journal.len(),
        ms(percentile(&journal, 50.0)),
        ms(percentile(&journal, 90.0)),
        ms(percentile(&journal, 99.0)),
        ms(journal.last().copied().unwrap_or_default()),
    );
    daemon_rt.block_on(running.stop());
}
