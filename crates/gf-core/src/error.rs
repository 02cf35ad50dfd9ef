//! The error type of gf-core.

/// Errors raised by gf-core: invalid domain values, configuration and the gate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A pair that is not of Kraken's `BASE/QUOTE` form.
    #[error("invalid pair {text:?}: {reason}")]
    InvalidPair {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An order request that is not self-consistent.
    #[error("invalid order {client_order_id}: field `{field}` {reason}")]
    InvalidOrder {
        /// Our id of the order.
        client_order_id: String,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A halt source that does not parse.
    #[error(
        "invalid halt source {0:?}: expected auto:<condition>, api:<operator>, console:<operator>, cli, signal or fleet"
    )]
    InvalidHaltSource(String),
    /// The trading gate is closed and the order is not a sealed halt-closure order.
    #[error("trading is halted: the order gate is closed to non-closure orders")]
    GateClosed,
    /// An order presented as a halt closure without a valid closure seal (none, minted for
    /// another gate, or for another order, pair, side or quantity), or a seal that cannot
    /// be minted because the order would not reduce the position.
    #[error("closure order {client_order_id} refused: {reason}")]
    ClosureRefused {
        /// Our id of the order.
        client_order_id: String,
        /// Why.
        reason: String,
    },
}
