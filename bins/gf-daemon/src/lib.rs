//! The Gal-Friday daemon as a library: the composition of every crate into the program an
//! operator runs (`launch`), its HTTP/WebSocket API, the CLI clients, and the [`Strategy`]
//! seam through which research code plugs its own signals into the daemon.
//!
//! The `gf-daemon` binary only parses arguments and calls into this crate.

pub mod api;
pub mod app;
pub mod auth;
pub mod client;
pub mod dashboard;
pub mod live;
pub mod logging;
pub mod perms;
pub mod signals;
pub mod strategy;
pub mod supervise;

pub use strategy::{EmaCross, HoldLong, Signal, Strategy};
