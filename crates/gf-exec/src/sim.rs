//! A mock Kraken REST server for tests (feature `sim`): a real HTTP server on 127.0.0.1
//! that verifies `API-Key`, `API-Sign` and the nonce like Kraken, answers with Kraken's
//! shapes and documented error strings, keeps orders and balances, injects faults on
//! command and records every request.
//!
//! The same listener serves Kraken's private WebSocket v2 at `/v2`
//! ([`MockKrakenHandle::ws_url`]): `GetWebSocketsToken` issues tokens, the `executions`
//! channel acknowledges a subscription made with one, sends a snapshot of the open orders
//! and then an `update` for every change of the mock's orders (`pending_new`, `new`,
//! `trade`, `filled`, `canceled`), plus a `heartbeat` about once a second; faults on
//! command: drop every connection, fall silent, refuse subscriptions, send raw text.
//!
//! ```
//! use std::sync::Arc;
//! use gf_core::{Source, SystemClock};
//! use gf_exec::{events::Publisher, Exchange, KrakenClient, KrakenConfig};
//! use gf_exec::sim::{MockConfig, MockKraken};
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let server = MockKraken::start(MockConfig::default()).await.unwrap();
//! let client = KrakenClient::new(
//!     KrakenConfig::new(server.url()),
//!     Arc::new(server.credentials()),
//!     Publisher::new(None, Arc::new(SystemClock), Source::Exec),
//! ).unwrap();
//! let balances = client.balances().await.unwrap();
//! assert_eq!(balances["USD"], rust_decimal::Decimal::from(100_000));
//! assert_eq!(server.requests().len(), 1);
//! server.shutdown().await;
//! # });
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use gf_core::{Pair, SharedClock, SystemClock};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use crate::Error;
use crate::paper::POST_ONLY_CANCEL_REASON;
use crate::ratelimit::Limits;
use crate::sign::{FixedCredentials, verify_api_sign};
use crate::wire::{self, PairMap};

/// The secret of [`MockConfig::default`] (Kraken's documentation example secret).
pub const DEFAULT_SECRET_B64: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

/// Settings of the mock server.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The accepted API key.
    pub api_key: String,
    /// The secret, base64 as Kraken shows it.
    pub secret_b64: String,
    /// Starting balances by Kraken asset code (`ZUSD`, `XXRP`, `XXDG`).
    pub balances: BTreeMap<String, Decimal>,
    /// Market price per pair: market orders fill there, limit orders crossing it fill.
    pub prices: BTreeMap<Pair, Decimal>,
    /// Enforce Kraken's REST API counter with these limits (`None`: no limit); a tier's
    /// are `Tier::rest_limits` (e.g. Starter: max 15, decay 0.33/s).
    pub rest_limits: Option<Limits>,
    /// Kraken's "nonce window": how far below the highest nonce seen a not-yet-seen nonce
    /// is still accepted. 0 is strict (every nonce must exceed the last).
    pub nonce_window: u64,
    /// Clock for order times, token ages and the dead man's switch.
    pub clock: SharedClock,
    /// How often a subscribed WebSocket connection gets a `heartbeat` (Kraken: about once
    /// a second).
    pub ws_heartbeat: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            api_key: "gf-mock-api-key".into(),
            secret_b64: DEFAULT_SECRET_B64.into(),
            balances: BTreeMap::from([
                ("ZUSD".to_owned(), Decimal::from(100_000)),
                ("XXRP".to_owned(), Decimal::from(1_000)),
            ]),
            prices: BTreeMap::from([
                (Pair::new("XRP/USD").expect("valid"), Decimal::new(5, 1)),
                (Pair::new("DOGE/USD").expect("valid"), Decimal::new(1, 1)),
            ]),
            rest_limits: None,
            nonce_window: 0,
            clock: Arc::new(SystemClock),
            ws_heartbeat: Duration::from_secs(1),
        }
    }
}

/// A fault to inject into the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then handle the request normally.
    Latency(Duration),
    /// Answer with this 5xx status and an HTML page; the request is not processed.
    ServerError(u16),
    /// Answer `EAPI:Rate limit exceeded`; not processed.
    RateLimit,
    /// Answer `EService:Unavailable`; not processed.
    Unavailable,
    /// Answer HTTP 200 with a body that is not JSON; not processed.
    NotJson,
    /// Hold the request this long, then answer 504 without processing it (the client
    /// times out first).
    Stall(Duration),
    /// Process the request (the order is placed), then hold the answer this long (the
    /// client times out and never sees it).
    DropAfterAccept(Duration),
    /// Receive the request now, process it only after this long (as a queueing matching
    /// engine would), then answer. Processing goes on even after the client gave up on
    /// the connection; an `AddOrder` whose `deadline` has passed by then is not placed.
    ProcessLate(Duration),
}

/// The fault queue: each fault fires once, on the next request to its endpoint (or any).
#[derive(Debug, Default)]
pub struct Faults {
    queue: Mutex<VecDeque<(Option<String>, Fault)>>,
}

impl Faults {
    /// Queues `fault` for the next request to `endpoint` (`None`: any endpoint).
    pub fn inject(&self, endpoint: Option<&str>, fault: Fault) {
        self.queue
            .lock()
            .push_back((endpoint.map(str::to_owned), fault));
    }

    /// Faults not yet fired.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.queue.lock().len()
    }

    /// Drops every queued fault.
    pub fn clear(&self) {
        self.queue.lock().clear();
    }

    fn take(&self, endpoint: &str) -> Option<Fault> {
        let mut q = self.queue.lock();
        let idx = q
            .iter()
            .position(|(e, _)| e.as_deref().is_none_or(|e| e == endpoint))?;
        q.remove(idx).map(|(_, f)| f)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `AddOrder`, `Balance`, … (the last path segment).
    pub endpoint: String,
    /// The `API-Key` header, if any.
    pub api_key: Option<String>,
    /// The nonce, if it parsed.
    pub nonce: Option<u64>,
    /// The decoded form parameters (nonce included).
    pub params: Vec<(String, String)>,
    /// `ok`, the Kraken error string, or `fault:<name>`.
    pub outcome: String,
}

/// An order held by the mock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockOrder {
    /// Kraken-style txid.
    pub txid: String,
    /// Our client order id, if given.
    pub cl_ord_id: Option<String>,
    /// `userref`, if given.
    pub userref: Option<i64>,
    /// The pair.
    pub pair: Pair,
    /// `buy` / `sell`.
    pub side: String,
    /// `market` / `limit`.
    pub ordertype: String,
    /// Volume.
    pub volume: Decimal,
    /// Executed volume.
    pub vol_exec: Decimal,
    /// Limit price.
    pub price: Option<Decimal>,
    /// Average execution price.
    pub avg_price: Decimal,
    /// Executed quote amount (Σ quantity × price), exact.
    pub cost: Decimal,
    /// `open`, `closed`, `canceled`.
    pub status: String,
    /// Reduce-only flag.
    pub reduce_only: bool,
    /// Post-only (`oflags` carried `post`).
    pub post_only: bool,
    /// Kraken's `reason`, additional information on the status (for example why the
    /// exchange cancelled the order); `None` when there is none.
    pub reason: Option<String>,
    /// Opening time.
    pub opened: DateTime<Utc>,
}

impl MockOrder {
    fn to_json(&self) -> Value {
        json!({
            "refid": null,
            "userref": self.userref.unwrap_or(0),
            "cl_ord_id": self.cl_ord_id,
            "status": self.status,
            "opentm": self.opened.timestamp_micros() as f64 / 1e6,
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": wire::rest_pair_name(&self.pair),
                "type": self.side,
                "ordertype": self.ordertype,
                "price": self.price.unwrap_or_default().to_string(),
                "price2": "0",
                "leverage": "none",
                "order": format!("{} {} {} @ {} {}", self.side, self.volume,
                    wire::rest_pair_name(&self.pair), self.ordertype,
                    self.price.unwrap_or_default()),
                "close": ""
            },
            "vol": self.volume.to_string(),
            "vol_exec": self.vol_exec.to_string(),
            "cost": self.cost.to_string(),
            "fee": "0",
            "price": self.avg_price.to_string(),
            "reduce_only": self.reduce_only,
            "oflags": if self.post_only { "fciq,post" } else { "fciq" },
            "reason": self.reason,
        })
    }
}

#[derive(Debug)]
struct Book {
    orders: Vec<MockOrder>,
    balances: BTreeMap<String, Decimal>,
    next_txid: u64,
    last_nonce: u64,
    seen_nonces: BTreeSet<u64>,
    counter_milli: u64,
    counter_at: tokio::time::Instant,
    peak_counter_milli: u64,
    dead_man: Option<DateTime<Utc>>,
    prices: BTreeMap<Pair, Decimal>,
    next_exec: u64,
}

#[derive(Debug)]
struct Shared {
    cfg: MockConfig,
    secret: Vec<u8>,
    pairs: PairMap,
    faults: Faults,
    requests: Mutex<Vec<RecordedRequest>>,
    book: Mutex<Book>,
    /// What public `SystemStatus` answers (`online` unless set).
    system_status: Mutex<String>,
    /// The private WebSocket's state.
    ws: WsState,
}

/// The private WebSocket side of the mock.
#[derive(Debug)]
struct WsState {
    /// Every `executions` message, to each subscribed connection.
    pushes: broadcast::Sender<Arc<str>>,
    /// Bumped to drop every connection.
    drops: watch::Sender<u64>,
    /// Subscribed connections send nothing while set (pushes are lost).
    silent: AtomicBool,
    /// Subscriptions still to refuse.
    refuse: AtomicU32,
    /// Issued tokens and when.
    tokens: Mutex<BTreeMap<String, DateTime<Utc>>>,
    sequence: AtomicU64,
    /// `subscribe` outcomes in order (`ok` or the error string).
    log: Mutex<Vec<String>>,
}

/// Starts mock servers.
#[derive(Debug)]
pub struct MockKraken;

impl MockKraken {
    /// Binds 127.0.0.1:0 and serves until [`MockKrakenHandle::shutdown`] or drop.
    ///
    /// # Errors
    /// [`Error::Config`] for a secret that is not base64, [`Error::Network`] when the
    /// socket cannot be bound.
    pub async fn start(cfg: MockConfig) -> Result<MockKrakenHandle, Error> {
        let secret = BASE64
            .decode(cfg.secret_b64.trim())
            .map_err(|e| Error::Config {
                key: "secret_b64".into(),
                value: "<redacted>".into(),
                reason: format!("not valid base64: {e}"),
            })?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::Network {
                endpoint: "bind".into(),
                message: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| Error::Network {
            endpoint: "bind".into(),
            message: e.to_string(),
        })?;
        let pairs: Vec<Pair> = cfg.prices.keys().cloned().collect();
        let shared = Arc::new(Shared {
            secret,
            pairs: PairMap::new(&pairs),
            faults: Faults::default(),
            requests: Mutex::new(Vec::new()),
            system_status: Mutex::new("online".to_owned()),
            book: Mutex::new(Book {
                orders: Vec::new(),
                balances: cfg.balances.clone(),
                next_txid: 0,
                last_nonce: 0,
                seen_nonces: BTreeSet::new(),
                counter_milli: 0,
                counter_at: tokio::time::Instant::now(),
                peak_counter_milli: 0,
                dead_man: None,
                prices: cfg.prices.clone(),
                next_exec: 0,
            }),
            ws: WsState {
                pushes: broadcast::channel(4096).0,
                drops: watch::Sender::new(0),
                silent: AtomicBool::new(false),
                refuse: AtomicU32::new(0),
                tokens: Mutex::new(BTreeMap::new()),
                sequence: AtomicU64::new(0),
                log: Mutex::new(Vec::new()),
            },
            cfg,
        });
        let app = Router::new()
            .route("/v2", axum::routing::get(ws_upgrade))
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(cause = %e, "mock kraken server stopped");
            }
        });
        Ok(MockKrakenHandle {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running mock server. Dropping it stops the server.
#[derive(Debug)]
pub struct MockKrakenHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockKrakenHandle {
    /// The base URL, `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The private WebSocket v2 URL, `ws://127.0.0.1:<port>/v2`.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v2", self.addr)
    }

    /// Drops every WebSocket connection now (no close frame, as a lost connection).
    pub fn drop_ws_connections(&self) {
        self.shared.ws.drops.send_modify(|n| *n += 1);
    }

    /// While `silent`, connections send nothing — no heartbeat, no execution (those are
    /// lost), no answer to a request — though they stay open.
    pub fn set_ws_silent(&self, silent: bool) {
        self.shared.ws.silent.store(silent, Ordering::SeqCst);
    }

    /// Refuses the next `n` `subscribe` requests (`EService:Unavailable`).
    pub fn refuse_ws_subscribes(&self, n: u32) {
        self.shared.ws.refuse.store(n, Ordering::SeqCst);
    }

    /// Sends `text` as is to every subscribed connection (a malformed message, say).
    pub fn send_ws_text(&self, text: &str) {
        let _ = self.shared.ws.pushes.send(Arc::from(text));
    }

    /// The `subscribe` outcomes so far, in order: `ok` or Kraken's error string.
    #[must_use]
    pub fn ws_subscribes(&self) -> Vec<String> {
        self.shared.ws.log.lock().clone()
    }

    /// How many WebSocket tokens `GetWebSocketsToken` issued.
    #[must_use]
    pub fn ws_tokens_issued(&self) -> usize {
        self.shared.ws.tokens.lock().len()
    }

    /// The accepted API key.
    #[must_use]
    pub fn api_key(&self) -> &str {
        &self.shared.cfg.api_key
    }

    /// The secret, base64.
    #[must_use]
    pub fn secret_b64(&self) -> &str {
        &self.shared.cfg.secret_b64
    }

    /// A credential handle holding the accepted key pair.
    #[must_use]
    pub fn credentials(&self) -> FixedCredentials {
        FixedCredentials::from_raw(&self.shared.cfg.api_key, self.shared.secret.clone())
    }

    /// Sets what public `SystemStatus` answers from now on (`online`, `maintenance`,
    /// `cancel_only`, `post_only`, or anything else to test an undocumented value).
    pub fn set_system_status(&self, status: &str) {
        status.clone_into(&mut self.shared.system_status.lock());
    }

    /// The fault queue.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every request so far, in arrival order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().clone()
    }

    /// Every order so far (open and closed), in placement order.
    #[must_use]
    pub fn orders(&self) -> Vec<MockOrder> {
        self.shared.book.lock().orders.clone()
    }

    /// Current balances by Kraken asset code.
    #[must_use]
    pub fn balances(&self) -> BTreeMap<String, Decimal> {
        self.shared.book.lock().balances.clone()
    }

    /// Sets one balance.
    pub fn set_balance(&self, asset: &str, amount: Decimal) {
        self.shared
            .book
            .lock()
            .balances
            .insert(asset.to_owned(), amount);
    }

    /// Executes `qty` of an open order at `price` (as the matching engine would), moving
    /// balances; the order closes once fully executed. Returns `false` for an unknown or
    /// closed order or a quantity above what remains.
    pub fn fill_order(&self, txid: &str, qty: Decimal, price: Decimal) -> bool {
        let mut book = self.shared.book.lock();
        let Some(order) = book
            .orders
            .iter_mut()
            .find(|o| o.txid == txid && o.status == "open")
        else {
            return false;
        };
        if qty <= Decimal::ZERO || qty > order.volume - order.vol_exec {
            return false;
        }
        order.cost += qty * price;
        order.vol_exec += qty;
        order.avg_price = order.cost / order.vol_exec;
        if order.vol_exec == order.volume {
            order.status = "closed".into();
        }
        let order = order.clone();
        let now = self.shared.cfg.clock.now();
        let entries = trade_entries(&mut book, &order, qty, price, now);
        push_executions(&self.shared, entries);
        let sign = if order.side == "buy" {
            Decimal::ONE
        } else {
            Decimal::NEGATIVE_ONE
        };
        let (base, quote) = (
            balance_code(order.pair.base()),
            balance_code(order.pair.quote()),
        );
        *book.balances.entry(base).or_default() += sign * qty;
        *book.balances.entry(quote).or_default() -= sign * qty * price;
        true
    }

    /// Moves the market price of `pair`: resting limit orders that the new price crosses
    /// execute in full at their limit price. Returns how many executed.
    pub fn set_price(&self, pair: &Pair, price: Decimal) -> usize {
        let crossing: Vec<(String, Decimal, Decimal)> = {
            let mut book = self.shared.book.lock();
            book.prices.insert(pair.clone(), price);
            book.orders
                .iter()
                .filter(|o| &o.pair == pair && o.status == "open")
                .filter_map(|o| {
                    let limit = o.price?;
                    let crosses = if o.side == "buy" {
                        price <= limit
                    } else {
                        price >= limit
                    };
                    crosses.then(|| (o.txid.clone(), o.volume - o.vol_exec, limit))
                })
                .collect()
        };
        crossing
            .into_iter()
            .filter(|(txid, qty, limit)| self.fill_order(txid, *qty, *limit))
            .count()
    }

    /// The highest REST counter value reached, thousandths of a point.
    #[must_use]
    pub fn peak_counter_milli(&self) -> u64 {
        self.shared.book.lock().peak_counter_milli
    }

    /// When the dead man's switch fires, if armed.
    #[must_use]
    pub fn dead_man_trigger(&self) -> Option<DateTime<Utc>> {
        self.shared.book.lock().dead_man
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Connections held open by a stalled fault are cut after a short grace.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for MockKrakenHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn kraken_error(message: &str) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({ "error": [message] }).to_string(),
    )
        .into_response()
}

fn kraken_ok(result: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({ "error": [], "result": result }).to_string(),
    )
        .into_response()
}

fn fault_response(fault: &Fault) -> Option<(Response, &'static str)> {
    match fault {
        Fault::ServerError(status) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            Some((
                (
                    code,
                    [("content-type", "text/html")],
                    format!("<html><head><title>{status}</title></head><body><h1>{status} Bad Gateway</h1></body></html>"),
                )
                    .into_response(),
                "fault:server_error",
            ))
        }
        Fault::RateLimit => Some((kraken_error("EAPI:Rate limit exceeded"), "fault:rate_limit")),
        Fault::Unavailable => Some((kraken_error("EService:Unavailable"), "fault:unavailable")),
        Fault::NotJson => Some((
            (StatusCode::OK, "this is not json {").into_response(),
            "fault:not_json",
        )),
        _ => None,
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let endpoint = path.rsplit('/').next().unwrap_or_default().to_owned();
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let params = if method == Method::GET {
        wire::form_decode(uri.query().unwrap_or_default())
    } else {
        wire::form_decode(&body_text)
    };
    let api_key = headers
        .get("API-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let nonce = params
        .iter()
        .find(|(k, _)| k == "nonce")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let record = |outcome: &str| {
        shared.requests.lock().push(RecordedRequest {
            endpoint: endpoint.clone(),
            api_key: api_key.clone(),
            nonce,
            params: params.clone(),
            outcome: outcome.to_owned(),
        });
    };

    // When the request arrived: `deadline` is checked against this (its range) and against
    // the time the request is processed (whether it may still be matched).
    let received = shared.cfg.clock.now();
    let fault = shared.faults.take(&endpoint);
    match &fault {
        Some(Fault::Latency(d)) => tokio::time::sleep(*d).await,
        Some(Fault::ProcessLate(d)) => {
            // Authenticated (key, signature, nonce, counter) on arrival, processed later.
            let private = path.strip_prefix("/0/private/").map(str::to_owned);
            let Some(private) = private.filter(|_| method == Method::POST) else {
                record("EGeneral:Invalid arguments");
                return kraken_error("EGeneral:Invalid arguments");
            };
            if let Err(message) = authenticate(&shared, &path, &headers, &body_text, nonce) {
                record(message);
                return kraken_error(message);
            }
            // Kraken goes on processing a request whose client has hung up: run it in a
            // task of its own so a dropped connection does not cancel it.
            let (d, shared) = (*d, Arc::clone(&shared));
            let (endpoint, api_key, params) = (endpoint.clone(), api_key.clone(), params.clone());
            let late = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let (response, outcome) = private_call(&shared, &private, &params, received);
                shared.requests.lock().push(RecordedRequest {
                    endpoint,
                    api_key,
                    nonce,
                    params,
                    outcome,
                });
                response
            });
            return late
                .await
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        Some(Fault::Stall(d)) => {
            tokio::time::sleep(*d).await;
            record("fault:stall");
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some(f) => {
            if let Some((resp, outcome)) = fault_response(f) {
                record(outcome);
                return resp;
            }
        }
        None => {}
    }

    let (response, outcome) = dispatch(
        &shared, &path, &method, &headers, &body_text, &params, nonce, received,
    );
    record(&outcome);
    if let Some(Fault::DropAfterAccept(d)) = fault {
        tokio::time::sleep(d).await;
    }
    response
}

/// Authenticates and processes one request; returns the answer and the recorded outcome.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    shared: &Shared,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
    body_text: &str,
    params: &[(String, String)],
    nonce: Option<u64>,
    received: DateTime<Utc>,
) -> (Response, String) {
    if let Some(public) = path.strip_prefix("/0/public/") {
        public_call(shared, public, params)
    } else if let Some(private) = path.strip_prefix("/0/private/") {
        if method == Method::POST {
            match authenticate(shared, path, headers, body_text, nonce) {
                Ok(()) => private_call(shared, private, params, received),
                Err(message) => (kraken_error(message), message.to_owned()),
            }
        } else {
            (
                kraken_error("EGeneral:Invalid arguments"),
                "EGeneral:Invalid arguments".to_owned(),
            )
        }
    } else {
        (
            (
                StatusCode::NOT_FOUND,
                json!({"error": ["EGeneral:Unknown method"]}).to_string(),
            )
                .into_response(),
            "EGeneral:Unknown method".to_owned(),
        )
    }
}

/// Checks key, nonce presence, signature, nonce order and the rate counter, in Kraken's
/// order, consuming the nonce only for a correctly signed request.
fn authenticate(
    shared: &Shared,
    path: &str,
    headers: &HeaderMap,
    body: &str,
    nonce: Option<u64>,
) -> Result<(), &'static str> {
    let key = headers.get("API-Key").and_then(|v| v.to_str().ok());
    if key != Some(shared.cfg.api_key.as_str()) {
        return Err("EAPI:Invalid key");
    }
    let Some(nonce) = nonce else {
        return Err("EAPI:Invalid nonce");
    };
    let sign = headers
        .get("API-Sign")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !verify_api_sign(path, nonce, body, &shared.secret, sign) {
        return Err("EAPI:Invalid signature");
    }
    let mut book = shared.book.lock();
    let window = shared.cfg.nonce_window;
    let fresh = nonce > book.last_nonce
        || (window > 0
            && nonce.saturating_add(window) > book.last_nonce
            && !book.seen_nonces.contains(&nonce));
    if !fresh {
        return Err("EAPI:Invalid nonce");
    }
    book.last_nonce = book.last_nonce.max(nonce);
    if window > 0 {
        book.seen_nonces.insert(nonce);
        let floor = book.last_nonce.saturating_sub(window);
        book.seen_nonces = book.seen_nonces.split_off(&floor);
    }
    let endpoint = path.rsplit('/').next().unwrap_or_default();
    // Kraken's REST counter (docs.kraken.com, "Spot REST Rate Limits"): each call adds a
    // point, the counter decays continuously at the tier's rate (Starter 0.33/s,
    // Intermediate 0.5/s, Pro 1/s) and a call that would take it above the tier's maximum
    // (15 / 20 / 20) is refused with `EAPI:Rate limit exceeded`. `AddOrder` and
    // `CancelOrder` count on the matching engine's own per-pair counter instead.
    if let Some(limits) = shared.cfg.rest_limits
        && !matches!(endpoint, "AddOrder" | "CancelOrder")
    {
        let now = tokio::time::Instant::now();
        let elapsed = now.saturating_duration_since(book.counter_at).as_micros();
        let decayed = elapsed * u128::from(limits.decay_milli_per_sec) / 1_000_000;
        book.counter_milli = book
            .counter_milli
            .saturating_sub(u64::try_from(decayed).unwrap_or(u64::MAX));
        book.counter_at = now;
        if book.counter_milli + 1000 > u64::from(limits.max) * 1000 {
            return Err("EAPI:Rate limit exceeded");
        }
        book.counter_milli += 1000;
        book.peak_counter_milli = book.peak_counter_milli.max(book.counter_milli);
    }
    Ok(())
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn public_call(
    shared: &Shared,
    endpoint: &str,
    _params: &[(String, String)],
) -> (Response, String) {
    match endpoint {
        "Time" => {
            let now = shared.cfg.clock.now();
            (
                kraken_ok(json!({"unixtime": now.timestamp(), "rfc1123": now.to_rfc2822()})),
                "ok".into(),
            )
        }
        // `{"status":"online","timestamp":…}`; status one of `online`, `maintenance`,
        // `cancel_only`, `post_only` (docs.kraken.com api-reference/market-data/
        // get-system-status). Set with `MockKrakenHandle::set_system_status`.
        "SystemStatus" => {
            let status = shared.system_status.lock().clone();
            let now = shared.cfg.clock.now();
            (
                kraken_ok(json!({
                    "status": status,
                    "timestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
                })),
                "ok".into(),
            )
        }
        "AssetPairs" => {
            let mut out = serde_json::Map::new();
            for pair in shared.cfg.prices.keys() {
                let alt = wire::rest_pair_name(pair);
                out.insert(
                    alt.clone(),
                    json!({
                        "altname": alt,
                        "wsname": pair.as_str(),
                        "base": wire::kraken_asset(pair.base()),
                        "quote": wire::kraken_asset(pair.quote()),
                        "pair_decimals": 5,
                        "lot_decimals": 8,
                        "ordermin": "10",
                    }),
                );
            }
            (kraken_ok(Value::Object(out)), "ok".into())
        }
        _ => (
            kraken_error("EGeneral:Unknown method"),
            "EGeneral:Unknown method".into(),
        ),
    }
}

/// Kraken asset code of a common one, as the mock keeps balances.
fn balance_code(asset: &str) -> String {
    match asset {
        "USD" => "ZUSD".into(),
        "EUR" => "ZEUR".into(),
        "XRP" => "XXRP".into(),
        "DOGE" => "XXDG".into(),
        "BTC" => "XXBT".into(),
        other => other.into(),
    }
}

fn private_call(
    shared: &Shared,
    endpoint: &str,
    params: &[(String, String)],
    received: DateTime<Utc>,
) -> (Response, String) {
    let mut book = shared.book.lock();
    let now = shared.cfg.clock.now();
    if let Some(deadline) = book.dead_man
        && now >= deadline
    {
        book.dead_man = None;
        let mut entries = Vec::new();
        for o in book.orders.iter_mut().filter(|o| o.status == "open") {
            o.status = "canceled".into();
            entries.push(exec_entry(o, "canceled", "canceled", now));
        }
        push_executions(shared, entries);
    }
    let result = match endpoint {
        "AddOrder" => check_deadline(params, received, now)
            .and_then(|()| add_order(shared, &mut book, params, now)),
        "CancelOrder" => {
            let target = param(params, "cl_ord_id")
                .map(|c| (true, c.to_owned()))
                .or_else(|| param(params, "txid").map(|t| (false, t.to_owned())));
            match target {
                None => Err("EGeneral:Invalid arguments"),
                Some((by_client, id)) => {
                    let mut count = 0;
                    let mut entries = Vec::new();
                    for o in book.orders.iter_mut().filter(|o| o.status == "open") {
                        let hit = if by_client {
                            o.cl_ord_id.as_deref() == Some(id.as_str())
                        } else {
                            o.txid == id || o.userref.map(|u| u.to_string()) == Some(id.clone())
                        };
                        if hit {
                            o.status = "canceled".into();
                            entries.push(exec_entry(o, "canceled", "canceled", now));
                            count += 1;
                        }
                    }
                    push_executions(shared, entries);
                    if count == 0 {
                        Err("EOrder:Unknown order")
                    } else {
                        Ok(json!({"count": count, "pending": false}))
                    }
                }
            }
        }
        "CancelAll" => {
            let mut count = 0;
            let mut entries = Vec::new();
            for o in book.orders.iter_mut().filter(|o| o.status == "open") {
                o.status = "canceled".into();
                entries.push(exec_entry(o, "canceled", "canceled", now));
                count += 1;
            }
            push_executions(shared, entries);
            Ok(json!({"count": count}))
        }
        // docs.kraken.com, REST "Get Websockets Token": `{"token": …, "expires": 900}`;
        // "The token should be used within 15 minutes of creation, but it does not expire
        // once a successful Websockets connection and private subscription has been made
        // and is maintained." The mock's `/v2` checks exactly that.
        "GetWebSocketsToken" => {
            let mut tokens = shared.ws.tokens.lock();
            let token = BASE64.encode(
                format!(
                    "gf-mock-ws-token-{}-{}",
                    tokens.len() + 1,
                    now.timestamp_micros()
                )
                .as_bytes(),
            );
            tokens.insert(token.clone(), now);
            Ok(json!({"token": token, "expires": WS_TOKEN_VALID_SECS}))
        }
        "CancelAllOrdersAfter" => {
            match param(params, "timeout").and_then(|t| t.parse::<u32>().ok()) {
                None => Err("EGeneral:Invalid arguments:timeout"),
                Some(0) => {
                    book.dead_man = None;
                    Ok(json!({"currentTime": rfc3339(now), "triggerTime": "0"}))
                }
                Some(t) if t > 86_400 => Err("EGeneral:Invalid arguments:timeout"),
                Some(t) => {
                    // Kraken answers in whole seconds; keep what was announced.
                    let trigger =
                        DateTime::from_timestamp(now.timestamp() + i64::from(t), 0).unwrap_or(now);
                    book.dead_man = Some(trigger);
                    Ok(json!({"currentTime": rfc3339(now), "triggerTime": rfc3339(trigger)}))
                }
            }
        }
        "OpenOrders" | "ClosedOrders" => {
            let open = endpoint == "OpenOrders";
            let cl = param(params, "cl_ord_id");
            let mut map = serde_json::Map::new();
            for o in &book.orders {
                if (o.status == "open") != open {
                    continue;
                }
                if cl.is_some() && o.cl_ord_id.as_deref() != cl {
                    continue;
                }
                map.insert(o.txid.clone(), o.to_json());
            }
            let count = map.len();
            Ok(if open {
                json!({"open": map})
            } else {
                json!({"closed": map, "count": count})
            })
        }
        "QueryOrders" => match param(params, "txid") {
            None => Err("EGeneral:Invalid arguments"),
            Some(ids) => {
                let mut map = serde_json::Map::new();
                let mut unknown = false;
                for id in ids.split(',') {
                    match book.orders.iter().find(|o| o.txid == id) {
                        Some(o) => {
                            map.insert(o.txid.clone(), o.to_json());
                        }
                        None => unknown = true,
                    }
                }
                if unknown {
                    Err("EOrder:Unknown order")
                } else {
                    Ok(Value::Object(map))
                }
            }
        },
        "Balance" => Ok(Value::Object(
            book.balances
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                .collect(),
        )),
        "TradeBalance" => {
            let mut equity = book.balances.get("ZUSD").copied().unwrap_or_default();
            for (pair, price) in &book.prices {
                equity += book
                    .balances
                    .get(&balance_code(pair.base()))
                    .copied()
                    .unwrap_or_default()
                    * price;
            }
            Ok(json!({"eb": equity.to_string(), "tb": equity.to_string(), "m": "0", "n": "0"}))
        }
        _ => Err("EGeneral:Unknown method"),
    };
    match result {
        Ok(v) => (kraken_ok(v), "ok".into()),
        Err(e) => (kraken_error(e), e.into()),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The error of an `AddOrder` processed after its `deadline`. Kraken documents that the
/// matching engine rejects such a request but not the exact text; this one follows its
/// `EOrder:` naming.
pub const DEADLINE_ELAPSED: &str = "EOrder:Deadline elapsed";

/// Kraken's `deadline` rule for `AddOrder` (docs.kraken.com, REST "Add Order", parameter
/// `deadline`: an RFC 3339 timestamp 500 ms to 60 s ahead after which the matching engine
/// rejects the order, "protection against latency on time sensitive orders"): the range is
/// judged when the request arrives, the expiry when it is processed.
fn check_deadline(
    params: &[(String, String)],
    received: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), &'static str> {
    let Some(text) = param(params, "deadline") else {
        return Ok(());
    };
    let deadline = DateTime::parse_from_rfc3339(text)
        .map_err(|_| "EGeneral:Invalid arguments:deadline")?
        .with_timezone(&Utc);
    let ahead = deadline - received;
    if ahead < chrono::Duration::milliseconds(500) || ahead > chrono::Duration::seconds(60) {
        return Err("EGeneral:Invalid arguments:deadline");
    }
    if now > deadline {
        return Err(DEADLINE_ELAPSED);
    }
    Ok(())
}

fn add_order(
    shared: &Shared,
    book: &mut Book,
    params: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Value, &'static str> {
    let pair_name = param(params, "pair").ok_or("EGeneral:Invalid arguments:pair")?;
    let pair = shared
        .pairs
        .resolve(pair_name)
        .filter(|p| shared.cfg.prices.contains_key(p))
        .ok_or("EQuery:Unknown asset pair")?;
    let side = match param(params, "type") {
        Some(s @ ("buy" | "sell")) => s.to_owned(),
        _ => return Err("EGeneral:Invalid arguments:type"),
    };
    let ordertype = match param(params, "ordertype") {
        Some(t @ ("market" | "limit")) => t.to_owned(),
        _ => return Err("EGeneral:Invalid arguments:ordertype"),
    };
    let volume: Decimal = param(params, "volume")
        .and_then(|v| v.parse().ok())
        .filter(|v: &Decimal| *v > Decimal::ZERO)
        .ok_or("EGeneral:Invalid arguments:volume")?;
    let price: Option<Decimal> = match ordertype.as_str() {
        "limit" => Some(
            param(params, "price")
                .and_then(|v| v.parse().ok())
                .filter(|v: &Decimal| *v > Decimal::ZERO)
                .ok_or("EGeneral:Invalid arguments:price")?,
        ),
        _ => None,
    };
    let market = book
        .prices
        .get(&pair)
        .copied()
        .ok_or("EQuery:Unknown asset pair")?;
    let executes = match (side.as_str(), price) {
        (_, None) => true,
        ("buy", Some(p)) => p >= market,
        (_, Some(p)) => p <= market,
    };
    let cl_ord_id = param(params, "cl_ord_id");
    if let Some(id) = cl_ord_id
        && !kraken_accepts_cl_ord_id(id)
    {
        return Err("EGeneral:Invalid arguments:cl_ord_id");
    }
    // Kraken: `cl_ord_id` and `userref` are mutually exclusive.
    if cl_ord_id.is_some() && param(params, "userref").is_some() {
        return Err("EGeneral:Invalid arguments:cl_ord_id and userref");
    }
    let post_only = post_only_flag(params, &ordertype)?;
    let (base, quote) = (balance_code(pair.base()), balance_code(pair.quote()));
    let reduce_only = param(params, "reduce_only") == Some("true");
    let held = |asset: &str| book.balances.get(asset).copied().unwrap_or_default();
    // Kraken: a reduce-only order only reduces an open *margin* position, and "if there is
    // no existing position, the reduce-only order will be rejected"
    // (https://support.kraken.com/hc/en-us/articles/7987518770708-Other-order-options).
    // The mock is a spot (cash) account: a balance is not a position, there is never one,
    // so every reduce-only order is rejected — however much of the base asset is held.
    if reduce_only {
        return Err("EOrder:Reduce only:Non-PC");
    }
    let cost = volume
        .checked_mul(price.unwrap_or(market).max(market))
        .ok_or("EGeneral:Invalid arguments:volume")?;
    match side.as_str() {
        "buy" if cost > held(&quote) => return Err("EOrder:Insufficient funds"),
        "sell" if volume > held(&base) => return Err("EOrder:Insufficient funds"),
        _ => {}
    }
    book.next_txid += 1;
    let n = book.next_txid;
    let txid = format!("O{:05}-M{:04}-{:06}", n * 7 % 100_000, n % 10_000, n);
    let mut order = MockOrder {
        txid: txid.clone(),
        cl_ord_id: param(params, "cl_ord_id").map(str::to_owned),
        userref: param(params, "userref").and_then(|u| u.parse().ok()),
        pair,
        side: side.clone(),
        ordertype,
        volume,
        vol_exec: Decimal::ZERO,
        price,
        avg_price: Decimal::ZERO,
        cost: Decimal::ZERO,
        status: "open".into(),
        reduce_only,
        post_only,
        reason: None,
        opened: now,
    };
    let descr = format!(
        "{side} {volume} {} @ {}",
        wire::rest_pair_name(&order.pair),
        price.map_or_else(|| "market".to_owned(), |p| format!("limit {p}"))
    );
    // Kraken v2 `executions` for spot: `pending_new` acknowledges a validated order,
    // `new` reports it live, then its trades and `filled` (docs.kraken.com, WebSocket v2
    // `executions`).
    let mut entries = Vec::new();
    if post_only && executes {
        // A post-only limit order "will either get posted to the order book or be
        // cancelled" (support.kraken.com/hc/en-us/articles/203053246, "Post limit order":
        // it "prevents placing a limit buy order that instantly matches against the sell
        // side of the order book (and vice versa for sell orders)"). `AddOrder` accepts it
        // and answers a txid; the order never goes live (no `new`) and is cancelled
        // without executing, with the reason `Post only order`.
        order.status = "canceled".into();
        order.reason = Some(POST_ONLY_CANCEL_REASON.to_owned());
        entries.push(exec_entry(&order, "pending_new", "pending_new", now));
        entries.push(exec_entry(&order, "canceled", "canceled", now));
    } else {
        if executes {
            order.vol_exec = volume;
            order.avg_price = market;
            order.cost = volume * market;
            order.status = "closed".into();
            let notional = volume * market;
            let sign = if side == "buy" {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            *book.balances.entry(base).or_default() += sign * volume;
            *book.balances.entry(quote).or_default() -= sign * notional;
        }
        entries.push(exec_entry(&order, "pending_new", "pending_new", now));
        entries.push(exec_entry(&order, "new", "new", now));
        if order.vol_exec > Decimal::ZERO {
            let (qty, price) = (order.vol_exec, order.avg_price);
            entries.extend(trade_entries(book, &order, qty, price, now));
        }
    }
    push_executions(shared, entries);
    book.orders.push(order);
    Ok(json!({"descr": {"order": descr}, "txid": [txid]}))
}

/// The order flags Kraken's REST `AddOrder` documents for `oflags`, a comma-delimited list.
const ORDER_FLAGS: [&str; 5] = ["post", "fcib", "fciq", "nompp", "viqc"];

/// Whether `AddOrder`'s `oflags` carry `post`. Kraken documents `post` as "post-only order
/// (available when ordertype = limit)": on any other order type, and for a flag it does not
/// document, the request is refused as an invalid argument.
fn post_only_flag(params: &[(String, String)], ordertype: &str) -> Result<bool, &'static str> {
    let Some(flags) = param(params, "oflags") else {
        return Ok(false);
    };
    let mut post = false;
    for flag in flags.split(',') {
        if !ORDER_FLAGS.contains(&flag) {
            return Err("EGeneral:Invalid arguments:oflags");
        }
        post |= flag == "post";
    }
    if post && ordertype != "limit" {
        return Err("EGeneral:Invalid arguments:oflags");
    }
    Ok(post)
}

/// Kraken's `cl_ord_id` format (<https://docs.kraken.com/exchange/guides/general/clordid>,
/// `AddOrder`): a UUID — 36 characters, 8-4-4-4-12 hex digits with dashes, or the 32 hex
/// digits without — or free text of at most 18 printable ASCII characters. Written apart
/// from gf-core's check on purpose, so that each checks the other.
fn kraken_accepts_cl_ord_id(id: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let groups: Vec<&str> = id.split('-').collect();
    let dashed = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && hex(g));
    let simple = id.len() == 32 && hex(id);
    let text = (1..=18).contains(&id.len()) && id.chars().all(|c| c.is_ascii_graphic());
    dashed || simple || text
}

/// How long a token from `GetWebSocketsToken` may wait before it is used to subscribe
/// (Kraken: "used within 15 minutes of creation").
pub const WS_TOKEN_VALID_SECS: u64 = 900;

/// Kraken's error for a subscription with a token it does not accept (an unknown,
/// expired or malformed token): `ESession:Invalid session` (support.kraken.com, "Why am I
/// getting a Session Invalid message"; the remedy is a new token from
/// `GetWebSocketsToken`).
pub const WS_INVALID_SESSION: &str = "ESession:Invalid session";

fn ws_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One `executions` entry for a status change of `o` (docs.kraken.com, WebSocket v2
/// `executions`: `exec_type`, `order_id`, `cl_ord_id`, `symbol`, `side`, `order_type`,
/// `order_qty`, `order_status`, `cum_qty`, `cum_cost`, `avg_price`, `timestamp`; money as
/// JSON numbers).
fn exec_entry(o: &MockOrder, exec_type: &str, order_status: &str, now: DateTime<Utc>) -> Value {
    let mut entry = json!({
        "exec_type": exec_type,
        "order_id": o.txid,
        "symbol": o.pair.as_str(),
        "side": o.side,
        "order_type": o.ordertype,
        "order_qty": number(o.volume),
        "order_status": order_status,
        "cum_qty": number(o.vol_exec),
        "cum_cost": number(o.cost),
        "avg_price": number(o.avg_price),
        "timestamp": ws_time(now),
    });
    if let Some(id) = &o.cl_ord_id {
        entry["cl_ord_id"] = json!(id);
    }
    if let Some(price) = o.price {
        entry["limit_price"] = number(price);
    }
    if exec_type == "canceled"
        && let Some(reason) = &o.reason
    {
        entry["reason"] = json!(reason);
    }
    entry
}

/// The entries of one execution of `qty` at `price` that took `o` to its current state: a
/// `trade` (whose `order_status` is `partially_filled` even when it completes the order,
/// as Kraken documents it can be) and, when complete, the separate `filled` update.
fn trade_entries(
    book: &mut Book,
    o: &MockOrder,
    qty: Decimal,
    price: Decimal,
    now: DateTime<Utc>,
) -> Vec<Value> {
    book.next_exec += 1;
    let mut trade = exec_entry(o, "trade", "partially_filled", now);
    trade["exec_id"] = json!(format!("E{:06}-MOCK", book.next_exec));
    trade["trade_id"] = json!(book.next_exec);
    trade["last_qty"] = number(qty);
    trade["last_price"] = number(price);
    trade["cost"] = number(qty * price);
    trade["liquidity_ind"] = json!(if o.ordertype == "market" { "t" } else { "m" });
    // The mock charges no fee (REST `fee` is "0" too).
    trade["fees"] = json!([{"asset": o.pair.quote(), "qty": number(Decimal::ZERO)}]);
    let mut entries = vec![trade];
    if o.vol_exec == o.volume {
        entries.push(exec_entry(o, "filled", "filled", now));
    }
    entries
}

/// A decimal as a JSON number with its digits as written (Kraken v2 puts money on the
/// wire as numbers).
fn number(d: Decimal) -> Value {
    serde_json::from_str(&d.normalize().to_string()).unwrap_or(Value::Null)
}

/// Sends an `executions` update to every subscribed connection.
fn push_executions(shared: &Shared, entries: Vec<Value>) {
    if entries.is_empty() {
        return;
    }
    let sequence = shared.ws.sequence.fetch_add(1, Ordering::SeqCst) + 1;
    let text = json!({
        "channel": "executions",
        "type": "update",
        "data": entries,
        "sequence": sequence,
    })
    .to_string();
    let _ = shared.ws.pushes.send(Arc::from(text));
}

async fn ws_upgrade(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| ws_session(shared, socket))
}

/// What a `subscribe` request gets: the subscription (a receiver made under the book's
/// lock, so no update falls between the snapshot and the stream) or Kraken's error.
fn ws_subscribe(
    shared: &Shared,
    request: &Value,
) -> Result<(broadcast::Receiver<Arc<str>>, Vec<Value>), &'static str> {
    let params = request.get("params").unwrap_or(&Value::Null);
    if params.get("channel").and_then(Value::as_str) != Some("executions") {
        return Err("EGeneral:Invalid arguments");
    }
    if shared
        .ws
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err("EService:Unavailable");
    }
    let now = shared.cfg.clock.now();
    let token = params
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let issued = shared.ws.tokens.lock().get(token).copied();
    let fresh = issued.is_some_and(|at| {
        now - at <= chrono::Duration::seconds(i64::try_from(WS_TOKEN_VALID_SECS).unwrap_or(900))
    });
    if !fresh {
        return Err(WS_INVALID_SESSION);
    }
    let book = shared.book.lock();
    let receiver = shared.ws.pushes.subscribe();
    let snapshot = if params.get("snap_orders").and_then(Value::as_bool) == Some(false) {
        Vec::new()
    } else {
        book.orders
            .iter()
            .filter(|o| o.status == "open")
            .map(|o| {
                let status = if o.vol_exec > Decimal::ZERO {
                    "partially_filled"
                } else {
                    "new"
                };
                exec_entry(o, "new", status, o.opened)
            })
            .collect()
    };
    Ok((receiver, snapshot))
}

async fn ws_session(shared: Arc<Shared>, mut socket: WebSocket) {
    let mut drops = shared.ws.drops.subscribe();
    drops.borrow_and_update();
    let mut pushes: Option<broadcast::Receiver<Arc<str>>> = None;
    let mut heartbeat = tokio::time::interval(shared.cfg.ws_heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silent = || shared.ws.silent.load(Ordering::SeqCst);
    loop {
        let out: Option<String> = tokio::select! {
            _ = drops.changed() => return,
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                let request: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let req_id = request.get("req_id").cloned().unwrap_or(Value::Null);
                let now = ws_time(shared.cfg.clock.now());
                match request.get("method").and_then(Value::as_str) {
                    Some("subscribe") => match ws_subscribe(&shared, &request) {
                        Ok((receiver, snapshot)) => {
                            shared.ws.log.lock().push("ok".into());
                            pushes = Some(receiver);
                            let ack = json!({
                                "method": "subscribe",
                                "result": {"channel": "executions", "snapshot": true},
                                "success": true,
                                "time_in": now,
                                "time_out": now,
                                "req_id": req_id,
                            });
                            if !silent()
                                && socket.send(WsMessage::text(ack.to_string())).await.is_err()
                            {
                                return;
                            }
                            let sequence = shared.ws.sequence.fetch_add(1, Ordering::SeqCst) + 1;
                            Some(json!({
                                "channel": "executions",
                                "type": "snapshot",
                                "data": snapshot,
                                "sequence": sequence,
                            }).to_string())
                        }
                        Err(error) => {
                            shared.ws.log.lock().push(error.into());
                            Some(json!({
                                "method": "subscribe",
                                "success": false,
                                "error": error,
                                "time_in": now,
                                "time_out": now,
                                "req_id": req_id,
                            }).to_string())
                        }
                    },
                    Some("ping") => Some(json!({
                        "method": "pong", "req_id": req_id, "time_in": now, "time_out": now,
                    }).to_string()),
                    _ => Some(json!({
                        "error": "EGeneral:Invalid arguments", "success": false,
                        "time_in": now, "time_out": now,
                    }).to_string()),
                }
            }
            push = async {
                match pushes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match push {
                Ok(text) if !silent() => Some(text.to_string()),
                Ok(_) => None,
                // Lost messages: end the connection, as Kraken would drop a slow reader.
                Err(_) => return,
            },
            _ = heartbeat.tick(), if pushes.is_some() => {
                (!silent()).then(|| json!({"channel": "heartbeat"}).to_string())
            }
        };
        // Silent: nothing leaves, not even an acknowledgement or an error.
        if let Some(text) = out.filter(|_| !silent())
            && socket.send(WsMessage::text(text)).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cl_ord_id_format_is_krakens() {
        for ok in [
            "d15708c1-dbb6-465d-b77d-47258319cc90",
            "d15708c1dbb6465db77d47258319cc90",
            "hold_long-1-2",
            "123456789012345678",
        ] {
            assert!(kraken_accepts_cl_ord_id(ok), "{ok}");
        }
        for bad in [
            "",
            "ema_cross-1796153720687-1",
            "1234567890123456789",
            "d15708c1-dbb6-465d-b77d-47258319cc9",
            "a b",
        ] {
            assert!(!kraken_accepts_cl_ord_id(bad), "{bad}");
        }
    }

    #[test]
    fn faults_fire_once_and_match_endpoint() {
        let faults = Faults::default();
        faults.inject(Some("AddOrder"), Fault::RateLimit);
        faults.inject(None, Fault::NotJson);
        assert_eq!(faults.pending(), 2);
        assert_eq!(faults.take("Balance"), Some(Fault::NotJson));
        assert_eq!(faults.take("Balance"), None);
        assert_eq!(faults.take("AddOrder"), Some(Fault::RateLimit));
        faults.inject(None, Fault::Unavailable);
        faults.clear();
        assert_eq!(faults.pending(), 0);
    }

    #[test]
    fn balance_codes_are_krakens() {
        assert_eq!(balance_code("USD"), "ZUSD");
        assert_eq!(balance_code("DOGE"), "XXDG");
        assert_eq!(wire::normalize_asset(&balance_code("XRP")), "XRP");
        assert_eq!(balance_code("USDT"), "USDT");
    }
}
