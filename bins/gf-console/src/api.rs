//! The daemon's HTTP API as the console uses it: the [`ConsoleApi`] trait (mocked in the
//! update tests) and [`HttpApi`], its reqwest implementation.

use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{ChecklistReply, HaltOutcome, Identity, JournalRecord, Status};

/// How long one HTTP request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed API call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The daemon could not be reached (connection refused, timeout, reset).
    #[error("daemon unreachable at {url}: {message}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// Transport message.
        message: String,
    },
    /// The daemon answered with a JSON error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code (`resume_refused`, `forbidden`, …).
        code: String,
        /// Human message.
        message: String,
        /// Structured detail (e.g. what a refused resume is missing).
        detail: Option<Value>,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected answer from the daemon (HTTP {status}): {message}")]
    Malformed {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
}

impl ApiError {
    /// The stable code of an API error.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// `true` for a 401 or 403: the token is wrong or lacks the role.
    #[must_use]
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ApiError::Api {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// The calls the console makes. Every method is one HTTP request.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ConsoleApi: Send + Sync {
    /// `GET /api/v1/whoami`: the token's operator.
    async fn whoami(&self) -> Result<Identity, ApiError>;
    /// `GET /api/v1/halt/status`.
    async fn status(&self) -> Result<Status, ApiError>;
    /// `GET /api/v1/recovery/checklist`.
    async fn checklist(&self) -> Result<ChecklistReply, ApiError>;
    /// `GET /api/v1/journal?limit=N`, newest first.
    async fn journal(&self, limit: usize) -> Result<Vec<JournalRecord>, ApiError>;
    /// `POST /api/v1/halt {"reason", "source": "console"}`.
    async fn halt(&self, reason: &str) -> Result<HaltOutcome, ApiError>;
    /// `POST /api/v1/recovery/checklist/{item}/complete {"note"}`.
    async fn complete_item(&self, item: &str, note: Option<String>) -> Result<(), ApiError>;
    /// `POST /api/v1/resume`.
    async fn resume(&self) -> Result<Status, ApiError>;
}

/// [`ConsoleApi`] over HTTP with a bearer token.
#[derive(Clone)]
pub struct HttpApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApi")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl HttpApi {
    /// A client of the daemon at `base` (`http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`ApiError::Malformed`] when the HTTP client cannot be built (no TLS roots).
    pub fn new(base: &str, token: &str) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| ApiError::Malformed {
                status: 0,
                message: format!("building the HTTP client: {e}"),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    /// The base URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let unreachable = |e: reqwest::Error| ApiError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        };
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::Malformed {
            status,
            message: gf_core::text::escape_control(&String::from_utf8_lossy(
                &bytes[..bytes.len().min(120)],
            ))
            .into_owned(),
        })?;
        let value = crate::model::printable(value);
        if !(200..300).contains(&status) {
            let err = &value["error"];
            return Err(ApiError::Api {
                status,
                code: err["code"].as_str().unwrap_or("unknown").to_owned(),
                message: err["message"].as_str().unwrap_or("").to_owned(),
                detail: err.get("detail").cloned(),
            });
        }
        serde_json::from_value(value).map_err(|e| ApiError::Malformed {
            status,
            message: e.to_string(),
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post<B: serde::Serialize>(&self, path: &str, body: &B) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).json(body)
    }
}

#[async_trait]
impl ConsoleApi for HttpApi {
    async fn whoami(&self) -> Result<Identity, ApiError> {
        self.send(self.get("/api/v1/whoami")).await
    }

    async fn status(&self) -> Result<Status, ApiError> {
        self.send(self.get("/api/v1/halt/status")).await
    }

    async fn checklist(&self) -> Result<ChecklistReply, ApiError> {
        self.send(self.get("/api/v1/recovery/checklist")).await
    }

    async fn journal(&self, limit: usize) -> Result<Vec<JournalRecord>, ApiError> {
        let reply: gf_api::JournalReply = self
            .send(self.get(&format!("/api/v1/journal?limit={limit}")))
            .await?;
        Ok(reply.records)
    }

    async fn halt(&self, reason: &str) -> Result<HaltOutcome, ApiError> {
        let body = gf_api::HaltRequest {
            reason: reason.to_owned(),
            source: Some("console".to_owned()),
        };
        let reply: gf_api::HaltReply = self.send(self.post("/api/v1/halt", &body)).await?;
        Ok(reply.outcome)
    }

    async fn complete_item(&self, item: &str, note: Option<String>) -> Result<(), ApiError> {
        let body = gf_api::CompleteRequest { note };
        let path = format!("/api/v1/recovery/checklist/{}/complete", path_segment(item));
        let _: gf_api::CompleteReply = self.send(self.post(&path, &body)).await?;
        Ok(())
    }

    async fn resume(&self) -> Result<Status, ApiError> {
        let reply: gf_api::ResumeReply = self
            .send(self.post("/api/v1/resume", &serde_json::json!({})))
            .await?;
        // The resume answer carries the coordinator's status; the venue's fields come
        // with the next status read or frame.
        Ok(Status {
            core: reply.status,
            ..Status::default()
        })
    }
}

/// Percent-encodes everything but unreserved characters, so an item id is one segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The WebSocket URL of `path` on the daemon at `base` (`http` → `ws`, `https` → `wss`).
#[must_use]
pub fn ws_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{rest}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_segments() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080/", "/ws/dashboard"),
            "ws://127.0.0.1:8080/ws/dashboard"
        );
        assert_eq!(
            ws_url("https://gf.example", "/ws/x"),
            "wss://gf.example/ws/x"
        );
        assert_eq!(path_segment("confirm_resume"), "confirm_resume");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[tokio::test]
    async fn unreachable_daemon_is_a_typed_error() {
        // Bind then drop a listener: the port is closed, so the connection is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let api = HttpApi::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
        let err = api.status().await.unwrap_err();
        assert!(matches!(err, ApiError::Unreachable { .. }), "{err:?}");
        assert!(!err.is_auth());
    }
}
