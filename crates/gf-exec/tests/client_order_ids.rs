//! Client order ids Kraken accepts: the Kraken client refuses a malformed `cl_ord_id` (or
//! one sent with `userref`) before anything reaches the exchange, and generated ids pass
//! the mock Kraken's strict check.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::{
    ApiErrorKind, ClientOrderId, EventBus, EventKind, KindSet, OrderRequest, OrderStatus, Pair,
    Payload, Side, Source, SystemClock, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::sim::{MockConfig, MockKraken, MockKrakenHandle};
use gf_exec::{Error, Exchange, KrakenClient, KrakenConfig};
use rust_decimal::Decimal;

fn buy(id: ClientOrderId) -> OrderRequest {
    OrderRequest::market(
        id,
        Pair::new("XRP/USD").unwrap(),
        Side::Buy,
        Decimal::from(20),
    )
}

async fn setup() -> (MockKrakenHandle, KrakenClient, EventBus) {
    let server = MockKraken::start(MockConfig::default()).await.unwrap();
    let bus = EventBus::new(1024);
    let mut cfg = KrakenConfig::new(server.url());
    cfg.timeout = Duration::from_secs(2);
    let client = KrakenClient::new(
        cfg,
        Arc::new(server.credentials()),
        Publisher::new(Some(bus.clone()), Arc::new(SystemClock), Source::Exec),
    )
    .unwrap()
    .with_gate(TradingGate::new_open());
    (server, client, bus)
}

#[tokio::test]
async fn malformed_ids_are_refused_before_anything_is_sent() {
    let (server, client, bus) = setup().await;
    let mut updates = bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
    let bad = [
        // The shape strategy orders used to have: 25 characters of free text.
        "ema_cross-1796153720687-1",
        "d15708c1-dbb6-465d-b77d-47258319cc9z",
        "two words",
    ];
    for id in bad {
        let err = client
            .place_order(&buy(ClientOrderId::new(id)))
            .await
            .unwrap_err();
        match &err {
            Error::Rejected {
                client_order_id,
                kind,
                reason,
            } => {
                assert_eq!(client_order_id, id);
                assert_eq!(*kind, ApiErrorKind::InvalidArguments);
                assert!(reason.contains("not one Kraken accepts"), "{reason}");
            }
            other => panic!("{id:?}: {other:?}"),
        }
        assert!(err.to_string().contains(id), "{err}");
        assert!(!err.is_ambiguous() && !err.is_retryable());
        let ev = updates.recv().await.unwrap();
        assert!(
            matches!(&ev.payload, Payload::OrderUpdate { client_order_id, status: OrderStatus::Rejected, .. }
                if client_order_id.as_str() == id),
            "{ev:?}"
        );
    }
    // With userref as well: Kraken takes one or the other.
    let mut both = buy(ClientOrderId::new("ok-id"));
    both.user_ref = Some(42);
    let err = client.place_order(&both).await.unwrap_err();
    assert!(err.to_string().contains("userref 42"), "{err}");
    assert!(
        server.requests().is_empty(),
        "the mock saw a request: {:?}",
        server.requests()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn generated_ids_pass_the_mocks_strict_check() {
    let (server, client, _bus) = setup().await;
    let ids = [
        ClientOrderId::from_u128(0),
        ClientOrderId::from_u128(u128::MAX),
        ClientOrderId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        ClientOrderId::new("d15708c1-dbb6-465d-b77d-47258319cc90"),
        ClientOrderId::new("eighteen-chars-ok!"),
    ];
    for id in &ids {
        let ack = client.place_order(&buy(id.clone())).await.unwrap();
        assert_eq!(&ack.client_order_id, id);
    }
    let accepted: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "AddOrder")
        .map(|r| r.outcome)
        .collect();
    assert_eq!(accepted, vec!["ok"; ids.len()]);
    let on_book: Vec<Option<String>> = server.orders().into_iter().map(|o| o.cl_ord_id).collect();
    assert_eq!(
        on_book,
        ids.iter()
            .map(|i| Some(i.as_str().to_owned()))
            .collect::<Vec<_>>()
    );
    server.shutdown().await;
}
