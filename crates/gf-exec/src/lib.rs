//! The only crate that talks to the exchange's REST API: the [`Exchange`] trait, the Kraken
//! REST client, the order gate wrapper, the paper exchange and (feature `sim`) a mock Kraken
//! server.

mod error;
pub mod exchange;

pub use error::Error;
#[cfg(any(test, feature = "mocks"))]
pub use exchange::MockExchange;
pub use exchange::{DeadManStatus, Exchange, OrderAck, OrderInfo, OrderRef};
