//! Gal-Friday's core: the vocabulary every other crate speaks.
//!
//! - [`types`]: pairs, sides, orders, fills, positions; money is [`rust_decimal::Decimal`].
//! - [`event`]: the [`Event`] enum-of-everything and its stable JSON form.
//! - [`bus`]: the publish/subscribe [`EventBus`] (see its guarantees).
//! - [`clock`]: [`Clock`] with [`SystemClock`] and [`ManualClock`].
//! - [`config`]: the TOML configuration with defaults, env overrides and validation.
//! - [`credentials`]: [`CredentialHandle`], the seam between gf-secrets and gf-exec.
//! - [`gate`]: the [`TradingGate`] that gf-halt closes and gf-exec consults where orders
//!   are written, the [`GateOpener`] only gf-halt holds, and the [`ClosureSeal`] it mints.
//! - [`latency`]: the [`LatencySink`] the hot stages record their latencies into.
//! - [`text`]: free text that crosses a trust boundary: control characters refused on the
//!   way in ([`text::check_line`]), escaped on the way out ([`text::escape_control`]).
//!
//! This crate is an **API boundary**: research code depends on it directly.
//!
//! ```
//! use gf_core::{Event, EventBus, KindSet, ManualClock, Clock, Payload, Source, Pair, Side};
//! use rust_decimal::Decimal;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let clock = ManualClock::default();
//! let bus = EventBus::new(1024);
//! let mut sub = bus.subscribe(KindSet::market_data());
//! bus.publish(Event::new(clock.now(), Source::Replay, Payload::Trade {
//!     pair: "XRP/USD".parse::<Pair>().unwrap(),
//!     side: Side::Buy,
//!     price: Decimal::new(5000, 4),
//!     qty: Decimal::new(100, 0),
//!     trade_id: 1,
//! }));
//! assert_eq!(sub.recv().await.unwrap().ts, clock.now());
//! # });
//! ```

pub mod backoff;
pub mod bus;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod error;
pub mod event;
pub mod gate;
pub mod latency;
pub mod text;
pub mod types;

pub use bus::{EventBus, RecvError, Subscription, TryRecvError};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{Config, ConfigError, HaltBehaviour, Mode};
pub use credentials::CredentialHandle;
pub use error::Error;
pub use event::{
    AlertStatus, ApiErrorKind, BookSnapshot, BookUpdate, ConnectionState, Event, EventKind,
    HaltSource, HaltState, HealthStatus, INLINE_LEVELS, KindSet, Levels, Payload, Severity, Source,
};
pub use gate::{ClosureSeal, GateOpener, GatePermit, TradingGate};
pub use latency::{LatencySink, NoLatency, SharedLatency};
pub use types::{
    ClientOrderId, ClientOrderIdError, Fill, Level, OrderId, OrderPurpose, OrderRequest,
    OrderStatus, OrderType, Pair, Position, Price, Qty, Side, TimeInForce,
};
