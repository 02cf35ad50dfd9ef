//! The fleet's errors.

/// What went wrong talking to the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// NATS could not be reached or refused the connection.
    #[error("cannot connect to NATS at {urls}: {message}")]
    Connect {
        /// The servers tried.
        urls: String,
        /// Why.
        message: String,
    },
    /// A JetStream call failed or timed out.
    #[error("NATS JetStream {op}: {message}")]
    JetStream {
        /// What was being done.
        op: &'static str,
        /// Why.
        message: String,
    },
    /// Not connected (yet, or any more).
    #[error("not connected to NATS")]
    NotConnected,
    /// Compare-and-set kept losing to other writers.
    #[error("the fleet halt record kept changing under {attempts} compare-and-set attempts")]
    Contended {
        /// Attempts made.
        attempts: u32,
    },
}

impl FleetError {
    pub(crate) fn js(op: &'static str, e: impl std::fmt::Display) -> Self {
        FleetError::JetStream {
            op,
            message: e.to_string(),
        }
    }
}
