//! The L2 order book of one pair: snapshot and update application, depth truncation,
//! top-of-book queries and the incremental Kraken checksum.
//!
//! Two representations, one behaviour:
//!
//! - **integer** (the usual one): each level is a price and a quantity as `u64` at the
//!   pair's precision (or at [`DEFAULT_SCALE`] before the precision is known), with the
//!   number of fractional digits they were written with, in a ring buffer per side
//!   (bids high to low, asks low to high) preallocated to the depth, so inserting near
//!   the top moves only the levels above it and applying a message allocates nothing.
//!   The checksum digits of the top 10 levels per side are cached and shifted along
//!   with the levels, so the checksum renders only the levels that changed.
//! - **decimal**: sorted `Vec`s of exact [`Decimal`] levels, for values the integer form
//!   cannot hold exactly (more fractional digits than the scale, too large, negative).
//!   A book switches to it (losslessly) when such a value arrives and returns to the
//!   integer form at the next snapshot.
//!
//! Both give the same levels (same values, same scales as written), the same order and
//! the same checksum; the property tests below check that against a naive model.

use std::collections::VecDeque;
use std::fmt;

use gf_core::{Level, Price, Qty};
use rust_decimal::Decimal;

use crate::checksum::CHECKSUM_LEVELS;
use crate::error::Error;
use crate::num::{MAX_DIGITS, POW10, PUT_SLACK, checksum_digits, digits_u64, put_u64};

/// The scale of the integer form before the pair's precision is known.
pub const DEFAULT_SCALE: u32 = 8;

/// The largest scale the integer form supports (10^18 fits a `u64`).
const MAX_INT_SCALE: u32 = 18;

/// Depths Kraken's `book` channel offers.
pub const VALID_DEPTHS: [u32; 5] = [10, 25, 100, 500, 1000];

/// Checks a subscription depth.
///
/// # Errors
/// [`Error::InvalidDepth`] for anything but 10, 25, 100, 500 or 1000.
pub fn validate_depth(depth: u32) -> Result<usize, Error> {
    if VALID_DEPTHS.contains(&depth) {
        Ok(depth as usize)
    } else {
        Err(Error::InvalidDepth(depth))
    }
}

/// A pair's precisions from the `instrument` channel: fractional digits of prices and of
/// quantities. The checksum renders numbers with at least these many digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Precision {
    /// `price_precision`.
    pub price: u32,
    /// `qty_precision`.
    pub qty: u32,
}

/// Which side of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookSide {
    /// Buy orders, best (highest) first.
    Bid,
    /// Sell orders, best (lowest) first.
    Ask,
}

#[derive(Clone, Copy)]
struct Entry {
    level: Level,
    digits_len: u8,
    digits: [u8; 2 * MAX_DIGITS],
}

impl Entry {
    fn new(level: Level, precision: Option<Precision>) -> Self {
        let mut entry = Entry {
            level,
            digits_len: 0,
            digits: [0; 2 * MAX_DIGITS],
        };
        entry.render(precision);
        entry
    }

    fn render(&mut self, precision: Option<Precision>) {
        let n = checksum_digits(
            self.level.price,
            precision.map(|p| p.price),
            &mut self.digits,
        );
        let m = checksum_digits(
            self.level.qty,
            precision.map(|p| p.qty),
            &mut self.digits[n..],
        );
        // Both parts are at most MAX_DIGITS, so the sum fits a u8.
        self.digits_len = u8::try_from(n + m).unwrap_or(u8::MAX);
    }

    fn digits(&self) -> &[u8] {
        &self.digits[..usize::from(self.digits_len)]
    }
}

/// The scales (fractional digits) of a book's integer form: the pair's precision, or
/// [`DEFAULT_SCALE`] while it is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scales {
    /// Scale of prices.
    pub price: u32,
    /// Scale of quantities.
    pub qty: u32,
}

impl Scales {
    fn of(precision: Option<Precision>) -> Option<Self> {
        let s = precision.map_or(
            Scales {
                price: DEFAULT_SCALE,
                qty: DEFAULT_SCALE,
            },
            |p| Scales {
                price: p.price,
                qty: p.qty,
            },
        );
        (s.price <= MAX_INT_SCALE && s.qty <= MAX_INT_SCALE).then_some(s)
    }
}

/// A level in integer form: `price` and `qty` at the book's [`Scales`], and the number
/// of fractional digits each was written with (at most the scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntLevel {
    /// Price at the price scale.
    pub price: u64,
    /// Quantity at the quantity scale; zero removes the level.
    pub qty: u64,
    /// Fractional digits the price was written with.
    pub price_scale: u8,
    /// Fractional digits the quantity was written with.
    pub qty_scale: u8,
}

/// `value` (at `scale`) as the exact decimal written with `written` fractional digits.
fn dec(value: u64, scale: u32, written: u8) -> Decimal {
    let written = u32::from(written).min(scale);
    // Padded to the scale (the usual event) there is nothing to divide.
    let m = match scale - written {
        0 => value,
        shift => value / POW10[shift as usize],
    };
    // A u64 mantissa at a scale of at most MAX_INT_SCALE (18): always a valid Decimal.
    Decimal::from_parts(m as u32, (m >> 32) as u32, 0, false, written)
}

/// `d` at `scale`, with its written scale; `None` when it has more fractional digits,
/// is negative or does not fit.
fn int(d: Decimal, scale: u32) -> Option<(u64, u8)> {
    if d.is_sign_negative() || d.scale() > scale {
        return None;
    }
    let m = u64::try_from(d.mantissa()).ok()?;
    let v = m.checked_mul(POW10[(scale - d.scale()) as usize])?;
    Some((v, u8::try_from(d.scale()).ok()?))
}

impl IntLevel {
    pub(crate) fn from_level(level: Level, scales: Scales) -> Option<Self> {
        let (price, price_scale) = int(level.price, scales.price)?;
        let (qty, qty_scale) = int(level.qty, scales.qty)?;
        Some(Self {
            price,
            qty,
            price_scale,
            qty_scale,
        })
    }

    /// The level as written.
    pub(crate) fn to_level(self, scales: Scales) -> Level {
        Level {
            price: dec(self.price, scales.price, self.price_scale),
            qty: dec(self.qty, scales.qty, self.qty_scale),
        }
    }

    /// The level padded to the pair's precision, as published (see `feed::padded`).
    pub(crate) fn to_padded(self, scales: Scales, padded: bool) -> Level {
        if padded {
            Level {
                price: dec(self.price, scales.price, scales.price as u8),
                qty: dec(self.qty, scales.qty, scales.qty as u8),
            }
        } else {
            self.to_level(scales)
        }
    }

    /// Re-expresses the level at other scales; `None` when it does not fit exactly.
    fn rescaled(self, from: Scales, to: Scales) -> Option<Self> {
        let re = |v: u64, f: u32, t: u32, written: u8| -> Option<u64> {
            if u32::from(written) > t {
                None
            } else if t >= f {
                v.checked_mul(POW10[(t - f) as usize])
            } else {
                Some(v / POW10[(f - t) as usize])
            }
        };
        Some(Self {
            price: re(self.price, from.price, to.price, self.price_scale)?,
            qty: re(self.qty, from.qty, to.qty, self.qty_scale)?,
            ..self
        })
    }
}

/// Writes the checksum digits of one level (price then quantity, at most 20 digits
/// each) at the start of `out` (at least [`LEVEL_DIGITS`] bytes and [`PUT_SLACK`] more);
/// returns the length. With a known precision the scaled integers are the checksum
/// digits; without, the numbers count as written.
fn render(level: &IntLevel, scales: Scales, padded: bool, out: &mut [u8]) -> usize {
    let r = Rendered::of(level, scales, padded);
    r.write(out);
    r.len()
}

/// The checksum digits of one level, to be written where they go (no copy through a
/// scratch buffer): the numbers and their lengths.
#[derive(Clone, Copy)]
struct Rendered {
    /// The price (0, and no digits, when only the quantity is written).
    price: u64,
    qty: u64,
    price_len: usize,
    len: usize,
}

impl Rendered {
    #[inline(always)]
    fn of(level: &IntLevel, scales: Scales, padded: bool) -> Self {
        let (price, qty) = checksum_values(level, scales, padded);
        let price_len = digits_u64(price);
        Self {
            price,
            qty,
            price_len,
            len: price_len + digits_u64(qty),
        }
    }

    /// The quantity's digits alone.
    #[inline(always)]
    fn qty_of(level: &IntLevel, scales: Scales, padded: bool) -> Self {
        let (_, qty) = checksum_values(level, scales, padded);
        Self {
            price: 0,
            qty,
            price_len: 0,
            len: digits_u64(qty),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Writes the digits at the start of `out`, nothing after them (`out` holds
    /// [`PUT_SLACK`] bytes more than the digits).
    #[inline(always)]
    fn write(&self, out: &mut [u8]) {
        put_u64(self.price, self.price_len, out, 0);
        put_u64(self.qty, self.len - self.price_len, out, self.price_len);
    }
}

/// The two numbers whose digits a level contributes to the checksum: with a known
/// precision the scaled integers, without it the numbers as written.
#[inline(always)]
fn checksum_values(level: &IntLevel, scales: Scales, padded: bool) -> (u64, u64) {
    if padded {
        (level.price, level.qty)
    } else {
        (
            level.price / POW10[(scales.price - u32::from(level.price_scale)) as usize],
            level.qty / POW10[(scales.qty - u32::from(level.qty_scale)) as usize],
        )
    }
}

/// Sides of at most this many levels are searched by counting (see `IntSide::find`).
const LINEAR_FIND: usize = 16;

/// Most bytes one level renders to.
const LEVEL_DIGITS: usize = 40;

/// Bytes of the checksum text buffer: ten levels a side at most [`LEVEL_DIGITS`] each,
/// and room for [`put_u64`]'s last store.
const TEXT_BYTES: usize = 2 * CHECKSUM_LEVELS * LEVEL_DIGITS + PUT_SLACK;

/// One side in integer form, best first. The checksum digits of its top
/// `min(len, CHECKSUM_LEVELS)` levels are kept, concatenated, in the book's shared
/// `Book::text` (level `j` spans `ends[j]..ends[j + 1]` from the side's start;
/// `ends[0]` is always 0), in step with the levels.
#[derive(Clone)]
struct IntSide {
    levels: VecDeque<IntLevel>,
    ends: [u16; CHECKSUM_LEVELS + 1],
}

/// Where one side's checksum text lives in the shared buffer: the buffer from the side's
/// first byte on, and how many bytes of the other side follow it there (they move along
/// when this side's text grows or shrinks).
struct Region<'a> {
    text: &'a mut [u8],
    after: usize,
}

impl IntSide {
    fn new(capacity: usize) -> Self {
        Self {
            levels: VecDeque::with_capacity(capacity),
            ends: [0; CHECKSUM_LEVELS + 1],
        }
    }

    /// Where slot `j` starts (`j == n`: where the text of `n` slots ends).
    #[inline(always)]
    fn start(&self, j: usize) -> usize {
        usize::from(self.ends[j])
    }

    /// Slots in the checksum.
    fn slots(&self) -> usize {
        self.levels.len().min(CHECKSUM_LEVELS)
    }

    /// Length of the side's checksum text.
    fn text_len(&self) -> usize {
        self.start(self.slots())
    }

    /// Renders the top levels at the start of `text`; returns the length.
    fn render_all(&mut self, scales: Scales, padded: bool, text: &mut [u8]) -> usize {
        let mut pos = 0;
        for (j, l) in self.levels.iter().take(CHECKSUM_LEVELS).enumerate() {
            pos += render(l, scales, padded, &mut text[pos..]);
            self.ends[j + 1] = pos as u16;
        }
        pos
    }

    /// Replaces slot `i` of `n` from its byte `from` on with `d` (`from` 0: the whole
    /// slot; after the price's digits: the quantity's).
    fn set_slot(&mut self, r: &mut Region<'_>, i: usize, n: usize, from: usize, d: Rendered) {
        let (s, e, total) = (self.start(i) + from, self.start(i + 1), self.start(n));
        let new_e = s + d.len();
        if new_e != e {
            r.text.copy_within(e..total + r.after, new_e);
            for end in &mut self.ends[i + 1..=n] {
                *end = (usize::from(*end) + new_e - e) as u16;
            }
        }
        d.write(&mut r.text[s..]);
    }

    /// Inserts `d` as slot `i` of `n` (`i <= n < CHECKSUM_LEVELS`).
    fn insert_slot(&mut self, r: &mut Region<'_>, i: usize, n: usize, d: Rendered) {
        let (s, total) = (self.start(i), self.start(n));
        let len = d.len() as u16;
        r.text.copy_within(s..total + r.after, s + d.len());
        d.write(&mut r.text[s..]);
        for j in (i + 1..=n).rev() {
            self.ends[j + 1] = self.ends[j] + len;
        }
        self.ends[i + 1] = s as u16 + len;
    }

    /// Removes slot `i` of `n`.
    fn remove_slot(&mut self, r: &mut Region<'_>, i: usize, n: usize) {
        let (s, e, total) = (self.start(i), self.start(i + 1), self.start(n));
        r.text.copy_within(e..total + r.after, s);
        let len = (e - s) as u16;
        for j in i + 2..=n {
            self.ends[j - 1] = self.ends[j] - len;
        }
    }

    /// Where the level at `price` is (`Ok`) or would go (`Err`). A short side is
    /// counted through (independent compares, no chain of dependent loads as in a
    /// binary search); a long one is searched.
    #[inline(always)]
    fn find(&self, side: BookSide, price: u64) -> Result<usize, usize> {
        let i = if self.levels.len() <= LINEAR_FIND {
            let (a, b) = self.levels.as_slices();
            let better = |l: &[IntLevel]| match side {
                BookSide::Bid => l.iter().filter(|e| e.price > price).count(),
                BookSide::Ask => l.iter().filter(|e| e.price < price).count(),
            };
            better(a) + better(b)
        } else {
            return match side {
                BookSide::Bid => self.levels.binary_search_by(|e| price.cmp(&e.price)),
                BookSide::Ask => self.levels.binary_search_by(|e| e.price.cmp(&price)),
            };
        };
        match self.levels.get(i) {
            Some(e) if e.price == price => Ok(i),
            _ => Err(i),
        }
    }

    fn apply(
        &mut self,
        r: &mut Region<'_>,
        side: BookSide,
        level: IntLevel,
        scales: Scales,
        padded: bool,
    ) {
        let found = self.find(side, level.price);
        let n = self.slots();
        let rendered = |l: &IntLevel| Rendered::of(l, scales, padded);
        match found {
            Ok(i) if level.qty == 0 => {
                self.levels.remove(i);
                if i < CHECKSUM_LEVELS {
                    self.remove_slot(r, i, n);
                    if let Some(l) = self.levels.get(CHECKSUM_LEVELS - 1) {
                        let d = rendered(l);
                        self.insert_slot(r, CHECKSUM_LEVELS - 1, CHECKSUM_LEVELS - 1, d);
                    }
                }
            }
            Ok(i) => {
                let old = std::mem::replace(&mut self.levels[i], level);
                if i < CHECKSUM_LEVELS {
                    if padded || old.price_scale == level.price_scale {
                        // The same price written the same way: only the quantity's digits
                        // change.
                        let (price, _) = checksum_values(&old, scales, padded);
                        let d = Rendered::qty_of(&level, scales, padded);
                        self.set_slot(r, i, n, digits_u64(price), d);
                    } else {
                        self.set_slot(r, i, n, 0, rendered(&level));
                    }
                }
            }
            Err(_) if level.qty == 0 => {}
            Err(i) => {
                self.levels.insert(i, level);
                if i < CHECKSUM_LEVELS {
                    let mut n = n;
                    if n == CHECKSUM_LEVELS {
                        // The tenth level leaves the checksum.
                        self.remove_slot(r, n - 1, n);
                        n -= 1;
                    }
                    self.insert_slot(r, i, n, rendered(&level));
                }
            }
        }
    }

    /// Keeps the first `depth` levels, dropping the text of slots that leave.
    fn truncate(&mut self, depth: usize, r: &mut Region<'_>) {
        if self.levels.len() <= depth {
            return;
        }
        let (old, new) = (self.text_len(), self.start(depth.min(CHECKSUM_LEVELS)));
        self.levels.truncate(depth);
        if new < old {
            r.text.copy_within(old..old + r.after, new);
        }
    }
}

/// Which representation a book is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Int(Scales),
    Dec,
}

/// An L2 book kept at a fixed depth.
///
/// ```
/// use gf_core::Level;
/// use gf_market::{Book, BookSide};
/// use rust_decimal::Decimal;
/// let lvl = |p: i64, q: i64| Level { price: Decimal::new(p, 4), qty: Decimal::new(q, 0) };
/// let mut book = Book::new(10);
/// book.apply_snapshot(&[lvl(5000, 10), lvl(4999, 5)], &[lvl(5002, 7)]);
/// book.apply_update(&[lvl(5001, 3)], &[lvl(5002, 0)]);
/// assert_eq!(book.best_bid(), Some(lvl(5001, 3)));
/// assert_eq!(book.best_ask(), None);
/// assert_eq!(book.top(BookSide::Bid, 2).len(), 2);
/// ```
#[derive(Clone)]
pub struct Book {
    depth: usize,
    precision: Option<Precision>,
    mode: Mode,
    int_bids: IntSide,
    int_asks: IntSide,
    /// The checksum text of both integer sides in one buffer, asks then bids as Kraken's
    /// checksum reads them, so the checksum is one CRC over one slice, nothing copied.
    text: [u8; TEXT_BYTES],
    bids: Vec<Entry>,
    asks: Vec<Entry>,
}

impl fmt::Debug for Book {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Book")
            .field("depth", &self.depth)
            .field("precision", &self.precision)
            .field("best_bid", &self.best_bid())
            .field("best_ask", &self.best_ask())
            .field("bid_levels", &self.len(BookSide::Bid))
            .field("ask_levels", &self.len(BookSide::Ask))
            .finish()
    }
}

/// Iterates one side of a book in either representation.
enum SideIter<'a> {
    Int(std::collections::vec_deque::Iter<'a, IntLevel>, Scales),
    Dec(std::slice::Iter<'a, Entry>),
}

impl Iterator for SideIter<'_> {
    type Item = Level;

    fn next(&mut self) -> Option<Level> {
        match self {
            SideIter::Int(it, scales) => it.next().map(|l| l.to_level(*scales)),
            SideIter::Dec(it) => it.next().map(|e| e.level),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            SideIter::Int(it, _) => it.size_hint(),
            SideIter::Dec(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for SideIter<'_> {}

impl Book {
    /// An empty book keeping `depth` levels per side (at least 1).
    #[must_use]
    pub fn new(depth: usize) -> Self {
        let depth = depth.max(1);
        Self {
            depth,
            precision: None,
            mode: Scales::of(None).map_or(Mode::Dec, Mode::Int),
            int_bids: IntSide::new(depth + 8),
            int_asks: IntSide::new(depth + 8),
            text: [0; TEXT_BYTES],
            bids: Vec::new(),
            asks: Vec::new(),
        }
    }

    /// The depth kept per side.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The precision used by the checksum, if known.
    #[must_use]
    pub fn precision(&self) -> Option<Precision> {
        self.precision
    }

    /// The integer scales, while the book is in integer form (the fast path's
    /// precondition).
    pub(crate) fn int_scales(&self) -> Option<Scales> {
        match self.mode {
            Mode::Int(s) => Some(s),
            Mode::Dec => None,
        }
    }

    /// The scales a snapshot would put the book in (`None`: decimal form).
    pub(crate) fn snapshot_scales(&self) -> Option<Scales> {
        Scales::of(self.precision)
    }

    /// Sets the pair's precision (from the `instrument` channel) and re-renders the cached
    /// checksum digits.
    pub fn set_precision(&mut self, precision: Option<Precision>) {
        if self.precision == precision {
            return;
        }
        self.precision = precision;
        match self.mode {
            Mode::Int(from) => {
                let rescaled = Scales::of(precision).filter(|to| {
                    self.int_bids
                        .levels
                        .iter()
                        .chain(&self.int_asks.levels)
                        .all(|l| l.rescaled(from, *to).is_some())
                });
                if let Some(to) = rescaled {
                    for side in [&mut self.int_bids, &mut self.int_asks] {
                        for l in &mut side.levels {
                            if let Some(r) = l.rescaled(from, to) {
                                *l = r;
                            }
                        }
                    }
                    let padded = precision.is_some();
                    let n = self.int_asks.render_all(to, padded, &mut self.text);
                    self.int_bids.render_all(to, padded, &mut self.text[n..]);
                    self.mode = Mode::Int(to);
                } else {
                    self.make_decimal();
                }
            }
            Mode::Dec => {
                for e in self.bids.iter_mut().chain(self.asks.iter_mut()) {
                    e.render(precision);
                }
            }
        }
    }

    /// Moves the book to the decimal form (lossless).
    fn make_decimal(&mut self) {
        let Mode::Int(scales) = self.mode else {
            return;
        };
        let precision = self.precision;
        self.bids.clear();
        self.asks.clear();
        self.bids.extend(
            self.int_bids
                .levels
                .drain(..)
                .map(|l| Entry::new(l.to_level(scales), precision)),
        );
        self.asks.extend(
            self.int_asks
                .levels
                .drain(..)
                .map(|l| Entry::new(l.to_level(scales), precision)),
        );
        self.mode = Mode::Dec;
    }

    /// Empties both sides (and returns to the integer form when the precision allows).
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
        self.int_bids.levels.clear();
        self.int_asks.levels.clear();
        self.mode = Scales::of(self.precision).map_or(Mode::Dec, Mode::Int);
    }

    /// Replaces the book with a snapshot. Levels may come in any order; zero quantities
    /// are skipped; the result is truncated to the depth.
    pub fn apply_snapshot(&mut self, bids: &[Level], asks: &[Level]) {
        self.clear();
        self.apply_update(bids, asks);
    }

    /// Applies an update message: every level in order (quantity zero removes the level),
    /// then truncates each side to the depth, as Kraken specifies.
    pub fn apply_update(&mut self, bids: &[Level], asks: &[Level]) {
        for level in bids {
            self.apply_level(BookSide::Bid, *level);
        }
        for level in asks {
            self.apply_level(BookSide::Ask, *level);
        }
        self.truncate();
    }

    /// Applies one level without truncating (call [`Book::truncate`] after the message).
    pub fn apply_level(&mut self, side: BookSide, level: Level) {
        if let Mode::Int(scales) = self.mode {
            if let Some(l) = IntLevel::from_level(level, scales) {
                self.apply_int(side, l);
                return;
            }
            self.make_decimal();
        }
        let precision = self.precision;
        let entries = match side {
            BookSide::Bid => &mut self.bids,
            BookSide::Ask => &mut self.asks,
        };
        let found = match side {
            BookSide::Bid => entries.binary_search_by(|e| level.price.cmp(&e.level.price)),
            BookSide::Ask => entries.binary_search_by(|e| e.level.price.cmp(&level.price)),
        };
        match found {
            Ok(i) if level.qty.is_zero() => {
                entries.remove(i);
            }
            Ok(i) => entries[i] = Entry::new(level, precision),
            Err(_) if level.qty.is_zero() => {}
            Err(i) => entries.insert(i, Entry::new(level, precision)),
        }
    }

    /// Applies one integer level (at [`Book::int_scales`]) without truncating. The
    /// caller checked the book is in integer form; otherwise the level is converted.
    pub(crate) fn apply_int(&mut self, side: BookSide, level: IntLevel) {
        let Mode::Int(scales) = self.mode else {
            return;
        };
        let padded = self.precision.is_some();
        let (s, mut r) = self.int_side(side);
        s.apply(&mut r, side, level, scales, padded);
    }

    /// One integer side and where its checksum text is.
    fn int_side(&mut self, side: BookSide) -> (&mut IntSide, Region<'_>) {
        match side {
            BookSide::Ask => (
                &mut self.int_asks,
                Region {
                    text: &mut self.text,
                    after: self.int_bids.text_len(),
                },
            ),
            BookSide::Bid => {
                let base = self.int_asks.text_len();
                (
                    &mut self.int_bids,
                    Region {
                        text: &mut self.text[base..],
                        after: 0,
                    },
                )
            }
        }
    }

    /// Drops levels beyond the depth on both sides.
    pub fn truncate(&mut self) {
        self.bids.truncate(self.depth);
        self.asks.truncate(self.depth);
        let depth = self.depth;
        for side in [BookSide::Bid, BookSide::Ask] {
            let (s, mut r) = self.int_side(side);
            s.truncate(depth, &mut r);
        }
    }

    /// Kraken's CRC32 over the top 10 asks then the top 10 bids.
    #[must_use]
    pub fn checksum(&self) -> u32 {
        if let Mode::Int(_) = self.mode {
            // One contiguous CRC input, kept up to date by every change.
            let len = self.int_asks.text_len() + self.int_bids.text_len();
            return crc32fast::hash(&self.text[..len]);
        }
        // One contiguous buffer and one CRC call: much faster than 20 small updates.
        let mut buf = [0u8; 2 * CHECKSUM_LEVELS * 2 * MAX_DIGITS];
        let mut len = 0;
        for e in self
            .asks
            .iter()
            .take(CHECKSUM_LEVELS)
            .chain(self.bids.iter().take(CHECKSUM_LEVELS))
        {
            let d = e.digits();
            buf[len..len + d.len()].copy_from_slice(d);
            len += d.len();
        }
        crc32fast::hash(&buf[..len])
    }

    /// The best level of one side in integer form (integer form only).
    pub(crate) fn best_int(&self, side: BookSide) -> Option<IntLevel> {
        match side {
            BookSide::Bid => self.int_bids.levels.front().copied(),
            BookSide::Ask => self.int_asks.levels.front().copied(),
        }
    }

    /// The best (highest) bid.
    #[must_use]
    pub fn best_bid(&self) -> Option<Level> {
        self.side_iter(BookSide::Bid).next()
    }

    /// The best (lowest) ask.
    #[must_use]
    pub fn best_ask(&self) -> Option<Level> {
        self.side_iter(BookSide::Ask).next()
    }

    /// `(best bid + best ask) / 2`, when both sides have a level.
    #[must_use]
    pub fn mid(&self) -> Option<Price> {
        Some((self.best_bid()?.price + self.best_ask()?.price) / Decimal::TWO)
    }

    /// `best ask - best bid`, when both sides have a level.
    #[must_use]
    pub fn spread(&self) -> Option<Price> {
        Some(self.best_ask()?.price - self.best_bid()?.price)
    }

    /// The best `n` levels of one side, best first.
    #[must_use]
    pub fn top(&self, side: BookSide, n: usize) -> Vec<Level> {
        self.side_iter(side).take(n).collect()
    }

    /// Iterates one side, best first, without allocating.
    pub fn side_iter(&self, side: BookSide) -> impl ExactSizeIterator<Item = Level> + '_ {
        match (self.mode, side) {
            (Mode::Int(s), BookSide::Bid) => SideIter::Int(self.int_bids.levels.iter(), s),
            (Mode::Int(s), BookSide::Ask) => SideIter::Int(self.int_asks.levels.iter(), s),
            (Mode::Dec, BookSide::Bid) => SideIter::Dec(self.bids.iter()),
            (Mode::Dec, BookSide::Ask) => SideIter::Dec(self.asks.iter()),
        }
    }

    /// Number of levels on one side.
    #[must_use]
    pub fn len(&self, side: BookSide) -> usize {
        self.side_iter(side).len()
    }

    /// `true` when both sides are empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len(BookSide::Bid) == 0 && self.len(BookSide::Ask) == 0
    }

    /// Quantity resting at `price` on `side`, if any.
    #[must_use]
    pub fn qty_at(&self, side: BookSide, price: Price) -> Option<Qty> {
        self.side_iter(side)
            .find(|l| l.price == price)
            .map(|l| l.qty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::checksum;

    fn lvl(p: &str, q: &str) -> Level {
        Level {
            price: p.parse().unwrap(),
            qty: q.parse().unwrap(),
        }
    }

    #[test]
    fn snapshot_sorts_and_truncates() {
        let mut book = Book::new(10);
        let bids: Vec<Level> = (0..15).map(|i| lvl(&format!("1.{i:02}"), "1")).collect();
        let asks: Vec<Level> = (0..15)
            .rev()
            .map(|i| lvl(&format!("2.{i:02}"), "1"))
            .collect();
        book.apply_snapshot(&bids, &asks);
        assert_eq!(book.len(BookSide::Bid), 10);
        assert_eq!(book.len(BookSide::Ask), 10);
        assert_eq!(book.best_bid().unwrap().price, "1.14".parse().unwrap());
        assert_eq!(book.best_ask().unwrap().price, "2.00".parse().unwrap());
        let top = book.top(BookSide::Bid, 3);
        assert!(top.windows(2).all(|w| w[0].price > w[1].price));
        assert_eq!(book.mid(), Some("1.57".parse().unwrap()));
        assert_eq!(book.spread(), Some("0.86".parse().unwrap()));
    }

    #[test]
    fn update_removes_inserts_replaces_and_truncates_after_the_message() {
        let mut book = Book::new(10);
        let bids: Vec<Level> = (0..10).map(|i| lvl(&format!("1.{i}0"), "1")).collect();
        book.apply_snapshot(&bids, &[]);
        // Insert a new best bid (11 levels mid-message) then delete it: the 10th level
        // must survive because truncation happens after the whole message.
        book.apply_update(&[lvl("1.95", "2"), lvl("1.95", "0")], &[]);
        assert_eq!(book.len(BookSide::Bid), 10);
        assert_eq!(
            book.qty_at(BookSide::Bid, "1.00".parse().unwrap()),
            Some("1".parse().unwrap())
        );
        // Replace a level, remove one, remove an absent price (no-op).
        book.apply_update(&[lvl("1.50", "7"), lvl("1.90", "0"), lvl("0.01", "0")], &[]);
        assert_eq!(
            book.qty_at(BookSide::Bid, "1.5".parse().unwrap()),
            Some("7".parse().unwrap())
        );
        assert_eq!(book.best_bid().unwrap().price, "1.80".parse().unwrap());
        assert_eq!(book.len(BookSide::Bid), 9);
        assert_eq!(book.mid(), None);
        assert!(!book.is_empty());
        book.clear();
        assert!(book.is_empty());
    }

    #[test]
    fn incremental_checksum_equals_plain_function() {
        let (asks, bids) = crate::checksum::tests::kraken_doc_example();
        let mut book = Book::new(25);
        book.apply_snapshot(&bids, &asks);
        assert_eq!(book.checksum(), 3_310_070_434);
        book.apply_update(&[lvl("45283.6", "0.5")], &[lvl("45285.2", "0")]);
        let a = book.top(BookSide::Ask, 25);
        let b = book.top(BookSide::Bid, 25);
        assert_eq!(book.checksum(), checksum(&a, &b, None));
        let p = Precision { price: 2, qty: 9 };
        book.set_precision(Some(p));
        assert_eq!(book.precision(), Some(p));
        assert_eq!(book.checksum(), checksum(&a, &b, Some(p)));
    }

    #[test]
    fn depth_validation() {
        for d in VALID_DEPTHS {
            assert_eq!(validate_depth(d).unwrap(), d as usize);
        }
        assert!(matches!(validate_depth(11), Err(Error::InvalidDepth(11))));
        assert_eq!(Book::new(0).depth(), 1);
        assert!(format!("{:?}", Book::new(10)).contains("depth: 10"));
    }
}

#[cfg(test)]
mod property_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::checksum::checksum;
    use proptest::prelude::*;

    /// The naive reference: a sorted map per side, truncated to depth after each message.
    #[derive(Default)]
    struct Model {
        bids: BTreeMap<Decimal, Decimal>,
        asks: BTreeMap<Decimal, Decimal>,
    }

    impl Model {
        fn apply(&mut self, bids: &[Level], asks: &[Level], depth: usize) {
            for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
                for l in levels {
                    // Remove first: a re-sent price replaces the key's representation too.
                    side.remove(&l.price);
                    if !l.qty.is_zero() {
                        side.insert(l.price, l.qty);
                    }
                }
            }
            while self.bids.len() > depth {
                let worst = *self.bids.keys().next().unwrap();
                self.bids.remove(&worst);
            }
            while self.asks.len() > depth {
                let worst = *self.asks.keys().next_back().unwrap();
                self.asks.remove(&worst);
            }
        }
        fn bids(&self) -> Vec<Level> {
            self.bids
                .iter()
                .rev()
                .map(|(p, q)| Level { price: *p, qty: *q })
                .collect()
        }
        fn asks(&self) -> Vec<Level> {
            self.asks
                .iter()
                .map(|(p, q)| Level { price: *p, qty: *q })
                .collect()
        }
    }

    fn level() -> impl Strategy<Value = Level> {
        // A narrow price grid so updates hit existing levels often; some zero quantities.
        // Mostly scales the integer form holds; sometimes more digits (scale 9, 10), which
        // moves the book to the decimal form until the next snapshot.
        let extra = prop_oneof![8 => 0u32..3, 1 => 7u32..9];
        (1i64..60, prop_oneof![Just(0i64), 1i64..1_000_000], extra).prop_map(|(p, q, extra)| {
            Level {
                price: Decimal::new(p * 10i64.pow(extra), 2 + extra),
                qty: Decimal::new(q, 4),
            }
        })
    }

    fn message() -> impl Strategy<Value = (Vec<Level>, Vec<Level>)> {
        (
            prop::collection::vec(level(), 0..8),
            prop::collection::vec(level(), 0..8),
        )
    }

    proptest! {
        #[test]
        fn prop_book_equals_reference_model_at_every_step(
            depth in prop::sample::select(vec![1usize, 3, 10, 25]),
            snapshot in message(),
            updates in prop::collection::vec(message(), 1..40),
        ) {
            let mut book = Book::new(depth);
            let mut model = Model::default();
            book.apply_snapshot(&snapshot.0, &snapshot.1);
            model.apply(&snapshot.0, &snapshot.1, depth);
            for (bids, asks) in &updates {
                book.apply_update(bids, asks);
                model.apply(bids, asks, depth);
                let (mb, ma) = (model.bids(), model.asks());
                prop_assert_eq!(book.top(BookSide::Bid, usize::MAX), mb.clone());
                prop_assert_eq!(book.top(BookSide::Ask, usize::MAX), ma.clone());
                prop_assert_eq!(book.checksum(), checksum(&ma, &mb, None));
                prop_assert_eq!(book.best_bid(), mb.first().copied());
                prop_assert_eq!(book.best_ask(), ma.first().copied());
            }
        }
    }
}
