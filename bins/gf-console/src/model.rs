//! The console's view of the daemon's JSON: the API's wire types from [`gf_api`] (shared
//! with the daemon, which serves them) and the dashboard frames. All are lenient (every
//! field defaulted, unknown fields ignored) so that a daemon newer than the console never
//! crashes it.
//!
//! Money and percentages stay decimal: they arrive as strings (or numbers) and are kept
//! as [`Num`], displayed through `rust_decimal`, never through `f64`.
//!
//! Every string the daemon sends passes through [`printable`] before it is decoded, so a
//! halt reason, note or operator name holding ESC, CR or BEL (an old journal may) is shown
//! escaped (`\u{1b}`) rather than dropped or sent to the terminal.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

pub use gf_api::{
    Checklist, ChecklistItem, ChecklistReply, FleetHaltRecord, FleetNode, FleetStatus,
    GatewayOrder, GatewaySummary, HaltInfo, HaltOutcome, HaltState, HaltStatus, Identity,
    JournalRecord, Num, ResumeRefusal, Status, TraderSummary,
};

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
        /// The order gateway at a glance; `None` from a daemon without one (or one whose
        /// summary this console cannot read: the rest of the frame still counts).
        #[serde(default, deserialize_with = "lenient")]
        gateway: Option<GatewaySummary>,
        /// The fleet (`[fleet]`): the fleet halt and every node's heartbeat; `None` from a
        /// daemon without fleet support (or one whose fleet this console cannot read).
        #[serde(default, deserialize_with = "lenient")]
        fleet: Option<Box<FleetStatus>>,
    },
    /// A frame type this console does not know; ignored.
    #[serde(other)]
    Other,
}

/// `Some` when the value decodes as a `T`, `None` when it is absent, `null` or of another
/// shape: one part of a frame the console cannot read never costs it the rest.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
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
        assert_eq!(status.core.state, HaltState::Halted);
        assert_eq!(status.core.halt.unwrap().source, "console:alice");
        assert_eq!(checklist.unwrap().items[0].id, "a");

        let other: Frame = serde_json::from_str(r#"{"type":"telemetry","x":1}"#).unwrap();
        assert_eq!(other, Frame::Other);
        let unknown_state: Status = serde_json::from_str(r#"{"state":"paused"}"#).unwrap();
        assert_eq!(unknown_state.core.state, HaltState::Unknown);
    }

    #[test]
    fn the_gateway_summary_is_read_when_sent_and_never_breaks_the_frame() {
        let frame = |gateway: Option<&str>| {
            let extra = gateway.map_or_else(String::new, |g| format!(r#","gateway":{g}"#));
            let json = format!(
                r#"{{"type":"dashboard","snapshot":{{}},"status":{{"state":"running"}}{extra}}}"#
            );
            let Frame::Dashboard {
                status, gateway, ..
            } = serde_json::from_str(&json).unwrap()
            else {
                panic!("not a dashboard frame: {json}");
            };
            assert_eq!(status.core.state, HaltState::Running, "{json}");
            gateway
        };
        // A daemon from before the gateway, or one that sends null or nonsense.
        assert_eq!(frame(None), None);
        assert_eq!(frame(Some("null")), None);
        assert_eq!(frame(Some(r#""on""#)), None);
        assert_eq!(
            frame(Some(r#"{"traders":[{"name":"a","open":"many"}]}"#)),
            None
        );
        // Unknown fields are ignored; money stays text.
        let g = frame(Some(
            r#"{"enabled":true,"traders":[{"name":"strat-a","open":1,"accepted":2,
                "refused":0,"later":true}],"recent":[{"client_order_id":"s1","trader":"strat-a",
                "pair":"XRP/USD","side":"buy","type":"limit","qty":"10","limit_price":"2.10",
                "status":"open","filled_qty":"0","created_at":"2026-03-02T14:04:58Z"}],
                "new_section":{}}"#,
        ))
        .unwrap();
        assert!(g.enabled);
        assert_eq!(g.traders[0].name, "strat-a");
        assert_eq!(g.traders[0].open, 1);
        let order = &g.recent[0];
        assert_eq!(order.order_type, "limit");
        assert_eq!(order.limit_price.as_ref().unwrap().to_string(), "2.10");
        assert_eq!(order.qty.to_string(), "10");
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
        let halt = status.core.halt.unwrap();
        assert_eq!(halt.reason, "drill\\u{1b}[31m\\r\\nfake\\u{7}");
        assert_eq!(halt.source, "api:eve\\u{9b}");
    }
}
