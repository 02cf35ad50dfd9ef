//! The deterministic backtest driver, through the real code: the bundled recordings, the
//! daemon's default configuration, an in-memory and a file journal.

use gf_core::Config;
use gf_strategy::StrategyKind;
use gf_strategy::backtest::Backtest;

#[test]
fn the_crash_recording_halts_on_the_daily_drawdown_and_flattens() {
    let config = Config::default();
    let run = Backtest::new(&config, gf_market::bundled::CRASH, StrategyKind::HoldLong)
        .run()
        .unwrap();
    eprintln!(
        "{} market events, {} events, halts {:?}, trades {}, final {}",
        run.market_events,
        run.events,
        run.halts,
        run.trades.len(),
        run.final_equity
    );
    assert_eq!(run.halts.len(), 1, "{:?}", run.halts);
    let h = &run.halts[0];
    assert_eq!(h.condition.as_deref(), Some("max_daily_drawdown"));
    assert!(h.value.unwrap() >= h.threshold.unwrap());
    assert_eq!(h.closure_flat, Some(true), "{h:?}");
}

#[test]
fn the_same_input_gives_byte_identical_output() {
    let config = Config::default();
    let a = Backtest::new(&config, gf_market::bundled::CRASH, StrategyKind::HoldLong)
        .run()
        .unwrap();
    let b = Backtest::new(&config, gf_market::bundled::CRASH, StrategyKind::HoldLong)
        .run()
        .unwrap();
    assert_eq!(a.journal_jsonl().unwrap(), b.journal_jsonl().unwrap());
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

#[test]
fn the_executor_times_every_decision_and_every_order_it_sends() {
    use gf_core::latency::{LatencyLog, stage};
    let config = Config::default();
    let log = std::sync::Arc::new(LatencyLog::default());
    let run = Backtest::new(&config, gf_market::bundled::PAPER, StrategyKind::EmaCross)
        .latency(log.clone())
        .run()
        .unwrap();
    let decisions = log.of(stage::DECISION);
    let sent = log.of(stage::ORDER_SENT);
    assert!(!run.fills.is_empty(), "the session trades");
    // One decision per book event the strategy is shown once the pair is priced: more
    // than there are signals; one `order_sent` per order handed to the exchange.
    assert!(decisions.len() as u64 > run.signals, "{}", decisions.len());
    assert!(!sent.is_empty() && sent.len() as u64 <= run.signals);
    // On the backtest's clock, which stands at the event's recorded time, nothing takes
    // time.
    assert!(decisions.iter().chain(&sent).all(|us| *us == 0));
    // The market stages belong to the replay, which the backtest does not run.
    assert!(log.of(stage::BOOK_APPLIED).is_empty());
}
