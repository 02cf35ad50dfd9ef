//! The error type of gf-market.

use std::path::PathBuf;

/// Errors raised by gf-market.
///
/// Bad *market data* (a malformed line, an unknown channel, a checksum mismatch) is not an
/// error of the feed as a whole: it is counted in [`crate::FeedStats`], logged and answered
/// with a resync. These variants are what a caller must act on, or what one message parser
/// reports to the feed processor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A message that is not JSON or not of Kraken's v2 shape.
    #[error("malformed message: {reason}: {excerpt:?}")]
    Malformed {
        /// What is wrong.
        reason: String,
        /// The start of the offending text (truncated).
        excerpt: String,
    },
    /// A number that is not an exact decimal.
    #[error("invalid number {text:?} in field `{field}`")]
    InvalidNumber {
        /// The field.
        field: &'static str,
        /// The raw text.
        text: String,
    },
    /// A price level with a negative quantity (or a non-positive price).
    #[error("invalid level in {pair}: {reason}")]
    InvalidLevel {
        /// The pair.
        pair: String,
        /// What is wrong.
        reason: String,
    },
    /// A book depth Kraken does not offer.
    #[error("invalid book depth {0}: expected 10, 25, 100, 500 or 1000")]
    InvalidDepth(u32),
    /// A replay speed that is negative.
    #[error("invalid replay speed {0}: expected 0 (full speed) or a positive factor")]
    InvalidSpeed(rust_decimal::Decimal),
    /// The WebSocket URL is not usable.
    #[error("invalid websocket url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A WebSocket transport failure.
    #[error("websocket error talking to {url}: {source}")]
    WebSocket {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// A network await that did not finish in time.
    #[error("timed out after {millis} ms while {what}")]
    Timeout {
        /// What we were waiting for.
        what: &'static str,
        /// The timeout.
        millis: u64,
    },
    /// Reading or writing a recording failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A socket operation (bind, accept) failed.
    #[error("socket error while {what}: {source}")]
    Socket {
        /// What we were doing.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Maximum characters of offending text kept in errors and logs.
pub(crate) const EXCERPT_CHARS: usize = 120;

/// The first [`EXCERPT_CHARS`] characters of `text`, with `…` when cut.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl Error {
    pub(crate) fn malformed(reason: impl Into<String>, text: &str) -> Self {
        Error::Malformed {
            reason: reason.into(),
            excerpt: excerpt(text),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_truncates_on_char_boundaries() {
        let long = "é".repeat(500);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }

    #[test]
    fn messages_name_the_offending_value() {
        let err = Error::InvalidDepth(7);
        assert!(err.to_string().contains('7'));
        let err = Error::malformed("expected an object", "[1,2]");
        assert_eq!(
            err.to_string(),
            "malformed message: expected an object: \"[1,2]\""
        );
    }
}
