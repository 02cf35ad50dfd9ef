//! Access audit: every fetch, rotation attempt and failure becomes an
//! [`AuditRecord`], published on the bus as `Payload::SecretAudit` and handed to the
//! registered [`AuditSink`]s (gf-halt's journal, wired by the daemon). A failed
//! rotation also raises `Payload::Alert`. Never the secret itself.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gf_core::{AlertStatus, Event, EventBus, Payload, Severity, SharedClock, Source};
use parking_lot::Mutex;
use serde::Serialize;

/// Alert key raised when a new credential version fails its check.
pub const ROTATION_FAILED_ALERT: &str = "credential_rotation_failed";

/// One audited access or rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When, from the auditor's clock.
    pub ts: DateTime<Utc>,
    /// Who or what acted: `watcher`, `startup`, `cli`, `operator:<name>` …
    pub actor: String,
    /// The secret set.
    pub set: String,
    /// The provider.
    pub provider: String,
    /// The version read, tested or swapped in.
    pub version: Option<String>,
    /// `fetch`, `validate`, `check`, `rotate`, `load`.
    pub action: String,
    /// `ok`, `unchanged`, or the error message.
    pub outcome: String,
}

impl AuditRecord {
    /// The bus event for this record.
    #[must_use]
    pub fn to_event(&self) -> Event {
        Event::new(
            self.ts,
            Source::Secrets,
            Payload::SecretAudit {
                set: self.set.clone(),
                provider: self.provider.clone(),
                version: self.version.clone(),
                action: self.action.clone(),
                outcome: self.outcome.clone(),
            },
        )
    }
}

/// Somewhere audit records are kept (gf-halt's hash-chained journal, a test buffer).
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Records one entry. Must not block for long; failures are the sink's to report.
    fn record(&self, record: &AuditRecord);
}

/// An in-memory sink (tests, the `check` command).
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditSink {
    /// An empty sink.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far.
    #[must_use]
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().clone()
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, record: &AuditRecord) {
        self.records.lock().push(record.clone());
    }
}

/// Publishes audit records and alerts.
#[derive(Clone)]
pub struct Auditor {
    clock: SharedClock,
    bus: Option<EventBus>,
    sinks: Vec<Arc<dyn AuditSink>>,
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auditor")
            .field("bus", &self.bus.is_some())
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// An auditor stamping records with `clock`, publishing nowhere yet.
    #[must_use]
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            bus: None,
            sinks: Vec::new(),
        }
    }

    /// Also publish on `bus`.
    #[must_use]
    pub fn with_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Also hand records to `sink`.
    #[must_use]
    pub fn with_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// The auditor's clock.
    #[must_use]
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Records one entry: tracing, sinks, bus.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        actor: &str,
        set: &str,
        provider: &str,
        version: Option<&str>,
        action: &str,
        outcome: &str,
    ) -> AuditRecord {
        let record = AuditRecord {
            ts: self.clock.now(),
            actor: actor.to_owned(),
            set: set.to_owned(),
            provider: provider.to_owned(),
            version: version.map(str::to_owned),
            action: action.to_owned(),
            outcome: outcome.to_owned(),
        };
        tracing::info!(
            target: "gf_secrets::audit",
            actor, set, provider, version = version.unwrap_or("-"), action, outcome,
            "secret audit"
        );
        for sink in &self.sinks {
            sink.record(&record);
        }
        if let Some(bus) = &self.bus {
            bus.publish(record.to_event());
        }
        record
    }

    /// Publishes an alert on the bus (and logs it).
    pub fn alert(&self, key: &str, severity: Severity, status: AlertStatus, summary: String) {
        match status {
            AlertStatus::Firing => tracing::error!(key, ?severity, %summary, "secrets alert"),
            AlertStatus::Resolved => tracing::info!(key, %summary, "secrets alert resolved"),
        }
        if let Some(bus) = &self.bus {
            bus.publish(Event::new(
                self.clock.now(),
                Source::Secrets,
                Payload::Alert {
                    key: key.to_owned(),
                    severity,
                    status,
                    summary,
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{Clock, EventKind, KindSet, ManualClock};

    #[tokio::test]
    async fn records_reach_bus_and_sinks() {
        let clock = ManualClock::default();
        let bus = EventBus::new(16);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::SecretAudit, EventKind::Alert]));
        let sink = Arc::new(MemoryAuditSink::new());
        let auditor = Auditor::new(Arc::new(clock.clone()))
            .with_bus(bus.clone())
            .with_sink(sink.clone());
        auditor.record("cli", "kraken", "vault", Some("3"), "fetch", "ok");
        auditor.alert(
            ROTATION_FAILED_ALERT,
            Severity::Critical,
            AlertStatus::Firing,
            "x".into(),
        );
        let ev = sub.recv().await.unwrap();
        assert_eq!(ev.source, Source::Secrets);
        assert_eq!(ev.ts, clock.now());
        assert_eq!(
            ev.payload,
            Payload::SecretAudit {
                set: "kraken".into(),
                provider: "vault".into(),
                version: Some("3".into()),
                action: "fetch".into(),
                outcome: "ok".into(),
            }
        );
        assert_eq!(sub.recv().await.unwrap().kind(), EventKind::Alert);
        let recs = sink.records();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].actor, "cli");
    }
}
