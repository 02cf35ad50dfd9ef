//! The Kraken REST client against the mock Kraken server over real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use gf_core::{
    ApiErrorKind, ClientOrderId, CredentialHandle, EventBus, EventKind, GateOpener, KindSet,
    OrderPurpose, OrderRequest, OrderStatus, Pair, Payload, Position, SharedClock, Side, Source,
    Subscription, SystemClock, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::paper::POST_ONLY_CANCEL_REASON;
use gf_exec::ratelimit::{Lane, Limits};
use gf_exec::sign::{FixedCredentials, api_sign};
use gf_exec::sim::{Fault, MockConfig, MockKraken, MockKrakenHandle};
use gf_exec::{Error, Exchange, KrakenClient, KrakenConfig, OrderRef};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use common::{TokioClock, wait_for};

fn order(id: &str, side: Side, qty: Decimal, limit: Option<Decimal>) -> OrderRequest {
    let id = ClientOrderId::new(id);
    match limit {
        Some(price) => OrderRequest::limit(id, Pair::new("XRP/USD").unwrap(), side, qty, price),
        None => OrderRequest::market(id, Pair::new("XRP/USD").unwrap(), side, qty),
    }
}

/// Turns `o` into a halt closure sealed by `opener` against a position it flattens.
fn seal(o: &mut OrderRequest, opener: &GateOpener) {
    o.purpose = OrderPurpose::HaltClosure;
    let mut position = Position::flat(o.pair.clone());
    position.qty = -o.side.sign() * o.qty;
    o.closure_seal = Some(
        opener
            .seal_closure(&o.client_order_id, &position, o.qty)
            .unwrap(),
    );
}

struct Setup {
    server: MockKrakenHandle,
    client: Arc<KrakenClient>,
    bus: EventBus,
    opener: GateOpener,
}

async fn setup_with(mock: MockConfig, tune: impl FnOnce(&mut KrakenConfig)) -> Setup {
    setup_on(Arc::new(SystemClock), mock, tune).await
}

/// As [`setup_with`], the client reading the time from `clock`.
async fn setup_on(
    clock: SharedClock,
    mock: MockConfig,
    tune: impl FnOnce(&mut KrakenConfig),
) -> Setup {
    let server = MockKraken::start(mock).await.unwrap();
    let bus = EventBus::new(4096);
    let mut cfg = KrakenConfig::new(server.url());
    cfg.timeout = Duration::from_secs(1);
    cfg.retry_backoff = Duration::from_millis(10);
    cfg.rest_limits = Limits {
        max: 1000,
        decay_milli_per_sec: 1_000_000,
        priority_reserve: 10,
    };
    cfg.trading_limits = cfg.rest_limits;
    tune(&mut cfg);
    let gate = TradingGate::new_open();
    let opener = gate.take_opener().unwrap();
    let client = KrakenClient::new(
        cfg,
        Arc::new(server.credentials()),
        Publisher::new(Some(bus.clone()), clock, Source::Exec),
    )
    .unwrap()
    .with_gate(gate);
    Setup {
        server,
        client: Arc::new(client),
        bus,
        opener,
    }
}

async fn setup() -> Setup {
    setup_with(MockConfig::default(), |_| {}).await
}

fn drain(sub: &mut Subscription) -> Vec<Payload> {
    std::iter::from_fn(|| sub.try_recv().ok())
        .map(|ev| ev.payload.clone())
        .collect()
}

#[tokio::test]
async fn place_query_cancel_and_cancel_all() {
    let s = setup().await;
    let mut sub = s
        .bus
        .subscribe(KindSet::of(&[EventKind::OrderUpdate, EventKind::Latency]));
    let ack = s
        .client
        .place_order(&order("rest-1", Side::Buy, dec!(100), Some(dec!(0.40))))
        .await
        .unwrap();
    assert_eq!(ack.client_order_id.as_str(), "rest-1");
    let by_id = s
        .client
        .order_status(&OrderRef::Exchange(ack.order_id.clone()))
        .await
        .unwrap();
    assert_eq!(by_id.status, OrderStatus::Open);
    assert_eq!(by_id.limit_price, Some(dec!(0.40)));
    assert_eq!(by_id.qty, dec!(100));
    let by_client = s
        .client
        .order_status(&OrderRef::Client(ClientOrderId::new("rest-1")))
        .await
        .unwrap();
    assert_eq!(by_client.order_id, ack.order_id);
    assert_eq!(s.client.open_orders().await.unwrap().len(), 1);

    s.client
        .cancel_order(&OrderRef::Exchange(ack.order_id.clone()))
        .await
        .unwrap();
    let after = s
        .client
        .order_status(&OrderRef::Exchange(ack.order_id.clone()))
        .await
        .unwrap();
    assert_eq!(after.status, OrderStatus::Cancelled);
    let again = s
        .client
        .cancel_order(&OrderRef::Exchange(ack.order_id.clone()))
        .await
        .unwrap_err();
    assert!(matches!(again, Error::UnknownOrder(_)), "{again}");

    for id in ["rest-2", "rest-3"] {
        s.client
            .place_order(&order(id, Side::Sell, dec!(10), Some(dec!(0.90))))
            .await
            .unwrap();
    }
    s.client
        .cancel_order(&OrderRef::Client(ClientOrderId::new("rest-3")))
        .await
        .unwrap();
    s.client
        .place_order(&order("rest-4", Side::Sell, dec!(10), Some(dec!(0.95))))
        .await
        .unwrap();
    assert_eq!(s.client.cancel_all().await.unwrap(), 2);
    assert!(s.client.open_orders().await.unwrap().is_empty());

    // A market order fills at the mock's price and moves balances.
    let ack = s
        .client
        .place_order(&order("mkt-1", Side::Buy, dec!(20), None))
        .await
        .unwrap();
    let filled = s
        .client
        .order_status(&OrderRef::Exchange(ack.order_id))
        .await
        .unwrap();
    assert_eq!(filled.status, OrderStatus::Filled);
    assert_eq!(filled.avg_price, Some(dec!(0.5)));
    let balances = s.client.balances().await.unwrap();
    assert_eq!(balances["XRP"], dec!(1020));
    assert_eq!(balances["USD"], dec!(99990));
    let positions = s.client.open_positions().await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].qty, dec!(1020));
    s.client.check().await.unwrap();

    let events = drain(&mut sub);
    let updates: Vec<(String, OrderStatus)> = events
        .iter()
        .filter_map(|p| match p {
            Payload::OrderUpdate {
                client_order_id,
                status,
                ..
            } => Some((client_order_id.0.clone(), *status)),
            _ => None,
        })
        .collect();
    assert!(updates.contains(&("rest-1".into(), OrderStatus::Open)));
    assert!(updates.contains(&("rest-1".into(), OrderStatus::Cancelled)));
    assert!(updates.contains(&("rest-2".into(), OrderStatus::Cancelled)));
    assert!(
        events
            .iter()
            .any(|p| matches!(p, Payload::Latency { stage, .. } if stage == "order_ack"))
    );
    // Every request was signed with the documented headers and a nonce.
    let requests = s.server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.api_key.as_deref() == Some(s.server.api_key()) && r.nonce.is_some())
    );
    let refused: Vec<(&str, &str)> = requests
        .iter()
        .filter(|r| r.outcome != "ok")
        .map(|r| (r.endpoint.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(refused, vec![("CancelOrder", "EOrder:Unknown order")]);
}

#[tokio::test]
async fn bad_signature_and_bad_key_are_rejected_with_krakens_errors() {
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    let bus = EventBus::new(64);
    let mut errors = bus.subscribe(KindSet::of(&[EventKind::ApiError]));
    let mut cfg = KrakenConfig::new(server.url());
    cfg.max_retries = 0;
    let wrong_secret = KrakenClient::new(
        cfg.clone(),
        Arc::new(FixedCredentials::from_raw(server.api_key(), vec![7; 64])),
        Publisher::new(Some(bus.clone()), Arc::new(SystemClock), Source::Exec),
    )
    .unwrap();
    let err = wrong_secret.balances().await.unwrap_err();
    match &err {
        Error::Api { kind, message, .. } => {
            assert_eq!(*kind, ApiErrorKind::Authentication);
            assert_eq!(message, "EAPI:Invalid signature");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_retryable());
    let wrong_key = KrakenClient::new(
        cfg.clone(),
        Arc::new(FixedCredentials::from_base64("someone-else", server.secret_b64()).unwrap()),
        Publisher::new(None, Arc::new(SystemClock), Source::Exec),
    )
    .unwrap()
    .with_gate(TradingGate::new_open());
    let err = wrong_key
        .place_order(&order("k", Side::Buy, dec!(1), None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("EAPI:Invalid key"), "{err}");
    assert!(server.orders().is_empty());
    let outcomes: Vec<String> = server.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, vec!["EAPI:Invalid signature", "EAPI:Invalid key"]);
    match &errors.recv().await.unwrap().payload {
        Payload::ApiError {
            endpoint,
            kind,
            retryable,
            ..
        } => {
            assert_eq!(endpoint, "Balance");
            assert_eq!(*kind, ApiErrorKind::Authentication);
            assert!(!retryable);
        }
        other => panic!("unexpected {other:?}"),
    }

    #[derive(Debug)]
    struct Empty;
    impl CredentialHandle for Empty {
        fn with_credentials(&self, _sign: &mut dyn FnMut(&str, &[u8])) -> bool {
            false
        }
        fn version(&self) -> Option<String> {
            None
        }
    }
    let no_creds = KrakenClient::new(
        cfg,
        Arc::new(Empty),
        Publisher::new(None, Arc::new(SystemClock), Source::Exec),
    )
    .unwrap();
    assert!(matches!(
        no_creds.check().await,
        Err(Error::NoCredentials { version: None })
    ));
    assert_eq!(
        server.requests().len(),
        2,
        "nothing sent without credentials"
    );
}

#[tokio::test]
async fn replayed_or_missing_nonce_is_rejected() {
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    let creds = server.credentials();
    let http = reqwest::Client::new();
    let send = |nonce: u64, body: String| {
        let mut sign = String::new();
        creds.with_credentials(&mut |_, secret| {
            sign = api_sign("/0/private/Balance", nonce, &body, secret);
        });
        http.post(format!("{}/0/private/Balance", server.url()))
            .header("API-Key", server.api_key())
            .header("API-Sign", sign)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let first = send(1000, "nonce=1000".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(first.contains(r#""error":[]"#), "{first}");
    let replay = send(1000, "nonce=1000".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(replay.contains("EAPI:Invalid nonce"), "{replay}");
    let lower = send(999, "nonce=999".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(lower.contains("EAPI:Invalid nonce"), "{lower}");
    let missing = send(1001, "asset=ZUSD".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(missing.contains("EAPI:Invalid nonce"), "{missing}");
    let higher = send(1001, "nonce=1001".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(higher.contains(r#""error":[]"#), "{higher}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_monotonic_under_100_concurrent_requests() {
    let mock = MockConfig {
        nonce_window: 60_000_000,
        ..MockConfig::default()
    };
    // A generous timeout: a retried request would add a nonce to the count below.
    let s = setup_with(mock, |c| c.timeout = Duration::from_secs(30)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = s.client.clone();
        tasks.spawn(async move { client.balances().await });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap().unwrap();
    }
    let requests = s.server.requests();
    assert_eq!(requests.len(), 100);
    assert!(
        requests.iter().all(|r| r.outcome == "ok"),
        "no nonce refused"
    );
    let mut nonces: Vec<u64> = requests.iter().map(|r| r.nonce.unwrap()).collect();
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(nonces.len(), 100, "every nonce distinct");
    assert_eq!(s.client.last_nonce(), *nonces.last().unwrap());
    // A later request always carries a nonce above all earlier ones.
    s.client.balances().await.unwrap();
    let last = s.server.requests().last().unwrap().nonce.unwrap();
    assert!(last > *nonces.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_holds_the_counter_under_the_tier_limit() {
    // Kraken's starter maximum (15) with a faster decay so the test takes about a second.
    let limits = Limits {
        max: 15,
        decay_milli_per_sec: 20_000,
        priority_reserve: 2,
    };
    let mock = MockConfig {
        rest_limits: Some(limits),
        nonce_window: 60_000_000,
        ..MockConfig::default()
    };
    let s = setup_with(mock.clone(), |c| {
        c.rest_limits = limits;
        c.max_retries = 0;
        c.timeout = Duration::from_secs(30);
    })
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let client = s.client.clone();
        tasks.spawn(async move { client.open_orders().await });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap().unwrap();
    }
    assert!(
        s.server
            .requests()
            .iter()
            .all(|r| r.outcome != "EAPI:Rate limit exceeded")
    );
    assert!(s.server.peak_counter_milli() <= 15_000);
    assert!(s.client.rest_limiter().peak_milli() <= 13_000);

    // The same burst without the client's limiter is refused by a server whose counter
    // decays at the real starter rate (0.33/s).
    let starter = MockConfig {
        rest_limits: Some(gf_exec::ratelimit::Limits::rest(
            gf_exec::ratelimit::Tier::Starter,
        )),
        ..mock
    };
    let unlimited = setup_with(starter, |c| {
        c.max_retries = 0;
        c.timeout = Duration::from_secs(30);
    })
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let client = unlimited.client.clone();
        tasks.spawn(async move { client.open_orders().await });
    }
    let mut refused = 0;
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res.unwrap() {
            assert_eq!(e.kind(), ApiErrorKind::RateLimit);
            refused += 1;
        }
    }
    assert!(refused > 0, "the mock enforces the counter");
}

fn count_orders(server: &MockKrakenHandle, cl: &str) -> usize {
    server
        .orders()
        .iter()
        .filter(|o| o.cl_ord_id.as_deref() == Some(cl))
        .count()
}

// Paused tokio time (the mock and the client on a clock that follows it): the stalls,
// timeouts and the look-ups until the `deadline` take no real time.
#[tokio::test(start_paused = true)]
async fn every_injected_fault_yields_its_typed_error_and_no_doubled_order() {
    let clock: SharedClock = Arc::new(TokioClock::new());
    let mock = MockConfig {
        clock: clock.clone(),
        ..MockConfig::default()
    };
    let s = setup_on(clock, mock, |c| c.max_retries = 0).await;
    let mut api_errors = s.bus.subscribe(KindSet::of(&[EventKind::ApiError]));

    struct Case {
        fault: Fault,
        check: fn(&Error) -> bool,
        placed: usize,
    }
    let cases = [
        Case {
            fault: Fault::ServerError(502),
            check: |e| matches!(e, Error::Server { status: 502, .. }),
            placed: 0,
        },
        Case {
            fault: Fault::RateLimit,
            check: |e| e.kind() == ApiErrorKind::RateLimit && e.is_retryable(),
            placed: 0,
        },
        Case {
            fault: Fault::Unavailable,
            check: |e| e.kind() == ApiErrorKind::ServiceUnavailable,
            placed: 0,
        },
        Case {
            fault: Fault::NotJson,
            check: |e| matches!(e, Error::Malformed { status: 200, .. }),
            placed: 0,
        },
        Case {
            fault: Fault::Stall(Duration::from_secs(10)),
            check: |e| matches!(e, Error::Timeout { .. }),
            placed: 0,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let id = format!("fault-{i}");
        s.server
            .faults()
            .inject(Some("AddOrder"), case.fault.clone());
        let err = s
            .client
            .place_order(&order(&id, Side::Buy, dec!(10), Some(dec!(0.40))))
            .await
            .unwrap_err();
        assert!((case.check)(&err), "{:?} gave {err:?}", case.fault);
        assert_eq!(
            count_orders(&s.server, &id),
            case.placed,
            "{:?}",
            case.fault
        );
        let ev = api_errors.recv().await.unwrap();
        assert!(
            matches!(&ev.payload, Payload::ApiError { endpoint, kind, .. }
                if endpoint == "AddOrder" && *kind == err.kind()),
            "{:?}",
            ev.payload
        );
    }

    // The answer is lost after the order was accepted: the client times out, reconciles by
    // client order id and reports the order instead of placing it again.
    s.server.faults().inject(
        Some("AddOrder"),
        Fault::DropAfterAccept(Duration::from_secs(10)),
    );
    let ack = s
        .client
        .place_order(&order("dropped", Side::Buy, dec!(10), Some(dec!(0.40))))
        .await
        .unwrap();
    assert_eq!(count_orders(&s.server, "dropped"), 1);
    assert_eq!(
        ack.order_id.as_str(),
        s.server.orders().last().unwrap().txid
    );
    let ev = api_errors.recv().await.unwrap();
    assert!(matches!(
        &ev.payload,
        Payload::ApiError {
            kind: ApiErrorKind::Timeout,
            ..
        }
    ));

    // Latency below the timeout is only latency.
    s.server
        .faults()
        .inject(Some("AddOrder"), Fault::Latency(Duration::from_millis(50)));
    s.client
        .place_order(&order("slow", Side::Buy, dec!(10), Some(dec!(0.40))))
        .await
        .unwrap();
    assert_eq!(count_orders(&s.server, "slow"), 1);
    assert_eq!(s.server.faults().pending(), 0);
}

// Paused tokio time, as above.
#[tokio::test(start_paused = true)]
async fn retries_recover_from_every_fault_without_doubling() {
    let clock: SharedClock = Arc::new(TokioClock::new());
    let mock = MockConfig {
        clock: clock.clone(),
        ..MockConfig::default()
    };
    let s = setup_on(clock, mock, |c| c.max_retries = 2).await;
    let faults = [
        Fault::ServerError(503),
        Fault::RateLimit,
        Fault::Unavailable,
        Fault::NotJson,
        Fault::Stall(Duration::from_secs(10)),
        Fault::DropAfterAccept(Duration::from_secs(10)),
    ];
    for (i, fault) in faults.iter().enumerate() {
        let id = format!("retry-{i}");
        s.server.faults().inject(Some("AddOrder"), fault.clone());
        let ack = s
            .client
            .place_order(&order(&id, Side::Buy, dec!(10), Some(dec!(0.40))))
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(count_orders(&s.server, &id), 1, "{fault:?}");
        assert_eq!(ack.client_order_id.as_str(), id);
    }
    // Reads retry too.
    s.server
        .faults()
        .inject(Some("Balance"), Fault::ServerError(502));
    assert!(s.client.balances().await.is_ok());
    assert_eq!(s.client.open_orders().await.unwrap().len(), faults.len());
}

#[tokio::test]
async fn dead_man_switch_arms_and_disarms() {
    let s = setup().await;
    let before = chrono::Utc::now();
    let status = s.client.cancel_all_after(60).await.unwrap();
    let after = chrono::Utc::now();
    let trigger = status.trigger_at.unwrap();
    // 60 s after the call, whenever the mock handled it (to the second).
    assert!(
        trigger >= before + chrono::Duration::seconds(59)
            && trigger <= after + chrono::Duration::seconds(61),
        "{before} .. {trigger} .. {after}"
    );
    assert_eq!(s.server.dead_man_trigger(), Some(trigger));
    assert_eq!(s.client.cancel_all_after(0).await.unwrap().trigger_at, None);
    assert_eq!(s.server.dead_man_trigger(), None);
}

#[tokio::test]
async fn asset_pairs_and_trade_balance() {
    let s = setup().await;
    let pairs = s.client.asset_pairs().await.unwrap();
    let names: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| (p.pair.as_str(), p.altname.as_str()))
        .collect();
    assert_eq!(names, vec![("DOGE/USD", "XDGUSD"), ("XRP/USD", "XRPUSD")]);
    assert_eq!(pairs[0].lot_decimals, 8);
    assert_eq!(pairs[0].ordermin, Some(dec!(10)));
    let tb = s.client.trade_balance().await.unwrap();
    assert_eq!(tb["eb"], dec!(100500));
}

#[tokio::test]
async fn exchange_errors_are_typed() {
    let s = setup_with(MockConfig::default(), |c| c.max_retries = 0).await;
    let err = s
        .client
        .place_order(&order("big", Side::Buy, dec!(1000000), Some(dec!(0.40))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ApiErrorKind::InsufficientFunds, "{err}");
    let err = s
        .client
        .order_status(&OrderRef::Exchange(gf_core::OrderId::new("NOPE")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownOrder(_)), "{err}");
    let err = s
        .client
        .order_status(&OrderRef::Client(ClientOrderId::new("never")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownOrder(_)), "{err}");
    let mut bad_pair = order("pair", Side::Buy, dec!(1), None);
    bad_pair.pair = Pair::new("ETH/EUR").unwrap();
    let err = s.client.place_order(&bad_pair).await.unwrap_err();
    assert_eq!(err.kind(), ApiErrorKind::InvalidArguments, "{err}");
}

#[tokio::test]
async fn closed_gate_keeps_normal_orders_off_the_wire() {
    let s = setup().await;
    let gate = TradingGate::new_open();
    let opener = gate.take_opener().unwrap();
    let exchange = Arc::new(
        KrakenClient::new(
            KrakenConfig::new(s.server.url()),
            Arc::new(s.server.credentials()),
            Publisher::new(None, Arc::new(SystemClock), Source::Exec),
        )
        .unwrap()
        .with_gate(gate.clone()),
    )
    .into_gated(Publisher::new(
        Some(s.bus.clone()),
        Arc::new(SystemClock),
        Source::Exec,
    ))
    .unwrap();
    gate.close();
    let err = exchange
        .place_order(&order("normal", Side::Sell, dec!(10), None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Halted));
    assert!(
        s.server.requests().is_empty(),
        "nothing reached the exchange"
    );
    let mut closure = order("closure", Side::Sell, dec!(10), None);
    closure.purpose = OrderPurpose::HaltClosure;
    let err = exchange.place_order(&closure).await.unwrap_err();
    assert!(err.to_string().contains("no closure seal"), "{err}");
    assert!(s.server.requests().is_empty(), "a label is not a right");
    seal(&mut closure, &opener);
    exchange.place_order(&closure).await.unwrap();
    assert_eq!(count_orders(&s.server, "closure"), 1);
    assert_eq!(s.server.orders()[0].status, "closed");
}

#[tokio::test]
async fn order_sync_publishes_fills_and_status_changes() {
    let s = setup().await;
    let mut sub = s
        .bus
        .subscribe(KindSet::of(&[EventKind::Fill, EventKind::OrderUpdate]));
    let ack = s
        .client
        .place_order(&order("sync-1", Side::Buy, dec!(100), Some(dec!(0.40))))
        .await
        .unwrap();
    drain(&mut sub);
    assert_eq!(
        s.client.sync_orders().await.unwrap(),
        0,
        "nothing changed yet"
    );
    assert!(
        s.server
            .fill_order(ack.order_id.as_str(), dec!(40), dec!(0.40))
    );
    assert!(
        !s.server
            .fill_order(ack.order_id.as_str(), dec!(61), dec!(0.40))
    );
    assert_eq!(s.client.sync_orders().await.unwrap(), 1);
    assert!(
        s.server
            .fill_order(ack.order_id.as_str(), dec!(60), dec!(0.39))
    );
    assert_eq!(s.client.sync_orders().await.unwrap(), 1);
    assert_eq!(
        s.client.sync_orders().await.unwrap(),
        0,
        "terminal orders are not polled"
    );
    let events = drain(&mut sub);
    let fills: Vec<(Decimal, Decimal)> = events
        .iter()
        .filter_map(|p| match p {
            Payload::Fill(f) => Some((f.qty, f.price)),
            _ => None,
        })
        .collect();
    assert_eq!(fills, vec![(dec!(40), dec!(0.40)), (dec!(60), dec!(0.39))]);
    let statuses: Vec<(OrderStatus, Decimal)> = events
        .iter()
        .filter_map(|p| match p {
            Payload::OrderUpdate {
                status, filled_qty, ..
            } => Some((*status, *filled_qty)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (OrderStatus::PartiallyFilled, dec!(40)),
            (OrderStatus::Filled, dec!(100))
        ]
    );
    assert_eq!(s.server.balances()["XXRP"], dec!(1100));

    // The background poller does the same on its own.
    let ack = s
        .client
        .place_order(&order("sync-2", Side::Sell, dec!(10), Some(dec!(0.90))))
        .await
        .unwrap();
    let poller = s.client.spawn_order_sync(Duration::from_millis(20));
    assert!(
        s.server
            .fill_order(ack.order_id.as_str(), dec!(10), dec!(0.90))
    );
    let fill = loop {
        let ev = sub.recv().await.unwrap();
        if let Payload::Fill(f) = &ev.payload {
            break f.clone();
        }
    };
    assert_eq!((fill.qty, fill.side), (dec!(10), Side::Sell));
    assert_eq!(fill.client_order_id, Some(ClientOrderId::new("sync-2")));
    poller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closure_orders_do_not_queue_behind_throttled_normal_orders() {
    // A tiny matching-engine budget: 3 points, 1 reserved for the priority lane, and a
    // decay so slow (0.01/s) that an order waiting for it waits for minutes: whatever
    // queues behind the throttled normal order cannot meet the deadline below.
    let tight = Limits {
        max: 3,
        decay_milli_per_sec: 10,
        priority_reserve: 1,
    };
    let s = setup_with(MockConfig::default(), |c| c.trading_limits = tight).await;
    for id in ["n1", "n2"] {
        s.client
            .place_order(&order(id, Side::Buy, dec!(1), Some(dec!(0.40))))
            .await
            .unwrap();
    }
    // The third normal order must wait for decay (about 140 s of it) …
    let client = s.client.clone();
    let waiting = tokio::spawn(async move {
        client
            .place_order(&order("n3", Side::Buy, dec!(1), Some(dec!(0.40))))
            .await
    });
    wait_for(
        "n3 to wait in the rate limiter",
        Duration::from_secs(10),
        || s.client.trading_limiter().waiting(Lane::Normal) == 1,
    )
    .await;
    // … while a halt-closure order goes straight through the reserve.
    let mut closure = order("closure", Side::Sell, dec!(5), None);
    seal(&mut closure, &s.opener);
    tokio::time::timeout(Duration::from_secs(30), s.client.place_order(&closure))
        .await
        .expect("the closure order queued behind the throttled normal order")
        .unwrap();
    assert!(
        !waiting.is_finished(),
        "the normal order is still throttled"
    );
    assert_eq!(s.client.trading_limiter().waiting(Lane::Normal), 1);
    assert_eq!(s.client.trading_limiter().waiting(Lane::Priority), 0);
    let placed: Vec<String> = s
        .server
        .orders()
        .into_iter()
        .filter_map(|o| o.cl_ord_id)
        .collect();
    assert_eq!(placed, vec!["n1", "n2", "closure"]);
    // The strategy gives up on n3: it never reaches Kraken, and it no longer waits.
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(s.client.trading_limiter().waiting(Lane::Normal), 0);
    assert_eq!(count_orders(&s.server, "n3"), 0);
}

#[tokio::test]
async fn nonce_survives_a_client_restart_with_the_clock_set_back() {
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = gf_core::ManualClock::new(chrono::Utc::now());
    let make = |clock: &gf_core::ManualClock| {
        let mut cfg = KrakenConfig::new(server.url());
        cfg.nonce_file = Some(dir.path().join("kraken.nonce"));
        cfg.max_retries = 0;
        KrakenClient::new(
            cfg,
            Arc::new(server.credentials()),
            Publisher::new(None, Arc::new(clock.clone()), Source::Exec),
        )
        .unwrap()
    };
    let first = make(&clock);
    for _ in 0..3 {
        first.balances().await.unwrap();
    }
    drop(first);
    // The host clock jumps back an hour; a fresh client must still be accepted.
    clock.advance(chrono::Duration::hours(-1));
    let second = make(&clock);
    second.balances().await.unwrap();
    let outcomes: Vec<String> = server.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, vec!["ok"; 4]);
    // Without the file the same restart is refused by Kraken's nonce check.
    let mut cfg = KrakenConfig::new(server.url());
    cfg.max_retries = 0;
    let forgetful = KrakenClient::new(
        cfg,
        Arc::new(server.credentials()),
        Publisher::new(None, Arc::new(clock.clone()), Source::Exec),
    )
    .unwrap();
    let err = forgetful.balances().await.unwrap_err();
    assert_eq!(err.kind(), ApiErrorKind::InvalidNonce, "{err}");
}

#[tokio::test]
async fn reconciled_market_order_reports_its_fill_on_the_next_sync() {
    let s = setup_with(MockConfig::default(), |c| c.max_retries = 0).await;
    let mut fills = s.bus.subscribe(KindSet::of(&[EventKind::Fill]));
    s.server.faults().inject(
        Some("AddOrder"),
        Fault::DropAfterAccept(Duration::from_secs(10)),
    );
    let ack = s
        .client
        .place_order(&order("lost-mkt", Side::Buy, dec!(30), None))
        .await
        .unwrap();
    assert_eq!(
        ack.status,
        OrderStatus::Filled,
        "found filled by reconciliation"
    );
    assert_eq!(count_orders(&s.server, "lost-mkt"), 1);
    assert_eq!(s.client.sync_orders().await.unwrap(), 1);
    let fill = fills.recv().await.unwrap();
    match &fill.payload {
        Payload::Fill(f) => assert_eq!((f.qty, f.price), (dec!(30), dec!(0.5))),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn price_moves_fill_crossing_limit_orders() {
    let s = setup().await;
    let ack = s
        .client
        .place_order(&order("dip-buy", Side::Buy, dec!(100), Some(dec!(0.45))))
        .await
        .unwrap();
    let xrp = Pair::new("XRP/USD").unwrap();
    assert_eq!(s.server.set_price(&xrp, dec!(0.46)), 0);
    assert_eq!(s.server.set_price(&xrp, dec!(0.44)), 1);
    let info = s
        .client
        .order_status(&OrderRef::Exchange(ack.order_id))
        .await
        .unwrap();
    assert_eq!(info.status, OrderStatus::Filled);
    assert_eq!(info.avg_price, Some(dec!(0.45)));
    // The next market order fills at the new price.
    let ack = s
        .client
        .place_order(&order("mkt", Side::Sell, dec!(10), None))
        .await
        .unwrap();
    let info = s
        .client
        .order_status(&OrderRef::Exchange(ack.order_id))
        .await
        .unwrap();
    assert_eq!(info.avg_price, Some(dec!(0.44)));
}

/// Kraken: a post-only limit order "will either get posted to the order book or be
/// cancelled" (support.kraken.com 203053246). Sent as `oflags=post`; one that would take
/// liquidity on arrival is accepted, then cancelled with the reason `Post only order`
/// without executing; one that does not cross rests and later fills as a maker.
#[tokio::test]
async fn post_only_orders_rest_as_makers_or_are_cancelled_unexecuted() {
    let s = setup().await;
    let xrp = Pair::new("XRP/USD").unwrap();
    let before = s.server.balances();
    // The mock's XRP/USD market is 0.5.
    for (id, side, price) in [
        ("po-buy-x", Side::Buy, dec!(0.55)),
        ("po-buy-at", Side::Buy, dec!(0.5)),
        ("po-sell-x", Side::Sell, dec!(0.45)),
    ] {
        let ack = s
            .client
            .place_order(&order(id, side, dec!(10), Some(price)).post_only())
            .await
            .unwrap();
        let info = s
            .client
            .order_status(&OrderRef::Exchange(ack.order_id))
            .await
            .unwrap();
        assert_eq!(info.status, OrderStatus::Cancelled, "{id}");
        assert_eq!(info.filled_qty, Decimal::ZERO, "{id}");
        let mock = s
            .server
            .orders()
            .into_iter()
            .find(|o| o.cl_ord_id.as_deref() == Some(id))
            .unwrap();
        assert!(mock.post_only, "{id}");
        assert_eq!(mock.status, "canceled", "{id}");
        assert_eq!(
            mock.reason.as_deref(),
            Some(POST_ONLY_CANCEL_REASON),
            "{id}"
        );
    }
    assert_eq!(s.server.balances(), before, "nothing executed");

    let buy = s
        .client
        .place_order(&order("po-buy", Side::Buy, dec!(10), Some(dec!(0.45))).post_only())
        .await
        .unwrap();
    let sell = s
        .client
        .place_order(&order("po-sell", Side::Sell, dec!(10), Some(dec!(0.55))).post_only())
        .await
        .unwrap();
    for ack in [&buy, &sell] {
        let info = s
            .client
            .order_status(&OrderRef::Exchange(ack.order_id.clone()))
            .await
            .unwrap();
        assert_eq!(info.status, OrderStatus::Open, "{}", ack.client_order_id);
    }
    let adds: Vec<_> = s
        .server
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "AddOrder")
        .collect();
    assert_eq!(adds.len(), 5);
    for add in &adds {
        assert!(
            add.params
                .contains(&("oflags".to_owned(), "post".to_owned())),
            "{:?}",
            add.params
        );
    }
    // The resting orders fill at their own price when the market comes to them.
    assert_eq!(s.server.set_price(&xrp, dec!(0.44)), 1);
    assert_eq!(s.server.set_price(&xrp, dec!(0.56)), 1);
    for ack in [buy, sell] {
        let info = s
            .client
            .order_status(&OrderRef::Exchange(ack.order_id))
            .await
            .unwrap();
        assert_eq!(info.status, OrderStatus::Filled);
        assert_eq!(info.limit_price, info.avg_price);
    }
}

#[tokio::test]
async fn mock_answers_malformed_requests_with_kraken_errors() {
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", server.url()))
            .header("API-Key", server.api_key())
            .header("API-Sign", "AAAA")
            .body(body)
            .send()
    };
    let text = |r: reqwest::Response| async move { (r.status().as_u16(), r.text().await.unwrap()) };
    let (status, body) = text(
        post("/0/private/AddOrder", vec![0xff, 0xfe, b'&', b'='])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("EAPI:Invalid nonce"), "{body}");
    let (_, body) = text(
        post("/0/private/AddOrder", b"nonce=5".to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert!(body.contains("EAPI:Invalid signature"), "{body}");
    let (status, body) = text(post("/nowhere", Vec::new()).await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(body.contains("EGeneral:Unknown method"), "{body}");
    let (_, body) = text(
        http.get(format!("{}/0/private/Balance", server.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(body.contains("EGeneral:Invalid arguments"), "{body}");
    let (_, body) = text(
        http.get(format!("{}/0/public/Time", server.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(body.contains("unixtime"), "{body}");
    let (_, body) = text(
        http.get(format!("{}/0/public/Nope", server.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(body.contains("EGeneral:Unknown method"), "{body}");
    assert_eq!(server.requests().len(), 6, "every request recorded");
    server.shutdown().await;
}

/// Sends a correctly signed private request with arbitrary parameters.
async fn signed(server: &MockKrakenHandle, nonce: u64, endpoint: &str, params: &str) -> String {
    let path = format!("/0/private/{endpoint}");
    let body = if params.is_empty() {
        format!("nonce={nonce}")
    } else {
        format!("nonce={nonce}&{params}")
    };
    let mut sign = String::new();
    server.credentials().with_credentials(&mut |_, secret| {
        sign = api_sign(&path, nonce, &body, secret);
    });
    reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .header("API-Key", server.api_key())
        .header("API-Sign", sign)
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn mock_validates_arguments_like_kraken() {
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    struct Case {
        endpoint: &'static str,
        params: &'static str,
        expected: &'static str,
    }
    let cases = [
        Case {
            endpoint: "AddOrder",
            params: "type=buy&ordertype=limit&volume=1&price=1",
            expected: "EGeneral:Invalid arguments:pair",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=ETHEUR&type=buy&ordertype=market&volume=1",
            expected: "EQuery:Unknown asset pair",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=hold&ordertype=market&volume=1",
            expected: "EGeneral:Invalid arguments:type",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=stop&volume=1",
            expected: "EGeneral:Invalid arguments:ordertype",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=market&volume=-1",
            expected: "EGeneral:Invalid arguments:volume",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=limit&volume=1",
            expected: "EGeneral:Invalid arguments:price",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=market&volume=1&reduce_only=true",
            expected: "EOrder:Reduce only:Non-PC",
        },
        // A spot holding is not a margin position: reduce-only is rejected even for a
        // sell of less than the account holds.
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=sell&ordertype=market&volume=1&reduce_only=true",
            expected: "EOrder:Reduce only:Non-PC",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=sell&ordertype=market&volume=5000",
            expected: "EOrder:Insufficient funds",
        },
        // Kraken's cl_ord_id: a UUID (dashed or 32 hex) or ≤ 18 ASCII characters, and
        // never together with userref.
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=market&volume=1&cl_ord_id=ema_cross-1796153720687-1",
            expected: "EGeneral:Invalid arguments:cl_ord_id",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=market&volume=1&cl_ord_id=abc&userref=7",
            expected: "EGeneral:Invalid arguments:cl_ord_id and userref",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=limit&price=2&volume=79228162514264337593543950335",
            expected: "EGeneral:Invalid arguments:volume",
        },
        // `oflags`: `post` is "available when ordertype = limit"; flags Kraken does not
        // document are refused.
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=market&volume=1&oflags=post",
            expected: "EGeneral:Invalid arguments:oflags",
        },
        Case {
            endpoint: "AddOrder",
            params: "pair=XRPUSD&type=buy&ordertype=limit&price=0.4&volume=1&oflags=post,maker",
            expected: "EGeneral:Invalid arguments:oflags",
        },
        Case {
            endpoint: "CancelOrder",
            params: "",
            expected: "EGeneral:Invalid arguments",
        },
        Case {
            endpoint: "CancelOrder",
            params: "txid=NOPE",
            expected: "EOrder:Unknown order",
        },
        Case {
            endpoint: "CancelAllOrdersAfter",
            params: "timeout=soon",
            expected: "EGeneral:Invalid arguments:timeout",
        },
        Case {
            endpoint: "CancelAllOrdersAfter",
            params: "timeout=86401",
            expected: "EGeneral:Invalid arguments:timeout",
        },
        Case {
            endpoint: "QueryOrders",
            params: "",
            expected: "EGeneral:Invalid arguments",
        },
        Case {
            endpoint: "Withdraw",
            params: "",
            expected: "EGeneral:Unknown method",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let body = signed(&server, 100 + i as u64, case.endpoint, case.params).await;
        assert!(
            body.contains(case.expected),
            "{} {}: {body}",
            case.endpoint,
            case.params
        );
    }
    assert!(server.orders().is_empty());
    let body = signed(&server, 500, "ClosedOrders", "").await;
    assert!(body.contains(r#""count":0"#), "{body}");
}

#[tokio::test]
async fn mock_dead_mans_switch_fires_on_its_clock() {
    let clock = gf_core::ManualClock::new(chrono::Utc::now());
    let mock = MockConfig {
        clock: Arc::new(clock.clone()),
        ..MockConfig::default()
    };
    let s = setup_with(mock, |_| {}).await;
    s.client
        .place_order(&order("resting", Side::Buy, dec!(10), Some(dec!(0.40))))
        .await
        .unwrap();
    s.client.cancel_all_after(60).await.unwrap();
    clock.advance(chrono::Duration::seconds(61));
    assert!(s.client.open_orders().await.unwrap().is_empty());
    assert_eq!(s.server.orders()[0].status, "canceled");
    assert_eq!(s.server.dead_man_trigger(), None);
}

#[tokio::test]
async fn refused_connection_is_a_network_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cfg = KrakenConfig::new(format!("http://127.0.0.1:{port}/"));
    cfg.max_retries = 1;
    cfg.retry_backoff = Duration::from_millis(1);
    let client = KrakenClient::new(
        cfg,
        Arc::new(FixedCredentials::from_raw("k", vec![1; 64])),
        Publisher::new(None, Arc::new(SystemClock), Source::Exec),
    )
    .unwrap();
    let err = client.balances().await.unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    assert_eq!(err.kind(), ApiErrorKind::Network);
    assert!(client.asset_pairs().await.is_err());
}

#[tokio::test]
async fn cancel_whose_answer_was_lost_is_not_reported_as_unknown() {
    let s = setup_with(MockConfig::default(), |c| c.max_retries = 2).await;
    let ack = s
        .client
        .place_order(&order("c-lost", Side::Buy, dec!(10), Some(dec!(0.40))))
        .await
        .unwrap();
    s.server.faults().inject(
        Some("CancelOrder"),
        Fault::DropAfterAccept(Duration::from_secs(10)),
    );
    s.client
        .cancel_order(&OrderRef::Exchange(ack.order_id))
        .await
        .unwrap();
    assert_eq!(s.server.orders()[0].status, "canceled");
    let outcomes: Vec<String> = s
        .server
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "CancelOrder")
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, vec!["ok", "EOrder:Unknown order"]);
    // A cancel-all and the dead man's switch retry through transient faults as well.
    s.server
        .faults()
        .inject(Some("CancelAll"), Fault::ServerError(502));
    assert_eq!(s.client.cancel_all().await.unwrap(), 0);
    s.server
        .faults()
        .inject(Some("CancelAllOrdersAfter"), Fault::Unavailable);
    assert!(
        s.client
            .cancel_all_after(30)
            .await
            .unwrap()
            .trigger_at
            .is_some()
    );
}

#[tokio::test]
async fn rotated_credentials_take_effect_on_the_next_request() {
    #[derive(Debug)]
    struct Rotating(parking_lot::Mutex<FixedCredentials>);
    impl CredentialHandle for Rotating {
        fn with_credentials(&self, sign: &mut dyn FnMut(&str, &[u8])) -> bool {
            self.0.lock().with_credentials(sign)
        }
        fn version(&self) -> Option<String> {
            None
        }
    }
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    let handle = Arc::new(Rotating(parking_lot::Mutex::new(
        FixedCredentials::from_raw("revoked-key", vec![9; 64]),
    )));
    let mut cfg = KrakenConfig::new(server.url());
    cfg.max_retries = 0;
    let client = KrakenClient::new(
        cfg,
        handle.clone(),
        Publisher::new(None, Arc::new(SystemClock), Source::Exec),
    )
    .unwrap();
    let err = client.check().await.unwrap_err();
    assert_eq!(err.kind(), ApiErrorKind::Authentication);
    *handle.0.lock() = server.credentials();
    client.check().await.unwrap();
    let keys: Vec<Option<String>> = server.requests().into_iter().map(|r| r.api_key).collect();
    assert_eq!(
        keys,
        vec![
            Some("revoked-key".into()),
            Some(server.api_key().to_owned())
        ]
    );
}

#[tokio::test]
async fn asset_pair_precisions_are_enforced_before_sending() {
    let s = setup().await;
    // Before AssetPairs is loaded nothing is checked locally: Kraken would judge.
    s.client
        .place_order(&order("early", Side::Buy, dec!(5), Some(dec!(0.40))))
        .await
        .unwrap();
    s.client.asset_pairs().await.unwrap();
    let before = s.server.requests().len();
    for (id, qty, price, needle) in [
        ("small", dec!(5), dec!(0.40), "below the minimum 10"),
        (
            "lots",
            dec!(10.123456789),
            dec!(0.40),
            "more than 8 decimals",
        ),
        ("tick", dec!(10), dec!(0.400001), "more than 5 decimals"),
    ] {
        let err = s
            .client
            .place_order(&order(id, Side::Buy, qty, Some(price)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ApiErrorKind::InvalidArguments, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!(s.server.requests().len(), before, "nothing sent");
    // A halt-closure order flattens a dust position below the minimum.
    let mut dust = order("dust", Side::Sell, dec!(5), None);
    seal(&mut dust, &s.opener);
    s.client.place_order(&dust).await.unwrap();
    s.client
        .place_order(&order("fine", Side::Buy, dec!(10.5), Some(dec!(0.41234))))
        .await
        .unwrap();
}

#[tokio::test]
async fn cancel_all_reports_a_fill_that_beat_it_instead_of_a_cancel() {
    let s = setup().await;
    let mut sub = s
        .bus
        .subscribe(KindSet::of(&[EventKind::Fill, EventKind::OrderUpdate]));
    let filled = s
        .client
        .place_order(&order("race-1", Side::Buy, dec!(100), Some(dec!(0.40))))
        .await
        .unwrap();
    let resting = s
        .client
        .place_order(&order("race-2", Side::Buy, dec!(50), Some(dec!(0.30))))
        .await
        .unwrap();
    drain(&mut sub);
    // The first order fills at the exchange a moment before the halt's cancel-all.
    assert!(
        s.server
            .fill_order(filled.order_id.as_str(), dec!(100), dec!(0.40))
    );
    assert_eq!(s.client.cancel_all().await.unwrap(), 1);
    let events = drain(&mut sub);
    let fills: Vec<Decimal> = events
        .iter()
        .filter_map(|p| match p {
            Payload::Fill(f) if f.order_id == filled.order_id => Some(f.qty),
            _ => None,
        })
        .collect();
    assert_eq!(
        fills,
        vec![dec!(100)],
        "the fill must reach the bus: {events:?}"
    );
    let status_of = |id: &gf_core::OrderId| {
        events.iter().rev().find_map(|p| match p {
            Payload::OrderUpdate {
                order_id: Some(o),
                status,
                ..
            } if o == id => Some(*status),
            _ => None,
        })
    };
    assert_eq!(status_of(&filled.order_id), Some(OrderStatus::Filled));
    assert_eq!(status_of(&resting.order_id), Some(OrderStatus::Cancelled));
}
