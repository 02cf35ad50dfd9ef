//! Kraken REST responses through the client's parsers: the envelope, then the result as
//! an order map (`OpenOrders`, `ClosedOrders`, `QueryOrders`), as balances, and each
//! entry's cost and fee; plus form decoding and error-text sanitising of the same bytes.
//! The first two bytes choose the HTTP status.
#![no_main]

use gf_exec::wire::{self, PairMap};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) % 600, rest),
        _ => (200, data),
    };
    let pairs = PairMap::new(&[
        gf_core::Pair::new("XRP/USD").unwrap(),
        gf_core::Pair::new("DOGE/USD").unwrap(),
    ]);
    let text = String::from_utf8_lossy(body);
    let _ = wire::form_decode(&text);
    let cleaned = wire::sanitize_exchange_text(&text);
    assert!(cleaned.chars().count() <= wire::MAX_EXCHANGE_TEXT + 1);
    let _ = wire::classify(&text);
    let Ok(result) = wire::parse_envelope("OpenOrders", status, body) else {
        return;
    };
    let orders = result
        .get("open")
        .or_else(|| result.get("closed"))
        .unwrap_or(&result);
    let _ = wire::parse_order_map("OpenOrders", orders, &pairs);
    let _ = wire::parse_balances("Balance", &result);
    if let Value::Object(map) = orders {
        for (txid, order) in map {
            let _ = wire::parse_order("QueryOrders", txid, order, &pairs);
            let _ = wire::order_cost_fee(order);
            let _ = pairs.resolve(txid);
            let _ = wire::normalize_asset(txid);
        }
    }
});
