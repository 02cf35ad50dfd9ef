//! The live Kraken WebSocket v2 client: connect, subscribe, verify, publish, reconnect.
//!
//! One task owns the socket. It subscribes to `instrument`, `book` (configured depth),
//! `trade` and `ticker` for the configured pairs, answers WebSocket pings (tungstenite
//! queues the pong; we flush it), sends an application `ping` when the line is quiet, and
//! treats `heartbeat_timeout` without any message as a dead connection. On close, error
//! or silence it publishes [`ConnectionState::Disconnected`], marks every book invalid,
//! waits an exponential backoff with full jitter (bounded) and reconnects, resubscribing
//! everything; books are rebuilt from the new snapshots. A checksum mismatch resubscribes
//! the pair's book (unsubscribe + subscribe) to get a fresh snapshot.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use gf_core::backoff::Backoff;
use gf_core::config::MarketConfig;
use gf_core::latency::{market_sampled, micros, micros_between, stage};
use gf_core::{
    ConnectionState, Event, EventBus, Pair, Payload, SharedClock, SharedLatency, Source,
};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::book::validate_depth;
use crate::error::Error;
use crate::feed::{FeedProcessor, FeedStats};
use crate::message::{Request, ping};
use crate::source::MarketSource;
use crate::staleness::StalenessTracker;

/// Settings of the live client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `wss://ws.kraken.com/v2`, or a test server's `ws://127.0.0.1:…`.
    pub url: String,
    /// Pairs subscribed.
    pub pairs: Vec<Pair>,
    /// Book depth: 10, 25, 100, 500 or 1000.
    pub depth: u32,
    /// A pair is stale after this long without book or trade data.
    pub staleness: Duration,
    /// How often staleness is evaluated against the clock.
    pub staleness_check: Duration,
    /// Silence (no message at all, heartbeats included) that counts as a dead connection.
    pub heartbeat_timeout: Duration,
    /// An application `ping` is sent after this much silence.
    pub ping_interval: Duration,
    /// Connect (TCP + TLS + upgrade) timeout.
    pub connect_timeout: Duration,
    /// First reconnect delay (upper bound of the jitter).
    pub reconnect_initial: Duration,
    /// Cap of the reconnect delay.
    pub reconnect_max: Duration,
    /// Write every received text message to this file, one per line (`--record FILE`).
    pub record: Option<PathBuf>,
}

impl ClientConfig {
    /// Defaults for `url` and `pairs`: depth 10, staleness 60 s, heartbeat timeout 10 s,
    /// backoff 500 ms to 30 s.
    #[must_use]
    pub fn new(url: impl Into<String>, pairs: Vec<Pair>) -> Self {
        Self {
            url: url.into(),
            pairs,
            depth: 10,
            staleness: Duration::from_secs(60),
            staleness_check: Duration::from_millis(50),
            heartbeat_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            record: None,
        }
    }

    /// From the `[market]` section of the configuration.
    #[must_use]
    pub fn from_market_config(cfg: &MarketConfig) -> Self {
        let mut c = Self::new(cfg.ws_url.clone(), cfg.pairs.clone());
        c.depth = cfg.book_depth;
        c.staleness = Duration::from_secs(cfg.staleness_secs);
        c.heartbeat_timeout = Duration::from_secs(cfg.heartbeat_timeout_secs.max(1));
        c.ping_interval = c.heartbeat_timeout / 2;
        c.reconnect_initial = Duration::from_millis(cfg.reconnect_initial_ms.max(1));
        c.reconnect_max = Duration::from_millis(cfg.reconnect_max_ms.max(cfg.reconnect_initial_ms));
        c
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidDepth`], or [`Error::InvalidUrl`] for a URL that is not `ws://` or
    /// `wss://`.
    pub fn validate(&self) -> Result<(), Error> {
        validate_depth(self.depth)?;
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(Error::InvalidUrl {
                url: self.url.clone(),
                reason: "expected a ws:// or wss:// url".into(),
            });
        }
        Ok(())
    }
}

/// `t + d`, saturating at a year ahead instead of overflowing.
fn after(t: Instant, d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    t.checked_add(d.min(YEAR)).unwrap_or(t)
}

/// The live market-data client on Kraken's public WebSocket v2 (the REST trading client is
/// `gf_exec::KrakenClient`). See the module docs.
#[derive(Debug)]
pub struct MarketClient {
    cfg: ClientConfig,
    req_id: u64,
    latency: Option<SharedLatency>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Ctx<'a> {
    bus: &'a EventBus,
    clock: &'a SharedClock,
    feed: FeedProcessor,
    tracker: StalenessTracker,
    recorder: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    events: Vec<Payload>,
    /// Text messages received, for latency sampling.
    received: u64,
}

impl Ctx<'_> {
    fn publish(&mut self) {
        for payload in self.events.drain(..) {
            self.bus
                .publish(Event::new(self.clock.now(), Source::Market, payload));
        }
    }

    fn connection(&mut self, state: ConnectionState, detail: String) {
        self.events.push(Payload::Connection { state, detail });
        self.publish();
    }

    fn check_staleness(&mut self) {
        self.tracker.check(self.clock.now(), &mut self.events);
        self.publish();
    }

    fn record(&mut self, text: &str) -> Result<(), Error> {
        if let Some((path, w)) = &mut self.recorder {
            // JSON never needs a raw newline; keep one message per line whatever comes.
            let line = text.replace(['\n', '\r'], " ");
            w.write_all(line.as_bytes())
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| Error::io(path.clone(), e))?;
        }
        Ok(())
    }

    fn flush_recorder(&mut self) -> Result<(), Error> {
        if let Some((path, w)) = &mut self.recorder {
            w.flush().map_err(|e| Error::io(path.clone(), e))?;
        }
        Ok(())
    }
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl MarketClient {
    /// A client with the given settings.
    ///
    /// # Errors
    /// As [`ClientConfig::validate`].
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            req_id: 0,
            latency: None,
        })
    }

    /// Records, for one text message in [`gf_core::latency::MARKET_SAMPLE_EVERY`],
    /// `market_ingest` (the message's exchange time stamp to its receipt, by the clock `run` is given; messages without a time stamp
    /// are not sampled, and an exchange clock ahead of ours counts as 0) and
    /// `book_applied` (the time [`FeedProcessor::process`] takes on it: parse, apply,
    /// checksum) into `sink`. Default: nothing recorded.
    #[must_use]
    pub fn with_latency(mut self, sink: SharedLatency) -> Self {
        self.latency = Some(sink);
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn next_id(&mut self) -> u64 {
        self.req_id += 1;
        self.req_id
    }

    fn subscriptions(&mut self) -> Vec<Request> {
        let pairs = self.cfg.pairs.clone();
        vec![
            Request {
                method: "subscribe",
                channel: "instrument",
                pairs: Vec::new(),
                depth: None,
                snapshot: Some(true),
                req_id: self.next_id(),
            },
            Request {
                method: "subscribe",
                channel: "book",
                pairs: pairs.clone(),
                depth: Some(self.cfg.depth),
                snapshot: Some(true),
                req_id: self.next_id(),
            },
            Request {
                method: "subscribe",
                channel: "trade",
                pairs: pairs.clone(),
                depth: None,
                snapshot: Some(false),
                req_id: self.next_id(),
            },
            Request {
                method: "subscribe",
                channel: "ticker",
                pairs,
                depth: None,
                snapshot: Some(true),
                req_id: self.next_id(),
            },
        ]
    }

    fn resync_requests(&mut self, pair: &Pair) -> [Request; 2] {
        let unsubscribe = Request {
            method: "unsubscribe",
            channel: "book",
            pairs: vec![pair.clone()],
            depth: Some(self.cfg.depth),
            snapshot: None,
            req_id: self.next_id(),
        };
        let subscribe = Request {
            method: "subscribe",
            channel: "book",
            pairs: vec![pair.clone()],
            depth: Some(self.cfg.depth),
            snapshot: Some(true),
            req_id: self.next_id(),
        };
        [unsubscribe, subscribe]
    }

    async fn send(&self, ws: &mut Ws, text: String) -> Result<(), String> {
        match tokio::time::timeout(self.cfg.connect_timeout, ws.send(WsMessage::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("send failed: {e}")),
            Err(_) => Err("send timed out".into()),
        }
    }

    /// Runs one connected session until it is lost or shutdown.
    async fn session(
        &mut self,
        ws: &mut Ws,
        ctx: &mut Ctx<'_>,
        backoff: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> Result<SessionEnd, Error> {
        for req in self.subscriptions() {
            if let Err(e) = self.send(ws, req.to_json()).await {
                return Ok(SessionEnd::Lost(e));
            }
        }
        ctx.connection(ConnectionState::Connected, self.cfg.url.clone());
        let mut staleness =
            tokio::time::interval(self.cfg.staleness_check.max(Duration::from_millis(1)));
        staleness.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_rx = Instant::now();
        let mut pinged_at: Option<Instant> = None;
        loop {
            let silence_deadline = after(last_rx, self.cfg.heartbeat_timeout);
            let ping_due = after(
                last_rx.max(pinged_at.unwrap_or(last_rx)),
                self.cfg.ping_interval,
            );
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return Ok(SessionEnd::Shutdown);
                }
                _ = staleness.tick() => ctx.check_staleness(),
                () = tokio::time::sleep_until(silence_deadline) => {
                    return Ok(SessionEnd::Lost(format!(
                        "no message for {} ms (heartbeat timeout)",
                        self.cfg.heartbeat_timeout.as_millis()
                    )));
                }
                () = tokio::time::sleep_until(ping_due) => {
                    pinged_at = Some(Instant::now());
                    let id = self.next_id();
                    if let Err(e) = self.send(ws, ping(id)).await {
                        return Ok(SessionEnd::Lost(e));
                    }
                }
                msg = ws.next() => {
                    last_rx = Instant::now();
                    match msg {
                        None => return Ok(SessionEnd::Lost("closed by the server".into())),
                        Some(Err(e)) => return Ok(SessionEnd::Lost(format!("read failed: {e}"))),
                        Some(Ok(WsMessage::Text(text))) => {
                            ctx.record(text.as_str())?;
                            self.on_text(text.as_str(), ctx, backoff);
                            for pair in ctx.feed.take_resyncs() {
                                info!(pair = %pair, "resubscribing book for a fresh snapshot");
                                for req in self.resync_requests(&pair) {
                                    if let Err(e) = self.send(ws, req.to_json()).await {
                                        return Ok(SessionEnd::Lost(e));
                                    }
                                }
                            }
                        }
                        Some(Ok(WsMessage::Ping(_))) => {
                            // tungstenite queued the pong; push it out now.
                            if let Err(e) = ws.flush().await {
                                return Ok(SessionEnd::Lost(format!("pong failed: {e}")));
                            }
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            return Ok(SessionEnd::Lost(format!("closed by the server: {frame:?}")));
                        }
                        Some(Ok(WsMessage::Binary(b))) => {
                            warn!(bytes = b.len(), "unexpected binary message ignored");
                        }
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Ctx<'_>, backoff: &mut Backoff) {
        let received = ctx.clock.now();
        ctx.received += 1;
        let sink = self
            .latency
            .as_ref()
            .filter(|_| market_sampled(ctx.received));
        let started = sink.map(|_| std::time::Instant::now());
        let processed = ctx.feed.process(text, &mut ctx.events);
        if let (Some(sink), Some(started)) = (sink, started) {
            sink.record(stage::BOOK_APPLIED, micros(started.elapsed()));
            if let Ok(Some(sent)) = processed.as_ref().map(|i| i.timestamp) {
                sink.record(stage::MARKET_INGEST, micros_between(sent, received));
            }
        }
        match processed {
            Ok(ingest) => {
                let now = received;
                let mut fresh = Vec::new();
                for pair in &ingest.touched {
                    ctx.tracker.touch(pair, now, &mut fresh);
                }
                if ctx
                    .events
                    .iter()
                    .any(|e| matches!(e, Payload::BookSnapshot(_)))
                {
                    backoff.reset();
                }
                // Freshness first; the usual message has none, and then nothing moves
                // (the events buffer is reused, not replaced).
                if !fresh.is_empty() {
                    ctx.events.splice(0..0, fresh);
                }
                if text.contains("\"heartbeat\"") {
                    // Quiet line: a good moment to persist the recording.
                    let _ = ctx.flush_recorder();
                }
            }
            Err(_) => { /* counted and logged by the processor */ }
        }
        ctx.publish();
    }
}

#[async_trait]
impl MarketSource for MarketClient {
    async fn run(
        &mut self,
        bus: EventBus,
        clock: SharedClock,
        shutdown: CancellationToken,
    ) -> Result<FeedStats, Error> {
        let recorder = match &self.cfg.record {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                Some((path.clone(), std::io::BufWriter::new(file)))
            }
            None => None,
        };
        let depth = validate_depth(self.cfg.depth)?;
        let mut tracker = StalenessTracker::new(self.cfg.staleness);
        for pair in &self.cfg.pairs {
            tracker.register(pair, clock.now());
        }
        let mut ctx = Ctx {
            bus: &bus,
            clock: &clock,
            feed: FeedProcessor::new(depth, Some(&self.cfg.pairs)),
            tracker,
            recorder,
            events: Vec::new(),
            received: 0,
        };
        let mut backoff = Backoff::new(self.cfg.reconnect_initial, self.cfg.reconnect_max);
        let mut attempt: u64 = 0;
        let url = self.cfg.url.clone();
        'outer: while !shutdown.is_cancelled() {
            attempt += 1;
            ctx.connection(
                ConnectionState::Connecting,
                format!("{url} (attempt {attempt})"),
            );
            let connect = tokio::time::timeout(
                self.cfg.connect_timeout,
                tokio_tungstenite::connect_async(url.as_str()),
            );
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => break 'outer,
                r = connect => r,
            };
            let reason = match result {
                Ok(Ok((mut ws, _response))) => {
                    info!(url, attempt, "market data connected");
                    match self
                        .session(&mut ws, &mut ctx, &mut backoff, &shutdown)
                        .await?
                    {
                        SessionEnd::Shutdown => break 'outer,
                        SessionEnd::Lost(reason) => reason,
                    }
                }
                Ok(Err(e)) => format!("connect failed: {e}"),
                Err(_) => format!(
                    "connect timed out after {} ms",
                    self.cfg.connect_timeout.as_millis()
                ),
            };
            warn!(url, attempt, reason, "market data connection lost");
            ctx.flush_recorder()?;
            ctx.feed
                .invalidate_all(&format!("connection lost: {reason}"), &mut ctx.events);
            ctx.publish();
            let delay = backoff.next_delay();
            ctx.connection(
                ConnectionState::Disconnected,
                format!("{reason}; reconnecting in {} ms", delay.as_millis()),
            );
            // Wait out the backoff, still watching staleness.
            let wake = after(Instant::now(), delay);
            let mut staleness =
                tokio::time::interval(self.cfg.staleness_check.max(Duration::from_millis(1)));
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break 'outer,
                    () = tokio::time::sleep_until(wake) => break,
                    _ = staleness.tick() => ctx.check_staleness(),
                }
            }
        }
        ctx.flush_recorder()?;
        ctx.connection(ConnectionState::Disconnected, "shutdown".into());
        Ok(ctx.feed.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_market_section_and_validation() {
        let market = MarketConfig::default();
        let cfg = ClientConfig::from_market_config(&market);
        assert_eq!(cfg.url, "wss://ws.kraken.com/v2");
        assert_eq!(cfg.depth, 10);
        assert_eq!(cfg.staleness, Duration::from_secs(60));
        assert_eq!(cfg.reconnect_max, Duration::from_secs(30));
        cfg.validate().unwrap();
        let mut bad = cfg.clone();
        bad.depth = 7;
        assert!(matches!(
            MarketClient::new(bad),
            Err(Error::InvalidDepth(7))
        ));
        let mut bad = cfg;
        bad.url = "http://x".into();
        assert!(bad.validate().unwrap_err().to_string().contains("http://x"));
    }

    #[test]
    fn subscriptions_cover_every_channel() {
        let mut client = MarketClient::new(ClientConfig::new(
            "ws://127.0.0.1:1",
            vec!["XRP/USD".parse().unwrap()],
        ))
        .unwrap();
        let subs: Vec<_> = client
            .subscriptions()
            .into_iter()
            .map(|r| r.channel)
            .collect();
        assert_eq!(subs, vec!["instrument", "book", "trade", "ticker"]);
        let [u, s] = client.resync_requests(&"XRP/USD".parse().unwrap());
        assert_eq!((u.method, s.method), ("unsubscribe", "subscribe"));
        assert!(s.req_id > u.req_id);
    }
}
