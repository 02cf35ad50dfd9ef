//! API tokens follow `tokens.json` while the daemon runs: a token created by another
//! process (what `gf-daemon token create` does) authenticates over HTTP without a
//! restart, a revoked one stops working, and a broken file keeps the tokens already loaded.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::{Config, SystemClock};
use gf_daemon::app::{Scenario, start};
use gf_daemon::auth::{Role, TokenStore, reload_shared};

/// The data directory at `<root>/data`, the journal key and witness at `<root>/keys`.
fn config(root: &Path) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = root.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&root.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg
}

async fn status_code(url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}/api/v1/halt/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls until `/api/v1/halt/status` answers `want` for `token`, for at most 10 s (the
/// watcher looks at the file every second).
async fn until_status(url: &str, token: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = status_code(url, token).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_created_and_revoked_while_running_take_effect_without_restart() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let running = start(config(root.path()), Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let url = running.url();
    let operator = running.operator_token.clone().unwrap();
    assert_eq!(status_code(&url, &operator).await, 200);

    // Another process's store on the same data directory, as the CLI opens it.
    let viewer = TokenStore::open(&dir)
        .unwrap()
        .create("vic", Role::Viewer, "2026-01-01T00:00:00Z")
        .unwrap();
    until_status(&url, &viewer, 200).await;

    assert_eq!(TokenStore::open(&dir).unwrap().revoke("vic").unwrap(), 1);
    until_status(&url, &viewer, 401).await;
    assert_eq!(status_code(&url, &operator).await, 200, "others stay valid");

    // A hand-broken file: the reload fails, the loaded tokens stay, nothing opens.
    std::fs::write(dir.join(gf_daemon::auth::FILE), "[{\"name\": ").unwrap();
    assert!(reload_shared(&running.daemon.tokens).is_err());
    assert_eq!(status_code(&url, &operator).await, 200);
    assert_eq!(status_code(&url, &viewer).await, 401);
    assert_eq!(status_code(&url, "gf_not_a_token").await, 401);

    running.stop().await;
}
