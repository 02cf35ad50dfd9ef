//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in gf-monitor.
#[derive(Debug, Error)]
pub enum Error {
    /// A channel's configuration is unusable; names the channel and the key.
    #[error("channel `{channel}`: invalid `{key}`: {reason}")]
    ChannelConfig {
        /// Channel name from `[[monitor.channels]]`.
        channel: String,
        /// The offending setting.
        key: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Two channels share a name, so alerts could not address them.
    #[error("channel `{0}` is configured twice")]
    DuplicateChannel(String),
    /// A delivery attempt failed; `retryable` says whether another attempt may succeed.
    #[error("channel `{channel}`: delivery failed: {reason}")]
    Delivery {
        /// Channel name.
        channel: String,
        /// What went wrong.
        reason: String,
        /// Whether retrying may help (network errors, 5xx, 429) or not (4xx, bad address).
        retryable: bool,
    },
    /// A delivery attempt did not finish in time.
    #[error("channel `{channel}`: delivery timed out after {millis} ms")]
    Timeout {
        /// Channel name.
        channel: String,
        /// The timeout.
        millis: u64,
    },
    /// An alert rule is malformed.
    #[error("alert rule `{rule}`: {reason}")]
    Rule {
        /// Rule name.
        rule: String,
        /// Why.
        reason: String,
    },
    /// Encoding the metrics exposition failed.
    #[error("metrics encoding failed: {0}")]
    Encode(#[from] std::fmt::Error),
}

impl Error {
    /// Whether another attempt at the same operation may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Delivery { retryable, .. } => *retryable,
            Error::Timeout { .. } => true,
            Error::ChannelConfig { .. }
            | Error::DuplicateChannel(_)
            | Error::Rule { .. }
            | Error::Encode(_) => false,
        }
    }
}
