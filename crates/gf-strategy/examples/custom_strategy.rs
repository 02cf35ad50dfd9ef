//! A strategy of your own: a channel breakout on the mid price, plugged into the
//! deterministic backtest with [`Backtest::run_with`].
//!
//! ```text
//! cargo run -p gf-strategy --example custom_strategy
//! ```
//!
//! The rule (a Donchian channel): sample the mid every `sample_every` book messages of a
//! pair; while flat, buy when the mid rises above the highest of the last `lookback`
//! samples, with a stop at the lowest of them; while long, sell when it falls below that
//! lowest. Prices are [`Decimal`] throughout: money is never `f64`.
//!
//! The strategy only *signals*. Sizing, the pre-trade checks, the gate and the paper
//! exchange are the daemon's own code, run by the driver, and the kill switch's conditions
//! stay live: whatever this rule does, the halts still fire.

use std::collections::{HashMap, VecDeque};
use std::error::Error;

use gf_core::{Config, Event, Pair, Payload, Price, Qty, Side};
use gf_strategy::backtest::report::Report;
use gf_strategy::backtest::{Backtest, Run};
use gf_strategy::{Signal, Strategy, StrategyKind};
use rust_decimal::Decimal;

fn main() -> Result<(), Box<dyn Error>> {
    let mut strategy = Breakout::new(20, 4);
    let run = backtest(&mut strategy)?;
    let report = Report {
        recording: "bundled paper.jsonl".to_owned(),
        run,
        baseline: None,
    };
    print!("{}", report.summary());
    Ok(())
}

/// Runs `strategy` over the bundled paper recording under the default configuration.
fn backtest(strategy: &mut dyn Strategy) -> Result<Run, gf_strategy::backtest::Error> {
    let config = Config::default();
    // The kind is only the default for `run()`; `run_with` runs the strategy given.
    Backtest::new(&config, gf_market::bundled::PAPER, StrategyKind::None).run_with(strategy)
}

/// A long-only channel breakout on the mid price.
#[derive(Debug, Clone)]
struct Breakout {
    lookback: usize,
    sample_every: u32,
    pairs: HashMap<Pair, Channel>,
}

/// One pair's recent samples.
#[derive(Debug, Clone, Default)]
struct Channel {
    since_sample: u32,
    samples: VecDeque<Price>,
}

impl Breakout {
    /// A breakout over `lookback` samples taken every `sample_every` book messages.
    fn new(lookback: usize, sample_every: u32) -> Self {
        Self {
            lookback: lookback.max(2),
            sample_every: sample_every.max(1),
            pairs: HashMap::new(),
        }
    }

    /// The rule alone, on one pair's next sampled mid: what to do, with the stop for a buy.
    fn decide(&mut self, pair: &Pair, mid: Price, position: Qty) -> Option<(Side, Option<Price>)> {
        let lookback = self.lookback;
        let every = self.sample_every;
        let ch = self.pairs.entry(pair.clone()).or_insert_with(|| Channel {
            since_sample: every - 1,
            samples: VecDeque::with_capacity(lookback + 1),
        });
        ch.since_sample += 1;
        if ch.since_sample < every {
            return None;
        }
        ch.since_sample = 0;
        let full = ch.samples.len() >= lookback;
        let high = ch.samples.iter().copied().max();
        let low = ch.samples.iter().copied().min();
        ch.samples.push_back(mid);
        if ch.samples.len() > lookback {
            ch.samples.pop_front();
        }
        let (high, low) = (high?, low?);
        if !full {
            return None;
        }
        if position.is_zero() && mid > high {
            Some((Side::Buy, Some(low)))
        } else if position > Decimal::ZERO && mid < low {
            Some((Side::Sell, None))
        } else {
            None
        }
    }
}

impl Strategy for Breakout {
    fn name(&self) -> &str {
        "breakout"
    }

    fn on_market(&mut self, event: &Event, position: Qty) -> Option<Signal> {
        let (pair, mid) = match &event.payload {
            Payload::BookUpdate(u) => (
                &u.pair,
                (u.best_bid?.price + u.best_ask?.price) / Decimal::TWO,
            ),
            Payload::BookSnapshot(s) => (
                &s.pair,
                (s.bids.first()?.price + s.asks.first()?.price) / Decimal::TWO,
            ),
            _ => return None,
        };
        let (side, stop) = self.decide(pair, mid, position)?;
        Some(Signal {
            pair: pair.clone(),
            side,
            entry: mid,
            stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: i64) -> Decimal {
        Decimal::from(v)
    }

    #[test]
    fn the_rule_buys_a_breakout_and_sells_a_breakdown() {
        let pair: Pair = "XRP/USD".parse().unwrap();
        let mut s = Breakout::new(3, 1);
        // Three samples fill the channel [10, 12]; nothing before that.
        for mid in [10, 12, 11] {
            assert_eq!(s.decide(&pair, d(mid), d(0)), None);
        }
        // Inside the channel: nothing. Above its high while flat: buy, stop at its low.
        assert_eq!(s.decide(&pair, d(12), d(0)), None);
        assert_eq!(s.decide(&pair, d(13), d(0)), Some((Side::Buy, Some(d(11)))));
        // Long: a new high is no second buy; below the channel's low: sell.
        assert_eq!(s.decide(&pair, d(14), d(5)), None);
        assert_eq!(s.decide(&pair, d(11), d(5)), Some((Side::Sell, None)));
    }

    #[test]
    fn it_samples_every_nth_message() {
        let pair: Pair = "XRP/USD".parse().unwrap();
        let mut s = Breakout::new(2, 3);
        let seen: Vec<_> = [1, 1, 1, 2, 2, 2, 3, 9, 9, 4]
            .into_iter()
            .map(|m| s.decide(&pair, d(m), d(0)))
            .collect();
        // Samples are messages 1, 4, 7 and 10 (mids 1, 2, 3, 4): the third breaks out.
        assert_eq!(seen.iter().filter(|x| x.is_some()).count(), 2, "{seen:?}");
        assert_eq!(seen[6], Some((Side::Buy, Some(d(1)))));
        assert_eq!(seen[9], Some((Side::Buy, Some(d(2)))));
    }

    #[test]
    fn the_backtest_runs_the_custom_strategy_through_the_safety_stack() {
        let mut strategy = Breakout::new(20, 4);
        let run = backtest(&mut strategy).unwrap();
        assert_eq!(run.strategy, "breakout");
        assert!(
            run.signals > 0,
            "the breakout signalled on the paper recording"
        );
        assert!(!run.fills.is_empty(), "some signal became a paper fill");
        assert!(
            run.fills.iter().all(|f| !f.closure),
            "no halt closure on calm data"
        );
        let again = backtest(&mut Breakout::new(20, 4)).unwrap();
        assert_eq!(run.fills, again.fills, "deterministic");
    }
}
