//! The feed processor: turns raw v2 text messages into verified books and gf-core market
//! events. Shared by the live client, the replay source and the recording verifier, so
//! all three behave identically.
//!
//! Rules:
//! - a book snapshot or update is published only after its checksum verified;
//! - on a mismatch the pair's book is marked invalid, [`Payload::BookInvalid`] is
//!   published, and a resync (fresh snapshot) is requested; updates are then ignored
//!   (counted) until a snapshot verifies;
//! - bad input (malformed JSON, unknown channel, negative quantity, update before
//!   snapshot, unknown pair) is logged with the offending text, truncated, and counted;
//!   it never panics.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use gf_core::{BookSnapshot, BookUpdate, Level, Levels, Pair, Payload};
use tracing::{debug, warn};

use crate::book::{Book, BookSide, IntLevel, Precision, Scales};
use crate::error::{Error, excerpt};
use crate::fast;
use crate::message::{self, BookData, DataKind, Message};

/// Counters of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Data messages (book, trade, ticker) for the pair.
    pub messages: u64,
    /// Snapshots whose checksum verified.
    pub snapshots_verified: u64,
    /// Updates whose checksum verified.
    pub updates_verified: u64,
    /// Checksum mismatches (snapshots or updates).
    pub mismatches: u64,
    /// Updates ignored because the book was not valid (before a snapshot, after a
    /// mismatch, before the resync arrived).
    pub updates_skipped: u64,
    /// Trades published.
    pub trades: u64,
    /// Tickers published.
    pub tickers: u64,
}

/// Counters of the whole feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Text messages processed.
    pub messages: u64,
    /// Messages that did not parse (malformed JSON, bad numbers, negative quantities …).
    pub malformed: u64,
    /// Messages of channels or methods we do not handle.
    pub unknown: u64,
    /// Data for pairs we are not configured for.
    pub unknown_pairs: u64,
    /// Heartbeats.
    pub heartbeats: u64,
    /// Resyncs requested.
    pub resyncs: u64,
    /// Subscription requests the server refused.
    pub subscribe_errors: u64,
    /// Per pair.
    pub pairs: BTreeMap<Pair, PairStats>,
}

impl FeedStats {
    /// Checksum mismatches over all pairs.
    #[must_use]
    pub fn mismatches(&self) -> u64 {
        self.pairs.values().map(|p| p.mismatches).sum()
    }

    /// Verified updates over all pairs.
    #[must_use]
    pub fn updates_verified(&self) -> u64 {
        self.pairs.values().map(|p| p.updates_verified).sum()
    }
}

/// What one message amounted to, for the caller's bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingest {
    /// Pairs that received book or trade data (they are fresh now); inline for the
    /// usual one or two, so a message costs no allocation here.
    pub touched: smallvec::SmallVec<[Pair; 2]>,
    /// The latest exchange timestamp in the message, if it had one.
    pub timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct PairBook {
    pair: Pair,
    /// The pair's symbol for the fast path's header check.
    hint: fast::Hint,
    book: Book,
    valid: bool,
    resync_pending: bool,
    stats: PairStats,
}

/// Applies messages to per-pair books and emits market events.
///
/// ```
/// use gf_market::FeedProcessor;
/// use gf_core::Payload;
/// let mut feed = FeedProcessor::new(10, None);
/// let mut events = Vec::new();
/// let snapshot = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",
///   "bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0.00100000}],
///   "checksum":2383917627}]}"#;
/// feed.process(snapshot, &mut events).unwrap();
/// assert!(matches!(events[0], Payload::BookSnapshot(_)));
/// assert_eq!(feed.stats().mismatches(), 0);
/// ```
#[derive(Debug)]
pub struct FeedProcessor {
    depth: usize,
    auto_depth: bool,
    allowed: Option<HashSet<Pair>>,
    /// Per-pair state, in order of first appearance; `index` maps a pair to its slot.
    books: Vec<PairBook>,
    index: HashMap<Pair, usize>,
    /// The slot the fast path found last (consecutive messages often share a pair).
    last: usize,
    precision: HashMap<Pair, Precision>,
    resyncs: Vec<Pair>,
    stats: FeedStats,
    /// The fast path's scratch levels, reused so that it allocates nothing.
    scratch_bids: Vec<IntLevel>,
    scratch_asks: Vec<IntLevel>,
    /// Events of [`Self::process_without_events`]'s general path, dropped.
    scratch_out: Vec<Payload>,
    /// Whether recognised book messages take the fast path.
    fast_path: bool,
    /// The fast path's memory of the last timestamp it checked.
    ts_cache: fast::TimestampCache,
}

/// The one heartbeat Kraken sends.
const HEARTBEAT: &str = r#"{"channel":"heartbeat"}"#;

impl FeedProcessor {
    /// A processor keeping books at `depth`; `pairs` restricts which pairs are accepted
    /// (`None`: every pair, as when verifying a recording).
    #[must_use]
    pub fn new(depth: usize, pairs: Option<&[Pair]>) -> Self {
        Self {
            depth: depth.max(1),
            auto_depth: false,
            allowed: pairs.map(|p| p.iter().cloned().collect()),
            books: Vec::new(),
            index: HashMap::new(),
            last: 0,
            precision: HashMap::new(),
            resyncs: Vec::new(),
            stats: FeedStats::default(),
            scratch_bids: Vec::with_capacity(64),
            scratch_asks: Vec::with_capacity(64),
            scratch_out: Vec::new(),
            fast_path: true,
            ts_cache: fast::TimestampCache::default(),
        }
    }

    /// A processor that learns the depth from the recording itself: from the `book`
    /// subscription acknowledgement (`"result":{"depth":25,…}`) or, failing that, from
    /// the size of the first snapshot (rounded up to a depth Kraken offers). For
    /// verifying and replaying recordings whose depth is not known in advance.
    #[must_use]
    pub fn with_auto_depth(pairs: Option<&[Pair]>) -> Self {
        let mut feed = Self::new(crate::book::VALID_DEPTHS[0] as usize, pairs);
        feed.auto_depth = true;
        feed
    }

    /// Turns the fast path (a scanner for Kraken's book layout, integer books) on or off
    /// (it is on by default). Off, every message takes the general serde path, the
    /// reference the fast path must agree with: for agreement tests and the fuzzer.
    pub fn set_fast_path(&mut self, enabled: bool) {
        self.fast_path = enabled;
    }

    /// The depth books are kept at.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> FeedStats {
        let mut stats = self.stats.clone();
        stats.pairs = self
            .books
            .iter()
            .map(|state| (state.pair.clone(), state.stats))
            .collect();
        stats
    }

    /// Checksum mismatches so far over all pairs (cheaper than [`Self::stats`]).
    #[must_use]
    pub fn mismatches(&self) -> u64 {
        self.books.iter().map(|b| b.stats.mismatches).sum()
    }

    /// The pair's state, created on first use (the lookup does not clone the pair).
    fn state(&mut self, pair: &Pair) -> Option<&mut PairBook> {
        let i = if let Some(i) = self.index.get(pair) {
            *i
        } else {
            let mut book = Book::new(self.depth);
            book.set_precision(self.precision.get(pair).copied());
            self.books.push(PairBook {
                pair: pair.clone(),
                hint: fast::Hint::of(pair.as_str().as_bytes()),
                book,
                valid: false,
                resync_pending: false,
                stats: PairStats::default(),
            });
            self.index.insert(pair.clone(), self.books.len() - 1);
            self.books.len() - 1
        };
        self.books.get_mut(i)
    }

    /// The pair's state, if it has one.
    fn existing(&mut self, pair: &Pair) -> Option<&mut PairBook> {
        let i = *self.index.get(pair)?;
        self.books.get_mut(i)
    }

    /// The slot of the pair whose symbol is exactly `symbol`, without allocating.
    fn find(&mut self, symbol: &[u8]) -> Option<usize> {
        if let Some(b) = self.books.get(self.last)
            && b.pair.as_str().as_bytes() == symbol
        {
            return Some(self.last);
        }
        let i = self
            .books
            .iter()
            .position(|b| b.pair.as_str().as_bytes() == symbol)?;
        self.last = i;
        Some(i)
    }

    /// The pair's book, only while it is valid (its last checksum verified).
    #[must_use]
    pub fn book(&self, pair: &Pair) -> Option<&Book> {
        let i = *self.index.get(pair)?;
        self.books.get(i).filter(|b| b.valid).map(|b| &b.book)
    }

    /// The precision learnt from the `instrument` channel.
    #[must_use]
    pub fn precision(&self, pair: &Pair) -> Option<Precision> {
        self.precision.get(pair).copied()
    }

    /// Pairs whose book must be resubscribed; drains the list.
    pub fn take_resyncs(&mut self) -> Vec<Pair> {
        std::mem::take(&mut self.resyncs)
    }

    /// Marks every valid book invalid (e.g. the connection dropped), publishing
    /// [`Payload::BookInvalid`] for each.
    pub fn invalidate_all(&mut self, reason: &str, out: &mut Vec<Payload>) {
        let mut valid: Vec<&Pair> = self
            .books
            .iter()
            .filter(|b| b.valid)
            .map(|b| &b.pair)
            .collect();
        valid.sort();
        for pair in valid {
            out.push(Payload::BookInvalid {
                pair: pair.clone(),
                reason: reason.to_owned(),
            });
        }
        for state in &mut self.books {
            state.valid = false;
            state.resync_pending = false;
            state.book.clear();
        }
    }

    fn accepts(&mut self, pair: &Pair, what: &str) -> bool {
        let ok = self.allowed.as_ref().is_none_or(|a| a.contains(pair));
        if !ok {
            self.stats.unknown_pairs += 1;
            debug!(pair = %pair, what, "data for a pair not configured; ignored");
        }
        ok
    }

    /// Processes one text message, appending the events it yields to `out`.
    ///
    /// # Errors
    /// The parse error for a message that is not a valid v2 message (it is also counted
    /// and logged). A negative quantity or bad number in a book message invalidates that
    /// pair's book and requests a resync.
    pub fn process(&mut self, text: &str, out: &mut Vec<Payload>) -> Result<Ingest, Error> {
        self.stats.messages += 1;
        if text == HEARTBEAT {
            self.stats.heartbeats += 1;
            return Ok(Ingest::default());
        }
        if let Some((i, timestamp)) = self.fast(text, Some(out)) {
            return Ok(Ingest {
                touched: smallvec::smallvec![self.books[i].pair.clone()],
                timestamp,
            });
        }
        self.general(text, out)
    }

    /// Processes one text message like [`Self::process`] (same books, counters,
    /// resyncs and errors) without building its events: a book message in Kraken's
    /// usual layout then allocates nothing. For verifying recordings and benchmarks.
    ///
    /// # Errors
    /// As [`Self::process`].
    pub fn process_without_events(&mut self, text: &str) -> Result<(), Error> {
        self.quietly(text, |feed| feed.fast(text, None).is_some())
    }

    /// [`Self::process_without_events`] of a line already scanned by
    /// [`fast::prescan`] (`None`: it declined the line): the same books, counters,
    /// resyncs and errors. For verifying on two threads.
    pub(crate) fn process_prescanned(
        &mut self,
        text: &str,
        scan: Option<&fast::Prescan<'_>>,
    ) -> Result<(), Error> {
        self.quietly(text, |feed| {
            scan.is_some_and(|scan| feed.fast_prescanned(scan).is_some())
        })
    }

    /// One message without events: a heartbeat counted, else `fast` tried (`true`: it
    /// took the message), else the general path with its events dropped.
    fn quietly(&mut self, text: &str, fast: impl FnOnce(&mut Self) -> bool) -> Result<(), Error> {
        self.stats.messages += 1;
        if text == HEARTBEAT {
            self.stats.heartbeats += 1;
            return Ok(());
        }
        if fast(self) {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.scratch_out);
        let result = self.general(text, &mut out);
        out.clear();
        self.scratch_out = out;
        result.map(|_| ())
    }

    /// [`Self::fast`] of a prescanned line: the levels as written taken to the book's
    /// scales (declining where the scanner would have).
    fn fast_prescanned(&mut self, p: &fast::Prescan<'_>) -> Option<(usize, Option<DateTime<Utc>>)> {
        if !self.fast_takes(p.kind) {
            return None;
        }
        let i = self.find(p.symbol)?;
        let scales = self.fast_scales(i, p.kind)?;
        self.scratch_bids.clear();
        self.scratch_asks.clear();
        for l in p.bids {
            self.scratch_bids.push(l.at(scales)?);
        }
        for l in p.asks {
            self.scratch_asks.push(l.at(scales)?);
        }
        self.apply_fast(i, p.kind, scales, p.body, None)
    }

    /// Whether the fast path may take a message of `kind` (a snapshot while the depth is
    /// still to be learnt goes to the general path, which learns it).
    fn fast_takes(&self, kind: DataKind) -> bool {
        self.fast_path && !(self.auto_depth && kind == DataKind::Snapshot)
    }

    /// The scales the fast path reads a message of `kind` for slot `i` at (`None`: the
    /// book is in decimal form and the message must take the general path).
    fn fast_scales(&self, i: usize, kind: DataKind) -> Option<Scales> {
        let state = &self.books[i];
        match (kind, state.valid) {
            (DataKind::Update, true) => state.book.int_scales(),
            _ => state.book.snapshot_scales(),
        }
    }

    /// The fast path (see [`crate::fast`]): a book message in Kraken's fixed layout for
    /// a pair already known, applied in integer form. `None` when the message is not
    /// recognised exactly; then nothing has changed and the caller takes the general
    /// path. Otherwise the pair's slot and the message's timestamp.
    fn fast(
        &mut self,
        text: &str,
        out: Option<&mut Vec<Payload>>,
    ) -> Option<(usize, Option<DateTime<Utc>>)> {
        if !self.fast_path {
            return None;
        }
        let hint = self
            .books
            .get(self.last)
            .map_or(fast::Hint::default(), |b| b.hint);
        let head = fast::header(text.as_bytes(), &hint)?;
        if !self.fast_takes(head.kind) {
            return None;
        }
        // The hint was the symbol of slot `last`.
        let i = if head.hinted {
            self.last
        } else {
            self.find(head.symbol)?
        };
        let scales = self.fast_scales(i, head.kind)?;
        let body = fast::body(
            text.as_bytes(),
            &head,
            scales,
            &mut self.scratch_bids,
            &mut self.scratch_asks,
            out.is_some(),
            &mut self.ts_cache,
        )?;
        self.apply_fast(i, head.kind, scales, body, out)
    }

    /// The fast path's second half: the message's levels (in the scratch lists, at
    /// `scales`) applied to slot `i`'s book and verified, as [`Self::fast`] does.
    #[inline(always)]
    fn apply_fast(
        &mut self,
        i: usize,
        kind: DataKind,
        scales: Scales,
        body: fast::Body,
        mut out: Option<&mut Vec<Payload>>,
    ) -> Option<(usize, Option<DateTime<Utc>>)> {
        let depth = self.depth;
        let state = &mut self.books[i];
        state.stats.messages += 1;
        let padded = state.book.precision().is_some();
        let computed = match kind {
            DataKind::Snapshot => {
                state.book.clear();
                apply_ints(&mut state.book, &self.scratch_bids, &self.scratch_asks);
                state.resync_pending = false;
                let computed = state.book.checksum();
                if computed == body.checksum {
                    state.valid = true;
                    state.stats.snapshots_verified += 1;
                    if let Some(out) = out.as_deref_mut() {
                        let precision = state.book.precision();
                        out.push(Payload::BookSnapshot(BookSnapshot {
                            bids: padded_all(state.book.top(BookSide::Bid, depth), precision),
                            asks: padded_all(state.book.top(BookSide::Ask, depth), precision),
                            checksum: computed,
                            pair: state.pair.clone(),
                        }));
                    }
                    return Some((i, body.timestamp));
                }
                computed
            }
            DataKind::Update => {
                if !state.valid {
                    state.stats.updates_skipped += 1;
                    if !state.resync_pending {
                        let pair = state.pair.clone();
                        warn!(pair = %pair, "book update before a valid snapshot");
                        self.request_resync(&pair);
                    }
                    return Some((i, body.timestamp));
                }
                apply_ints(&mut state.book, &self.scratch_bids, &self.scratch_asks);
                let computed = state.book.checksum();
                if computed == body.checksum {
                    state.stats.updates_verified += 1;
                    if let Some(out) = out.as_deref_mut() {
                        let book = &state.book;
                        let level = |l: &IntLevel| l.to_padded(scales, padded);
                        out.push(Payload::BookUpdate(BookUpdate {
                            best_bid: book.best_int(BookSide::Bid).as_ref().map(level),
                            best_ask: book.best_int(BookSide::Ask).as_ref().map(level),
                            checksum: computed,
                            bids: Levels::new(),
                            asks: Levels::new(),
                            pair: state.pair.clone(),
                        }));
                        // The levels go straight into the event in place (no moves of
                        // the inline arrays).
                        if let Some(Payload::BookUpdate(u)) = out.last_mut() {
                            for (to, from) in [
                                (&mut u.bids, &self.scratch_bids),
                                (&mut u.asks, &self.scratch_asks),
                            ] {
                                for l in from {
                                    to.push(level(l));
                                }
                            }
                        }
                    }
                    return Some((i, body.timestamp));
                }
                computed
            }
        };
        state.valid = false;
        state.stats.mismatches += 1;
        let pair = state.pair.clone();
        let what = match kind {
            DataKind::Snapshot => "snapshot",
            DataKind::Update => "update",
        };
        let mut dropped = Vec::new();
        let out = out.unwrap_or(&mut dropped);
        self.mismatch(pair, what, body.checksum, computed, out);
        Some((i, body.timestamp))
    }

    /// The general path: every message, through serde (the reference behaviour).
    fn general(&mut self, text: &str, out: &mut Vec<Payload>) -> Result<Ingest, Error> {
        let msg = match message::parse(text) {
            Ok(msg) => msg,
            Err(err) => {
                self.stats.malformed += 1;
                warn!(cause = %err, text = %excerpt(text), "unparseable market-data message");
                self.invalidate_named_book(text, &err, out);
                return Err(err);
            }
        };
        let mut ingest = Ingest::default();
        match msg {
            Message::Book(kind, books) => {
                for data in books {
                    if !self.accepts(&data.pair, "book") {
                        continue;
                    }
                    note(&mut ingest, &data.pair, data.timestamp);
                    self.on_book(kind, data, out);
                }
            }
            Message::Trade(kind, trades) => {
                for t in trades {
                    if !self.accepts(&t.pair, "trade") {
                        continue;
                    }
                    note(&mut ingest, &t.pair, t.timestamp);
                    let Some(state) = self.state(&t.pair) else {
                        continue;
                    };
                    let stats = &mut state.stats;
                    stats.messages += 1;
                    // A trade snapshot is history (the last 50 trades), not news.
                    if kind == DataKind::Update {
                        stats.trades += 1;
                        out.push(Payload::Trade {
                            pair: t.pair,
                            side: t.side,
                            price: t.price,
                            qty: t.qty,
                            trade_id: t.trade_id,
                        });
                    }
                }
            }
            Message::Ticker(tickers) => {
                for t in tickers {
                    if !self.accepts(&t.pair, "ticker") {
                        continue;
                    }
                    if let Some(ts) = t.timestamp {
                        ingest.timestamp = ingest.timestamp.max(Some(ts));
                    }
                    let Some(state) = self.state(&t.pair) else {
                        continue;
                    };
                    state.stats.messages += 1;
                    state.stats.tickers += 1;
                    out.push(Payload::Ticker {
                        pair: t.pair,
                        bid: t.bid,
                        ask: t.ask,
                        last: t.last,
                        volume: t.volume,
                    });
                }
            }
            Message::Instrument(pairs) => {
                for p in pairs {
                    if self.allowed.as_ref().is_some_and(|a| !a.contains(&p.pair)) {
                        continue;
                    }
                    if let Some(state) = self.existing(&p.pair) {
                        state.book.set_precision(Some(p.precision));
                    }
                    self.precision.insert(p.pair, p.precision);
                }
            }
            Message::Heartbeat => self.stats.heartbeats += 1,
            Message::Status(system, text) => {
                let detail = if system == gf_core::event::ExchangeSystem::Unknown {
                    format!("ws status: undocumented value {text:?}")
                } else {
                    "ws status".to_owned()
                };
                out.push(Payload::ExchangeStatus { system, detail });
            }
            Message::Pong => {}
            Message::Ack {
                success: false,
                method,
                error,
                ..
            } => {
                self.stats.subscribe_errors += 1;
                warn!(method, error = ?error, "request refused by the server");
            }
            Message::Ack {
                channel: Some(channel),
                depth: Some(depth),
                ..
            } if channel == "book" => {
                // The depth the server acknowledged is the depth the data has: it wins
                // over a configured one (a depth-10 recording replayed with depth 25
                // would otherwise keep levels the feed never removes).
                if let Ok(depth) = crate::book::validate_depth(depth) {
                    self.auto_depth = false;
                    if depth != self.depth {
                        warn!(
                            configured = self.depth,
                            acknowledged = depth,
                            "book depth follows the server"
                        );
                        self.depth = depth;
                        for state in &mut self.books {
                            let precision = state.book.precision();
                            state.book = Book::new(depth);
                            state.book.set_precision(precision);
                            state.valid = false;
                        }
                    }
                }
            }
            Message::Ack { .. } => {}
            Message::Unknown(what) => {
                self.stats.unknown += 1;
                debug!(what, text = %excerpt(text), "unhandled message");
            }
        }
        Ok(ingest)
    }

    /// A book message that failed validation (e.g. a negative quantity) still names its
    /// pair: the book has missed an update, so it is invalid until a resync.
    fn invalidate_named_book(&mut self, text: &str, err: &Error, out: &mut Vec<Payload>) {
        let Error::InvalidLevel { pair, .. } = err else {
            return;
        };
        let Ok(pair) = pair.parse::<Pair>() else {
            return;
        };
        if !text.contains("\"book\"") {
            return;
        }
        if let Some(state) = self.existing(&pair) {
            let was_valid = state.valid;
            state.valid = false;
            if was_valid {
                out.push(Payload::BookInvalid {
                    pair: pair.clone(),
                    reason: format!("rejected book message: {err}"),
                });
            }
            self.request_resync(&pair);
        }
    }

    fn request_resync(&mut self, pair: &Pair) {
        if let Some(state) = self.existing(pair)
            && !state.resync_pending
        {
            state.resync_pending = true;
            self.stats.resyncs += 1;
            self.resyncs.push(pair.clone());
        }
    }

    fn on_book(&mut self, kind: DataKind, data: BookData, out: &mut Vec<Payload>) {
        if self.auto_depth && kind == DataKind::Snapshot {
            let levels = data.bids.len().max(data.asks.len());
            self.depth = crate::book::VALID_DEPTHS
                .iter()
                .map(|d| *d as usize)
                .find(|d| *d >= levels)
                .unwrap_or(self.depth);
            self.auto_depth = false;
        }
        let depth = self.depth;
        let Some(state) = self.state(&data.pair) else {
            return;
        };
        let stats = &mut state.stats;
        stats.messages += 1;
        match kind {
            DataKind::Snapshot => {
                state.book.apply_snapshot(&data.bids, &data.asks);
                state.resync_pending = false;
                let computed = state.book.checksum();
                if computed == data.checksum {
                    state.valid = true;
                    stats.snapshots_verified += 1;
                    let precision = state.book.precision();
                    out.push(Payload::BookSnapshot(BookSnapshot {
                        bids: padded_all(state.book.top(BookSide::Bid, depth), precision),
                        asks: padded_all(state.book.top(BookSide::Ask, depth), precision),
                        checksum: computed,
                        pair: data.pair,
                    }));
                } else {
                    state.valid = false;
                    stats.mismatches += 1;
                    self.mismatch(data.pair, "snapshot", data.checksum, computed, out);
                }
            }
            DataKind::Update => {
                if !state.valid {
                    stats.updates_skipped += 1;
                    if !state.resync_pending {
                        warn!(pair = %data.pair, "book update before a valid snapshot");
                        self.request_resync(&data.pair);
                    }
                    return;
                }
                state.book.apply_update(&data.bids, &data.asks);
                let computed = state.book.checksum();
                if computed == data.checksum {
                    stats.updates_verified += 1;
                    let precision = state.book.precision();
                    out.push(Payload::BookUpdate(BookUpdate {
                        best_bid: state.book.best_bid().map(|l| padded(l, precision)),
                        best_ask: state.book.best_ask().map(|l| padded(l, precision)),
                        checksum: computed,
                        bids: padded_all(data.bids, precision).into(),
                        asks: padded_all(data.asks, precision).into(),
                        pair: data.pair,
                    }));
                } else {
                    state.valid = false;
                    stats.mismatches += 1;
                    self.mismatch(data.pair, "update", data.checksum, computed, out);
                }
            }
        }
    }

    fn mismatch(
        &mut self,
        pair: Pair,
        what: &str,
        expected: u32,
        computed: u32,
        out: &mut Vec<Payload>,
    ) {
        let reason =
            format!("checksum mismatch on {what}: expected {expected}, computed {computed}");
        warn!(pair = %pair, reason, "book invalid; resyncing");
        self.request_resync(&pair);
        out.push(Payload::BookInvalid { pair, reason });
    }
}

/// Pads a level's numbers to the pair's precision (`2.184` → `2.18400` for precision 5),
/// so published levels carry the full precision Kraken means and a downstream book
/// rebuilt from events reproduces the checksum. Never rounds: a number with more digits
/// than the precision is left as is.
fn padded(mut level: Level, precision: Option<Precision>) -> Level {
    if let Some(p) = precision {
        if level.price.scale() < p.price {
            level.price.rescale(p.price);
        }
        if level.qty.scale() < p.qty {
            level.qty.rescale(p.qty);
        }
    }
    level
}

fn padded_all(levels: Vec<Level>, precision: Option<Precision>) -> Vec<Level> {
    if precision.is_none() {
        return levels;
    }
    levels.into_iter().map(|l| padded(l, precision)).collect()
}

/// Applies a recognised message's integer levels, then truncates.
fn apply_ints(book: &mut Book, bids: &[IntLevel], asks: &[IntLevel]) {
    for l in bids {
        book.apply_int(BookSide::Bid, *l);
    }
    for l in asks {
        book.apply_int(BookSide::Ask, *l);
    }
    book.truncate();
}

fn note(ingest: &mut Ingest, pair: &Pair, ts: Option<DateTime<Utc>>) {
    if !ingest.touched.contains(pair) {
        ingest.touched.push(pair.clone());
    }
    if ts.is_some() {
        ingest.timestamp = ingest.timestamp.max(ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000},{"price":45283.4,"qty":1.54582015},{"price":45282.1,"qty":0.10000000},{"price":45281.0,"qty":0.10000000},{"price":45280.3,"qty":1.54592586},{"price":45279.0,"qty":0.07990000},{"price":45277.6,"qty":0.03310103},{"price":45277.5,"qty":0.30000000},{"price":45277.3,"qty":1.54602737},{"price":45276.6,"qty":0.15445238}],"asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.4,"qty":1.54571953},{"price":45286.6,"qty":1.54571109},{"price":45289.6,"qty":1.54560911},{"price":45290.2,"qty":0.15890660},{"price":45291.8,"qty":1.54553491},{"price":45294.7,"qty":0.04454749},{"price":45296.1,"qty":0.35380000},{"price":45297.5,"qty":0.09945542},{"price":45299.5,"qty":0.18772827}],"checksum":3310070434}]}"#;

    fn btc() -> Pair {
        "BTC/USD".parse().unwrap()
    }

    /// An update removing the best ask, with the checksum the book then has.
    fn update_removing_best_ask(feed: &FeedProcessor, corrupt: u32) -> String {
        let mut book = feed.book(&btc()).unwrap().clone();
        book.apply_update(
            &[],
            &[gf_core::Level {
                price: "45285.2".parse().unwrap(),
                qty: rust_decimal::Decimal::ZERO,
            }],
        );
        format!(
            r#"{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[],"asks":[{{"price":45285.2,"qty":0}}],"checksum":{},"timestamp":"2023-10-06T17:35:55.440295Z"}}]}}"#,
            book.checksum().wrapping_add(corrupt)
        )
    }

    #[test]
    fn verified_snapshot_and_update_are_published() {
        let mut feed = FeedProcessor::new(10, Some(&[btc()]));
        let mut out = Vec::new();
        let ingest = feed.process(SNAP, &mut out).unwrap();
        assert_eq!(ingest.touched.as_slice(), [btc()]);
        let Payload::BookSnapshot(s) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(s.checksum, 3_310_070_434);
        assert_eq!(s.bids.len(), 10);
        let upd = update_removing_best_ask(&feed, 0);
        out.clear();
        let ingest = feed.process(&upd, &mut out).unwrap();
        assert!(ingest.timestamp.is_some());
        let Payload::BookUpdate(u) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(u.best_ask.unwrap().price, "45286.4".parse().unwrap());
        assert_eq!(u.best_bid.unwrap().price, "45283.5".parse().unwrap());
        let stats = feed.stats().pairs[&btc()];
        assert_eq!(
            (
                stats.snapshots_verified,
                stats.updates_verified,
                stats.mismatches
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn mismatch_invalidates_publishes_and_requests_one_resync() {
        let mut feed = FeedProcessor::new(10, None);
        let mut out = Vec::new();
        feed.process(SNAP, &mut out).unwrap();
        let bad = update_removing_best_ask(&feed, 1);
        out.clear();
        feed.process(&bad, &mut out).unwrap();
        assert!(
            matches!(&out[0], Payload::BookInvalid { reason, .. } if reason.contains("checksum mismatch on update"))
        );
        assert!(feed.book(&btc()).is_none());
        assert_eq!(feed.take_resyncs(), vec![btc()]);
        // Further updates are skipped without another resync request.
        out.clear();
        feed.process(&bad, &mut out).unwrap();
        assert!(out.is_empty());
        assert!(feed.take_resyncs().is_empty());
        assert_eq!(feed.stats().pairs[&btc()].updates_skipped, 1);
        // A fresh snapshot makes the book valid again.
        feed.process(SNAP, &mut out).unwrap();
        assert!(feed.book(&btc()).is_some());
        assert_eq!(feed.stats().mismatches(), 1);
        assert_eq!(feed.stats().resyncs, 1);
    }

    #[test]
    fn corrupted_snapshot_is_never_published_as_valid() {
        let mut feed = FeedProcessor::new(10, None);
        let mut out = Vec::new();
        feed.process(&SNAP.replace("3310070434", "3310070435"), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Payload::BookInvalid { .. }));
        assert!(feed.book(&btc()).is_none());
        assert_eq!(feed.take_resyncs(), vec![btc()]);
    }

    #[test]
    fn bad_input_is_counted_and_keeps_books_consistent() {
        let mut feed = FeedProcessor::new(10, Some(&[btc()]));
        let mut out = Vec::new();
        // Update before any snapshot: skipped, resync requested.
        let early = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":0}]}"#;
        feed.process(early, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(feed.take_resyncs(), vec![btc()]);
        // Garbage and unknown channels.
        assert!(feed.process("}{ garbage", &mut out).is_err());
        feed.process(
            r#"{"channel":"spread","type":"update","data":[]}"#,
            &mut out,
        )
        .unwrap();
        // Unknown pair.
        feed.process(&SNAP.replace("BTC/USD", "ETH/USD"), &mut out)
            .unwrap();
        feed.process(SNAP, &mut out).unwrap();
        out.clear();
        // Negative quantity in a book message: the book is invalidated and resynced.
        let negative = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":-1}],"asks":[],"checksum":0}]}"#;
        assert!(feed.process(negative, &mut out).is_err());
        assert!(
            matches!(&out[0], Payload::BookInvalid { reason, .. } if reason.contains("negative quantity"))
        );
        assert!(feed.book(&btc()).is_none());
        assert_eq!(feed.take_resyncs(), vec![btc()]);
        let s = feed.stats();
        assert_eq!((s.malformed, s.unknown, s.unknown_pairs), (2, 1, 1));
    }

    #[test]
    fn acknowledged_depth_wins_over_configured_and_auto_depth_learns() {
        let ack = r#"{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true}"#;
        let mut feed = FeedProcessor::new(25, None);
        let mut out = Vec::new();
        feed.process(SNAP, &mut out).unwrap();
        feed.process(ack, &mut out).unwrap();
        assert_eq!(feed.depth(), 10);
        assert!(
            feed.book(&btc()).is_none(),
            "rebuilt at the new depth from a snapshot"
        );
        feed.process(SNAP, &mut out).unwrap();
        assert_eq!(feed.book(&btc()).unwrap().depth(), 10);
        // Without an ack, auto depth comes from the first snapshot's size.
        let mut auto = FeedProcessor::with_auto_depth(None);
        auto.process(SNAP, &mut out).unwrap();
        assert_eq!(auto.depth(), 10);
        let big: Vec<String> = (0..30)
            .map(|i| format!(r#"{{"price":{}.5,"qty":1}}"#, 100 - i))
            .collect();
        let text = format!(
            r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{}],"asks":[],"checksum":0}}]}}"#,
            big.join(",")
        );
        let mut auto = FeedProcessor::with_auto_depth(None);
        auto.process(&text, &mut out).unwrap();
        assert_eq!(auto.depth(), 100);
    }

    #[test]
    fn instrument_precision_applies_and_trades_tickers_publish() {
        let mut feed = FeedProcessor::new(10, None);
        let mut out = Vec::new();
        // Trimmed numbers (45281 instead of 45281.0): only verifies with the precision.
        let trimmed = SNAP
            .replace("45281.0", "45281")
            .replace("0.10000000", "0.1");
        feed.process(&trimmed, &mut out).unwrap();
        assert!(matches!(&out[0], Payload::BookInvalid { .. }));
        feed.process(r#"{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD","price_precision":1,"qty_precision":8}]}}"#, &mut out).unwrap();
        assert_eq!(feed.precision(&btc()), Some(Precision { price: 1, qty: 8 }));
        out.clear();
        feed.process(&trimmed, &mut out).unwrap();
        let Payload::BookSnapshot(s) = &out[0] else {
            panic!("{out:?}")
        };
        // Published levels carry the pair's full precision again.
        assert!(s.bids.iter().any(|l| l.price.to_string() == "45281.0"));
        assert_eq!(s.bids[0].qty.to_string(), "0.10000000");
        out.clear();
        feed.process(r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":45285.2,"qty":0.001,"ord_type":"market","trade_id":7,"timestamp":"2023-10-06T17:35:56Z"}]}"#, &mut out).unwrap();
        feed.process(r#"{"channel":"trade","type":"snapshot","data":[{"symbol":"BTC/USD","side":"buy","price":1,"qty":1,"ord_type":"market","trade_id":6}]}"#, &mut out).unwrap();
        feed.process(r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":45283.5,"bid_qty":1,"ask":45285.2,"ask_qty":1,"last":45285.2,"volume":100.5,"vwap":1,"low":1,"high":1,"change":0,"change_pct":0}]}"#, &mut out).unwrap();
        feed.process(r#"{"channel":"heartbeat"}"#, &mut out)
            .unwrap();
        feed.process(
            r#"{"error":"Currency pair not supported","method":"subscribe","success":false}"#,
            &mut out,
        )
        .unwrap();
        assert!(matches!(&out[0], Payload::Trade { trade_id: 7, .. }));
        assert!(matches!(&out[1], Payload::Ticker { .. }));
        assert_eq!(out.len(), 2);
        let s = feed.stats();
        assert_eq!((s.heartbeats, s.subscribe_errors), (1, 1));
        assert_eq!(s.pairs[&btc()].trades, 1);
        out.clear();
        feed.invalidate_all("connection lost", &mut out);
        assert!(
            matches!(&out[0], Payload::BookInvalid { reason, .. } if reason == "connection lost")
        );
        assert!(feed.book(&btc()).is_none());
    }
}
