//! The HTTP client behind the CLI subcommands (`status`, `halt`, `resume`, `checklist`):
//! a thin, typed wrapper over the daemon's API. The console uses the same routes.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Errors of the API client, one clear line each.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No token was given.
    #[error("no API token: pass --token, --token-file or set GF_TOKEN")]
    NoToken,
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The daemon could not be reached.
    #[error("cannot reach the daemon at {url}: {message}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// Transport message.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Message.
        message: String,
        /// Structured detail, if any.
        detail: Option<Value>,
    },
    /// The daemon's answer was not JSON.
    #[error("unexpected answer from the daemon (HTTP {status}): {snippet}")]
    Malformed {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        snippet: String,
    },
}

/// Resolves the token from a flag, a file or `GF_TOKEN`, in that order.
///
/// # Errors
/// [`ClientError::NoToken`] or [`ClientError::TokenFile`].
pub fn resolve_token(flag: Option<&str>, file: Option<&Path>) -> Result<String, ClientError> {
    if let Some(t) = flag {
        return Ok(t.trim().to_owned());
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        return Ok(text.trim().to_owned());
    }
    match std::env::var("GF_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => Err(ClientError::NoToken),
    }
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) with a bearer token.
    #[must_use]
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client with a timeout builds");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    /// The base URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(req).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let resp =
            req.bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: self.base.clone(),
                    message: e.to_string(),
                })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| ClientError::Malformed {
            status,
            snippet: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        })?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let err = &value["error"];
            Err(ClientError::Api {
                status,
                code: err["code"].as_str().unwrap_or("unknown").to_owned(),
                message: err["message"].as_str().unwrap_or("").to_owned(),
                detail: err.get("detail").cloned(),
            })
        }
    }
}
