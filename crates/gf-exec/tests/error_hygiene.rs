//! Exchange error text is cut and stripped of anything header-like before it is logged or
//! put into an error: an endpoint that echoes the request (headers included) must not put
//! the API key or a signature into the daemon's log.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::{Source, SystemClock};
use gf_exec::events::Publisher;
use gf_exec::sign::FixedCredentials;
use gf_exec::wire::{MAX_EXCHANGE_TEXT, sanitize_exchange_text};
use gf_exec::{Exchange, KrakenClient, KrakenConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const API_KEY: &str = "EchoMeKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const SECRET: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

#[test]
fn header_lines_secrets_and_length_are_stripped() {
    let body = "Bad gateway\r\nAPI-Key: abcdef\r\nAPI-Sign: xyz==\r\nContent-Type: text/plain\r\nEGeneral:Internal error: try again";
    let out = sanitize_exchange_text(body);
    assert_eq!(out, "Bad gateway EGeneral:Internal error: try again");

    // A JSON echo on one line: cut at the first sensitive name.
    let out =
        sanitize_exchange_text(r#"{"error":["EAPI:Bad"],"echo":{"headers":{"api-key":"K"}}}"#);
    assert!(
        out.starts_with(r#"{"error":["EAPI:Bad"],"echo":{"headers":{""#),
        "{out}"
    );
    assert!(
        out.ends_with("[redacted]") && !out.contains("\"K\""),
        "{out}"
    );
    let out = sanitize_exchange_text("token=Bearer abc authorization xyz");
    assert_eq!(out, "token=Bearer abc [redacted]");

    // Long base64 runs (keys, signatures, tokens) go wherever they are.
    let out = sanitize_exchange_text(&format!("denied for {SECRET} today"));
    assert_eq!(out, "denied for [redacted] today");
    // Kraken's own error strings pass unchanged.
    for kraken in [
        "EOrder:Insufficient funds",
        "EGeneral:Invalid arguments:cl_ord_id",
        "EAPI:Invalid nonce",
    ] {
        assert_eq!(sanitize_exchange_text(kraken), kraken);
    }
    let long = "x ".repeat(500);
    let out = sanitize_exchange_text(&long);
    assert_eq!(out.chars().count(), MAX_EXCHANGE_TEXT + 1);
    assert!(out.ends_with('…'));
    assert_eq!(sanitize_exchange_text("a\u{7}b\tc"), "a b c");
}

/// Answers every request with `status` and the request's own text (headers included).
async fn echo_server(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0_u8; 16 * 1024];
                let mut got = 0;
                // Read until the end of the headers and the form body (small).
                while got < buf.len() {
                    match sock.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                    let text = String::from_utf8_lossy(&buf[..got]);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                let echoed = String::from_utf8_lossy(&buf[..got]).into_owned();
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{echoed}",
                    echoed.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_endpoint_echoing_the_request_never_puts_the_key_into_the_error() {
    for status in ["502 Bad Gateway", "200 OK", "429 Too Many Requests"] {
        let url = echo_server(status).await;
        let mut cfg = KrakenConfig::new(url);
        cfg.timeout = Duration::from_secs(2);
        cfg.max_retries = 0;
        let client = KrakenClient::new(
            cfg,
            Arc::new(FixedCredentials::from_base64(API_KEY, SECRET).unwrap()),
            Publisher::new(None, Arc::new(SystemClock), Source::Exec),
        )
        .unwrap();
        let err = client.check().await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(API_KEY), "{status}: {text}");
        assert!(!text.contains("EchoMeKey"), "{status}: {text}");
        assert!(
            !text.to_ascii_lowercase().contains("api-sign: "),
            "{status}: {text}"
        );
        assert!(text.contains("POST /0/private/Balance"), "{status}: {text}");
        assert!(text.len() < 3 * MAX_EXCHANGE_TEXT, "{status}: {text}");
    }
}
