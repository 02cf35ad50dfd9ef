//! The error type of gf-exec.

use gf_core::ApiErrorKind;

/// Errors of the exchange layer. [`Error::is_retryable`] says whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The trading gate is closed and the order is not a halt-closure order.
    #[error("order refused: trading is halted")]
    Halted,
    /// The order is not self-consistent.
    #[error(transparent)]
    InvalidOrder(#[from] gf_core::Error),
    /// The exchange answered with an error.
    #[error("{endpoint}: exchange error {message:?} ({kind:?})")]
    Api {
        /// The endpoint called.
        endpoint: String,
        /// Error class.
        kind: ApiErrorKind,
        /// The exchange's error string(s).
        message: String,
    },
    /// No answer in time; the request may or may not have taken effect.
    #[error("{endpoint}: timed out after {millis} ms")]
    Timeout {
        /// The endpoint called.
        endpoint: String,
        /// The timeout.
        millis: u64,
    },
    /// Connection-level failure before an answer.
    #[error("{endpoint}: network error: {message}")]
    Network {
        /// The endpoint called.
        endpoint: String,
        /// The transport's message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("{endpoint}: malformed response (HTTP {status}): {snippet}")]
    Malformed {
        /// The endpoint called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        snippet: String,
    },
    /// The order is unknown to the exchange.
    #[error("unknown order {0}")]
    UnknownOrder(String),
    /// The paper exchange cannot fill: no book for the pair yet.
    #[error("no market for {0}: no book received yet")]
    NoMarket(String),
}

impl Error {
    /// The class of error, for metrics and the halt error-rate condition.
    #[must_use]
    pub fn kind(&self) -> ApiErrorKind {
        match self {
            Error::Api { kind, .. } => *kind,
            Error::Timeout { .. } => ApiErrorKind::Timeout,
            Error::Network { .. } => ApiErrorKind::Network,
            Error::Malformed { .. } => ApiErrorKind::MalformedResponse,
            Error::UnknownOrder(_) => ApiErrorKind::UnknownOrder,
            Error::Halted | Error::InvalidOrder(_) | Error::NoMarket(_) => ApiErrorKind::Other,
        }
    }

    /// Whether retrying the same request may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { kind, .. } => matches!(
                kind,
                ApiErrorKind::RateLimit
                    | ApiErrorKind::ServiceUnavailable
                    | ApiErrorKind::InvalidNonce
                    | ApiErrorKind::Timeout
                    | ApiErrorKind::Network
            ),
            Error::Timeout { .. } | Error::Network { .. } | Error::Malformed { .. } => true,
            Error::NoMarket(_) => true,
            Error::Halted | Error::InvalidOrder(_) | Error::UnknownOrder(_) => false,
        }
    }
}
