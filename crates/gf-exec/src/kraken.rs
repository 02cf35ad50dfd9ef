//! The Kraken spot REST client: signed private calls, a strictly increasing nonce, the
//! decaying-counter rate limiter with a guaranteed share per lane (dead man's switch,
//! order-status sync, halt traffic, the rest), typed errors, timeouts on every call, safe
//! retries, a `deadline` on every `AddOrder`, and reconciliation by client order id after an
//! ambiguous placement (never a second `AddOrder` before the first one's deadline).
//!
//! The trading gate is checked at the wire: every `AddOrder` attempt enters the client's
//! [`TradingGate`] immediately before the request is signed and written — after the rate
//! limiter's wait and again on every retry — and holds the permit until that request has
//! resolved (answer, error or timeout), so a halt's [`TradingGate::drained`] covers the
//! requests on the wire. A client without a gate places no orders.
//!
//! Credentials are read through a [`CredentialHandle`] on every request, so a rotation by
//! gf-secrets takes effect on the next call; they are never logged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gf_core::backoff::Backoff;
use gf_core::{
    ApiErrorKind, ClientOrderId, Config, CredentialHandle, OrderId, OrderPurpose, OrderRequest,
    OrderStatus, OrderType, Pair, Position, Side, TimeInForce, TradingGate,
};
use parking_lot::{Mutex, RwLock};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::events::Publisher;
use crate::gated::gate_refusal;
use crate::ratelimit::{Lane, LanePlan, Limits, RateLimiter, Tier};
use crate::sign::{NonceSource, api_sign};
use crate::wire::{self, PairMap};
use crate::{
    DeadManStatus, Error, Exchange, GatedExchange, OrderAck, OrderInfo, OrderRef, Reconciled,
};

/// Longest wait between two retries of one REST call.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Settings of the Kraken client.
#[derive(Debug, Clone, PartialEq)]
pub struct KrakenConfig {
    /// Base URL, e.g. `https://api.kraken.com` or the mock server's URL.
    pub base_url: String,
    /// Timeout of each HTTP call.
    pub timeout: Duration,
    /// The REST API counter the client keeps under.
    pub rest_limits: Limits,
    /// The matching-engine counter (AddOrder, CancelOrder).
    pub trading_limits: Limits,
    /// Retries of a failed call where retrying is safe.
    pub max_retries: u32,
    /// First retry delay; doubles per attempt, capped at [`RETRY_BACKOFF_MAX`].
    pub retry_backoff: Duration,
    /// Pairs traded (for pair names and spot positions).
    pub pairs: Vec<Pair>,
    /// File holding the nonce high-water mark; `None` keeps it in memory only.
    pub nonce_file: Option<PathBuf>,
    /// How far ahead of the send each `AddOrder`'s `deadline` lies (Kraken accepts 500 ms
    /// to 60 s; clamped to 1 s – 59 s so transit time cannot push it out of range). The
    /// matching engine does not place the order after it, so once it has passed an order
    /// not found by client order id was never placed and may be sent again.
    pub order_deadline: Duration,
    /// Allowance for the difference between our clock and Kraken's: after an ambiguous
    /// `AddOrder`, the decisive look-up happens at `deadline + deadline_margin`.
    pub deadline_margin: Duration,
    /// How often the dead man's switch is refreshed through this client, if at all: its
    /// lane of the REST counter is sized for it (see [`crate::ratelimit`]).
    pub dead_man_refresh: Option<Duration>,
}

impl KrakenConfig {
    /// Defaults (starter tier, 5 s timeout, 2 retries) for `base_url`.
    #[must_use]
    pub fn new(base_url: impl Into<String>) -> Self {
        let market = gf_core::config::MarketConfig::default();
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(5),
            rest_limits: Limits::rest(Tier::Starter),
            trading_limits: Limits::trading(Tier::Starter),
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            pairs: market.pairs,
            nonce_file: None,
            order_deadline: Duration::from_secs(5),
            deadline_margin: Duration::from_secs(1),
            dead_man_refresh: None,
        }
    }

    /// From the configuration: `exchange.rest_url`, `exchange.tier`, `exchange.timeout_ms`,
    /// `exchange.dead_man_switch_secs`, `market.pairs`; the nonce file is
    /// `<general.data_dir>/kraken.nonce`.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero timeout or a switch timeout above Kraken's maximum.
    pub fn from_config(cfg: &Config) -> Result<Self, Error> {
        let tier = cfg.exchange.tier;
        if cfg.exchange.timeout_ms == 0 {
            return Err(Error::Config {
                key: "exchange.timeout_ms".into(),
                value: "0".into(),
                reason: "must be positive".into(),
            });
        }
        Ok(Self {
            base_url: cfg.exchange.rest_url.clone(),
            timeout: Duration::from_millis(cfg.exchange.timeout_ms),
            rest_limits: Limits::rest(tier),
            trading_limits: Limits::trading(tier),
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            pairs: cfg.market.pairs.clone(),
            nonce_file: Some(cfg.general.data_dir.join("kraken.nonce")),
            // The deadline follows the call's timeout: an order still queued when we stop
            // waiting for the answer is not placed much later.
            order_deadline: Duration::from_millis(cfg.exchange.timeout_ms),
            deadline_margin: Duration::from_secs(1),
            dead_man_refresh: crate::DeadManConfig::from_config(&cfg.exchange)?
                .map(|d| d.refresh_every),
        })
    }
}

/// One pair as `AssetPairs` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPairInfo {
    /// The pair.
    pub pair: Pair,
    /// Kraken's REST name (`altname`).
    pub altname: String,
    /// Price decimals.
    pub pair_decimals: u32,
    /// Quantity decimals.
    pub lot_decimals: u32,
    /// Minimum order quantity.
    pub ordermin: Option<Decimal>,
}

#[derive(Debug, Clone)]
struct Known {
    client_order_id: ClientOrderId,
    pair: Pair,
    side: Side,
    purpose: OrderPurpose,
    status: OrderStatus,
    filled: Decimal,
    cost: Decimal,
    fee: Decimal,
}

/// The Kraken REST client. Give it the trading gate ([`KrakenClient::with_gate`]) and hand
/// out [`KrakenClient::into_gated`].
pub struct KrakenClient {
    http: reqwest::Client,
    cfg: KrakenConfig,
    base: String,
    creds: Arc<dyn CredentialHandle>,
    nonce: NonceSource,
    /// Held from nonce assignment until the request is written (see `signed_call`).
    wire: tokio::sync::Mutex<()>,
    rest: RateLimiter,
    trading: RateLimiter,
    pairs: RwLock<PairMap>,
    precisions: RwLock<HashMap<Pair, AssetPairInfo>>,
    known: Mutex<HashMap<OrderId, Known>>,
    /// Executions pushed for orders not tracked (yet): a market order's trade can arrive
    /// over the `executions` channel before `AddOrder` has answered. Bounded.
    orphans: Mutex<VecDeque<(OrderId, Cumulative)>>,
    events: Publisher,
    gate: Option<TradingGate>,
}

/// How many untracked orders' executions are held for [`KrakenClient`] to claim when the
/// order becomes tracked (older ones are dropped; REST sync still finds them).
pub const MAX_ORPHANS: usize = 256;

/// A fee as a source reports it: REST gives the order's total so far, the `executions`
/// channel the fee of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeeUpdate {
    /// The order's cumulative fee.
    Total(Decimal),
    /// The fee of the execution that raised the cumulative quantity.
    Add(Decimal),
}

/// An order's cumulative state as one source saw it; every source's report goes through
/// [`KrakenClient::apply_cumulative`], so a fill is published once, by whichever source
/// reports the higher cumulative quantity first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cumulative {
    pub status: OrderStatus,
    pub filled: Decimal,
    pub cost: Decimal,
    pub fee: FeeUpdate,
    pub avg_price: Option<Decimal>,
}

/// Progress order of statuses: a report never moves an order back (a late `pending_new`
/// after the acknowledgement, a trade's `partially_filled` after `filled`).
fn status_rank(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::Pending => 0,
        OrderStatus::Open => 1,
        OrderStatus::PartiallyFilled => 2,
        OrderStatus::Filled
        | OrderStatus::Cancelled
        | OrderStatus::Rejected
        | OrderStatus::Expired => 3,
    }
}

/// What applying one pushed execution did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The order is tracked and its state moved (`Some` newly filled quantity).
    Changed(Decimal),
    /// The order is tracked; nothing new (the other source was first, or a repeat).
    Unchanged,
    /// Not tracked (yet): held until it is.
    Held,
}

/// A WebSocket authentication token (`GetWebSocketsToken`). Never logged.
pub struct WsToken {
    token: zeroize::Zeroizing<String>,
    /// Kraken's `expires`: seconds within which it must be used to subscribe.
    pub expires: Duration,
}

impl WsToken {
    /// The token text, for the subscribe request only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.token
    }
}

impl std::fmt::Debug for WsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsToken")
            .field("token", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

impl std::fmt::Debug for KrakenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KrakenClient")
            .field("base", &self.base)
            .field("credentials", &"<handle>")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

fn is_trading(endpoint: &str) -> bool {
    matches!(endpoint, "AddOrder" | "CancelOrder")
}

fn fmt_dec(d: Decimal) -> String {
    d.normalize().to_string()
}

impl KrakenClient {
    /// A client. Nothing is sent until the first call.
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable base URL, [`Error::NonceFile`] when the nonce
    /// file cannot be read.
    pub fn new(
        cfg: KrakenConfig,
        creds: Arc<dyn CredentialHandle>,
        events: Publisher,
    ) -> Result<Self, Error> {
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config {
                key: "exchange.rest_url".into(),
                value: cfg.base_url.clone(),
                reason: "must start with http:// or https://".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("gal-friday/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config {
                key: "exchange.rest_url".into(),
                value: cfg.base_url.clone(),
                reason: format!("cannot build http client: {e}"),
            })?;
        let nonce = match &cfg.nonce_file {
            Some(path) => NonceSource::with_file(events.clock().clone(), path)?,
            None => NonceSource::new(events.clock().clone()),
        };
        Ok(Self {
            http,
            base,
            creds,
            nonce,
            wire: tokio::sync::Mutex::new(()),
            rest: RateLimiter::with_lanes(
                cfg.rest_limits,
                LanePlan {
                    dead_man_every: cfg.dead_man_refresh,
                    sync: true,
                },
            ),
            trading: RateLimiter::new(cfg.trading_limits),
            pairs: RwLock::new(PairMap::new(&cfg.pairs)),
            precisions: RwLock::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            orphans: Mutex::new(VecDeque::new()),
            events,
            gate: None,
            cfg,
        })
    }

    /// Checks `gate` at the wire: each `AddOrder` attempt enters it immediately before the
    /// request is written and holds the permit until the request resolves. Without a gate
    /// the client places no orders.
    #[must_use]
    pub fn with_gate(mut self, gate: TradingGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// This client behind its own gate: the wrapper refuses early (nothing waits for the
    /// rate limiter behind a closed gate), the client checks again at the wire. The only
    /// way to share the client for trading; there is no accessor back to it.
    ///
    /// # Errors
    /// [`Error::Config`] when the client was built without [`KrakenClient::with_gate`].
    pub fn into_gated(
        self: Arc<Self>,
        events: Publisher,
    ) -> Result<GatedExchange<Arc<Self>>, Error> {
        let gate = self.gate.clone().ok_or_else(no_gate)?;
        Ok(GatedExchange::checked_at_wire(self, gate, events))
    }

    /// The REST counter limiter (for metrics and tests).
    #[must_use]
    pub fn rest_limiter(&self) -> &RateLimiter {
        &self.rest
    }

    /// The matching-engine counter limiter (orders and cancels; for metrics and tests).
    #[must_use]
    pub fn trading_limiter(&self) -> &RateLimiter {
        &self.trading
    }

    /// The last nonce sent.
    #[must_use]
    pub fn last_nonce(&self) -> u64 {
        self.nonce.last()
    }

    async fn send(
        &self,
        endpoint: &str,
        url: &str,
        body: Option<reqwest::Body>,
        auth: Option<(String, String)>,
    ) -> Result<Value, Error> {
        let mut req = match body {
            Some(body) => self
                .http
                .post(url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body),
            None => self.http.get(url),
        };
        if let Some((key, sign)) = auth {
            let header = |text: String| {
                HeaderValue::from_str(&text).map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
            };
            let (Ok(key), Ok(sign)) = (header(key), header(sign)) else {
                return Err(Error::Config {
                    key: "api_key".into(),
                    value: "<redacted>".into(),
                    reason: "not usable in an HTTP header".into(),
                });
            };
            req = req.header("API-Key", key).header("API-Sign", sign);
        }
        let millis = u64::try_from(self.cfg.timeout.as_millis()).unwrap_or(u64::MAX);
        let call = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        };
        match tokio::time::timeout(self.cfg.timeout, call).await {
            Err(_) => Err(Error::Timeout {
                endpoint: endpoint.to_owned(),
                millis,
            }),
            Ok(Err(e)) if e.is_timeout() => Err(Error::Timeout {
                endpoint: endpoint.to_owned(),
                millis,
            }),
            Ok(Err(e)) => Err(Error::Network {
                endpoint: endpoint.to_owned(),
                message: e.without_url().to_string(),
            }),
            Ok(Ok((status, bytes))) => wire::parse_envelope(endpoint, status, &bytes),
        }
    }

    /// One signed private call, without retries. Publishes `ApiError` on failure and a
    /// `Latency` event either way.
    ///
    /// With `admit`, the call places that order: after the rate limiter's wait the order
    /// enters the gate, and the permit is held until the request has resolved. A refusal
    /// sends nothing (and is not an API error). The order's `deadline` is set then too
    /// (from the moment of sending) and written to `admit.deadline`.
    async fn private_once(
        &self,
        endpoint: &'static str,
        params: &[(&str, String)],
        lane: Lane,
        admit: Option<Admit<'_>>,
    ) -> Result<Value, Error> {
        let limiter = if is_trading(endpoint) {
            &self.trading
        } else {
            &self.rest
        };
        limiter.acquire(lane, 1).await;
        // The gate at the wire: from here the only wait is the request itself (connect,
        // write, answer or timeout), all of it under the permit.
        let with_deadline: Vec<(&str, String)>;
        let mut params = params;
        let mut permit = match admit {
            None => None,
            Some(Admit { order, deadline }) => {
                let gate = self.gate.as_ref().ok_or_else(no_gate)?;
                let permit = gate.enter(order).map_err(gate_refusal)?;
                let at = self.events.clock().now() + self.order_deadline();
                *deadline = Some(at);
                let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                with_deadline = params
                    .iter()
                    .cloned()
                    .chain(std::iter::once(("deadline", stamp)))
                    .collect();
                params = &with_deadline;
                Some(permit)
            }
        };
        let started = Instant::now();
        let result = self.signed_call(endpoint, params).await;
        if let (Some(permit), Err(err)) = (permit.as_mut(), &result)
            && err.is_ambiguous()
        {
            // It may be on the book: a halt must ask what became of it.
            permit.mark_unresolved();
        }
        drop(permit);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.events.latency(&format!("rest:{endpoint}"), micros);
        if let Err(err) = &result {
            if err.kind() == ApiErrorKind::RateLimit {
                // The exchange's counter is fuller than ours: make normal traffic wait.
                limiter.saturate();
            }
            tracing::warn!(endpoint, cause = %err, "kraken call failed");
            self.events.api_error(endpoint, err);
        }
        result
    }

    /// Signs and sends one private call. Requests reach Kraken in nonce order: the nonce is
    /// assigned under the `wire` lock, which is held until the call has been answered, or
    /// [`WIRE_GRACE`] has passed, whichever comes first.
    ///
    /// Trade-off: releasing once the request is written is not enough — Kraken (like the
    /// mock) reads separate connections concurrently, so a later request on another
    /// connection can be checked first. Holding the lock for the round trip orders them,
    /// at the price of one private call at a time (about ten a second at Kraken's usual
    /// latency, more than the REST counter allows anyway). The grace bounds how long a
    /// stalled call holds up the others (a halt's cancel-all included): after it, later
    /// calls go ahead and the slow one may be refused by Kraken with `EAPI:Invalid nonce`
    /// — refused, so never done twice — unless the key has a nonce window (see
    /// docs/runbook.md, "Going live").
    async fn signed_call(
        &self,
        endpoint: &'static str,
        params: &[(&str, String)],
    ) -> Result<Value, Error> {
        let turn = self.wire.lock().await;
        let nonce = self.nonce.next()?;
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(("nonce", nonce.to_string()));
        all.extend(params.iter().cloned());
        let body = wire::form_encode(&all);
        let path = format!("/0/private/{endpoint}");
        let mut auth = None;
        let loaded = self.creds.with_credentials(&mut |key, secret| {
            auth = Some((key.to_owned(), api_sign(&path, nonce, &body, secret)));
        });
        let Some(auth) = auth.filter(|_| loaded) else {
            return Err(Error::NoCredentials {
                version: self.creds.version(),
            });
        };
        let url = format!("{}{path}", self.base);
        let call = self.send(endpoint, &url, Some(body.into()), Some(auth));
        tokio::pin!(call);
        tokio::select! {
            result = &mut call => return result,
            () = tokio::time::sleep(WIRE_GRACE) => {}
        }
        // Slow: let the others go (this one may now be overtaken and refused).
        drop(turn);
        call.await
    }

    /// The `deadline` distance, inside Kraken's accepted range with room for transit.
    fn order_deadline(&self) -> chrono::Duration {
        let d = self
            .cfg
            .order_deadline
            .clamp(Duration::from_secs(1), Duration::from_secs(59));
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(5))
    }

    /// The wait before retry `attempt` (1-based): the workspace's one [`Backoff`], without
    /// jitter (the retries of one call are few and paced by the rate limiter).
    fn backoff(&self, attempt: u32) -> Duration {
        Backoff::exponential(self.cfg.retry_backoff, RETRY_BACKOFF_MAX)
            .ceiling_after(attempt.saturating_sub(1))
    }

    /// A private call that is safe to repeat: retried on retryable errors.
    async fn idempotent(
        &self,
        endpoint: &'static str,
        params: &[(&str, String)],
        lane: Lane,
    ) -> Result<Value, Error> {
        let mut attempt = 0;
        loop {
            match self.private_once(endpoint, params, lane, None).await {
                Err(e) if e.is_retryable() && attempt < self.cfg.max_retries => {
                    attempt += 1;
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Kraken's trading mode now: public `SystemStatus`, whose `status` is one of `online`,
    /// `maintenance`, `cancel_only`, `post_only` (docs.kraken.com api-reference/
    /// market-data/get-system-status). An undocumented value is
    /// [`ExchangeSystem::Unknown`](gf_core::event::ExchangeSystem::Unknown).
    ///
    /// # Errors
    /// The transport's or Kraken's error (published as an `ApiError`), or
    /// [`Error::Malformed`] for an answer without a `status` string.
    pub async fn system_status(&self) -> Result<gf_core::event::ExchangeSystem, Error> {
        let url = format!("{}/0/public/SystemStatus", self.base);
        self.rest.acquire(Lane::Normal, 1).await;
        let result = match self.send("SystemStatus", &url, None, None).await {
            Ok(v) => v,
            Err(e) => {
                self.events.api_error("SystemStatus", &e);
                return Err(e);
            }
        };
        let status = result
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Malformed {
                endpoint: "SystemStatus".into(),
                status: 200,
                snippet: "no `status` string in the result".into(),
            })?;
        Ok(gf_core::event::ExchangeSystem::from_kraken(status))
    }

    /// `AssetPairs` (public): pair names, precisions and minimums; learns the names.
    ///
    /// # Errors
    /// [`Error`] from the call or a malformed answer.
    pub async fn asset_pairs(&self) -> Result<Vec<AssetPairInfo>, Error> {
        let names: Vec<String> = self.cfg.pairs.iter().map(wire::rest_pair_name).collect();
        let url = format!("{}/0/public/AssetPairs?pair={}", self.base, names.join(","));
        self.rest.acquire(Lane::Normal, 1).await;
        let result = self.send("AssetPairs", &url, None, None).await;
        let result = match result {
            Ok(v) => v,
            Err(e) => {
                self.events.api_error("AssetPairs", &e);
                return Err(e);
            }
        };
        let bad = |what: String| Error::Malformed {
            endpoint: "AssetPairs".into(),
            status: 200,
            snippet: what,
        };
        let obj = result
            .as_object()
            .ok_or_else(|| bad("expected an object of pairs".into()))?;
        let mut out = Vec::new();
        let mut map = self.pairs.write();
        for (name, info) in obj {
            let wsname = info
                .get("wsname")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let altname = info
                .get("altname")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_owned();
            let pair = Pair::new(wsname)
                .ok()
                .map(|p| {
                    Pair::new(&format!(
                        "{}/{}",
                        wire::normalize_asset(p.base()),
                        wire::normalize_asset(p.quote())
                    ))
                    .unwrap_or(p)
                })
                .or_else(|| map.resolve(&altname))
                .ok_or_else(|| bad(format!("pair {name}: no usable wsname")))?;
            let decimals = |key: &str| {
                info.get(key)
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| bad(format!("pair {name}: bad {key}")))
            };
            map.insert(name, pair.clone());
            map.insert(&altname, pair.clone());
            out.push(AssetPairInfo {
                pair,
                altname,
                pair_decimals: decimals("pair_decimals")?,
                lot_decimals: decimals("lot_decimals")?,
                ordermin: info
                    .get("ordermin")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok()),
            });
        }
        out.sort_by(|a, b| a.pair.cmp(&b.pair));
        drop(map);
        let mut precisions = self.precisions.write();
        for info in &out {
            precisions.insert(info.pair.clone(), info.clone());
        }
        Ok(out)
    }

    /// `TradeBalance`: equity figures (`eb`, `tb`, …) as decimals.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn trade_balance(&self) -> Result<BTreeMap<String, Decimal>, Error> {
        let result = self
            .idempotent("TradeBalance", &[("asset", "ZUSD".into())], Lane::Normal)
            .await?;
        let obj = result.as_object().ok_or_else(|| Error::Malformed {
            endpoint: "TradeBalance".into(),
            status: 200,
            snippet: "expected an object".into(),
        })?;
        Ok(obj
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?)))
            .collect())
    }

    /// Checks an order against the pair's precisions and minimum once `AssetPairs` has
    /// been loaded, so that Kraken is not asked to refuse it.
    fn check_precision(&self, order: &OrderRequest) -> Result<(), Error> {
        let precisions = self.precisions.read();
        let Some(info) = precisions.get(&order.pair) else {
            return Ok(());
        };
        let reject = |reason: String| Error::Rejected {
            client_order_id: order.client_order_id.0.clone(),
            reason,
            kind: ApiErrorKind::InvalidArguments,
        };
        if order.qty.normalize().scale() > info.lot_decimals {
            return Err(reject(format!(
                "volume {} has more than {} decimals for {}",
                order.qty, info.lot_decimals, order.pair
            )));
        }
        if let Some(price) = order.limit_price
            && price.normalize().scale() > info.pair_decimals
        {
            return Err(reject(format!(
                "price {price} has more than {} decimals for {}",
                info.pair_decimals, order.pair
            )));
        }
        if let Some(min) = info.ordermin
            && order.qty < min
            && !order.is_sealed()
        {
            return Err(reject(format!(
                "volume {} is below the minimum {min} for {}",
                order.qty, order.pair
            )));
        }
        Ok(())
    }

    /// `AddOrder`'s parameters. Refuses, before anything is sent, a client order id Kraken
    /// would refuse (Kraken's `cl_ord_id`: a UUID, 36 characters with dashes or 32 hex
    /// digits, or free text of at most 18 ASCII characters —
    /// <https://docs.kraken.com/exchange/guides/general/clordid>) and an order carrying
    /// `userref` as well (Kraken: `cl_ord_id` and `userref` are mutually exclusive).
    fn add_order_params(order: &OrderRequest) -> Result<Vec<(&'static str, String)>, Error> {
        let refuse = |reason: String| Error::Rejected {
            client_order_id: order.client_order_id.0.clone(),
            reason,
            kind: ApiErrorKind::InvalidArguments,
        };
        order
            .client_order_id
            .check_kraken()
            .map_err(|e| refuse(e.to_string()))?;
        if let Some(user_ref) = order.user_ref {
            return Err(refuse(format!(
                "userref {user_ref} with cl_ord_id {}: Kraken takes one or the other",
                order.client_order_id
            )));
        }
        let mut p = vec![
            (
                "ordertype",
                match order.order_type {
                    OrderType::Market => "market".to_owned(),
                    OrderType::Limit => "limit".to_owned(),
                },
            ),
            ("type", order.side.to_string()),
            ("volume", fmt_dec(order.qty)),
            ("pair", wire::rest_pair_name(&order.pair)),
        ];
        if let Some(price) = order.limit_price {
            p.push(("price", fmt_dec(price)));
        }
        if order.order_type == OrderType::Limit && order.time_in_force == TimeInForce::Ioc {
            p.push(("timeinforce", "IOC".into()));
        }
        p.push(("cl_ord_id", order.client_order_id.0.clone()));
        if order.reduce_only {
            p.push(("reduce_only", "true".into()));
        }
        // REST `AddOrder` `oflags`, a comma-delimited list: `post` is "post-only order
        // (available when ordertype = limit)"; `OrderRequest::validate` has refused it on
        // anything else. (WebSocket v2 `add_order` spells it `post_only: true`; this
        // client places orders over REST only.)
        if order.post_only {
            p.push(("oflags", "post".into()));
        }
        Ok(p)
    }

    fn remember(&self, order_id: &OrderId, order: &OrderRequest, status: OrderStatus) {
        self.known.lock().insert(
            order_id.clone(),
            Known {
                client_order_id: order.client_order_id.clone(),
                pair: order.pair.clone(),
                side: order.side,
                purpose: order.purpose,
                status,
                filled: Decimal::ZERO,
                cost: Decimal::ZERO,
                fee: Decimal::ZERO,
            },
        );
    }

    /// Start-up reconciliation: every order open on the account now (`OpenOrders`), with
    /// the cost and fee Kraken reports for its executions so far.
    ///
    /// # Errors
    /// [`Error`] from the call or a malformed answer.
    pub async fn open_orders_with_cost(&self) -> Result<Vec<(OrderInfo, Decimal, Decimal)>, Error> {
        self.orders_with_cost("OpenOrders", "open").await
    }

    /// Start-up reconciliation: the most recent closed orders (`ClosedOrders`; Kraken
    /// answers the latest 50), with cost and fee.
    ///
    /// # Errors
    /// [`Error`] from the call or a malformed answer.
    pub async fn recent_closed_orders(&self) -> Result<Vec<(OrderInfo, Decimal, Decimal)>, Error> {
        self.orders_with_cost("ClosedOrders", "closed").await
    }

    async fn orders_with_cost(
        &self,
        endpoint: &'static str,
        key: &str,
    ) -> Result<Vec<(OrderInfo, Decimal, Decimal)>, Error> {
        let result = self.idempotent(endpoint, &[], Lane::Normal).await?;
        let empty = Value::Object(serde_json::Map::new());
        let map = result.get(key).unwrap_or(&empty);
        let orders = wire::parse_order_map(endpoint, map, &self.pairs.read())?;
        Ok(orders
            .into_iter()
            .map(|o| {
                let (cost, fee) = map
                    .get(o.order_id.as_str())
                    .map(wire::order_cost_fee)
                    .unwrap_or_default();
                (o, cost, fee)
            })
            .collect())
    }

    /// Starts tracking an order this client did not place (start-up reconciliation with
    /// `exchange.unknown_orders = "adopt"`): from now on order-status sync publishes its
    /// executions beyond `info.filled_qty` (at `cost`/`fee` so far) as fills, like for an
    /// order placed here. Returns the client order id its events carry: its own
    /// `cl_ord_id`, or Kraken's txid when it has none. Already tracked: unchanged.
    pub fn adopt_order(&self, info: &OrderInfo, cost: Decimal, fee: Decimal) -> ClientOrderId {
        let client_order_id = info
            .client_order_id
            .clone()
            .unwrap_or_else(|| ClientOrderId::new(info.order_id.as_str()));
        self.known
            .lock()
            .entry(info.order_id.clone())
            .or_insert_with(|| Known {
                client_order_id: client_order_id.clone(),
                pair: info.pair.clone(),
                side: info.side,
                purpose: OrderPurpose::Normal,
                status: info.status,
                filled: info.filled_qty,
                cost,
                fee,
            });
        self.claim_pushed(&info.order_id);
        client_order_id
    }

    /// Polls `QueryOrders` for every order this client placed that is not yet terminal and
    /// publishes what changed: a `Fill` for newly executed quantity (at the volume-weighted
    /// price of the new executions, with the fee charged for them) and an `OrderUpdate` for
    /// each status change. Returns how many orders changed.
    ///
    /// # Errors
    /// [`Error`] from the call; nothing is published for a failed poll.
    pub async fn sync_orders(&self) -> Result<usize, Error> {
        let ids: Vec<OrderId> = self
            .known
            .lock()
            .iter()
            .filter(|(_, k)| !k.status.is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = 0;
        for chunk in ids.chunks(50) {
            let txids = chunk
                .iter()
                .map(OrderId::as_str)
                .collect::<Vec<_>>()
                .join(",");
            let result = self
                .idempotent("QueryOrders", &[("txid", txids)], Lane::Sync)
                .await?;
            let obj = result.as_object().ok_or_else(|| Error::Malformed {
                endpoint: "QueryOrders".into(),
                status: 200,
                snippet: "expected an object of orders".into(),
            })?;
            for (txid, raw) in obj {
                let info = wire::parse_order("QueryOrders", txid, raw, &self.pairs.read())?;
                let (cost, fee) = wire::order_cost_fee(raw);
                changed += usize::from(self.apply_sync(&info, cost, fee).is_some());
            }
        }
        Ok(changed)
    }

    /// Publishes what changed of a tracked order; `Some(newly filled quantity)` when
    /// anything changed, `None` when nothing did (or the order is not tracked).
    fn apply_sync(&self, info: &OrderInfo, cost: Decimal, fee: Decimal) -> Option<Decimal> {
        self.apply_cumulative(
            &info.order_id,
            &Cumulative {
                status: info.status,
                filled: info.filled_qty,
                cost,
                fee: FeeUpdate::Total(fee),
                avg_price: info.avg_price,
            },
        )
    }

    /// The one place where an order's reported state becomes events (REST `QueryOrders`,
    /// reconciliation, the `executions` channel): a `Fill` for cumulative quantity beyond
    /// what was already published (at the volume-weighted price of the new executions,
    /// with their fee) and an `OrderUpdate` when the state moved. Reports are applied only
    /// forwards — a lower cumulative quantity or an earlier status is ignored — so two
    /// sources reporting the same execution publish it once, whichever comes first.
    /// `Some(newly filled quantity)` when anything changed, `None` when nothing did (or
    /// the order is not tracked).
    pub(crate) fn apply_cumulative(
        &self,
        order_id: &OrderId,
        update: &Cumulative,
    ) -> Option<Decimal> {
        let (known, new_qty, new_cost, new_fee) = {
            let mut map = self.known.lock();
            let k = map.get_mut(order_id)?;
            let more = update.filled > k.filled;
            let moved = status_rank(update.status) > status_rank(k.status);
            if update.filled < k.filled || !(more || moved) {
                return None;
            }
            let delta = |new: Decimal, old: Decimal| {
                new.checked_sub(old).unwrap_or_default().max(Decimal::ZERO)
            };
            let fee = match update.fee {
                FeeUpdate::Total(total) => total,
                FeeUpdate::Add(fee) if more => k.fee.checked_add(fee).unwrap_or(k.fee),
                FeeUpdate::Add(_) => k.fee,
            };
            let deltas = (
                delta(update.filled, k.filled),
                delta(update.cost, k.cost),
                delta(fee, k.fee),
            );
            if status_rank(update.status) >= status_rank(k.status) {
                k.status = update.status;
            }
            k.filled = update.filled;
            k.cost = k.cost.max(update.cost);
            k.fee = k.fee.max(fee);
            (k.clone(), deltas.0, deltas.1, deltas.2)
        };
        if new_qty > Decimal::ZERO {
            // The cost over the quantity of this execution; a quotient out of Decimal's
            // range (a malformed report: say cost 7.9e28 for 1e-20) falls back to the
            // average price the report gave rather than panic.
            let price = if new_cost > Decimal::ZERO {
                new_cost
                    .checked_div(new_qty)
                    .or(update.avg_price)
                    .unwrap_or_default()
            } else {
                update.avg_price.unwrap_or_default()
            };
            self.events.fill(gf_core::Fill {
                trade_id: format!("{}:{}", order_id, update.filled.normalize()),
                order_id: order_id.clone(),
                client_order_id: Some(known.client_order_id.clone()),
                pair: known.pair.clone(),
                side: known.side,
                qty: new_qty,
                price,
                fee: new_fee,
                ts: self.events.clock().now(),
                purpose: known.purpose,
            });
        }
        self.events.order_update(
            &known.client_order_id,
            Some(order_id),
            &known.pair,
            known.status,
            known.filled,
            None,
        );
        Some(new_qty)
    }

    /// Applies one execution pushed by the `executions` channel: through
    /// [`KrakenClient::apply_cumulative`] when the order is tracked, otherwise held (at
    /// most [`MAX_ORPHANS`] orders) until it is — a market order can execute, and its
    /// trade be pushed, before `AddOrder` has answered.
    pub(crate) fn apply_pushed(&self, order_id: &OrderId, update: Cumulative) -> Applied {
        if self.known.lock().contains_key(order_id) {
            return match self.apply_cumulative(order_id, &update) {
                Some(qty) => Applied::Changed(qty),
                None => Applied::Unchanged,
            };
        }
        let mut orphans = self.orphans.lock();
        if let Some((_, held)) = orphans.iter_mut().find(|(id, _)| id == order_id) {
            if update.filled > held.filled {
                let fee = match (held.fee, update.fee) {
                    (FeeUpdate::Add(a), FeeUpdate::Add(b)) => {
                        FeeUpdate::Add(a.checked_add(b).unwrap_or(a))
                    }
                    (_, newer) => newer,
                };
                held.filled = update.filled;
                held.cost = update.cost;
                held.avg_price = update.avg_price;
                held.fee = fee;
            }
            if status_rank(update.status) >= status_rank(held.status) {
                held.status = update.status;
            }
        } else {
            orphans.push_back((order_id.clone(), update));
            while orphans.len() > MAX_ORPHANS {
                orphans.pop_front();
            }
        }
        drop(orphans);
        // It may have become tracked meanwhile: claim it now rather than wait.
        if self.known.lock().contains_key(order_id) {
            self.claim_pushed(order_id);
        }
        Applied::Held
    }

    /// Tracks `order_id` as `order` placed and open, nothing filled, without sending it,
    /// then claims what was pushed for it before (as a placement does): for the
    /// `executions` fuzz target, which pushes executions for tracked and untracked orders.
    #[doc(hidden)]
    pub fn fuzz_track(&self, order_id: &OrderId, order: &OrderRequest) {
        self.remember(order_id, order, OrderStatus::Open);
        self.claim_pushed(order_id);
    }

    /// Forgets every tracked order and every held execution (the fuzz target's reset
    /// between inputs).
    #[doc(hidden)]
    pub fn fuzz_forget_all(&self) {
        self.known.lock().clear();
        self.orphans.lock().clear();
    }

    /// The cumulative quantity and cost published so far for a tracked order.
    pub(crate) fn known_quantities(&self, order_id: &OrderId) -> Option<(Decimal, Decimal)> {
        self.known.lock().get(order_id).map(|k| (k.filled, k.cost))
    }

    /// Applies what the `executions` channel pushed for `order_id` before it was tracked.
    fn claim_pushed(&self, order_id: &OrderId) {
        let held = {
            let mut orphans = self.orphans.lock();
            orphans
                .iter()
                .position(|(id, _)| id == order_id)
                .and_then(|i| orphans.remove(i))
        };
        if let Some((_, update)) = held {
            self.apply_cumulative(order_id, &update);
        }
    }

    /// `GetWebSocketsToken`: a token for the private WebSocket (`executions`). Kraken:
    /// "The token should be used within 15 minutes of creation, but it does not expire
    /// once a successful Websockets connection and private subscription has been made and
    /// is maintained" (docs.kraken.com, REST "Get Websockets Token"; the key needs the
    /// "WebSocket interface" permission) — so a fresh one is fetched for every connection.
    /// On the order-status sync lane: it is part of fill detection.
    ///
    /// # Errors
    /// [`Error`] from the call, [`Error::Malformed`] for an answer without a token (the
    /// answer's text is never quoted: it may hold the token).
    pub async fn websockets_token(&self) -> Result<WsToken, Error> {
        let result = self
            .idempotent("GetWebSocketsToken", &[], Lane::Sync)
            .await?;
        let token = result
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Malformed {
                endpoint: "GetWebSocketsToken".into(),
                status: 200,
                snippet: "no `token` string in the result".into(),
            })?;
        let expires = result.get("expires").and_then(Value::as_u64).unwrap_or(900);
        Ok(WsToken {
            token: zeroize::Zeroizing::new(token.to_owned()),
            expires: Duration::from_secs(expires),
        })
    }

    /// Runs [`KrakenClient::sync_orders`] every `every` until the task is aborted; failures
    /// are logged (each failed call is already an `ApiError` event).
    pub fn spawn_order_sync(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = me.sync_orders().await {
                    tracing::warn!(cause = %err, "order sync failed");
                }
            }
        })
    }

    /// Finds an order by our client id: open orders first, then closed ones.
    ///
    /// # Errors
    /// [`Error`] from the calls.
    pub async fn find_by_client_id(
        &self,
        client_order_id: &ClientOrderId,
        lane: Lane,
    ) -> Result<Option<OrderInfo>, Error> {
        Ok(self
            .lookup_client_id(client_order_id, lane)
            .await?
            .map(|(info, _, _)| info))
    }

    /// As [`KrakenClient::find_by_client_id`], with the order's cost and fee.
    async fn lookup_client_id(
        &self,
        client_order_id: &ClientOrderId,
        lane: Lane,
    ) -> Result<Option<(OrderInfo, Decimal, Decimal)>, Error> {
        let params = [("cl_ord_id", client_order_id.0.clone())];
        for (endpoint, key) in [("OpenOrders", "open"), ("ClosedOrders", "closed")] {
            let result = self.idempotent(endpoint, &params, lane).await?;
            let empty = Value::Object(serde_json::Map::new());
            let map = result.get(key).unwrap_or(&empty);
            let orders = wire::parse_order_map(endpoint, map, &self.pairs.read())?;
            if let Some(found) = orders
                .into_iter()
                .find(|o| o.client_order_id.as_ref() == Some(client_order_id))
            {
                let (cost, fee) = map
                    .get(found.order_id.as_str())
                    .map(wire::order_cost_fee)
                    .unwrap_or_default();
                return Ok(Some((found, cost, fee)));
            }
        }
        Ok(None)
    }

    fn ack_from_result(result: &Value, order: &OrderRequest) -> Result<OrderAck, Error> {
        let txid = result
            .get("txid")
            .and_then(Value::as_array)
            .and_then(|ids| ids.first())
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Malformed {
                endpoint: "AddOrder".into(),
                status: 200,
                snippet: format!(
                    "no txid in {}",
                    result.to_string().chars().take(80).collect::<String>()
                ),
            })?;
        Ok(OrderAck {
            order_id: OrderId::new(txid),
            client_order_id: order.client_order_id.clone(),
            status: OrderStatus::Open,
        })
    }

    /// The `AddOrder` attempts of one placement: retried where safe, reconciled by client
    /// order id after an ambiguous failure, each attempt through the gate at the wire.
    ///
    /// Every attempt carries a `deadline` (Kraken: the matching engine does not place the
    /// order after it). After an ambiguous failure the order is looked up by client order
    /// id at once and, if not found, once more after `deadline + deadline_margin`; only
    /// then is it known not to be placed, and only then may the same `cl_ord_id` be sent
    /// again. A failed look-up leaves the outcome unknown (the halt reconciles it).
    async fn submit(&self, order: &OrderRequest, lane: Lane) -> Result<OrderAck, Error> {
        let params = Self::add_order_params(order)?;
        let mut attempt = 0;
        let mut ambiguous: Option<Error> = None;
        loop {
            let mut deadline = None;
            let admit = Admit {
                order,
                deadline: &mut deadline,
            };
            let err = match self
                .private_once("AddOrder", &params, lane, Some(admit))
                .await
            {
                Ok(result) => match Self::ack_from_result(&result, order) {
                    Ok(ack) => return Ok(ack),
                    // Accepted but unreadable: as ambiguous as a timeout.
                    Err(err) => err,
                },
                // Refused at the wire (the gate closed during the limiter wait or the
                // backoff): nothing more was sent. An earlier attempt may still be on the
                // book, so its outcome stays unknown; the halt reconciles it.
                Err(refused @ (Error::Halted | Error::InvalidOrder(_))) => {
                    return Err(ambiguous.unwrap_or(refused));
                }
                Err(err) => err,
            };
            if err.is_ambiguous() {
                // The order may be on the book, or still queued at the exchange: never
                // place it again before its deadline has passed without it showing up.
                match self.resolve_ambiguous(order, deadline, lane).await {
                    Ok(Some(info)) => {
                        return Ok(OrderAck {
                            order_id: info.order_id,
                            client_order_id: order.client_order_id.clone(),
                            status: info.status,
                        });
                    }
                    // Known not placed: a fresh attempt is safe. The error is kept: should
                    // the next attempt be refused at the wire, the placement is still
                    // reported as unknown and the gate keeps it for the halt to reconcile
                    // (conservative; the look-up then finds nothing).
                    Ok(None) if attempt < self.cfg.max_retries => ambiguous = Some(err),
                    Ok(None) | Err(()) => return Err(err),
                }
            } else if !(err.is_retryable() && attempt < self.cfg.max_retries) {
                return Err(err);
            }
            attempt += 1;
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// What became of an `AddOrder` whose answer is unknown: `Some` when found by client
    /// order id, `None` when its deadline (plus the clock margin) has passed and it was
    /// not found, `Err` when the look-up itself failed (the outcome stays unknown).
    async fn resolve_ambiguous(
        &self,
        order: &OrderRequest,
        deadline: Option<DateTime<Utc>>,
        lane: Lane,
    ) -> Result<Option<OrderInfo>, ()> {
        let cid = &order.client_order_id;
        // A request that never got as far as the wire has no deadline: then the second
        // look-up uses the latest deadline it could have carried.
        let settle = deadline.unwrap_or_else(|| self.events.clock().now() + self.order_deadline())
            + chrono::Duration::from_std(self.cfg.deadline_margin)
                .unwrap_or(chrono::Duration::seconds(1));
        loop {
            match self.find_by_client_id(cid, lane).await {
                Ok(Some(info)) => return Ok(Some(info)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(cause = %e, "look-up after an ambiguous AddOrder failed");
                    return Err(());
                }
            }
            // This look-up started after `settle` only if the previous wait reached it.
            let left = settle - self.events.clock().now();
            match left.to_std() {
                Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                _ => return Ok(None),
            }
        }
    }

    fn publish_known(&self, order_id: &OrderId, status: OrderStatus, reason: &str) {
        let known = {
            let mut map = self.known.lock();
            map.get_mut(order_id).map(|k| {
                k.status = status;
                k.clone()
            })
        };
        if let Some(k) = known {
            self.events.order_update(
                &k.client_order_id,
                Some(order_id),
                &k.pair,
                status,
                Decimal::ZERO,
                Some(reason.to_owned()),
            );
        }
    }
}

#[async_trait]
impl Exchange for KrakenClient {
    #[tracing::instrument(skip(self, order), fields(cl_ord_id = %order.client_order_id, pair = %order.pair))]
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, Error> {
        order.validate()?;
        if let Err(err) = self.check_precision(order) {
            self.events.order_update(
                &order.client_order_id,
                None,
                &order.pair,
                OrderStatus::Rejected,
                Decimal::ZERO,
                Some(err.to_string()),
            );
            return Err(err);
        }
        // Sealed closures take the priority lane (the gate verifies the seal at the wire).
        let lane = if order.is_sealed() {
            Lane::Priority
        } else {
            Lane::Normal
        };
        let started = Instant::now();
        // An early refusal queues nothing behind the limiter; the wire check decides.
        let outcome = match &self.gate {
            Some(gate) => match gate.check(order) {
                Ok(()) => self.submit(order, lane).await,
                Err(refused) => Err(gate_refusal(refused)),
            },
            None => Err(no_gate()),
        };
        match &outcome {
            Ok(ack) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.events.latency("order_ack", micros);
                // An order already terminal (found by reconciliation) is remembered as
                // pending so that the next sync reports its executions as fills.
                let tracked = if ack.status.is_terminal() {
                    OrderStatus::Pending
                } else {
                    ack.status
                };
                self.remember(&ack.order_id, order, tracked);
                self.events.order_update(
                    &order.client_order_id,
                    Some(&ack.order_id),
                    &order.pair,
                    ack.status,
                    Decimal::ZERO,
                    None,
                );
                self.claim_pushed(&ack.order_id);
            }
            Err(err) => {
                let (status, reason) = if err.is_ambiguous() {
                    (OrderStatus::Pending, format!("outcome unknown: {err}"))
                } else {
                    (OrderStatus::Rejected, err.to_string())
                };
                self.events.order_update(
                    &order.client_order_id,
                    None,
                    &order.pair,
                    status,
                    Decimal::ZERO,
                    Some(reason),
                );
            }
        }
        outcome
    }

    #[tracing::instrument(skip(self))]
    async fn cancel_order(&self, order: &OrderRef) -> Result<(), Error> {
        let params = match order {
            OrderRef::Exchange(id) => [("txid", id.0.clone())],
            OrderRef::Client(id) => [("cl_ord_id", id.0.clone())],
        };
        let mut attempt = 0;
        let mut ambiguous_before = false;
        loop {
            match self
                .private_once("CancelOrder", &params, Lane::Priority, None)
                .await
            {
                Ok(result) => {
                    let count = result.get("count").and_then(Value::as_u64).unwrap_or(0);
                    if count == 0 && !ambiguous_before {
                        return Err(Error::UnknownOrder(ref_text(order)));
                    }
                    break;
                }
                Err(e) if e.kind() == ApiErrorKind::UnknownOrder && ambiguous_before => break,
                Err(e) if e.kind() == ApiErrorKind::UnknownOrder => {
                    return Err(Error::UnknownOrder(ref_text(order)));
                }
                Err(e) if e.is_retryable() && attempt < self.cfg.max_retries => {
                    ambiguous_before |= e.is_ambiguous();
                    attempt += 1;
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let order_id = match order {
            OrderRef::Exchange(id) => Some(id.clone()),
            OrderRef::Client(cid) => self
                .known
                .lock()
                .iter()
                .find(|(_, k)| &k.client_order_id == cid)
                .map(|(id, _)| id.clone()),
        };
        if let Some(id) = order_id {
            self.publish_known(&id, OrderStatus::Cancelled, "cancelled by request");
        }
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn cancel_all(&self) -> Result<u32, Error> {
        let result = self.idempotent("CancelAll", &[], Lane::Priority).await?;
        let count = result.get("count").and_then(Value::as_u64).unwrap_or(0);
        // Ask the exchange what became of the orders we knew as open, rather than assuming
        // they were cancelled: one may have filled just before, and that fill must reach
        // the portfolio (and the halt's closure). On failure the periodic sync retries.
        if let Err(e) = self.sync_orders().await {
            tracing::warn!(cause = %e, "order sync after cancel-all failed; the periodic sync will retry");
        }
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    #[tracing::instrument(skip(self))]
    async fn cancel_all_after(&self, timeout_secs: u32) -> Result<DeadManStatus, Error> {
        let result = self
            .idempotent(
                "CancelAllOrdersAfter",
                &[("timeout", timeout_secs.to_string())],
                Lane::DeadMan,
            )
            .await?;
        let trigger = result
            .get("triggerTime")
            .and_then(Value::as_str)
            .unwrap_or("0");
        let trigger_at = if trigger == "0" || timeout_secs == 0 {
            None
        } else {
            Some(
                DateTime::parse_from_rfc3339(trigger)
                    .map_err(|e| Error::Malformed {
                        endpoint: "CancelAllOrdersAfter".into(),
                        status: 200,
                        snippet: format!("bad triggerTime {trigger:?}: {e}"),
                    })?
                    .with_timezone(&Utc),
            )
        };
        Ok(DeadManStatus { trigger_at })
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, Error> {
        let result = self.idempotent("OpenOrders", &[], Lane::Normal).await?;
        let empty = Value::Object(serde_json::Map::new());
        wire::parse_order_map(
            "OpenOrders",
            result.get("open").unwrap_or(&empty),
            &self.pairs.read(),
        )
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, Error> {
        match order {
            OrderRef::Exchange(id) => {
                let result = self
                    .idempotent("QueryOrders", &[("txid", id.0.clone())], Lane::Normal)
                    .await
                    .map_err(|e| match &e {
                        Error::Api { message, .. }
                            if message.contains("Unknown order")
                                || message.contains("Invalid order") =>
                        {
                            Error::UnknownOrder(id.to_string())
                        }
                        _ => e,
                    })?;
                wire::parse_order_map("QueryOrders", &result, &self.pairs.read())?
                    .into_iter()
                    .find(|o| &o.order_id == id)
                    .ok_or_else(|| Error::UnknownOrder(id.to_string()))
            }
            OrderRef::Client(cid) => self
                .find_by_client_id(cid, Lane::Normal)
                .await?
                .ok_or_else(|| Error::UnknownOrder(format!("client:{cid}"))),
        }
    }

    /// Looks the order up by client order id (priority lane: this is halt traffic), starts
    /// tracking it if it was unknown (a placement that timed out), and publishes every
    /// execution not yet published as a `Fill`.
    async fn reconcile_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<Reconciled>, Error> {
        let Some((info, cost, fee)) = self
            .lookup_client_id(client_order_id, Lane::Priority)
            .await?
        else {
            return Ok(None);
        };
        self.known
            .lock()
            .entry(info.order_id.clone())
            .or_insert_with(|| Known {
                client_order_id: client_order_id.clone(),
                pair: info.pair.clone(),
                side: info.side,
                purpose: OrderPurpose::Normal,
                status: OrderStatus::Pending,
                filled: Decimal::ZERO,
                cost: Decimal::ZERO,
                fee: Decimal::ZERO,
            });
        let published = self.apply_sync(&info, cost, fee).unwrap_or_default();
        self.claim_pushed(&info.order_id);
        Ok(Some(Reconciled { info, published }))
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, Error> {
        let result = self.idempotent("Balance", &[], Lane::Normal).await?;
        wire::parse_balances("Balance", &result)
    }

    async fn open_positions(&self) -> Result<Vec<Position>, Error> {
        let balances = self.balances().await?;
        Ok(self
            .cfg
            .pairs
            .iter()
            .filter_map(|pair| {
                let qty = balances.get(pair.base()).copied().unwrap_or_default();
                (!qty.is_zero()).then(|| Position {
                    qty,
                    ..Position::flat(pair.clone())
                })
            })
            .collect())
    }

    async fn check(&self) -> Result<(), Error> {
        self.private_once("Balance", &[], Lane::Normal, None)
            .await
            .map(|_| ())
    }

    fn lot_rules(&self, pair: &Pair) -> Option<crate::LotRules> {
        self.precisions
            .read()
            .get(pair)
            .map(|info| crate::LotRules {
                lot_decimals: info.lot_decimals,
                ordermin: info.ordermin,
            })
    }
}

/// How long a private request may hold the wire-order lock (see `signed_call`).
pub const WIRE_GRACE: Duration = Duration::from_millis(500);

/// An `AddOrder` attempt: the order entering the gate and where to note its deadline.
struct Admit<'a> {
    order: &'a OrderRequest,
    deadline: &'a mut Option<DateTime<Utc>>,
}

fn no_gate() -> Error {
    Error::Config {
        key: "gate".into(),
        value: "none".into(),
        reason: "this Kraken client was built without a trading gate and places no orders".into(),
    }
}

fn ref_text(order: &OrderRef) -> String {
    match order {
        OrderRef::Exchange(id) => id.to_string(),
        OrderRef::Client(id) => format!("client:{id}"),
    }
}

/// Side text as Kraken writes it.
#[must_use]
pub fn side_text(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::FixedCredentials;
    use gf_core::{ManualClock, Source};

    fn publisher() -> Publisher {
        Publisher::new(None, Arc::new(ManualClock::default()), Source::Exec)
    }

    #[test]
    fn config_from_gf_config() {
        let mut cfg = Config::default();
        cfg.exchange.tier = Tier::Pro;
        let k = KrakenConfig::from_config(&cfg).unwrap();
        assert_eq!(k.rest_limits, Limits::rest(Tier::Pro));
        assert_eq!(k.trading_limits, Limits::trading(Tier::Pro));
        assert_eq!(k.timeout, Duration::from_millis(5000));
        assert!(k.nonce_file.unwrap().ends_with("kraken.nonce"));
        cfg.exchange.tier = Tier::Starter;
        cfg.exchange.timeout_ms = 0;
        assert!(
            KrakenConfig::from_config(&cfg)
                .unwrap_err()
                .to_string()
                .contains("timeout_ms")
        );
    }

    #[test]
    fn rejects_bad_base_url() {
        let creds = Arc::new(FixedCredentials::from_raw("k", vec![1; 64]));
        let err = KrakenClient::new(KrakenConfig::new("ftp://x"), creds, publisher()).unwrap_err();
        assert!(err.to_string().contains("ftp://x"));
    }

    #[test]
    fn retries_back_off_by_doubling_up_to_the_cap() {
        let creds = Arc::new(FixedCredentials::from_raw("k", vec![1; 64]));
        let client =
            KrakenClient::new(KrakenConfig::new("http://127.0.0.1:9"), creds, publisher()).unwrap();
        let waits: Vec<u128> = (1..=8).map(|a| client.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(client.backoff(u32::MAX), RETRY_BACKOFF_MAX);
    }

    #[test]
    fn add_order_params_follow_krakens_names() {
        let order = OrderRequest {
            client_order_id: ClientOrderId::new("c-1"),
            pair: Pair::new("DOGE/USD").unwrap(),
            side: Side::Sell,
            order_type: OrderType::Limit,
            qty: Decimal::new(12_500, 2),
            limit_price: Some(Decimal::new(1_2340, 5)),
            time_in_force: TimeInForce::Ioc,
            reduce_only: true,
            post_only: false,
            user_ref: None,
            purpose: OrderPurpose::HaltClosure,
            closure_seal: None,
        };
        let body = wire::form_encode(&KrakenClient::add_order_params(&order).unwrap());
        assert_eq!(
            body,
            "ordertype=limit&type=sell&volume=125&pair=XDGUSD&price=0.1234&timeinforce=IOC&cl_ord_id=c-1&reduce_only=true"
        );
        // Never `userref` together with `cl_ord_id`; never an id Kraken would refuse.
        let both = OrderRequest {
            user_ref: Some(7),
            ..order.clone()
        };
        let err = KrakenClient::add_order_params(&both).unwrap_err();
        assert!(err.to_string().contains("userref 7"), "{err}");
        let long = OrderRequest {
            client_order_id: ClientOrderId::new("ema_cross-1796153720687-1"),
            ..order
        };
        let err = KrakenClient::add_order_params(&long).unwrap_err();
        assert!(
            matches!(&err, Error::Rejected { client_order_id, kind: ApiErrorKind::InvalidArguments, .. }
                if client_order_id == "ema_cross-1796153720687-1"),
            "{err:?}"
        );
        assert_eq!(side_text(Side::Buy), "buy");
    }

    #[test]
    fn a_post_only_order_carries_oflags_post() {
        let maker = OrderRequest::limit(
            ClientOrderId::new("m-1"),
            Pair::new("XRP/USD").unwrap(),
            Side::Buy,
            Decimal::new(100, 0),
            Decimal::new(5, 1),
        );
        let plain = wire::form_encode(&KrakenClient::add_order_params(&maker).unwrap());
        assert_eq!(
            plain,
            "ordertype=limit&type=buy&volume=100&pair=XRPUSD&price=0.5&cl_ord_id=m-1"
        );
        let post = wire::form_encode(&KrakenClient::add_order_params(&maker.post_only()).unwrap());
        assert_eq!(
            post,
            "ordertype=limit&type=buy&volume=100&pair=XRPUSD&price=0.5&cl_ord_id=m-1&oflags=post"
        );
    }
}
