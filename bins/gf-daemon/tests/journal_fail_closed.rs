//! The daemon and its journal, through real HTTP on 127.0.0.1: a journal that cannot be
//! written halts the daemon, a halt it cannot journal is answered 503 (never 2xx) and
//! `/readyz` fails, and the restart comes back halted; one daemon per data directory; the
//! journal key never inside the data directory; a tampered timestamp still lists.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::config::JournalConfig;
use gf_core::{Config, SystemClock};
use gf_daemon::app::{Scenario, build, start};
use serde_json::{Value, json};

/// `<root>/data` is the data directory; the key and witness live in `<root>/keys`.
fn config(root: &Path) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = root.join("data");
    cfg.journal = JournalConfig::under(&root.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.market.replay_speed = 10.into();
    cfg
}

/// Caps the journal at its current size and fills it, so the next write fails with
/// `SQLITE_FULL` as on a full disk.
fn fill_to_the_brim(journal: &gf_halt::Journal) {
    let pages = journal.set_max_pages(1).unwrap();
    assert!(pages > 1, "capped at the current size, {pages} pages");
    for size in [4000, 1000, 300, 100, 30, 1] {
        let mut written = 0;
        while journal
            .append("filler", "test", &serde_json::json!("x".repeat(size)))
            .is_ok()
        {
            written += 1;
            assert!(written < 100, "the page cap is not enforced");
        }
    }
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let resp = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn eventually_halted(client: &reqwest::Client, base: &str, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, s) = get(client, &format!("{base}/api/v1/halt/status"), token).await;
        if s["state"] == "halted" {
            return s;
        }
        assert!(Instant::now() < deadline, "never halted: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_halts_answers_503_on_halt_fails_readyz_and_restarts_halted() {
    let root = tempfile::tempdir().unwrap();
    let running = start(config(root.path()), Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let token = running.operator_token.clone().unwrap();
    let base = running.url();
    let client = reqwest::Client::new();

    let (code, metrics) = get(&client, &format!("{base}/metrics"), &token).await;
    assert_eq!(code, 200);
    let head = running.daemon.halt.journal().head_id();
    let exported: i64 = metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("gf_journal_head_id "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the journal head is exported");
    // The head only grows, and the metric follows it: at least the genesis record, at
    // most the head read after the scrape.
    assert!(
        (1..=head).contains(&exported),
        "exported head {exported}, journal head {head}"
    );

    let journal = running.daemon.halt.journal().clone();
    tokio::task::spawn_blocking(move || fill_to_the_brim(&journal))
        .await
        .unwrap();
    assert!(
        !running.daemon.gate.is_open(),
        "closed at the first failed write"
    );

    let resp = client
        .post(format!("{base}/api/v1/halt"))
        .bearer_auth(&token)
        .json(&json!({ "reason": "operator halt on a full disk" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        503,
        "never 2xx for a halt it could not journal"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "halt_not_durable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gate is closed") && message.contains("not durable"),
        "{message}"
    );
    assert_eq!(
        body["error"]["detail"]["outcome"]["durable"], false,
        "{body}"
    );

    let status = eventually_halted(&client, &base, &token).await;
    assert_eq!(status["gate_open"], false);
    // The self-halt acts as configured (close_positions): cancel-all went to the exchange.
    assert_eq!(status["halt"]["behaviour"], "close_positions", "{status}");
    let cancel = &status["halt"]["closure"]["cancel"];
    assert!(
        cancel["attempts"].as_u64().is_some_and(|n| n >= 1) && cancel["cancelled"].is_u64(),
        "{status}"
    );
    assert_eq!(
        status["halt"]["source"], "auto:journal_unwritable",
        "{status}"
    );
    assert!(
        status["journal_problem"]
            .as_str()
            .unwrap()
            .contains("database or disk is full"),
        "{status}"
    );
    let (ready, _) = get(&client, &format!("{base}/readyz"), &token).await;
    assert_eq!(
        ready, 503,
        "/readyz fails while the journal cannot be written"
    );
    running.stop().await;

    let again = start(config(root.path()), Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let (_, status) = get(
        &client,
        &format!("{}/api/v1/halt/status", again.url()),
        &token,
    )
    .await;
    assert_eq!(status["state"], "halted", "the restart remembers: {status}");
    assert_eq!(status["gate_open"], false);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_data_dir_is_refused_naming_the_holder() {
    let root = tempfile::tempdir().unwrap();
    let (first, _) = build(config(root.path()), Arc::new(SystemClock)).unwrap();
    let err = build(config(root.path()), Arc::new(SystemClock)).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("in use by another gf-daemon")
            && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    drop(first);
    let (second, _) = build(config(root.path()), Arc::new(SystemClock)).unwrap();
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_key_inside_the_data_dir_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(root.path());
    cfg.journal.key_file = Some(root.path().join("data/keys/journal.key"));
    let text = format!("{:#}", build(cfg, Arc::new(SystemClock)).unwrap_err());
    assert!(
        text.contains("journal.key_file") && text.contains("inside the data directory"),
        "{text}"
    );
    assert!(!root.path().join("data/keys/journal.key").exists());
    let mut cfg = config(root.path());
    cfg.journal.witness_dir = Some(root.path().join("data/witness"));
    let text = format!("{:#}", build(cfg, Arc::new(SystemClock)).unwrap_err());
    assert!(text.contains("journal.witness_dir"), "{text}");
}

/// A tampered timestamp does not break the journal listing: `GET /api/v1/journal` answers
/// 200, the record with `ts` null and the stored text in `ts_malformed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_timestamp_still_lists_on_get_journal() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path());
    let db = cfg.general.data_dir.join("gal-friday.sqlite");
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let token = running.operator_token.clone().unwrap();
    let base = running.url();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/api/v1/halt"))
        .bearer_auth(&token)
        .json(&json!({ "reason": "more than one record" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    // Beside the daemon, as someone with write access to the data directory could.
    let key = gf_halt::JournalKey::random();
    let conn = gf_halt::Journal::open(&db, Arc::new(SystemClock), key)
        .unwrap()
        .into_connection();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS journal_no_update;
         UPDATE journal SET ts = 'yesterday' WHERE id = 1;",
    )
    .unwrap();

    let url = format!("{base}/api/v1/journal?limit=1000");
    let (code, body) = get(&client, &url, &token).await;
    assert_eq!(code, 200, "{body}");
    let records = body["records"].as_array().unwrap();
    let first = records.iter().find(|r| r["id"] == 1).expect("record 1");
    assert_eq!(first["ts"], Value::Null, "{first}");
    assert_eq!(first["ts_malformed"], "yesterday", "{first}");
    assert!(
        records.iter().any(|r| r["id"] != 1 && r["ts"].is_string()),
        "the other records keep their timestamps: {body}"
    );
    running.stop().await;
}
