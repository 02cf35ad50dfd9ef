//! A Kraken-like WebSocket v2 test server (feature `sim`) that serves a recording over a
//! real socket, for this crate's tests and the end-to-end tests.
//!
//! It answers `subscribe` / `unsubscribe` / `ping` like Kraken (one ack per symbol, a book
//! snapshot generated from its own current book with a correct checksum, a `pong`), streams
//! the recording's book updates, trades and tickers to the sessions subscribed to them,
//! sends heartbeats when idle, and on command drops every connection, stalls (goes
//! silent), corrupts the next book checksum or sends garbage. It counts connections and
//! records every request it received, and can tell a test when the client has read
//! everything sent so far ([`SimHandle::drained`]).
//!
//! ```
//! # #[cfg(feature = "sim")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use gf_market::sim::{SimConfig, SimServer};
//! let recording = gf_market::bundled::PAPER;
//! let server = SimServer::start(recording, SimConfig::default()).await.unwrap();
//! assert!(server.url().starts_with("ws://127.0.0.1:"));
//! server.shutdown().await;
//! # });
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gf_core::Pair;
use parking_lot_free::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::book::BookSide;
use crate::error::Error;
use crate::feed::FeedProcessor;
use crate::message::{self, DataKind, Message};

mod parking_lot_free {
    //! A poison-free wrapper over `std::sync::Mutex`.
    #[derive(Debug, Default)]
    pub(super) struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub(super) fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }
        pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// How the server streams.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Delay between two streamed messages.
    pub interval: Duration,
    /// A heartbeat is sent to a subscribed session after this much silence.
    pub heartbeat: Duration,
    /// Start again from the first streamed message when the recording ends.
    pub loop_recording: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(2),
            heartbeat: Duration::from_secs(1),
            loop_recording: false,
        }
    }
}

/// A request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    /// Connection number (1-based).
    pub connection: u64,
    /// `subscribe`, `unsubscribe`, `ping` or what the client sent.
    pub method: String,
    /// The channel, if any.
    pub channel: Option<String>,
    /// The symbols, if any.
    pub symbols: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Channel {
    Book,
    Trade,
    Ticker,
    Raw,
    /// Not a message: send a WebSocket Ping (payload: the item's `seq`) after what came
    /// before it.
    Ping,
}

#[derive(Debug)]
struct Item {
    seq: u64,
    channel: Channel,
    pair: Option<Pair>,
    text: String,
}

#[derive(Debug)]
struct Shared {
    cfg: SimConfig,
    market: Mutex<FeedProcessor>,
    instrument: Option<String>,
    stream: Vec<(Channel, Option<Pair>, String)>,
    tx: broadcast::Sender<Arc<Item>>,
    seq: AtomicU64,
    connections: AtomicU64,
    messages_sent: AtomicU64,
    requests: Mutex<Vec<SimRequest>>,
    stalled: AtomicBool,
    corrupt_next: AtomicBool,
    /// The highest Ping payload (a `seq`) a client answered with a Pong.
    pongs: watch::Sender<u64>,
    /// The `system` value of the `status` channel: sent on connect and on every change.
    system: Mutex<String>,
    started: Notify,
    start_flag: AtomicBool,
    drop_tx: watch::Sender<u64>,
    shutdown: CancellationToken,
}

/// Commands and counters of a running [`SimServer`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl SimHandle {
    /// Closes every open connection abruptly (no close frame), as a network drop would.
    pub fn drop_connections(&self) {
        self.shared.drop_tx.send_modify(|g| *g += 1);
    }

    /// Stops (or resumes) all traffic: no stream, no heartbeats.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    /// The next streamed book update carries a wrong checksum.
    pub fn corrupt_next_checksum(&self) {
        self.shared.corrupt_next.store(true, Ordering::SeqCst);
    }

    /// Sends `text` verbatim to every connected session.
    pub fn send_garbage(&self, text: &str) {
        let seq = self.shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.shared.tx.send(Arc::new(Item {
            seq,
            channel: Channel::Raw,
            pair: None,
            text: text.to_owned(),
        }));
    }

    /// Changes the trading engine's mode to `system` (`online`, `maintenance`,
    /// `cancel_only`, `post_only`, or anything else to test undocumented values). Like
    /// Kraken, the `status` channel reports it to every connected session at once and to
    /// every new session on connect ("a status will be automatically generated on
    /// successful websocket connection and when the trading engine status changes":
    /// docs.kraken.com/exchange/api-reference/spot-websocket-v2/status).
    pub fn set_system_status(&self, system: &str) {
        system.clone_into(&mut self.shared.system.lock());
        let seq = self.shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.shared.tx.send(Arc::new(Item {
            seq,
            channel: Channel::Raw,
            pair: None,
            text: status_text(0, system),
        }));
    }

    /// Returns once a client has read every message sent to it before the call.
    ///
    /// Every open session sends a WebSocket Ping frame after the messages already queued
    /// for it (also while stalled: a control frame, not traffic); a client answers with a
    /// Pong carrying the same payload (RFC 6455 §5.5.2 and §5.5.3) when it reads the Ping,
    /// that is after reading everything before it on the connection. Waits for the first
    /// such Pong, so it is meant for one connected client; with none it waits forever
    /// (bound it with a timeout).
    pub async fn drained(&self) {
        let mut pongs = self.shared.pongs.subscribe();
        let seq = self.shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.shared.tx.send(Arc::new(Item {
            seq,
            channel: Channel::Ping,
            pair: None,
            text: String::new(),
        }));
        let _ = pongs.wait_for(|answered| *answered >= seq).await;
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Messages sent over all sessions.
    #[must_use]
    pub fn messages_sent(&self) -> u64 {
        self.shared.messages_sent.load(Ordering::SeqCst)
    }

    /// Every request received, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<SimRequest> {
        self.shared.requests.lock().clone()
    }

    /// Requests with this method and channel.
    #[must_use]
    pub fn count(&self, method: &str, channel: &str) -> usize {
        self.shared
            .requests
            .lock()
            .iter()
            .filter(|r| r.method == method && r.channel.as_deref() == Some(channel))
            .count()
    }
}

/// The running server.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    handle: SimHandle,
    tasks: Vec<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `127.0.0.1:0` and serves `recording` (JSON lines).
    ///
    /// # Errors
    /// [`Error::Socket`] when binding fails.
    pub async fn start(recording: &[u8], cfg: SimConfig) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Socket {
                what: "binding the sim server",
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Socket {
            what: "reading the sim server address",
            source,
        })?;
        let (shared, initial) = load(recording, cfg);
        let shared = Arc::new(shared);
        {
            let mut market = shared.market.lock();
            let mut sink = Vec::new();
            for line in initial {
                let _ = market.process(&line, &mut sink);
            }
        }
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        let market = tokio::spawn(market_loop(Arc::clone(&shared)));
        Ok(Self {
            addr,
            handle: SimHandle { shared },
            tasks: vec![accept, market],
        })
    }

    /// `ws://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Commands and counters.
    #[must_use]
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting, closes every session and waits for the tasks.
    pub async fn shutdown(mut self) {
        self.handle.shared.shutdown.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.handle.shared.shutdown.cancel();
    }
}

/// Splits the recording: the instrument message, the lines that build the initial books
/// (acks and snapshots before the first update), and the stream.
fn load(recording: &[u8], cfg: SimConfig) -> (Shared, Vec<String>) {
    let text = String::from_utf8_lossy(recording);
    let mut instrument = None;
    let mut initial = Vec::new();
    let mut stream = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match message::parse(line) {
            Ok(Message::Instrument(_)) => {
                instrument = Some(line.to_owned());
                initial.push(line.to_owned());
            }
            Ok(Message::Ack { .. }) if stream.is_empty() => initial.push(line.to_owned()),
            Ok(Message::Book(DataKind::Snapshot, books)) if stream.is_empty() => {
                let _ = books;
                initial.push(line.to_owned());
            }
            Ok(Message::Book(_, books)) => {
                let pair = books.first().map(|b| b.pair.clone());
                stream.push((Channel::Book, pair, line.to_owned()));
            }
            Ok(Message::Trade(_, trades)) => {
                let pair = trades.first().map(|t| t.pair.clone());
                stream.push((Channel::Trade, pair, line.to_owned()));
            }
            Ok(Message::Ticker(tickers)) => {
                let pair = tickers.first().map(|t| t.pair.clone());
                stream.push((Channel::Ticker, pair, line.to_owned()));
            }
            // Heartbeats, status and acks are the server's own business.
            Ok(_) | Err(_) => {}
        }
    }
    let (tx, _) = broadcast::channel(4096);
    let (drop_tx, _) = watch::channel(0);
    let shared = Shared {
        cfg,
        market: Mutex::new(FeedProcessor::with_auto_depth(None)),
        instrument,
        stream,
        tx,
        seq: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        messages_sent: AtomicU64::new(0),
        requests: Mutex::new(Vec::new()),
        stalled: AtomicBool::new(false),
        corrupt_next: AtomicBool::new(false),
        pongs: watch::channel(0).0,
        system: Mutex::new("online".to_owned()),
        started: Notify::new(),
        start_flag: AtomicBool::new(false),
        drop_tx,
        shutdown: CancellationToken::new(),
    };
    (shared, initial)
}

/// A v2 `status` update as Kraken sends it (docs.kraken.com spot-websocket-v2/status).
fn status_text(connection: u64, system: &str) -> String {
    let system = serde_json::Value::String(system.to_owned());
    format!(
        r#"{{"channel":"status","type":"update","data":[{{"api_version":"v2","connection_id":{connection},"system":{system},"version":"2.0.10"}}]}}"#
    )
}

/// Alters the `checksum` of a book message.
fn corrupt(text: &str) -> String {
    const KEY: &str = "\"checksum\":";
    let Some(start) = text.find(KEY).map(|i| i + KEY.len()) else {
        return text.to_owned();
    };
    let end = start + text[start..].bytes().take_while(u8::is_ascii_digit).count();
    let value: u32 = text[start..end].parse().unwrap_or(0);
    format!(
        "{}{}{}",
        &text[..start],
        value.wrapping_add(1),
        &text[end..]
    )
}

async fn market_loop(shared: Arc<Shared>) {
    // The market starts moving when the first session subscribes to a book.
    tokio::select! {
        () = shared.shutdown.cancelled() => return,
        () = shared.started.notified() => {}
    }
    let mut i = 0;
    let mut ticker = tokio::time::interval(shared.cfg.interval.max(Duration::from_micros(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if shared.stalled.load(Ordering::SeqCst) {
            continue;
        }
        if i >= shared.stream.len() {
            if shared.cfg.loop_recording && !shared.stream.is_empty() {
                i = 0;
            } else {
                continue;
            }
        }
        let (channel, pair, text) = &shared.stream[i];
        i += 1;
        // Apply and broadcast under the lock, so a snapshot taken by a session is
        // exactly "everything up to seq".
        let mut market = shared.market.lock();
        let mut sink = Vec::new();
        let _ = market.process(text, &mut sink);
        let text = if *channel == Channel::Book && shared.corrupt_next.swap(false, Ordering::SeqCst)
        {
            corrupt(text)
        } else {
            text.clone()
        };
        let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = shared.tx.send(Arc::new(Item {
            seq,
            channel: *channel,
            pair: pair.clone(),
            text,
        }));
        drop(market);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let n = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(session(stream, n, Arc::clone(&shared)));
    }
}

fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

struct Session {
    connection: u64,
    subs: HashSet<(Channel, Pair)>,
    /// Per pair: the seq the last snapshot already includes.
    snapshot_seq: std::collections::HashMap<Pair, u64>,
    out: Vec<String>,
    /// A Ping to send after `out` ([`SimHandle::drained`]).
    ping: Option<u64>,
}

impl Session {
    fn handle_request(&mut self, shared: &Shared, text: &str) {
        let Ok(req) = serde_json::from_str::<serde_json::Value>(text) else {
            self.out
                .push(r#"{"error":"EGeneral:Invalid arguments","success":false}"#.into());
            return;
        };
        let method = req["method"].as_str().unwrap_or_default().to_owned();
        let channel = req["params"]["channel"].as_str().map(str::to_owned);
        let symbols: Vec<String> = req["params"]["symbol"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let req_id = req["req_id"].as_u64();
        shared.requests.lock().push(SimRequest {
            connection: self.connection,
            method: method.clone(),
            channel: channel.clone(),
            symbols: symbols.clone(),
        });
        let id = req_id
            .map(|r| format!(r#""req_id":{r},"#))
            .unwrap_or_default();
        let times = format!(r#""time_in":"{}","time_out":"{}""#, now_text(), now_text());
        match (method.as_str(), channel.as_deref()) {
            ("ping", _) => self.out.push(format!(r#"{{"method":"pong",{id}{times}}}"#)),
            ("subscribe", Some("instrument")) => {
                self.out.push(format!(
                    r#"{{"method":"subscribe",{id}"result":{{"channel":"instrument","snapshot":true}},"success":true,{times}}}"#
                ));
                if let Some(text) = &shared.instrument {
                    self.out.push(text.clone());
                }
            }
            (m @ ("subscribe" | "unsubscribe"), Some(ch @ ("book" | "trade" | "ticker"))) => {
                let chan = match ch {
                    "book" => Channel::Book,
                    "trade" => Channel::Trade,
                    _ => Channel::Ticker,
                };
                for symbol in symbols {
                    let Ok(pair) = symbol.parse::<Pair>() else {
                        self.out.push(format!(
                            r#"{{"error":"Currency pair not supported {symbol}","method":"{m}",{id}"success":false,"symbol":"{symbol}",{times}}}"#
                        ));
                        continue;
                    };
                    if m == "unsubscribe" {
                        self.subs.remove(&(chan, pair));
                        self.out.push(format!(
                            r#"{{"method":"unsubscribe",{id}"result":{{"channel":"{ch}","symbol":"{symbol}"}},"success":true,{times}}}"#
                        ));
                        continue;
                    }
                    if chan != Channel::Book {
                        self.subs.insert((chan, pair));
                        self.out.push(format!(
                            r#"{{"method":"subscribe",{id}"result":{{"channel":"{ch}","snapshot":false,"symbol":"{symbol}"}},"success":true,{times}}}"#
                        ));
                        continue;
                    }
                    let market = shared.market.lock();
                    let depth = market.depth();
                    let wanted = req["params"]["depth"].as_u64().unwrap_or(10);
                    if wanted != depth as u64 {
                        self.out.push(format!(
                            r#"{{"error":"sim serves depth {depth} only, got {wanted}","method":"subscribe",{id}"success":false,"symbol":"{symbol}",{times}}}"#
                        ));
                        continue;
                    }
                    let Some(book) = market.book(&pair) else {
                        self.out.push(format!(
                            r#"{{"error":"Currency pair not supported {symbol}","method":"subscribe",{id}"success":false,"symbol":"{symbol}",{times}}}"#
                        ));
                        continue;
                    };
                    let levels = |side| {
                        book.side_iter(side)
                            .map(|l| format!(r#"{{"price":{},"qty":{}}}"#, l.price, l.qty))
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    self.out.push(format!(
                        r#"{{"method":"subscribe",{id}"result":{{"channel":"book","depth":{depth},"snapshot":true,"symbol":"{symbol}"}},"success":true,{times}}}"#
                    ));
                    self.out.push(format!(
                        r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"{symbol}","bids":[{}],"asks":[{}],"checksum":{}}}]}}"#,
                        levels(BookSide::Bid),
                        levels(BookSide::Ask),
                        book.checksum()
                    ));
                    // Everything broadcast so far is inside this snapshot.
                    self.snapshot_seq.insert(pair.clone(), shared.seq.load(Ordering::SeqCst));
                    self.subs.insert((chan, pair));
                    drop(market);
                    if !shared.start_flag.swap(true, Ordering::SeqCst) {
                        shared.started.notify_one();
                    }
                }
            }
            _ => self.out.push(format!(
                r#"{{"error":"EGeneral:Invalid arguments","method":"{method}",{id}"success":false,{times}}}"#
            )),
        }
    }

    fn wants(&self, item: &Item) -> bool {
        match (&item.channel, &item.pair) {
            (Channel::Raw, _) => true,
            (channel, Some(pair)) => {
                self.subs.contains(&(*channel, pair.clone()))
                    && (*channel != Channel::Book
                        || self.snapshot_seq.get(pair).is_none_or(|s| item.seq > *s))
            }
            (_, None) => false,
        }
    }
}

async fn session(stream: TcpStream, connection: u64, shared: Arc<Shared>) {
    let handshake = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::accept_async(stream),
    );
    let Ok(Ok(mut ws)) = handshake.await else {
        return;
    };
    let mut rx = shared.tx.subscribe();
    let mut drops = shared.drop_tx.subscribe();
    drops.mark_unchanged();
    let mut s = Session {
        connection,
        subs: HashSet::new(),
        snapshot_seq: std::collections::HashMap::new(),
        out: vec![status_text(connection, &shared.system.lock())],
        ping: None,
    };
    let mut last_sent = tokio::time::Instant::now();
    loop {
        for text in s.out.drain(..) {
            if ws.send(WsMessage::text(text)).await.is_err() {
                return;
            }
            shared.messages_sent.fetch_add(1, Ordering::SeqCst);
            last_sent = tokio::time::Instant::now();
        }
        if let Some(seq) = s.ping.take()
            && ws
                .send(WsMessage::Ping(seq.to_be_bytes().to_vec().into()))
                .await
                .is_err()
        {
            return;
        }
        let heartbeat_at = last_sent + shared.cfg.heartbeat;
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => {
                let _ = ws.close(None).await;
                return;
            }
            _ = drops.changed() => return, // dropping the socket without a close frame
            msg = ws.next() => match msg {
                Some(Ok(WsMessage::Text(text))) => s.handle_request(&shared, text.as_str()),
                Some(Ok(WsMessage::Pong(payload))) => {
                    if let Ok(seq) = <[u8; 8]>::try_from(payload.as_ref()) {
                        let seq = u64::from_be_bytes(seq);
                        shared.pongs.send_modify(|answered| *answered = (*answered).max(seq));
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            item = rx.recv() => match item {
                Ok(item) if item.channel == Channel::Ping => s.ping = Some(item.seq),
                Ok(item) => {
                    if s.wants(&item) {
                        s.out.push(item.text.clone());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tokio::time::sleep_until(heartbeat_at) => {
                if !shared.stalled.load(Ordering::SeqCst) && !s.subs.is_empty() {
                    s.out.push(r#"{"channel":"heartbeat"}"#.into());
                } else {
                    last_sent = tokio::time::Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_changes_only_the_checksum() {
        let text = r#"{"channel":"book","data":[{"checksum":41,"x":1}]}"#;
        assert_eq!(
            corrupt(text),
            r#"{"channel":"book","data":[{"checksum":42,"x":1}]}"#
        );
        assert_eq!(corrupt("no checksum"), "no checksum");
    }
}
