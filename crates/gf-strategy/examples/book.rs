//! gf-market's book code on its own: feed the first messages of the bundled paper
//! recording through [`FeedProcessor`] (the parser, the order books and Kraken's CRC32
//! check the daemon runs) and print each pair's best bid, best ask and spread.
//!
//! ```text
//! cargo run -p gf-strategy --example book          # the first 200 messages
//! cargo run -p gf-strategy --example book -- 2000
//! ```

use std::collections::BTreeSet;
use std::error::Error;

use gf_core::{Pair, Payload, Price};
use gf_market::FeedProcessor;

fn main() -> Result<(), Box<dyn Error>> {
    let messages = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|e| format!("{n:?} is not a count: {e}"))?,
        None => 200,
    };
    let (tops, verified) = tops(gf_market::bundled::PAPER, messages)?;
    println!("{messages} messages, {verified} book updates checksum-verified");
    for t in &tops {
        println!(
            "{:<10} bid {:>12}  ask {:>12}  spread {:>10} ({} bps)",
            t.pair.to_string(),
            t.bid,
            t.ask,
            t.spread,
            t.spread_bps.round_dp(2)
        );
    }
    Ok(())
}

/// A pair's top of book.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Top {
    pair: Pair,
    bid: Price,
    ask: Price,
    spread: Price,
    /// The spread in basis points of the mid.
    spread_bps: rust_decimal::Decimal,
}

/// Feeds the first `messages` lines of `recording` to a [`FeedProcessor`] and reads the
/// top of each pair's book, in pair order, with the number of checksum-verified updates.
/// A checksum mismatch is an error here: a book that failed its check is not shown.
fn tops(recording: &[u8], messages: usize) -> Result<(Vec<Top>, u64), Box<dyn Error>> {
    let mut feed = FeedProcessor::with_auto_depth(None);
    let mut events = Vec::new();
    let mut pairs = BTreeSet::new();
    let lines = recording
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(messages);
    for line in lines {
        feed.process(std::str::from_utf8(line)?, &mut events)?;
        for ev in events.drain(..) {
            if let Payload::BookSnapshot(s) = ev {
                pairs.insert(s.pair);
            }
        }
    }
    let stats = feed.stats();
    if stats.mismatches() > 0 {
        return Err(format!("{} checksum mismatch(es)", stats.mismatches()).into());
    }
    let mut out = Vec::new();
    for pair in pairs {
        let Some(book) = feed.book(&pair) else {
            continue; // invalid (awaiting a resync): no top to show
        };
        let (Some(bid), Some(ask), Some(spread), Some(mid)) =
            (book.best_bid(), book.best_ask(), book.spread(), book.mid())
        else {
            continue;
        };
        out.push(Top {
            spread_bps: spread / mid * rust_decimal::Decimal::from(10_000),
            pair,
            bid: bid.price,
            ask: ask.price,
            spread,
        });
    }
    Ok((out, stats.updates_verified()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_recording_has_a_sane_top_of_book_for_each_pair() {
        let (tops, verified) = tops(gf_market::bundled::PAPER, 200).unwrap();
        let pairs: Vec<String> = tops.iter().map(|t| t.pair.to_string()).collect();
        assert_eq!(pairs, ["DOGE/USD", "XRP/USD"]);
        assert!(verified > 0, "updates were checked against Kraken's CRC32");
        for t in &tops {
            assert!(t.bid < t.ask, "{t:?}");
            assert_eq!(t.spread, t.ask - t.bid, "{t:?}");
            assert!(t.spread_bps > rust_decimal::Decimal::ZERO, "{t:?}");
        }
    }

    #[test]
    fn the_book_moves_as_more_messages_are_read() {
        let (early, _) = tops(gf_market::bundled::PAPER, 50).unwrap();
        let (late, more) = tops(gf_market::bundled::PAPER, 2_000).unwrap();
        let (_, fewer) = tops(gf_market::bundled::PAPER, 50).unwrap();
        assert!(more > fewer);
        assert_ne!(
            early, late,
            "2 000 messages later the top of book has moved"
        );
    }
}
