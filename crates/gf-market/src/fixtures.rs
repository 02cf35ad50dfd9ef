//! The seeded generator of the recordings under `fixtures/market/`
//! (`cargo xtask gen-fixtures`).
//!
//! It simulates Kraken's v2 public feed for XRP/USD and DOGE/USD at book depth 10 and
//! writes what a client would have recorded: the `status` message, subscription acks, the
//! `instrument` snapshot, book and ticker snapshots, then a few minutes of book updates
//! (with correct checksums), trades and tickers with realistic timestamps.
//!
//! The exchange side keeps a deeper book (integer ticks and lots, no floating point)
//! around a random-walk fair price. After each step it sends the difference between the
//! client's view (top 10) before and after, exactly as Kraken does: changed and new
//! levels, `qty: 0` for levels that left the book, and nothing for levels merely pushed
//! out of scope (the client truncates them). Numbers are rendered the way Kraken's JSON
//! numbers look (trailing zeros trimmed, `740.0` for integers), so verifying needs the
//! precisions from the `instrument` message, as it does live.
//!
//! Scenarios share the seed, so they start identically:
//! - [`Scenario::Paper`]: a normal five-minute session;
//! - [`Scenario::Crash`]: after two minutes, prices fall about 25% over two minutes (for
//!   drawdown and volatility halts), then settle;
//! - [`Scenario::Gap`]: the feed goes silent for 75 s after 2.5 minutes (for staleness).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use gf_core::Level;
use rust_decimal::Decimal;

use crate::book::Precision;
use crate::checksum::checksum;
use crate::error::Error;
use gf_core::backoff::splitmix;

/// The book depth the fixtures are recorded at.
pub const DEPTH: usize = 10;
/// The generator's seed.
pub const SEED: u64 = 0x6761_6c66_7269_6461;

/// Session length, microseconds.
const SESSION_US: i64 = 300_000_000;
/// Crash window, microseconds from the start.
const CRASH_START_US: i64 = 120_000_000;
const CRASH_END_US: i64 = 240_000_000;
/// Gap window, microseconds from the start.
const GAP_START_US: i64 = 150_000_000;
const GAP_END_US: i64 = 225_000_000;
/// Levels the exchange keeps per side.
const DEEP: usize = 40;

/// Which recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// A normal session.
    Paper,
    /// A sharp drop (~25% over two minutes).
    Crash,
    /// A 75 s feed gap.
    Gap,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 3] = [Scenario::Paper, Scenario::Crash, Scenario::Gap];

    /// The file name under `fixtures/market/`.
    #[must_use]
    pub fn file_name(self) -> &'static str {
        match self {
            Scenario::Paper => "paper.jsonl",
            Scenario::Crash => "crash.jsonl",
            Scenario::Gap => "gap.jsonl",
        }
    }
}

/// Writes every scenario into `dir` (created if missing); returns the paths written.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    Scenario::ALL
        .iter()
        .map(|s| {
            let path = dir.join(s.file_name());
            std::fs::write(&path, generate(*s)).map_err(|e| Error::io(&path, e))?;
            Ok(path)
        })
        .collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        splitmix(&mut self.0)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo).unwrap_or(0) + 1;
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }
    fn chance(&mut self, percent: i64) -> bool {
        self.range(0, 99) < percent
    }
}

/// One side as `(price ticks, qty lots)`, best first.
type Side = Vec<(i64, i64)>;
/// The client's view: (bids, asks).
type View = (Side, Side);

struct PairSim {
    symbol: &'static str,
    base: &'static str,
    precision: Precision,
    /// Fair price in ticks.
    fair: i64,
    start_fair: i64,
    /// Typical distance between levels, ticks.
    spacing: i64,
    /// Minimum half spread, ticks.
    half_spread: i64,
    /// Typical level size, lots (1e-8).
    lot: i64,
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    /// The client's view as last sent: (bids best first, asks best first).
    sent: View,
    trade_id: u64,
    volume: i64,
    notional_open: i64,
    last: i64,
    low: i64,
    high: i64,
}

impl PairSim {
    fn new(
        symbol: &'static str,
        base: &'static str,
        precision: Precision,
        fair: i64,
        spacing: i64,
        lot: i64,
    ) -> Self {
        Self {
            symbol,
            base,
            precision,
            fair,
            start_fair: fair,
            spacing,
            half_spread: spacing,
            lot,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            sent: (Vec::new(), Vec::new()),
            trade_id: 40_000_000 + u64::try_from(fair % 1_000_000).unwrap_or(0),
            volume: lot * 4_000,
            notional_open: fair,
            last: fair,
            low: fair - fair / 50,
            high: fair + fair / 40,
        }
    }

    fn price(&self, ticks: i64) -> Decimal {
        Decimal::new(ticks, self.precision.price)
    }

    fn qty(&self, lots: i64) -> Decimal {
        Decimal::new(lots, self.precision.qty)
    }

    fn view(&self) -> View {
        (
            self.bids
                .iter()
                .rev()
                .take(DEPTH)
                .map(|(p, q)| (*p, *q))
                .collect(),
            self.asks
                .iter()
                .take(DEPTH)
                .map(|(p, q)| (*p, *q))
                .collect(),
        )
    }

    fn levels(&self, side: &[(i64, i64)]) -> Vec<Level> {
        side.iter()
            .map(|(p, q)| Level {
                price: self.price(*p),
                qty: self.qty(*q),
            })
            .collect()
    }

    fn checksum_of(&self, view: &View) -> u32 {
        checksum(
            &self.levels(&view.1),
            &self.levels(&view.0),
            Some(self.precision),
        )
    }

    fn random_size(&self, rng: &mut Rng) -> i64 {
        // Mostly modest sizes, sometimes a large resting order; whole lots often.
        let base = rng.range(self.lot / 20, self.lot * 3);
        let size = if rng.chance(8) {
            base * rng.range(5, 20)
        } else {
            base
        };
        if rng.chance(40) {
            size - size % 100_000_000 + 100_000_000
        } else {
            size
        }
    }

    /// Refills both sides to the exchange's depth, away from the touch.
    fn refill(&mut self, rng: &mut Rng) {
        while self.bids.len() < DEEP {
            let worst = self
                .bids
                .keys()
                .next()
                .copied()
                .unwrap_or(self.fair - self.half_spread);
            let p = worst - rng.range(1, self.spacing * 2);
            let q = self.random_size(rng);
            self.bids.insert(p, q);
        }
        while self.asks.len() < DEEP {
            let worst = self
                .asks
                .keys()
                .next_back()
                .copied()
                .unwrap_or(self.fair + self.half_spread);
            let p = worst + rng.range(1, self.spacing * 2);
            let q = self.random_size(rng);
            self.asks.insert(p, q);
        }
        // Far levels beyond the exchange's depth are dropped (never visible to the client).
        while self.bids.len() > DEEP * 2 {
            let worst = *self.bids.keys().next().unwrap_or(&0);
            self.bids.remove(&worst);
        }
        while self.asks.len() > DEEP * 2 {
            let worst = *self.asks.keys().next_back().unwrap_or(&0);
            self.asks.remove(&worst);
        }
    }
}

struct Writer {
    out: String,
    start: DateTime<Utc>,
}

impl Writer {
    fn ts(&self, us: i64) -> String {
        (self.start + chrono::Duration::microseconds(us))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }
}

/// A Kraken-looking JSON number: trailing zeros trimmed, `.0` kept on integers.
fn num(d: Decimal) -> String {
    let s = d.normalize().to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

fn levels_json(sim: &PairSim, side: &[(i64, i64)]) -> String {
    let mut s = String::from("[");
    for (i, (p, q)) in side.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Removals are written `"qty":0`, as in Kraken's documentation.
        let qty = if *q == 0 {
            "0".to_owned()
        } else {
            num(sim.qty(*q))
        };
        let _ = write!(s, r#"{{"price":{},"qty":{qty}}}"#, num(sim.price(*p)));
    }
    s.push(']');
    s
}

/// Changes from `before` to `after` on one side, given the exchange's full side.
fn side_diff(
    before: &[(i64, i64)],
    after: &[(i64, i64)],
    full: &BTreeMap<i64, i64>,
) -> Vec<(i64, i64)> {
    let mut changes: Vec<(i64, i64)> = Vec::new();
    for (p, q) in after {
        if !before.iter().any(|(bp, bq)| bp == p && bq == q) {
            changes.push((*p, *q));
        }
    }
    for (p, _) in before {
        if !after.iter().any(|(ap, _)| ap == p) && !full.contains_key(p) {
            changes.push((*p, 0));
        }
    }
    changes
}

fn header(w: &mut Writer, sims: &[PairSim]) {
    let t0 = w.ts(0);
    let t1 = w.ts(180);
    w.line(r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":11834732518733312209,"system":"online","version":"2.0.10"}]}"#);
    let symbols: Vec<&str> = sims.iter().map(|s| s.symbol).collect();
    w.line(&format!(
        r#"{{"method":"subscribe","req_id":1,"result":{{"channel":"instrument","snapshot":true,"warnings":["tick_size is deprecated, use price_increment"]}},"success":true,"time_in":"{t0}","time_out":"{t1}"}}"#
    ));
    for (req, channel) in [(2, "book"), (3, "trade"), (4, "ticker")] {
        for symbol in &symbols {
            let extra = match channel {
                "book" => format!(r#""depth":{DEPTH},"snapshot":true,"#),
                "trade" => r#""snapshot":false,"#.to_owned(),
                _ => r#""event_trigger":"trades","snapshot":true,"#.to_owned(),
            };
            w.line(&format!(
                r#"{{"method":"subscribe","req_id":{req},"result":{{"channel":"{channel}",{extra}"symbol":"{symbol}"}},"success":true,"time_in":"{t0}","time_out":"{t1}"}}"#
            ));
        }
    }
    let mut pairs = String::new();
    for (i, s) in sims.iter().enumerate() {
        if i > 0 {
            pairs.push(',');
        }
        let inc = num(Decimal::new(1, s.precision.price));
        let _ = write!(
            pairs,
            r#"{{"symbol":"{}","base":"{}","quote":"USD","status":"online","qty_precision":{},"qty_increment":1e-08,"price_precision":{},"cost_precision":5,"marginable":true,"has_index":true,"cost_min":0.5,"margin_initial":0.2,"position_limit_long":250000,"position_limit_short":200000,"tick_size":{inc},"price_increment":{inc},"qty_min":{}}}"#,
            s.symbol,
            s.base,
            s.precision.qty,
            s.precision.price,
            num(s.qty(s.lot / 5)),
        );
    }
    w.line(&format!(
        r#"{{"channel":"instrument","type":"snapshot","data":{{"assets":[{{"id":"USD","status":"enabled","precision":4,"precision_display":2,"borrowable":true,"collateral_value":1.0,"margin_rate":0.025}},{{"id":"XRP","status":"enabled","precision":8,"precision_display":5,"borrowable":true,"collateral_value":0.0,"margin_rate":0.02}},{{"id":"DOGE","status":"enabled","precision":8,"precision_display":2,"borrowable":false,"collateral_value":0.0}}],"pairs":[{pairs}]}}}}"#
    ));
}

fn ticker(w: &mut Writer, sim: &PairSim, us: i64, snapshot: bool) {
    let (bids, asks) = sim.view();
    let (Some(bid), Some(ask)) = (bids.first(), asks.first()) else {
        return;
    };
    let open = sim.notional_open;
    let change = sim.last - open;
    let change_pct =
        (Decimal::from(change) * Decimal::ONE_HUNDRED / Decimal::from(open)).round_dp(2);
    let vwap = sim.price((sim.low + sim.high + sim.last) / 3);
    w.line(&format!(
        r#"{{"channel":"ticker","type":"{}","data":[{{"symbol":"{}","bid":{},"bid_qty":{},"ask":{},"ask_qty":{},"last":{},"volume":{},"vwap":{},"low":{},"high":{},"change":{},"change_pct":{},"timestamp":"{}"}}]}}"#,
        if snapshot { "snapshot" } else { "update" },
        sim.symbol,
        num(sim.price(bid.0)),
        num(sim.qty(bid.1)),
        num(sim.price(ask.0)),
        num(sim.qty(ask.1)),
        num(sim.price(sim.last)),
        num(sim.qty(sim.volume)),
        num(vwap),
        num(sim.price(sim.low)),
        num(sim.price(sim.high)),
        num(sim.price(change)),
        num(change_pct),
        w.ts(us),
    ));
}

/// One simulated step of one pair: move the fair price, trade through crossed levels,
/// churn the top of the book; returns the trades `(side, price, qty)` executed.
fn step(
    sim: &mut PairSim,
    rng: &mut Rng,
    scenario: Scenario,
    us: i64,
) -> Vec<(&'static str, i64, i64)> {
    let vol = (sim.start_fair / 20_000).max(2);
    sim.fair += rng.range(-vol, vol);
    if scenario == Scenario::Crash && (CRASH_START_US..CRASH_END_US).contains(&us) {
        // About 25% over the window: ~500 steps per pair, each taking 1/2000 of the
        // starting price on average, with noise so it is not a straight line.
        sim.fair -= sim.start_fair / 2_000 + rng.range(0, vol);
    }
    let mut trades = Vec::new();
    // The fair price crossed resting levels: they trade away.
    while let Some((&p, &q)) = sim.bids.iter().next_back() {
        if p < sim.fair - sim.half_spread / 2 {
            break;
        }
        sim.bids.remove(&p);
        // In a fast move most swept quotes are cancelled; the first few trade.
        if trades.len() < 3 {
            trades.push(("sell", p, q));
        }
    }
    while let Some((&p, &q)) = sim.asks.iter().next() {
        if p > sim.fair + sim.half_spread / 2 {
            break;
        }
        sim.asks.remove(&p);
        if trades.len() < 3 {
            trades.push(("buy", p, q));
        }
    }
    // Market makers re-quote near the fair price.
    let best_bid = sim.bids.keys().next_back().copied();
    if best_bid.is_none_or(|b| b < sim.fair - sim.spacing * 3) {
        let q = sim.random_size(rng);
        sim.bids.insert(
            sim.fair - sim.half_spread - rng.range(0, sim.spacing / 2),
            q,
        );
    }
    let best_ask = sim.asks.keys().next().copied();
    if best_ask.is_none_or(|a| a > sim.fair + sim.spacing * 3) {
        let q = sim.random_size(rng);
        sim.asks.insert(
            sim.fair + sim.half_spread + rng.range(0, sim.spacing / 2),
            q,
        );
    }
    // Churn: a taker trade, a size change, a new level or a cancellation near the top.
    let bid_side = rng.chance(50);
    let roll = rng.range(0, 99);
    let side = if bid_side {
        &mut sim.bids
    } else {
        &mut sim.asks
    };
    let top: Vec<i64> = if bid_side {
        side.keys().rev().take(DEPTH).copied().collect()
    } else {
        side.keys().take(DEPTH).copied().collect()
    };
    if top.is_empty() {
        sim.refill(rng);
        return trades;
    }
    let pick =
        top[usize::try_from(rng.range(0, i64::try_from(top.len()).unwrap_or(1) - 1)).unwrap_or(0)];
    if roll < 12 {
        // A taker hits the best level of this side.
        let (p, q) = (top[0], side[&top[0]]);
        let take = if rng.chance(30) {
            q
        } else {
            (q * rng.range(5, 60) / 100).max(1)
        };
        if take >= q {
            side.remove(&p);
        } else {
            side.insert(p, q - take);
        }
        trades.push((if bid_side { "sell" } else { "buy" }, p, take));
    } else if roll < 60 {
        let q = side[&pick];
        let delta = q * rng.range(-40, 60) / 100;
        side.insert(pick, (q + delta).max(1_000_000));
    } else if roll < 82 {
        let q = {
            let base = rng.range(sim.lot / 20, sim.lot * 3);
            if rng.chance(40) {
                base - base % 100_000_000 + 100_000_000
            } else {
                base
            }
        };
        let side = if bid_side {
            &mut sim.bids
        } else {
            &mut sim.asks
        };
        let offset = rng.range(1, sim.spacing);
        let p = if bid_side {
            pick + offset
        } else {
            pick - offset
        };
        let limit_ok = if bid_side { p < sim.fair } else { p > sim.fair };
        if limit_ok {
            side.insert(p, q);
        }
    } else {
        side.remove(&pick);
    }
    for (_, p, q) in &trades {
        sim.last = *p;
        sim.volume += q;
        sim.low = sim.low.min(*p);
        sim.high = sim.high.max(*p);
    }
    sim.refill(rng);
    trades
}

fn book_snapshot(w: &mut Writer, sim: &mut PairSim, us: i64) {
    let view = sim.view();
    let ck = sim.checksum_of(&view);
    w.line(&format!(
        r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"{}","bids":{},"asks":{},"checksum":{ck},"timestamp":"{}"}}]}}"#,
        sim.symbol,
        levels_json(sim, &view.0),
        levels_json(sim, &view.1),
        w.ts(us),
    ));
    sim.sent = view;
}

fn book_update(w: &mut Writer, sim: &mut PairSim, us: i64) {
    let view = sim.view();
    let bids = side_diff(&sim.sent.0, &view.0, &sim.bids);
    let asks = side_diff(&sim.sent.1, &view.1, &sim.asks);
    if bids.is_empty() && asks.is_empty() {
        return;
    }
    let ck = sim.checksum_of(&view);
    w.line(&format!(
        r#"{{"channel":"book","type":"update","data":[{{"symbol":"{}","bids":{},"asks":{},"checksum":{ck},"timestamp":"{}"}}]}}"#,
        sim.symbol,
        levels_json(sim, &bids),
        levels_json(sim, &asks),
        w.ts(us),
    ));
    sim.sent = view;
}

/// Generates one scenario's recording (deterministic: same bytes on every call).
#[must_use]
pub fn generate(scenario: Scenario) -> Vec<u8> {
    let mut rng = Rng(SEED);
    let mut sims = vec![
        PairSim::new(
            "XRP/USD",
            "XRP",
            Precision { price: 5, qty: 8 },
            218_450,
            4,
            80_000_000_000,
        ),
        PairSim::new(
            "DOGE/USD",
            "DOGE",
            Precision { price: 7, qty: 8 },
            1_723_410,
            12,
            900_000_000_000,
        ),
    ];
    let mut w = Writer {
        out: String::with_capacity(2 << 20),
        start: Utc
            .with_ymd_and_hms(2026, 3, 2, 14, 0, 0)
            .single()
            .unwrap_or_default(),
    };
    header(&mut w, &sims);
    let mut us: i64 = 1_500;
    for sim in &mut sims {
        sim.refill(&mut rng);
        book_snapshot(&mut w, sim, us);
        us += rng.range(200, 900);
    }
    for sim in &sims {
        ticker(&mut w, sim, us, true);
    }
    let mut last_sent = us;
    while us < SESSION_US {
        us += rng.range(60_000, 200_000);
        let which = usize::from(rng.chance(45));
        let sim = &mut sims[which];
        let trades = step(sim, &mut rng, scenario, us);
        let silent = scenario == Scenario::Gap && (GAP_START_US..GAP_END_US).contains(&us);
        if silent {
            continue;
        }
        // Kraken sends a heartbeat after about a second without other traffic.
        while us - last_sent > 1_000_000 {
            last_sent += 1_000_000;
            if scenario != Scenario::Gap
                || !(GAP_START_US..GAP_END_US + 1_000_000).contains(&last_sent)
            {
                w.line(r#"{"channel":"heartbeat"}"#);
            }
        }
        if !trades.is_empty() {
            let mut data = String::new();
            for (i, (side, p, q)) in trades.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                sim.trade_id += 1;
                let _ = write!(
                    data,
                    r#"{{"symbol":"{}","side":"{side}","price":{},"qty":{},"ord_type":"{}","trade_id":{},"timestamp":"{}"}}"#,
                    sim.symbol,
                    num(sim.price(*p)),
                    num(sim.qty(*q)),
                    if trades.len() > 1 || rng.chance(70) {
                        "market"
                    } else {
                        "limit"
                    },
                    sim.trade_id,
                    w.ts(us),
                );
            }
            w.line(&format!(
                r#"{{"channel":"trade","type":"update","data":[{data}]}}"#
            ));
        }
        book_update(&mut w, sim, us + 37);
        if !trades.is_empty() {
            ticker(&mut w, sim, us + 52, false);
        }
        last_sent = us;
    }
    w.out.into_bytes()
}

/// A book-only stream of one pair at any depth Kraken offers, for benchmarks, the
/// allocation test and throughput measurements: the subscription ack, the `instrument`
/// message (XRP/USD, precisions 5 and 8), a snapshot at `depth`, then `updates` book
/// updates with correct checksums (computed with the plain [`checksum`] function from
/// the exchange side's own levels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookStream {
    /// The ack and the instrument message.
    pub header: Vec<String>,
    /// The snapshot.
    pub snapshot: String,
    /// The updates, in order, following the snapshot.
    pub updates: Vec<String>,
}

impl BookStream {
    /// A processor (learning the depth, fast path on or off) that has taken in the header
    /// and the snapshot: ready for the updates.
    ///
    /// # Panics
    /// Never for a stream [`book_stream`] built (its lines are valid).
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn processor(&self, fast: bool) -> crate::FeedProcessor {
        let mut feed = crate::FeedProcessor::with_auto_depth(None);
        feed.set_fast_path(fast);
        for line in self.header.iter().chain(std::iter::once(&self.snapshot)) {
            if let Err(e) = feed.process_without_events(line) {
                panic!("a generated stream's line does not parse: {e}");
            }
        }
        feed
    }

    /// Every line, newline-terminated, as a recording.
    #[must_use]
    pub fn recording(&self) -> String {
        let mut out = String::new();
        for line in self
            .header
            .iter()
            .chain(std::iter::once(&self.snapshot))
            .chain(&self.updates)
        {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Generates a [`BookStream`] (deterministic for a `seed`).
///
/// Updates look like Kraken's: most change a quantity near the top of the book; some
/// remove a level (and bring the next one into scope at the bottom), some insert a
/// level between two others (pushing the worst out of scope, which is not sent); one
/// to three levels per message.
#[must_use]
pub fn book_stream(depth: usize, updates: usize, seed: u64) -> BookStream {
    const PRECISION: Precision = Precision { price: 5, qty: 8 };
    let depth = depth.max(1);
    let mut rng = Rng(seed);
    let price = |t: i64| Decimal::new(t, PRECISION.price);
    let qty = |l: i64| Decimal::new(l, PRECISION.qty);
    let lvl_json = |t: i64, l: i64| {
        let q = if l == 0 { "0".to_owned() } else { num(qty(l)) };
        format!(r#"{{"price":{},"qty":{q}}}"#, num(price(t)))
    };
    let side_json = |levels: &[(i64, i64)]| {
        let parts: Vec<String> = levels.iter().map(|(t, l)| lvl_json(*t, *l)).collect();
        format!("[{}]", parts.join(","))
    };
    // Ticks -> lots; bids best = highest, asks best = lowest.
    let mut bids: BTreeMap<i64, i64> = BTreeMap::new();
    let mut asks: BTreeMap<i64, i64> = BTreeMap::new();
    let lots = |rng: &mut Rng| rng.range(1, 400_000) * 1_000_000 + rng.range(0, 999_999);
    let (bid0, ask0) = (218_400_i64, 218_410_i64);
    let mut t = bid0;
    for _ in 0..depth {
        bids.insert(t, lots(&mut rng));
        t -= rng.range(1, 4);
    }
    let mut t = ask0;
    for _ in 0..depth {
        asks.insert(t, lots(&mut rng));
        t += rng.range(1, 4);
    }
    let sum = |bids: &BTreeMap<i64, i64>, asks: &BTreeMap<i64, i64>| {
        let a: Vec<Level> = asks
            .iter()
            .take(CHECKSUM_TOP)
            .map(|(t, l)| Level {
                price: price(*t),
                qty: qty(*l),
            })
            .collect();
        let b: Vec<Level> = bids
            .iter()
            .rev()
            .take(CHECKSUM_TOP)
            .map(|(t, l)| Level {
                price: price(*t),
                qty: qty(*l),
            })
            .collect();
        checksum(&a, &b, Some(PRECISION))
    };
    let book_line = |kind: &str, b: &[(i64, i64)], a: &[(i64, i64)], ck: u32, us: i64| {
        let ts = Utc
            .with_ymd_and_hms(2026, 3, 2, 14, 0, 0)
            .single()
            .unwrap_or_default()
            + chrono::Duration::microseconds(us);
        format!(
            r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"XRP/USD","bids":{},"asks":{},"checksum":{ck},"timestamp":"{}"}}]}}"#,
            side_json(b),
            side_json(a),
            ts.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        )
    };
    let header = vec![
        format!(
            r#"{{"method":"subscribe","req_id":2,"result":{{"channel":"book","depth":{depth},"snapshot":true,"symbol":"XRP/USD"}},"success":true,"time_in":"2026-03-02T14:00:00.000000Z","time_out":"2026-03-02T14:00:00.000180Z"}}"#
        ),
        r#"{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"XRP/USD","base":"XRP","quote":"USD","status":"online","qty_precision":8,"qty_increment":0.00000001,"price_precision":5,"cost_precision":5,"marginable":false,"has_index":true,"cost_min":0.5,"tick_size":0.00001,"price_increment":0.00001,"qty_min":2.0}]}}"#
            .to_owned(),
    ];
    let snap_b: Vec<(i64, i64)> = bids.iter().rev().map(|(t, l)| (*t, *l)).collect();
    let snap_a: Vec<(i64, i64)> = asks.iter().map(|(t, l)| (*t, *l)).collect();
    let snapshot = book_line("snapshot", &snap_b, &snap_a, sum(&bids, &asks), 1_000);
    let mut out = Vec::with_capacity(updates);
    let mut us = 1_000_i64;
    for _ in 0..updates {
        us += rng.range(50, 5_000);
        let mut sent: View = (Vec::new(), Vec::new());
        for _ in 0..rng.range(1, 3) {
            let is_bid = rng.chance(50);
            let (book, msg) = if is_bid {
                (&mut bids, &mut sent.0)
            } else {
                (&mut asks, &mut sent.1)
            };
            let n = book.len();
            // Best first, as ticks.
            let at = |book: &BTreeMap<i64, i64>, i: usize| -> i64 {
                let k = if is_bid {
                    book.keys().rev().nth(i)
                } else {
                    book.keys().nth(i)
                };
                k.copied().unwrap_or(0)
            };
            let near = if rng.chance(80) { n.min(10) } else { n };
            let i =
                usize::try_from(rng.range(0, i64::try_from(near).unwrap_or(1) - 1)).unwrap_or(0);
            let roll = rng.range(0, 99);
            if roll < 70 || n < 3 {
                let t = at(book, i);
                let l = lots(&mut rng);
                book.insert(t, l);
                msg.push((t, l));
            } else if roll < 85 {
                // Remove level i; the exchange then shows the next level at the bottom.
                let t = at(book, i);
                book.remove(&t);
                msg.push((t, 0));
                let worst = at(book, book.len().saturating_sub(1));
                let next = if is_bid {
                    worst - rng.range(1, 4)
                } else {
                    worst + rng.range(1, 4)
                };
                if next > 0 {
                    let l = lots(&mut rng);
                    book.insert(next, l);
                    msg.push((next, l));
                }
            } else {
                // Insert between levels i and i+1 when there is room; the worst level
                // leaves the client's scope after the message (not sent).
                let (a, b) = (at(book, i), at(book, i + 1));
                if i + 1 < n && (a - b).abs() > 1 {
                    let t = (a + b) / 2;
                    let l = lots(&mut rng);
                    book.insert(t, l);
                    msg.push((t, l));
                }
            }
        }
        // As the client does: truncate after the whole message.
        while bids.len() > depth {
            bids.pop_first();
        }
        while asks.len() > depth {
            asks.pop_last();
        }
        out.push(book_line("update", &sent.0, &sent.1, sum(&bids, &asks), us));
    }
    BookStream {
        header,
        snapshot,
        updates: out,
    }
}

/// Levels per side in the checksum.
const CHECKSUM_TOP: usize = crate::checksum::CHECKSUM_LEVELS;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verify_reader;

    #[test]
    fn every_scenario_verifies_with_zero_mismatches() {
        for s in Scenario::ALL {
            let bytes = generate(s);
            let report = verify_reader(bytes.as_slice()).unwrap();
            assert!(report.passed(), "{s:?}\n{report}");
            assert!(report.updates_verified() > 1_500, "{s:?}: {report}");
            assert_eq!(report.pairs.len(), 2);
            assert_eq!(report.depth, DEPTH);
            assert!(bytes.len() < 3 << 20, "{s:?}: {} bytes", bytes.len());
        }
    }

    #[test]
    fn scenarios_are_deterministic_and_share_the_start() {
        let paper = generate(Scenario::Paper);
        assert_eq!(paper, generate(Scenario::Paper));
        let crash = generate(Scenario::Crash);
        let gap = generate(Scenario::Gap);
        let common = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        // The first two minutes are identical (well over half of the paper bytes before
        // the crash starts at 40% of the session).
        assert!(common(&paper, &crash) > paper.len() / 3);
        assert!(common(&paper, &gap) > paper.len() / 3);
    }

    #[test]
    fn book_streams_verify_at_every_depth() {
        for depth in crate::book::VALID_DEPTHS {
            let stream = book_stream(depth as usize, 300, 7);
            let report = verify_reader(stream.recording().as_bytes()).unwrap();
            assert!(report.passed(), "{depth}: {report}");
            assert_eq!(report.depth, depth as usize);
            assert_eq!(report.updates_verified(), 300, "{depth}: {report}");
        }
    }

    #[test]
    fn kraken_looking_numbers() {
        assert_eq!(num(Decimal::new(218_450, 5)), "2.1845");
        assert_eq!(num(Decimal::new(200_000, 5)), "2.0");
        assert_eq!(num(Decimal::new(74_000_000_000, 8)), "740.0");
    }
}
