//! The order gateway against a real paper daemon over loopback: a `trader` token places,
//! lists and cancels; other roles may not place and a trader may not halt; a halt refuses
//! the next order with `halted` and cancels resting orders; a retried `client_order_id`
//! places one order; limits answer 429 with `Retry-After`; the `/ws/orders` feed resumes
//! from a sequence number with every frame exactly once.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gf_core::config::StrategyKind;
use gf_core::{Config, Pair, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use gf_daemon::auth::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    // Orders come only from the gateway: the supported setup for external strategies.
    cfg.strategy.kind = Some(StrategyKind::None);
    cfg.risk.max_orders_per_window = 1_000;
    cfg.risk.max_open_orders = 1_000;
    cfg.gateway.orders_per_second = 1_000;
    cfg.gateway.order_burst = 1_000;
    cfg.gateway.max_open_orders = 1_000;
    cfg
}

/// A paper daemon with marks for XRP/USD (so orders can be checked), and its tokens.
struct Setup {
    _dir: tempfile::TempDir,
    running: Running,
    url: String,
    trader: String,
    operator: String,
    viewer: String,
    http: reqwest::Client,
}

async fn setup_with(edit: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    edit(&mut cfg);
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let pair: Pair = "XRP/USD".parse().unwrap();
    running
        .wait_for_price(&pair, Duration::from_secs(30))
        .await
        .unwrap();
    Setup {
        url: running.url(),
        trader: running.create_token("strat-a", Role::Trader).unwrap(),
        operator: running.create_token("olga", Role::Operator).unwrap(),
        viewer: running.create_token("vic", Role::Viewer).unwrap(),
        running,
        _dir: dir,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

/// A resting limit buy of XRP/USD: ~4 % below the market, inside the 5 % collar.
fn resting(id: &str) -> Value {
    json!({"client_order_id": id, "pair": "XRP/USD", "side": "buy", "type": "limit",
           "qty": "10", "limit_price": "2.10"})
}

struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Setup {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            headers,
        }
    }

    async fn place(&self, token: &str, order: &Value) -> Answer {
        self.call(reqwest::Method::POST, "/api/v1/orders", token, Some(order))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    /// Waits until `check` answers, re-checking whenever the gateway changes (an order
    /// update, a fill, a commit of its journal records), for at most 20 s.
    async fn until<F>(&self, what: &str, mut check: impl FnMut() -> F) -> Value
    where
        F: std::future::Future<Output = Option<Value>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let changed = self.running.daemon.gateway.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::timeout_at(deadline, changed).await.is_ok(),
                "{what}: not within 20 s"
            );
        }
    }

    /// Waits until the trader's order satisfies `pred`.
    async fn wait_order(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.until(&format!("order {id}"), || async {
            let a = self
                .get(&format!("/api/v1/orders/{id}"), &self.trader)
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
            pred(&a.body["order"]).then(|| a.body["order"].clone())
        })
        .await
    }

    /// Waits until the journal's newest `limit` records satisfy `pred`.
    async fn wait_journal(&self, limit: usize, pred: impl Fn(&[Value]) -> bool) {
        self.until("journal records", || async {
            let j = self
                .get(&format!("/api/v1/journal?limit={limit}"), &self.viewer)
                .await;
            let records = j.body["records"].as_array().cloned().unwrap_or_default();
            pred(&records).then_some(Value::Null)
        })
        .await;
    }

    async fn exchange_open(&self) -> usize {
        self.running
            .daemon
            .exchange
            .open_orders()
            .await
            .unwrap()
            .len()
    }
}

fn server_ms(headers: &reqwest::header::HeaderMap) -> f64 {
    let v = headers
        .get("server-timing")
        .expect("Server-Timing header")
        .to_str()
        .unwrap();
    v.strip_prefix("gateway;dur=").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trader_places_lists_and_cancels_and_only_a_trader_may_place() {
    let s = setup().await;

    // Other roles may not place; a trader may not halt, resume or read the journal.
    for token in [&s.viewer, &s.operator] {
        let a = s.place(token, &resting("x1")).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "forbidden");
    }
    let admin = s.running.create_token("ada", Role::Admin).unwrap();
    assert_eq!(s.place(&admin, &resting("x1")).await.status, 403);
    let a = s
        .call(
            reqwest::Method::POST,
            "/api/v1/halt",
            &s.trader,
            Some(&json!({"reason": "nope"})),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(s.running.daemon.gate.is_open());
    for path in ["/api/v1/journal", "/api/v1/positions", "/metrics"] {
        assert_eq!(s.get(path, &s.trader).await.status, 403, "{path}");
    }
    assert_eq!(
        s.call(reqwest::Method::POST, "/api/v1/resume", &s.trader, None)
            .await
            .status,
        403
    );
    // It reads the halt status and who it is.
    assert_eq!(s.get("/api/v1/halt/status", &s.trader).await.status, 200);
    assert_eq!(
        s.get("/api/v1/whoami", &s.trader).await.body["role"],
        "trader"
    );

    // Place: 201, resting at the exchange under an id of the daemon's own.
    let a = s.place(&s.trader, &resting("a-1")).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(server_ms(&a.headers) >= 0.0);
    let order = &a.body["order"];
    assert_eq!(order["client_order_id"], "a-1");
    assert_eq!(order["trader"], "strat-a");
    assert_eq!(order["qty"], "10");
    assert_eq!(order["limit_price"], "2.10");
    let exchange_id = order["exchange_client_order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(exchange_id.len(), 32, "{order}");
    s.wait_order("a-1", |o| o["status"] == "open").await;
    let open = s.running.daemon.exchange.open_orders().await.unwrap();
    assert!(
        open.iter()
            .any(|o| o.client_order_id.as_ref().map(|c| c.as_str()) == Some(&exchange_id)),
        "{open:?}"
    );

    // Lists: the trader's own; a viewer's every trader's plus the exchange's open orders.
    let mine = s.get("/api/v1/orders?status=open", &s.trader).await;
    assert_eq!(
        mine.body["orders"].as_array().unwrap().len(),
        1,
        "{}",
        mine.body
    );
    assert!(mine.body.get("open").is_none());
    let other = s.running.create_token("strat-b", Role::Trader).unwrap();
    let theirs = s.get("/api/v1/orders", &other).await;
    assert_eq!(theirs.body["orders"], json!([]), "another trader sees none");
    assert_eq!(
        s.call(reqwest::Method::DELETE, "/api/v1/orders/a-1", &other, None)
            .await
            .status,
        404,
        "another trader cannot cancel it"
    );
    let all = s.get("/api/v1/orders", &s.viewer).await;
    assert_eq!(all.body["orders"][0]["client_order_id"], "a-1");
    assert!(all.body["open"].as_array().is_some(), "{}", all.body);
    let bad = s.get("/api/v1/orders?status=sideways", &s.trader).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["code"], "invalid_query");

    // Cancel: accepted, then cancelled; a second cancel is refused as closed.
    let a = s
        .call(
            reqwest::Method::DELETE,
            "/api/v1/orders/a-1",
            &s.trader,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["cancelled"], json!(["a-1"]));
    s.wait_order("a-1", |o| o["status"] == "cancelled").await;
    let a = s
        .call(
            reqwest::Method::DELETE,
            "/api/v1/orders/a-1",
            &s.trader,
            None,
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "order_closed");
    assert_eq!(
        s.call(
            reqwest::Method::DELETE,
            "/api/v1/orders/nope",
            &s.trader,
            None
        )
        .await
        .body["error"]["code"],
        "unknown_order"
    );

    // Cancel all: only this trader's.
    for id in ["a-2", "a-3"] {
        assert_eq!(s.place(&s.trader, &resting(id)).await.status, 201);
    }
    assert_eq!(s.place(&other, &resting("b-1")).await.status, 201);
    let a = s
        .call(reqwest::Method::DELETE, "/api/v1/orders", &s.trader, None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut cancelled: Vec<String> = serde_json::from_value(a.body["cancelled"].clone()).unwrap();
    cancelled.sort();
    assert_eq!(cancelled, ["a-2", "a-3"]);
    s.wait_order("a-3", |o| o["status"] == "cancelled").await;
    let b = s.get("/api/v1/orders/b-1", &other).await;
    assert_ne!(b.body["order"]["status"], "cancelled", "{}", b.body);

    // A market order fills, and the fill is the trader's.
    let a = s
        .place(
            &s.trader,
            &json!({"client_order_id": "m-1", "pair": "XRP/USD", "side": "buy",
                    "type": "market", "qty": "5"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let filled = s
        .wait_order("m-1", |o| o["status"] == "filled" && o["filled_qty"] == "5")
        .await;
    assert!(filled["avg_fill_price"].is_string(), "{filled}");
    let fills = s.get("/api/v1/fills", &s.trader).await;
    let fills = fills.body["fills"].as_array().unwrap().clone();
    assert!(!fills.is_empty());
    assert!(
        fills
            .iter()
            .all(|f| f["client_order_id"] == "m-1" && f["trader"] == "strat-a")
    );
    assert_eq!(
        s.get("/api/v1/fills", &other).await.body["fills"],
        json!([])
    );
    let later = s
        .get("/api/v1/fills?since=2999-01-01T00:00:00Z", &s.trader)
        .await;
    assert_eq!(later.body["fills"], json!([]));

    // Every order and refusal is journaled with the token's name.
    let refused = s
        .place(
            &s.trader,
            &json!({"client_order_id": "big", "pair": "XRP/USD", "side": "buy",
                    "type": "limit", "qty": "100000", "limit_price": "2.10"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "risk_refused");
    assert_eq!(refused.body["error"]["detail"]["check"], "order_notional");
    assert_eq!(refused.body["error"]["detail"]["max"], "25000");
    assert_eq!(refused.body["error"]["detail"]["notional"], "210000.00");
    s.wait_journal(200, |records| {
        let by = |kind: &str| {
            records
                .iter()
                .filter(|r| r["kind"] == kind && r["actor"] == "strat-a")
                .count()
        };
        by("gateway_order") >= 4 && by("gateway_refusal") >= 1 && by("gateway_cancel") >= 3
    })
    .await;
    s.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_client_order_id_places_one_order() {
    let s = setup().await;
    let first = s.place(&s.trader, &resting("r-1")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = s.place(&s.trader, &resting("r-1")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(
        again.body["order"]["exchange_client_order_id"],
        first.body["order"]["exchange_client_order_id"]
    );
    assert_eq!(s.exchange_open().await, 1);

    // Sixteen concurrent retries of a new id: one order.
    let body = resting("r-2");
    let answers = futures::future::join_all((0..16).map(|_| s.place(&s.trader, &body))).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    let replayed = answers
        .iter()
        .filter(|a| a.status == 200 && a.body["replayed"] == true)
        .count();
    assert_eq!((created, replayed), (1, 15));
    assert_eq!(s.exchange_open().await, 2);

    // The same id with another body names the difference and places nothing.
    let mut other = resting("r-1");
    other["qty"] = json!("11");
    let a = s.place(&s.trader, &other).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "idempotency_conflict");
    assert_eq!(a.body["error"]["detail"]["fields"], json!(["qty"]));
    assert_eq!(s.exchange_open().await, 2);

    // Keys are per trader: another trader's "r-1" is its own order.
    let other = s.running.create_token("strat-b", Role::Trader).unwrap();
    assert_eq!(s.place(&other, &resting("r-1")).await.status, 201);
    assert_eq!(s.exchange_open().await, 3);

    // A final refusal is the id's answer for good.
    let mut far = resting("r-3");
    far["limit_price"] = json!("1.00");
    let a = s.place(&s.trader, &far).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.body["error"]["detail"]["check"], "price_collar");
    let b = s.place(&s.trader, &far).await;
    assert_eq!(b.status, 422);
    assert_eq!(b.body["error"]["detail"]["replayed"], true);

    // Bad requests name the field.
    for (body, field) in [
        (
            json!({"client_order_id": "", "pair": "XRP/USD", "side": "buy", "type": "market", "qty": "1"}),
            "client_order_id",
        ),
        (
            json!({"client_order_id": "q", "pair": "XRP/USD", "side": "buy", "type": "market", "qty": "0"}),
            "qty",
        ),
        (
            json!({"client_order_id": "q", "pair": "XRPUSD", "side": "buy", "type": "market", "qty": "1"}),
            "pair",
        ),
        (
            json!({"client_order_id": "q", "pair": "XRP/USD", "side": "buy", "type": "limit", "qty": "1"}),
            "limit_price",
        ),
        (
            json!({"client_order_id": "q", "pair": "XRP/USD", "side": "buy", "type": "market", "qty": "1", "post_only": true}),
            "post_only",
        ),
    ] {
        let a = s.place(&s.trader, &body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert_eq!(a.body["error"]["detail"]["field"], field, "{body}");
    }
    // A float quantity is refused: money travels as decimal strings.
    let a = s
        .place(
            &s.trader,
            &json!({"client_order_id": "f", "pair": "XRP/USD", "side": "buy", "type": "market", "qty": 1.5}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["code"], "invalid_body");
    assert_eq!(s.exchange_open().await, 3);

    // Every request is counted by trader and outcome.
    let metrics = s.running.daemon.monitor.metrics();
    assert_eq!(metrics.gateway_orders("strat-a", "accepted"), 2);
    assert_eq!(metrics.gateway_orders("strat-a", "replayed"), 16);
    assert_eq!(metrics.gateway_orders("strat-a", "idempotency_conflict"), 1);
    assert_eq!(metrics.gateway_orders("strat-a", "risk_refused"), 2);
    assert_eq!(metrics.gateway_orders("strat-b", "accepted"), 1);
    let text = metrics.render().unwrap();
    assert!(
        text.contains(r#"gf_gateway_orders_total{trader="strat-a",outcome="accepted"} 2"#),
        "{text}"
    );
    s.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_refuses_the_next_order_at_once_and_cancels_resting_ones() {
    let s = setup().await;
    let a = s.place(&s.trader, &resting("h-1")).await;
    assert_eq!(a.status, 201, "{}", a.body);
    s.wait_order("h-1", |o| o["status"] == "open").await;

    let halt = s
        .call(
            reqwest::Method::POST,
            "/api/v1/halt",
            &s.operator,
            Some(&json!({"reason": "desk says stop"})),
        )
        .await;
    assert!(halt.status == 202 || halt.status == 200, "{}", halt.body);
    let halt_id = halt.body["status"]["halt"]["id"].clone();
    assert!(halt_id.is_u64(), "{}", halt.body);

    let a = s.place(&s.trader, &resting("h-2")).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "halted");
    assert_eq!(a.body["error"]["detail"]["halt_id"], halt_id);
    assert_eq!(a.body["error"]["detail"]["reason"], "desk says stop");
    assert_eq!(a.body["error"]["detail"]["source"], "api:olga");
    let first_ms = server_ms(&a.headers);
    // The refusal costs the daemon well under a millisecond: the gate is checked before
    // anything else. One sample can be descheduled on a loaded machine; the median of
    // twenty cannot be.
    let mut times = vec![first_ms];
    for i in 0..19 {
        let a = s.place(&s.trader, &resting(&format!("h-x{i}"))).await;
        assert_eq!(a.body["error"]["code"], "halted");
        times.push(server_ms(&a.headers));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("halted refusal, server time: first {first_ms:.3} ms, median {median:.3} ms");
    assert!(median < 1.0, "median {median} ms: {times:?}");

    // The resting order was cancelled by the halt, and says so.
    let cancelled = s.wait_order("h-1", |o| o["status"] == "cancelled").await;
    let why = cancelled["reason"].as_str().unwrap();
    assert!(why.contains("desk says stop"), "{cancelled}");
    assert_eq!(s.exchange_open().await, 0);
    // A retry of an order accepted before the halt still answers its first result.
    let a = s.place(&s.trader, &resting("h-1")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    s.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_limit_the_answer_is_429_with_retry_after() {
    let s = setup_with(|cfg| {
        cfg.gateway.orders_per_second = 1;
        cfg.gateway.order_burst = 2;
    })
    .await;
    assert_eq!(s.place(&s.trader, &resting("l-1")).await.status, 201);
    assert_eq!(s.place(&s.trader, &resting("l-2")).await.status, 201);
    let a = s.place(&s.trader, &resting("l-3")).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "rate_limited");
    assert_eq!(a.body["error"]["detail"]["limit"], "orders_per_second");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(s.exchange_open().await, 2);
    // Another token has its own bucket.
    let other = s.running.create_token("strat-b", Role::Trader).unwrap();
    assert_eq!(s.place(&other, &resting("l-3")).await.status, 201);
    s.running.stop().await;

    let s = setup_with(|cfg| cfg.gateway.max_open_orders = 2).await;
    assert_eq!(s.place(&s.trader, &resting("o-1")).await.status, 201);
    assert_eq!(s.place(&s.trader, &resting("o-2")).await.status, 201);
    let a = s.place(&s.trader, &resting("o-3")).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.body["error"]["detail"]["limit"], "open_orders");
    assert_eq!(a.body["error"]["detail"]["max"], 2);
    assert!(a.headers.contains_key("retry-after"));
    // Not final: once one is cancelled the same id passes.
    let c = s
        .call(
            reqwest::Method::DELETE,
            "/api/v1/orders/o-1",
            &s.trader,
            None,
        )
        .await;
    assert_eq!(c.status, 200);
    s.wait_order("o-1", |o| o["status"] == "cancelled").await;
    assert_eq!(s.place(&s.trader, &resting("o-3")).await.status, 201);

    // A token's own limits, from the config file, replace the defaults.
    let own: Config =
        Config::from_toml_str("[gateway.traders.\"strat-b\"]\nmax_open_orders = 3\n").unwrap();
    assert_eq!(own.gateway.limits("strat-b").max_open_orders, 3);
    assert_eq!(
        own.gateway.limits("strat-b").orders_per_second,
        10,
        "the default"
    );
    s.running.stop().await;

    let s = setup_with(|cfg| {
        cfg.gateway.max_open_orders = 2;
        cfg.gateway.traders = own.gateway.traders.clone();
    })
    .await;
    let b = s.running.create_token("strat-b", Role::Trader).unwrap();
    for id in ["b-1", "b-2", "b-3"] {
        assert_eq!(s.place(&b, &resting(id)).await.status, 201, "{id}");
    }
    let a = s.place(&b, &resting("b-4")).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["error"]["detail"]["max"], 3);
    s.running.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &Setup, query: &str) -> Ws {
    let url = format!("{}/ws/orders{query}", s.url.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", s.trader).parse().unwrap(),
    );
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn frame(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_feed_resumes_from_a_sequence_number_with_every_frame_exactly_once() {
    let s = setup_with(|cfg| cfg.gateway.feed_capacity = 16).await;
    let mut ws = connect(&s, "").await;
    let hello = frame(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    assert_eq!(hello["head_seq"], 0);
    let epoch = hello["epoch"].as_str().unwrap().to_owned();

    // Two resting orders: each is one `order` frame, numbered 1, 2.
    for id in ["w-1", "w-2"] {
        assert_eq!(s.place(&s.trader, &resting(id)).await.status, 201);
    }
    let mut last = 0;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let f = frame(&mut ws).await;
        let seq = f["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "contiguous: {f}");
        last = seq;
        if f["type"] == "order" && f["order"]["status"] == "open" {
            seen.push(f["order"]["client_order_id"].as_str().unwrap().to_owned());
        }
    }
    ws.close(None).await.unwrap();
    drop(ws);

    // While the client is away: a cancel and a new order.
    assert_eq!(
        s.call(
            reqwest::Method::DELETE,
            "/api/v1/orders/w-1",
            &s.trader,
            None
        )
        .await
        .status,
        200
    );
    s.wait_order("w-1", |o| o["status"] == "cancelled").await;
    assert_eq!(s.place(&s.trader, &resting("w-3")).await.status, 201);
    s.wait_order("w-3", |o| o["status"] == "open").await;
    let head = s.running.daemon.gateway.feed_head("strat-a").1;
    assert!(head >= last + 2, "head {head}, last {last}");

    // Reconnect from the last number seen: every later frame once, in order, then live.
    let mut ws = connect(&s, &format!("?since={last}&epoch={epoch}")).await;
    let hello = frame(&mut ws).await;
    assert_eq!(hello["epoch"], epoch.as_str());
    let mut missed = Vec::new();
    while last < head {
        let f = frame(&mut ws).await;
        let seq = f["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "exactly once, in order: {f}");
        last = seq;
        missed.push(f);
    }
    assert!(
        missed
            .iter()
            .any(|f| f["order"]["client_order_id"] == "w-1" && f["order"]["status"] == "cancelled")
    );
    assert!(
        missed
            .iter()
            .any(|f| f["order"]["client_order_id"] == "w-3")
    );

    // A halt reaches the feed live.
    let halt = s
        .call(
            reqwest::Method::POST,
            "/api/v1/halt",
            &s.operator,
            Some(&json!({"reason": "feed test"})),
        )
        .await;
    assert!(halt.status < 300, "{}", halt.body);
    loop {
        let f = frame(&mut ws).await;
        assert_eq!(f["seq"].as_u64().unwrap(), last + 1, "{f}");
        last += 1;
        if f["type"] == "halt" {
            assert_eq!(f["halt"]["reason"], "feed test");
            assert_eq!(f["halt"]["id"], halt.body["status"]["halt"]["id"]);
            break;
        }
    }
    drop(ws);

    // A number of another run (the daemon restarted) is a gap, then live frames.
    let mut ws = connect(&s, &format!("?since={last}&epoch=0000000000000000")).await;
    assert_eq!(frame(&mut ws).await["type"], "hello");
    let gap = frame(&mut ws).await;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["head_seq"].as_u64().unwrap(), last);
    drop(ws);
    s.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_number_no_longer_kept_is_a_gap() {
    let s = setup_with(|cfg| cfg.gateway.feed_capacity = 16).await;
    for i in 0..20 {
        assert_eq!(
            s.place(&s.trader, &resting(&format!("g-{i}"))).await.status,
            201
        );
    }
    let (oldest, head) = s.running.daemon.gateway.feed_head("strat-a");
    assert!(head >= 20 && oldest > 1, "{oldest}..{head}");
    let mut ws = connect(&s, "?since=1").await;
    let hello = frame(&mut ws).await;
    assert_eq!(hello["oldest_seq"].as_u64().unwrap(), oldest);
    let gap = frame(&mut ws).await;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["since"], 1);
    // From the oldest kept, the frames are all there.
    let mut ws = connect(&s, &format!("?since={}", oldest - 1)).await;
    frame(&mut ws).await;
    let first = frame(&mut ws).await;
    assert_eq!(first["seq"].as_u64().unwrap(), oldest, "{first}");
    s.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_restart_finds_its_first_result_and_places_nothing() {
    let s = setup().await;
    let dir = s._dir.path().to_owned();
    assert_eq!(s.place(&s.trader, &resting("k-1")).await.status, 201);
    let mut far = resting("k-2");
    far["limit_price"] = json!("1.00");
    assert_eq!(s.place(&s.trader, &far).await.status, 422);
    // The refusal is journaled in the background: wait for it before stopping.
    s.wait_journal(50, |records| {
        records.iter().any(|r| r["kind"] == "gateway_refusal")
    })
    .await;
    let Setup { running, _dir, .. } = s;
    running.stop().await;

    // The same data directory, a new process's worth of state.
    let running = start(config(&dir), Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let s = Setup {
        url: running.url(),
        trader: running.create_token("strat-a", Role::Trader).unwrap(),
        operator: running.create_token("olga", Role::Operator).unwrap(),
        viewer: running.create_token("vic", Role::Viewer).unwrap(),
        running,
        _dir,
        http: reqwest::Client::new(),
    };
    let a = s.place(&s.trader, &resting("k-1")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["replayed"], true);
    // The paper exchange keeps no orders across runs: reconciled, it is gone.
    s.wait_order("k-1", |o| o["status"] == "cancelled").await;
    assert_eq!(s.exchange_open().await, 0, "no second order was placed");
    let b = s.place(&s.trader, &far).await;
    assert_eq!(b.status, 422, "{}", b.body);
    assert_eq!(b.body["error"]["code"], "risk_refused");
    assert_eq!(b.body["error"]["detail"]["restored"], true);
    assert_eq!(b.body["error"]["detail"]["replayed"], true);
    s.running.stop().await;
}
