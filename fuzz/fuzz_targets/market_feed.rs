//! Kraken v2 WebSocket messages through the parser, the book apply and the checksum:
//! the input is split into lines, each line one text message, fed to a feed processor
//! that learns its depth (as when verifying a recording); every valid book is then read
//! every way the daemon reads it.
//!
//! Each line also goes through a second processor with the fast path off (the general
//! serde path, the reference) and a third without events: after every line all three
//! must agree (same result, same events down to the decimals' scales, same counters,
//! resyncs and books).
#![no_main]

use gf_core::Payload;
use gf_market::{Book, BookSide, FeedProcessor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut feed = FeedProcessor::with_auto_depth(None);
    let mut general = FeedProcessor::with_auto_depth(None);
    general.set_fast_path(false);
    let mut quiet = FeedProcessor::with_auto_depth(None);
    let mut out: Vec<Payload> = Vec::new();
    let mut out_general: Vec<Payload> = Vec::new();
    for line in text.lines() {
        let r = feed.process(line, &mut out).map_err(|e| e.to_string());
        let rg = general
            .process(line, &mut out_general)
            .map_err(|e| e.to_string());
        let rq = quiet
            .process_without_events(line)
            .map_err(|e| e.to_string());
        assert_eq!(r, rg, "fast and general results differ on {line:?}");
        assert_eq!(rq, rg.map(|_| ()), "quiet and general results differ");
        assert_eq!(json(&out), json(&out_general), "events differ on {line:?}");
        assert_eq!(feed.stats(), general.stats(), "counters differ on {line:?}");
        assert_eq!(quiet.stats(), general.stats(), "quiet counters differ");
        let resyncs = general.take_resyncs();
        assert_eq!(feed.take_resyncs(), resyncs);
        assert_eq!(quiet.take_resyncs(), resyncs);
        for pair in general.stats().pairs.keys() {
            let books = [feed.book(pair), general.book(pair), quiet.book(pair)].map(shown);
            assert_eq!(books[0], books[1], "books differ after {line:?}");
            assert_eq!(books[2], books[1], "quiet book differs after {line:?}");
        }
        out.clear();
        out_general.clear();
    }
    let stats = feed.stats();
    for pair in stats.pairs.keys() {
        if let Some(book) = feed.book(pair) {
            exercise(book);
        }
    }
    let _ = feed.take_resyncs();
    feed.invalidate_all("fuzz", &mut out);
});

fn json(out: &[Payload]) -> Vec<String> {
    out.iter()
        .map(|p| serde_json::to_string(p).unwrap_or_default())
        .collect()
}

/// A book's levels as text (so the decimals' scales count) and its checksum.
fn shown(book: Option<&Book>) -> Option<(Vec<String>, u32)> {
    let book = book?;
    let mut levels: Vec<String> = book
        .side_iter(BookSide::Bid)
        .map(|l| format!("{}@{}", l.qty, l.price))
        .collect();
    levels.push("|".into());
    levels.extend(
        book.side_iter(BookSide::Ask)
            .map(|l| format!("{}@{}", l.qty, l.price)),
    );
    Some((levels, book.checksum()))
}

/// Reads a book every way the daemon does; the incremental checksum must equal the
/// readable one.
fn exercise(book: &Book) {
    let _ = (book.best_bid(), book.best_ask(), book.mid(), book.spread());
    let asks = book.top(BookSide::Ask, 10);
    let bids = book.top(BookSide::Bid, 10);
    assert_eq!(
        book.checksum(),
        gf_market::checksum::checksum(&asks, &bids, book.precision()),
        "incremental and readable checksums differ"
    );
    for side in [BookSide::Bid, BookSide::Ask] {
        for level in book.side_iter(side) {
            assert_eq!(book.qty_at(side, level.price), Some(level.qty));
        }
    }
}
