//! The only crate that talks to the exchange's REST API: the [`Exchange`] trait, the Kraken
//! REST client, the order gate wrapper, the paper exchange and (feature `sim`) a mock Kraken
//! server.
//!
//! - [`Exchange`]: place (market, limit, reduce-only, client order id, user reference),
//!   cancel, cancel all, the dead man's switch, open orders, order status, balances,
//!   positions, a cheap check; `MockExchange` (mockall) behind the `mocks` feature.
//! - [`GatedExchange`]: the order gate in front of every implementation; a closed
//!   [`gf_core::TradingGate`] refuses every order but sealed halt-closure orders. The
//!   Kraken client checks the gate again where each order is written.
//! - [`KrakenClient`]: signed REST calls ([`sign`]), a strictly increasing nonce, the
//!   decaying-counter [`ratelimit`] with a priority lane, typed [`Error`]s, timeouts, safe
//!   retries and reconciliation by client order id.
//! - [`PaperExchange`]: fills against books from the bus, fees, balances; deterministic.
//! - [`DeadManSwitch`]: keeps `CancelAllOrdersAfter` armed while trading is live.
//! - [`NullExchange`]: an empty account that places nothing, for tests and examples.
//! - [`ExecutionsFeed`]: fills pushed by Kraken's private WebSocket v2 `executions`
//!   channel, with REST order-status sync as the fallback while it is down
//!   ([`KrakenClient::spawn_sync_fallback`]).
//! - `sim` (feature `sim`): a mock Kraken server on 127.0.0.1 with fault injection.
//!
//! This crate is an **API boundary**: research code may use the paper exchange directly.
//!
//! ```
//! use std::sync::Arc;
//! use gf_core::{BookSnapshot, Clock, ClientOrderId, Event, EventBus, Level, ManualClock,
//!     OrderPurpose, OrderRequest, OrderStatus, Pair, Payload, Position, Side, Source,
//!     TradingGate};
//! use gf_exec::{events::Publisher, Error, Exchange, GatedExchange, PaperConfig, PaperExchange};
//! use rust_decimal::Decimal;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let clock = Arc::new(ManualClock::default());
//! let bus = EventBus::new(1024);
//! let events = Publisher::new(Some(bus.clone()), clock.clone(), Source::Paper);
//! let paper = PaperExchange::new(PaperConfig::default(), events.clone());
//! let pair: Pair = "XRP/USD".parse().unwrap();
//! paper.on_event(&Event::new(clock.now(), Source::Replay, Payload::BookSnapshot(BookSnapshot {
//!     pair: pair.clone(),
//!     bids: vec![Level::new(Decimal::new(49, 2), Decimal::from(1_000))],
//!     asks: vec![Level::new(Decimal::new(50, 2), Decimal::from(1_000))],
//!     checksum: 0,
//! })));
//! let gate = TradingGate::new_open();
//! let exchange = GatedExchange::new(paper, gate.clone(), events);
//! let mut order = OrderRequest::market(
//!     ClientOrderId::new("buy-1"),
//!     pair,
//!     Side::Buy,
//!     Decimal::from(100),
//! );
//! assert_eq!(exchange.place_order(&order).await.unwrap().status, OrderStatus::Filled);
//!
//! gate.close(); // a halt: only closure orders sealed by the gate's opener pass now
//! order.client_order_id = ClientOrderId::new("buy-2");
//! assert!(matches!(exchange.place_order(&order).await, Err(Error::Halted)));
//! order.client_order_id = ClientOrderId::new("flatten");
//! order.side = Side::Sell;
//! order.purpose = OrderPurpose::HaltClosure;
//! assert!(exchange.place_order(&order).await.is_err(), "a label is not a right");
//! let opener = gate.take_opener().unwrap(); // gf-halt's coordinator holds it in a daemon
//! let mut long = Position::flat(order.pair.clone());
//! long.qty = Decimal::from(100);
//! order.closure_seal = Some(opener.seal_closure(&order.client_order_id, &long, order.qty).unwrap());
//! assert!(exchange.place_order(&order).await.is_ok());
//! assert_eq!(exchange.balances().await.unwrap()["XRP"], Decimal::ZERO);
//! # });
//! ```

pub mod deadman;
mod error;
pub mod events;
pub mod exchange;
pub mod executions;
pub mod gated;
pub mod kraken;
pub mod null;
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
pub use exchange::{DeadManStatus, Exchange, LotRules, OrderAck, OrderInfo, OrderRef, Reconciled};
pub use executions::{ExecutionsConfig, ExecutionsFeed, FeedState, SyncPlan};
pub use gated::GatedExchange;
pub use kraken::{KrakenClient, KrakenConfig};
pub use null::NullExchange;
pub use paper::{PaperConfig, PaperExchange};
