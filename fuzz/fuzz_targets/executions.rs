//! Kraken's private WebSocket v2 `executions` messages through the feed's parser and the
//! client's cumulative apply: each line of the input is one text message pushed on the
//! socket; two orders are tracked (a buy and a sell) so that reports for them reach
//! `apply_cumulative` and publish fills, and reports for any other id are held as
//! orphans. A report with any numbers, any status, in any order must be applied or
//! refused as malformed, never panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use gf_core::{ClientOrderId, OrderId, OrderRequest, Pair, Side, Source, SystemClock};
use gf_exec::events::Publisher;
use gf_exec::sign::FixedCredentials;
use gf_exec::{ExecutionsConfig, ExecutionsFeed, KrakenClient, KrakenConfig};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;

/// One client and feed for the whole run (building an HTTP client per input would be
/// most of the cost); nothing is sent: the feed is never started.
fn feed() -> &'static (Arc<KrakenClient>, ExecutionsFeed) {
    static FEED: OnceLock<(Arc<KrakenClient>, ExecutionsFeed)> = OnceLock::new();
    FEED.get_or_init(|| {
        let pairs = vec![Pair::new("XRP/USD").unwrap()];
        let mut cfg = KrakenConfig::new("http://127.0.0.1:9");
        cfg.pairs = pairs;
        let creds = FixedCredentials::from_raw("fuzz", b"fuzz-secret".to_vec());
        let events = Publisher::new(None, Arc::new(SystemClock), Source::Exec);
        let client = Arc::new(KrakenClient::new(cfg, Arc::new(creds), events).unwrap());
        let feed =
            ExecutionsFeed::new(client.clone(), ExecutionsConfig::new("ws://127.0.0.1:9/v2"))
                .unwrap();
        (client, feed)
    })
}

fn order(side: Side, id: &str) -> OrderRequest {
    OrderRequest::market(
        ClientOrderId::new(id),
        Pair::new("XRP/USD").unwrap(),
        side,
        Decimal::new(100, 0),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (client, feed) = feed();
    client.fuzz_forget_all();
    client.fuzz_track(
        &OrderId::new("OBUY00-AAAAA-BBBBBB"),
        &order(Side::Buy, "0123456789abcdef0123456789abcdef"),
    );
    client.fuzz_track(
        &OrderId::new("OSELL0-AAAAA-BBBBBB"),
        &order(Side::Sell, "fedcba9876543210fedcba9876543210"),
    );
    for line in text.lines().take(64) {
        feed.fuzz_message(line);
    }
    // An order first pushed, then tracked: its held reports are claimed.
    client.fuzz_track(
        &OrderId::new("OLATE0-AAAAA-BBBBBB"),
        &order(Side::Buy, "00000000000000000000000000000001"),
    );
});
