//! The event vocabulary of the whole system.
//!
//! An [`Event`] is a timestamp, a [`Source`] and a [`Payload`]. Its JSON form is the wire
//! format of the WebSocket API and of the journal, so field names are stable:
//!
//! ```json
//! {"ts":"2026-01-01T00:00:00Z","source":"market","kind":"trade",
//!  "data":{"pair":"XRP/USD","side":"buy","price":"0.5","qty":"10","trade_id":1}}
//! ```
//!
//! Money is always a decimal string. Adding a variant is backwards compatible; renaming a
//! field is not.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::types::{
    ClientOrderId, Fill, Level, OrderId, OrderRequest, OrderStatus, Pair, Price, Qty, Side,
};

/// Which component emitted an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// gf-market, live Kraken WebSocket.
    Market,
    /// gf-market replaying a recording.
    Replay,
    /// A strategy.
    Strategy,
    /// gf-risk.
    Risk,
    /// gf-exec, live Kraken REST.
    Exec,
    /// gf-exec's paper exchange.
    Paper,
    /// gf-halt.
    Halt,
    /// gf-secrets.
    Secrets,
    /// gf-monitor.
    Monitor,
    /// gf-daemon (API, signals, lifecycle).
    Daemon,
    /// gf-console.
    Console,
    /// A test or a research harness.
    Test,
}

/// One event on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, from the emitter's [`crate::Clock`].
    pub ts: DateTime<Utc>,
    /// Who emitted it.
    pub source: Source,
    /// What happened.
    #[serde(flatten)]
    pub payload: Payload,
}

impl Event {
    /// An event.
    #[must_use]
    pub fn new(ts: DateTime<Utc>, source: Source, payload: Payload) -> Self {
        Self {
            ts,
            source,
            payload,
        }
    }

    /// The payload's kind.
    #[must_use]
    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }
}

/// The state of the halt state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltState {
    /// Trading normally; the gate is open.
    Running,
    /// A trigger fired: the gate is closed, cancels and closures are in progress.
    Halting,
    /// Stopped; waiting for an operator.
    Halted,
    /// An operator is working through the recovery checklist.
    Recovering,
}

impl fmt::Display for HaltState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HaltState::Running => "running",
            HaltState::Halting => "halting",
            HaltState::Halted => "halted",
            HaltState::Recovering => "recovering",
        })
    }
}

/// Who or what triggered a halt. Serialised as `auto:<condition>`, `api:<operator>`,
/// `console:<operator>`, `cli`, `signal` or `fleet`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaltSource {
    /// An automatic condition, by id.
    Auto(String),
    /// An operator through the HTTP API.
    Api(String),
    /// An operator through the console.
    Console(String),
    /// The command line.
    Cli,
    /// A Unix signal (SIGUSR1).
    Signal,
    /// Another daemon of the fleet.
    Fleet,
}

impl fmt::Display for HaltSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltSource::Auto(c) => write!(f, "auto:{c}"),
            HaltSource::Api(o) => write!(f, "api:{o}"),
            HaltSource::Console(o) => write!(f, "console:{o}"),
            HaltSource::Cli => f.write_str("cli"),
            HaltSource::Signal => f.write_str("signal"),
            HaltSource::Fleet => f.write_str("fleet"),
        }
    }
}

impl FromStr for HaltSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let named = |rest: &str, make: fn(String) -> HaltSource| {
            if rest.is_empty() || rest.chars().any(char::is_control) {
                Err(Error::InvalidHaltSource(s.to_owned()))
            } else {
                Ok(make(rest.to_owned()))
            }
        };
        match s {
            "cli" => Ok(HaltSource::Cli),
            "signal" => Ok(HaltSource::Signal),
            "fleet" => Ok(HaltSource::Fleet),
            _ => match s.split_once(':') {
                Some(("auto", rest)) => named(rest, HaltSource::Auto),
                Some(("api", rest)) => named(rest, HaltSource::Api),
                Some(("console", rest)) => named(rest, HaltSource::Console),
                _ => Err(Error::InvalidHaltSource(s.to_owned())),
            },
        }
    }
}

impl Serialize for HaltSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HaltSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Market-data connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Dialling.
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// Lost; a reconnect is scheduled.
    Disconnected,
}

/// Classes of exchange API errors (gf-halt's error-rate condition counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// `EAPI:Invalid nonce`.
    InvalidNonce,
    /// `EAPI:Invalid key` / `EAPI:Invalid signature`.
    Authentication,
    /// `EGeneral:Permission denied`.
    PermissionDenied,
    /// `EOrder:Insufficient funds`.
    InsufficientFunds,
    /// `EAPI:Rate limit exceeded`, `EOrder:Rate limit exceeded`.
    RateLimit,
    /// `EService:Unavailable`, `EService:Busy`, 5xx.
    ServiceUnavailable,
    /// `EGeneral:Invalid arguments…`.
    InvalidArguments,
    /// `EOrder:Unknown order`.
    UnknownOrder,
    /// No answer in time.
    Timeout,
    /// Connection-level failure.
    Network,
    /// The answer could not be parsed.
    MalformedResponse,
    /// Anything else the exchange said.
    Other,
}

/// The trading engine's mode as Kraken reports it: REST `SystemStatus` and the WebSocket v2
/// `status` channel (sent on connect and on every change). Documented values: `online`,
/// `maintenance` (no new orders, no cancels), `cancel_only` (cancels only, no matching),
/// `post_only` (only post-only limit orders, and cancels) — docs.kraken.com
/// spot-websocket-v2/status and api-reference/market-data/get-system-status. `limit_only`
/// is not among the documented values of either; any value not listed here is
/// [`ExchangeSystem::Unknown`] and treated like `maintenance` (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeSystem {
    /// Markets operate normally.
    Online,
    /// Offline for maintenance: no new orders, and existing orders cannot be cancelled.
    Maintenance,
    /// Orders can be cancelled, no new orders are accepted, nothing matches.
    CancelOnly,
    /// Only limit orders with the `post_only` flag (and cancels) are accepted.
    PostOnly,
    /// A value Kraken did not document (or none could be read).
    #[serde(other)]
    Unknown,
}

impl ExchangeSystem {
    /// From Kraken's text; anything undocumented is [`ExchangeSystem::Unknown`].
    #[must_use]
    pub fn from_kraken(text: &str) -> Self {
        match text {
            "online" => Self::Online,
            "maintenance" => Self::Maintenance,
            "cancel_only" => Self::CancelOnly,
            "post_only" => Self::PostOnly,
            _ => Self::Unknown,
        }
    }

    /// Kraken's name for it (`unknown` for [`ExchangeSystem::Unknown`]).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Maintenance => "maintenance",
            Self::CancelOnly => "cancel_only",
            Self::PostOnly => "post_only",
            Self::Unknown => "unknown",
        }
    }

    /// Whether this mode halts the daemon: `maintenance`, and any undocumented value.
    #[must_use]
    pub fn halts(self) -> bool {
        matches!(self, Self::Maintenance | Self::Unknown)
    }
}

impl fmt::Display for ExchangeSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Alert severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look soon.
    Warning,
    /// Someone must look now.
    Critical,
}

/// Whether an alert is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// The condition cleared.
    Resolved,
}

/// Outcome of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Fine.
    Healthy,
    /// Working, but impaired.
    Degraded,
    /// Not working.
    Unhealthy,
}

/// Market data: a full book snapshot (after the checksum verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookSnapshot {
    /// The pair.
    pub pair: Pair,
    /// Bids, best (highest) first.
    pub bids: Vec<Level>,
    /// Asks, best (lowest) first.
    pub asks: Vec<Level>,
    /// Kraken's CRC32 of the top of book, verified.
    pub checksum: u32,
}

/// The levels of one side of a book update: up to [`INLINE_LEVELS`] held inline, so
/// the usual update (a level or two per side) costs no heap allocation. It dereferences
/// to a slice; build one with `vec![…].into()`, `Levels::new()` and `push`, or
/// `collect()`. JSON: an array, as a `Vec` would be.
pub type Levels = smallvec::SmallVec<[Level; INLINE_LEVELS]>;

/// Levels per side a [`Levels`] holds without allocating.
pub const INLINE_LEVELS: usize = 4;

/// Market data: an incremental book update (after the checksum verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookUpdate {
    /// The pair.
    pub pair: Pair,
    /// Changed bid levels; quantity zero removes the level.
    pub bids: Levels,
    /// Changed ask levels; quantity zero removes the level.
    pub asks: Levels,
    /// Kraken's CRC32 of the resulting top of book, verified.
    pub checksum: u32,
    /// Best bid after the update.
    pub best_bid: Option<Level>,
    /// Best ask after the update.
    pub best_ask: Option<Level>,
}

/// Payload of every event kind. JSON: `"kind": "<snake_case name>", "data": {…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Payload {
    /// A verified full book.
    BookSnapshot(BookSnapshot),
    /// A verified book update.
    BookUpdate(BookUpdate),
    /// A book failed verification and is being resynchronised; do not use it.
    BookInvalid {
        /// The pair.
        pair: Pair,
        /// Why (e.g. "checksum mismatch: expected 123, computed 456").
        reason: String,
    },
    /// A public trade.
    Trade {
        /// The pair.
        pair: Pair,
        /// Taker side.
        side: Side,
        /// Price.
        price: Price,
        /// Quantity.
        qty: Qty,
        /// Kraken's trade id.
        trade_id: u64,
    },
    /// A ticker.
    Ticker {
        /// The pair.
        pair: Pair,
        /// Best bid.
        bid: Price,
        /// Best ask.
        ask: Price,
        /// Last trade price.
        last: Price,
        /// 24h volume in base currency.
        volume: Qty,
    },
    /// Market data for a pair crossed (or came back under) the staleness threshold.
    Staleness {
        /// The pair.
        pair: Pair,
        /// `true` when stale, `false` when fresh again.
        stale: bool,
        /// Milliseconds since the last message for the pair.
        age_ms: u64,
        /// The configured threshold, milliseconds.
        threshold_ms: u64,
    },
    /// The market-data connection changed state.
    Connection {
        /// New state.
        state: ConnectionState,
        /// Detail (URL, error, attempt number).
        detail: String,
    },
    /// A strategy wants a position.
    Signal {
        /// Strategy name.
        strategy: String,
        /// The pair.
        pair: Pair,
        /// Direction.
        side: Side,
        /// Intended entry price.
        entry: Price,
        /// Protective stop, if any.
        stop: Option<Price>,
    },
    /// An order was requested (before the gate and risk checks).
    OrderRequested(OrderRequest),
    /// An order changed status.
    OrderUpdate {
        /// Our id.
        client_order_id: ClientOrderId,
        /// The exchange's id, once known.
        order_id: Option<OrderId>,
        /// The pair.
        pair: Pair,
        /// New status.
        status: OrderStatus,
        /// Quantity filled so far.
        filled_qty: Qty,
        /// Why, for rejections and cancellations.
        reason: Option<String>,
    },
    /// An execution.
    Fill(Fill),
    /// An exchange API call failed.
    ApiError {
        /// The endpoint (e.g. `AddOrder`).
        endpoint: String,
        /// Error class.
        kind: ApiErrorKind,
        /// The exchange's text or the transport error.
        message: String,
        /// Whether retrying may succeed.
        retryable: bool,
    },
    /// How long one stage took (market ingest, order ack, halt phases …).
    Latency {
        /// Stage name, e.g. `order_ack`, `halt_gate_closed`.
        stage: String,
        /// Duration in microseconds.
        micros: u64,
    },
    /// A halt trigger fired.
    HaltTriggered {
        /// Who or what.
        source: HaltSource,
        /// Why, in words.
        reason: String,
    },
    /// The halt state machine moved.
    HaltStateChanged {
        /// Previous state.
        from: HaltState,
        /// New state.
        to: HaltState,
        /// The trigger or operator behind the move.
        source: HaltSource,
        /// Why.
        reason: String,
    },
    /// Trading resumed after recovery.
    Resumed {
        /// The operator who confirmed resume.
        operator: String,
    },
    /// A recovery checklist item was completed.
    ChecklistStep {
        /// Item id.
        item: String,
        /// Who completed it.
        operator: String,
        /// Optional note.
        note: Option<String>,
    },
    /// The result of automatic position closure.
    ClosureResult {
        /// `true` when every position is flat.
        flat: bool,
        /// What is left, per pair, and why, when not flat.
        detail: String,
    },
    /// A condition's value changed (for dashboards).
    ConditionValue {
        /// Condition id.
        id: String,
        /// Current value.
        value: Decimal,
        /// Threshold.
        threshold: Decimal,
        /// Whether it is breached.
        triggered: bool,
    },
    /// An alert fired or resolved.
    Alert {
        /// De-duplication key.
        key: String,
        /// Severity.
        severity: Severity,
        /// Firing or resolved.
        status: AlertStatus,
        /// One line.
        summary: String,
    },
    /// A health check result.
    Health {
        /// Check name.
        check: String,
        /// Outcome.
        status: HealthStatus,
        /// Detail.
        message: String,
        /// How long the check took, microseconds.
        latency_micros: u64,
    },
    /// The exchange reported its trading mode (WebSocket `status` channel or REST
    /// `SystemStatus`).
    ExchangeStatus {
        /// The mode.
        system: ExchangeSystem,
        /// Where it was read (`ws status`, `rest SystemStatus`) and, for an undocumented
        /// value, what Kraken sent.
        detail: String,
    },
    /// A secret was accessed or rotated (never the secret itself).
    SecretAudit {
        /// The secret set (e.g. `kraken`).
        set: String,
        /// Provider name.
        provider: String,
        /// Version read or rotated to.
        version: Option<String>,
        /// What happened (`fetch`, `rotate`, …).
        action: String,
        /// `ok` or the error.
        outcome: String,
    },
}

impl Payload {
    /// The `OrderUpdate` that says `order` was rejected before it was sent (a pre-trade
    /// check refused it), nothing filled.
    #[must_use]
    pub fn rejected(order: &OrderRequest, reason: impl Into<String>) -> Self {
        Payload::OrderUpdate {
            client_order_id: order.client_order_id.clone(),
            order_id: None,
            pair: order.pair.clone(),
            status: OrderStatus::Rejected,
            filled_qty: Decimal::ZERO,
            reason: Some(reason.into()),
        }
    }
}

macro_rules! kinds {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The kind of a payload, for subscriptions and metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl EventKind {
            /// Every kind.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The stable snake_case name (the JSON `kind`).
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }

        impl Payload {
            /// This payload's kind.
            #[must_use]
            pub fn kind(&self) -> EventKind {
                match self {
                    $(Payload::$variant { .. } => EventKind::$variant,)*
                }
            }
        }
    };
}

kinds! {
    BookSnapshot => "book_snapshot",
    BookUpdate => "book_update",
    BookInvalid => "book_invalid",
    Trade => "trade",
    Ticker => "ticker",
    Staleness => "staleness",
    Connection => "connection",
    Signal => "signal",
    OrderRequested => "order_requested",
    OrderUpdate => "order_update",
    Fill => "fill",
    ApiError => "api_error",
    Latency => "latency",
    HaltTriggered => "halt_triggered",
    HaltStateChanged => "halt_state_changed",
    Resumed => "resumed",
    ChecklistStep => "checklist_step",
    ClosureResult => "closure_result",
    ConditionValue => "condition_value",
    Alert => "alert",
    Health => "health",
    SecretAudit => "secret_audit",
    ExchangeStatus => "exchange_status",
}

impl EventKind {
    /// Halt-family kinds: triggers, transitions, resume, checklist steps, closure results.
    /// They ride the bus's lossless lane (see [`EventKind::is_lossless`]).
    #[must_use]
    pub fn is_critical(self) -> bool {
        matches!(
            self,
            EventKind::HaltTriggered
                | EventKind::HaltStateChanged
                | EventKind::Resumed
                | EventKind::ChecklistStep
                | EventKind::ClosureResult
        )
    }

    /// Kinds that risk and halt decisions are made on: fills, order updates, API errors,
    /// closure results and the exchange's status. Missing one would leave a position, an
    /// open order, an error count or the venue's mode wrong, so they ride the bus's
    /// lossless lane.
    #[must_use]
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            EventKind::Fill
                | EventKind::OrderUpdate
                | EventKind::ApiError
                | EventKind::ClosureResult
                | EventKind::ExchangeStatus
        )
    }

    /// Kinds the bus never drops, however far a subscriber lags: the halt family
    /// ([`EventKind::is_critical`]) and the decision kinds ([`EventKind::is_decision`]).
    /// They are rare next to market data (a handful per order or halt).
    #[must_use]
    pub fn is_lossless(self) -> bool {
        self.is_critical() || self.is_decision()
    }

    /// Market-data kinds.
    #[must_use]
    pub fn is_market_data(self) -> bool {
        matches!(
            self,
            EventKind::BookSnapshot
                | EventKind::BookUpdate
                | EventKind::BookInvalid
                | EventKind::Trade
                | EventKind::Ticker
                | EventKind::Staleness
                | EventKind::Connection
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of event kinds (a bit set), for typed subscriptions.
///
/// ```
/// use gf_core::{EventKind, KindSet};
/// let set = KindSet::of(&[EventKind::Fill, EventKind::Trade]);
/// assert!(set.contains(EventKind::Fill));
/// assert!(!set.contains(EventKind::Ticker));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet(u64);

impl KindSet {
    /// Every kind.
    pub const ALL: KindSet = KindSet(u64::MAX);
    /// No kind.
    pub const NONE: KindSet = KindSet(0);

    /// The given kinds.
    #[must_use]
    pub fn of(kinds: &[EventKind]) -> Self {
        kinds.iter().fold(Self::NONE, |set, &k| set.with(k))
    }

    /// Market-data kinds.
    #[must_use]
    pub fn market_data() -> Self {
        Self::matching(EventKind::is_market_data)
    }

    /// Halt-family kinds ([`EventKind::is_critical`]).
    #[must_use]
    pub fn critical() -> Self {
        Self::matching(EventKind::is_critical)
    }

    /// Decision kinds ([`EventKind::is_decision`]).
    #[must_use]
    pub fn decision() -> Self {
        Self::matching(EventKind::is_decision)
    }

    /// Kinds the bus never drops ([`EventKind::is_lossless`]).
    #[must_use]
    pub fn lossless() -> Self {
        Self::matching(EventKind::is_lossless)
    }

    fn matching(pred: fn(EventKind) -> bool) -> Self {
        EventKind::ALL
            .iter()
            .filter(|k| pred(**k))
            .fold(Self::NONE, |set, &k| set.with(k))
    }

    /// This set plus `kind`.
    #[must_use]
    pub const fn with(self, kind: EventKind) -> Self {
        KindSet(self.0 | (1 << kind as u8))
    }

    /// Whether `kind` is in the set.
    #[inline]
    #[must_use]
    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    /// The kinds in either set.
    #[must_use]
    pub const fn union(self, other: KindSet) -> Self {
        KindSet(self.0 | other.0)
    }

    /// The kinds in both sets.
    #[must_use]
    pub const fn intersection(self, other: KindSet) -> Self {
        KindSet(self.0 & other.0)
    }

    /// The kinds in this set and not in `other`.
    ///
    /// ```
    /// use gf_core::{EventKind, KindSet};
    /// let set = KindSet::of(&[EventKind::Fill, EventKind::Trade]);
    /// let rest = set.difference(KindSet::of(&[EventKind::Trade]));
    /// assert!(rest.contains(EventKind::Fill) && !rest.contains(EventKind::Trade));
    /// ```
    #[must_use]
    pub const fn difference(self, other: KindSet) -> Self {
        KindSet(self.0 & !other.0)
    }

    /// Whether no kind is in the set.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn wire_format_is_stable() {
        let ev = Event::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            Source::Market,
            Payload::Trade {
                pair: Pair::new("XRP/USD").unwrap(),
                side: Side::Buy,
                price: Decimal::new(5, 1),
                qty: Decimal::new(10, 0),
                trade_id: 1,
            },
        );
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"ts":"2026-01-01T00:00:00Z","source":"market","kind":"trade","data":{"pair":"XRP/USD","side":"buy","price":"0.5","qty":"10","trade_id":1}}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn halt_source_round_trips_and_rejects() {
        for s in [
            "auto:max_drawdown",
            "api:alice",
            "console:bob",
            "cli",
            "signal",
            "fleet",
        ] {
            let parsed: HaltSource = s.parse().unwrap();
            assert_eq!(parsed.to_string(), s);
        }
        for bad in ["auto:", "api", "manual", "console:\n", ""] {
            assert!(bad.parse::<HaltSource>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kraken_system_modes_are_read_and_only_maintenance_or_unknown_halts() {
        for (text, mode, halts) in [
            ("online", ExchangeSystem::Online, false),
            ("maintenance", ExchangeSystem::Maintenance, true),
            ("cancel_only", ExchangeSystem::CancelOnly, false),
            ("post_only", ExchangeSystem::PostOnly, false),
            ("limit_only", ExchangeSystem::Unknown, true),
            ("", ExchangeSystem::Unknown, true),
            ("Online", ExchangeSystem::Unknown, true),
        ] {
            let read = ExchangeSystem::from_kraken(text);
            assert_eq!(read, mode, "{text:?}");
            assert_eq!(read.halts(), halts, "{text:?}");
        }
        for mode in [
            ExchangeSystem::Online,
            ExchangeSystem::Maintenance,
            ExchangeSystem::CancelOnly,
            ExchangeSystem::PostOnly,
        ] {
            assert_eq!(ExchangeSystem::from_kraken(mode.name()), mode);
            assert_eq!(mode.to_string(), mode.name());
            // The wire form is Kraken's name too.
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                serde_json::Value::from(mode.name())
            );
        }
        assert_eq!(ExchangeSystem::Unknown.to_string(), "unknown");
    }

    #[test]
    fn halt_states_and_kinds_display_their_wire_names() {
        for state in [
            HaltState::Running,
            HaltState::Halting,
            HaltState::Halted,
            HaltState::Recovering,
        ] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.to_string())
            );
        }
        assert_eq!(HaltState::Recovering.to_string(), "recovering");
        for kind in EventKind::ALL {
            assert_eq!(kind.to_string(), kind.name());
        }
    }

    #[test]
    fn kind_names_match_serde_tags() {
        let ev = Payload::Resumed {
            operator: "alice".into(),
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["kind"], ev.kind().name());
        assert!(EventKind::ALL.len() < 64, "KindSet is a u64 bit set");
    }
}
