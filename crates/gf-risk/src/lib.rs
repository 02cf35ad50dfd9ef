//! gf-risk knows how much money is at stake: portfolio and P&L, drawdown (total, daily),
//! consecutive losses, volatility, pre-trade checks and trading statistics.

pub mod view;

#[cfg(any(test, feature = "mocks"))]
pub use view::MockPortfolioView;
pub use view::PortfolioView;
