//! The paper exchange fed by the event bus, behind the gate, with the dead man's switch
//! keeper: the composition the daemon runs in paper mode.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use gf_core::{
    BookSnapshot, BookUpdate, ClientOrderId, Clock, Event, EventBus, EventKind, KindSet, Level,
    ManualClock, OrderPurpose, OrderRequest, OrderStatus, Pair, Payload, Position, Side, Source,
    TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::{
    DeadManConfig, DeadManSwitch, Error, Exchange, GatedExchange, OrderRef, PaperConfig,
    PaperExchange,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use common::wait_for;

fn pair() -> Pair {
    Pair::new("DOGE/USD").unwrap()
}

fn levels(raw: &[(Decimal, Decimal)]) -> Vec<Level> {
    raw.iter().map(|(p, q)| Level::new(*p, *q)).collect()
}

fn order(id: &str, side: Side, qty: Decimal, limit: Option<Decimal>) -> OrderRequest {
    let id = ClientOrderId::new(id);
    match limit {
        Some(price) => OrderRequest::limit(id, pair(), side, qty, price),
        None => OrderRequest::market(id, pair(), side, qty),
    }
}

#[tokio::test]
async fn bus_fed_paper_exchange_behind_the_gate() {
    let clock = ManualClock::default();
    let bus = EventBus::new(4096);
    let mut out = bus.subscribe(KindSet::of(&[EventKind::Fill, EventKind::OrderUpdate]));
    let events = Publisher::new(Some(bus.clone()), Arc::new(clock.clone()), Source::Paper);
    let paper = Arc::new(PaperExchange::new(PaperConfig::default(), events.clone()));
    let feed = paper.spawn_feed(&bus);
    let gate = TradingGate::new_open();
    let exchange: Arc<dyn Exchange> = Arc::new(GatedExchange::new(
        Arc::clone(&paper),
        gate.clone(),
        events.clone(),
    ));

    bus.publish(Event::new(
        clock.now(),
        Source::Market,
        Payload::BookSnapshot(BookSnapshot {
            pair: pair(),
            bids: levels(&[(dec!(0.0999), dec!(50000))]),
            asks: levels(&[(dec!(0.1001), dec!(20000)), (dec!(0.1002), dec!(30000))]),
            checksum: 0,
        }),
    ));
    let probe = Arc::clone(&paper);
    wait_for(
        "the paper book to take the snapshot",
        Duration::from_secs(10),
        move || probe.best_bid_ask(&pair()).is_some(),
    )
    .await;
    assert_eq!(
        paper.best_bid_ask(&pair()),
        Some((dec!(0.0999), dec!(0.1001)))
    );

    // A market buy of 30 000 walks two levels: 20 000 @ 0.1001 + 10 000 @ 0.1002.
    let ack = exchange
        .place_order(&order("m1", Side::Buy, dec!(30000), None))
        .await
        .unwrap();
    assert_eq!(ack.status, OrderStatus::Filled);
    let info = exchange
        .order_status(&OrderRef::Exchange(ack.order_id))
        .await
        .unwrap();
    assert_eq!(info.avg_price, Some(dec!(3004) / dec!(30000)));

    // A resting sell fills when a book update crosses it.
    exchange
        .place_order(&order("l1", Side::Sell, dec!(5000), Some(dec!(0.1010))))
        .await
        .unwrap();
    bus.publish(Event::new(
        clock.now(),
        Source::Market,
        Payload::BookUpdate(BookUpdate {
            pair: pair(),
            bids: levels(&[(dec!(0.1011), dec!(8000))]).into(),
            asks: Default::default(),
            checksum: 0,
            best_bid: Some(Level::new(dec!(0.1011), dec!(8000))),
            best_ask: None,
        }),
    ));
    let fill = loop {
        let ev = out.recv().await.unwrap();
        if let Payload::Fill(f) = &ev.payload
            && f.client_order_id == Some(ClientOrderId::new("l1"))
        {
            break f.clone();
        }
    };
    assert_eq!((fill.qty, fill.price), (dec!(5000), dec!(0.1010)));
    assert_eq!(fill.fee, dec!(505) * dec!(0.0025));
    assert_eq!(fill.ts, clock.now());

    // Halted: normal orders refused, closure orders flatten.
    gate.close();
    let refused = exchange
        .place_order(&order("m2", Side::Buy, dec!(10), None))
        .await;
    assert!(matches!(refused, Err(Error::Halted)));
    let mut flatten = order("flat", Side::Sell, dec!(25000), None);
    flatten.purpose = OrderPurpose::HaltClosure;
    assert!(
        exchange.place_order(&flatten).await.is_err(),
        "a closure needs a seal"
    );
    let opener = gate.take_opener().unwrap();
    let mut long = Position::flat(pair());
    long.qty = dec!(25000);
    flatten.closure_seal = Some(
        opener
            .seal_closure(&flatten.client_order_id, &long, flatten.qty)
            .unwrap(),
    );
    assert_eq!(
        exchange.place_order(&flatten).await.unwrap().status,
        OrderStatus::Filled
    );
    assert_eq!(exchange.balances().await.unwrap()["DOGE"], Decimal::ZERO);
    feed.abort();
}

#[tokio::test(start_paused = true)]
async fn dead_mans_switch_keeper_holds_orders_while_halted_and_lapses_after_exit() {
    let clock = ManualClock::default();
    let events = Publisher::new(None, Arc::new(clock.clone()), Source::Paper);
    let paper = Arc::new(PaperExchange::new(PaperConfig::default(), events.clone()));
    paper.on_event(&Event::new(
        clock.now(),
        Source::Replay,
        Payload::BookSnapshot(BookSnapshot {
            pair: pair(),
            bids: levels(&[(dec!(0.09), dec!(1000))]),
            asks: levels(&[(dec!(0.11), dec!(1000))]),
            checksum: 0,
        }),
    ));
    paper
        .place_order(&order("rest", Side::Buy, dec!(100), Some(dec!(0.08))))
        .await
        .unwrap();
    let gate = TradingGate::new_open();
    let keeper = DeadManSwitch::spawn(paper.clone(), DeadManConfig::new(60, false), events);
    // While open, every refresh pushes the deadline out: two minutes pass, nothing fires.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(15)).await;
        clock.advance(chrono::Duration::seconds(15));
    }
    assert_eq!(paper.open_orders().await.unwrap().len(), 1);
    // Halted (`hold`): the daemon lives, so the switch is still refreshed and the
    // resting order is left alone.
    gate.close();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(15)).await;
        clock.advance(chrono::Duration::seconds(15));
    }
    assert_eq!(paper.open_orders().await.unwrap().len(), 1);
    // The process goes away without disarming: the exchange-side switch cancels it.
    keeper.shutdown().await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(15)).await;
        clock.advance(chrono::Duration::seconds(15));
    }
    assert!(paper.open_orders().await.unwrap().is_empty());
}
