//! The bus never loses an event that risk or halt decides on: fills, order updates, API
//! errors and closure results survive a subscriber that lags far behind a flood of market
//! data, in publication order, while the flood itself is (visibly) dropped.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use gf_core::{
    ApiErrorKind, ClientOrderId, Event, EventBus, EventKind, Fill, KindSet, OrderId, OrderPurpose,
    OrderStatus, Pair, Payload, RecvError, Side, Source, TryRecvError,
};
use rust_decimal::Decimal;

fn xrp() -> Pair {
    Pair::new("XRP/USD").unwrap()
}

fn trade(i: u64) -> Event {
    Event::new(
        Utc::now(),
        Source::Market,
        Payload::Trade {
            pair: xrp(),
            side: Side::Buy,
            price: Decimal::new(5, 1),
            qty: Decimal::ONE,
            trade_id: i,
        },
    )
}

fn fill(i: u64) -> Event {
    Event::new(
        Utc::now(),
        Source::Paper,
        Payload::Fill(Fill {
            trade_id: format!("T{i}"),
            order_id: OrderId::new(format!("O{i}")),
            client_order_id: Some(ClientOrderId::new(format!("c{i}"))),
            pair: xrp(),
            side: Side::Buy,
            qty: Decimal::from(i),
            price: Decimal::new(5, 1),
            fee: Decimal::ZERO,
            ts: Utc::now(),
            purpose: OrderPurpose::Normal,
        }),
    )
}

fn order_update(i: u64) -> Event {
    Event::new(
        Utc::now(),
        Source::Exec,
        Payload::OrderUpdate {
            client_order_id: ClientOrderId::new(format!("c{i}")),
            order_id: None,
            pair: xrp(),
            status: OrderStatus::Filled,
            filled_qty: Decimal::from(i),
            reason: None,
        },
    )
}

fn api_error(i: u64) -> Event {
    Event::new(
        Utc::now(),
        Source::Exec,
        Payload::ApiError {
            endpoint: format!("AddOrder{i}"),
            kind: ApiErrorKind::Network,
            message: "connection reset".into(),
            retryable: true,
        },
    )
}

fn closure(i: u64) -> Event {
    Event::new(
        Utc::now(),
        Source::Halt,
        Payload::ClosureResult {
            flat: false,
            detail: format!("round {i}"),
        },
    )
}

/// A stable label per decision event, to compare what went in with what came out.
fn label(ev: &Event) -> Option<String> {
    match &ev.payload {
        Payload::Fill(f) => Some(format!("fill {}", f.trade_id)),
        Payload::OrderUpdate {
            client_order_id, ..
        } => Some(format!("update {client_order_id}")),
        Payload::ApiError { endpoint, .. } => Some(format!("error {endpoint}")),
        Payload::ClosureResult { detail, .. } => Some(format!("closure {detail}")),
        _ => None,
    }
}

#[test]
fn decision_kinds_ride_the_lossless_lane() {
    for kind in [
        EventKind::Fill,
        EventKind::OrderUpdate,
        EventKind::ApiError,
        EventKind::ClosureResult,
    ] {
        assert!(kind.is_decision(), "{kind}");
        assert!(kind.is_lossless(), "{kind}");
        assert!(KindSet::lossless().contains(kind), "{kind}");
    }
    for kind in EventKind::ALL {
        assert_eq!(
            kind.is_lossless(),
            kind.is_critical() || kind.is_decision(),
            "{kind}"
        );
        if kind.is_market_data() {
            assert!(
                !kind.is_lossless(),
                "market data must not be unbounded: {kind}"
            );
        }
    }
    assert_eq!(
        KindSet::decision().intersection(KindSet::critical()),
        KindSet::of(&[EventKind::ClosureResult])
    );
}

#[tokio::test]
async fn every_decision_event_survives_a_flood_of_market_data_in_order() {
    let bus = EventBus::new(16);
    // What risk and halt subscribe to: market data plus the decision kinds.
    let mut sub = bus.subscribe(KindSet::market_data().union(KindSet::decision()));
    let mut published = Vec::new();
    // 20 000 trades with a decision event of each kind every 50: the subscriber reads
    // nothing until the end, so the 16-slot ring overflows many times over.
    for i in 0..20_000u64 {
        bus.publish(trade(i));
        if i % 50 == 0 {
            for ev in [fill(i), order_update(i), api_error(i), closure(i)] {
                published.push(label(&ev).unwrap());
                bus.publish(ev);
            }
        }
    }
    let mut received = Vec::new();
    let mut lagged = 0u64;
    let mut trades = 0u64;
    loop {
        match sub.try_recv() {
            Ok(ev) => match label(&ev) {
                Some(l) => received.push(l),
                None => trades += 1,
            },
            Err(TryRecvError::Lagged { missed }) => lagged += missed,
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Closed) => panic!("bus closed"),
        }
    }
    assert!(lagged > 19_000, "the flood lagged: {lagged} skipped");
    assert!(
        trades <= 16,
        "only the ring's worth of trades is left: {trades}"
    );
    assert_eq!(published.len(), 1_600);
    assert_eq!(received, published, "every decision event, in order");
}

#[tokio::test]
async fn a_decision_only_subscriber_never_lags() {
    let bus = EventBus::new(4);
    let mut sub = bus.subscribe(KindSet::decision());
    for i in 0..10_000u64 {
        bus.publish(trade(i));
        if i % 100 == 0 {
            bus.publish(fill(i));
        }
    }
    drop(bus);
    let mut fills = 0;
    loop {
        match sub.recv().await {
            Ok(ev) => {
                assert_eq!(ev.kind(), EventKind::Fill);
                fills += 1;
            }
            Err(RecvError::Closed) => break,
            Err(e @ RecvError::Lagged { .. }) => panic!("decision subscriber saw {e}"),
        }
    }
    assert_eq!(fills, 100);
}
