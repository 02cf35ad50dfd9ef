//! Kraken WebSocket v2 market data: checksummed L2 book, trades, ticker, reconnect, staleness, replay.
//!
//! This crate is being built under its own issue; it has no public items yet.
