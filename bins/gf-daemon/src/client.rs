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

/// An instant as the CLI prints it (`?` when unknown).
fn instant(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "?".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// One line describing a fleet halt record (who, why, when, revision, approvals).
#[must_use]
pub fn format_fleet_halt_record(r: &gf_api::FleetHaltRecord) -> String {
    let approvals = if r.approvals.is_empty() {
        "none".to_owned()
    } else {
        list(&r.approvals)
    };
    if r.active {
        format!(
            "fleet halt: ACTIVE — by {} on node {}: {} (at {}; revision {}; clear approvals: {approvals})",
            text(&r.by),
            text(&r.node),
            text(&r.reason),
            instant(r.at),
            r.revision,
        )
    } else {
        format!(
            "fleet halt: cleared by {} (at {}; revision {}) — was by {}: {} (at {})",
            text(r.cleared_by.as_deref().unwrap_or("?")),
            instant(r.cleared_at),
            r.revision,
            text(&r.by),
            text(&r.reason),
            instant(r.at),
        )
    }
}

/// `gf-daemon fleet status` (human form): the fleet, this node's link to NATS, the fleet
/// halt record, a table of the nodes and the totals the fleet conditions judge.
#[must_use]
pub fn format_fleet_status(s: &gf_api::FleetStatus) -> String {
    if !s.enabled {
        return "fleet: off (fleet.enabled = false on this daemon)\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet: {} (this node: {})",
        text(&s.fleet),
        text(&s.node)
    );
    let contact = s.last_contact_ms.map_or_else(
        || "never".to_owned(),
        |ms| format!("{} ago", gf_api::format_age_ms(ms)),
    );
    let _ = writeln!(
        out,
        "nats: {} (last contact {contact}; partition halt after {}s)",
        if s.connected {
            "connected"
        } else {
            "NOT CONNECTED"
        },
        s.partition_halt_secs,
    );
    match &s.halt {
        None => out.push_str("fleet halt: none\n"),
        Some(r) => {
            out.push_str(&format_fleet_halt_record(r));
            out.push('\n');
        }
    }
    if s.nodes.is_empty() {
        out.push_str("no node heartbeats yet\n");
    } else {
        let header = [
            "NODE",
            "STATE",
            "HEARTBEAT",
            "EQUITY",
            "DRAWDOWN",
            "EXPOSURE",
            "BREACHED",
        ];
        let rows: Vec<[String; 7]> = s
            .nodes
            .iter()
            .map(|n| {
                let age = gf_api::format_age_ms(n.age_ms);
                let quote = if n.quote.is_empty() {
                    String::new()
                } else {
                    format!(" {}", text(&n.quote))
                };
                [
                    text(&n.node).into_owned(),
                    n.state.to_string(),
                    if n.stale { format!("{age} STALE") } else { age },
                    format!("{}{quote}", text(&n.equity.to_string())),
                    format!("{}%", text(&n.drawdown_pct.to_string())),
                    format!("{}{quote}", text(&n.exposure.to_string())),
                    if n.breached.is_empty() {
                        "-".to_owned()
                    } else {
                        list(&n.breached)
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    let _ = write!(l, "{cell:<w$}  ");
                }
            }
            let _ = writeln!(out, "{}", l.trim_end());
        };
        line(&header);
        for row in &rows {
            line(&row.each_ref().map(String::as_str));
        }
    }
    let stale = s.nodes.iter().filter(|n| n.stale).count();
    let _ = writeln!(
        out,
        "total: equity {}, drawdown {}%, exposure {} ({} node{}, {stale} stale)",
        text(&s.total_equity.to_string()),
        text(&s.total_drawdown_pct.to_string()),
        text(&s.total_exposure.to_string()),
        s.nodes.len(),
        if s.nodes.len() == 1 { "" } else { "s" },
    );
    out
}

/// `gf-daemon fleet halt`'s answer.
#[must_use]
pub fn format_fleet_halt_reply(v: &gf_api::FleetHaltReply) -> String {
    let head = if v.created {
        "fleet halt written: every node closes its gate"
    } else {
        "a fleet halt was already in force (not written again)"
    };
    format!("{head}\n{}\n", format_fleet_halt_record(&v.record))
}

/// `gf-daemon fleet resume`'s answer.
#[must_use]
pub fn format_fleet_resume_reply(v: &gf_api::FleetResumeReply) -> String {
    let mut out = String::new();
    if v.cleared {
        out.push_str(
            "fleet halt cleared: each node still walks its own recovery checklist before it resumes\n",
        );
    } else {
        let _ = writeln!(
            out,
            "fleet halt NOT cleared: {}",
            text(v.needs.as_deref().unwrap_or("see the record"))
        );
    }
    out.push_str(&format_fleet_halt_record(&v.record));
    out.push('\n');
    out
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

    fn fleet_fixture() -> gf_api::FleetStatus {
        serde_json::from_value(json!({
            "enabled": true,
            "fleet": "prod",
            "node": "alpha",
            "connected": true,
            "last_contact_ms": 240,
            "partition_halt_secs": 10,
            "halt": {
                "active": true,
                "reason": "drill",
                "by": "operator:alice",
                "node": "alpha",
                "at": "2026-03-02T14:00:00Z",
                "revision": 7,
                "approvals": ["admin:bob"],
            },
            "nodes": [
                { "node": "alpha", "state": "halted", "breached": ["fleet_halt"],
                  "equity": "10000", "drawdown_pct": "1.5", "exposure": "2500",
                  "quote": "USD", "age_ms": 240, "stale": false },
                { "node": "beta", "state": "halting", "breached": [],
                  "equity": "20500.25", "drawdown_pct": "0", "exposure": "0",
                  "quote": "USD", "age_ms": 1250, "stale": false },
                { "node": "gamma-long-name", "state": "running",
                  "breached": ["fleet_halt", "max_drawdown"],
                  "equity": "9000", "drawdown_pct": "12.25", "exposure": "100.5",
                  "quote": "USD", "age_ms": 75_000, "stale": true },
            ],
            "total_equity": "39500.25",
            "total_drawdown_pct": "3.4",
            "total_exposure": "2600.5",
        }))
        .unwrap()
    }

    #[test]
    fn fleet_status_prints_the_halt_record_and_a_node_table() {
        let out = format_fleet_status(&fleet_fixture());
        assert_eq!(
            out,
            "fleet: prod (this node: alpha)\n\
             nats: connected (last contact 240ms ago; partition halt after 10s)\n\
             fleet halt: ACTIVE — by operator:alice on node alpha: drill (at 2026-03-02T14:00:00Z; revision 7; clear approvals: admin:bob)\n\
             NODE             STATE    HEARTBEAT    EQUITY        DRAWDOWN  EXPOSURE   BREACHED\n\
             alpha            halted   240ms        10000 USD     1.5%      2500 USD   fleet_halt\n\
             beta             halting  1.2s         20500.25 USD  0%        0 USD      -\n\
             gamma-long-name  running  1m15s STALE  9000 USD      12.25%    100.5 USD  fleet_halt, max_drawdown\n\
             total: equity 39500.25, drawdown 3.4%, exposure 2600.5 (3 nodes, 1 stale)\n"
        );
    }

    #[test]
    fn fleet_status_off_unconnected_and_cleared() {
        assert_eq!(
            format_fleet_status(&gf_api::FleetStatus::default()),
            "fleet: off (fleet.enabled = false on this daemon)\n"
        );
        let mut s = fleet_fixture();
        s.connected = false;
        s.last_contact_ms = None;
        s.nodes.clear();
        s.halt = None;
        let out = format_fleet_status(&s);
        assert!(
            out.contains("nats: NOT CONNECTED (last contact never;"),
            "{out}"
        );
        assert!(out.contains("fleet halt: none\n"), "{out}");
        assert!(out.contains("no node heartbeats yet\n"), "{out}");
        assert!(out.ends_with("(0 nodes, 0 stale)\n"), "{out}");
        let mut r = fleet_fixture().halt.unwrap();
        r.active = false;
        r.cleared_by = Some("admin:carol".into());
        r.cleared_at = "2026-03-02T15:00:00Z".parse().ok();
        assert_eq!(
            format_fleet_halt_record(&r),
            "fleet halt: cleared by admin:carol (at 2026-03-02T15:00:00Z; revision 7) — was by operator:alice: drill (at 2026-03-02T14:00:00Z)"
        );
    }

    #[test]
    fn fleet_status_escapes_what_other_nodes_sent() {
        // Heartbeats come from other machines: a node id, reason or quote with ESC or
        // CR/LF must not forge a line or colour the terminal.
        let mut s = fleet_fixture();
        s.nodes[1].node = "beta\u{1b}[2K\r\nalpha halted".into();
        s.nodes[1].quote = "USD\u{7}".into();
        if let Some(h) = s.halt.as_mut() {
            h.reason = "x\u{1b}[31m\nfleet halt: none".into();
        }
        let out = format_fleet_status(&s);
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the terminal: {out:?}"
        );
        assert_eq!(out.lines().count(), 8, "no forged line: {out}");
        assert!(out.contains("beta\\u{1b}[2K\\r\\nalpha halted"), "{out}");
    }

    #[test]
    fn fleet_halt_and_resume_replies() {
        let record = fleet_fixture().halt.unwrap();
        let halt = format_fleet_halt_reply(&gf_api::FleetHaltReply {
            record: record.clone(),
            created: false,
        });
        assert!(
            halt.starts_with(
                "a fleet halt was already in force (not written again)\nfleet halt: ACTIVE"
            ),
            "{halt}"
        );
        let pending = format_fleet_resume_reply(&gf_api::FleetResumeReply {
            record: record.clone(),
            cleared: false,
            needs: Some("a second administrator (two-person rule)".into()),
        });
        assert!(
            pending.starts_with(
                "fleet halt NOT cleared: a second administrator (two-person rule)\nfleet halt: ACTIVE"
            ),
            "{pending}"
        );
        let mut cleared = record;
        cleared.active = false;
        let done = format_fleet_resume_reply(&gf_api::FleetResumeReply {
            record: cleared,
            cleared: true,
            needs: None,
        });
        assert!(
            done.starts_with("fleet halt cleared: each node still walks"),
            "{done}"
        );
        assert!(done.contains("\nfleet halt: cleared by ?"), "{done}");
        assert_eq!(gf_api::format_age_ms(999), "999ms");
        assert_eq!(gf_api::format_age_ms(10_050), "10.0s");
        assert_eq!(gf_api::format_age_ms(3_605_000), "60m05s");
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
