//! The API's request decoding: bodies, queries and path parameters of the routes that take
//! them, through the daemon's own extractors and checks (`gf_daemon::api::fuzz`). Every
//! answer must be a 2xx or a 4xx with the API's JSON error shape; never a 5xx, never a
//! panic.
//!
//! Input: the first byte picks the route and the content type, the text up to the first
//! newline is the path suffix or query, the rest is the body. A first byte of 0xF0 or more
//! picks `POST /api/v1/orders` (a trader's order; the path text is not used).
#![no_main]

use std::sync::LazyLock;

use gf_daemon::api::fuzz::Harness;
use libfuzzer_sys::fuzz_target;

static HARNESS: LazyLock<Harness> = LazyLock::new(|| Harness::new().unwrap());

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (head, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let (method, uri) = match selector % 6 {
        _ if selector >= 0xF0 => ("POST", "/api/v1/orders".to_owned()),
        0 => ("POST", "/api/v1/halt".to_owned()),
        1 => (
            "POST",
            format!("/api/v1/recovery/checklist/{head}/complete"),
        ),
        2 => ("GET", format!("/api/v1/journal?{head}")),
        3 => ("GET", format!("/readyz?{head}")),
        4 => ("GET", format!("/ws/halt-status?{head}")),
        _ => ("POST", format!("/api/v1/{head}")),
    };
    let content_type: Option<&[u8]> = match (selector / 6) % 4 {
        0 => Some(b"application/json"),
        1 => None,
        2 => Some(b"application/json; charset=utf-8"),
        _ => Some(b"text/plain"),
    };
    let Some(answer) = HARNESS.send(method.as_bytes(), &uri, content_type, body) else {
        return;
    };
    assert!(
        (200..500).contains(&answer.status),
        "{method} {uri:?} answered {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status >= 400 {
        let v: serde_json::Value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", answer.body));
        assert!(v["error"]["code"].is_string(), "error without a code: {v}");
    }
});
