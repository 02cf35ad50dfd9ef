//! Fuzzed `POST /api/v1/orders` bodies against a paper daemon over 127.0.0.1, with a
//! trader token: valid orders, orders with one thing wrong (a wrong type, a number where a
//! decimal string belongs, a huge, negative or zero quantity, an unknown field, control
//! characters, a 10,000-character id, Unicode, a missing field, a duplicate key), garbage,
//! and earlier bodies again (idempotent retries and conflicting reuses of an id).
//!
//! Every answer must be a 2xx or a documented error: the JSON error shape, a code of
//! [`CODES`] with its status, never a 5xx but `exchange_rejected` (502) and
//! `not_journaled` / `unavailable` (503). And the exchange sees exactly the orders the
//! gateway accepted: a refused body never reaches it, a retry never places a second order.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gf_core::config::StrategyKind;
use gf_core::{Config, EventKind, KindSet, OrderStatus, Payload, Source, SystemClock};
use gf_daemon::api::error::CODES;
use gf_daemon::app::{Scenario, start};
use gf_daemon::auth::Role;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};

/// One request of a case.
#[derive(Debug, Clone)]
enum Case {
    /// Send these bytes with this content type.
    Send {
        /// What the generator meant (shown when an assertion fails).
        kind: &'static str,
        body: Vec<u8>,
        content_type: Option<&'static str>,
    },
    /// Send an earlier request again (index modulo the history).
    Repeat(usize),
}

/// Ids shared by many cases: retries and conflicting reuses.
fn client_order_id() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0u32..6).prop_map(|n| format!("dup-{n}")),
        4 => "[a-zA-Z0-9_.:-]{1,64}",
        1 => "[!-~]{64}",
    ]
}

fn decimal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("2".to_owned()),
        Just("5".to_owned()),
        Just("1.5".to_owned()),
        (1u32..20).prop_map(|n| n.to_string()),
    ]
}

/// A well-formed order: resting limits near the market, limits outside the price collar,
/// small market orders, sells the account cannot cover.
fn valid_order() -> BoxedStrategy<Value> {
    let xrp = prop_oneof![
        Just("2.1"),
        Just("2.12"),
        Just("2.25"),
        Just("1"),
        Just("3"),
        Just("2.2"),
    ];
    let doge = prop_oneof![Just("0.166"), Just("0.18"), Just("0.1"), Just("0.175")];
    (
        client_order_id(),
        any::<bool>(),
        prop::sample::select(vec!["buy", "buy", "sell"]),
        prop::sample::select(vec!["limit", "limit", "limit", "market"]),
        decimal_text(),
        xrp,
        doge,
        prop::sample::select(vec![None, Some("gtc"), Some("ioc")]),
        any::<bool>(),
    )
        .prop_map(
            |(id, is_xrp, side, kind, qty, xrp_price, doge_price, tif, post_only)| {
                let mut o = json!({
                    "client_order_id": id,
                    "pair": if is_xrp { "XRP/USD" } else { "DOGE/USD" },
                    "side": side,
                    "type": kind,
                    "qty": qty,
                });
                if kind == "limit" {
                    o["limit_price"] = json!(if is_xrp { xrp_price } else { doge_price });
                    if let Some(tif) = tif {
                        o["time_in_force"] = json!(tif);
                    }
                    if post_only && tif != Some("ioc") {
                        o["post_only"] = json!(true);
                    }
                } else if tif == Some("ioc") {
                    o["time_in_force"] = json!("ioc");
                }
                o
            },
        )
        .boxed()
}

/// Values that are wrong for one field or another.
fn odd_value() -> BoxedStrategy<Value> {
    let long = |c: &str, n: usize| Value::String(c.repeat(n));
    let fixed = vec![
        json!(null),
        json!(true),
        json!(0),
        json!(100),
        json!(0.5),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!([]),
        json!({}),
        json!(["1"]),
        json!({ "value": "1" }),
        json!(""),
        json!(" "),
        json!("0"),
        json!("-0"),
        json!("0.0"),
        json!("-1"),
        json!("-0.5"),
        json!("+1"),
        json!(" 1"),
        json!("1 "),
        json!("1."),
        json!(".5"),
        json!("1e5"),
        json!("1E-3"),
        json!("NaN"),
        json!("inf"),
        json!("0x10"),
        json!("1_000"),
        json!("1,5"),
        json!("\u{663}"),
        json!("0.0000000000000000000000000001"),
        json!("0.00000000000000000000000000001"),
        json!("79228162514264337593543950335"),
        json!("79228162514264337593543950336"),
        json!("99999999999999999999999999999999999999"),
        long("9", 10_000),
        json!("BUY"),
        json!("Buy"),
        json!("hold"),
        json!("stop"),
        json!("Market"),
        json!("fok"),
        json!("gtd"),
        json!("GTC"),
        json!("true"),
        json!("xrp/usd"),
        json!("XRP-USD"),
        json!("XRPUSD"),
        json!("BTC/USD"),
        json!("XRP/USD\u{0}"),
        json!("XRP/USD "),
        json!("\u{1b}[31mred"),
        json!("a\nb"),
        json!("a\u{7f}b"),
        json!("a\u{85}b"),
        json!("ordre-\u{e9}t\u{e9}"),
        json!("\u{1f680}"),
        json!("\u{202e}evil"),
        json!("a b"),
        long("a", 65),
        long("a", 10_000),
        long("\u{e9}", 10_000),
    ];
    prop_oneof![
        8 => prop::sample::select(fixed),
        1 => ".{0,80}".prop_map(Value::String),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<f64>().prop_map(|n| json!(n)),
    ]
    .boxed()
}

const FIELDS: [&str; 8] = [
    "client_order_id",
    "pair",
    "side",
    "type",
    "qty",
    "limit_price",
    "time_in_force",
    "post_only",
];

/// A valid order with one thing wrong.
fn near_valid() -> BoxedStrategy<(&'static str, Value)> {
    let field = prop::sample::select(FIELDS.to_vec());
    prop_oneof![
        (valid_order(), field.clone()).prop_map(|(mut o, f)| {
            o.as_object_mut().unwrap().remove(f);
            ("missing field", o)
        }),
        (valid_order(), field, odd_value()).prop_map(|(mut o, f, v)| {
            o[f] = v;
            ("odd value", o)
        }),
        (
            valid_order(),
            prop::sample::select(vec!["qty", "limit_price"]),
            0u32..1000
        )
            .prop_map(|(mut o, f, n)| {
                o[f] = json!(f64::from(n) / 10.0);
                ("number for a decimal", o)
            }),
        (
            valid_order(),
            prop::sample::select(vec![
                "leverage",
                "reduce_only",
                "__proto__",
                "",
                "Qty",
                "id"
            ]),
            odd_value(),
        )
            .prop_map(|(mut o, f, v)| {
                o[f] = v;
                ("unknown field", o)
            }),
        valid_order().prop_map(|mut o| {
            // Combinations the route refuses.
            if o["type"] == "market" {
                o["limit_price"] = json!("2.1");
            } else {
                o["time_in_force"] = json!("ioc");
                o["post_only"] = json!(true);
            }
            ("inconsistent", o)
        }),
        valid_order().prop_map(|o| ("not an object", json!([o]))),
    ]
    .boxed()
}

/// Any JSON value, nested a little.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
                    ".{0,8}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn text(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn case() -> BoxedStrategy<Case> {
    let content_type = prop_oneof![
        16 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(None),
        1 => Just(Some("text/plain")),
    ];
    let send = |kind: &'static str, body: BoxedStrategy<Vec<u8>>| {
        (body, content_type.clone()).prop_map(move |(body, content_type)| Case::Send {
            kind,
            body,
            content_type,
        })
    };
    prop_oneof![
        6 => send("valid", valid_order().prop_map(|o| text(&o)).boxed()),
        6 => (near_valid(), content_type.clone()).prop_map(|((kind, o), content_type)| {
            Case::Send {
                kind,
                body: text(&o),
                content_type,
            }
        }),
        1 => send(
            "duplicate key",
            (valid_order(), ".{0,12}")
                .prop_map(|(o, other)| {
                    let rest = text(&o);
                    let mut body = format!(r#"{{"client_order_id":{},"#, json!(other)).into_bytes();
                    body.extend_from_slice(&rest[1..]);
                    body
                })
                .boxed()
        ),
        1 => send(
            "truncated",
            (valid_order(), any::<prop::sample::Index>())
                .prop_map(|(o, at)| {
                    let t = text(&o);
                    t[..at.index(t.len())].to_vec()
                })
                .boxed()
        ),
        1 => send("any json", any_json().prop_map(|v| text(&v)).boxed()),
        1 => send("bytes", prop::collection::vec(any::<u8>(), 0..200).boxed()),
        1 => send(
            "deep or large",
            prop_oneof![
                Just(format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes()),
                Just(format!(r#"{{"client_order_id":"{}"}}"#, "x".repeat(40_000)).into_bytes()),
            ]
            .boxed()
        ),
        3 => any::<usize>().prop_map(Case::Repeat),
    ]
    .boxed()
}

/// An answer as the test reads it.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    server_timing: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &[u8],
    content_type: Option<&str>,
) -> Answer {
    let mut req = client
        .post(format!("{url}/api/v1/orders"))
        .bearer_auth(token)
        .body(body.to_vec());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, server_timing, retry_after) = (
        header("content-type").unwrap_or_default(),
        header("server-timing"),
        header("retry-after"),
    );
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    Answer {
        status,
        content_type,
        server_timing,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(format!("NOT JSON: {}", String::from_utf8_lossy(&bytes)))
        }),
    }
}

/// Codes answered before the gateway sees the order (no `Server-Timing`).
const BEFORE_THE_GATEWAY: [&str; 6] = [
    "invalid_json",
    "invalid_body",
    "payload_too_large",
    "unsupported_media_type",
    "unauthorized",
    "forbidden",
];

/// What the test remembers across cases.
#[derive(Debug, Default)]
struct Seen {
    /// Requests sent, for [`Case::Repeat`].
    history: Vec<(Vec<u8>, Option<&'static str>)>,
    /// Exchange ids of accepted orders, by the trader's id.
    accepted: BTreeMap<String, String>,
    /// First answers of 502 `exchange_rejected` (the exchange saw those orders).
    exchange_rejected: usize,
    /// Answers per status, to show what was covered.
    statuses: BTreeMap<u16, usize>,
    codes: BTreeMap<String, usize>,
}

fn check(seen: &mut Seen, kind: &str, body: &[u8], a: &Answer) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let what = format!("{kind} body {shown:?} answered {} {}", a.status, a.body);
    *seen.statuses.entry(a.status).or_default() += 1;
    if (200..300).contains(&a.status) {
        prop_assert!(a.status == 200 || a.status == 201, "{what}");
        let reply: gf_api::PlaceOrderReply = serde_json::from_value(a.body.clone())
            .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
        prop_assert_eq!(reply.replayed, a.status == 200, "{}", what);
        let sent: Value = serde_json::from_slice(body).unwrap();
        prop_assert_eq!(
            &sent["client_order_id"],
            &json!(reply.order.client_order_id),
            "{}",
            what
        );
        prop_assert!(!reply.order.exchange_client_order_id.is_empty(), "{what}");
        prop_assert_ne!(
            &reply.order.exchange_client_order_id,
            &reply.order.client_order_id,
            "the exchange id is the daemon's own: {}",
            what
        );
        prop_assert!(a.server_timing.is_some(), "no Server-Timing: {what}");
        match seen.accepted.get(&reply.order.client_order_id) {
            // A retry answers the first order, never a second one.
            Some(first) => {
                prop_assert!(reply.replayed, "a second 201 for one id: {what}");
                prop_assert_eq!(first, &reply.order.exchange_client_order_id, "{}", what);
            }
            None => {
                prop_assert!(
                    !reply.replayed,
                    "a replay of an order never accepted: {what}"
                );
                seen.accepted.insert(
                    reply.order.client_order_id.clone(),
                    reply.order.exchange_client_order_id.clone(),
                );
            }
        }
        return Ok(());
    }
    // An error: the JSON shape with a documented code and its status.
    prop_assert!(a.content_type.starts_with("application/json"), "{what}");
    let code = a.body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    *seen.codes.entry(code.clone()).or_default() += 1;
    let documented = CODES.iter().find(|(c, _, _)| *c == code);
    prop_assert!(documented.is_some(), "undocumented code: {what}");
    prop_assert_eq!(documented.map(|d| d.1), Some(a.status), "{}", what);
    prop_assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}"
    );
    prop_assert!(
        a.status < 500
            || (a.status == 502 && code == "exchange_rejected")
            || (a.status == 503 && (code == "not_journaled" || code == "unavailable")),
        "a 5xx: {what}"
    );
    if !BEFORE_THE_GATEWAY.contains(&code.as_str()) {
        let timing = a.server_timing.as_deref().unwrap_or_default();
        prop_assert!(
            timing.starts_with("gateway;dur="),
            "Server-Timing {timing:?}: {what}"
        );
    }
    if code == "invalid_field" {
        prop_assert!(a.body["error"]["detail"]["field"].is_string(), "{what}");
    }
    if code == "rate_limited" {
        let secs: u64 = a
            .retry_after
            .as_deref()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        prop_assert!(secs >= 1, "Retry-After {:?}: {what}", a.retry_after);
    }
    if code == "exchange_rejected" && a.body["error"]["detail"]["replayed"] != true {
        seen.exchange_rejected += 1;
    }
    Ok(())
}

#[test]
fn fuzzed_order_bodies_never_5xx_and_refused_ones_never_reach_the_exchange() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    // Only the gateway places orders, and its limits do not hide the checks behind 429s.
    cfg.strategy.kind = Some(StrategyKind::None);
    cfg.gateway.orders_per_second = 100_000;
    cfg.gateway.order_burst = 100_000;
    cfg.gateway.max_open_orders = 100_000;
    cfg.risk.max_orders_per_window = 100_000;
    cfg.risk.max_open_orders = 100_000;
    let running = rt
        .block_on(start(cfg, Scenario::Normal, Arc::new(SystemClock)))
        .unwrap();
    let url = running.url();
    let token = running.create_token("fuzz", Role::Trader).unwrap();
    let mut exchange_events = running
        .daemon
        .bus
        .subscribe(KindSet::of(&[EventKind::OrderUpdate]));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Once the paper book has prices, a valid resting order is accepted.
    let xrp: gf_core::Pair = "XRP/USD".parse().unwrap();
    rt.block_on(running.wait_for_price(&xrp, Duration::from_secs(30)))
        .unwrap();
    let mut seen = Seen::default();
    let probe = json!({"client_order_id": "probe-0",
        "pair": "XRP/USD", "side": "buy", "type": "limit", "qty": "1", "limit_price": "2.1"});
    let body = text(&probe);
    let a = rt.block_on(post(&client, &url, &token, &body, Some("application/json")));
    check(&mut seen, "probe", &body, &a).unwrap();
    seen.history.push((body, Some("application/json")));
    assert_eq!(a.status, 201, "a valid order is accepted: {}", a.body);

    let mut runner = TestRunner::new(RunnerConfig {
        cases: 400,
        failure_persistence: None,
        // Cases share one daemon: a shrunk case would run against another state. The
        // failure message shows the request and the answer instead.
        max_shrink_iters: 0,
        ..RunnerConfig::default()
    });
    let seen = std::cell::RefCell::new(seen);
    let result = runner.run(&case(), |case| {
        let mut seen = seen.borrow_mut();
        let (kind, body, content_type) = match case {
            Case::Send {
                kind,
                body,
                content_type,
            } => (kind, body, content_type),
            Case::Repeat(i) => {
                let (body, ct) = seen.history[i % seen.history.len()].clone();
                ("repeat", body, ct)
            }
        };
        let a = rt.block_on(post(&client, &url, &token, &body, content_type));
        seen.history.push((body.clone(), content_type));
        check(&mut seen, kind, &body, &a)
    });
    let seen = seen.into_inner();
    eprintln!("statuses {:?}", seen.statuses);
    eprintln!("codes {:?}", seen.codes);
    if let Err(e) = result {
        panic!("{e}");
    }
    // Valid bodies were accepted and refused bodies refused for the right reasons.
    for status in [201, 200, 400, 409, 422] {
        assert!(
            seen.statuses.contains_key(&status),
            "no {status}: {:?}",
            seen.statuses
        );
    }
    for code in [
        "invalid_body",
        "invalid_field",
        "idempotency_conflict",
        "risk_refused",
    ] {
        assert!(seen.codes.contains_key(code), "no {code}: {:?}", seen.codes);
    }

    // The exchange saw exactly the accepted orders (once each), plus those it rejected
    // itself: nothing refused by the daemon, nothing twice.
    let accepted: BTreeSet<&String> = seen.accepted.values().collect();
    let mut at_exchange: BTreeMap<String, Vec<OrderStatus>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = |at_exchange: &mut BTreeMap<String, Vec<OrderStatus>>, ev: &gf_core::Event| {
        if let (
            Source::Paper,
            Payload::OrderUpdate {
                client_order_id,
                status,
                ..
            },
        ) = (ev.source, &ev.payload)
        {
            at_exchange
                .entry(client_order_id.to_string())
                .or_default()
                .push(*status);
        }
    };
    loop {
        // Everything already published, then wait (woken by the next update) only while an
        // accepted order is missing; after the deadline the assertions below name it.
        while let Ok(ev) = exchange_events.try_recv() {
            record(&mut at_exchange, &ev);
        }
        if accepted.iter().all(|id| at_exchange.contains_key(*id)) {
            break;
        }
        match rt.block_on(tokio::time::timeout_at(deadline, exchange_events.recv())) {
            Ok(Ok(ev)) => record(&mut at_exchange, &ev),
            _ => break,
        }
    }
    for id in &accepted {
        assert!(
            at_exchange.contains_key(*id),
            "accepted order {id} never reached the exchange"
        );
    }
    let others: Vec<_> = at_exchange
        .iter()
        .filter(|(id, _)| !accepted.contains(id))
        .collect();
    assert!(
        others.len() <= seen.exchange_rejected,
        "orders at the exchange that the gateway did not accept: {others:?} ({} rejected by it)",
        seen.exchange_rejected
    );
    for (id, statuses) in &others {
        assert!(
            statuses.iter().all(|s| *s == OrderStatus::Rejected),
            "{id}: {statuses:?}"
        );
    }
    assert_eq!(
        running.daemon.halt.status().state,
        gf_core::HaltState::Running,
        "the fuzzing must not have halted the daemon (halt closures would place orders)"
    );
    rt.block_on(running.stop());
}
