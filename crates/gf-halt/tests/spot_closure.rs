//! A halt with `close_positions` on a spot account, against the mock Kraken (gf-exec
//! `sim`): the closure sells what the balances hold — rounded down to the lot decimals,
//! never `reduce_only` (which Kraken, and the mock, reject without a margin position) —
//! re-reads the balance to verify, and reports a remainder below `ordermin` as dust.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use common::{View, halted};
use gf_core::config::HaltConfig;
use gf_core::{EventBus, HaltBehaviour, HaltSource, ManualClock, Pair, Source, TradingGate};
use gf_exec::events::Publisher;
use gf_exec::sim::{MockConfig, MockKraken, MockKrakenHandle};
use gf_exec::{Exchange, KrakenClient, KrakenConfig};
use gf_halt::{HaltCoordinator, Journal};

fn pair(s: &str) -> Pair {
    Pair::new(s).unwrap()
}

struct Setup {
    server: MockKrakenHandle,
    halt: HaltCoordinator,
}

/// A coordinator closing positions through a gated Kraken client on the mock, whose
/// account holds `balances`; the portfolio knows of no position at all.
async fn setup(balances: &[(&str, Decimal)]) -> Setup {
    let clock = ManualClock::default();
    let server = MockKraken::start(MockConfig {
        balances: balances
            .iter()
            .map(|(a, q)| ((*a).to_owned(), *q))
            .collect::<BTreeMap<_, _>>(),
        // One clock for both sides, as Kraken's and ours agree (AddOrder's `deadline`).
        clock: Arc::new(clock.clone()),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let bus = EventBus::new(4096);
    let gate = TradingGate::new_closed();
    let mut cfg = KrakenConfig::new(server.url());
    cfg.pairs = vec![pair("XRP/USD"), pair("DOGE/USD")];
    cfg.timeout = Duration::from_secs(2);
    let publisher = || Publisher::new(Some(bus.clone()), Arc::new(clock.clone()), Source::Exec);
    let client = Arc::new(
        KrakenClient::new(cfg, Arc::new(server.credentials()), publisher())
            .unwrap()
            .with_gate(gate.clone()),
    );
    // As at launch: the pairs' lot decimals and order minimums come from AssetPairs.
    client.asset_pairs().await.unwrap();
    let exchange: Arc<dyn Exchange> =
        Arc::new(Arc::clone(&client).into_gated(publisher()).unwrap());
    let halt_cfg = HaltConfig {
        behaviour: HaltBehaviour::ClosePositions,
        closure_max_attempts: 3,
        closure_backoff_ms: 10,
        ..HaltConfig::default()
    };
    let journal = Arc::new(Journal::in_memory(Arc::new(clock.clone())).unwrap());
    let halt = HaltCoordinator::builder(&halt_cfg, journal, gate)
        .exchange(exchange)
        .portfolio(View::new())
        .bus(bus)
        .clock(Arc::new(clock))
        .open()
        .unwrap();
    Setup { server, halt }
}

/// The journaled `closure_result` of round 1: (flat, detail).
fn closure_result(halt: &HaltCoordinator) -> (bool, String) {
    let r = halt
        .journal()
        .records(100)
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "closure_result")
        .expect("a closure_result was journaled");
    (
        r.detail["flat"].as_bool().unwrap(),
        r.detail["detail"].as_str().unwrap().to_owned(),
    )
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_halt_on_a_spot_account_ends_flat_by_balance() {
    // XRP bought before this run (the portfolio does not know of it), with more decimals
    // than the pair's 8 lot decimals; DOGE below the pair's order minimum of 10.
    let s = setup(&[
        ("ZUSD", dec!(50)),
        ("XXRP", dec!(1234.5678912345)),
        ("XXDG", dec!(7.5)),
    ])
    .await;
    s.halt
        .halt(HaltSource::Cli, "flatten the spot account")
        .await;
    halted(&s.halt).await;

    let balances = s.server.balances();
    // Sold down to less than one lot: dust by balance.
    assert_eq!(balances["XXRP"], dec!(0.0000000045), "{balances:?}");
    assert_eq!(balances["XXDG"], dec!(7.5), "below the minimum: not sold");
    assert_eq!(
        balances["ZUSD"],
        dec!(50) + dec!(1234.56789123) * dec!(0.5),
        "{balances:?}"
    );
    let adds: Vec<_> = s
        .server
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "AddOrder")
        .collect();
    assert_eq!(adds.len(), 1, "{adds:?}");
    let add = &adds[0];
    assert_eq!(add.outcome, "ok", "{add:?}");
    assert_eq!(param(&add.params, "type"), Some("sell"));
    assert_eq!(param(&add.params, "volume"), Some("1234.56789123"));
    assert_eq!(param(&add.params, "reduce_only"), None, "{add:?}");

    let (flat, detail) = closure_result(&s.halt);
    assert!(flat, "{detail}");
    assert!(detail.contains("dust"), "{detail}");
    assert!(detail.contains("DOGE/USD 7.5 DOGE"), "{detail}");
    // Verified by reading the balance again after the sale: the last private call before
    // the result is a balance read.
    let after_sale = s
        .server
        .requests()
        .into_iter()
        .skip_while(|r| r.endpoint != "AddOrder")
        .filter(|r| r.endpoint == "Balance")
        .count();
    assert!(after_sale >= 1, "no balance read after the sale");
    s.server.shutdown().await;
}

#[tokio::test]
async fn only_dust_is_flat_with_dust_and_nothing_is_sent() {
    let s = setup(&[("ZUSD", dec!(50)), ("XXDG", dec!(9.99999999))]).await;
    s.halt.halt(HaltSource::Cli, "dust only").await;
    halted(&s.halt).await;
    assert!(s.server.requests().iter().all(|r| r.endpoint != "AddOrder"));
    let (flat, detail) = closure_result(&s.halt);
    assert!(flat, "{detail}");
    assert!(detail.contains("9.99999999 DOGE"), "{detail}");
    assert!(
        !s.halt
            .checklist()
            .unwrap()
            .missing()
            .contains(&"resolve_open_positions".to_owned()),
        "dust is not an open position to resolve"
    );
    s.server.shutdown().await;
}
