//! The Python client's example (`clients/python/examples/trade_paper.py`) against a real
//! paper daemon over loopback: it trades through the gateway as a `trader`, an operator
//! halts, and the example must see the halt on its order feed, find its resting order
//! cancelled by the halt, print `HALT_SEEN <id> <reason>` and exit 0.
//!
//! The client's own unit tests (`clients/python/tests`) run here too. Both use the Python
//! of the test peers' venv (`target/test-peers/venv`, where `cargo xtask test` installs
//! `websockets`), or `GF_PYTHON`. Without one the tests fail and say how to get it: CI must
//! never skip the Python client silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gf_core::config::StrategyKind;
use gf_core::{Config, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use gf_daemon::auth::Role;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

/// The halt reason the operator gives.
const REASON: &str = "python example test";

/// The workspace root (this file is in `bins/gf-daemon/tests`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the workspace root")
        .to_path_buf()
}

/// The Python with `websockets`: `GF_PYTHON`, else the test peers' venv. Panics (the test
/// fails) when there is none, saying how to install it.
fn python() -> PathBuf {
    let python = std::env::var_os("GF_PYTHON").map_or_else(
        || workspace().join("target/test-peers/venv/bin/python3"),
        PathBuf::from,
    );
    let hint = "run `cargo xtask test` (it installs the Python test peers, websockets among \
                them, into target/test-peers/venv), or point GF_PYTHON at a python3 that has \
                websockets";
    assert!(
        python.exists(),
        "the Python test peer {} is missing: {hint}",
        python.display()
    );
    let probe = std::process::Command::new(&python)
        .args(["-c", "import websockets"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", python.display()));
    assert!(
        probe.status.success(),
        "{} has no websockets module ({}): {hint}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
            .lines()
            .last()
            .unwrap_or_default()
    );
    python
}

/// A paper daemon on the bundled normal scenario, without an internal strategy: the
/// example's orders are the only ones.
async fn daemon(dir: &Path) -> Running {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.strategy.kind = Some(StrategyKind::None);
    start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap()
}

/// The example's output so far, for failure messages.
fn transcript(lines: &[String], stderr: &str) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{stderr}",
        lines.join("\n")
    )
}

#[test]
fn the_python_clients_unit_tests_pass() {
    let python = python();
    let root = workspace();
    let out = std::process::Command::new(&python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("clients/python/tests"))
        .env("PYTHONPATH", root.join("clients/python"))
        // No __pycache__ left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    // unittest reports on stderr.
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    let ran = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(ran.is_some_and(|n| n > 0), "no test ran: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_trades_the_paper_daemon_and_sees_the_halt_cancel_its_resting_order() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let running = daemon(dir.path()).await;
    let url = running.url();
    let trader = running.create_token("py-strategy", Role::Trader).unwrap();
    let operator = running.create_token("olga", Role::Operator).unwrap();
    let token_file = dir.path().join("trader.token");
    std::fs::write(&token_file, format!("{trader}\n")).unwrap();

    let root = workspace();
    let mut child = tokio::process::Command::new(&python)
        .arg("-u")
        .arg(root.join("clients/python/examples/trade_paper.py"))
        .args(["--url", &url, "--timeout", "90", "--drop-feed-once"])
        .arg("--token-file")
        .arg(&token_file)
        .env("PYTHONPATH", root.join("clients/python"))
        // No __pycache__ left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("GF_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text).await;
        text
    });

    // Until it has placed both orders: `READY <resting order's id>`.
    let mut lines: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let resting = loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => {
                let ready = line.strip_prefix("READY ").map(str::to_owned);
                lines.push(line);
                if let Some(id) = ready {
                    break id;
                }
            }
            Ok(None) => {
                let status = child.wait().await.unwrap();
                let stderr = stderr_task.await.unwrap();
                panic!(
                    "the example ended ({status}) before placing its orders\n{}",
                    transcript(&lines, &stderr)
                );
            }
            Err(_) => {
                let _ = child.start_kill();
                let stderr = stderr_task.await.unwrap();
                panic!(
                    "the example placed no resting order within 60 s\n{}",
                    transcript(&lines, &stderr)
                );
            }
        }
    };

    // The resting order is open at the daemon, under the trader's name.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let order: Value = http
        .get(format!("{url}/api/v1/orders/{resting}"))
        .bearer_auth(&trader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["order"]["status"], "open", "{order}");
    assert_eq!(order["order"]["trader"], "py-strategy", "{order}");

    // The operator halts.
    let reply = http
        .post(format!("{url}/api/v1/halt"))
        .bearer_auth(&operator)
        .json(&serde_json::json!({ "reason": REASON }))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "halt: {}", reply.status());
    let reply: gf_api::HaltReply = reply.json().await.unwrap();
    let halt_id = reply.outcome.halt_id;
    assert!(reply.outcome.started, "{reply:?}");

    // The example sees it and exits on its own.
    let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = child.start_kill();
            while let Ok(line) = rx.try_recv() {
                lines.push(line);
            }
            let stderr = stderr_task.await.unwrap();
            panic!(
                "the example did not exit within 60 s of halt {halt_id}\n{}",
                transcript(&lines, &stderr)
            );
        }
    };
    // stdout is closed once the process is gone: every line is in the channel.
    while let Some(line) = rx.recv().await {
        lines.push(line);
    }
    let stderr = stderr_task.await.unwrap();
    let text = transcript(&lines, &stderr);
    assert!(status.success(), "the example exited {status}\n{text}");

    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("HALT_SEEN {halt_id} {REASON}").as_str()),
        "{text}"
    );
    assert!(
        lines.contains(&format!("RESTING_CANCELLED {resting}")),
        "{text}"
    );

    // Every frame it printed is one JSON line. The feed lost its connection once (the
    // drill) and resumed from the last sequence number: every number from the first
    // came exactly once, in order, the halt's among them.
    assert!(
        lines.iter().any(|l| l.starts_with("RECONNECTED since=")),
        "{text}"
    );
    let frames: Vec<Value> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{text}")))
        .collect();
    let seqs: Vec<u64> = frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{text}");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "halt" && f["halt"]["id"] == halt_id),
        "{text}"
    );
    // The resting order's last update is its cancellation, and the market buy filled.
    let resting_updates: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "order" && f["order"]["client_order_id"] == resting.as_str())
        .collect();
    assert_eq!(
        resting_updates.last().map(|f| &f["order"]["status"]),
        Some(&Value::from("cancelled")),
        "{text}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "fill" && f["fill"]["trader"] == "py-strategy"),
        "the market buy's fill: {text}"
    );

    // The daemon agrees: the resting order is cancelled, and a new order is refused with
    // the halt's id.
    let order: Value = http
        .get(format!("{url}/api/v1/orders/{resting}"))
        .bearer_auth(&trader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["order"]["status"], "cancelled", "{order}");
    let market = lines
        .iter()
        .find_map(|l| l.strip_prefix("PLACED mkt-"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|id| format!("mkt-{id}"))
        .unwrap_or_else(|| panic!("no market order placed\n{text}"));
    let order: Value = http
        .get(format!("{url}/api/v1/orders/{market}"))
        .bearer_auth(&trader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["order"]["status"], "filled", "{order}");
    assert_eq!(order["order"]["filled_qty"], "10", "{order}");
    let refused = http
        .post(format!("{url}/api/v1/orders"))
        .bearer_auth(&trader)
        .json(&serde_json::json!({
            "client_order_id": "after-halt", "pair": "XRP/USD", "side": "buy",
            "type": "market", "qty": "10"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "halted", "{refused}");
    assert_eq!(refused["error"]["detail"]["halt_id"], halt_id, "{refused}");

    running.stop().await;
}
