//! A live daemon trades only a strategy chosen explicitly: launched live on the mock
//! Kraken with the crash recording (whose paper example, `hold_long`, buys after 20 book
//! messages per pair) and no `strategy.kind`, it runs none and places no order.

use std::sync::Arc;
use std::time::Duration;

use gf_core::config::StrategyKind;
use gf_core::{Config, EventKind, KindSet, Mode, Payload, SystemClock};
use gf_daemon::app::{Scenario, chosen_strategy, start_with_env};
use gf_e2e::live::{self};
use gf_market::sim::{SimConfig, SimServer};
use rust_decimal::Decimal;

const API_KEY: &str = "GfLiveE2eMockKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[test]
fn live_runs_none_unless_chosen_and_paper_keeps_its_example() {
    let mut cfg = Config::from_toml_str("").unwrap();
    assert_eq!(chosen_strategy(&cfg, Scenario::Normal).name(), "ema_cross");
    assert_eq!(chosen_strategy(&cfg, Scenario::Crash).name(), "hold_long");
    cfg.general.mode = Mode::Live;
    for scenario in [Scenario::Normal, Scenario::Crash, Scenario::Gap] {
        assert_eq!(chosen_strategy(&cfg, scenario).name(), "none");
    }
    cfg.strategy.kind = Some(StrategyKind::EmaCross);
    assert_eq!(chosen_strategy(&cfg, Scenario::Crash).name(), "ema_cross");
    cfg.general.mode = Mode::Paper;
    cfg.strategy.kind = Some(StrategyKind::None);
    assert_eq!(chosen_strategy(&cfg, Scenario::Normal).name(), "none");
    let parsed = Config::from_toml_str("[strategy]\nkind = \"hold_long\"\n").unwrap();
    assert_eq!(parsed.strategy.kind, Some(StrategyKind::HoldLong));
    assert!(Config::from_toml_str("[strategy]\nkind = \"martingale\"\n").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_without_a_chosen_strategy_places_no_order() {
    let kraken = live::mock_kraken(API_KEY, &[("ZUSD", Decimal::from(80_000))]).await;
    let recording = std::fs::read(gf_e2e::fixture("market/crash.jsonl")).unwrap();
    let ws = SimServer::start(&recording, SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = live::live_config(dir.path(), &kraken.url(), &ws.url());
    let running = start_with_env(
        cfg,
        Scenario::Crash,
        Arc::new(SystemClock),
        live::mock_credentials(API_KEY),
    )
    .await
    .unwrap();
    let mut sub = running.daemon.bus.subscribe(KindSet::of(&[
        EventKind::BookSnapshot,
        EventKind::BookUpdate,
        EventKind::Signal,
    ]));
    // Far past hold_long's warm-up (20 book messages per pair): the example would have
    // signalled and bought by now.
    let mut books = 0;
    let mut signals = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        while books < 300 {
            match sub.recv().await {
                Ok(ev) if matches!(ev.payload, Payload::Signal { .. }) => signals += 1,
                Ok(_) => books += 1,
                Err(gf_core::RecvError::Lagged { .. }) => {}
                Err(gf_core::RecvError::Closed) => break,
            }
        }
    })
    .await
    .expect("300 book messages in time");
    assert_eq!(books, 300);
    assert_eq!(signals, 0, "no strategy runs, so nothing signals");
    let adds: Vec<_> = kraken
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "AddOrder")
        .collect();
    assert!(adds.is_empty(), "orders placed: {adds:?}");
    running.stop().await;
    kraken.shutdown().await;
}
