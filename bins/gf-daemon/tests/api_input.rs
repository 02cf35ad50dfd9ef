//! What the API takes in, over real HTTP on 127.0.0.1: control characters in free text are
//! refused naming the field; every malformed request answers JSON with a stable code and
//! the right status; lengths count characters; an unauthenticated request is answered
//! before its body arrives.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::{Config, HaltState, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Answer {
    status: u16,
    content_type: String,
    allow: String,
    body: Value,
}

async fn send(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = client.request(method, url).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, allow) = (header("content-type"), header("allow"));
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    Answer {
        status,
        content_type,
        allow,
        body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(format!("NOT JSON: {}", String::from_utf8_lossy(&bytes)))
        }),
    }
}

async fn post_json(url: &str, token: &str, body: &Value) -> Answer {
    send(
        reqwest::Method::POST,
        url,
        Some(token),
        Some("application/json"),
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

async fn daemon() -> (tempfile::TempDir, Running, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let token = running.operator_token.clone().unwrap();
    (dir, running, token)
}

/// Asserts a JSON error with `status` and `code`.
fn assert_error(a: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{what}: {}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        a.body
    );
    assert!(
        a.content_type.starts_with("application/json"),
        "{what}: content type {:?}",
        a.content_type
    );
}

const CONTROLS: [&str; 9] = [
    "\u{1b}[31m",
    "\r",
    "\n",
    "\u{7}",
    "\u{0}",
    "\t",
    "\u{7f}",
    "\u{9b}",
    "\u{85}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_naming_the_field() {
    let (_dir, running, token) = daemon().await;
    let url = running.url();

    for c in CONTROLS {
        let a = post_json(
            &format!("{url}/api/v1/halt"),
            &token,
            &json!({ "reason": format!("drill{c}state: running") }),
        )
        .await;
        assert_error(&a, 400, "invalid_field", &format!("reason with {c:?}"));
        assert_eq!(a.body["error"]["detail"]["field"], "reason");
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("reason contains the control character U+"),
            "{message}"
        );
        assert!(
            !message.chars().any(char::is_control),
            "the message itself is clean: {message:?}"
        );
    }
    let a = post_json(
        &format!("{url}/api/v1/halt"),
        &token,
        &json!({ "reason": "fine", "source": "api\u{1b}[2K" }),
    )
    .await;
    assert_error(&a, 400, "invalid_field", "source");
    assert_eq!(a.body["error"]["detail"]["field"], "source");
    assert_eq!(
        running.daemon.halt.state(),
        HaltState::Running,
        "no refused reason halted"
    );

    let halted = post_json(
        &format!("{url}/api/v1/halt"),
        &token,
        &json!({ "reason": "drill" }),
    )
    .await;
    assert_eq!(halted.status, 202, "{}", halted.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.daemon.halt.state() != HaltState::Halted {
        assert!(Instant::now() < deadline, "never halted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for c in CONTROLS {
        let a = post_json(
            &format!("{url}/api/v1/recovery/checklist/review_halt_reason/complete"),
            &token,
            &json!({ "note": format!("looked{c}at it") }),
        )
        .await;
        assert_error(&a, 400, "invalid_field", &format!("note with {c:?}"));
        assert_eq!(a.body["error"]["detail"]["field"], "note");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("note contains"),
            "{}",
            a.body
        );
    }
    let done = post_json(
        &format!("{url}/api/v1/recovery/checklist/review_halt_reason/complete"),
        &token,
        &json!({ "note": "looked at it — fine" }),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["item"]["note"], "looked at it — fine");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_answers_json_with_a_stable_code() {
    let (_dir, running, token) = daemon().await;
    let url = running.url();
    let halt = format!("{url}/api/v1/halt");
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let json_ct = Some("application/json");

    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "syntax",
            send(
                post.clone(),
                &halt,
                Some(&token),
                json_ct,
                b"{not json".to_vec(),
            )
            .await,
            400,
            "invalid_json",
        ),
        (
            "type error",
            send(
                post.clone(),
                &halt,
                Some(&token),
                json_ct,
                br#"{"reason": 5}"#.to_vec(),
            )
            .await,
            400,
            "invalid_body",
        ),
        (
            "unknown field",
            send(
                post.clone(),
                &halt,
                Some(&token),
                json_ct,
                br#"{"reason": "x", "extra": 1}"#.to_vec(),
            )
            .await,
            400,
            "invalid_body",
        ),
        (
            "missing field",
            send(post.clone(), &halt, Some(&token), json_ct, b"{}".to_vec()).await,
            400,
            "invalid_body",
        ),
        (
            "blank reason",
            send(
                post.clone(),
                &halt,
                Some(&token),
                json_ct,
                br#"{"reason": "  "}"#.to_vec(),
            )
            .await,
            400,
            "invalid_field",
        ),
        (
            "content type",
            send(
                post.clone(),
                &halt,
                Some(&token),
                Some("text/plain"),
                br#"{"reason": "x"}"#.to_vec(),
            )
            .await,
            415,
            "unsupported_media_type",
        ),
        (
            "too large",
            send(
                post.clone(),
                &halt,
                Some(&token),
                json_ct,
                format!(r#"{{"reason": "{}"}}"#, "a".repeat(20_000)).into_bytes(),
            )
            .await,
            413,
            "payload_too_large",
        ),
        (
            "bad query",
            send(
                get.clone(),
                &format!("{url}/api/v1/journal?limit=abc"),
                Some(&token),
                None,
                Vec::new(),
            )
            .await,
            400,
            "invalid_query",
        ),
        (
            "bad path",
            send(
                post.clone(),
                &format!("{url}/api/v1/recovery/checklist/%FF%FE/complete"),
                Some(&token),
                json_ct,
                b"{}".to_vec(),
            )
            .await,
            400,
            "invalid_path",
        ),
        (
            "note syntax",
            send(
                post.clone(),
                &format!("{url}/api/v1/recovery/checklist/x/complete"),
                Some(&token),
                json_ct,
                b"[".to_vec(),
            )
            .await,
            400,
            "invalid_json",
        ),
        (
            "note type",
            send(
                post.clone(),
                &format!("{url}/api/v1/recovery/checklist/x/complete"),
                Some(&token),
                json_ct,
                br#"{"note": 5}"#.to_vec(),
            )
            .await,
            400,
            "invalid_body",
        ),
        (
            "unknown route",
            send(
                get.clone(),
                &format!("{url}/api/v1/nope"),
                Some(&token),
                None,
                Vec::new(),
            )
            .await,
            404,
            "not_found",
        ),
        (
            "websocket without a token",
            send(
                get.clone(),
                &format!("{url}/ws/halt-status"),
                None,
                None,
                Vec::new(),
            )
            .await,
            401,
            "unauthorized",
        ),
        (
            "websocket without a handshake",
            send(
                get.clone(),
                &format!("{url}/ws/halt-status"),
                Some(&token),
                None,
                Vec::new(),
            )
            .await,
            400,
            "invalid_upgrade",
        ),
    ];
    for (what, answer, status, code) in &cases {
        assert_error(answer, *status, code, what);
    }
    let type_error = &cases[1].1;
    assert!(
        type_error.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reason"),
        "the message names the field: {}",
        type_error.body
    );

    let wrong_method = send(get.clone(), &halt, Some(&token), None, Vec::new()).await;
    assert_error(&wrong_method, 405, "method_not_allowed", "GET /api/v1/halt");
    assert!(
        wrong_method.allow.contains("POST"),
        "{:?}",
        wrong_method.allow
    );
    assert_eq!(running.daemon.halt.state(), HaltState::Running);

    // The reason limit counts characters: 500 three-byte characters pass, 501 do not.
    let long = send(
        post.clone(),
        &halt,
        Some(&token),
        json_ct,
        serde_json::to_vec(&json!({ "reason": "€".repeat(501) })).unwrap(),
    )
    .await;
    assert_error(&long, 400, "invalid_field", "501 characters");
    assert_eq!(
        long.body["error"]["message"],
        "reason must be at most 500 characters (got 501)"
    );
    let at_limit = send(
        post.clone(),
        &halt,
        Some(&token),
        json_ct,
        serde_json::to_vec(&json!({ "reason": "€".repeat(500) })).unwrap(),
    )
    .await;
    assert_eq!(at_limit.status, 202, "{}", at_limit.body);
    assert_eq!(
        at_limit.body["status"]["halt"]["reason"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        500
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_request_is_answered_before_its_body_arrives() {
    let (_dir, running, _token) = daemon().await;
    let mut s = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    s.write_all(
        b"POST /api/v1/halt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 10000\r\n\r\n{\"rea",
    )
    .await
    .unwrap();
    // The body never comes; the answer must not wait for it.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            s.read(&mut buf),
        )
        .await
        .expect("an answer before the body (and before the header timeout)")
        .unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains("}}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains(r#""code":"unauthorized""#), "{text}");
    assert_eq!(running.daemon.halt.state(), HaltState::Running);
    running.stop().await;
}
