//! gf-monitor makes Gal-Friday observable: a metrics registry rendered for Prometheus,
//! process metrics, an embedded alert manager with real delivery channels, health checks
//! feeding `/readyz`, and the dashboard payload.
//!
//! - [`metrics`]: the registry ([`Metrics`]) and its OpenMetrics text exposition.
//! - [`system`]: CPU, memory, descriptors, threads and free disk of this process.
//! - [`alert`]: rules, de-duplication, cooldown, grouping, inhibition, silences, resolved
//!   notices ([`AlertManager`]).
//! - [`channel`]: log, e-mail (SMTP), webhook (generic, Slack, Discord, Telegram) and SMS
//!   (Twilio-compatible) channels and the [`Dispatcher`].
//! - [`health`]: the [`HealthCheck`] trait, built-in checks and the aggregate.
//! - [`dashboard`]: the [`DashboardSnapshot`] pushed to the dashboard WebSocket.
//! - [`monitor`]: [`Monitor`], which the daemon feeds with every bus event.
//! - [`http`]: axum routes for `/metrics`, `/livez`, `/readyz`.
//!
//! # Why `prometheus-client`
//!
//! We use `prometheus-client` (the Prometheus project's own Rust client) rather than the
//! `metrics` facade with its Prometheus exporter: we need exactly one backend, real
//! histograms with chosen buckets, typed label sets, and an encoder we call ourselves
//! from the daemon's HTTP server — without a global recorder, an exporter thread or a
//! second HTTP listener. Its counters and gauges are plain atomics, and its
//! `EncodeMetric` trait let us add a lock-free latency histogram
//! ([`metrics::LatencyHistogram`]), so a latency sample costs tens of nanoseconds on the
//! trading path. It writes the OpenMetrics text format that Prometheus negotiates
//! natively.
//!
//! This crate is not an API boundary for research code; the daemon composes it.
//!
//! ```
//! use std::sync::Arc;
//! use gf_core::{config::MonitorConfig, Clock, Event, ManualClock, Payload, Source};
//! use gf_monitor::{MonitorBuilder, CONTENT_TYPE};
//!
//! let clock = ManualClock::default();
//! let monitor = MonitorBuilder::new(&MonitorConfig::default(), Arc::new(clock.clone()))
//!     .build()
//!     .unwrap();
//! monitor.on_event(&Event::new(clock.now(), Source::Market,
//!     Payload::Latency { stage: "book_applied".into(), micros: 40 }));
//! let body = monitor.render_metrics().unwrap();
//! assert!(body.starts_with("# HELP"));
//! assert!(CONTENT_TYPE.starts_with("application/openmetrics-text"));
//! ```

pub mod alert;
pub mod channel;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod system;

pub use alert::{
    AlertManager, AlertRule, Decision, Inhibition, RuleKind, Suppression, default_rules,
};
pub use channel::{Channel, Dispatcher, Notice};
pub use dashboard::DashboardSnapshot;
pub use error::Error;
pub use health::{CheckOutcome, HealthCheck, HealthRegistry, Readiness};
pub use metrics::{CONTENT_TYPE, Metrics, STAGES};
pub use monitor::{Monitor, MonitorBuilder};
