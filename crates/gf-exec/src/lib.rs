//! The only crate that talks to the exchange's REST API: the [`Exchange`] trait, the Kraken
//! REST client, the order gate wrapper, the paper exchange and (feature `sim`) a mock Kraken
//! server.

mod error;
pub mod events;
pub mod exchange;
pub mod gated;
pub mod ratelimit;
pub mod sign;
pub mod wire;

pub use error::Error;
#[cfg(any(test, feature = "mocks"))]
pub use exchange::MockExchange;
pub use exchange::{DeadManStatus, Exchange, OrderAck, OrderInfo, OrderRef};
pub use gated::GatedExchange;
