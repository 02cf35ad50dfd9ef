//! Publishing gf-exec's events (order updates, fills, API errors, latencies) on the bus,
//! time-stamped from a [`Clock`](gf_core::Clock).

use gf_core::{
    AlertStatus, ClientOrderId, Event, EventBus, Fill, OrderId, OrderStatus, Pair, Payload, Qty,
    Severity, SharedClock, Source,
};

use crate::Error;

/// Where and as whom gf-exec publishes. Without a bus, publishing is a no-op (research use).
#[derive(Debug, Clone)]
pub struct Publisher {
    bus: Option<EventBus>,
    clock: SharedClock,
    source: Source,
}

impl Publisher {
    /// A publisher on `bus` (or nowhere), stamping events from `clock` as `source`.
    #[must_use]
    pub fn new(bus: Option<EventBus>, clock: SharedClock, source: Source) -> Self {
        Self { bus, clock, source }
    }

    /// The clock used for time stamps.
    #[must_use]
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Publishes an arbitrary payload.
    pub fn publish(&self, payload: Payload) {
        if let Some(bus) = &self.bus {
            bus.publish(Event::new(self.clock.now(), self.source, payload));
        }
    }

    /// An order changed status.
    pub fn order_update(
        &self,
        client_order_id: &ClientOrderId,
        order_id: Option<&OrderId>,
        pair: &Pair,
        status: OrderStatus,
        filled_qty: Qty,
        reason: Option<String>,
    ) {
        self.publish(Payload::OrderUpdate {
            client_order_id: client_order_id.clone(),
            order_id: order_id.cloned(),
            pair: pair.clone(),
            status,
            filled_qty,
            reason,
        });
    }

    /// An execution.
    pub fn fill(&self, fill: Fill) {
        self.publish(Payload::Fill(fill));
    }

    /// A failed API call (gf-halt's error-rate condition counts these).
    pub fn api_error(&self, endpoint: &str, err: &Error) {
        self.publish(Payload::ApiError {
            endpoint: endpoint.to_owned(),
            kind: err.kind(),
            message: err.to_string(),
            retryable: err.is_retryable(),
        });
    }

    /// How long a stage took.
    pub fn latency(&self, stage: &str, micros: u64) {
        self.publish(Payload::Latency {
            stage: stage.to_owned(),
            micros,
        });
    }

    /// An alert firing or resolving.
    pub fn alert(&self, key: &str, severity: Severity, status: AlertStatus, summary: String) {
        self.publish(Payload::Alert {
            key: key.to_owned(),
            severity,
            status,
            summary,
        });
    }
}
