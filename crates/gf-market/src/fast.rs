//! The fast path: a scanner for Kraken's fixed v2 `book` message layout that reads
//! prices and quantities straight into integers at the pair's scale, allocating nothing.
//!
//! It recognises exactly
//! `{"channel":"book","type":"update"|"snapshot","data":[{"symbol":"…","bids":[…],
//! "asks":[…],"checksum":N(,"timestamp":"…")?}]}` with levels `{"price":P,"qty":Q}`,
//! no whitespace, numbers `0|[1-9][0-9]*` with an optional `.digits` fraction of at most
//! the scale's digits, fitting a `u64` at that scale, a positive price, a `u32` checksum
//! and a timestamp in Kraken's usual form. Anything else (other channels, other key
//! orders, escapes, exponents, signs, more digits, several books in one message …)
//! returns `None`, and the caller takes the general serde path
//! ([`crate::message::parse`]), which stays the reference. On every message it accepts,
//! the scanner yields what the general path yields (see the agreement tests).

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};

use crate::book::{IntLevel, Scales};
use crate::message::{
    DataKind, fast_timestamp_bytes, fast_timestamp_rest_valid, fast_timestamp_valid,
};
use crate::num::{POW10, word_at};

/// The start of a book message up to the `type` value and the symbol: what a message
/// must look like for [`header`] to recognise it.
const CHANNEL: &[u8; 26] = br#"{"channel":"book","type":""#;

/// A recognised message start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// Snapshot or update.
    pub kind: DataKind,
    /// The symbol exactly as written (no escapes).
    pub symbol: &'a [u8],
    /// Where the symbol starts in the message.
    pub symbol_at: usize,
    /// Where the bids array's first byte after `[` is.
    pub body: usize,
    /// Whether the symbol is the hint given to [`header`].
    pub hinted: bool,
}

/// The rest of a recognised message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Body {
    /// The checksum Kraken sent.
    pub checksum: u32,
    /// The exchange timestamp, when present.
    pub timestamp: Option<DateTime<Utc>>,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// The literal `s` at the cursor, stepped over. An array, so the comparison is a
    /// few word compares of known width.
    #[inline(always)]
    fn lit<const N: usize>(&mut self, s: &[u8; N]) -> Option<()> {
        let end = self.i.checked_add(N)?;
        let here: &[u8; N] = self.b.get(self.i..end)?.try_into().ok()?;
        (here == s).then(|| self.i = end)
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A run of ASCII digits from the cursor: its value (wrapping past 19 digits, which
    /// the caller refuses) and its length. Eight bytes at a time where the text allows.
    #[inline(always)]
    fn digits(&mut self) -> (u64, usize) {
        let (mut v, mut n) = (0u64, 0usize);
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let word = word_at(chunk, 0);
            let run = digit_run(word);
            if run == 0 {
                return (v, n);
            }
            v = v
                .wrapping_mul(POW10[run])
                .wrapping_add(parse_digits(word, run));
            n += run;
            self.i += run;
            if run < 8 {
                return (v, n);
            }
        }
        while let Some(&c) = self.b.get(self.i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = v.wrapping_mul(10).wrapping_add(u64::from(d));
            n += 1;
            self.i += 1;
        }
        (v, n)
    }

    /// [`Self::digits`] for a run the caller allows at most eight of: one word, no loop.
    /// More than eight reports a length of nine (the value is then meaningless).
    #[inline(always)]
    fn short_digits(&mut self) -> (u64, usize) {
        let Some(chunk) = self.b.get(self.i..self.i + 8) else {
            return self.digits();
        };
        let word = word_at(chunk, 0);
        let run = digit_run(word);
        if run == 0 {
            return (0, 0);
        }
        self.i += run;
        let more = run == 8 && self.peek().is_some_and(|c| c.is_ascii_digit());
        (parse_digits(word, run), if more { 9 } else { run })
    }

    /// The usual number, `d{1,7}` or `d{1,7}.d{1,8}` followed by a non-digit, read
    /// without loops or overflow checks (it cannot overflow): one conversion when all its
    /// digits fit a word, else the two sides converted side by side. `None`: another
    /// form (or too near the end) for [`Self::raw_number`]'s general reading, the cursor
    /// unmoved; `Some(None)`: not a JSON number (a leading zero).
    #[inline(always)]
    fn plain_number(&mut self) -> Option<Option<RawNum>> {
        let start = self.i;
        let int = word_at(self.b.get(start..start + 8)?, 0);
        let int_len = digit_run(int);
        if int_len == 0 || int_len == 8 {
            return None;
        }
        if int_len > 1 && self.b[start] == b'0' {
            return Some(None);
        }
        let dot = start + int_len;
        if self.b[dot] != b'.' {
            self.i = dot;
            return Some(Some(RawNum {
                mantissa: parse_digits(int, int_len),
                frac: 0,
            }));
        }
        let frac = word_at(self.b.get(dot + 1..dot + 9)?, 0);
        let frac_len = digit_run(frac);
        if frac_len == 0 || (frac_len == 8 && self.b.get(dot + 9)?.is_ascii_digit()) {
            return None;
        }
        self.i = dot + 1 + frac_len;
        let all = int_len + frac_len;
        let mantissa = if all <= 8 {
            // The fraction's digits moved up against the integer's: one word.
            let int = int & (u64::MAX >> (8 * (8 - int_len)));
            parse_digits(int | (frac << (8 * int_len)), all)
        } else {
            // At most 7 + 8 digits: below 10^15, nothing overflows.
            parse_digits(int, int_len) * POW10[frac_len] + parse_digits(frac, frac_len)
        };
        Some(Some(RawNum {
            mantissa,
            frac: frac_len as u8,
        }))
    }

    /// A JSON number in the plain form, as written. `short`: the caller allows at most
    /// eight fractional digits (more come back as nine, which it refuses).
    #[inline(always)]
    fn raw_number(&mut self, short: bool) -> Option<RawNum> {
        if let Some(n) = self.plain_number() {
            return n;
        }
        let start = self.i;
        let (int, digits) = self.digits();
        // JSON: no leading zeros, at least one digit.
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        let (mut v, mut frac) = (int, 0usize);
        if self.peek() == Some(b'.') {
            self.i += 1;
            let (f, n) = if short {
                self.short_digits()
            } else {
                self.digits()
            };
            if n == 0 || n > 19 {
                return None;
            }
            v = int.checked_mul(POW10[n])?.checked_add(f)?;
            frac = n;
        }
        // At most 19 digits in all: below 10^19, so nothing above wrapped.
        if digits + frac > 19 {
            return None;
        }
        Some(RawNum {
            mantissa: v,
            frac: frac as u8,
        })
    }

    /// `[{"price":P,"qty":Q},…]` after the `[`, through the `]`, each level made into
    /// what `out` collects by `conv` (`None`: not for the fast path).
    #[inline(always)]
    fn levels<T>(
        &mut self,
        short: (bool, bool),
        out: &mut Vec<T>,
        conv: &impl Fn(RawLevel) -> Option<T>,
    ) -> Option<()> {
        out.clear();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.lit(br#"{"price":"#)?;
            let price = self.raw_number(short.0)?;
            if price.mantissa == 0 {
                return None; // the general path rejects a non-positive price
            }
            self.lit(br#","qty":"#)?;
            let qty = self.raw_number(short.1)?;
            self.lit(b"}")?;
            out.push(conv(RawLevel { price, qty })?);
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// A number as written: its digits as one integer (at most 19 of them) and how many of
/// them are fractional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawNum {
    mantissa: u64,
    frac: u8,
}

impl RawNum {
    /// The value at `scale`; `None` with more fractional digits or when it does not fit.
    #[inline(always)]
    fn at(self, scale: u32) -> Option<u64> {
        let frac = u32::from(self.frac);
        if frac > scale {
            return None;
        }
        self.mantissa.checked_mul(POW10[(scale - frac) as usize])
    }
}

/// A level as written, before the book's scales are known (see [`body_raw`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawLevel {
    price: RawNum,
    qty: RawNum,
}

impl RawLevel {
    /// The level at `scales`, as [`body`] would have read it; `None` where [`body`]
    /// would have declined the message.
    #[inline(always)]
    pub(crate) fn at(self, scales: Scales) -> Option<IntLevel> {
        Some(IntLevel {
            price: self.price.at(scales.price)?,
            qty: self.qty.at(scales.qty)?,
            price_scale: self.price.frac,
            qty_scale: self.qty.frac,
        })
    }
}

/// How many of the eight bytes of `word` (little-endian: the first byte lowest) are
/// ASCII digits before the first that is not.
#[inline(always)]
fn digit_run(word: u64) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // A byte is a digit when its high nibble is 3 and adding 6 keeps it so.
    let high = word & (ONES * 0xF0);
    let plus6 = word.wrapping_add(ONES * 0x06) & (ONES * 0xF0);
    let ok = !(high ^ (ONES * 0x30)) & !(plus6 ^ (ONES * 0x30)) & (ONES * 0xF0);
    // `ok` has 0xF0 in every digit byte; the run ends at the first byte without it.
    ((!ok & (ONES * 0xF0)).trailing_zeros() / 8) as usize
}

/// The value of the first `run` (1..=8) digit bytes of `word`.
#[inline(always)]
fn parse_digits(word: u64, run: usize) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Move the digits to the top bytes and fill the bytes below with '0': eight digits.
    let word = if run >= 8 {
        word
    } else {
        let shift = 8 * (8 - run as u32);
        (word << shift) | ((ONES * 0x30) >> (64 - shift))
    };
    // Eight ASCII digits, first byte most significant (Lemire's SWAR conversion).
    let v = ((word & (ONES * 0x0F)).wrapping_mul(2561)) >> 8;
    let v = ((v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601)) >> 16;
    ((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001)) >> 32
}

/// Recognises the start of a book message, through `"bids":[`. `hint` is the symbol
/// expected (the last one seen; it must be a valid pair symbol, so it holds no escapes),
/// checked first so the usual message is not scanned byte by byte.
pub(crate) fn header<'a>(text: &'a [u8], hint: &Hint) -> Option<Header<'a>> {
    let mut c = Cursor { b: text, i: 0 };
    c.lit(CHANNEL)?;
    let kind = if c.lit(br#"update""#).is_some() {
        DataKind::Update
    } else {
        c.lit(br#"snapshot""#)?;
        DataKind::Snapshot
    };
    c.lit(br#","data":[{"symbol":""#)?;
    let start = c.i;
    let hinted = hint.matches(&text[start..]);
    let len = if hinted {
        hint.len
    } else {
        let len = text[start..].iter().position(|&b| b == b'"')?;
        // Escapes and control characters mean the general path.
        if text[start..start + len]
            .iter()
            .any(|&b| b == b'\\' || b < 0x20)
        {
            return None;
        }
        len
    };
    let symbol = &text[start..start + len];
    c.i = start + len + 1;
    c.lit(br#","bids":["#)?;
    Some(Header {
        kind,
        symbol,
        symbol_at: start,
        body: c.i,
        hinted,
    })
}

/// A symbol expected at the start of a message, prepared for one masked compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hint {
    /// The symbol's bytes, zero-padded, as a word (first byte lowest).
    word: u128,
    /// Ones over the symbol's bytes.
    mask: u128,
    /// The symbol's length; 0: no hint.
    len: usize,
}

impl Hint {
    /// The hint for a valid pair symbol (one of at most 16 bytes; none for longer).
    pub(crate) fn of(symbol: &[u8]) -> Self {
        let len = symbol.len();
        if len == 0 || len > 16 {
            return Self::default();
        }
        let mut b = [0u8; 16];
        b[..len].copy_from_slice(symbol);
        Self {
            word: u128::from_le_bytes(b),
            mask: u128::MAX >> (8 * (16 - len)),
            len,
        }
    }

    /// Whether `text` starts with the symbol and a closing `"`.
    #[inline(always)]
    fn matches(&self, text: &[u8]) -> bool {
        let Some(head) = text.get(..16) else {
            return false;
        };
        let mut a = [0u8; 16];
        a.copy_from_slice(head);
        self.len != 0
            && (u128::from_le_bytes(a) ^ self.word) & self.mask == 0
            && text.get(self.len) == Some(&b'"')
    }
}

/// The length of a timestamp in Kraken's usual form, `2023-10-06T17:35:55.440295Z`.
const USUAL_TIMESTAMP: usize = 27;

/// What the last checked timestamp began with, up to its minutes (bytes 0..8 and 6..14
/// as words; zero before the first, which no timestamp begins with), and that hour as a
/// time once one was built: a timestamp with the same beginning needs only its minutes,
/// seconds and fraction checked (and added).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimestampCache(u64, u64, Option<(NaiveDate, u32)>);

impl TimestampCache {
    /// Bytes 0..8 and 6..14 of a timestamp long enough to be one.
    fn prefix(ts: &[u8]) -> Option<(u64, u64)> {
        (ts.len() >= 20).then(|| (word_at(ts, 0), word_at(ts, 6)))
    }

    /// [`fast_timestamp_bytes`] of `ts`.
    fn time(&mut self, ts: &[u8]) -> Option<DateTime<Utc>> {
        let (a, b) = Self::prefix(ts)?;
        if let Some((date, hour)) = self.2
            && (a, b) == (self.0, self.1)
            && fast_timestamp_rest_valid(ts)
        {
            // Checked: digits where digits belong, minutes and seconds below 60, one to
            // nine fractional digits if any.
            let two = |i: usize| u32::from(ts[i] - b'0') * 10 + u32::from(ts[i + 1] - b'0');
            let frac = ts.get(20..ts.len() - 1).unwrap_or_default();
            let mut nanos = 0u32;
            for d in frac {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            let nanos = nanos * 10u32.pow(9 - frac.len() as u32);
            let time = NaiveTime::from_hms_nano_opt(hour, two(14), two(17), nanos)?;
            return Some(date.and_time(time).and_utc());
        }
        let time = fast_timestamp_bytes(ts)?;
        *self = Self(a, b, Some((time.date_naive(), time.hour())));
        Some(time)
    }

    /// Whether `ts` is a timestamp [`fast_timestamp_bytes`] accepts.
    fn valid(&mut self, ts: &[u8]) -> bool {
        let Some((a, b)) = Self::prefix(ts) else {
            return false;
        };
        // `dddd-dd-ddTdd:` checked before: the rest is `dd:dd(.d{1,9})?Z` with minutes
        // and seconds below 60.
        if (a, b) == (self.0, self.1) && fast_timestamp_rest_valid(ts) {
            return true;
        }
        let ok = fast_timestamp_valid(ts);
        if ok && (a, b) != (self.0, self.1) {
            *self = Self(a, b, None);
        }
        ok
    }
}

/// Scans the rest of the message from [`Header::body`]: the levels into `bids` and
/// `asks` (cleared first) at `scales`, the checksum and the timestamp, through the
/// message's last byte. Without `want_time` the timestamp is only checked (as the
/// general path would parse it, `cache` remembering what was checked) and
/// [`Body::timestamp`] is `None`.
pub(crate) fn body(
    text: &[u8],
    head: &Header<'_>,
    scales: Scales,
    bids: &mut Vec<IntLevel>,
    asks: &mut Vec<IntLevel>,
    want_time: bool,
    cache: &mut TimestampCache,
) -> Option<Body> {
    let short = (scales.price <= 8, scales.qty <= 8);
    let conv = |l: RawLevel| l.at(scales);
    body_with(text, head, short, &conv, bids, asks, want_time, cache)
}

/// [`body`] without the book's scales: the levels as written (for scanning on another
/// thread than the books'); [`RawLevel::at`] then gives what [`body`] would have. The
/// timestamp is only checked.
pub(crate) fn body_raw(
    text: &[u8],
    head: &Header<'_>,
    bids: &mut Vec<RawLevel>,
    asks: &mut Vec<RawLevel>,
    cache: &mut TimestampCache,
) -> Option<Body> {
    body_with(text, head, (false, false), &Some, bids, asks, false, cache)
}

/// A line scanned ahead, on another thread than the books': a book message in the
/// layout the fast path takes, its levels as written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prescan<'a> {
    /// Snapshot or update.
    pub kind: DataKind,
    /// The symbol as written.
    pub symbol: &'a [u8],
    /// The checksum (the timestamp was checked).
    pub body: Body,
    /// The bids as written.
    pub bids: &'a [RawLevel],
    /// The asks as written.
    pub asks: &'a [RawLevel],
}

/// [`header`] and [`body_raw`] of `text`: its kind, where its symbol is, and its body,
/// the levels appended to `levels` (bids first; the count of bids returned too). `None`
/// where the fast path would decline the message whatever the book (and then `levels`
/// is as it was). `hint`: the symbol seen last, updated.
pub(crate) fn prescan(
    text: &[u8],
    levels: &mut Vec<RawLevel>,
    scratch: &mut (Vec<RawLevel>, Vec<RawLevel>),
    cache: &mut TimestampCache,
    hint: &mut Hint,
) -> Option<(DataKind, std::ops::Range<usize>, Body, usize)> {
    let head = header(text, hint)?;
    if !head.hinted {
        // Checked by `header`: no escapes, no control characters.
        *hint = Hint::of(head.symbol);
    }
    let body = body_raw(text, &head, &mut scratch.0, &mut scratch.1, cache)?;
    let start = head.symbol_at;
    levels.extend_from_slice(&scratch.0);
    levels.extend_from_slice(&scratch.1);
    Some((
        head.kind,
        start..start + head.symbol.len(),
        body,
        scratch.0.len(),
    ))
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn body_with<T>(
    text: &[u8],
    head: &Header<'_>,
    short: (bool, bool),
    conv: &impl Fn(RawLevel) -> Option<T>,
    bids: &mut Vec<T>,
    asks: &mut Vec<T>,
    want_time: bool,
    cache: &mut TimestampCache,
) -> Option<Body> {
    let mut c = Cursor {
        b: text,
        i: head.body,
    };
    c.levels(short, bids, conv)?;
    c.lit(br#","asks":["#)?;
    c.levels(short, asks, conv)?;
    c.lit(br#","checksum":"#)?;
    let start = c.i;
    let (checksum, digits) = c.digits();
    // A u32 has at most 10 digits (so nothing wrapped); no leading zeros.
    if digits == 0 || digits > 10 || (digits > 1 && text[start] == b'0') {
        return None;
    }
    let checksum = u32::try_from(checksum).ok()?;
    let timestamp = if c.lit(br#","timestamp":""#).is_some() {
        let start = c.i;
        // The usual length first: a wrong guess holds a `"` or misses the `Z`, and
        // neither check below accepts that, so the general path then decides.
        let len = if text.get(start + USUAL_TIMESTAMP) == Some(&b'"') {
            USUAL_TIMESTAMP
        } else {
            text[start..].iter().position(|&b| b == b'"')?
        };
        let ts = &text[start..start + len];
        c.i = start + len + 1;
        if want_time {
            Some(cache.time(ts)?)
        } else if cache.valid(ts) {
            None
        } else {
            return None;
        }
    } else {
        None
    };
    c.lit(b"}]}")?;
    (c.i == text.len()).then_some(Body {
        checksum,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Scales = Scales { price: 5, qty: 8 };

    type Scanned = (DataKind, String, Vec<IntLevel>, Vec<IntLevel>, Body);

    fn scan(text: &str) -> Option<Scanned> {
        let h = header(text.as_bytes(), &Hint::default())?;
        let (mut b, mut a) = (Vec::new(), Vec::new());
        let mut cache = TimestampCache::default();
        let body = body(text.as_bytes(), &h, S, &mut b, &mut a, true, &mut cache)?;
        // The quiet scan (timestamp only checked, against a remembered beginning) and
        // the scan with the symbol hint accept exactly the same messages.
        for hint in [&b"XRP/USD"[..], b"A/B", b"XRP/USDT", b"XRP/US"] {
            let h2 = header(text.as_bytes(), &Hint::of(hint))?;
            assert_eq!((h2.kind, h2.symbol, h2.body), (h.kind, h.symbol, h.body));
            assert_eq!(h2.hinted, h.symbol == hint);
            for _ in 0..2 {
                let quiet = super::body(text.as_bytes(), &h, S, &mut b, &mut a, false, &mut cache);
                assert_eq!(quiet.map(|q| q.checksum), Some(body.checksum));
            }
        }
        Some((
            h.kind,
            String::from_utf8(h.symbol.to_vec()).unwrap(),
            b,
            a,
            body,
        ))
    }

    const UPD: &str = r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[{"price":2.1845,"qty":0}],"asks":[{"price":2.18451,"qty":12.5},{"price":3,"qty":0.00000001}],"checksum":123,"timestamp":"2026-03-02T14:00:01.123456Z"}]}"#;

    #[test]
    fn scans_kraken_layout_into_scaled_integers() {
        let (kind, sym, b, a, body) = scan(UPD).unwrap();
        assert_eq!((kind, sym.as_str()), (DataKind::Update, "XRP/USD"));
        assert_eq!(
            b,
            vec![IntLevel {
                price: 218_450,
                qty: 0,
                price_scale: 4,
                qty_scale: 0
            }]
        );
        assert_eq!(a[0].price, 218_451);
        assert_eq!((a[0].qty, a[0].qty_scale), (1_250_000_000, 1));
        assert_eq!((a[1].price, a[1].price_scale, a[1].qty), (300_000, 0, 1));
        assert_eq!(body.checksum, 123);
        assert!(body.timestamp.is_some());
        // Exactly the scale's eight fractional digits, and one more (the general path).
        let eight = UPD.replacen("12.5", "12.34567891", 1);
        let (_, _, _, a, _) = scan(&eight).unwrap();
        assert_eq!((a[0].qty, a[0].qty_scale), (1_234_567_891, 8));
        assert!(scan(&UPD.replacen("12.5", "12.345678912", 1)).is_none());
        assert!(scan(&UPD.replacen("12.5", "0.000000001", 1)).is_none());
        let snap = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[],"asks":[],"checksum":0}]}"#;
        let (kind, _, b, a, body) = scan(snap).unwrap();
        assert_eq!(
            (kind, b.len(), a.len(), body.checksum),
            (DataKind::Snapshot, 0, 0, 0)
        );
        assert_eq!(body.timestamp, None);
    }

    /// Mostly bytes a timestamp is made of, sometimes any byte.
    fn edit_byte() -> impl proptest::strategy::Strategy<Value = u8> {
        use proptest::prelude::*;
        prop_oneof![
            3 => proptest::sample::select(b"0123456789:.-TZ\"".to_vec()),
            1 => any::<u8>(),
        ]
    }

    proptest::proptest! {
        /// The remembered beginning never changes a verdict: a run of timestamps that
        /// share beginnings, each with one byte replaced by any byte, is judged exactly
        /// as the full check judges each alone.
        #[test]
        fn prop_timestamp_cache_agrees_with_the_full_check(
            base in r"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{0,10})?Z",
            edits in proptest::collection::vec((0usize..30, edit_byte()), 1..12),
        ) {
            let mut cache = TimestampCache::default();
            for (at, byte) in edits {
                for edited in [false, true] {
                    let mut t = base.clone().into_bytes();
                    if edited && let Some(b) = t.get_mut(at) {
                        *b = byte;
                    }
                    let want = fast_timestamp_bytes(&t);
                    proptest::prop_assert_eq!(
                        cache.valid(&t),
                        want.is_some(),
                        "{:?}", String::from_utf8_lossy(&t)
                    );
                    proptest::prop_assert_eq!(
                        cache.time(&t),
                        want,
                        "{:?}", String::from_utf8_lossy(&t)
                    );
                }
            }
        }
    }

    #[test]
    fn eight_digits_at_a_time_equal_one_at_a_time() {
        for text in [
            "0",
            "7",
            "12",
            "123",
            "1234567",
            "12345678",
            "123456789",
            "1234567890123456789",
            "99999999",
            "00000001",
            "5.",
            "12a45678",
            "1234567\u{7f}",
            "\u{ff}12345678",
        ] {
            let padded = format!("{text}}}}}}}}}}}}}");
            for b in [text.as_bytes(), padded.as_bytes()] {
                let mut c = Cursor { b, i: 0 };
                let (v, n) = c.digits();
                let run = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let want = b[..run].iter().fold(0u64, |a, d| {
                    a.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
                });
                assert_eq!((v, n, c.i), (want, run, run), "{text:?}");
            }
        }
    }

    /// Numbers read whole (the usual forms) and in parts (longer ones) come out as
    /// written: every digit, the fraction's length, the cursor just after.
    #[test]
    fn numbers_read_as_written_in_every_form() {
        for text in [
            "0",
            "7",
            "1234567",
            "12345678",
            "2.18389",
            "0.5",
            "45283.5",
            "1.2345678",
            "1.12345678",
            "1234567.12345678",
            "2529.33677952",
            "1.123456789",
            "12345678.5",
            "0.000000000000000001",
        ] {
            let padded = format!("{text},\"qty\":1}}");
            for b in [text.as_bytes(), padded.as_bytes()] {
                let mut c = Cursor { b, i: 0 };
                let n = c.raw_number(false).unwrap_or_else(|| panic!("{text}"));
                let (int, frac) = text.split_once('.').unwrap_or((text, ""));
                let want: u64 = format!("{int}{frac}").parse().unwrap();
                assert_eq!(
                    (n.mantissa, usize::from(n.frac)),
                    (want, frac.len()),
                    "{text}"
                );
                assert_eq!(c.i, text.len(), "{text}");
            }
        }
        for bad in ["00.5,", "01,", "1.,", ".5,", "1.5.5,"] {
            let mut c = Cursor {
                b: bad.as_bytes(),
                i: 0,
            };
            let n = c.raw_number(false);
            assert!(n.is_none() || c.b[c.i] != b',', "{bad}: {n:?}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_the_general_path() {
        for (from, to) in [
            ("2.1845,", "2.184500000,"),  // more digits than the precision
            ("2.1845,", "2.1845e0,"),     // exponent
            ("2.1845,", "02.1845,"),      // leading zero
            ("2.1845,", "-2.1845,"),      // sign
            ("2.1845,", "0,"),            // non-positive price
            ("2.1845,", "2.,"),           // empty fraction
            ("2.1845,", "\"2.1845\","),   // quoted
            ("2.1845,", "2.1845 ,"),      // whitespace
            ("12.5", "99999999999999"),   // does not fit a u64 at scale 8
            ("XRP/USD", "XRP\\/USD"),     // escape
            ("\"update\"", "\"Update\""), // other type
            ("checksum\":123", "checksum\":4294967296"), // not a u32
            ("checksum\":123", "checksum\":0123"), // leading zero
            ("checksum\":123", "checksum\":-1"),
            ("01.123456Z", "01.123456+00:00"), // other timestamp form
            ("}]}", "},{}]}"),                 // a second book
            ("}]}", "}]} "),                   // trailing bytes
            ("\"bids\"", "\"bids\" "),
        ] {
            assert!(UPD.contains(from), "{from}");
            let text = UPD.replacen(from, to, 1);
            assert!(scan(&text).is_none(), "{text}");
        }
        assert!(scan(r#"{"channel":"trade","type":"update","data":[]}"#).is_none());
        assert!(scan("").is_none());
        for cut in 0..UPD.len() {
            assert!(scan(&UPD[..cut]).is_none(), "{cut}");
        }
    }
}
