//! The HTTP/WebSocket API (axum): routes, authentication, JSON errors.

pub mod error;

pub use error::ApiError;
