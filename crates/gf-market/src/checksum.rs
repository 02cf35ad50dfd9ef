//! Kraken's CRC32 book checksum (WebSocket v2), as a plain function over levels.
//!
//! The rule (docs.kraken.com, "Book checksum (WebSocket v2)"): take the top 10 asks,
//! price low to high, then the top 10 bids, price high to low; for each level append its
//! price then its quantity, each with the `.` removed and leading zeros stripped; the
//! checksum is the CRC32 of that string as an unsigned 32-bit value.
//!
//! [`crate::Book`] computes the same value incrementally (it caches each level's digits);
//! this function is the readable form, used to cross-check it and by tools that only have
//! levels in hand.

use gf_core::Level;

use crate::book::Precision;
use crate::num::checksum_digits;

/// Levels per side that enter the checksum.
pub const CHECKSUM_LEVELS: usize = 10;

/// The checksum of a book given as `asks` (best, lowest, first) and `bids` (best, highest,
/// first). Only the first [`CHECKSUM_LEVELS`] of each side count. With `precision`, numbers
/// written with fewer fractional digits than the pair's precision are padded back to it
/// (Kraken may trim trailing zeros of JSON numbers; the checksum uses full precision).
///
/// ```
/// use gf_core::Level;
/// use gf_market::checksum::checksum;
/// use rust_decimal::Decimal;
/// let asks = [Level { price: Decimal::new(452852, 1), qty: Decimal::new(100000, 8) }];
/// let bids = [Level { price: Decimal::new(452835, 1), qty: Decimal::new(10000000, 8) }];
/// // CRC32 of "452852100000" + "45283510000000".
/// assert_eq!(checksum(&asks, &bids, None), crc32fast::hash(b"45285210000045283510000000"));
/// ```
#[must_use]
pub fn checksum(asks: &[Level], bids: &[Level], precision: Option<Precision>) -> u32 {
    let mut text = Vec::with_capacity(CHECKSUM_LEVELS * 2 * 24);
    let mut buf = [0u8; 2 * crate::num::MAX_DIGITS];
    for level in asks
        .iter()
        .take(CHECKSUM_LEVELS)
        .chain(bids.iter().take(CHECKSUM_LEVELS))
    {
        let n = checksum_digits(level.price, precision.map(|p| p.price), &mut buf);
        text.extend_from_slice(&buf[..n]);
        let n = checksum_digits(level.qty, precision.map(|p| p.qty), &mut buf);
        text.extend_from_slice(&buf[..n]);
    }
    crc32fast::hash(&text)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::num::parse_decimal;

    fn levels(pairs: &[(&str, &str)]) -> Vec<Level> {
        pairs
            .iter()
            .map(|(p, q)| Level {
                price: parse_decimal(p, "price").unwrap(),
                qty: parse_decimal(q, "qty").unwrap(),
            })
            .collect()
    }

    /// The worked example of Kraken's "Book checksum (WebSocket v2)" guide.
    pub(crate) fn kraken_doc_example() -> (Vec<Level>, Vec<Level>) {
        let bids = levels(&[
            ("45283.5", "0.10000000"),
            ("45283.4", "1.54582015"),
            ("45282.1", "0.10000000"),
            ("45281.0", "0.10000000"),
            ("45280.3", "1.54592586"),
            ("45279.0", "0.07990000"),
            ("45277.6", "0.03310103"),
            ("45277.5", "0.30000000"),
            ("45277.3", "1.54602737"),
            ("45276.6", "0.15445238"),
        ]);
        let asks = levels(&[
            ("45285.2", "0.00100000"),
            ("45286.4", "1.54571953"),
            ("45286.6", "1.54571109"),
            ("45289.6", "1.54560911"),
            ("45290.2", "0.15890660"),
            ("45291.8", "1.54553491"),
            ("45294.7", "0.04454749"),
            ("45296.1", "0.35380000"),
            ("45297.5", "0.09945542"),
            ("45299.5", "0.18772827"),
        ]);
        (asks, bids)
    }

    #[test]
    fn matches_kraken_documented_example() {
        let (asks, bids) = kraken_doc_example();
        assert_eq!(checksum(&asks, &bids, None), 3_310_070_434);
        let precision = Precision { price: 1, qty: 8 };
        assert_eq!(checksum(&asks, &bids, Some(precision)), 3_310_070_434);
    }

    #[test]
    fn trimmed_wire_numbers_need_the_pair_precision() {
        // The same book with trailing zeros trimmed, as JSON numbers may arrive.
        let (asks, bids) = kraken_doc_example();
        let trim = |v: &[Level]| -> Vec<Level> {
            v.iter()
                .map(|l| Level {
                    price: l.price.normalize(),
                    qty: l.qty.normalize(),
                })
                .collect()
        };
        let (ta, tb) = (trim(&asks), trim(&bids));
        assert_ne!(checksum(&ta, &tb, None), 3_310_070_434);
        let precision = Precision { price: 1, qty: 8 };
        assert_eq!(checksum(&ta, &tb, Some(precision)), 3_310_070_434);
    }

    #[test]
    fn edge_cases_small_prices_trailing_zeros_and_short_books() {
        // Hand-computed strings: asks then bids, price then qty, '.' removed,
        // leading zeros stripped.
        let asks = levels(&[
            ("0.00001234", "1500.00000000"),
            ("0.00001240", "0.50000000"),
        ]);
        let bids = levels(&[("0.00001230", "10.10000000")]);
        let asks_text = concat!("1234", "150000000000", "1240", "50000000");
        let bids_text = concat!("1230", "1010000000");
        let expected = format!("{asks_text}{bids_text}");
        assert_eq!(
            checksum(&asks, &bids, None),
            crc32fast::hash(expected.as_bytes())
        );
        // Fewer than 10 levels, one side empty.
        assert_eq!(
            checksum(&asks, &[], None),
            crc32fast::hash(asks_text.as_bytes())
        );
        assert_eq!(checksum(&[], &[], None), crc32fast::hash(b""));
    }

    #[test]
    fn only_the_top_ten_levels_count() {
        let (asks, bids) = kraken_doc_example();
        let mut more_asks = asks.clone();
        more_asks.push(Level {
            price: parse_decimal("45300.0", "p").unwrap(),
            qty: parse_decimal("9.9", "q").unwrap(),
        });
        let mut more_bids = bids.clone();
        more_bids.push(Level {
            price: parse_decimal("45200.0", "p").unwrap(),
            qty: parse_decimal("9.9", "q").unwrap(),
        });
        assert_eq!(checksum(&more_asks, &more_bids, None), 3_310_070_434);
    }
}
