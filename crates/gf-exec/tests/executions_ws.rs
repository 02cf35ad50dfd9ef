//! Fills pushed by the private WebSocket v2 `executions` channel, with REST order-status
//! polling as the fallback: the Kraken client, its executions feed and the mock Kraken
//! (REST and `/v2` on one listener) over real sockets on 127.0.0.1. Nothing sleeps to
//! synchronise: every wait is for a state change or an event, under a deadline.

#![allow(clippy::unwrap_used)]

mod common;
use common::wait_for;

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gf_core::{
    ClientOrderId, EventBus, EventKind, Fill, KindSet, ManualClock, OrderRequest, OrderStatus,
    Pair, Payload, Side, Source, Subscription, SystemClock, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::ratelimit::Limits;
use gf_exec::sim::{MockConfig, MockKraken, MockKrakenHandle, WS_INVALID_SESSION};
use gf_exec::{
    Exchange, ExecutionsConfig, ExecutionsFeed, FeedState, KrakenClient, KrakenConfig, SyncPlan,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// Upper bound of every wait (a loaded CI machine; normally milliseconds).
const LIMIT: Duration = Duration::from_secs(20);
/// REST "never" within a test.
const NEVER: Duration = Duration::from_secs(3600);

fn xrp() -> Pair {
    Pair::new("XRP/USD").unwrap()
}

fn order(id: &str, side: Side, qty: Decimal, limit: Option<Decimal>) -> OrderRequest {
    let id = ClientOrderId::new(id);
    match limit {
        Some(price) => OrderRequest::limit(id, xrp(), side, qty, price),
        None => OrderRequest::market(id, xrp(), side, qty),
    }
}

struct Setup {
    server: MockKrakenHandle,
    client: Arc<KrakenClient>,
    feed: Arc<ExecutionsFeed>,
    state: watch::Receiver<FeedState>,
    fills: Subscription,
    bus: EventBus,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The mock, a client, its executions feed and the REST fallback polling per `plan`.
async fn setup(plan: SyncPlan) -> Setup {
    let server = MockKraken::start(MockConfig {
        ws_heartbeat: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let bus = EventBus::new(4096);
    let mut cfg = KrakenConfig::new(server.url());
    cfg.timeout = Duration::from_secs(2);
    cfg.retry_backoff = Duration::from_millis(10);
    cfg.rest_limits = Limits {
        max: 1000,
        decay_milli_per_sec: 1_000_000,
        priority_reserve: 10,
    };
    cfg.trading_limits = cfg.rest_limits;
    let client = Arc::new(
        KrakenClient::new(
            cfg,
            Arc::new(server.credentials()),
            Publisher::new(Some(bus.clone()), Arc::new(SystemClock), Source::Exec),
        )
        .unwrap()
        .with_gate(TradingGate::new_open()),
    );
    let mut ws = ExecutionsConfig::new(server.ws_url());
    ws.heartbeat_timeout = Duration::from_secs(1);
    ws.reconnect_initial = Duration::from_millis(10);
    ws.reconnect_max = Duration::from_millis(50);
    ws.subscribe_timeout = Duration::from_secs(1);
    let feed = Arc::new(ExecutionsFeed::new(Arc::clone(&client), ws).unwrap());
    let state = feed.state();
    let fills = bus.subscribe(KindSet::of(&[EventKind::Fill]));
    let runner = tokio::spawn({
        let feed = Arc::clone(&feed);
        async move { feed.run().await }
    });
    let sync = client.spawn_sync_fallback(feed.state(), plan);
    Setup {
        server,
        client,
        feed,
        state,
        fills,
        bus,
        tasks: vec![runner, sync],
    }
}

impl Setup {
    async fn until(&mut self, what: &str, f: impl FnMut(&FeedState) -> bool) -> FeedState {
        *tokio::time::timeout(LIMIT, self.state.wait_for(f))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for the feed: {what}"))
            .unwrap()
    }

    async fn next_fill(&mut self) -> Fill {
        let ev = tokio::time::timeout(LIMIT, self.fills.recv())
            .await
            .expect("timed out waiting for a fill")
            .unwrap();
        match &ev.payload {
            Payload::Fill(fill) => fill.clone(),
            other => panic!("not a fill: {other:?}"),
        }
    }

    /// No fill is waiting on the bus now (fills are published synchronously by whichever
    /// source applies them, so after that source's call returned this is decisive).
    fn no_more_fills(&mut self) {
        if let Ok(ev) = self.fills.try_recv() {
            panic!("an extra fill: {:?}", ev.payload);
        }
    }

    fn query_orders(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.endpoint == "QueryOrders")
            .count()
    }

    /// Places a resting buy of `qty` XRP at 0.4 (the market is 0.5); its txid.
    async fn resting_buy(&self, id: &str, qty: Decimal) -> String {
        let ack = self
            .client
            .place_order(&order(id, Side::Buy, qty, Some(dec!(0.4))))
            .await
            .unwrap();
        assert_eq!(ack.status, OrderStatus::Open);
        ack.order_id.to_string()
    }
}

/// While the socket is live, fills arrive over `executions`: a resting order filled in two
/// parts and a market order (whose trade is pushed before `AddOrder` answers) — each
/// published once, at the execution's price, with no `QueryOrders` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_arrive_over_executions_without_polling() {
    let mut s = setup(SyncPlan {
        while_down: NEVER,
        while_live: NEVER,
    })
    .await;
    s.until("live", |st| st.live).await;
    assert_eq!(s.server.ws_subscribes(), ["ok"]);
    assert_eq!(s.server.ws_tokens_issued(), 1);

    let txid = s.resting_buy("ws-rest-1", dec!(100)).await;
    assert!(s.server.fill_order(&txid, dec!(40), dec!(0.4)));
    let first = s.next_fill().await;
    assert_eq!(
        (first.qty, first.price, first.order_id.to_string()),
        (dec!(40), dec!(0.4), txid.clone())
    );
    assert_eq!(first.client_order_id, Some(ClientOrderId::new("ws-rest-1")));
    assert!(s.server.fill_order(&txid, dec!(60), dec!(0.38)));
    let second = s.next_fill().await;
    assert_eq!((second.qty, second.price), (dec!(60), dec!(0.38)));

    s.client
        .place_order(&order("ws-mkt-1", Side::Buy, dec!(20), None))
        .await
        .unwrap();
    let market = s.next_fill().await;
    assert_eq!(
        (market.qty, market.price, market.client_order_id),
        (dec!(20), dec!(0.5), Some(ClientOrderId::new("ws-mkt-1")))
    );

    assert_eq!(s.query_orders(), 0, "fills came over the socket, not REST");
    // A REST sync now finds nothing new: each execution was published once.
    assert_eq!(s.client.sync_orders().await.unwrap(), 0);
    s.no_more_fills();
    assert!(s.feed.is_live());
    assert_eq!(s.feed.stats().malformed, 0);
}

/// A post-only order that would take liquidity on arrival is accepted by `AddOrder`, then
/// cancelled by the exchange without executing (Kraken: it "will either get posted to the
/// order book or be cancelled"): the cancel arrives over `executions`, with no fill and no
/// REST poll; a post-only order that does not cross stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_only_order_that_would_take_is_reported_cancelled_over_executions() {
    let mut s = setup(SyncPlan {
        while_down: NEVER,
        while_live: NEVER,
    })
    .await;
    s.until("live", |st| st.live).await;
    let mut updates = s.bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
    let maker = s
        .client
        .place_order(&order("ws-po-rest", Side::Buy, dec!(10), Some(dec!(0.4))).post_only())
        .await
        .unwrap();
    assert_eq!(maker.status, OrderStatus::Open);
    s.client
        .place_order(&order("ws-po-take", Side::Buy, dec!(10), Some(dec!(0.6))).post_only())
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(LIMIT, async {
        loop {
            let ev = updates.recv().await.unwrap();
            if let Payload::OrderUpdate {
                client_order_id,
                status,
                filled_qty,
                ..
            } = &ev.payload
                && client_order_id.as_str() == "ws-po-take"
                && status.is_terminal()
            {
                return (*status, *filled_qty);
            }
        }
    })
    .await
    .expect("timed out waiting for the post-only cancel");
    assert_eq!(cancelled, (OrderStatus::Cancelled, Decimal::ZERO));
    assert_eq!(
        s.query_orders(),
        0,
        "the cancel came over the socket, not REST"
    );
    s.no_more_fills();
    let open: Vec<_> = s
        .server
        .orders()
        .into_iter()
        .filter(|o| o.status == "open")
        .filter_map(|o| o.cl_ord_id)
        .collect();
    assert_eq!(open, ["ws-po-rest"]);
}

/// With the socket silent (open but sending nothing, executions lost) the feed goes down
/// after the heartbeat timeout and REST polling takes over; with the socket dropped too.
/// Each time the feed comes back with a fresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_socket_silent_or_dropped_fills_arrive_over_rest() {
    let mut s = setup(SyncPlan {
        while_down: Duration::from_millis(50),
        while_live: NEVER,
    })
    .await;
    s.until("live", |st| st.live).await;
    let txid = s.resting_buy("rest-fallback-1", dec!(100)).await;

    s.server.set_ws_silent(true);
    s.until("down after silence", |st| !st.live).await;
    assert!(s.server.fill_order(&txid, dec!(30), dec!(0.4)));
    let fill = s.next_fill().await;
    assert_eq!((fill.qty, fill.price), (dec!(30), dec!(0.4)));
    assert!(s.query_orders() > 0, "the fill came over REST");

    // Back, on a new connection with a new token.
    s.server.set_ws_silent(false);
    let back = s
        .until("live again", |st| st.live && st.sessions >= 2)
        .await;
    assert!(s.server.ws_tokens_issued() >= back.sessions as usize);

    s.server.refuse_ws_subscribes(1_000_000);
    s.server.drop_ws_connections();
    s.until("down after the drop", |st| !st.live).await;
    // Polled under a deadline: the feed's next attempt is refused.
    wait_for(
        "a subscribe refused with EService:Unavailable",
        LIMIT,
        || {
            s.server
                .ws_subscribes()
                .iter()
                .any(|o| o == "EService:Unavailable")
        },
    )
    .await;
    assert!(s.server.fill_order(&txid, dec!(70), dec!(0.39)));
    let fill = s.next_fill().await;
    assert_eq!((fill.qty, fill.price), (dec!(70), dec!(0.39)));
    assert!(!s.feed.is_live());
    s.no_more_fills();
}

/// An execution both sources report is published once, whichever reports it first: fills
/// missed while the socket was silent come from the REST sync made right after the
/// reconnect, later ones from the socket, and REST syncs racing the socket add nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_reconnect_each_execution_is_published_exactly_once() {
    let mut s = setup(SyncPlan {
        while_down: NEVER,
        while_live: NEVER,
    })
    .await;
    s.until("live", |st| st.live).await;
    let txid = s.resting_buy("once-1", dec!(100)).await;

    // Lost on the socket, not polled (REST is off while down): found by the sync that
    // follows the next subscription.
    s.server.set_ws_silent(true);
    s.until("down", |st| !st.live).await;
    assert!(s.server.fill_order(&txid, dec!(25), dec!(0.4)));
    assert_eq!(s.query_orders(), 0);
    s.server.set_ws_silent(false);
    let missed = s.next_fill().await;
    assert_eq!((missed.qty, missed.price), (dec!(25), dec!(0.4)));
    assert!(
        s.query_orders() > 0,
        "caught up by REST after the reconnect"
    );
    s.until("live again", |st| st.live && st.sessions >= 2)
        .await;
    let before = s.feed.stats().executions;

    // Both sources see each of these executions; REST is called right after each one, so
    // either may be first.
    let mut total = missed.qty;
    for (qty, price) in [
        (dec!(15), dec!(0.4)),
        (dec!(20), dec!(0.39)),
        (dec!(40), dec!(0.38)),
    ] {
        assert!(s.server.fill_order(&txid, qty, price));
        s.client.sync_orders().await.unwrap();
        let fill = s.next_fill().await;
        assert_eq!((fill.qty, fill.price), (qty, price));
        total += fill.qty;
    }
    // Wait (polling under a deadline) until the socket's copies have all been applied —
    // three trades and `filled` — then REST once more. Nothing new from either.
    wait_for("the socket's four executions applied", LIMIT, || {
        s.feed.stats().executions >= before + 4
    })
    .await;
    s.client.sync_orders().await.unwrap();
    s.no_more_fills();
    assert_eq!(total, dec!(100));
}

/// Malformed messages — not JSON, an update entry without its quantities, an unknown
/// status — are counted and skipped; the feed stays subscribed and the next fill arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_executions_message_does_not_kill_the_feed() {
    let mut s = setup(SyncPlan {
        while_down: NEVER,
        while_live: NEVER,
    })
    .await;
    s.until("live", |st| st.live).await;
    let txid = s.resting_buy("malformed-1", dec!(10)).await;
    s.server.send_ws_text("{this is not json");
    s.server.send_ws_text(
        r#"{"channel":"executions","type":"update","data":[{"exec_type":"trade","order_id":"X"}]}"#,
    );
    s.server.send_ws_text(&format!(
        r#"{{"channel":"executions","type":"update","data":[{{"exec_type":"trade","order_id":"{txid}","order_status":"sideways","last_qty":1,"cum_qty":1,"cum_cost":1}}]}}"#
    ));
    s.server
        .send_ws_text(r#"{"channel":"executions","type":"update"}"#);
    assert!(s.server.fill_order(&txid, dec!(10), dec!(0.4)));
    let fill = s.next_fill().await;
    assert_eq!((fill.qty, fill.price), (dec!(10), dec!(0.4)));
    assert!(s.feed.stats().malformed >= 4, "{:?}", s.feed.stats());
    assert_eq!(
        *s.state.borrow(),
        FeedState {
            live: true,
            sessions: 1
        }
    );
    assert_eq!(s.query_orders(), 0);
    s.no_more_fills();
}

/// A report whose cost over quantity is out of `Decimal`'s range (the division panicked
/// and took the feed task down; seen while writing the `executions` fuzz target)
/// publishes the fill at the report's average price, and the feed goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_whose_price_overflows_is_published_not_a_panic() {
    let mut s = setup(SyncPlan {
        while_down: NEVER,
        while_live: NEVER,
    })
    .await;
    s.until("live", |st| st.live).await;
    let txid = s.resting_buy("overflow-1", dec!(10)).await;
    s.server.send_ws_text(&format!(
        r#"{{"channel":"executions","type":"update","data":[{{"exec_type":"trade","order_id":"{txid}","symbol":"XRP/USD","order_status":"partially_filled","last_qty":1e-20,"cum_qty":1e-20,"cum_cost":79228162514264337593543950335,"avg_price":0.4}}]}}"#
    ));
    let fill = s.next_fill().await;
    assert_eq!(
        (fill.qty, fill.price),
        (dec!(0.00000000000000000001), dec!(0.4))
    );
    // The feed is alive: the rest of the order fills and is published.
    assert!(s.server.fill_order(&txid, dec!(10), dec!(0.4)));
    let fill = s.next_fill().await;
    assert_eq!(fill.qty, dec!(10) - dec!(0.00000000000000000001));
    assert!(s.state.borrow().live);
    s.no_more_fills();
}

async fn raw_subscribe(server: &MockKrakenHandle, token: &str) -> serde_json::Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let request = serde_json::json!({
        "method": "subscribe",
        "params": {"channel": "executions", "token": token, "snap_orders": true},
        "req_id": 7,
    });
    ws.send(Message::text(request.to_string())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(LIMIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if v["method"] == "subscribe" {
                return v;
            }
        }
    }
}

/// The mock's token rule is Kraken's: an unknown token, or one not used within 15
/// minutes of its creation, is refused with `ESession:Invalid session`; a fresh one is
/// accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_refuses_a_bad_or_stale_token_like_kraken() {
    let clock = Arc::new(ManualClock::default());
    let server = MockKraken::start(MockConfig {
        clock: clock.clone(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let client = KrakenClient::new(
        KrakenConfig::new(server.url()),
        Arc::new(server.credentials()),
        Publisher::new(None, Arc::new(SystemClock), Source::Exec),
    )
    .unwrap();
    let bogus = raw_subscribe(&server, "not-a-token").await;
    assert_eq!(
        (bogus["success"].as_bool(), bogus["error"].as_str()),
        (Some(false), Some(WS_INVALID_SESSION))
    );
    let token = client.websockets_token().await.unwrap();
    assert_eq!(token.expires, Duration::from_secs(900));
    assert!(
        !format!("{token:?}").contains(token.expose()),
        "never printed"
    );
    let ok = raw_subscribe(&server, token.expose()).await;
    assert_eq!(
        (ok["success"].as_bool(), ok["req_id"].as_u64()),
        (Some(true), Some(7))
    );
    clock.advance(chrono::Duration::minutes(16));
    let stale = raw_subscribe(&server, token.expose()).await;
    assert_eq!(stale["error"].as_str(), Some(WS_INVALID_SESSION));
    assert_eq!(
        server.ws_subscribes(),
        [WS_INVALID_SESSION, "ok", WS_INVALID_SESSION]
    );
}
