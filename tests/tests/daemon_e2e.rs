//! End to end through real sockets: a paper daemon replaying the crash scenario halts on
//! its own, flattens, reports it over HTTP and WebSocket, refuses to resume until the
//! checklist is walked, then resumes. Plus auth and bad-input behaviour of the API.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use gf_core::{Config, ManualClock};
use gf_daemon::app::{Scenario, start};
use gf_daemon::auth::Role;
use gf_e2e::{Http, eventually, ws_until};
use serde_json::{Value, json};

fn config(dir: &std::path::Path, speed: i64) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    // The journal key and witness must live outside the data directory (and the tests
    // never write under the real $HOME).
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.market.replay_speed = speed.into();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_scenario_halts_flattens_and_resumes_after_the_checklist() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 20);
    // The recording ends after the crash, and the test later moves the clock a day ahead
    // so the daily drawdown clears; staleness would (rightly) stay breached then. It has
    // its own tests in gf-halt and gf-market.
    cfg.halt.conditions.insert(
        "market_data_staleness".into(),
        gf_core::config::ConditionConfig {
            enabled: Some(false),
            behaviour: None,
        },
    );
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, 0).unwrap());
    let running = start(cfg, Scenario::Crash, Arc::new(clock.clone()))
        .await
        .unwrap();
    let token = running
        .operator_token
        .clone()
        .expect("fresh data dir gets a token");
    let http = Http::new(&running.url());

    // Watch the halt WebSocket from the start.
    let ws_url = format!("ws://{}/ws/halt-status?token={token}", running.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let first = ws_until(&mut ws, Duration::from_secs(5), |_| true)
        .await
        .unwrap();
    assert_eq!(first["status"]["state"], "running");

    // The crash trips the daily drawdown: halted, gate closed, positions flattened.
    let status = eventually(Duration::from_secs(60), "the automatic halt", || async {
        let s = http.get("/api/v1/halt/status", Some(&token)).await?;
        Ok((s.body["state"] == "halted").then_some(s.body))
    })
    .await
    .unwrap();
    assert_eq!(status["gate_open"], false);
    let source = status["halt"]["source"].as_str().unwrap();
    assert!(source.starts_with("auto:"), "{source}");
    assert_eq!(status["halt"]["closure"]["flat"], true, "{status}");
    let positions = http.get("/api/v1/positions", Some(&token)).await.unwrap();
    assert_eq!(positions.body["positions"], json!([]), "{}", positions.body);
    assert!(
        positions.body["realised_pnl"]
            .as_str()
            .unwrap()
            .starts_with('-'),
        "the crash cost money: {}",
        positions.body
    );
    let exchange_positions = running.daemon.exchange.open_positions().await.unwrap();
    assert!(
        exchange_positions.iter().all(|p| p.qty.is_zero()),
        "paper exchange still holds {exchange_positions:?}"
    );

    // The WebSocket reported it.
    let halted = ws_until(&mut ws, Duration::from_secs(10), |v| {
        v["status"]["state"] == "halted"
    })
    .await
    .unwrap();
    assert!(
        halted["status"]["halt"]["reason"]
            .as_str()
            .unwrap()
            .contains('%')
    );

    // Resume is refused with the missing items listed.
    let refused = http
        .post("/api/v1/resume", Some(&token), &json!({}))
        .await
        .unwrap();
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "resume_refused");
    let missing = refused.body["error"]["detail"]["missing_items"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        missing.iter().any(|m| m == "confirm_resume"),
        "{}",
        refused.body
    );

    // Walk the checklist over HTTP (confirm_resume last).
    let checklist = http
        .get("/api/v1/recovery/checklist", Some(&token))
        .await
        .unwrap();
    let items: Vec<String> = checklist.body["checklist"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .filter(|id| id != "confirm_resume")
        .chain(["confirm_resume".to_owned()])
        .collect();
    assert!(items.len() >= 7, "{items:?}");
    for item in &items {
        let done = http
            .post(
                &format!("/api/v1/recovery/checklist/{item}/complete"),
                Some(&token),
                &json!({ "note": "checked in e2e" }),
            )
            .await
            .unwrap();
        assert_eq!(done.status, 200, "{item}: {}", done.body);
        assert_eq!(done.body["item"]["completed_by"], "operator");
    }

    // If a condition is still breached now (the daily drawdown can be, depending on the
    // closing prices), resume is refused naming it; a new UTC day clears the daily one.
    let conditions = http.get("/api/v1/conditions", Some(&token)).await.unwrap();
    let breached: Vec<String> = conditions.body["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["triggered"] == true)
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    if !breached.is_empty() {
        let still = http
            .post("/api/v1/resume", Some(&token), &json!({}))
            .await
            .unwrap();
        assert_eq!(still.status, 409, "{}", still.body);
        for id in &breached {
            assert!(
                still.body.to_string().contains(id.as_str()),
                "{}",
                still.body
            );
        }
    }
    clock.advance(chrono::Duration::days(1));
    let resumed = http
        .post("/api/v1/resume", Some(&token), &json!({}))
        .await
        .unwrap();
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.body["status"]["state"], "running");
    assert!(running.daemon.gate.is_open());
    ws_until(&mut ws, Duration::from_secs(10), |v| {
        v["status"]["state"] == "running"
    })
    .await
    .unwrap();

    // Everything above is in the journal, and it verifies.
    let journal = running.daemon.halt.journal().clone();
    journal.verify().unwrap();
    let records = http
        .get("/api/v1/journal?limit=500", Some(&token))
        .await
        .unwrap();
    let text = records.body.to_string();
    for expected in ["checklist", "operator", "max_daily_drawdown"] {
        assert!(text.contains(expected), "journal lacks {expected}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_auth_roles_and_bad_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.api.max_body_bytes = 1024;
    let running = start(cfg, Scenario::Normal, Arc::new(gf_core::SystemClock))
        .await
        .unwrap();
    let operator = running.operator_token.clone().unwrap();
    let viewer = running.create_token("vic", Role::Viewer).unwrap();
    let http = Http::new(&running.url());

    let none = http.get("/api/v1/halt/status", None).await.unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(none.body["error"]["code"], "unauthorized");
    let wrong = http
        .get("/api/v1/halt/status", Some("gf_not_a_token"))
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    let read = http
        .get("/api/v1/halt/status", Some(&viewer))
        .await
        .unwrap();
    assert_eq!(read.status, 200);
    assert_eq!(read.body["state"], "running");

    let forbidden = http
        .post("/api/v1/halt", Some(&viewer), &json!({"reason": "x"}))
        .await
        .unwrap();
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.body["error"]["code"], "forbidden");
    assert_eq!(running.daemon.halt.state(), gf_core::HaltState::Running);

    // Bad bodies: 4xx JSON errors with a stable code, never a crash.
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "application/json",
            b"{not json".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "application/json",
            br#"{"reason": 5}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "application/json",
            br#"{"reason": "x", "extra": 1}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "application/json",
            br#"{"reason": "   "}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "application/json",
            br#"{"reason": "a\u001bb"}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "text/plain",
            br#"{"reason": "x"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "application/json",
            format!(r#"{{"reason": "{}"}}"#, "a".repeat(20_000)).into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    for (ct, body, want, code) in cases {
        let a = http
            .post_raw("/api/v1/halt", Some(&operator), ct, body)
            .await
            .unwrap();
        assert_eq!(a.status, want, "{}", a.body);
        assert_eq!(a.body["error"]["code"], code, "{}", a.body);
    }
    let bad_item = http
        .post_raw(
            "/api/v1/recovery/checklist/x/complete",
            Some(&operator),
            "application/json",
            b"[".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(bad_item.status, 400);
    assert_eq!(bad_item.body["error"]["code"], "invalid_json");
    let unknown_route = http.get("/api/v1/nope", Some(&operator)).await.unwrap();
    assert_eq!(unknown_route.status, 404);
    assert_eq!(unknown_route.body["error"]["code"], "not_found");
    assert_eq!(
        running.daemon.halt.state(),
        gf_core::HaltState::Running,
        "no bad body halted"
    );

    // The operator halts; 202 with the outcome; the journal names the operator.
    let halted = http
        .post(
            "/api/v1/halt",
            Some(&operator),
            &json!({"reason": "e2e manual halt"}),
        )
        .await
        .unwrap();
    assert_eq!(halted.status, 202, "{}", halted.body);
    assert_eq!(halted.body["status"]["halt"]["source"], "api:operator");
    // A second trigger is recorded on the same halt, not lost: 200.
    let again = http
        .post(
            "/api/v1/halt",
            Some(&operator),
            &json!({"reason": "again", "source": "console"}),
        )
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["outcome"]["started"], false);

    // Rotation is an admin action, and paper mode has nothing to rotate.
    let admin = running.create_token("root", Role::Admin).unwrap();
    let op_rotate = http
        .post("/api/v1/secrets/rotate", Some(&operator), &json!({}))
        .await
        .unwrap();
    assert_eq!(op_rotate.status, 403);
    let paper_rotate = http
        .post("/api/v1/secrets/rotate", Some(&admin), &json!({}))
        .await
        .unwrap();
    assert_eq!(paper_rotate.status, 409, "{}", paper_rotate.body);
    assert_eq!(paper_rotate.body["error"]["code"], "no_credentials");

    // Unauthenticated endpoints; /metrics and /readyz?verbose need a viewer token.
    assert_eq!(http.get("/livez", None).await.unwrap().status, 200);
    assert_eq!(http.get("/metrics", None).await.unwrap().status, 401);
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", running.url()))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("gf_halt_state"));
    let spec = http.get("/api/v1/openapi.json", None).await.unwrap();
    assert_eq!(spec.body["openapi"], "3.1.0");
    assert!(spec.body["paths"]["/api/v1/halt"]["post"].is_object());
    assert_eq!(http.get("/readyz?verbose", None).await.unwrap().status, 401);
    let ready = http.get("/readyz?verbose", Some(&viewer)).await.unwrap();
    assert!(
        ready.body["checks"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{}",
        ready.body
    );
    let _: &Value = &ready.body;
    running.stop().await;
}
