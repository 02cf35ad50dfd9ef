//! The HTTP client shared by the Vault and AWS providers: rustls, bounded timeouts,
//! bounded answer size, and provider error bodies reduced to short messages.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Default bound on one request, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read, bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A client with `timeout` per request.
///
/// # Errors
/// [`Error::Transport`] when the TLS backend cannot start.
pub fn client(provider: &'static str, timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Transport {
            provider,
            operation: "build http client".into(),
            reason: e.to_string(),
        })
}

/// Sends `req`, returning the status and the body (in a zeroizing buffer; the transport's
/// own buffers are outside our control). Every await here is bounded by the client's
/// timeout.
pub(crate) async fn send(
    provider: &'static str,
    operation: &str,
    req: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, Zeroizing<Vec<u8>>)> {
    let transport = |e: reqwest::Error| Error::Transport {
        provider,
        operation: operation.to_owned(),
        reason: describe(&e),
    };
    let mut resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Error::Provider {
                provider,
                operation: operation.to_owned(),
                status: status.as_u16().to_string(),
                message: format!("answer larger than {MAX_BODY_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A provider's error text, made safe to show: printable, one line, at most 300 chars.
pub(crate) fn short(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one_line.trim().to_owned()
}
