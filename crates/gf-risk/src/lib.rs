//! Portfolio, P&L, drawdown, volatility, pre-trade checks and trading statistics.
//!
//! This crate is being built under its own issue; it has no public items yet.
