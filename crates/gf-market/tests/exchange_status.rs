//! Kraken's v2 `status` channel through the live client over a real socket on 127.0.0.1:
//! the mode sent on connect and every change reach the bus as `ExchangeStatus` (a
//! lossless kind); an undocumented mode is reported as `unknown` with what Kraken sent.

use std::sync::Arc;
use std::time::Duration;

use gf_core::event::ExchangeSystem;
use gf_core::{EventBus, EventKind, KindSet, ManualClock, Pair, Payload, SharedClock};
use gf_market::fixtures::{Scenario, generate};
use gf_market::sim::{SimConfig, SimServer};
use gf_market::{ClientConfig, MarketClient, MarketSource};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn status_on_connect_and_on_change_reaches_the_bus() {
    let server = SimServer::start(&generate(Scenario::Paper), SimConfig::default())
        .await
        .unwrap();
    // Kraken is in maintenance when we connect.
    server.handle().set_system_status("maintenance");
    let pairs: Vec<Pair> = vec!["XRP/USD".parse().unwrap()];
    let cfg = ClientConfig::new(server.url(), pairs);
    let bus = EventBus::new(1 << 12);
    let mut events = bus.subscribe(KindSet::of(&[EventKind::ExchangeStatus]));
    assert!(EventKind::ExchangeStatus.is_lossless());
    let clock: SharedClock = Arc::new(ManualClock::default());
    let shutdown = CancellationToken::new();
    let mut client = MarketClient::new(cfg).unwrap();
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(bus, clock, shutdown).await })
    };
    let mut next = async || {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an exchange status in time")
            .unwrap();
        match &ev.payload {
            Payload::ExchangeStatus { system, detail } => (*system, detail.clone()),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(next().await.0, ExchangeSystem::Maintenance);

    // Kraken switches modes: every connected session hears it at once.
    for (text, mode) in [
        ("cancel_only", ExchangeSystem::CancelOnly),
        ("post_only", ExchangeSystem::PostOnly),
        ("online", ExchangeSystem::Online),
    ] {
        server.handle().set_system_status(text);
        assert_eq!(next().await.0, mode, "{text}");
    }
    server.handle().set_system_status("limit_only");
    let (system, detail) = next().await;
    assert_eq!(system, ExchangeSystem::Unknown);
    assert!(detail.contains("limit_only"), "{detail}");

    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    server.shutdown().await;
}
