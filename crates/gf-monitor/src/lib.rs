//! Metrics, Prometheus exposition, alerting channels and health checks.
//!
//! This crate is being built under its own issue; it has no public items yet.
