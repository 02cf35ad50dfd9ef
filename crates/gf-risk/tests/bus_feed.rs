//! End to end inside gf-risk: events travel as JSON lines over a loopback TCP socket (the
//! wire format of the API and the journal), are published on the bus, and a
//! `SharedPortfolio` task applies them while another task reads its `PortfolioView`; the
//! state then survives a restart through its JSON snapshot.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use gf_core::config::RiskConfig;
use gf_core::{
    BookSnapshot, ClientOrderId, Event, EventBus, Fill, Level, ManualClock, OrderId, OrderPurpose,
    OrderRequest, OrderStatus, Pair, Payload, Side, Source,
};
use gf_risk::{
    Portfolio, PortfolioConfig, PortfolioView, PreTradeCheck, RiskLimits, SharedPortfolio,
};
use rust_decimal::Decimal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn xrp() -> Pair {
    "XRP/USD".parse().unwrap()
}

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn fill(
    id: &str,
    side: Side,
    qty: &str,
    price: &str,
    fee: &str,
    ts: chrono::DateTime<Utc>,
) -> Payload {
    Payload::Fill(Fill {
        trade_id: id.into(),
        order_id: OrderId::new(format!("O{id}")),
        client_order_id: Some(ClientOrderId::new(format!("c{id}"))),
        pair: xrp(),
        side,
        qty: d(qty),
        price: d(price),
        fee: d(fee),
        ts,
        purpose: OrderPurpose::Normal,
    })
}

fn book(bid: &str, ask: &str) -> Payload {
    Payload::BookSnapshot(BookSnapshot {
        pair: xrp(),
        bids: vec![Level::new(d(bid), d("1000"))],
        asks: vec![Level::new(d(ask), d("1000"))],
        checksum: 0,
    })
}

/// A recorded session: marks each minute, a losing round trip, a winning one, an order
/// update, a malformed fill and a pair nobody trades.
fn session() -> Vec<Event> {
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let at = |m: i64| t0 + Duration::minutes(m);
    let mut events = Vec::new();
    for m in 0..5 {
        let mid = Decimal::new(5000 + m * 10, 4);
        events.push(Event::new(
            at(m),
            Source::Replay,
            Payload::Trade {
                pair: xrp(),
                side: Side::Buy,
                price: mid,
                qty: d("10"),
                trade_id: u64::try_from(m).unwrap(),
            },
        ));
    }
    events.push(Event::new(
        at(5),
        Source::Paper,
        fill("1", Side::Buy, "10000", "0.5040", "2", at(5)),
    ));
    events.push(Event::new(at(6), Source::Replay, book("0.4990", "0.5010")));
    events.push(Event::new(
        at(7),
        Source::Paper,
        fill("2", Side::Sell, "10000", "0.4990", "2", at(7)),
    ));
    events.push(Event::new(
        at(8),
        Source::Paper,
        fill("3", Side::Buy, "4000", "0.5000", "1", at(8)),
    ));
    events.push(Event::new(at(9), Source::Replay, book("0.5190", "0.5210")));
    events.push(Event::new(
        at(9),
        Source::Paper,
        Payload::OrderUpdate {
            client_order_id: ClientOrderId::new("c3"),
            order_id: Some(OrderId::new("O3")),
            pair: xrp(),
            status: OrderStatus::Filled,
            filled_qty: d("4000"),
            reason: None,
        },
    ));
    events.push(Event::new(
        at(10),
        Source::Paper,
        fill("4", Side::Sell, "-5", "0.5", "0", at(10)),
    ));
    events.push(Event::new(
        at(10),
        Source::Replay,
        Payload::Trade {
            pair: "ETH/USD".parse().unwrap(),
            side: Side::Sell,
            price: d("3000"),
            qty: d("1"),
            trade_id: 99,
        },
    ));
    events
}

fn new_risk(clock: &ManualClock) -> SharedPortfolio {
    let portfolio = Portfolio::new(
        PortfolioConfig {
            pairs: vec![xrp(), "DOGE/USD".parse().unwrap()],
            initial_cash: d("100000"),
            volatility_window: 3,
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    SharedPortfolio::new(
        portfolio,
        RiskLimits::from_config(&RiskConfig::default()).unwrap(),
    )
}

#[tokio::test]
async fn events_over_loopback_tcp_drive_the_portfolio() {
    let clock = ManualClock::at_ymd_hms(2026, 3, 1, 9, 10, 0);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // The feed: one JSON event per line, then close.
    let feed = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        for event in session() {
            let mut line = serde_json::to_string(&event).unwrap();
            line.push('\n');
            socket.write_all(line.as_bytes()).await.unwrap();
        }
        socket.write_all(b"{not json}\n").await.unwrap();
        socket.shutdown().await.unwrap();
    });

    let bus = EventBus::new(1024);
    let risk = new_risk(&clock);
    // Never cancelled: the applier must stop on its own when the bus closes.
    let shutdown = CancellationToken::new();
    let applier = tokio::spawn(
        risk.clone()
            .run(bus.subscribe(SharedPortfolio::kinds()), shutdown.clone()),
    );
    // A gf-halt-like reader polling the view while events are applied.
    let view: Arc<dyn PortfolioView> = Arc::new(risk.clone());
    let reader = tokio::spawn(async move {
        for _ in 0..200 {
            let dd = view.total_drawdown_pct();
            assert!(dd >= Decimal::ZERO && dd <= Decimal::ONE_HUNDRED);
            tokio::task::yield_now().await;
        }
    });

    // The client: parse each line and publish it; malformed lines are counted, not fatal.
    let socket = TcpStream::connect(addr).await.unwrap();
    let mut lines = BufReader::new(socket).lines();
    let mut malformed = 0;
    while let Some(line) = lines.next_line().await.unwrap() {
        match serde_json::from_str::<Event>(&line) {
            Ok(event) => {
                bus.publish(event);
            }
            Err(_) => malformed += 1,
        }
    }
    feed.await.unwrap();
    reader.await.unwrap();
    drop(bus); // the applier drains what is queued, then sees the bus close
    let report = applier.await.unwrap();
    assert!(!shutdown.is_cancelled());

    assert_eq!(malformed, 1);
    assert_eq!(report.errors, 2, "{report:?}"); // the negative fill and ETH/USD
    assert_eq!(report.applied, 11);
    assert_eq!(report.lagged, 0);

    // Round trip 1: bought 10 000 at 0.5040, sold at 0.4990, fees 4 → -54.
    // Round trip 2 still open: 4 000 from 0.5000, marked at mid 0.5200, fee 1.
    assert_eq!(risk.consecutive_losses(), 1);
    let stats = risk.trading_stats();
    assert_eq!((stats.count, stats.losers), (1, 1));
    assert_eq!(stats.total_pnl, d("-54"));
    let positions = risk.positions();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].qty, d("4000"));
    assert_eq!(positions[0].unrealised_pnl, d("80"));
    assert_eq!(risk.equity(), d("100025")); // 100 000 - 54 - 1 + 80
    assert_eq!(risk.exposure(), d("2080"));
    assert!(risk.volatility_pct(&xrp()).is_some());
    assert_eq!(risk.open_orders(), 0);

    // Pre-trade against the live state: a fresh price (the clock is at 09:10, the last
    // mark at 09:09) and a limit 20 % away.
    let order = OrderRequest::limit(
        ClientOrderId::new("n1"),
        xrp(),
        Side::Sell,
        d("100"),
        d("0.4160"),
    );
    let verdict = risk.check(order);
    assert_eq!(verdict.refusal().unwrap().code(), "stale_price");

    // Restart: the snapshot restores identical numbers.
    let json = risk.read(|p| p.snapshot_json()).unwrap();
    let restored = Portfolio::restore_json(&json, Arc::new(clock.clone())).unwrap();
    assert_eq!(restored.equity(), risk.equity());
    assert_eq!(restored.peak_equity(), risk.peak_equity());
    assert_eq!(restored.total_drawdown_pct(), risk.total_drawdown_pct());
    assert_eq!(restored.daily_drawdown_pct(), risk.daily_drawdown_pct());
    assert_eq!(restored.consecutive_losses(), risk.consecutive_losses());
    assert_eq!(restored.positions(), risk.positions());
    assert_eq!(restored.volatility_pct(&xrp()), risk.volatility_pct(&xrp()));
    assert_eq!(restored.statistics(), risk.trading_stats());
}
