//! The Gal-Friday daemon as a library: the composition of every crate into the program an
//! operator runs (`launch`, `backtest`), its HTTP/WebSocket API and the CLI clients.
//! Strategies, signals and the backtest driver live in the `gf-strategy` crate.
//!
//! The `gf-daemon` binary only parses arguments and calls into this crate.

pub mod api;
pub mod app;
pub mod auth;
pub mod backtest;
pub mod client;
pub mod dashboard;
pub mod fleet;
pub mod gateway;
pub mod live;
pub mod logging;
pub mod perms;
pub mod signals;
pub mod supervise;
