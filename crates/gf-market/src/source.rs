//! The [`MarketSource`] seam: something that drives market events onto the bus — the live
//! Kraken client ([`crate::KrakenClient`]) or a recording ([`crate::ReplaySource`]).

use async_trait::async_trait;
use gf_core::{EventBus, SharedClock};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::feed::FeedStats;

/// A source of market data events.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MarketSource: Send {
    /// Publishes market events on `bus`, stamped from `clock`, until the source ends (a
    /// recording is exhausted) or `shutdown` is cancelled. Returns the feed counters.
    ///
    /// Cancellation-safe at message boundaries: cancelling `shutdown` stops the source
    /// after the message in hand.
    ///
    /// # Errors
    /// Unrecoverable failures only (e.g. the recording cannot be opened). Bad messages
    /// and dropped connections are counted and recovered from, not returned.
    async fn run(
        &mut self,
        bus: EventBus,
        clock: SharedClock,
        shutdown: CancellationToken,
    ) -> Result<FeedStats, Error>;
}
