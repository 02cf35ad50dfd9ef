//! The error type of gf-exec.

use gf_core::ApiErrorKind;

/// Errors of the exchange layer. [`Error::is_retryable`] says whether trying again may help;
/// [`Error::is_ambiguous`] whether the request may have taken effect despite the error.
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
    /// The server failed (HTTP 5xx without a Kraken error body, e.g. an HTML 502 page from
    /// a proxy). The request may or may not have taken effect.
    #[error("{endpoint}: server error HTTP {status}: {snippet}")]
    Server {
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
    /// The order was refused before reaching the market (paper exchange rules such as
    /// reduce-only or insufficient funds).
    #[error("order {client_order_id} rejected: {reason}")]
    Rejected {
        /// Our id of the order.
        client_order_id: String,
        /// Why.
        reason: String,
        /// Error class, as the live exchange would report it.
        kind: ApiErrorKind,
    },
    /// No credentials are loaded in the credential handle.
    #[error("no exchange credentials loaded (credential version {version:?})")]
    NoCredentials {
        /// The version the handle reported, if any.
        version: Option<String>,
    },
    /// A setting is unusable.
    #[error("invalid exchange setting `{key}` = {value:?}: {reason}")]
    Config {
        /// The setting.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Persisting or reading the nonce high-water mark failed.
    #[error("nonce file {path}: {message}")]
    NonceFile {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
}

impl Error {
    /// The class of error, for metrics and the halt error-rate condition.
    #[must_use]
    pub fn kind(&self) -> ApiErrorKind {
        match self {
            Error::Api { kind, .. } | Error::Rejected { kind, .. } => *kind,
            Error::Timeout { .. } => ApiErrorKind::Timeout,
            Error::Network { .. } => ApiErrorKind::Network,
            Error::Malformed { .. } => ApiErrorKind::MalformedResponse,
            Error::Server { .. } => ApiErrorKind::ServiceUnavailable,
            Error::UnknownOrder(_) => ApiErrorKind::UnknownOrder,
            Error::NoCredentials { .. } => ApiErrorKind::Authentication,
            Error::Halted
            | Error::InvalidOrder(_)
            | Error::NoMarket(_)
            | Error::Config { .. }
            | Error::NonceFile { .. } => ApiErrorKind::Other,
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
            Error::Timeout { .. }
            | Error::Network { .. }
            | Error::Malformed { .. }
            | Error::Server { .. } => true,
            Error::NoMarket(_) => true,
            Error::Halted
            | Error::InvalidOrder(_)
            | Error::UnknownOrder(_)
            | Error::Rejected { .. }
            | Error::NoCredentials { .. }
            | Error::Config { .. }
            | Error::NonceFile { .. } => false,
        }
    }

    /// Whether the request may have taken effect at the exchange although no success was
    /// seen (a timeout, a dropped connection, a 5xx or an unreadable answer). A placement
    /// that failed this way must be reconciled by client order id before any retry.
    #[must_use]
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Error::Timeout { .. }
            | Error::Network { .. }
            | Error::Malformed { .. }
            | Error::Server { .. } => true,
            Error::Api { kind, .. } => matches!(
                kind,
                ApiErrorKind::ServiceUnavailable | ApiErrorKind::Timeout
            ),
            _ => false,
        }
    }

    /// The endpoint the error came from, when it came from a call.
    #[must_use]
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Error::Api { endpoint, .. }
            | Error::Timeout { endpoint, .. }
            | Error::Network { endpoint, .. }
            | Error::Malformed { endpoint, .. }
            | Error::Server { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_retryability_table() {
        struct Case {
            err: Error,
            kind: ApiErrorKind,
            retryable: bool,
            ambiguous: bool,
        }
        let api = |kind| Error::Api {
            endpoint: "AddOrder".into(),
            kind,
            message: "x".into(),
        };
        let cases = vec![
            Case {
                err: Error::Halted,
                kind: ApiErrorKind::Other,
                retryable: false,
                ambiguous: false,
            },
            Case {
                err: api(ApiErrorKind::RateLimit),
                kind: ApiErrorKind::RateLimit,
                retryable: true,
                ambiguous: false,
            },
            Case {
                err: api(ApiErrorKind::InsufficientFunds),
                kind: ApiErrorKind::InsufficientFunds,
                retryable: false,
                ambiguous: false,
            },
            Case {
                err: api(ApiErrorKind::ServiceUnavailable),
                kind: ApiErrorKind::ServiceUnavailable,
                retryable: true,
                ambiguous: true,
            },
            Case {
                err: Error::Timeout {
                    endpoint: "AddOrder".into(),
                    millis: 5,
                },
                kind: ApiErrorKind::Timeout,
                retryable: true,
                ambiguous: true,
            },
            Case {
                err: Error::Server {
                    endpoint: "AddOrder".into(),
                    status: 502,
                    snippet: "<html>".into(),
                },
                kind: ApiErrorKind::ServiceUnavailable,
                retryable: true,
                ambiguous: true,
            },
            Case {
                err: Error::UnknownOrder("O1".into()),
                kind: ApiErrorKind::UnknownOrder,
                retryable: false,
                ambiguous: false,
            },
            Case {
                err: Error::NoCredentials { version: None },
                kind: ApiErrorKind::Authentication,
                retryable: false,
                ambiguous: false,
            },
        ];
        for case in cases {
            assert_eq!(case.err.kind(), case.kind, "{}", case.err);
            assert_eq!(case.err.is_retryable(), case.retryable, "{}", case.err);
            assert_eq!(case.err.is_ambiguous(), case.ambiguous, "{}", case.err);
        }
    }

    #[test]
    fn messages_are_lower_case_and_name_the_value() {
        let err = Error::Config {
            key: "exchange.timeout_ms".into(),
            value: "0".into(),
            reason: "must be positive".into(),
        };
        let text = err.to_string();
        assert!(text.starts_with("invalid"));
        assert!(
            text.contains("`exchange.timeout_ms` = \"0\": must be positive"),
            "{text}"
        );
        assert_eq!(err.endpoint(), None);
        let timeout = Error::Timeout {
            endpoint: "Balance".into(),
            millis: 10,
        };
        assert_eq!(timeout.endpoint(), Some("Balance"));
    }
}
