//! Kraken v2 WebSocket messages through the parser, the book apply and the checksum:
//! the input is split into lines, each line one text message, fed to a feed processor
//! that learns its depth (as when verifying a recording); every valid book is then read
//! every way the daemon reads it.
#![no_main]

use gf_core::Payload;
use gf_market::{Book, BookSide, FeedProcessor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut feed = FeedProcessor::with_auto_depth(None);
    let mut out: Vec<Payload> = Vec::new();
    for line in text.lines() {
        let _ = feed.process(line, &mut out);
        out.clear();
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
