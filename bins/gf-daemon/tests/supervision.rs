//! Supervision over real sockets: a strategy that panics inside the daemon's strategy task
//! halts the daemon (`auto:task_failed:strategy`), closes the gate, turns `/readyz` red and
//! refuses resume until a restart, while the other tasks keep running; a replay that is
//! not looped finishes without being taken for a failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::{Config, Event, Qty, SystemClock};
use gf_daemon::app::{Daemon, Scenario, build, spawn_tasks};
use gf_daemon::supervise::TaskState;
use gf_strategy::{Signal, Strategy};
use serde_json::Value;

/// A strategy with a bug: it panics on the first market event it is shown.
struct Panics;

impl Strategy for Panics {
    fn name(&self) -> &str {
        "panics"
    }
    fn on_market(&mut self, _event: &Event, _position: Qty) -> Option<Signal> {
        panic!("strategy bug: index out of bounds");
    }
}

/// A strategy that never trades.
struct Idle;

impl Strategy for Idle {
    fn name(&self) -> &str {
        "idle"
    }
    fn on_market(&mut self, _event: &Event, _position: Qty) -> Option<Signal> {
        None
    }
}

/// A paper config with the data directory at `<root>/data` and the journal key and
/// witness at `<root>/keys` (outside it, and never under the real `$HOME`).
fn config(root: &Path) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = root.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&root.join("keys"));
    cfg.market.replay_speed = 0.into();
    cfg
}

/// Serves the daemon's API on a free loopback port; returns its base URL.
async fn serve(d: &Daemon) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = gf_daemon::api::router(d.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

async fn get(url: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `f` until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tasks_check(readyz: &Value) -> Value {
    readyz["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "tasks"))
        .cloned()
        .unwrap_or_else(|| panic!("no tasks check in {readyz}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_strategy_halts_fails_readyz_and_blocks_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (d, token) = build(config(dir.path()), Arc::new(SystemClock)).unwrap();
    let token = token.expect("a fresh data dir gets a token");
    let url = serve(&d).await;
    let (_, verbose) = get(&format!("{url}/readyz?verbose"), &token).await;
    assert_eq!(tasks_check(&verbose)["status"], "healthy", "{verbose}");
    let tasks = spawn_tasks(&d, Scenario::Normal, Box::new(Panics));

    let status = eventually(Duration::from_secs(20), "the task_failed halt", || async {
        let (_, s) = get(&format!("{url}/api/v1/halt/status"), &token).await;
        (s["state"] != "running").then_some(s)
    })
    .await;
    assert!(
        status["state"] == "halting" || status["state"] == "halted",
        "{status}"
    );
    assert_eq!(
        status["halt"]["source"], "auto:task_failed:strategy",
        "{status}"
    );
    let reason = status["halt"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("task strategy panicked: strategy bug: index out of bounds"),
        "{reason}"
    );
    assert_eq!(status["gate_open"], false);
    assert!(!d.gate.is_open());

    let (code, ready) = get(&format!("{url}/readyz"), &token).await;
    assert_eq!(code, 503, "{ready}");
    let (code, verbose) = get(&format!("{url}/readyz?verbose"), &token).await;
    assert_eq!(code, 503);
    let check = tasks_check(&verbose);
    assert_eq!(check["status"], "unhealthy", "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("strategy panicked"),
        "{check}"
    );

    // Only the strategy died; the rest of the daemon still runs.
    assert!(matches!(
        d.tasks.state("strategy"),
        Some(TaskState::Failed(_))
    ));
    for name in ["risk", "halt", "monitor", "snapshots", "tokens", "replay"] {
        assert_eq!(d.tasks.state(name), Some(TaskState::Running), "{name}");
    }

    // Walking the whole checklist does not bring a daemon with a dead task back: resume
    // is refused on the `task_failed` condition until the daemon restarts.
    eventually(Duration::from_secs(20), "the halt to settle", || async {
        (d.halt.state() == gf_core::HaltState::Halted).then_some(())
    })
    .await;
    // What the halt task's periodic sweep does: the condition is breached from now on.
    d.halt.sweep().await;
    d.halt.begin_recovery("alice").await.unwrap();
    for item in d.halt.checklist().unwrap().missing() {
        d.halt
            .complete_item(&item, "alice", Some("checked"))
            .await
            .unwrap();
    }
    match d.halt.resume("alice").await {
        Err(gf_halt::Error::ResumeRefused(refusal)) => {
            assert!(refusal.missing_items.is_empty(), "{refusal:?}");
            assert_eq!(refusal.breached_conditions, ["task_failed"], "{refusal:?}");
        }
        other => panic!("resume with a dead task: {other:?}"),
    }
    assert!(!d.gate.is_open());

    d.shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(d.tasks.state("risk"), Some(TaskState::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_is_not_looped_finishes_without_a_halt() {
    let dir = tempfile::tempdir().unwrap();
    // The first lines of the bundled recording, as a replay file: replayed once.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/market/paper.jsonl");
    let head: Vec<String> = std::fs::read_to_string(fixture)
        .unwrap()
        .lines()
        .take(200)
        .map(str::to_owned)
        .collect();
    let replay = dir.path().join("short.jsonl");
    std::fs::write(&replay, head.join("\n") + "\n").unwrap();
    let mut cfg = config(dir.path());
    cfg.market.replay_file = Some(replay);
    let (d, token) = build(cfg, Arc::new(SystemClock)).unwrap();
    let token = token.unwrap();
    let url = serve(&d).await;
    let _tasks = spawn_tasks(&d, Scenario::Normal, Box::new(Idle));

    eventually(Duration::from_secs(20), "the replay to finish", || async {
        (d.tasks.state("replay") == Some(TaskState::Finished)).then_some(())
    })
    .await;
    assert_eq!(d.halt.state(), gf_core::HaltState::Running);
    assert!(d.gate.is_open());
    assert!(d.tasks.failures().is_empty(), "{:?}", d.tasks);
    let (_, verbose) = get(&format!("{url}/readyz?verbose"), &token).await;
    assert_eq!(tasks_check(&verbose)["status"], "healthy", "{verbose}");
    d.shutdown.cancel();
}
