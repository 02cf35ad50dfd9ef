//! The wire types of the daemon's HTTP API (`/api/v1`), defined once: gf-daemon builds its
//! answers from them and gf-console and the CLI (`gf-daemon status`, `halt`, …) decode
//! them, so a field renamed or dropped on one side breaks the build of the other.
//!
//! Serialising a type here gives exactly the JSON the daemon has always served (the
//! OpenAPI document and docs/api.md describe it). Decoding is lenient on purpose: every
//! answer type defaults each missing field and ignores unknown ones, and a state this
//! version does not know decodes as [`HaltState::Unknown`], so a daemon newer than its
//! console never crashes it. Request bodies ([`HaltRequest`], [`CompleteRequest`]) are
//! strict instead: the daemon refuses a field it does not know.
//!
//! Decimal figures travel as strings and are kept as [`Num`] (text), shown through
//! `rust_decimal`, never `f64`. What the clients do not interpret (a halt's closure
//! report, a journal record's detail) stays a JSON value.
//!
//! ```
//! use gf_api::{HaltState, Status};
//! let status: Status = serde_json::from_str(r#"{"state":"halted","gate_open":false}"#).unwrap();
//! assert_eq!(status.core.state, HaltState::Halted);
//! assert!(status.core.halt.is_none());
//! assert_eq!(status.exchange_status, None);
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The halt state machine's state on the wire (`running`, `halting`, `halted`,
/// `recovering`); anything else decodes as [`HaltState::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
    /// Not known yet (no answer) or a state this version does not know. The daemon never
    /// sends it.
    #[default]
    #[serde(other)]
    Unknown,
}

impl From<gf_core::HaltState> for HaltState {
    fn from(s: gf_core::HaltState) -> Self {
        match s {
            gf_core::HaltState::Running => HaltState::Running,
            gf_core::HaltState::Halting => HaltState::Halting,
            gf_core::HaltState::Halted => HaltState::Halted,
            gf_core::HaltState::Recovering => HaltState::Recovering,
        }
    }
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

/// A decimal figure, kept as text. Sent as a JSON string (`"0.0123"`, as `rust_decimal`
/// writes it); decoded from a string or a number, anything else becoming empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Num(pub String);

/// The text as sent (`-` when empty).
impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

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

impl From<Decimal> for Num {
    fn from(d: Decimal) -> Self {
        Num(d.to_string())
    }
}

/// A trigger that arrived while a halt was in force.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LaterTrigger {
    /// Who or what (`auto:<condition>`, `api:<operator>`, …).
    pub source: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Option<DateTime<Utc>>,
}

/// One halt: what triggered it and what it did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// The newest triggers that arrived while it was in force.
    pub later_triggers: Vec<LaterTrigger>,
    /// How many triggers arrived while it was in force, in all.
    pub later_trigger_count: u64,
    /// The outcome of cancel and closure once finished (gf-halt's `ClosureReport`).
    pub closure: Option<Value>,
}

/// The halt coordinator's status: the `status` of the halt and resume answers, and the
/// bulk of [`Status`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HaltStatus {
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
    /// A journal verification or write problem.
    pub journal_problem: Option<String>,
}

/// `GET /api/v1/halt/status`, and the `status` of both WebSocket frames: the
/// coordinator's [`HaltStatus`] (its fields inline) and the venue's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The halt coordinator's status.
    #[serde(flatten)]
    pub core: HaltStatus,
    /// Kraken's trading mode (`online`, `maintenance`, `cancel_only`, `post_only`,
    /// `unknown`); `None` in paper mode.
    pub exchange_status: Option<String>,
    /// How fills arrive in live mode: `pushed` (the `executions` WebSocket) or `polled`
    /// (REST, while the socket is down); `None` in paper mode.
    pub fills: Option<String>,
}

/// One recovery checklist item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Checklist {
    /// The halt it belongs to.
    pub halt_id: u64,
    /// Items in order; `confirm_resume` is last.
    pub items: Vec<ChecklistItem>,
}

/// `GET /api/v1/recovery/checklist`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChecklistReply {
    /// State.
    pub state: HaltState,
    /// The checklist, once a halt has been seen.
    pub checklist: Option<Checklist>,
    /// Items still missing.
    pub missing: Vec<String>,
}

/// The body of `POST /api/v1/halt`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    /// Why (one line, at most 500 characters).
    pub reason: String,
    /// `api` (default) or `console`; the operator is always the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What a halt request did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    /// `true` when the trigger is journaled.
    pub durable: bool,
}

/// The answer of `POST /api/v1/halt` (and the `detail` of a `halt_not_durable` error).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HaltReply {
    /// What the request did.
    pub outcome: HaltOutcome,
    /// The status right after.
    pub status: HaltStatus,
}

/// The answer of `POST /api/v1/resume`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ResumeReply {
    /// The status right after.
    pub status: HaltStatus,
}

/// Why the daemon refused to resume (the `detail` of a `resume_refused` error).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ResumeRefusal {
    /// Checklist items not completed.
    pub missing_items: Vec<String>,
    /// Conditions breached now.
    pub breached_conditions: Vec<String>,
    /// Two-person rule violation.
    pub two_person_violation: Option<String>,
}

/// The body of `POST /api/v1/recovery/checklist/{item}/complete` (optional).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The operator's note (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The answer of `POST /api/v1/recovery/checklist/{item}/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CompleteReply {
    /// The item as completed.
    pub item: ChecklistItem,
    /// Items still missing.
    pub missing: Vec<String>,
}

/// A halt condition with its latest value, as `GET /api/v1/conditions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConditionStatus {
    /// Id (`max_daily_drawdown`, …).
    pub id: String,
    /// Name.
    pub name: String,
    /// Limit.
    pub threshold: Num,
    /// Latest value.
    pub value: Num,
    /// `value > threshold`.
    pub triggered: bool,
    /// When it was last evaluated; `None` before the first evaluation.
    pub last_evaluated: Option<DateTime<Utc>>,
    /// Worst pair or component.
    pub detail: Option<String>,
    /// What a halt it causes does.
    pub behaviour: String,
}

/// `GET /api/v1/conditions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConditionsReply {
    /// Every condition, in evaluation order.
    pub conditions: Vec<ConditionStatus>,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JournalRecord {
    /// Consecutive id, from 1.
    pub id: i64,
    /// When it was written; `None` when the stored text is not a timestamp.
    pub ts: Option<DateTime<Utc>>,
    /// The stored timestamp text, only when it does not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts_malformed: Option<String>,
    /// What happened.
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// Structured detail.
    pub detail: Value,
    /// The previous record's MAC.
    pub prev_mac: String,
    /// This record's MAC.
    pub mac: String,
}

/// `GET /api/v1/journal?limit=N`, newest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JournalReply {
    /// The records.
    pub records: Vec<JournalRecord>,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The operator's name, as journaled.
    pub name: String,
    /// `viewer`, `trader`, `operator` or `admin`.
    pub role: String,
}

impl Identity {
    /// `true` when the role may halt, complete items and resume.
    #[must_use]
    pub fn can_operate(&self) -> bool {
        matches!(self.role.as_str(), "operator" | "admin")
    }
}

/// `POST /api/v1/orders` (role `trader`): an order of an external strategy. Strict: a
/// field this version does not know is refused, and money travels as decimal strings
/// (`"0.5"`), never JSON numbers, so nothing is rounded through a float.
///
/// `client_order_id` is the trader's idempotency key: 1–64 printable ASCII characters,
/// unique per trader. A retry with the same id returns the first result and never places a
/// second order; the order sent to the exchange carries an id of the daemon's own.
///
/// ```
/// use gf_api::PlaceOrder;
/// let order: PlaceOrder = serde_json::from_str(
///     r#"{"client_order_id":"s1-0001","pair":"XRP/USD","side":"buy","type":"limit",
///         "qty":"100","limit_price":"0.5","post_only":true}"#,
/// ).unwrap();
/// assert_eq!(order.qty.to_string(), "100");
/// assert!(serde_json::from_str::<PlaceOrder>(
///     r#"{"client_order_id":"x","pair":"XRP/USD","side":"buy","type":"market","qty":1.5}"#
/// ).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The trader's id of the order: its idempotency key.
    pub client_order_id: String,
    /// `BASE/QUOTE`, e.g. `XRP/USD`.
    pub pair: String,
    /// `buy` or `sell`.
    pub side: gf_core::Side,
    /// `market` or `limit`.
    #[serde(rename = "type")]
    pub order_type: gf_core::OrderType,
    /// Quantity in the base currency, a decimal string.
    pub qty: Decimal,
    /// Limit price (limit orders only), a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_price: Option<Decimal>,
    /// `gtc` (default for limit orders) or `ioc` (always, for market orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_in_force: Option<gf_core::TimeInForce>,
    /// Limit orders only: rest on the book or be cancelled, never take liquidity.
    #[serde(default)]
    pub post_only: bool,
}

/// A gateway order as the daemon tracks it: the answer of `POST /api/v1/orders`, an item
/// of `GET /api/v1/orders`, and the `order` of a `/ws/orders` update.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayOrder {
    /// The trader's id (its idempotency key).
    pub client_order_id: String,
    /// The token name that placed it.
    pub trader: String,
    /// The id the daemon sent to the exchange as `cl_ord_id`.
    pub exchange_client_order_id: String,
    /// The exchange's order id, once acknowledged.
    pub order_id: Option<String>,
    /// The pair.
    pub pair: String,
    /// `buy` or `sell`.
    pub side: String,
    /// `market` or `limit`.
    #[serde(rename = "type")]
    pub order_type: String,
    /// Quantity ordered.
    pub qty: Num,
    /// Limit price.
    pub limit_price: Option<Num>,
    /// `gtc` or `ioc`.
    pub time_in_force: String,
    /// Post-only.
    pub post_only: bool,
    /// `pending`, `open`, `partially_filled`, `filled`, `cancelled`, `rejected`, `expired`.
    pub status: String,
    /// Quantity filled so far.
    pub filled_qty: Num,
    /// Volume-weighted fill price, once something filled.
    pub avg_fill_price: Option<Num>,
    /// Fees paid, quote currency.
    pub fees: Num,
    /// Why it was cancelled or rejected.
    pub reason: Option<String>,
    /// When the daemon accepted it.
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

impl GatewayOrder {
    /// `true` once the order can no longer change (`filled`, `cancelled`, `rejected`,
    /// `expired`).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "filled" | "cancelled" | "rejected" | "expired"
        )
    }
}

/// The answer of `POST /api/v1/orders` when the order was accepted: 201 the first time,
/// 200 with `replayed: true` for a retry with the same `client_order_id`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PlaceOrderReply {
    /// The order as it stands now.
    pub order: GatewayOrder,
    /// `true` when this answers a retry: no second order was placed.
    pub replayed: bool,
}

/// `GET /api/v1/orders[?status=open|closed|all|<status>]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OrdersReply {
    /// Gateway orders the caller may see (a trader: its own; viewers and up: every
    /// trader's), newest first.
    pub orders: Vec<GatewayOrder>,
    /// Viewers and up: every order open at the exchange (the internal strategy's too), as
    /// the exchange reports it. Absent for traders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open: Option<Value>,
}

/// `DELETE /api/v1/orders/{client_order_id}` and `DELETE /api/v1/orders`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CancelReply {
    /// Orders the exchange accepted a cancel for (by the trader's id).
    pub cancelled: Vec<String>,
    /// Orders whose cancel failed, with why.
    pub failed: Vec<CancelFailure>,
}

/// One cancel that failed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CancelFailure {
    /// The trader's id of the order.
    pub client_order_id: String,
    /// Why.
    pub reason: String,
}

/// One execution of a gateway order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayFill {
    /// The trader's id of the order.
    pub client_order_id: String,
    /// The token name that placed it.
    pub trader: String,
    /// The exchange's trade id.
    pub trade_id: String,
    /// The exchange's order id.
    pub order_id: String,
    /// The pair.
    pub pair: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Quantity executed.
    pub qty: Num,
    /// Price.
    pub price: Num,
    /// Fee, quote currency.
    pub fee: Num,
    /// When the exchange executed it.
    pub ts: Option<DateTime<Utc>>,
}

/// `GET /api/v1/fills[?since=RFC3339]`: executions after `since` (exchange time), oldest
/// first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FillsReply {
    /// The fills.
    pub fills: Vec<GatewayFill>,
}

/// The order gateway at a glance (the dashboard frame's `gateway`, and the console's
/// panel): each trader's open orders and the newest orders of every trader.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewaySummary {
    /// Whether `POST /api/v1/orders` accepts orders (`gateway.enabled`).
    pub enabled: bool,
    /// One line per trader seen since the start, by name.
    pub traders: Vec<TraderSummary>,
    /// The newest orders (at most 10), newest first.
    pub recent: Vec<GatewayOrder>,
}

/// One trader in [`GatewaySummary`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TraderSummary {
    /// The token name.
    pub name: String,
    /// Orders open now (in flight included).
    pub open: u64,
    /// Orders accepted, among those remembered (`gateway.max_remembered_orders`).
    pub accepted: u64,
    /// Final refusals (halted, risk, venue, exchange), among those remembered.
    pub refused: u64,
}

/// `POST /api/v1/fleet/halt` (operator): halt every node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetHaltRequest {
    /// Why (journaled on every node, shown in every node's halt reason).
    pub reason: String,
}

/// The fleet halt as the JetStream bucket holds it (`gf_fleet_<name>_halt`, key `halt`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetHaltRecord {
    /// The fleet is halted: every node's gate is closed and stays closed until an
    /// administrator clears it and each node walks its own checklist.
    pub active: bool,
    /// Why.
    pub reason: String,
    /// Who: `operator:<name>` or `auto:<condition>`.
    pub by: String,
    /// The node that wrote it.
    pub node: String,
    /// When it was written (RFC 3339).
    pub at: Option<DateTime<Utc>>,
    /// The bucket's revision of this record (compare-and-set writes name it).
    pub revision: u64,
    /// Clearing it takes two different administrators: the writing node's
    /// `fleet.two_person_rule`, which holds whatever the clearing node's own setting.
    pub two_person: bool,
    /// Administrators who asked to clear it (the two-person rule needs two different ones).
    pub approvals: Vec<String>,
    /// Who cleared it, when it is no longer active.
    pub cleared_by: Option<String>,
    /// When it was cleared.
    pub cleared_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/fleet/halt`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHaltReply {
    /// The fleet halt in force.
    pub record: FleetHaltRecord,
    /// `false` when a fleet halt was already in force (this request did not write a second one).
    pub created: bool,
}

/// `POST /api/v1/fleet/resume`'s answer (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetResumeReply {
    /// The record after this request.
    pub record: FleetHaltRecord,
    /// The fleet halt is cleared; each node still walks its own checklist before it resumes.
    pub cleared: bool,
    /// What is still needed when not cleared (the two-person rule's second administrator).
    pub needs: Option<String>,
}

/// One node of the fleet as its newest heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetNode {
    /// The node's id (`fleet.node`).
    pub node: String,
    /// Its halt state.
    pub state: HaltState,
    /// Why it is halted, when it is.
    pub halt_reason: Option<String>,
    /// Its conditions that are breached now.
    pub breached: Vec<String>,
    /// Equity, quote currency.
    pub equity: Num,
    /// Peak equity, quote currency.
    pub peak_equity: Num,
    /// Drawdown from its peak, percent.
    pub drawdown_pct: Num,
    /// Open exposure, quote currency.
    pub exposure: Num,
    /// Its quote currency.
    pub quote: String,
    /// When it sent the heartbeat.
    pub at: Option<DateTime<Utc>>,
    /// Milliseconds since then, by this node's clock.
    pub age_ms: u64,
    /// No heartbeat for longer than the partition timeout.
    pub stale: bool,
}

/// `GET /api/v1/fleet/status` (viewer), the dashboard frame's `fleet` and the console's
/// fleet panel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetStatus {
    /// `fleet.enabled`.
    pub enabled: bool,
    /// The fleet's name.
    pub fleet: String,
    /// This node's id.
    pub node: String,
    /// NATS answered within the partition timeout.
    pub connected: bool,
    /// Milliseconds since NATS last acknowledged this node; `None` before it ever did.
    pub last_contact_ms: Option<u64>,
    /// `fleet.partition_halt_secs`.
    pub partition_halt_secs: u64,
    /// The fleet halt record (`None`: never written, or not read yet).
    pub halt: Option<FleetHaltRecord>,
    /// Every node with a heartbeat in the bucket, by id.
    pub nodes: Vec<FleetNode>,
    /// Summed equity of the nodes sharing this node's quote currency.
    pub total_equity: Num,
    /// `fleet_total_drawdown`: summed drawdown from the nodes' peaks, percent.
    pub total_drawdown_pct: Num,
    /// `fleet_exposure`: summed open exposure.
    pub total_exposure: Num,
}

/// A duration in milliseconds, short, for heartbeat and contact ages on screen: `350ms`,
/// `12.3s`, `4m05s`.
#[must_use]
pub fn format_age_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1_000, (ms % 1_000) / 100)
    } else {
        let secs = ms / 1_000;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// A frame of `WS /ws/orders`. The first frame is `hello`; every other frame carries the
/// trader's sequence number `seq` (1, 2, 3, … per trader, within one `epoch`). A client
/// that reconnects with `?since=<last seq seen>` and the same `epoch` gets every later
/// frame exactly once; `gap` says the frames it asks for are no longer kept (re-read
/// `GET /api/v1/orders` and continue from `head_seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderFeedFrame {
    /// Sent once on connect.
    Hello {
        /// Changes when the daemon restarts: sequence numbers start again at 1.
        epoch: String,
        /// The trader's newest sequence number (0: nothing yet).
        head_seq: u64,
        /// The oldest sequence number still kept (0: nothing kept).
        oldest_seq: u64,
        /// The halt status now.
        status: Box<Status>,
    },
    /// An order changed.
    Order {
        /// Sequence number.
        seq: u64,
        /// The order after the change.
        order: GatewayOrder,
    },
    /// An execution of one of the trader's orders.
    Fill {
        /// Sequence number.
        seq: u64,
        /// The fill.
        fill: GatewayFill,
    },
    /// Trading halted: new orders are refused with `halted` until resumed.
    Halt {
        /// Sequence number.
        seq: u64,
        /// The halt.
        halt: HaltInfo,
    },
    /// Trading resumed.
    Resume {
        /// Sequence number.
        seq: u64,
        /// Who resumed.
        resumed_by: Option<String>,
    },
    /// The frames after `since` are no longer kept (or `since` is from another epoch).
    Gap {
        /// What the client asked for.
        since: u64,
        /// The oldest sequence number kept.
        oldest_seq: u64,
        /// The newest.
        head_seq: u64,
    },
}

impl OrderFeedFrame {
    /// The sequence number, for the frames that have one.
    #[must_use]
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Order { seq, .. }
            | Self::Fill { seq, .. }
            | Self::Halt { seq, .. }
            | Self::Resume { seq, .. } => Some(*seq),
            Self::Hello { .. } | Self::Gap { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_from_the_core_and_unknown_ones_decode_as_unknown() {
        for (core, wire) in [
            (gf_core::HaltState::Running, "running"),
            (gf_core::HaltState::Halting, "halting"),
            (gf_core::HaltState::Halted, "halted"),
            (gf_core::HaltState::Recovering, "recovering"),
        ] {
            // The wire word is the core's own serialisation.
            assert_eq!(serde_json::to_value(core).unwrap(), wire);
            assert_eq!(serde_json::to_value(HaltState::from(core)).unwrap(), wire);
        }
        let paused: HaltState = serde_json::from_str(r#""paused""#).unwrap();
        assert_eq!(paused, HaltState::Unknown);
        assert!(HaltState::Recovering.is_recoverable());
        assert!(!HaltState::Running.is_recoverable());
        assert_eq!(HaltState::Halted.to_string(), "halted");
    }

    #[test]
    fn numbers_are_sent_as_decimal_strings_and_read_from_strings_or_numbers() {
        let n = Num::from(Decimal::new(-1005, 3));
        assert_eq!(serde_json::to_string(&n).unwrap(), r#""-1.005""#);
        // As rust_decimal's own serde writes it (the daemon's figures).
        assert_eq!(
            serde_json::to_value(Decimal::new(-1005, 3)).unwrap(),
            serde_json::to_value(&n).unwrap()
        );
        for (json, show) in [
            (r#""0.123456""#, "0.12"),
            ("2", "2"),
            ("null", "-"),
            (r#""-1.005""#, "-1"),
        ] {
            let n: Num = serde_json::from_str(json).unwrap();
            assert_eq!(n.show(2), show, "{json}");
        }
        assert!(Num::from("-0.1").is_negative());
        assert!(!Num::from("0").is_negative());
    }

    #[test]
    fn answers_default_missing_fields_and_ignore_unknown_ones() {
        let status: Status = serde_json::from_str(
            r#"{"state":"halting","brand_new":{"x":1},"halt":{"id":3,"source":"cli","future":[]}}"#,
        )
        .unwrap();
        assert_eq!(status.core.state, HaltState::Halting);
        assert_eq!(status.core.halt.as_ref().unwrap().id, 3);
        assert!(status.core.checklist_missing.is_empty());
        // Requests are strict: the daemon refuses what it does not know.
        assert!(serde_json::from_str::<HaltRequest>(r#"{"reason":"x","force":true}"#).is_err());
        assert!(serde_json::from_str::<CompleteRequest>(r#"{"notes":"x"}"#).is_err());
        let empty: CompleteRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.note, None);
    }
}
