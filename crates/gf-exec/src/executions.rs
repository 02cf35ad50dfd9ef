//! Fills pushed, not polled: the private Kraken WebSocket v2 `executions` channel, with
//! REST order-status polling as the fallback while the socket is down.
//!
//! [`ExecutionsFeed::run`] fetches a token (`GetWebSocketsToken`, a fresh one for every
//! connection: Kraken's token must be used to subscribe within 15 minutes and stays valid
//! only while its connection is up), connects to `wss://ws-auth.kraken.com/v2`, subscribes
//! to `executions` and turns every pushed execution into the same cumulative update REST
//! sync makes ([`KrakenClient`]'s one place that publishes fills). Both sources report an
//! order's *cumulative* quantity, cost and status, and a report is applied only forwards,
//! so an execution seen by both is published exactly once, by whichever saw it first. A
//! trade pushed before `AddOrder` has answered (a market order) is held until the order
//! is tracked.
//!
//! The feed is **live** once it is subscribed and has caught up — one REST order-status
//! sync right after every acknowledged subscription, for what executed while the socket
//! was down — and as long as it is not silent: Kraken sends a `heartbeat` about once a
//! second on a subscribed connection, so [`ExecutionsConfig::heartbeat_timeout`] without
//! any message counts as a dead connection (dropped, reconnected with jittered backoff and
//! a new token). [`KrakenClient::spawn_sync_fallback`] polls REST by that state: rarely
//! while live (a safety net), every [`SyncPlan::while_down`] while not.
//!
//! A message that does not parse is counted ([`FeedStats::malformed`]) and logged by its
//! error, never quoted, and never ends the feed.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gf_core::backoff::Backoff;
use gf_core::{OrderId, OrderStatus};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::Error;
use crate::kraken::{Applied, Cumulative, FeeUpdate, KrakenClient};

/// Kraken's private WebSocket v2 endpoint (docs.kraken.com, "Spot WebSocket": v2 private
/// `wss://ws-auth.kraken.com/v2`).
pub const DEFAULT_WS_AUTH_URL: &str = "wss://ws-auth.kraken.com/v2";

/// Settings of the `executions` feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionsConfig {
    /// `wss://ws-auth.kraken.com/v2`, or the mock's `ws://127.0.0.1:…/v2`.
    pub url: String,
    /// Silence (no message at all) after which a subscribed connection counts as dead.
    /// Kraken's heartbeat comes about once a second.
    pub heartbeat_timeout: Duration,
    /// Connect (TCP + TLS + upgrade) timeout; also bounds each write.
    pub connect_timeout: Duration,
    /// How long the subscribe acknowledgement may take.
    pub subscribe_timeout: Duration,
    /// First reconnect delay bound (full jitter).
    pub reconnect_initial: Duration,
    /// Largest reconnect delay bound.
    pub reconnect_max: Duration,
}

impl ExecutionsConfig {
    /// Defaults for `url`: heartbeat timeout 10 s, connect and subscribe 10 s, backoff
    /// 500 ms to 30 s.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            heartbeat_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            subscribe_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
        }
    }

    /// From the configuration: `exchange.ws_auth_url`, the heartbeat timeout and reconnect
    /// bounds of `[market]` (the same Kraken WebSocket service).
    #[must_use]
    pub fn from_config(cfg: &gf_core::Config) -> Self {
        let mut c = Self::new(cfg.exchange.ws_auth_url.clone());
        c.heartbeat_timeout = Duration::from_secs(cfg.market.heartbeat_timeout_secs.max(1));
        c.reconnect_initial = Duration::from_millis(cfg.market.reconnect_initial_ms.max(1));
        c.reconnect_max = Duration::from_millis(
            cfg.market
                .reconnect_max_ms
                .max(cfg.market.reconnect_initial_ms),
        );
        c
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not `ws://` or `wss://`, or a zero timeout.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(Error::Config {
                key: "exchange.ws_auth_url".into(),
                value: self.url.clone(),
                reason: "expected a ws:// or wss:// url".into(),
            });
        }
        if self.heartbeat_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.subscribe_timeout.is_zero()
        {
            return Err(Error::Config {
                key: "exchange.ws_auth_url".into(),
                value: self.url.clone(),
                reason: "timeouts must be positive".into(),
            });
        }
        Ok(())
    }
}

/// The feed's state, watched by the REST fallback ([`ExecutionsFeed::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedState {
    /// Subscribed, caught up by REST after subscribing, and not silent past the heartbeat
    /// timeout.
    pub live: bool,
    /// Subscriptions that went live so far (a new one after each reconnect).
    pub sessions: u64,
}

/// Counters of the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedStats {
    /// Text messages received.
    pub messages: u64,
    /// Executions (update entries) applied or held.
    pub executions: u64,
    /// Executions that published a fill when applied (one held for an order not yet
    /// tracked publishes when the order is, and is not counted here).
    pub fills: u64,
    /// Messages or entries that did not parse.
    pub malformed: u64,
    /// Connections lost (or never subscribed) and retried.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    executions: AtomicU64,
    fills: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `executions` feed of one [`KrakenClient`]. See the module docs.
pub struct ExecutionsFeed {
    client: Arc<KrakenClient>,
    cfg: ExecutionsConfig,
    state: watch::Sender<FeedState>,
    counters: Counters,
    req_id: AtomicU64,
}

impl std::fmt::Debug for ExecutionsFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionsFeed")
            .field("url", &self.cfg.url)
            .field("state", &*self.state.borrow())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What one text message was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Handled {
    /// The acknowledgement of our subscribe request.
    Subscribed,
    /// Our subscribe request was refused (Kraken's error string).
    Refused(String),
    /// Anything else (heartbeat, snapshot, update, pong, another channel).
    Other,
}

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, borrow)]
    data: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    req_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RawExecution<'a> {
    exec_type: String,
    order_id: String,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    order_status: Option<String>,
    #[serde(default, borrow)]
    cum_qty: Option<&'a RawValue>,
    #[serde(default, borrow)]
    cum_cost: Option<&'a RawValue>,
    #[serde(default, borrow)]
    avg_price: Option<&'a RawValue>,
    #[serde(default, borrow)]
    last_qty: Option<&'a RawValue>,
    #[serde(default, borrow)]
    fees: Option<Vec<RawFee<'a>>>,
}

#[derive(Debug, Deserialize)]
struct RawFee<'a> {
    asset: String,
    #[serde(borrow)]
    qty: &'a RawValue,
}

/// An exact decimal from a v2 JSON number (Kraken writes money as numbers) or a quoted
/// decimal; never through `f64`.
fn decimal(raw: &RawValue, field: &str) -> Result<Decimal, String> {
    let text = raw.get().trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text)
            .ok()
            .or_else(|| Decimal::from_str(text).ok())
    };
    parsed.ok_or_else(|| format!("{field} is not a decimal number"))
}

fn non_negative(raw: &RawValue, field: &str) -> Result<Decimal, String> {
    let d = decimal(raw, field)?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!("{field} is negative"));
    }
    Ok(d)
}

/// Kraken v2 `order_status` (docs.kraken.com, WebSocket v2 `executions`): `pending_new`,
/// `new`, `partially_filled`, `filled`, `canceled`, `expired`.
fn order_status(text: &str) -> Option<OrderStatus> {
    Some(match text {
        "pending_new" => OrderStatus::Pending,
        "new" => OrderStatus::Open,
        "partially_filled" => OrderStatus::PartiallyFilled,
        "filled" => OrderStatus::Filled,
        "canceled" | "cancelled" => OrderStatus::Cancelled,
        "expired" => OrderStatus::Expired,
        _ => return None,
    })
}

/// One pushed execution as the cumulative report the client applies: `None` when it
/// carries nothing to apply (a terminal status without its cumulative quantity: REST
/// confirms it instead, so no execution can be skipped by marking the order done).
fn to_cumulative(
    e: &RawExecution<'_>,
    known_filled: Option<(Decimal, Decimal)>,
) -> Result<Option<Cumulative>, String> {
    let status = match e.order_status.as_deref() {
        Some(s) => order_status(s).ok_or_else(|| format!("unknown order_status {s:?}"))?,
        None if e.exec_type == "trade" => return Err("trade without order_status".into()),
        None => match order_status(&e.exec_type) {
            Some(s) => s,
            // `amended`, `restated`, `status`, … without a status: nothing to apply.
            None => return Ok(None),
        },
    };
    let avg_price = e
        .avg_price
        .map(|p| non_negative(p, "avg_price"))
        .transpose()?
        .filter(|p| !p.is_zero());
    let quote = e
        .symbol
        .as_deref()
        .and_then(|s| s.split_once('/'))
        .map(|(_, q)| q.to_owned());
    let mut fee = Decimal::ZERO;
    for f in e.fees.iter().flatten() {
        let qty = non_negative(f.qty, "fees.qty")?;
        // Fees are charged in the quote currency unless the account asked otherwise; a
        // fee in another asset is not a quote amount and is left to REST's total.
        if quote.as_deref().is_none_or(|q| q == f.asset) {
            fee = fee.checked_add(qty).ok_or("fees overflow")?;
        }
    }
    match (e.cum_qty, e.cum_cost) {
        (Some(qty), Some(cost)) => {
            if e.exec_type == "trade" {
                let last = e.last_qty.ok_or("trade without last_qty")?;
                if non_negative(last, "last_qty")?.is_zero() {
                    return Err("trade with last_qty 0".into());
                }
            }
            Ok(Some(Cumulative {
                status,
                filled: non_negative(qty, "cum_qty")?,
                cost: non_negative(cost, "cum_cost")?,
                fee: FeeUpdate::Add(fee),
                avg_price,
            }))
        }
        _ if e.exec_type == "trade" => Err("trade without cum_qty and cum_cost".into()),
        _ if status.is_terminal() => Ok(None),
        // A status change without quantities: the quantities stay as known.
        _ => {
            let (filled, cost) = known_filled.unwrap_or_default();
            Ok(Some(Cumulative {
                status,
                filled,
                cost,
                fee: FeeUpdate::Add(Decimal::ZERO),
                avg_price,
            }))
        }
    }
}

impl ExecutionsFeed {
    /// A feed for `client` (which tracks the orders and publishes the fills).
    ///
    /// # Errors
    /// As [`ExecutionsConfig::validate`].
    pub fn new(client: Arc<KrakenClient>, cfg: ExecutionsConfig) -> Result<Self, Error> {
        cfg.validate()?;
        Ok(Self {
            client,
            cfg,
            state: watch::Sender::new(FeedState::default()),
            counters: Counters::default(),
            req_id: AtomicU64::new(0),
        })
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ExecutionsConfig {
        &self.cfg
    }

    /// Watches the feed's state (live, sessions).
    #[must_use]
    pub fn state(&self) -> watch::Receiver<FeedState> {
        self.state.subscribe()
    }

    /// Whether fills are being pushed now: subscribed and not silent.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.state.borrow().live
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> FeedStats {
        let c = &self.counters;
        FeedStats {
            messages: c.messages.load(Ordering::Relaxed),
            executions: c.executions.load(Ordering::Relaxed),
            fills: c.fills.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Connects, subscribes and applies executions, reconnecting (with a fresh token)
    /// after every loss, forever; stop it by dropping the future (the daemon selects it
    /// against its shutdown).
    pub async fn run(&self) {
        let mut backoff = Backoff::new(self.cfg.reconnect_initial, self.cfg.reconnect_max);
        loop {
            let reason = self.session(&mut backoff).await;
            self.state.send_modify(|s| s.live = false);
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            let delay = backoff.next_delay();
            tracing::warn!(%reason, ?delay, "kraken executions feed down; REST polls every second until it is back");
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection: token, connect, subscribe, read until lost. Returns why it ended.
    async fn session(&self, backoff: &mut Backoff) -> String {
        // A fresh token for every connection (see the module docs).
        let token = match self.client.websockets_token().await {
            Ok(t) => t,
            Err(e) => return format!("GetWebSocketsToken failed: {e}"),
        };
        let connect = tokio_tungstenite::connect_async(self.cfg.url.as_str());
        let mut ws: Ws = match tokio::time::timeout(self.cfg.connect_timeout, connect).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return format!("connect failed: {e}"),
            Err(_) => return "connect timed out".into(),
        };
        let req_id = self.req_id.fetch_add(1, Ordering::Relaxed) + 1;
        // Kraken v2 `executions` subscribe (docs.kraken.com, WebSocket v2 `executions`):
        // open orders in the snapshot, not the last 50 trades (the REST sync that follows
        // every subscription catches up on what executed meanwhile).
        let request = zeroize::Zeroizing::new(
            serde_json::json!({
                "method": "subscribe",
                "params": {
                    "channel": "executions",
                    "token": token.expose(),
                    "snap_orders": true,
                    "snap_trades": false,
                },
                "req_id": req_id,
            })
            .to_string(),
        );
        drop(token);
        let sent = tokio::time::timeout(
            self.cfg.connect_timeout,
            ws.send(WsMessage::text(request.as_str())),
        )
        .await;
        drop(request);
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return format!("subscribe send failed: {e}"),
            Err(_) => return "subscribe send timed out".into(),
        }
        let reason = self.read(&mut ws, req_id, backoff).await;
        let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
        reason
    }

    /// Reads until the connection is lost, silent or refused.
    async fn read(&self, ws: &mut Ws, req_id: u64, backoff: &mut Backoff) -> String {
        let mut subscribed = false;
        let mut deadline = Instant::now() + self.cfg.subscribe_timeout;
        loop {
            let next = tokio::select! {
                msg = ws.next() => msg,
                () = tokio::time::sleep_until(deadline) => {
                    return if subscribed {
                        format!("silent for {:?} (no heartbeat)", self.cfg.heartbeat_timeout)
                    } else {
                        "no subscribe acknowledgement".into()
                    };
                }
            };
            match next {
                None => return "connection closed".into(),
                Some(Err(e)) => return format!("read failed: {e}"),
                Some(Ok(WsMessage::Close(_))) => return "closed by the server".into(),
                Some(Ok(WsMessage::Text(text))) => match self.handle_text(text.as_str(), req_id) {
                    Handled::Subscribed => {
                        // Catch up on what executed while the socket was down, before
                        // REST polling slows down (pushes meanwhile wait in the socket;
                        // applying a report twice publishes nothing twice).
                        if let Err(e) = self.client.sync_orders().await {
                            return format!("catch-up order sync failed: {e}");
                        }
                        subscribed = true;
                        backoff.reset();
                        self.state.send_modify(|s| {
                            s.live = true;
                            s.sessions += 1;
                        });
                        tracing::info!("kraken executions feed subscribed: fills are pushed");
                    }
                    Handled::Refused(error) => {
                        return format!("subscribe refused: {}", short(&error));
                    }
                    Handled::Other => {}
                },
                Some(Ok(WsMessage::Ping(_))) => {
                    // tungstenite queued the pong; flush it.
                    let _ = ws.flush().await;
                }
                Some(Ok(_)) => {}
            }
            if subscribed {
                deadline = Instant::now() + self.cfg.heartbeat_timeout;
            }
        }
    }

    /// Handles `text` as if the socket had pushed it after a subscribe with `req_id` 1 (the
    /// `executions` fuzz target's entry).
    #[doc(hidden)]
    pub fn fuzz_message(&self, text: &str) {
        let _ = self.handle_text(text, 1);
    }

    /// Handles one text message; malformed input is counted and logged, never fatal.
    fn handle_text(&self, text: &str, req_id: u64) -> Handled {
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        let env: Envelope<'_> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                self.malformed(&format!("not a v2 message: {e}"));
                return Handled::Other;
            }
        };
        if env.method.as_deref() == Some("subscribe") && env.req_id == Some(req_id) {
            return match (env.success, env.error) {
                (Some(true), _) => Handled::Subscribed,
                (_, Some(error)) => Handled::Refused(error),
                _ => Handled::Refused("no success flag".into()),
            };
        }
        if env.channel.as_deref() != Some("executions") {
            // heartbeat, pong, status, …
            return Handled::Other;
        }
        let Some(data) = env.data else {
            self.malformed("executions message without data");
            return Handled::Other;
        };
        match env.kind.as_deref() {
            Some("update") => {
                for entry in data {
                    self.apply_entry(entry);
                }
            }
            // Open orders as of the subscription: the REST sync that follows every
            // subscription reads the same orders with exact cumulative fees.
            Some("snapshot") => {}
            other => self.malformed(&format!("unknown executions type {other:?}")),
        }
        Handled::Other
    }

    fn apply_entry(&self, entry: &RawValue) {
        let raw: RawExecution<'_> = match serde_json::from_str(entry.get()) {
            Ok(r) => r,
            Err(e) => return self.malformed(&format!("execution entry: {e}")),
        };
        let order_id = OrderId::new(raw.order_id.as_str());
        let known = self.client.known_quantities(&order_id);
        let update = match to_cumulative(&raw, known) {
            Ok(Some(u)) => u,
            Ok(None) => return,
            Err(e) => return self.malformed(&format!("execution of {order_id}: {e}")),
        };
        self.counters.executions.fetch_add(1, Ordering::Relaxed);
        match self.client.apply_pushed(&order_id, update) {
            Applied::Changed(qty) if !qty.is_zero() => {
                self.counters.fills.fetch_add(1, Ordering::Relaxed);
            }
            Applied::Changed(_) | Applied::Unchanged | Applied::Held => {}
        }
    }

    fn malformed(&self, what: &str) {
        let n = self.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(malformed = n, what = %short(what), "kraken executions: message ignored");
    }
}

/// At most 160 characters of an error text, one line.
fn short(text: &str) -> String {
    text.chars()
        .take(160)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// How often REST order-status sync polls, by the state of the executions feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPlan {
    /// While the feed is down (or was never up): the fill-detection interval.
    pub while_down: Duration,
    /// While the feed is live: a safety net only.
    pub while_live: Duration,
}

impl KrakenClient {
    /// REST order-status sync as the fallback of the `executions` feed whose state
    /// `feed` watches: polls [`KrakenClient::sync_orders`] every `plan.while_live` while the
    /// feed is live, every `plan.while_down` while it is not (and after its sender is
    /// gone; the first poll after one interval). The feed itself syncs once after every subscription
    /// before it counts as live. Runs until aborted; failures are logged (each failed call
    /// is already an `ApiError` event).
    pub fn spawn_sync_fallback(
        self: &Arc<Self>,
        mut feed: watch::Receiver<FeedState>,
        plan: SyncPlan,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut open = true;
            let live = feed.borrow_and_update().live;
            let mut next = Instant::now()
                + if live {
                    plan.while_live
                } else {
                    plan.while_down
                };
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {
                        if let Err(err) = me.sync_orders().await {
                            tracing::warn!(cause = %err, "order sync failed");
                        }
                        let live = open && feed.borrow().live;
                        next = Instant::now() + if live { plan.while_live } else { plan.while_down };
                    }
                    changed = feed.changed(), if open => {
                        let now = Instant::now();
                        if changed.is_err() {
                            open = false;
                            next = next.min(now + plan.while_down);
                            continue;
                        }
                        if !feed.borrow_and_update().live {
                            next = next.min(now + plan.while_down);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Cumulative>, String> {
        let raw: RawExecution<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        to_cumulative(&raw, Some((Decimal::new(5, 0), Decimal::new(25, 1))))
    }

    #[test]
    fn trades_become_cumulative_reports_with_exact_decimals() {
        let c = parse(
            r#"{"exec_type":"trade","order_id":"O1","symbol":"XRP/USD","order_status":"partially_filled",
                "last_qty":10.00000000,"last_price":0.5,"cum_qty":10.00000000,"cum_cost":5.00000000,
                "fees":[{"asset":"USD","qty":0.013},{"asset":"XRP","qty":1}],"avg_price":0.5}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.status, OrderStatus::PartiallyFilled);
        assert_eq!(c.filled, Decimal::new(10, 0));
        assert_eq!(c.cost, Decimal::new(5, 0));
        assert_eq!(
            c.fee,
            FeeUpdate::Add(Decimal::new(13, 3)),
            "quote fees only"
        );
        assert_eq!(c.avg_price, Some(Decimal::new(5, 1)));
        // Exponent form, quoted decimal.
        let c = parse(
            r#"{"exec_type":"trade","order_id":"O1","order_status":"filled","last_qty":"1e-8",
                "cum_qty":1e-8,"cum_cost":"0.00000001"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.filled, Decimal::new(1, 8));
    }

    #[test]
    fn status_updates_keep_known_quantities_and_terminal_ones_need_theirs() {
        let c = parse(r#"{"exec_type":"new","order_id":"O1","order_status":"new"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.status, c.filled),
            (OrderStatus::Open, Decimal::new(5, 0))
        );
        assert_eq!(
            parse(r#"{"exec_type":"canceled","order_id":"O1","order_status":"canceled"}"#),
            Ok(None)
        );
        let c = parse(
            r#"{"exec_type":"canceled","order_id":"O1","order_status":"canceled","cum_qty":7,"cum_cost":3.5}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.status, c.filled),
            (OrderStatus::Cancelled, Decimal::new(7, 0))
        );
        assert_eq!(
            parse(r#"{"exec_type":"amended","order_id":"O1"}"#),
            Ok(None)
        );
    }

    #[test]
    fn malformed_executions_are_errors_not_panics() {
        for bad in [
            r#"{"exec_type":"trade","order_id":"O1","order_status":"partially_filled","last_qty":1}"#,
            r#"{"exec_type":"trade","order_id":"O1","order_status":"filled","last_qty":1,"cum_qty":"x","cum_cost":1}"#,
            r#"{"exec_type":"trade","order_id":"O1","order_status":"filled","last_qty":1,"cum_qty":-1,"cum_cost":1}"#,
            r#"{"exec_type":"trade","order_id":"O1","order_status":"weird","last_qty":1,"cum_qty":1,"cum_cost":1}"#,
            r#"{"exec_type":"trade","order_id":"O1","last_qty":1,"cum_qty":1,"cum_cost":1}"#,
            r#"{"exec_type":"trade","order_id":"O1","order_status":"filled","last_qty":0,"cum_qty":1,"cum_cost":1}"#,
            r#"{"exec_type":"trade","order_id":"O1","order_status":"filled","last_qty":1,"cum_qty":1e999999,"cum_cost":1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_url_must_be_a_websocket() {
        let cfg = ExecutionsConfig::new("https://x");
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("ws_auth_url")
        );
        ExecutionsConfig::new(DEFAULT_WS_AUTH_URL)
            .validate()
            .unwrap();
    }
}
