//! The console's own view of the daemon's JSON: lenient structs (every field defaulted,
//! unknown fields ignored) so that a daemon newer than the console never crashes it.
//!
//! Money and percentages stay decimal: they arrive as strings (or numbers) and are kept
//! as [`Num`], displayed through `rust_decimal`, never through `f64`.
//!
//! Every string the daemon sends passes through [`printable`] before it is decoded, so a
//! halt reason, note or operator name holding ESC, CR or BEL (an old journal may) is shown
//! escaped (`\u{1b}`) rather than dropped or sent to the terminal.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The halt state machine's state, as the daemon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltState {
    /// Trading normally.
    Running,
    /// A trigger fired: cancels and closures are in progress.
    Halting,
    /// Stopped; waiting for an operator.
    Halted,
    /// An operator is working through the recovery checklist.
    Recovering,
    /// Not known yet (no answer from the daemon) or a state this console does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl HaltState {
    /// The word shown on screen.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            HaltState::Running => "RUNNING",
            HaltState::Halting => "HALTING",
            HaltState::Halted => "HALTED",
            HaltState::Recovering => "RECOVERING",
            HaltState::Unknown => "UNKNOWN",
        }
    }

    /// `true` in Halted and Recovering, where the checklist can be worked and resume asked.
    #[must_use]
    pub fn is_recoverable(self) -> bool {
        matches!(self, HaltState::Halted | HaltState::Recovering)
    }
}

impl fmt::Display for HaltState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label().to_lowercase())
    }
}

/// A decimal figure from the daemon, kept as text: JSON strings (`"0.0123"`) and numbers
/// are both accepted; anything else becomes empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Num(pub String);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Num(match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        }))
    }
}

impl Num {
    /// The value, when it is a decimal.
    #[must_use]
    pub fn decimal(&self) -> Option<Decimal> {
        Decimal::from_str(self.0.trim())
            .or_else(|_| Decimal::from_scientific(self.0.trim()))
            .ok()
    }

    /// Rounded to `dp` places for display; `-` when unknown.
    #[must_use]
    pub fn show(&self, dp: u32) -> String {
        match self.decimal() {
            Some(d) => d.round_dp(dp).normalize().to_string(),
            None if self.0.is_empty() => "-".to_owned(),
            None => self.0.clone(),
        }
    }

    /// `true` when the value is below zero.
    #[must_use]
    pub fn is_negative(&self) -> bool {
        self.decimal()
            .is_some_and(|d| d.is_sign_negative() && !d.is_zero())
    }
}

impl From<&str> for Num {
    fn from(s: &str) -> Self {
        Num(s.to_owned())
    }
}

/// `value / threshold` as a gauge ratio in `0.0..=1.0` (a display fraction, not money).
#[must_use]
pub fn ratio(value: &Num, threshold: &Num) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    match (value.decimal(), threshold.decimal()) {
        (Some(v), Some(t)) if t > Decimal::ZERO => {
            let r = (v.abs() / t).min(Decimal::ONE);
            r.to_f64().unwrap_or(0.0)
        }
        (Some(v), Some(_)) if v > Decimal::ZERO => 1.0,
        _ => 0.0,
    }
}

/// One halt: what triggered it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct HaltInfo {
    /// Increasing id.
    pub id: u64,
    /// `auto:<condition>`, `api:<operator>`, `console:<operator>`, `cli`, `signal`, `fleet`.
    pub source: String,
    /// Why.
    pub reason: String,
    /// What it does beyond closing the gate (`cancel_orders`, `close_positions`, …).
    pub behaviour: Option<String>,
    /// When it was triggered.
    pub triggered_at: Option<DateTime<Utc>>,
    /// Conditions involved.
    pub conditions: Vec<String>,
}

/// `GET /api/v1/halt/status`, and the `status` of both WebSocket frames.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// State.
    pub state: HaltState,
    /// Whether non-closure orders may pass.
    pub gate_open: bool,
    /// The current (or last) halt.
    pub halt: Option<HaltInfo>,
    /// Checklist items still missing, by id.
    pub checklist_missing: Vec<String>,
    /// Who resumed last.
    pub resumed_by: Option<String>,
    /// A journal problem the daemon reports.
    pub journal_problem: Option<String>,
    /// Kraken's trading mode (`online`, `maintenance`, `cancel_only`, `post_only`,
    /// `unknown`); `None` in paper mode.
    pub exchange_status: Option<String>,
    /// How fills arrive in live mode: `pushed` (the `executions` WebSocket) or `polled`
    /// (REST, while the socket is down); `None` in paper mode.
    pub fills: Option<String>,
}

/// One recovery checklist item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct ChecklistItem {
    /// Stable id (the path segment of the complete route).
    pub id: String,
    /// What the operator must do.
    pub title: String,
    /// The halt reason that added it (`None` for the standard items).
    pub added_for: Option<String>,
    /// Who completed it.
    pub completed_by: Option<String>,
    /// When.
    pub completed_at: Option<DateTime<Utc>>,
    /// The operator's note.
    pub note: Option<String>,
}

impl ChecklistItem {
    /// `true` once completed.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.completed_by.is_some()
    }
}

/// The checklist of one halt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Checklist {
    /// The halt it belongs to.
    pub halt_id: u64,
    /// Items in order; `confirm_resume` is last.
    pub items: Vec<ChecklistItem>,
}

/// `GET /api/v1/recovery/checklist`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ChecklistReply {
    /// State.
    pub state: HaltState,
    /// The checklist, when a halt has been seen.
    pub checklist: Option<Checklist>,
    /// Items still missing.
    pub missing: Vec<String>,
}

/// A halt condition with its current value and limit.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Condition {
    /// Condition id (`max_daily_drawdown`, …).
    pub id: String,
    /// Current value.
    pub value: Num,
    /// Limit.
    pub threshold: Num,
    /// Breached.
    pub triggered: bool,
    /// When it was last evaluated.
    pub updated_at: Option<DateTime<Utc>>,
}

/// One open position.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Position {
    /// The pair (`XRP/USD`).
    pub pair: String,
    /// Signed quantity.
    pub qty: Num,
    /// Average entry price.
    pub avg_entry: Num,
    /// Latest mark.
    pub mark: Num,
    /// Realised P&L.
    pub realised_pnl: Num,
    /// Unrealised P&L.
    pub unrealised_pnl: Num,
}

/// Portfolio figures of the dashboard snapshot.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Portfolio {
    /// Equity, quote currency.
    pub equity: Num,
    /// Drawdown from peak, percent.
    pub total_drawdown_pct: Num,
    /// Drawdown from the UTC day's start, percent.
    pub daily_drawdown_pct: Num,
    /// Sum of absolute notionals.
    pub exposure: Num,
    /// Unrealised P&L.
    pub unrealised_pnl: Num,
    /// Today's P&L.
    pub daily_pnl: Num,
    /// Open positions.
    pub positions: Vec<Position>,
}

/// An alert that is firing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Alert {
    /// Rule name.
    pub rule: String,
    /// `info`, `warning`, `critical`, …
    pub severity: String,
    /// Latest summary.
    pub summary: String,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
}

/// The monitor's dashboard snapshot (the parts the console shows).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// When it was taken.
    pub ts: Option<DateTime<Utc>>,
    /// Halt conditions.
    pub conditions: Vec<Condition>,
    /// Portfolio figures.
    pub portfolio: Option<Portfolio>,
    /// Alerts firing.
    pub alerts: Vec<Alert>,
}

/// The frame's own portfolio summary (adds realised P&L).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct PortfolioSummary {
    /// Realised P&L.
    pub realised_pnl: Num,
}

/// A frame of `WS /ws/halt-status` or `WS /ws/dashboard`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// Pushed on connect and on every halt-family event.
    Status {
        /// Halt status.
        #[serde(default)]
        status: Status,
        /// The checklist.
        #[serde(default)]
        checklist: Option<Checklist>,
    },
    /// Pushed every second.
    Dashboard {
        /// Monitor snapshot.
        #[serde(default)]
        snapshot: Box<Snapshot>,
        /// Halt status.
        #[serde(default)]
        status: Status,
        /// The checklist.
        #[serde(default)]
        checklist: Option<Checklist>,
        /// Portfolio summary.
        #[serde(default)]
        portfolio: PortfolioSummary,
    },
    /// A frame type this console does not know; ignored.
    #[serde(other)]
    Other,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct JournalRecord {
    /// Consecutive id.
    pub id: i64,
    /// When it was written.
    pub ts: Option<DateTime<Utc>>,
    /// What happened.
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// Structured detail.
    pub detail: Value,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The operator's name, as journaled.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

impl Identity {
    /// `true` when the role may halt, complete items and resume.
    #[must_use]
    pub fn can_operate(&self) -> bool {
        matches!(self.role.as_str(), "operator" | "admin")
    }
}

/// What `POST /api/v1/halt` answered.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct HaltOutcome {
    /// The halt in force.
    pub halt_id: u64,
    /// `true` when this request started it; `false` when one was already in force.
    pub started: bool,
    /// State right after.
    pub state: HaltState,
    /// Set when the journal write failed (the halt is in force regardless).
    pub journal_error: Option<String>,
}

/// Why the daemon refused to resume (`detail` of a `resume_refused` error).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct ResumeRefusal {
    /// Checklist items not completed.
    pub missing_items: Vec<String>,
    /// Conditions breached now.
    pub breached_conditions: Vec<String>,
    /// Two-person rule violation.
    pub two_person_violation: Option<String>,
}

/// `v` with every string (and object key) passed through
/// [`gf_core::text::escape_control`]: control characters become visible text.
#[must_use]
pub fn printable(v: Value) -> Value {
    use gf_core::text::escape_control;
    match v {
        Value::String(s) => match escape_control(&s) {
            std::borrow::Cow::Borrowed(_) => Value::String(s),
            std::borrow::Cow::Owned(escaped) => Value::String(escaped),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(printable).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (escape_control(&k).into_owned(), printable(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_with_unknown_fields_and_types() {
        let status = r#"{"type":"status","status":{"state":"halted","gate_open":false,
            "halt":{"id":3,"source":"console:alice","reason":"fat finger","behaviour":"cancel_orders",
            "triggered_at":"2026-01-01T00:00:00Z","conditions":[],"later_triggers":[],"closure":null,
            "brand_new":{"x":1}},"checklist_missing":["a"],"resumed_by":null,"journal_problem":null},
            "checklist":{"halt_id":3,"items":[{"id":"a","title":"A","added_for":null,
            "completed_by":null,"completed_at":null,"note":null}]},"event":{"anything":true}}"#;
        let Frame::Status { status, checklist } = serde_json::from_str(status).unwrap() else {
            panic!("not a status frame");
        };
        assert_eq!(status.state, HaltState::Halted);
        assert_eq!(status.halt.unwrap().source, "console:alice");
        assert_eq!(checklist.unwrap().items[0].id, "a");

        let other: Frame = serde_json::from_str(r#"{"type":"telemetry","x":1}"#).unwrap();
        assert_eq!(other, Frame::Other);
        let unknown_state: Status = serde_json::from_str(r#"{"state":"paused"}"#).unwrap();
        assert_eq!(unknown_state.state, HaltState::Unknown);
    }

    #[test]
    fn numbers_accept_strings_and_numbers() {
        struct Case {
            json: &'static str,
            show: &'static str,
        }
        let cases = [
            Case {
                json: r#""0.123456""#,
                show: "0.12",
            },
            Case {
                json: "2",
                show: "2",
            },
            Case {
                json: "null",
                show: "-",
            },
            Case {
                json: r#""-1.005""#,
                show: "-1",
            },
        ];
        for c in cases {
            let n: Num = serde_json::from_str(c.json).unwrap();
            assert_eq!(n.show(2), c.show, "{}", c.json);
        }
    }

    #[test]
    fn gauge_ratio_is_clamped() {
        assert!((ratio(&"1".into(), &"2".into()) - 0.5).abs() < 1e-9);
        assert!((ratio(&"5".into(), &"2".into()) - 1.0).abs() < 1e-9);
        assert!(ratio(&"x".into(), &"2".into()).abs() < 1e-9);
        assert!((ratio(&"1".into(), &"0".into()) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn strings_from_the_daemon_are_made_printable_before_decoding() {
        let raw = serde_json::json!({
            "state": "halted",
            "gate_open": false,
            "halt": {
                "id": 1,
                "source": "api:eve\u{9b}",
                "reason": "drill\u{1b}[31m\r\nfake\u{7}",
                "triggered_at": "2026-03-02T14:00:00Z",
            },
            "checklist_missing": ["x\u{0}"],
            "extra": { "k\u{1b}": [1, "a\tb", null] },
        });
        let clean = printable(raw);
        assert!(!clean.to_string().contains("\\u001b"), "{clean}");
        assert_eq!(clean["extra"]["k\\u{1b}"][1], "a\\tb");
        let status: Status = serde_json::from_value(clean).unwrap();
        let halt = status.halt.unwrap();
        assert_eq!(halt.reason, "drill\\u{1b}[31m\\r\\nfake\\u{7}");
        assert_eq!(halt.source, "api:eve\\u{9b}");
    }
}
