//! The HTTP client behind the CLI subcommands (`status`, `halt`, `resume`, `checklist`):
//! a thin, typed wrapper over the daemon's API, and the text those subcommands print. The
//! console uses the same routes.
//!
//! Everything printed that came from the daemon goes through
//! [`gf_core::text::escape_control`]: a reason or note with ESC, CR or BEL (an old journal
//! may hold one) shows as `\u{1b}`, `\r`, `\u{7}` and cannot forge lines or colours.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use gf_core::text::escape_control;
use serde::Serialize;
use serde::de::DeserializeOwned;
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

    /// `GET path`, decoded as the API's wire type `T` ([`gf_api`]).
    ///
    /// # Errors
    /// As [`ApiClient::get`], and [`ClientError::Malformed`] when the answer is not a `T`.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(self.get(path).await?)
    }

    /// `POST path` with the wire type `body`, the answer decoded as `T`.
    ///
    /// # Errors
    /// As [`ApiClient::post`], and [`ClientError::Malformed`] when the answer is not a `T`.
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_value(body).map_err(|e| ClientError::Malformed {
            status: 0,
            snippet: e.to_string(),
        })?;
        decode(self.post(path, &body).await?)
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
            snippet: escape_control(&String::from_utf8_lossy(&bytes[..bytes.len().min(200)]))
                .into_owned(),
        })?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let err = &value["error"];
            Err(ClientError::Api {
                status,
                code: escape_control(err["code"].as_str().unwrap_or("unknown")).into_owned(),
                message: escape_control(err["message"].as_str().unwrap_or("")).into_owned(),
                detail: err.get("detail").cloned(),
            })
        }
    }
}

/// A successful answer as the wire type `T`.
fn decode<T: DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Malformed {
        status: 200,
        snippet: escape_control(&e.to_string()).into_owned(),
    })
}

/// A string from the daemon, escaped for the terminal.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    escape_control(s)
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| escape_control(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `status` as the `status`, `halt` and `resume` subcommands print it.
#[must_use]
pub fn format_status(s: &gf_api::HaltStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "state: {}", s.state);
    let gate = if s.gate_open { "open" } else { "closed" };
    let _ = writeln!(out, "gate: {gate}");
    if let Some(h) = &s.halt {
        let label = if s.state == gf_api::HaltState::Running {
            "last halt"
        } else {
            "halt"
        };
        let at = h.triggered_at.map_or_else(
            || "?".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        );
        let _ = writeln!(
            out,
            "{label} #{}: {} — {} (at {at})",
            h.id,
            text(&h.source),
            text(&h.reason),
        );
    }
    if !s.checklist_missing.is_empty() {
        let _ = writeln!(out, "checklist missing: {}", list(&s.checklist_missing));
    }
    out
}

/// The recovery checklist as `checklist` prints it.
#[must_use]
pub fn format_checklist(v: &gf_api::ChecklistReply) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "state: {}", v.state);
    match &v.checklist {
        None => out.push_str("no checklist: nothing to recover from\n"),
        Some(list) => {
            for item in &list.items {
                let done = item.completed_by.as_deref().map(escape_control);
                let _ = writeln!(
                    out,
                    "[{}] {:<28} {}{}",
                    if done.is_some() { "x" } else { " " },
                    text(&item.id),
                    text(&item.title),
                    done.map(|by| format!(" (by {by})")).unwrap_or_default(),
                );
            }
        }
    }
    out
}

/// A completed checklist item as `checklist complete` prints it.
#[must_use]
pub fn format_completed(item: &str, v: &gf_api::CompleteReply) -> String {
    let missing = list(&v.missing);
    format!(
        "completed {} by {}\nmissing: {}\n",
        escape_control(item),
        text(v.item.completed_by.as_deref().unwrap_or("?")),
        if missing.is_empty() {
            "nothing"
        } else {
            &missing
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_prints_a_stored_escape_sequence_escaped() {
        // As an old journal may hold it: ESC colours, CR/LF forging a line, BEL, NUL.
        let s = json!({
            "state": "halted",
            "gate_open": false,
            "halt": {
                "id": 3,
                "source": "api:mallory\u{1b}[2K",
                "reason": "drill\u{1b}[31m\r\nstate: running\u{7}\u{0}",
                "triggered_at": "2026-03-02T14:00:00Z",
            },
            "checklist_missing": ["confirm_resume", "x\u{1b}]0;title\u{7}"],
        });
        let out = format_status(&serde_json::from_value(s).unwrap());
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the terminal: {out:?}"
        );
        assert_eq!(
            out,
            "state: halted\ngate: closed\n\
             halt #3: api:mallory\\u{1b}[2K — drill\\u{1b}[31m\\r\\nstate: running\\u{7}\\u{0} (at 2026-03-02T14:00:00Z)\n\
             checklist missing: confirm_resume, x\\u{1b}]0;title\\u{7}\n"
        );
        assert_eq!(out.lines().count(), 4, "no forged line: {out}");
    }

    #[test]
    fn checklist_and_completion_escape_names_and_titles() {
        let v = json!({
            "state": "recovering",
            "checklist": { "items": [
                { "id": "review_halt_reason", "title": "Review the halt reason",
                  "completed_by": "bob\u{1b}[8m" },
                { "id": "x\u{7}", "title": "T\ritle", "completed_by": null },
                { "id": "confirm_resume", "title": "Confirm resume", "completed_by": null },
            ]},
        });
        let out = format_checklist(&serde_json::from_value(v).unwrap());
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("(by bob\\u{1b}[8m)"), "{out}");
        assert!(out.contains("x\\u{7}"), "{out}");
        assert!(out.contains("T\\ritle"), "{out}");
        assert!(out.contains("[ ] confirm_resume"), "{out}");
        let done = format_completed(
            "review_halt_reason",
            &serde_json::from_value(
                json!({ "item": { "completed_by": "eve\u{9b}" }, "missing": [] }),
            )
            .unwrap(),
        );
        assert_eq!(
            done,
            "completed review_halt_reason by eve\\u{9b}\nmissing: nothing\n"
        );
    }
}
