//! Kraken WebSocket v2 messages: parsing what the server sends, rendering what we send.
//!
//! Shapes follow docs.kraken.com ("Spot WebSocket v2": `book`, `trade`, `ticker`,
//! `instrument`, `heartbeat`, `status`, `ping`, `subscribe`). Every message is an object
//! with either a `channel` (data) or a `method` (a response to a request). Numbers are
//! kept as raw text and parsed exactly (see [`crate::num`]).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use gf_core::event::ExchangeSystem;
use gf_core::{Level, Pair, Price, Qty, Side};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::Precision;
use crate::error::Error;
use crate::num::{parse_decimal, word_at};

/// Whether a data message is a full snapshot or an incremental update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// `"type":"snapshot"`.
    Snapshot,
    /// `"type":"update"`.
    Update,
}

/// One pair's part of a `book` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookData {
    /// The pair.
    pub pair: Pair,
    /// Bid levels as sent.
    pub bids: Vec<Level>,
    /// Ask levels as sent.
    pub asks: Vec<Level>,
    /// Kraken's CRC32 of the resulting top of book.
    pub checksum: u32,
    /// Exchange timestamp, when present.
    pub timestamp: Option<DateTime<Utc>>,
}

/// One public trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeData {
    /// The pair.
    pub pair: Pair,
    /// Taker side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Kraken's sequential trade id.
    pub trade_id: u64,
    /// Exchange timestamp.
    pub timestamp: Option<DateTime<Utc>>,
}

/// One ticker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickerData {
    /// The pair.
    pub pair: Pair,
    /// Best bid.
    pub bid: Price,
    /// Best ask.
    pub ask: Price,
    /// Last trade price.
    pub last: Price,
    /// 24h volume, base currency.
    pub volume: Qty,
    /// Exchange timestamp, when present.
    pub timestamp: Option<DateTime<Utc>>,
}

/// A pair's reference data from the `instrument` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentData {
    /// The pair.
    pub pair: Pair,
    /// Price and quantity precisions.
    pub precision: Precision,
}

/// A message from Kraken's v2 public feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `book` snapshot or update.
    Book(DataKind, Vec<BookData>),
    /// `trade` snapshot or update.
    Trade(DataKind, Vec<TradeData>),
    /// `ticker` snapshot or update.
    Ticker(Vec<TickerData>),
    /// `instrument` snapshot or update (pairs only).
    Instrument(Vec<InstrumentData>),
    /// `heartbeat`.
    Heartbeat,
    /// `status`: the trading engine's mode, sent on connect and on every change, with the
    /// text Kraken sent for it (an undocumented or unreadable value is
    /// [`ExchangeSystem::Unknown`], which the daemon treats like `maintenance`).
    Status(ExchangeSystem, String),
    /// `pong`, the answer to our `ping`.
    Pong,
    /// The answer to a `subscribe` / `unsubscribe`.
    Ack {
        /// `subscribe` or `unsubscribe`.
        method: String,
        /// Whether it worked.
        success: bool,
        /// The channel in the result, if any.
        channel: Option<String>,
        /// The symbol in the result, if any.
        symbol: Option<String>,
        /// The book depth in the result, if any.
        depth: Option<u32>,
        /// The error text when it failed.
        error: Option<String>,
    },
    /// A channel or method we do not handle (logged and counted by the caller).
    Unknown(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    result: Option<AckResult>,
}

#[derive(Deserialize)]
struct AckResult {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    depth: Option<u32>,
}

#[derive(Deserialize)]
struct RawLevel<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

#[derive(Deserialize)]
struct RawBook<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow, default)]
    bids: Vec<RawLevel<'a>>,
    #[serde(borrow, default)]
    asks: Vec<RawLevel<'a>>,
    checksum: u32,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow)]
    side: Cow<'a, str>,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
    trade_id: u64,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawTicker<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow)]
    bid: &'a RawValue,
    #[serde(borrow)]
    ask: &'a RawValue,
    #[serde(borrow)]
    last: &'a RawValue,
    #[serde(borrow)]
    volume: &'a RawValue,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawInstrumentData<'a> {
    #[serde(borrow, default)]
    pairs: Vec<RawInstrumentPair<'a>>,
}

#[derive(Deserialize)]
struct RawInstrumentPair<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    price_precision: u32,
    qty_precision: u32,
}

fn pair(symbol: &str, text: &str) -> Result<Pair, Error> {
    Pair::new(symbol).map_err(|e| Error::malformed(e.to_string(), text))
}

/// Kraken's usual form, `2023-10-06T17:35:55.440295Z`, parsed without the general
/// RFC 3339 machinery; `None` for any other form.
pub(crate) fn fast_timestamp(t: &str) -> Option<DateTime<Utc>> {
    fast_timestamp_bytes(t.as_bytes())
}

/// [`fast_timestamp`] of raw bytes (every byte is checked to be a digit or the
/// punctuation of the form, so they are ASCII).
pub(crate) fn fast_timestamp_bytes(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || *b.last()? != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if !frac.is_empty() && frac.len() <= 9 => {
            let v = num(20..20 + frac.len())?;
            v * 10u32.pow(9 - u32::try_from(frac.len()).ok()?)
        }
        _ => return None,
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?;
    Some(time.and_utc())
}

/// Whether [`fast_timestamp_bytes`] accepts `b`, without building the time: the same
/// form, a real calendar date, hours below 24, minutes and seconds below 60.
pub(crate) fn fast_timestamp_valid(b: &[u8]) -> bool {
    const FORMS: [(u64, u64); 2] = [form(*b"0000-00-"), form(*b"00T00:00")];
    // The rest first: it also checks the length the words below need.
    if !fast_timestamp_rest_valid(b)
        || !form_word(word_at(b, 0), FORMS[0])
        || !form_word(word_at(b, 8), FORMS[1])
    {
        return false;
    }
    let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day) && two(11) < 24
}

/// Whether the part of a timestamp after `dddd-dd-ddTdd:` (at least 20 bytes in all) is
/// what [`fast_timestamp_valid`] accepts there: `dd:dd`, minutes and seconds below 60,
/// an optional fraction of one to nine digits, and `Z`.
pub(crate) fn fast_timestamp_rest_valid(b: &[u8]) -> bool {
    const FORM: (u64, u64) = form(*b"00:00:00");
    if b.len() < 20 || b[b.len() - 1] != b'Z' || !form_word(word_at(b, 11), FORM) {
        return false;
    }
    let rest_ok = if b.len() == 27 {
        // The usual form, microseconds: one more word is the whole rest.
        const MICROS: (u64, u64) = form(*b".000000Z");
        form_word(word_at(b, 19), MICROS)
    } else {
        match &b[19..b.len() - 1] {
            [] => true,
            [b'.', frac @ ..] => {
                !frac.is_empty() && frac.len() <= 9 && frac.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        }
    };
    rest_ok && b[14] < b'6' && b[17] < b'6'
}

/// A form of eight bytes, `'0'` standing for any ASCII digit: the bytes as a word (first
/// byte lowest) and a mask with 0xFF in each digit byte.
const fn form(f: [u8; 8]) -> (u64, u64) {
    let mut digit = 0u64;
    let mut i = 0;
    while i < 8 {
        if f[i] == b'0' {
            digit |= 0xFF << (8 * i);
        }
        i += 1;
    }
    (u64::from_le_bytes(f), digit)
}

/// Whether the eight bytes of `word` match the [`form`].
#[inline(always)]
fn form_word(word: u64, (form, digit): (u64, u64)) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // A digit byte XOR '0' is 0..=9 exactly when it is a digit; a punctuation byte XOR
    // itself is 0 exactly when it is that byte.
    let x = word ^ form;
    // Below 0x80 in every byte, so adding 0x76 per byte carries into no neighbour; then
    // bit 7 is set exactly where a byte exceeded 9.
    x & HIGH == 0 && x.wrapping_add(ONES * 0x76) & HIGH == 0 && x & !digit == 0
}

fn timestamp(ts: Option<&str>, text: &str) -> Result<Option<DateTime<Utc>>, Error> {
    ts.map(|t| {
        if let Some(fast) = fast_timestamp(t) {
            return Ok(fast);
        }
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| Error::malformed(format!("invalid timestamp {t:?}: {e}"), text))
    })
    .transpose()
}

fn validate_level(l: &Level, pair: &Pair) -> Result<(), Error> {
    if l.qty.is_sign_negative() && !l.qty.is_zero() {
        return Err(Error::InvalidLevel {
            pair: pair.to_string(),
            reason: format!("negative quantity {} at price {}", l.qty, l.price),
        });
    }
    if l.price <= rust_decimal::Decimal::ZERO {
        return Err(Error::InvalidLevel {
            pair: pair.to_string(),
            reason: format!("non-positive price {}", l.price),
        });
    }
    Ok(())
}

fn levels(raw: &[RawLevel<'_>], pair: &Pair) -> Result<Vec<Level>, Error> {
    raw.iter()
        .map(|l| {
            let level = Level {
                price: parse_decimal(l.price.get(), "price")?,
                qty: parse_decimal(l.qty.get(), "qty")?,
            };
            validate_level(&level, pair)?;
            Ok(level)
        })
        .collect()
}

#[derive(Deserialize)]
struct BookEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    data: Vec<FastBook<'a>>,
}

/// A level decoded in place (the fast path): exact decimals straight from the raw text.
struct DecLevel(Level);

impl<'de> Deserialize<'de> for DecLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawLevel::deserialize(d)?;
        let price = parse_decimal(raw.price.get(), "price").map_err(serde::de::Error::custom)?;
        let qty = parse_decimal(raw.qty.get(), "qty").map_err(serde::de::Error::custom)?;
        Ok(DecLevel(Level { price, qty }))
    }
}

#[derive(Deserialize)]
struct FastBook<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(default)]
    bids: Vec<DecLevel>,
    #[serde(default)]
    asks: Vec<DecLevel>,
    checksum: u32,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

fn checked(levels: Vec<DecLevel>, pair: &Pair) -> Result<Vec<Level>, Error> {
    // Same size and alignment: this collect reuses the allocation.
    let levels: Vec<Level> = levels.into_iter().map(|l| l.0).collect();
    for l in &levels {
        validate_level(l, pair)?;
    }
    Ok(levels)
}

fn fast_book_message(kind: DataKind, raw: Vec<FastBook<'_>>, text: &str) -> Result<Message, Error> {
    let books = raw
        .into_iter()
        .map(|b| {
            let pair = pair(&b.symbol, text)?;
            Ok(BookData {
                bids: checked(b.bids, &pair)?,
                asks: checked(b.asks, &pair)?,
                checksum: b.checksum,
                timestamp: timestamp(b.timestamp.as_deref(), text)?,
                pair,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Message::Book(kind, books))
}

fn book_message(kind: DataKind, raw: &[RawBook<'_>], text: &str) -> Result<Message, Error> {
    let books = raw
        .iter()
        .map(|b| {
            let pair = pair(&b.symbol, text)?;
            Ok(BookData {
                bids: levels(&b.bids, &pair)?,
                asks: levels(&b.asks, &pair)?,
                checksum: b.checksum,
                timestamp: timestamp(b.timestamp.as_deref(), text)?,
                pair,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Message::Book(kind, books))
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    system: Option<String>,
}

/// `{"channel":"status","type":"update","data":[{"system":"online",…}]}` (docs.kraken.com
/// spot-websocket-v2/status). Never an error: a status we cannot read is
/// [`ExchangeSystem::Unknown`], so the caller fails closed instead of trading on.
fn status_message(env: &Envelope<'_>) -> Message {
    let system = env
        .data
        .and_then(|raw| serde_json::from_str::<Vec<RawStatus>>(raw.get()).ok())
        .and_then(|items| items.into_iter().find_map(|s| s.system));
    match system {
        Some(text) => {
            let shown: String = text.chars().take(32).filter(|c| !c.is_control()).collect();
            Message::Status(ExchangeSystem::from_kraken(&text), shown)
        }
        None => Message::Status(ExchangeSystem::Unknown, "unreadable".to_owned()),
    }
}

fn data<'a, T: Deserialize<'a>>(env: &Envelope<'a>, text: &str) -> Result<T, Error> {
    let raw = env
        .data
        .ok_or_else(|| Error::malformed("data message without `data`", text))?;
    serde_json::from_str(raw.get()).map_err(|e| Error::malformed(e.to_string(), text))
}

fn data_kind(env: &Envelope<'_>, text: &str) -> Result<DataKind, Error> {
    match env.kind.as_deref() {
        Some("snapshot") => Ok(DataKind::Snapshot),
        Some("update") => Ok(DataKind::Update),
        other => Err(Error::malformed(
            format!("unknown message type {other:?}"),
            text,
        )),
    }
}

/// Parses one text message from the feed.
///
/// # Errors
/// [`Error::Malformed`] for text that is not a v2 message, [`Error::InvalidNumber`] for a
/// number that is not exact, [`Error::InvalidLevel`] for a negative quantity or a
/// non-positive price. Never panics.
pub fn parse(text: &str) -> Result<Message, Error> {
    // Fast path for the bulk of the feed: a book message in Kraken's field order is
    // parsed in one pass; anything else (or any error) takes the general path below.
    if text.starts_with(r#"{"channel":"book","type":""#)
        && let Ok(msg) = serde_json::from_str::<BookEnvelope<'_>>(text)
        && let Ok(kind) = match msg.kind.as_ref() {
            "snapshot" => Ok(DataKind::Snapshot),
            "update" => Ok(DataKind::Update),
            _ => Err(()),
        }
    {
        return fast_book_message(kind, msg.data, text);
    }
    let env: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| Error::malformed(e.to_string(), text))?;
    if let Some(channel) = env.channel.as_deref() {
        return match channel {
            "book" => {
                let kind = data_kind(&env, text)?;
                let raw: Vec<RawBook<'_>> = data(&env, text)?;
                book_message(kind, &raw, text)
            }
            "trade" => {
                let kind = data_kind(&env, text)?;
                let raw: Vec<RawTrade<'_>> = data(&env, text)?;
                let trades = raw
                    .iter()
                    .map(|t| {
                        let side = match t.side.as_ref() {
                            "buy" => Side::Buy,
                            "sell" => Side::Sell,
                            other => {
                                return Err(Error::malformed(
                                    format!("unknown trade side {other:?}"),
                                    text,
                                ));
                            }
                        };
                        let pair = pair(&t.symbol, text)?;
                        let price = parse_decimal(t.price.get(), "price")?;
                        let qty = parse_decimal(t.qty.get(), "qty")?;
                        if price.is_sign_negative() || qty.is_sign_negative() {
                            return Err(Error::InvalidLevel {
                                pair: pair.to_string(),
                                reason: format!("negative trade price {price} or qty {qty}"),
                            });
                        }
                        Ok(TradeData {
                            pair,
                            side,
                            price,
                            qty,
                            trade_id: t.trade_id,
                            timestamp: timestamp(t.timestamp.as_deref(), text)?,
                        })
                    })
                    .collect::<Result<_, Error>>()?;
                Ok(Message::Trade(kind, trades))
            }
            "ticker" => {
                data_kind(&env, text)?;
                let raw: Vec<RawTicker<'_>> = data(&env, text)?;
                let tickers = raw
                    .iter()
                    .map(|t| {
                        Ok(TickerData {
                            pair: pair(&t.symbol, text)?,
                            bid: parse_decimal(t.bid.get(), "bid")?,
                            ask: parse_decimal(t.ask.get(), "ask")?,
                            last: parse_decimal(t.last.get(), "last")?,
                            volume: parse_decimal(t.volume.get(), "volume")?,
                            timestamp: timestamp(t.timestamp.as_deref(), text)?,
                        })
                    })
                    .collect::<Result<_, Error>>()?;
                Ok(Message::Ticker(tickers))
            }
            "instrument" => {
                data_kind(&env, text)?;
                let raw: RawInstrumentData<'_> = data(&env, text)?;
                let pairs = raw
                    .pairs
                    .iter()
                    .filter_map(|p| {
                        // The instrument channel lists every pair on the exchange; a
                        // symbol we cannot represent is not ours, so skip it.
                        Pair::new(&p.symbol).ok().map(|pair| InstrumentData {
                            pair,
                            precision: Precision {
                                price: p.price_precision,
                                qty: p.qty_precision,
                            },
                        })
                    })
                    .collect();
                Ok(Message::Instrument(pairs))
            }
            "heartbeat" => Ok(Message::Heartbeat),
            "status" => Ok(status_message(&env)),
            other => Ok(Message::Unknown(format!("channel {other}"))),
        };
    }
    match env.method.as_deref() {
        Some("pong") => Ok(Message::Pong),
        Some(method @ ("subscribe" | "unsubscribe")) => Ok(Message::Ack {
            method: method.to_owned(),
            success: env.success.unwrap_or(false),
            channel: env.result.as_ref().and_then(|r| r.channel.clone()),
            symbol: env.result.as_ref().and_then(|r| r.symbol.clone()),
            depth: env.result.as_ref().and_then(|r| r.depth),
            error: env.error,
        }),
        Some(other) => Ok(Message::Unknown(format!("method {other}"))),
        None => Err(Error::malformed("neither `channel` nor `method`", text)),
    }
}

/// A request we send: `subscribe` / `unsubscribe` to one channel for some pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `subscribe` or `unsubscribe`.
    pub method: &'static str,
    /// Channel name.
    pub channel: &'static str,
    /// Pairs (empty for `instrument`).
    pub pairs: Vec<Pair>,
    /// Book depth, for `book`.
    pub depth: Option<u32>,
    /// Whether to ask for a snapshot (`book`, `trade`, `ticker`, `instrument`).
    pub snapshot: Option<bool>,
    /// Our request id.
    pub req_id: u64,
}

impl Request {
    /// The JSON text of the request.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut params = serde_json::Map::new();
        params.insert("channel".into(), self.channel.into());
        if !self.pairs.is_empty() {
            params.insert(
                "symbol".into(),
                self.pairs
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        if let Some(depth) = self.depth {
            params.insert("depth".into(), depth.into());
        }
        if let Some(snapshot) = self.snapshot {
            params.insert("snapshot".into(), snapshot.into());
        }
        serde_json::json!({"method": self.method, "params": params, "req_id": self.req_id})
            .to_string()
    }
}

/// The application-level ping (`{"method":"ping","req_id":N}`).
#[must_use]
pub fn ping(req_id: u64) -> String {
    format!(r#"{{"method":"ping","req_id":{req_id}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_book_snapshot_and_update_exactly() {
        let snap = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5666,"qty":4831.75496356}],"asks":[{"price":0.5668,"qty":4410.79769741}],"checksum":2439117997}]}"#;
        let Message::Book(DataKind::Snapshot, books) = parse(snap).unwrap() else {
            panic!("not a snapshot");
        };
        assert_eq!(books[0].pair.as_str(), "MATIC/USD");
        assert_eq!(books[0].bids[0].qty.to_string(), "4831.75496356");
        assert_eq!(books[0].checksum, 2_439_117_997);
        assert_eq!(books[0].timestamp, None);
        let upd = r#"{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
        let Message::Book(DataKind::Update, books) = parse(upd).unwrap() else {
            panic!("not an update");
        };
        assert_eq!(books[0].bids[0].price, d("0.5657"));
        assert_eq!(
            books[0].timestamp.unwrap().to_rfc3339(),
            "2023-10-06T17:35:55.440295+00:00"
        );
    }

    #[test]
    fn parses_trade_ticker_instrument_and_control_messages() {
        let trade = r#"{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell","price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}"#;
        let Message::Trade(DataKind::Update, trades) = parse(trade).unwrap() else {
            panic!("not a trade");
        };
        assert_eq!(trades[0].side, Side::Sell);
        assert_eq!(trades[0].qty.to_string(), "40.0");
        assert_eq!(trades[0].trade_id, 4_665_906);

        let ticker = r#"{"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,"bid_qty":740.0,"ask":0.10036,"ask_qty":1361.44813783,"last":0.10035,"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,"change_pct":-0.17,"timestamp":"2023-09-25T09:04:31.742648Z"}]}"#;
        let Message::Ticker(t) = parse(ticker).unwrap() else {
            panic!("not a ticker");
        };
        assert_eq!(t[0].volume, d("997038.98383185"));

        let instrument = r#"{"channel":"instrument","type":"snapshot","data":{"assets":[{"id":"USD","status":"enabled","precision":4}],"pairs":[{"symbol":"BTC/USD","base":"BTC","quote":"USD","status":"online","qty_precision":8,"qty_increment":1e-08,"price_precision":1,"cost_precision":5,"price_increment":0.1,"qty_min":0.0001},{"symbol":"weird pair","price_precision":1,"qty_precision":1}]}}"#;
        let Message::Instrument(pairs) = parse(instrument).unwrap() else {
            panic!("not an instrument");
        };
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].precision, Precision { price: 1, qty: 8 });

        assert_eq!(
            parse(r#"{"channel":"heartbeat"}"#).unwrap(),
            Message::Heartbeat
        );
        assert_eq!(
            parse(r#"{"channel":"status","type":"update","data":[{"system":"online"}]}"#).unwrap(),
            Message::Status(ExchangeSystem::Online, "online".into())
        );
        for (system, expected) in [
            ("maintenance", ExchangeSystem::Maintenance),
            ("cancel_only", ExchangeSystem::CancelOnly),
            ("post_only", ExchangeSystem::PostOnly),
            ("limit_only", ExchangeSystem::Unknown),
        ] {
            let text = format!(
                r#"{{"channel":"status","type":"update","data":[{{"api_version":"v2","connection_id":1,"system":"{system}","version":"2.0.10"}}]}}"#
            );
            assert_eq!(
                parse(&text).unwrap(),
                Message::Status(expected, system.into())
            );
        }
        assert_eq!(
            parse(r#"{"channel":"status","type":"update","data":{"system":1}}"#).unwrap(),
            Message::Status(ExchangeSystem::Unknown, "unreadable".into())
        );
        assert_eq!(
            parse(r#"{"method":"pong","req_id":1,"time_in":"x","time_out":"y"}"#).unwrap(),
            Message::Pong
        );
        let ack = r#"{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"ALGO/USD"},"success":true,"time_in":"2023-10-06T17:35:55.219022Z","time_out":"2023-10-06T17:35:55.219067Z"}"#;
        assert_eq!(
            parse(ack).unwrap(),
            Message::Ack {
                method: "subscribe".into(),
                success: true,
                channel: Some("book".into()),
                symbol: Some("ALGO/USD".into()),
                depth: Some(10),
                error: None
            }
        );
        let nack = r#"{"error":"Already subscribed","method":"subscribe","success":false}"#;
        assert!(matches!(
            parse(nack).unwrap(),
            Message::Ack {
                success: false,
                error: Some(_),
                ..
            }
        ));
        assert_eq!(
            parse(r#"{"channel":"ohlc","type":"update","data":[]}"#).unwrap(),
            Message::Unknown("channel ohlc".into())
        );
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        struct Case {
            input: &'static str,
            expected: &'static str,
        }
        let cases = [
            Case {
                input: "",
                expected: "malformed",
            },
            Case {
                input: "not json",
                expected: "malformed",
            },
            Case {
                input: "[1,2,3]",
                expected: "malformed",
            },
            Case {
                input: "{}",
                expected: "neither",
            },
            Case {
                input: r#"{"channel":"book","type":"update"}"#,
                expected: "without `data`",
            },
            Case {
                input: r#"{"channel":"book","type":"delta","data":[]}"#,
                expected: "unknown message type",
            },
            Case {
                input: r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[{"price":0.5,"qty":-1}],"asks":[],"checksum":1}]}"#,
                expected: "negative quantity",
            },
            Case {
                input: r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[{"price":0,"qty":1}],"asks":[],"checksum":1}]}"#,
                expected: "non-positive price",
            },
            Case {
                input: r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[{"price":"abc","qty":1}],"asks":[],"checksum":1}]}"#,
                expected: "invalid number",
            },
            Case {
                input: r#"{"channel":"book","type":"update","data":[{"symbol":"xrp-usd","bids":[],"asks":[],"checksum":1}]}"#,
                expected: "invalid pair",
            },
            Case {
                input: r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[],"asks":[],"checksum":99999999999}]}"#,
                expected: "malformed",
            },
            Case {
                input: r#"{"channel":"trade","type":"update","data":[{"symbol":"XRP/USD","side":"up","price":1,"qty":1,"trade_id":1}]}"#,
                expected: "unknown trade side",
            },
            Case {
                input: r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[],"asks":[],"checksum":1,"timestamp":"yesterday"}]}"#,
                expected: "invalid timestamp",
            },
        ];
        for case in cases {
            let err = parse(case.input).unwrap_err().to_string();
            assert!(err.contains(case.expected), "{:?}: {err}", case.input);
        }
    }

    #[test]
    fn fast_and_general_book_paths_agree() {
        let fast = r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[{"price":2.18400,"qty":1500.00000000},{"price":"2.1839","qty":0}],"asks":[{"price":2.1841,"qty":1e-08}],"checksum":42,"timestamp":"2026-03-02T14:00:01.5Z"}]}"#;
        // Same message, other field order: it cannot take the fast path.
        let general = r#"{"type":"update","channel":"book","data":[{"checksum":42,"timestamp":"2026-03-02T14:00:01.5Z","asks":[{"qty":1e-08,"price":2.1841}],"bids":[{"price":2.18400,"qty":1500.00000000},{"price":"2.1839","qty":0}],"symbol":"XRP/USD"}]}"#;
        let (a, b) = (parse(fast).unwrap(), parse(general).unwrap());
        assert_eq!(a, b);
        let Message::Book(_, books) = a else {
            panic!("not a book")
        };
        assert_eq!(books[0].bids[0].qty.to_string(), "1500.00000000");
        // A bad number on the fast path still yields the typed error.
        let bad = fast.replace("2.18400", "\"2.x\"");
        assert!(matches!(
            parse(&bad),
            Err(Error::InvalidNumber { field: "price", .. })
        ));
    }

    #[test]
    fn renders_requests() {
        let req = Request {
            method: "subscribe",
            channel: "book",
            pairs: vec!["XRP/USD".parse().unwrap(), "DOGE/USD".parse().unwrap()],
            depth: Some(25),
            snapshot: Some(true),
            req_id: 7,
        };
        let v: serde_json::Value = serde_json::from_str(&req.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"method":"subscribe","params":{"channel":"book","symbol":["XRP/USD","DOGE/USD"],"depth":25,"snapshot":true},"req_id":7})
        );
        assert_eq!(ping(3), r#"{"method":"ping","req_id":3}"#);
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_timestamp_validity_equals_fast_parse(
            s in r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,10})?Z?",
            other in r"[0-9TZ:.-]{18,32}",
            at in 0usize..32,
            byte in any::<u8>(),
        ) {
            // The valid form with one byte replaced by any byte at all.
            let mut mutated = s.clone().into_bytes();
            if let Some(b) = mutated.get_mut(at) {
                *b = byte;
            }
            for t in [s.as_bytes(), other.as_bytes(), &mutated] {
                prop_assert_eq!(
                    fast_timestamp_valid(t),
                    fast_timestamp_bytes(t).is_some(),
                    "{:?}", String::from_utf8_lossy(t)
                );
            }
        }

        #[test]
        fn prop_fast_timestamp_equals_chrono(secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000, digits in 0usize..=9) {
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            let frac = format!("{:09}", nanos);
            let text = if digits == 0 {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                format!("{}.{}Z", t.format("%Y-%m-%dT%H:%M:%S"), &frac[..digits])
            };
            let general = DateTime::parse_from_rfc3339(&text).unwrap().with_timezone(&Utc);
            prop_assert_eq!(fast_timestamp(&text), Some(general));
        }

        #[test]
        fn prop_parse_never_panics_on_arbitrary_text(s in ".{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn prop_parse_never_panics_on_mutated_book_messages(
            cut in 0usize..200, byte in any::<u8>(), at in 0usize..200,
        ) {
            let base = r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[{"price":0.52,"qty":10.5}],"asks":[],"checksum":123,"timestamp":"2026-01-01T00:00:00Z"}]}"#;
            let mut bytes = base.as_bytes().to_vec();
            let at = at.min(bytes.len() - 1);
            bytes[at] = byte;
            bytes.truncate(cut.max(1).min(bytes.len()));
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text);
        }
    }
}
