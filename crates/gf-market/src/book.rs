//! The L2 order book of one pair: snapshot and update application, depth truncation,
//! top-of-book queries and the incremental Kraken checksum.
//!
//! Each side is a sorted `Vec` (bids high to low, asks low to high), so the top N levels
//! are a slice and best bid/ask are O(1). Each level caches its checksum digits, so
//! verifying an update re-renders only the levels that changed.

use std::fmt;

use gf_core::{Level, Price, Qty};
use rust_decimal::Decimal;

use crate::checksum::CHECKSUM_LEVELS;
use crate::error::Error;
use crate::num::{MAX_DIGITS, checksum_digits};

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
            .field("bid_levels", &self.bids.len())
            .field("ask_levels", &self.asks.len())
            .finish()
    }
}

impl Book {
    /// An empty book keeping `depth` levels per side (at least 1).
    #[must_use]
    pub fn new(depth: usize) -> Self {
        let depth = depth.max(1);
        Self {
            depth,
            precision: None,
            bids: Vec::with_capacity(depth + 8),
            asks: Vec::with_capacity(depth + 8),
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

    /// Sets the pair's precision (from the `instrument` channel) and re-renders the cached
    /// checksum digits.
    pub fn set_precision(&mut self, precision: Option<Precision>) {
        if self.precision != precision {
            self.precision = precision;
            for e in self.bids.iter_mut().chain(self.asks.iter_mut()) {
                e.render(precision);
            }
        }
    }

    /// Empties both sides.
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
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

    /// Drops levels beyond the depth on both sides.
    pub fn truncate(&mut self) {
        self.bids.truncate(self.depth);
        self.asks.truncate(self.depth);
    }

    /// Kraken's CRC32 over the top 10 asks then the top 10 bids.
    #[must_use]
    pub fn checksum(&self) -> u32 {
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

    /// The best (highest) bid.
    #[must_use]
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.first().map(|e| e.level)
    }

    /// The best (lowest) ask.
    #[must_use]
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.first().map(|e| e.level)
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
        let entries = match side {
            BookSide::Bid => &self.bids,
            BookSide::Ask => &self.asks,
        };
        entries.iter().map(|e| e.level)
    }

    /// Number of levels on one side.
    #[must_use]
    pub fn len(&self, side: BookSide) -> usize {
        match side {
            BookSide::Bid => self.bids.len(),
            BookSide::Ask => self.asks.len(),
        }
    }

    /// `true` when both sides are empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
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
        (1i64..60, prop_oneof![Just(0i64), 1i64..1_000_000], 0u32..3).prop_map(|(p, q, extra)| {
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
