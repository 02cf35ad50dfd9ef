//! Trading statistics over closed round trips: count, winners, losers, win rate, average
//! win and loss, profit factor, Sharpe ratio of daily returns, maximum drawdown, total P&L.
//!
//! # Definitions
//!
//! A *round trip* ([`ClosedTrade`]) runs from a flat position to flat again (a reversal
//! closes one and opens the next). Its net P&L is realised P&L minus the fees of its fills.
//! Winners have net P&L > 0, losers < 0; a trade at exactly zero counts in `count` only.
//!
//! - `win_rate_pct = 100 × winners / count`.
//! - `avg_win` = mean net P&L of winners (positive); `avg_loss` = mean net P&L of losers
//!   (negative).
//! - `profit_factor = gross profit / |gross loss|`, `None` without a losing trade.
//! - **Sharpe ratio** of daily returns, risk-free rate 0, annualised with √365 because
//!   crypto trades every day of the year:
//!   `sharpe = mean(r) / stdev(r) × √365`, where `r_d = pnl_d / equity_{start of d}` for
//!   every UTC calendar day `d` from the first to the last closing day (days without a
//!   close have `r_d = 0`), `pnl_d` is the net P&L of trades closed on `d`, equity is the
//!   initial equity plus the net P&L of earlier days, and `stdev` is the sample standard
//!   deviation (divisor `n - 1`). `None` with fewer than two days or a zero deviation.
//! - **Max drawdown** is measured on the realised equity curve (initial equity plus
//!   cumulative net P&L after each close): the largest fall from a running peak, in quote
//!   currency and in percent of that peak.
//!
//! Everything is `Decimal`, the square roots included (rust_decimal's `maths` feature);
//! no float is involved, even though the Sharpe ratio is a statistic and not money.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::{Decimal, MathematicalOps};
use serde::{Deserialize, Serialize};

use gf_core::{Pair, Side};

/// Days per year used to annualise the Sharpe ratio.
pub const DAYS_PER_YEAR: u32 = 365;

/// One closed round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedTrade {
    /// The pair.
    pub pair: Pair,
    /// `Buy` for a long round trip, `Sell` for a short one.
    pub side: Side,
    /// Total quantity entered.
    pub qty: Decimal,
    /// Volume-weighted entry price.
    pub avg_entry: Decimal,
    /// Volume-weighted exit price.
    pub avg_exit: Decimal,
    /// Time of the opening fill.
    pub opened_at: DateTime<Utc>,
    /// Time of the closing fill.
    pub closed_at: DateTime<Utc>,
    /// Realised P&L before fees.
    pub realised_pnl: Decimal,
    /// Fees of the round trip's fills (a reversing fill's fee is split pro rata).
    pub fees: Decimal,
    /// `realised_pnl - fees`.
    pub net_pnl: Decimal,
}

/// The statistics. See the module docs for each definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TradingStats {
    /// Closed round trips.
    pub count: u64,
    /// Round trips with net P&L > 0.
    pub winners: u64,
    /// Round trips with net P&L < 0.
    pub losers: u64,
    /// `100 × winners / count`; `None` before the first trade.
    pub win_rate_pct: Option<Decimal>,
    /// Mean net P&L of winners.
    pub avg_win: Option<Decimal>,
    /// Mean net P&L of losers (negative).
    pub avg_loss: Option<Decimal>,
    /// Gross profit over absolute gross loss; `None` without a loser.
    pub profit_factor: Option<Decimal>,
    /// Annualised Sharpe ratio of daily returns; `None` with fewer than two days.
    pub sharpe: Option<Decimal>,
    /// Largest peak-to-trough fall of the realised equity curve, quote currency.
    pub max_drawdown: Decimal,
    /// Largest fall of the realised equity curve in percent of its running peak.
    pub max_drawdown_pct: Decimal,
    /// Sum of net P&L.
    pub total_pnl: Decimal,
}

impl TradingStats {
    /// Statistics of `trades` (in closing order) starting from `initial_equity`.
    #[must_use]
    pub fn from_trades<'a>(
        initial_equity: Decimal,
        trades: impl IntoIterator<Item = &'a ClosedTrade>,
    ) -> Self {
        let mut acc = StatsAccumulator::new(initial_equity);
        for t in trades {
            acc.record(t);
        }
        acc.stats()
    }
}

/// Running totals from which [`TradingStats`] are derived; O(1) per trade, and its size
/// grows only by one entry per trading day. Part of the portfolio snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsAccumulator {
    initial_equity: Decimal,
    count: u64,
    winners: u64,
    losers: u64,
    gross_profit: Decimal,
    gross_loss: Decimal,
    total_pnl: Decimal,
    peak: Decimal,
    max_drawdown: Decimal,
    max_drawdown_pct: Decimal,
    daily_pnl: BTreeMap<NaiveDate, Decimal>,
}

impl StatsAccumulator {
    /// Empty totals for an account starting at `initial_equity`.
    #[must_use]
    pub fn new(initial_equity: Decimal) -> Self {
        Self {
            initial_equity,
            count: 0,
            winners: 0,
            losers: 0,
            gross_profit: Decimal::ZERO,
            gross_loss: Decimal::ZERO,
            total_pnl: Decimal::ZERO,
            peak: initial_equity,
            max_drawdown: Decimal::ZERO,
            max_drawdown_pct: Decimal::ZERO,
            daily_pnl: BTreeMap::new(),
        }
    }

    /// Adds one closed trade.
    pub fn record(&mut self, trade: &ClosedTrade) {
        let pnl = trade.net_pnl;
        self.count += 1;
        if pnl > Decimal::ZERO {
            self.winners += 1;
            self.gross_profit = self.gross_profit.saturating_add(pnl);
        } else if pnl < Decimal::ZERO {
            self.losers += 1;
            self.gross_loss = self.gross_loss.saturating_add(pnl);
        }
        self.total_pnl = self.total_pnl.saturating_add(pnl);
        let day = self
            .daily_pnl
            .entry(trade.closed_at.date_naive())
            .or_insert(Decimal::ZERO);
        *day = day.saturating_add(pnl);
        let equity = self.initial_equity.saturating_add(self.total_pnl);
        if equity > self.peak {
            self.peak = equity;
        }
        let fall = self.peak.saturating_sub(equity);
        self.max_drawdown = self.max_drawdown.max(fall);
        if self.peak > Decimal::ZERO {
            let pct = fall
                .checked_div(self.peak)
                .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED))
                .unwrap_or(Decimal::ONE_HUNDRED)
                .min(Decimal::ONE_HUNDRED);
            self.max_drawdown_pct = self.max_drawdown_pct.max(pct);
        }
    }

    /// The statistics so far.
    #[must_use]
    pub fn stats(&self) -> TradingStats {
        let ratio = |num: Decimal, den: u64| (den > 0).then(|| num / Decimal::from(den));
        TradingStats {
            count: self.count,
            winners: self.winners,
            losers: self.losers,
            win_rate_pct: ratio(
                Decimal::from(self.winners) * Decimal::ONE_HUNDRED,
                self.count,
            ),
            avg_win: ratio(self.gross_profit, self.winners),
            avg_loss: ratio(self.gross_loss, self.losers),
            profit_factor: (self.gross_loss < Decimal::ZERO)
                .then(|| self.gross_profit.checked_div(self.gross_loss.abs()))
                .flatten(),
            sharpe: self.sharpe(),
            max_drawdown: self.max_drawdown,
            max_drawdown_pct: self.max_drawdown_pct,
            total_pnl: self.total_pnl,
        }
    }

    /// Daily returns from the first to the last closing day (zero on days without a close).
    #[must_use]
    pub fn daily_returns(&self) -> Option<Vec<Decimal>> {
        let (first, _) = self.daily_pnl.first_key_value()?;
        let (last, _) = self.daily_pnl.last_key_value()?;
        let mut equity = self.initial_equity;
        let mut out = Vec::new();
        let mut day = *first;
        while day <= *last {
            let pnl = self.daily_pnl.get(&day).copied().unwrap_or(Decimal::ZERO);
            if equity <= Decimal::ZERO {
                return None;
            }
            out.push(pnl.checked_div(equity)?);
            equity = equity.checked_add(pnl)?;
            day = day.checked_add_days(Days::new(1))?;
        }
        Some(out)
    }

    fn sharpe(&self) -> Option<Decimal> {
        let returns = self.daily_returns()?;
        if returns.len() < 2 {
            return None;
        }
        let n = Decimal::from(returns.len());
        let mean = returns
            .iter()
            .try_fold(Decimal::ZERO, |a, r| a.checked_add(*r))?
            / n;
        let ss = returns.iter().try_fold(Decimal::ZERO, |a, r| {
            let d = r.checked_sub(mean)?;
            a.checked_add(d.checked_mul(d)?)
        })?;
        let sd = (ss / (n - Decimal::ONE)).sqrt()?;
        if sd.is_zero() {
            return None;
        }
        let annual = Decimal::from(DAYS_PER_YEAR).sqrt()?;
        mean.checked_div(sd)?.checked_mul(annual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn trade(day: u32, net: Decimal) -> ClosedTrade {
        let at = Utc.with_ymd_and_hms(2026, 1, day, 12, 0, 0).unwrap();
        ClosedTrade {
            pair: Pair::new("XRP/USD").unwrap(),
            side: Side::Buy,
            qty: dec!(1),
            avg_entry: dec!(1),
            avg_exit: dec!(1),
            opened_at: at,
            closed_at: at,
            realised_pnl: net,
            fees: Decimal::ZERO,
            net_pnl: net,
        }
    }

    #[test]
    fn empty_stats_have_no_ratios() {
        let s = TradingStats::from_trades(dec!(1000), &[]);
        assert_eq!(s, TradingStats::default());
    }

    #[test]
    fn counts_rates_and_factor() {
        let trades = [
            trade(1, dec!(100)),
            trade(1, dec!(-50)),
            trade(2, dec!(30)),
            trade(3, dec!(-10)),
            trade(3, dec!(0)),
        ];
        let s = TradingStats::from_trades(dec!(1000), &trades);
        assert_eq!((s.count, s.winners, s.losers), (5, 2, 2));
        assert_eq!(s.win_rate_pct, Some(dec!(40)));
        assert_eq!(s.avg_win, Some(dec!(65)));
        assert_eq!(s.avg_loss, Some(dec!(-30)));
        assert_eq!(s.profit_factor, Some(dec!(130) / dec!(60)));
        assert_eq!(s.total_pnl, dec!(70));
        // Curve: 1100 (peak), 1050, 1080, 1070, 1070 → max fall 50 from 1100.
        assert_eq!(s.max_drawdown, dec!(50));
        assert_eq!(s.max_drawdown_pct, dec!(50) / dec!(1100) * dec!(100));
    }

    #[test]
    fn sharpe_matches_the_documented_formula() {
        // Day 1: +10 on 1000; day 2: nothing; day 3: -5 on 1010.
        let trades = [trade(1, dec!(10)), trade(3, dec!(-5))];
        let s = TradingStats::from_trades(dec!(1000), &trades);
        let r = [dec!(0.01), dec!(0), dec!(-5) / dec!(1010)];
        let mean = r.iter().sum::<Decimal>() / dec!(3);
        let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<Decimal>() / dec!(2);
        let expect = mean / var.sqrt().unwrap() * dec!(365).sqrt().unwrap();
        let got = s.sharpe.unwrap();
        assert!(
            (got - expect).abs() < dec!(0.0000000001),
            "{got} vs {expect}"
        );
        assert!(got > dec!(4.2) && got < dec!(4.25), "{got}");
    }

    #[test]
    fn sharpe_needs_two_days_and_variation() {
        let one_day = [trade(1, dec!(10)), trade(1, dec!(5))];
        assert_eq!(TradingStats::from_trades(dec!(1000), &one_day).sharpe, None);
        let flat = [trade(1, dec!(0)), trade(2, dec!(0))];
        assert_eq!(TradingStats::from_trades(dec!(1000), &flat).sharpe, None);
    }

    #[test]
    fn wiped_out_account_has_no_daily_returns() {
        let trades = [trade(1, dec!(-1000)), trade(2, dec!(10))];
        let s = TradingStats::from_trades(dec!(1000), &trades);
        assert_eq!(s.sharpe, None);
        assert_eq!(s.max_drawdown_pct, dec!(100));
    }
}
