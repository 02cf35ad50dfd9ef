//! [`NullPortfolio`]: a portfolio view with no positions, for tests and examples.

use rust_decimal::Decimal;

use gf_core::{Pair, Position};

use crate::view::PortfolioView;

/// A [`PortfolioView`] with no positions: a constant equity (zero by default, or
/// [`NullPortfolio::with_equity`]) that is also its peak, no drawdown, no losses, no
/// exposure, no volatility and empty trading statistics. No halt condition is ever
/// breached by it.
///
/// ```
/// use gf_risk::{NullPortfolio, PortfolioView};
/// use rust_decimal::Decimal;
///
/// let view = NullPortfolio::with_equity(Decimal::ONE_HUNDRED);
/// assert_eq!(view.equity(), Decimal::ONE_HUNDRED);
/// assert_eq!(view.peak_equity(), Decimal::ONE_HUNDRED);
/// assert!(view.positions().is_empty());
/// assert_eq!(NullPortfolio::default().equity(), Decimal::ZERO);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NullPortfolio {
    equity: Decimal,
}

impl NullPortfolio {
    /// A view whose equity (and peak equity) is `equity`.
    #[must_use]
    pub fn with_equity(equity: Decimal) -> Self {
        Self { equity }
    }
}

impl PortfolioView for NullPortfolio {
    fn equity(&self) -> Decimal {
        self.equity
    }
    fn peak_equity(&self) -> Decimal {
        self.equity
    }
    fn total_drawdown_pct(&self) -> Decimal {
        Decimal::ZERO
    }
    fn daily_drawdown_pct(&self) -> Decimal {
        Decimal::ZERO
    }
    fn consecutive_losses(&self) -> u32 {
        0
    }
    fn positions(&self) -> Vec<Position> {
        Vec::new()
    }
    fn exposure(&self) -> Decimal {
        Decimal::ZERO
    }
    fn volatility_pct(&self, _pair: &Pair) -> Option<Decimal> {
        None
    }
}
