//! Nonces reach the wire in order: many concurrent private calls against a mock Kraken
//! without a nonce window (every nonce must exceed the last one seen, as on a key with no
//! window configured) are all accepted.

use std::sync::Arc;
use std::time::Duration;

use gf_core::{Source, SystemClock};
use gf_exec::events::Publisher;
use gf_exec::ratelimit::Limits;
use gf_exec::sim::{MockConfig, MockKraken};
use gf_exec::{Exchange, KrakenClient, KrakenConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_private_calls_reach_a_strict_kraken_in_nonce_order() {
    let server = MockKraken::start(MockConfig {
        nonce_window: 0,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = KrakenConfig::new(server.url());
    cfg.timeout = Duration::from_secs(30);
    cfg.max_retries = 0;
    cfg.nonce_file = Some(dir.path().join("kraken.nonce"));
    cfg.rest_limits = Limits {
        max: 10_000,
        decay_milli_per_sec: 10_000_000,
        priority_reserve: 10,
    };
    let client = Arc::new(
        KrakenClient::new(
            cfg,
            Arc::new(server.credentials()),
            Publisher::new(None, Arc::new(SystemClock), Source::Exec),
        )
        .unwrap(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let client = client.clone();
        tasks.spawn(async move {
            match i % 3 {
                0 => client.balances().await.map(|_| ()),
                1 => client.open_orders().await.map(|_| ()),
                _ => client.cancel_all_after(60).await.map(|_| ()),
            }
        });
    }
    let mut failed = Vec::new();
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res.unwrap() {
            failed.push(e.to_string());
        }
    }
    let requests = server.requests();
    let refused = requests
        .iter()
        .filter(|r| r.outcome == "EAPI:Invalid nonce")
        .count();
    assert_eq!(refused, 0, "out-of-order nonces on the wire: {failed:?}");
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(requests.len(), 300);
    let mut nonces: Vec<u64> = requests.iter().map(|r| r.nonce.unwrap()).collect();
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(nonces.len(), 300);
    // Millisecond nonces that follow the clock: none ahead of it by more than the burst.
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap();
    assert!(
        *nonces.last().unwrap() <= now_ms + 300,
        "nonces ran ahead of the clock"
    );
    let mark: u64 = std::fs::read_to_string(dir.path().join("kraken.nonce"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        mark,
        *nonces.last().unwrap(),
        "the mark is the last nonce, no reserve"
    );
}
