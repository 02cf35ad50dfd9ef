//! The log channel: notices become tracing events (error for critical, warn for warning).

use async_trait::async_trait;

use gf_core::{AlertStatus, Severity};

use super::{Channel, Notice};
use crate::Error;

/// Writes notices to the log.
#[derive(Debug, Clone)]
pub struct LogChannel {
    name: String,
}

impl LogChannel {
    /// A log channel called `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }
}

#[async_trait]
impl Channel for LogChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "log"
    }

    async fn send(&self, n: &Notice) -> Result<(), Error> {
        let status = match n.status {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        };
        match (n.severity, n.status) {
            (Severity::Critical, AlertStatus::Firing) => {
                tracing::error!(key = %n.key, rule = %n.rule, status, "{}", n.summary);
            }
            (Severity::Warning, AlertStatus::Firing) => {
                tracing::warn!(key = %n.key, rule = %n.rule, status, "{}", n.summary);
            }
            _ => tracing::info!(key = %n.key, rule = %n.rule, status, "{}", n.summary),
        }
        Ok(())
    }
}
