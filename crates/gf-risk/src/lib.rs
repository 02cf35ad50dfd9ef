//! gf-risk knows how much money is at stake: portfolio and P&L, drawdown (total, daily),
//! consecutive losses, volatility, pre-trade checks and trading statistics.
//!
//! - [`portfolio`]: [`Portfolio`] applies fills and marks (all `Decimal`), tracks equity,
//!   peak, drawdowns and round trips, seeds holdings the account already has
//!   ([`Portfolio::seed_holdings`]: entry = their first price) and its cash
//!   ([`Portfolio::seed_cash`]: a deposit or withdrawal, not P&L), and round-trips through
//!   a JSON [`PortfolioSnapshot`].
//! - [`volatility`]: [`RollingVolatility`], O(1) per tick.
//! - [`pretrade`]: the [`PreTradeCheck`] seam, [`RiskLimits`] from `[risk]`, the stateful
//!   [`PreTradeChecker`] and typed [`Verdict`]s.
//! - [`stats`]: [`TradingStats`] (win rate, profit factor, Sharpe, max drawdown …).
//! - [`shared`]: [`SharedPortfolio`], the cloneable handle the daemon feeds from the bus.
//! - [`view`]: [`PortfolioView`], what gf-halt and gf-monitor read; [`NullPortfolio`], a
//!   view with no positions for tests and examples.
//!
//! Mocks of both seams (`MockPortfolioView`, `MockPreTradeCheck`) are exported with the
//! `mocks` feature. This crate is an **API boundary**: research code depends on it.
//!
//! ```
//! use std::sync::Arc;
//! use chrono::Utc;
//! use gf_core::config::RiskConfig;
//! use gf_core::{ClientOrderId, ManualClock, OrderRequest, Pair, Side};
//! use gf_risk::{Portfolio, PortfolioConfig, PortfolioView, PreTradeCheck, RiskLimits,
//!     SharedPortfolio, Verdict};
//! use rust_decimal::Decimal;
//!
//! let clock = Arc::new(ManualClock::default());
//! let xrp: Pair = "XRP/USD".parse().unwrap();
//! let config = PortfolioConfig {
//!     pairs: vec![xrp.clone()],
//!     initial_cash: Decimal::new(100_000, 0),
//!     volatility_window: 60,
//! };
//! let mut portfolio = Portfolio::new(config, clock.clone()).unwrap();
//! portfolio.mark_price(&xrp, Decimal::new(5000, 4), clock.now()).unwrap(); // 0.5000
//! let risk = SharedPortfolio::new(portfolio, RiskLimits::from_config(&RiskConfig::default()).unwrap());
//!
//! // Risk 0.5 % of 100 000 with a stop one cent below a 0.5000 entry: 50 000 XRP.
//! let qty = risk.size(&xrp, Side::Buy, Decimal::new(5000, 4), Decimal::new(4900, 4)).unwrap();
//! assert_eq!(qty, Decimal::new(50_000, 0));
//!
//! // A limit 20 % above the market is refused by the 5 % collar.
//! let order = OrderRequest::limit(
//!     ClientOrderId::new("c-1"),
//!     xrp.clone(),
//!     Side::Buy,
//!     Decimal::new(100, 0),
//!     Decimal::new(6000, 4),
//! );
//! let verdict = risk.check(order);
//! assert_eq!(verdict.refusal().unwrap().code(), "price_collar");
//! assert_eq!(risk.equity(), Decimal::new(100_000, 0));
//! # use gf_core::Clock;
//! ```

pub mod error;
pub mod null;
pub mod portfolio;
pub mod pretrade;
pub mod shared;
pub mod stats;
pub mod view;
pub mod volatility;

pub use error::Error;
pub use null::NullPortfolio;
pub use portfolio::{
    Applied, CashReport, DailyEquity, FillReport, MAX_SEED_DP, MAX_SEED_QTY, Mark, Portfolio,
    PortfolioConfig, PortfolioSnapshot, SNAPSHOT_VERSION, SeedReport,
};
#[cfg(any(test, feature = "mocks"))]
pub use pretrade::MockPreTradeCheck;
pub use pretrade::{PreTradeCheck, PreTradeChecker, Refusal, RiskLimits, Verdict};
pub use shared::{RunReport, SharedPortfolio};
pub use stats::{ClosedTrade, StatsAccumulator, TradingStats};
#[cfg(any(test, feature = "mocks"))]
pub use view::MockPortfolioView;
pub use view::PortfolioView;
pub use volatility::RollingVolatility;
