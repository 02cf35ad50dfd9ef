//! Helpers shared by the end-to-end tests in `tests/tests/`: paths, an HTTP client that
//! keeps status codes, a WebSocket reader, and ([`live`]) the mocks and config of the
//! live-mode tests.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub mod live;

/// The workspace root (where `fixtures/` lives).
#[must_use]
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A path under `fixtures/`.
#[must_use]
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("fixtures").join(rel)
}

/// An HTTP answer: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
}

/// A minimal API client that keeps status codes, for asserting on errors.
#[derive(Debug, Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    /// A client for `base` (`http://127.0.0.1:port`).
    #[must_use]
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client builds"),
        }
    }

    async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// `GET path` with an optional bearer token.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Answer> {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::send(req).await
    }

    /// `POST path` with a raw body and content type.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::send(req).await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        self.post_raw(path, token, "application/json", serde_json::to_vec(body)?)
            .await
    }
}

/// Reads text frames from a WebSocket until `pred` accepts one (or `timeout`).
///
/// # Errors
/// Timeout, a closed socket or a frame that is not JSON.
pub async fn ws_until<S>(
    ws: &mut S,
    timeout: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> anyhow::Result<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(timeout, async {
        while let Some(msg) = ws.next().await {
            if let Message::Text(text) = msg? {
                let v: Value = serde_json::from_str(&text)?;
                if pred(&v) {
                    return Ok(v);
                }
            }
        }
        anyhow::bail!("websocket closed")
    })
    .await
    .map_err(|_| anyhow::anyhow!("no matching websocket frame within {timeout:?}"))?
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout`.
///
/// # Errors
/// Timeout, or an error from `f`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
