//! Gal-Friday's research engine: where signals come from and what the safety stack would
//! have done with them.
//!
//! - [`Strategy`] and [`Signal`]: implement the trait to plug your own logic in; the
//!   examples [`EmaCross`], [`HoldLong`] and [`NoStrategy`] are what the daemon runs.
//! - [`SignalExecutor`]: sizing with gf-risk, the journal record, the pre-trade checks and
//!   the gated exchange — the one path from a signal to an order, shared by the daemon
//!   and the backtest.
//! - [`backtest`]: the deterministic backtest driver. It runs a recording through the
//!   daemon's own market, risk, gate, paper-exchange and halt code on one clock, the
//!   recording's event time, and reports trades, statistics and every halt that would
//!   have fired.
//!
//! ```
//! use gf_strategy::{backtest::Backtest, StrategyKind};
//! let config = gf_core::Config::default();
//! let recording = gf_market::bundled::CRASH;
//! let run = Backtest::new(&config, recording, StrategyKind::HoldLong).run().unwrap();
//! assert!(run.halts.iter().any(|h| h.condition.as_deref() == Some("max_daily_drawdown")));
//! ```

pub mod backtest;
pub mod execute;
pub mod strategy;

pub use execute::{CLIENT_ORDER_ID_KIND, OrderIds, SignalExecutor, SignalOutcome};
pub use gf_core::config::StrategyKind;
pub use strategy::{EmaCross, HoldLong, NoStrategy, Signal, Strategy, by_kind};
