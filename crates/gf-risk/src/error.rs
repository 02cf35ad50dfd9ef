//! The error type of gf-risk: bad fills, bad marks, bad limits and bad snapshots.

use rust_decimal::Decimal;

use gf_core::Pair;

/// Everything gf-risk refuses as input. Every variant names the offending value.
///
/// Pre-trade refusals are not errors: they are [`crate::Verdict::Refused`] outcomes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A fill, mark or order for a pair the portfolio was not configured with.
    #[error("unknown pair {pair}: not one of the portfolio's configured pairs")]
    UnknownPair {
        /// The pair.
        pair: Pair,
    },
    /// A fill with an impossible field (non-positive quantity or price, negative fee).
    #[error("invalid fill {trade_id}: field `{field}` = {value}: {reason}")]
    InvalidFill {
        /// The exchange's trade id.
        trade_id: String,
        /// The offending field (`qty`, `price`, `fee`).
        field: &'static str,
        /// The offending value.
        value: Decimal,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A fill whose trade id was already applied.
    #[error("duplicate fill {trade_id} for {pair}: already applied")]
    DuplicateFill {
        /// The exchange's trade id.
        trade_id: String,
        /// The pair.
        pair: Pair,
    },
    /// A market price that is zero or negative.
    #[error("invalid price {price} for {pair}: must be positive")]
    InvalidPrice {
        /// The pair.
        pair: Pair,
        /// The offending price.
        price: Decimal,
    },
    /// A risk limit out of range (negative, zero where it must be positive, a percent
    /// above 100).
    #[error("invalid risk limit `{key}` = {value}: {reason}")]
    InvalidLimit {
        /// Dotted config key, e.g. `risk.max_order_notional`.
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The portfolio's pairs must share one quote currency (equity is in that currency).
    #[error("pair {pair} is quoted in {quote}, but the portfolio is in {expected}")]
    MixedQuote {
        /// The pair.
        pair: Pair,
        /// Its quote currency.
        quote: String,
        /// The portfolio's quote currency.
        expected: String,
    },
    /// A portfolio needs at least one pair.
    #[error("a portfolio needs at least one pair")]
    NoPairs,
    /// A negative starting balance.
    #[error("invalid initial cash {value}: must not be negative")]
    InvalidInitialCash {
        /// The offending value.
        value: Decimal,
    },
    /// A holding to seed that no account balance can be: negative (a spot balance never
    /// is), above [`crate::portfolio::MAX_SEED_QTY`], or with more than
    /// [`crate::portfolio::MAX_SEED_DP`] decimal places.
    #[error("invalid holding {qty} of {pair}: {reason}")]
    InvalidHolding {
        /// The pair whose base asset is held.
        pair: Pair,
        /// The offending quantity.
        qty: Decimal,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A quote-currency balance that no account's cash can be: negative (a spot balance
    /// never is), above [`crate::portfolio::MAX_SEED_QTY`], or with more than
    /// [`crate::portfolio::MAX_SEED_DP`] decimal places.
    #[error("invalid {currency} balance {balance}: {reason}")]
    InvalidBalance {
        /// The quote currency.
        currency: String,
        /// The offending balance.
        balance: Decimal,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Arithmetic left Decimal's range (about 7.9e28): the input is absurd.
    #[error("arithmetic overflow computing {what} for {pair}")]
    Overflow {
        /// What was being computed.
        what: &'static str,
        /// The pair involved.
        pair: Pair,
    },
    /// A snapshot that does not describe a consistent portfolio.
    #[error("invalid snapshot: {reason}")]
    InvalidSnapshot {
        /// What is wrong with it.
        reason: String,
    },
    /// A snapshot that is not valid JSON for [`crate::PortfolioSnapshot`].
    #[error("snapshot json: {0}")]
    SnapshotJson(String),
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::SnapshotJson(err.to_string())
    }
}
