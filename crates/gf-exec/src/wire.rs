//! Kraken REST wire details shared by the client and the mock server: form encoding, the
//! response envelope, error-string classification, asset and pair names, and order
//! parsing.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use gf_core::{
    ApiErrorKind, ClientOrderId, OrderId, OrderStatus, OrderType, Pair, Price, Qty, Side,
};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{Error, OrderInfo};

/// Percent-encodes `application/x-www-form-urlencoded` pairs in the given order.
#[must_use]
pub fn form_encode(params: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(text: &str, out: &mut String) {
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes a form body into ordered pairs. Malformed escapes are kept literally; invalid
/// UTF-8 is replaced, never a panic.
#[must_use]
pub fn form_decode(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| char::from(c).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Classifies one Kraken error string (`"EOrder:Insufficient funds"`).
#[must_use]
pub fn classify(message: &str) -> ApiErrorKind {
    let m = message.trim();
    let starts = |p: &str| m.starts_with(p);
    if starts("EAPI:Invalid nonce") {
        ApiErrorKind::InvalidNonce
    } else if starts("EAPI:Invalid key")
        || starts("EAPI:Invalid signature")
        || starts("EAPI:Bad request")
        || starts("EGeneral:Temporary lockout")
    {
        ApiErrorKind::Authentication
    } else if starts("EGeneral:Permission denied") || starts("EAPI:Feature disabled") {
        ApiErrorKind::PermissionDenied
    } else if starts("EOrder:Insufficient funds") || starts("EOrder:Insufficient margin") {
        ApiErrorKind::InsufficientFunds
    } else if m.contains("Rate limit exceeded")
        || starts("EGeneral:Too many requests")
        || starts("EService:Throttled")
    {
        ApiErrorKind::RateLimit
    } else if starts("EService:Unavailable")
        || starts("EService:Busy")
        || starts("EService:Deadline elapsed")
        || starts("EGeneral:Internal error")
    {
        ApiErrorKind::ServiceUnavailable
    } else if starts("EOrder:Unknown order") {
        ApiErrorKind::UnknownOrder
    } else if starts("EGeneral:Invalid arguments")
        || starts("EQuery:Unknown asset pair")
        || starts("EOrder:Invalid")
        || starts("EOrder:Order minimum not met")
        || starts("EOrder:Cost minimum not met")
        || starts("EOrder:Tick size check failed")
    {
        ApiErrorKind::InvalidArguments
    } else {
        ApiErrorKind::Other
    }
}

/// Longest exchange text (error body, error string) kept for a log line or an error.
pub const MAX_EXCHANGE_TEXT: usize = 200;

/// Shortest run of base64/hex-alphabet characters taken for a key, signature or token
/// and redacted (Kraken's API key is 56 characters, `API-Sign` 88).
const SECRET_RUN: usize = 40;

/// What is kept of text the exchange (or anything in between) sent, before it is logged
/// or put into an error: lines that look like HTTP headers (`Name: value`) are dropped;
/// from the first mention of `API-Key`, `API-Sign`, `Authorization` or a cookie on, the
/// rest is cut (an endpoint that echoes the request must not put the key in the log);
/// runs of 40 or more base64 characters become `[redacted]`; control characters become
/// spaces; at most [`MAX_EXCHANGE_TEXT`] characters remain.
#[must_use]
pub fn sanitize_exchange_text(text: &str) -> String {
    const SENSITIVE: [&str; 5] = ["api-key", "api-sign", "authorization", "cookie", "api_key"];
    let header_like = |line: &str| {
        let line = line.trim_start();
        line.split_once(": ").is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    let mut kept: String = text
        .split(['\n', '\r'])
        .filter(|line| !line.trim().is_empty() && !header_like(line))
        .collect::<Vec<_>>()
        .join(" ");
    let lower = kept.to_ascii_lowercase();
    if let Some(at) = SENSITIVE.iter().filter_map(|w| lower.find(w)).min() {
        kept.truncate(at);
        kept.push_str("[redacted]");
    }
    let mut out = String::with_capacity(kept.len().min(MAX_EXCHANGE_TEXT + 16));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= SECRET_RUN {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in kept.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-') {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut run, &mut out);
    if out.chars().count() > MAX_EXCHANGE_TEXT {
        out = out.chars().take(MAX_EXCHANGE_TEXT).collect();
        out.push('…');
    }
    out
}

fn snippet(body: &[u8]) -> String {
    sanitize_exchange_text(&String::from_utf8_lossy(body))
}

/// Reads Kraken's `{"error":[…],"result":…}` envelope.
///
/// # Errors
/// [`Error::Api`] for a non-empty error array (classified by its first entry),
/// [`Error::Server`] for a 5xx without a Kraken body, [`Error::Malformed`] otherwise.
pub fn parse_envelope(endpoint: &str, status: u16, body: &[u8]) -> Result<Value, Error> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let server = || Error::Server {
        endpoint: endpoint.to_owned(),
        status,
        snippet: snippet(body),
    };
    let malformed = || Error::Malformed {
        endpoint: endpoint.to_owned(),
        status,
        snippet: snippet(body),
    };
    let Ok(Value::Object(mut obj)) = parsed else {
        return Err(match status {
            500..=599 => server(),
            429 => Error::Api {
                endpoint: endpoint.to_owned(),
                kind: ApiErrorKind::RateLimit,
                message: format!("HTTP 429: {}", snippet(body)),
            },
            _ => malformed(),
        });
    };
    let errors: Vec<String> = match obj.get("error") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(malformed()),
    };
    if let Some(first) = errors.first() {
        return Err(Error::Api {
            endpoint: endpoint.to_owned(),
            kind: classify(first),
            message: sanitize_exchange_text(&errors.join("; ")),
        });
    }
    if status >= 500 {
        return Err(server());
    }
    match obj.remove("result") {
        Some(result) if !result.is_null() => Ok(result),
        _ => Err(malformed()),
    }
}

/// Kraken's legacy asset code to the common one (`XXBT` → `BTC`, `ZUSD` → `USD`,
/// `XXDG` → `DOGE`). Unknown codes are returned unchanged.
#[must_use]
pub fn normalize_asset(code: &str) -> String {
    let stripped = match code {
        "XXBT" | "XXRP" | "XXDG" | "XETH" | "XLTC" | "XXLM" | "XXMR" | "XETC" | "XZEC" | "XREP"
        | "XMLN" | "ZUSD" | "ZEUR" | "ZGBP" | "ZCAD" | "ZJPY" | "ZAUD" | "ZCHF" => &code[1..],
        other => other,
    };
    match stripped {
        "XBT" => "BTC".to_owned(),
        "XDG" => "DOGE".to_owned(),
        other => other.to_owned(),
    }
}

/// The common asset code to Kraken's REST alias (`BTC` → `XBT`, `DOGE` → `XDG`).
#[must_use]
pub fn kraken_asset(asset: &str) -> &str {
    match asset {
        "BTC" => "XBT",
        "DOGE" => "XDG",
        other => other,
    }
}

/// The REST name (`altname`) Kraken uses for a pair: `XRP/USD` → `XRPUSD`,
/// `DOGE/USD` → `XDGUSD`, `BTC/USD` → `XBTUSD`.
#[must_use]
pub fn rest_pair_name(pair: &Pair) -> String {
    format!(
        "{}{}",
        kraken_asset(pair.base()),
        kraken_asset(pair.quote())
    )
}

const QUOTES: &[&str] = &[
    "USDT", "USDC", "ZUSD", "ZEUR", "ZGBP", "ZCAD", "ZJPY", "USD", "EUR", "GBP", "CAD", "JPY",
    "CHF", "AUD", "XBT", "ETH", "DAI",
];

/// Maps REST pair names back to [`Pair`]s: names learnt from configured pairs or from
/// `AssetPairs`, else a split on well-known quote currencies.
#[derive(Debug, Clone, Default)]
pub struct PairMap {
    by_rest: HashMap<String, Pair>,
}

impl PairMap {
    /// A map knowing the given pairs by their default REST names.
    #[must_use]
    pub fn new(pairs: &[Pair]) -> Self {
        let mut map = Self::default();
        for p in pairs {
            map.insert(&rest_pair_name(p), p.clone());
        }
        map
    }

    /// Learns one REST name (an `altname` or a legacy name like `XXRPZUSD`).
    pub fn insert(&mut self, rest: &str, pair: Pair) {
        self.by_rest.insert(rest.to_owned(), pair);
    }

    /// The pair behind a REST name.
    #[must_use]
    pub fn resolve(&self, rest: &str) -> Option<Pair> {
        if let Some(p) = self.by_rest.get(rest) {
            return Some(p.clone());
        }
        if rest.contains('/') {
            return Pair::new(rest).ok();
        }
        QUOTES.iter().find_map(|q| {
            let base = rest.strip_suffix(q)?;
            if base.is_empty() {
                return None;
            }
            Pair::new(&format!("{}/{}", normalize_asset(base), normalize_asset(q))).ok()
        })
    }
}

fn dec(v: Option<&Value>) -> Option<Decimal> {
    match v? {
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

fn timestamp(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let text = match v? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let secs = Decimal::from_str(&text).ok()?;
    let micros = secs.checked_mul(Decimal::from(1_000_000))?.trunc();
    let micros: i64 = micros.try_into().ok()?;
    DateTime::from_timestamp_micros(micros)
}

/// Parses one order of an `OpenOrders` / `ClosedOrders` / `QueryOrders` answer.
///
/// # Errors
/// [`Error::Malformed`] naming the missing or bad field.
pub fn parse_order(
    endpoint: &str,
    txid: &str,
    order: &Value,
    pairs: &PairMap,
) -> Result<OrderInfo, Error> {
    let bad = |what: &str| Error::Malformed {
        endpoint: endpoint.to_owned(),
        status: 200,
        snippet: format!("order {txid}: {what}"),
    };
    let descr = order.get("descr").ok_or_else(|| bad("no descr"))?;
    let pair_name = descr
        .get("pair")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no descr.pair"))?;
    let pair = pairs
        .resolve(pair_name)
        .ok_or_else(|| bad(&format!("unknown pair {pair_name:?}")))?;
    let side = match descr.get("type").and_then(Value::as_str) {
        Some("buy") => Side::Buy,
        Some("sell") => Side::Sell,
        other => return Err(bad(&format!("bad descr.type {other:?}"))),
    };
    let order_type = match descr.get("ordertype").and_then(Value::as_str) {
        Some("market") => OrderType::Market,
        Some("limit") => OrderType::Limit,
        other => return Err(bad(&format!("unsupported descr.ordertype {other:?}"))),
    };
    let qty: Qty = dec(order.get("vol")).ok_or_else(|| bad("bad vol"))?;
    let filled_qty: Qty = dec(order.get("vol_exec")).unwrap_or_default();
    let limit_price: Option<Price> = match order_type {
        OrderType::Limit => dec(descr.get("price")),
        OrderType::Market => None,
    };
    let avg_price = dec(order.get("price")).filter(|p| !p.is_zero() && !filled_qty.is_zero());
    let status = match order.get("status").and_then(Value::as_str) {
        Some("pending") => OrderStatus::Pending,
        Some("open") if filled_qty.is_zero() => OrderStatus::Open,
        Some("open") => OrderStatus::PartiallyFilled,
        Some("closed") => OrderStatus::Filled,
        Some("canceled" | "cancelled") => OrderStatus::Cancelled,
        Some("expired") => OrderStatus::Expired,
        other => return Err(bad(&format!("bad status {other:?}"))),
    };
    let client_order_id = order
        .get("cl_ord_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(ClientOrderId::new);
    let reduce_only = order
        .get("reduce_only")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(OrderInfo {
        order_id: OrderId::new(txid),
        client_order_id,
        pair,
        side,
        order_type,
        qty,
        filled_qty,
        limit_price,
        avg_price,
        status,
        reduce_only,
        opened_at: timestamp(order.get("opentm")),
    })
}

/// The executed cost and fee of one order answer (zero when absent).
#[must_use]
pub fn order_cost_fee(order: &Value) -> (Decimal, Decimal) {
    (
        dec(order.get("cost")).unwrap_or_default(),
        dec(order.get("fee")).unwrap_or_default(),
    )
}

/// Parses a `{txid: order, …}` map, sorted by opening time then id (deterministic).
///
/// # Errors
/// As [`parse_order`]; [`Error::Malformed`] when `map` is not an object.
pub fn parse_order_map(
    endpoint: &str,
    map: &Value,
    pairs: &PairMap,
) -> Result<Vec<OrderInfo>, Error> {
    let obj = map.as_object().ok_or_else(|| Error::Malformed {
        endpoint: endpoint.to_owned(),
        status: 200,
        snippet: "expected an object of orders".into(),
    })?;
    let mut out = obj
        .iter()
        .map(|(txid, order)| parse_order(endpoint, txid, order, pairs))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| {
        a.opened_at
            .cmp(&b.opened_at)
            .then_with(|| a.order_id.cmp(&b.order_id))
    });
    Ok(out)
}

/// Parses a `Balance` answer into common asset codes.
///
/// # Errors
/// [`Error::Malformed`] for a non-object or a non-decimal amount.
pub fn parse_balances(
    endpoint: &str,
    result: &Value,
) -> Result<std::collections::BTreeMap<String, Decimal>, Error> {
    let bad = |what: String| Error::Malformed {
        endpoint: endpoint.to_owned(),
        status: 200,
        snippet: what,
    };
    let obj = result
        .as_object()
        .ok_or_else(|| bad("expected an object of balances".into()))?;
    let mut out = std::collections::BTreeMap::new();
    for (asset, amount) in obj {
        let amount = dec(Some(amount)).ok_or_else(|| bad(format!("bad amount for {asset}")))?;
        *out.entry(normalize_asset(asset)).or_insert(Decimal::ZERO) += amount;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_roundtrip_and_escapes() {
        let body = form_encode(&[("nonce", "1".into()), ("cl_ord_id", "a b/c&d=é".into())]);
        assert_eq!(body, "nonce=1&cl_ord_id=a+b%2Fc%26d%3D%C3%A9");
        assert_eq!(
            form_decode(&body),
            vec![
                ("nonce".to_owned(), "1".to_owned()),
                ("cl_ord_id".to_owned(), "a b/c&d=é".to_owned())
            ]
        );
        assert_eq!(
            form_decode("a=%zz&b&=%4"),
            vec![
                ("a".to_owned(), "%zz".to_owned()),
                ("b".to_owned(), String::new()),
                (String::new(), "%4".to_owned()),
            ]
        );
    }

    #[test]
    fn error_strings_are_classified() {
        struct Case {
            input: &'static str,
            expected: ApiErrorKind,
        }
        let cases = [
            Case {
                input: "EAPI:Invalid nonce",
                expected: ApiErrorKind::InvalidNonce,
            },
            Case {
                input: "EAPI:Invalid key",
                expected: ApiErrorKind::Authentication,
            },
            Case {
                input: "EAPI:Invalid signature",
                expected: ApiErrorKind::Authentication,
            },
            Case {
                input: "EGeneral:Permission denied",
                expected: ApiErrorKind::PermissionDenied,
            },
            Case {
                input: "EOrder:Insufficient funds",
                expected: ApiErrorKind::InsufficientFunds,
            },
            Case {
                input: "EAPI:Rate limit exceeded",
                expected: ApiErrorKind::RateLimit,
            },
            Case {
                input: "EOrder:Rate limit exceeded",
                expected: ApiErrorKind::RateLimit,
            },
            Case {
                input: "EService:Unavailable",
                expected: ApiErrorKind::ServiceUnavailable,
            },
            Case {
                input: "EService:Busy",
                expected: ApiErrorKind::ServiceUnavailable,
            },
            Case {
                input: "EGeneral:Invalid arguments:volume",
                expected: ApiErrorKind::InvalidArguments,
            },
            Case {
                input: "EOrder:Unknown order",
                expected: ApiErrorKind::UnknownOrder,
            },
            Case {
                input: "EFunding:Whatever",
                expected: ApiErrorKind::Other,
            },
        ];
        for case in cases {
            assert_eq!(classify(case.input), case.expected, "{}", case.input);
        }
    }

    #[test]
    fn envelope_outcomes() {
        let ok = parse_envelope("Balance", 200, br#"{"error":[],"result":{"ZUSD":"1"}}"#).unwrap();
        assert_eq!(ok, json!({"ZUSD":"1"}));
        let err = parse_envelope(
            "AddOrder",
            200,
            br#"{"error":["EOrder:Insufficient funds"]}"#,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ApiErrorKind::InsufficientFunds);
        let html = parse_envelope(
            "AddOrder",
            502,
            b"<html><body>502 Bad Gateway</body></html>",
        )
        .unwrap_err();
        assert!(matches!(html, Error::Server { status: 502, .. }), "{html}");
        let garbage = parse_envelope("Balance", 200, b"not json").unwrap_err();
        assert!(matches!(garbage, Error::Malformed { status: 200, .. }));
        let limited = parse_envelope("Balance", 429, b"slow down").unwrap_err();
        assert_eq!(limited.kind(), ApiErrorKind::RateLimit);
        let no_result = parse_envelope("Balance", 200, br#"{"error":[]}"#).unwrap_err();
        assert!(matches!(no_result, Error::Malformed { .. }));
        let bad_error = parse_envelope("Balance", 200, br#"{"error":"x"}"#).unwrap_err();
        assert!(matches!(bad_error, Error::Malformed { .. }));
        let json_5xx = parse_envelope("Balance", 503, br#"{"error":[],"result":{}}"#).unwrap_err();
        assert!(matches!(json_5xx, Error::Server { status: 503, .. }));
    }

    #[test]
    fn assets_and_pairs_map_both_ways() {
        assert_eq!(normalize_asset("XXBT"), "BTC");
        assert_eq!(normalize_asset("XXDG"), "DOGE");
        assert_eq!(normalize_asset("ZUSD"), "USD");
        assert_eq!(normalize_asset("XRP"), "XRP");
        assert_eq!(normalize_asset("USDT"), "USDT");
        let xrp = Pair::new("XRP/USD").unwrap();
        let doge = Pair::new("DOGE/USD").unwrap();
        assert_eq!(rest_pair_name(&doge), "XDGUSD");
        let map = PairMap::new(&[xrp.clone(), doge.clone()]);
        assert_eq!(map.resolve("XRPUSD"), Some(xrp.clone()));
        assert_eq!(map.resolve("XDGUSD"), Some(doge));
        assert_eq!(map.resolve("XXRPZUSD"), Some(xrp));
        assert_eq!(map.resolve("XBTUSDT"), Some(Pair::new("BTC/USDT").unwrap()));
        assert_eq!(map.resolve("ETH/EUR"), Some(Pair::new("ETH/EUR").unwrap()));
        assert_eq!(map.resolve("???"), None);
    }

    #[test]
    fn parses_kraken_order_shapes() {
        let map = PairMap::new(&[Pair::new("XRP/USD").unwrap()]);
        let open = json!({
            "OQCLML-BW3P3-BUCMWZ": {
                "refid": null, "userref": 0, "cl_ord_id": "c-1", "status": "open",
                "opentm": 1688666559.8974,
                "descr": {"pair": "XRPUSD", "type": "buy", "ordertype": "limit", "price": "0.5000"},
                "vol": "10.00000000", "vol_exec": "2.5", "cost": "1.25", "fee": "0", "price": "0.5"
            }
        });
        let orders = parse_order_map("OpenOrders", &open, &map).unwrap();
        assert_eq!(orders.len(), 1);
        let o = &orders[0];
        assert_eq!(o.status, OrderStatus::PartiallyFilled);
        assert_eq!(o.limit_price, Some(Decimal::new(5, 1)));
        assert_eq!(o.avg_price, Some(Decimal::new(5, 1)));
        assert_eq!(o.client_order_id, Some(ClientOrderId::new("c-1")));
        assert_eq!(o.opened_at.unwrap().timestamp(), 1_688_666_559);
        let huge_time = json!({"X": {
            "status": "open", "opentm": "79228162514264337593543950335",
            "descr": {"pair": "XRPUSD", "type": "buy", "ordertype": "market"}, "vol": "1"
        }});
        let parsed = parse_order_map("OpenOrders", &huge_time, &map).unwrap();
        assert_eq!(parsed[0].opened_at, None);
        let bad = json!({"X": {"descr": {"pair": "XRPUSD", "type": "hold", "ordertype": "limit"}, "vol": "1"}});
        let err = parse_order_map("OpenOrders", &bad, &map).unwrap_err();
        assert!(err.to_string().contains("hold"));
        assert!(parse_order_map("OpenOrders", &json!([]), &map).is_err());
    }

    #[test]
    fn parses_balances() {
        let b = parse_balances(
            "Balance",
            &json!({"ZUSD": "100.5", "XXRP": "3", "USD.HOLD": "1"}),
        )
        .unwrap();
        assert_eq!(b["USD"], Decimal::new(1005, 1));
        assert_eq!(b["XRP"], Decimal::new(3, 0));
        assert!(parse_balances("Balance", &json!({"ZUSD": "lots"})).is_err());
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_form_roundtrip(pairs in proptest::collection::vec(("[a-z_]{1,8}", ".{0,16}"), 0..6)) {
            let borrowed: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let decoded = form_decode(&form_encode(&borrowed));
            let expected: Vec<(String, String)> = pairs.into_iter().collect();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn prop_envelope_never_panics(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_envelope("Balance", status, &body);
        }

        #[test]
        fn prop_form_decode_never_panics(body in ".{0,100}") {
            let _ = form_decode(&body);
        }
    }
}
