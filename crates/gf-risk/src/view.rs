//! `PortfolioView`: the read-only numbers gf-halt and gf-monitor read from gf-risk.

use rust_decimal::Decimal;

use gf_core::{Pair, Position};

use crate::stats::TradingStats;

/// A read-only view of the portfolio and its risk figures. Percentages are percent
/// (`15` means 15 %). Implementations answer from memory: no I/O, no waiting.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait PortfolioView: Send + Sync {
    /// Equity in quote currency: cash plus positions marked to market.
    fn equity(&self) -> Decimal;
    /// Highest equity seen.
    fn peak_equity(&self) -> Decimal;
    /// Drawdown from peak equity, percent, in `[0, 100]`.
    fn total_drawdown_pct(&self) -> Decimal;
    /// Drawdown from the equity at the start of the current UTC day, percent, in `[0, 100]`.
    fn daily_drawdown_pct(&self) -> Decimal;
    /// Consecutive losing round trips (a win resets it).
    fn consecutive_losses(&self) -> u32;
    /// Open positions (non-flat).
    fn positions(&self) -> Vec<Position>;
    /// Sum of absolute position notionals at the latest marks, quote currency.
    fn exposure(&self) -> Decimal;
    /// Rolling volatility of a pair, percent; `None` until the window has enough data.
    fn volatility_pct(&self, pair: &Pair) -> Option<Decimal>;
    /// Trading statistics over closed round trips. Added after the first eight methods;
    /// the default (for views without trade history) is empty statistics.
    fn trading_stats(&self) -> TradingStats {
        TradingStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NullPortfolio;

    #[test]
    fn default_trading_stats_are_empty() {
        // The null view has no trade history and relies on the default `trading_stats`.
        let null = NullPortfolio::with_equity(Decimal::ONE_HUNDRED);
        let view: &dyn PortfolioView = &null;
        assert_eq!(view.equity(), Decimal::ONE_HUNDRED);
        assert_eq!(view.equity(), view.peak_equity());
        assert_eq!(
            view.total_drawdown_pct() + view.daily_drawdown_pct(),
            Decimal::ZERO
        );
        assert_eq!(view.consecutive_losses(), 0);
        assert!(view.positions().is_empty());
        assert_eq!(view.exposure(), Decimal::ZERO);
        assert_eq!(view.volatility_pct(&"XRP/USD".parse().unwrap()), None);
        assert_eq!(view.trading_stats(), TradingStats::default());
        assert_eq!(view.trading_stats().win_rate_pct, None);
    }

    #[test]
    fn mock_answers_what_it_is_told() {
        let mut mock = MockPortfolioView::new();
        mock.expect_total_drawdown_pct()
            .return_const(Decimal::new(16, 0));
        mock.expect_consecutive_losses().return_const(5u32);
        let view: &dyn PortfolioView = &mock;
        assert_eq!(view.total_drawdown_pct(), Decimal::new(16, 0));
        assert_eq!(view.consecutive_losses(), 5);
    }
}
