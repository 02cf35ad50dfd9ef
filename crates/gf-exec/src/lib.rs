//! The only crate that talks to the exchange's REST API: the [`Exchange`] trait, the Kraken
//! REST client, the order gate wrapper, the paper exchange and (feature `sim`) a mock Kraken
//! server.

pub mod deadman;
mod error;
pub mod events;
pub mod exchange;
pub mod gated;
pub mod kraken;
pub mod paper;
pub mod ratelimit;
pub mod sign;
#[cfg(feature = "sim")]
pub mod sim;
pub mod wire;

pub use deadman::{DeadManConfig, DeadManSwitch};
pub use error::Error;
#[cfg(any(test, feature = "mocks"))]
pub use exchange::MockExchange;
pub use exchange::{DeadManStatus, Exchange, OrderAck, OrderInfo, OrderRef};
pub use gated::GatedExchange;
pub use kraken::{KrakenClient, KrakenConfig};
pub use paper::{PaperConfig, PaperExchange};
