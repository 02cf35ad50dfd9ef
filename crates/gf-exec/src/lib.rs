//! The Exchange trait, the Kraken REST client, the order gate, the paper exchange and a mock Kraken server.
//!
//! This crate is being built under its own issue; it has no public items yet.
