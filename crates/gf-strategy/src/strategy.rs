//! Where signals come from: the [`Strategy`] trait, [`EmaCross`] and [`HoldLong`], the
//! small example strategies the paper daemon runs so that it actually trades, and
//! [`NoStrategy`], which a live daemon runs unless one is chosen explicitly.
//!
//! A strategy sees market-data events and the current position of each pair and answers
//! with [`Signal`]s. It never places orders: [`crate::SignalExecutor`] sizes each signal
//! with gf-risk, runs the pre-trade checks, and sends it through the gated exchange.
//! See `examples/custom_strategy.rs` for a strategy of your own.

use std::collections::HashMap;

use gf_core::config::StrategyKind;
use gf_core::{Event, Pair, Payload, Price, Qty, Side};
use rust_decimal::Decimal;

/// What a strategy wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// The pair.
    pub pair: Pair,
    /// Buy to open (or add), sell to reduce/close.
    pub side: Side,
    /// The price the strategy saw (the entry for sizing).
    pub entry: Price,
    /// A protective stop for sizing an opening order; `None` for a closing signal.
    pub stop: Option<Price>,
}

/// A source of signals. Implement it to run your own logic inside the daemon.
pub trait Strategy: Send {
    /// A short name, journaled with each signal.
    fn name(&self) -> &str;

    /// Called for every market-data event; `position` is the signed quantity currently
    /// held in the event's pair (0 when flat).
    fn on_market(&mut self, event: &Event, position: Qty) -> Option<Signal>;
}

/// Long-only moving-average crossover on the mid price.
///
/// The mid is sampled once every `sample_every` book messages of the pair (a count, not a
/// duration, so a replay gives the same signals at any speed). Two exponential moving averages with periods `fast` and `slow`
/// samples (α = 2 / (n + 1)); when the fast one crosses above the slow one while flat, it
/// signals a buy with a stop `stop_pct` % below the mid; when it crosses below while long,
/// a sell of the position. It needs `slow` samples before it signals anything.
///
/// ```
/// use gf_strategy::{EmaCross, Strategy};
/// let s = EmaCross::default();
/// assert_eq!(s.name(), "ema_cross");
/// ```
#[derive(Debug, Clone)]
pub struct EmaCross {
    fast: u32,
    slow: u32,
    sample_every: u32,
    stop_pct: Decimal,
    state: HashMap<Pair, PairState>,
}

#[derive(Debug, Clone)]
struct PairState {
    since_sample: u32,
    samples: u32,
    fast: Decimal,
    slow: Decimal,
    above: Option<bool>,
}

impl Default for EmaCross {
    fn default() -> Self {
        Self::new(5, 20, 8, Decimal::ONE)
    }
}

impl EmaCross {
    /// A crossover with the given periods (samples), sampling interval (book messages)
    /// and stop distance (%).
    ///
    /// # Panics
    /// If `fast` is zero or not below `slow`, or `sample_every` is zero (programming errors).
    #[must_use]
    pub fn new(fast: u32, slow: u32, sample_every: u32, stop_pct: Decimal) -> Self {
        assert!(fast > 0 && fast < slow, "need 0 < fast < slow");
        assert!(sample_every > 0, "need sample_every > 0");
        Self {
            fast,
            slow,
            sample_every,
            stop_pct,
            state: HashMap::new(),
        }
    }

    fn alpha(n: u32) -> Decimal {
        Decimal::TWO / Decimal::from(n + 1)
    }
}

fn mid(payload: &Payload) -> Option<(&Pair, Price)> {
    match payload {
        Payload::BookUpdate(u) => match (u.best_bid, u.best_ask) {
            (Some(b), Some(a)) => Some((&u.pair, (b.price + a.price) / Decimal::TWO)),
            _ => None,
        },
        Payload::BookSnapshot(s) => match (s.bids.first(), s.asks.first()) {
            (Some(b), Some(a)) => Some((&s.pair, (b.price + a.price) / Decimal::TWO)),
            _ => None,
        },
        _ => None,
    }
}

impl Strategy for EmaCross {
    fn name(&self) -> &str {
        "ema_cross"
    }

    fn on_market(&mut self, event: &Event, position: Qty) -> Option<Signal> {
        let (pair, price) = mid(&event.payload)?;
        let (fast_a, slow_a) = (Self::alpha(self.fast), Self::alpha(self.slow));
        let every = self.sample_every;
        // Looked up before inserting: no clone of the pair on every message.
        if !self.state.contains_key(pair) {
            self.state.insert(
                pair.clone(),
                PairState {
                    since_sample: every - 1,
                    samples: 0,
                    fast: price,
                    slow: price,
                    above: None,
                },
            );
        }
        let st = self.state.get_mut(pair)?;
        st.since_sample += 1;
        if st.since_sample < every {
            return None;
        }
        st.since_sample = 0;
        st.samples += 1;
        st.fast += fast_a * (price - st.fast);
        st.slow += slow_a * (price - st.slow);
        if st.samples < self.slow {
            return None;
        }
        let above = st.fast > st.slow;
        let crossed = st.above.is_some_and(|prev| prev != above);
        st.above = Some(above);
        if !crossed {
            return None;
        }
        if above && position.is_zero() {
            let stop = price * (Decimal::ONE - self.stop_pct / Decimal::ONE_HUNDRED);
            Some(Signal {
                pair: pair.clone(),
                side: Side::Buy,
                entry: price,
                stop: Some(stop),
            })
        } else if !above && position > Decimal::ZERO {
            Some(Signal {
                pair: pair.clone(),
                side: Side::Sell,
                entry: price,
                stop: None,
            })
        } else {
            None
        }
    }
}

/// Buys each pair after a warm-up of `warm_up` book messages, and holds: the `crash`
/// scenario's strategy, showing what a slide does to an unprotected position (the
/// daily-drawdown condition halts and flattens it). Sized like any opening signal, with a
/// stop `stop_pct` % below entry. While the pair is still flat (the buy was refused, not
/// filled, or ignored while halted) it asks again every `warm_up` messages, never on
/// consecutive ones, so an order still in flight is not doubled by the next tick.
#[derive(Debug, Clone)]
pub struct HoldLong {
    stop_pct: Decimal,
    warm_up: u32,
    seen: HashMap<Pair, u32>,
}

impl Default for HoldLong {
    fn default() -> Self {
        Self {
            stop_pct: Decimal::ONE,
            warm_up: 20,
            seen: HashMap::new(),
        }
    }
}

impl Strategy for HoldLong {
    fn name(&self) -> &str {
        "hold_long"
    }

    fn on_market(&mut self, event: &Event, position: Qty) -> Option<Signal> {
        let (pair, price) = mid(&event.payload)?;
        if !self.seen.contains_key(pair) {
            self.seen.insert(pair.clone(), 0);
        }
        let seen = self.seen.get_mut(pair)?;
        *seen = seen.saturating_add(1);
        if *seen < self.warm_up
            || !position.is_zero()
            || !(*seen - self.warm_up).is_multiple_of(self.warm_up)
        {
            return None;
        }
        Some(Signal {
            pair: pair.clone(),
            side: Side::Buy,
            entry: price,
            stop: Some(price * (Decimal::ONE - self.stop_pct / Decimal::ONE_HUNDRED)),
        })
    }
}

/// No strategy: it never signals, so the daemon places no order of its own — orders come
/// only from the halt's closure. What a live daemon runs unless a strategy is chosen
/// explicitly (`strategy.kind`, `launch --strategy`).
///
/// ```
/// use gf_strategy::{NoStrategy, Strategy};
/// assert_eq!(NoStrategy.name(), "none");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStrategy;

impl Strategy for NoStrategy {
    fn name(&self) -> &str {
        "none"
    }

    fn on_market(&mut self, _event: &Event, _position: Qty) -> Option<Signal> {
        None
    }
}

/// The example strategy of a configured kind (`strategy.kind`, `--strategy NAME`).
///
/// ```
/// use gf_strategy::{StrategyKind, by_kind};
/// assert_eq!(by_kind(StrategyKind::EmaCross).name(), "ema_cross");
/// ```
#[must_use]
pub fn by_kind(kind: StrategyKind) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::None => Box::new(NoStrategy),
        StrategyKind::EmaCross => Box::new(EmaCross::default()),
        StrategyKind::HoldLong => Box::new(HoldLong::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use gf_core::{BookUpdate, Level, Source};

    fn update(pair: &Pair, secs: i64, mid: Decimal) -> Event {
        let spread = Decimal::new(1, 4);
        Event::new(
            DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
            Source::Replay,
            Payload::BookUpdate(BookUpdate {
                pair: pair.clone(),
                bids: Default::default(),
                asks: Default::default(),
                checksum: 0,
                best_bid: Some(Level::new(mid - spread, Decimal::ONE)),
                best_ask: Some(Level::new(mid + spread, Decimal::ONE)),
            }),
        )
    }

    #[test]
    fn buys_on_up_cross_when_flat_and_sells_on_down_cross_when_long() {
        let pair: Pair = "XRP/USD".parse().unwrap();
        let mut s = EmaCross::new(2, 4, 1, Decimal::ONE);
        let mut signals = Vec::new();
        let mut position = Decimal::ZERO;
        // Falling, then rising, then falling.
        let path: Vec<i64> = (0..10)
            .map(|i| 100 - i)
            .chain((0..10).map(|i| 90 + 2 * i))
            .chain((0..10).map(|i| 110 - 3 * i))
            .collect();
        for (t, p) in path.into_iter().enumerate() {
            let ev = update(&pair, t as i64, Decimal::new(p, 2));
            if let Some(sig) = s.on_market(&ev, position) {
                position = if sig.side == Side::Buy {
                    Decimal::ONE
                } else {
                    Decimal::ZERO
                };
                signals.push(sig);
            }
        }
        let sides: Vec<Side> = signals.iter().map(|s| s.side).collect();
        assert_eq!(sides, vec![Side::Buy, Side::Sell]);
        let buy = &signals[0];
        assert_eq!(buy.stop, Some(buy.entry * Decimal::new(99, 2)));
        assert_eq!(signals[1].stop, None);
    }

    #[test]
    fn hold_long_buys_each_pair_and_asks_again_only_while_flat() {
        let xrp: Pair = "XRP/USD".parse().unwrap();
        let doge: Pair = "DOGE/USD".parse().unwrap();
        let mut s = HoldLong::default();
        for i in 0..19 {
            assert!(
                s.on_market(&update(&xrp, i, Decimal::new(50, 2)), Decimal::ZERO)
                    .is_none()
            );
        }
        let first = s
            .on_market(&update(&xrp, 19, Decimal::new(50, 2)), Decimal::ZERO)
            .unwrap();
        assert_eq!(
            (first.side, first.stop),
            (Side::Buy, Some(Decimal::new(495, 3)))
        );
        assert!(
            s.on_market(&update(&xrp, 20, Decimal::new(50, 2)), Decimal::ZERO)
                .is_none()
        );
        for i in 0..19 {
            assert!(
                s.on_market(&update(&doge, i, Decimal::new(10, 2)), Decimal::ZERO)
                    .is_none()
            );
        }
        // Still flat (the first buy was refused or not filled): asked again after another
        // warm-up, not on the messages in between.
        for i in 21..39 {
            assert!(
                s.on_market(&update(&xrp, i, Decimal::new(50, 2)), Decimal::ZERO)
                    .is_none(),
                "message {i}"
            );
        }
        let again = s
            .on_market(&update(&xrp, 39, Decimal::new(50, 2)), Decimal::ZERO)
            .unwrap();
        assert_eq!(again.side, Side::Buy);
        // Holding: no signal, whatever the count.
        for i in 40..80 {
            assert!(
                s.on_market(&update(&xrp, i, Decimal::new(50, 2)), Decimal::new(1, 0))
                    .is_none()
            );
        }
        // Already holding: no signal.
        assert!(
            s.on_market(&update(&doge, 19, Decimal::new(10, 2)), Decimal::ONE)
                .is_none()
        );
    }

    #[test]
    fn samples_every_nth_message_of_the_pair() {
        let pair: Pair = "DOGE/USD".parse().unwrap();
        let other: Pair = "XRP/USD".parse().unwrap();
        let mut a = EmaCross::new(2, 50, 10, Decimal::ONE);
        for i in 0..95 {
            let ev = update(&pair, i, Decimal::new(100 + (i % 7), 2));
            assert!(a.on_market(&ev, Decimal::ZERO).is_none());
            // Another pair's messages do not count towards this pair's samples.
            a.on_market(&update(&other, i, Decimal::ONE), Decimal::ZERO);
        }
        // The first message samples, then every tenth: 0, 10, …, 90.
        assert_eq!(a.state[&pair].samples, 10);
    }
}
