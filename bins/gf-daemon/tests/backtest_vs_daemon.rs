//! The backtest and the paper daemon agree: the crash recording's daily-drawdown halt
//! fires at the same event, with the same value, and the closure sells at the same prices.
//!
//! The daemon runs its real tasks (replay, paper feed, risk, halt, strategy, monitor) on a
//! single-threaded runtime with paused time and the replay paced at real time, so each
//! recorded message is fully handled before the next one is due; the backtest runs
//! gf-strategy's driver on the same recording and configuration.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gf_core::{Config, HaltState, ManualClock, SharedClock};
use gf_daemon::app::{Scenario, build, spawn_tasks};
use gf_strategy::StrategyKind;
use gf_strategy::backtest::Backtest;

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.market.replay_speed = 1.into();
    cfg
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_crash_halts_at_the_same_event_in_the_backtest_and_the_paper_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());

    let backtest = Backtest::new(&cfg, gf_market::bundled::CRASH, StrategyKind::HoldLong)
        .run()
        .unwrap();
    assert_eq!(backtest.halts.len(), 1, "{:?}", backtest.halts);
    let expected = &backtest.halts[0];
    assert_eq!(expected.condition.as_deref(), Some("max_daily_drawdown"));

    // The daemon's clock stands at the recording's start: its day does not roll either.
    let start = gf_market::Recording::new(gf_market::bundled::CRASH, None, None, Duration::ZERO)
        .first_time()
        .unwrap();
    let clock: SharedClock = std::sync::Arc::new(ManualClock::new(start));
    let (daemon, _token) = build(cfg, clock).unwrap();
    let mut state = daemon.halt.watch_state();

    let tasks = spawn_tasks(
        &daemon,
        Scenario::Crash,
        gf_strategy::by_kind(StrategyKind::HoldLong),
    );
    tokio::time::timeout(Duration::from_secs(3600), async {
        while *state.borrow_and_update() != HaltState::Halted {
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("the paper daemon halts on the crash");
    let status = daemon.halt.status();
    let halt = status.halt.expect("a halt is in force");
    assert_eq!(halt.source.to_string(), expected.source);
    // The reason carries the condition's value at the event that tripped it (four
    // decimals): the same value is the same event.
    assert_eq!(halt.reason, expected.reason);
    let closure = halt.closure.expect("the closure finished");
    assert!(closure.flat, "{closure:?}");

    // The same entries, at the same prices and sizes, and the same closure: the same
    // orders (ids derive from the halt), each pair sold in full in one round.
    let daemon_trades: Vec<gf_risk::ClosedTrade> = daemon
        .portfolio
        .read(|p| p.recent_trades().cloned().collect());
    assert_eq!(daemon_trades.len(), backtest.trades.len());
    for (d, b) in daemon_trades.iter().zip(&backtest.trades) {
        assert_eq!((&d.pair, d.qty, d.avg_entry), (&b.pair, b.qty, b.avg_entry));
    }
    let journaled = backtest
        .journal
        .iter()
        .find(|r| r.kind == "closure_result")
        .expect("the backtest journals the closure");
    let backtest_closure: gf_halt::ClosureReport =
        serde_json::from_value(journaled.detail["report"].clone()).unwrap();
    assert_eq!(closure.rounds, backtest_closure.rounds);
    let orders = |c: &gf_halt::ClosureReport| -> Vec<(String, String)> {
        c.pairs
            .iter()
            .map(|p| (p.pair.to_string(), p.filled.to_string()))
            .collect()
    };
    assert_eq!(orders(&closure), orders(&backtest_closure));
    // The exit prices may differ by the market's move while the daemon's closure runs
    // (the daemon's tasks interleave with its replay); both lose money on the crash.
    assert!(backtest.final_equity < backtest.starting_equity);

    daemon.shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
}
