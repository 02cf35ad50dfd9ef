//! The [`MarketSource`] seam: something that drives market events onto the bus — the live
//! Kraken client ([`crate::MarketClient`]) or a recording ([`crate::ReplaySource`]).

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use gf_core::ManualClock;

    #[tokio::test]
    async fn sources_are_interchangeable_behind_the_trait() {
        let mut mock = MockMarketSource::new();
        mock.expect_run().times(1).returning(|_, _, _| {
            Ok(FeedStats {
                messages: 7,
                ..FeedStats::default()
            })
        });
        let replay = crate::ReplaySource::from_bytes(
            b"{\"channel\":\"heartbeat\"}\n".to_vec(),
            rust_decimal::Decimal::ZERO,
        )
        .unwrap();
        let mut sources: Vec<Box<dyn MarketSource>> = vec![Box::new(mock), Box::new(replay)];
        let mut messages = Vec::new();
        for source in &mut sources {
            let stats = source
                .run(
                    EventBus::new(8),
                    Arc::new(ManualClock::default()),
                    CancellationToken::new(),
                )
                .await
                .unwrap();
            messages.push(stats.messages);
        }
        assert_eq!(messages, vec![7, 1]);
    }
}
