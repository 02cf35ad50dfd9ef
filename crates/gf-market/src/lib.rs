//! Kraken WebSocket v2 market data for Gal-Friday: a checksummed L2 book, trades, ticker,
//! reconnect, staleness and replay.
//!
//! This crate is an **API boundary**: research code may depend on it (the [`Book`], the
//! [`FeedProcessor`], [`ReplaySource`] and the verifier are meant for backtests).
//!
//! - [`Book`]: an L2 book at a fixed depth, with best bid/ask, mid, spread, top-N and
//!   Kraken's CRC32 [`checksum`](checksum::checksum) (top 10 asks then bids).
//! - [`FeedProcessor`]: raw v2 text → verified books → gf-core events. A
//!   [`Payload::BookSnapshot`](gf_core::Payload::BookSnapshot) or
//!   [`Payload::BookUpdate`](gf_core::Payload::BookUpdate) is published only after its
//!   checksum verified; a mismatch publishes
//!   [`Payload::BookInvalid`](gf_core::Payload::BookInvalid) and resyncs the pair.
//!   Published levels carry the pair's precision (from the `instrument` channel), so a
//!   consumer that applies the snapshot then each update's levels, truncating to the
//!   depth, holds the same book (same checksum); `best_bid`/`best_ask` come with every
//!   update for consumers that only need the top.
//! - The hot path: a book message in Kraken's fixed layout for a known pair is read by a
//!   hand-written scanner straight into integers at the pair's precision and applied to
//!   the book's integer form (preallocated ring buffers, cached checksum digits), so
//!   parse + apply + checksum allocates nothing
//!   ([`FeedProcessor::process_without_events`]); events still carry exact `Decimal`s.
//!   Any message the scanner does not recognise exactly takes the general serde path,
//!   the reference; property tests and the `market_feed` fuzz target check that both
//!   paths agree on every message ([`FeedProcessor::set_fast_path`]).
//! - [`MarketSource`]: the seam; [`MarketClient`] (live, `Source::Market`) and
//!   [`ReplaySource`] (a recording, `Source::Replay`) implement it. Both also publish
//!   `Trade`, `Ticker`, `Staleness` and (live) `Connection` events.
//! - [`verify::verify_recording`] (for `gf-daemon market verify FILE`): replays a
//!   recording through the books and reports, per pair, messages, verified updates and
//!   mismatches, plus unparseable lines by number; [`VerifyReport`] prints as a table and
//!   [`VerifyReport::passed`] says whether to exit zero.
//! - [`record::record`] (for `gf-daemon market record --pairs … --out FILE`): writes the
//!   live feed, one raw text message per line.
//! - [`bundled`]: the recordings under `fixtures/market/`, embedded (the paper daemon's
//!   default and the backtest's scenarios).
//! - `fixtures` (feature `fixtures`): the seeded generator behind
//!   `cargo xtask gen-fixtures` that wrote those recordings.
//! - `sim` (feature `sim`): a WebSocket server that serves a recording over a real socket
//!   and drops, stalls, corrupts checksums or sends garbage on command.
//!
//! Replaying a recording onto the bus, as the daemon's paper mode does:
//!
//! ```
//! use gf_core::{EventBus, EventKind, KindSet, Payload, SystemClock};
//! use gf_market::{MarketSource, ReplaySource};
//! use rust_decimal::Decimal;
//! use std::sync::Arc;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let recording = gf_market::bundled::PAPER;
//! let bus = EventBus::new(1 << 16);
//! let mut updates = bus.subscribe(KindSet::of(&[EventKind::BookUpdate]));
//! let mut replay = ReplaySource::from_bytes(recording, Decimal::ZERO).unwrap(); // full speed
//! let stats = replay
//!     .run(bus.clone(), Arc::new(SystemClock), Default::default())
//!     .await
//!     .unwrap();
//! assert_eq!(stats.mismatches(), 0);
//! let event = updates.recv().await.unwrap();
//! let Payload::BookUpdate(update) = &event.payload else { unreachable!() };
//! assert!(update.best_bid.unwrap().price < update.best_ask.unwrap().price);
//! # });
//! ```

pub mod book;
pub mod bundled;
pub mod checksum;
pub mod client;
pub mod error;
mod fast;
pub mod feed;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod message;
pub mod num;
pub mod record;
pub mod replay;
#[cfg(feature = "sim")]
pub mod sim;
pub mod source;
pub mod staleness;
pub mod verify;

pub use book::{Book, BookSide, Precision};
pub use client::{ClientConfig, MarketClient};
pub use error::Error;
pub use feed::{FeedProcessor, FeedStats, Ingest, PairStats};
pub use gf_core::backoff::Backoff;
pub use replay::{EventTime, Recording, ReplaySource};
pub use source::MarketSource;
#[cfg(any(test, feature = "mocks"))]
pub use source::MockMarketSource;
pub use staleness::StalenessTracker;
pub use verify::VerifyReport;
