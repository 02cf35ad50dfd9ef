//! What an order request got: [`Placed`], or [`Refused`] with the typed [`Refusal`] (and
//! whether it is final for its `client_order_id`); and why a cancel failed.

use gf_api::GatewayOrder;

/// Why the gateway refused an order. [`Refusal::is_final`] says whether a retry with the
/// same `client_order_id` gets the same answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// `gateway.enabled = false`.
    #[error("the order gateway is disabled (gateway.enabled = false)")]
    Disabled,
    /// A field of the request is refused.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The same `client_order_id` was used with another body.
    #[error(
        "client order id {client_order_id:?} was used before with a different {}: an idempotency key names one order",
        fields.join(", ")
    )]
    Conflict {
        /// The key.
        client_order_id: String,
        /// The fields that differ.
        fields: Vec<&'static str>,
    },
    /// Trading is halted.
    #[error("trading is halted{}: new orders are refused until an operator resumes", halt_text(*halt_id, reason.as_deref()))]
    Halted {
        /// The halt's id.
        halt_id: Option<u64>,
        /// Who or what halted.
        by: Option<String>,
        /// Why.
        reason: Option<String>,
        /// The halt state.
        state: String,
    },
    /// The venue's trading mode refuses new orders (`cancel_only`, `post_only`, …).
    #[error("{message}")]
    Venue {
        /// The mode (`cancel_only`, `post_only`, `maintenance`, `unknown`).
        mode: String,
        /// The exchange layer's words.
        message: String,
    },
    /// A pre-trade check failed.
    #[error("pre-trade check {check}: {0}", check = .0.code())]
    Risk(gf_risk::Refusal),
    /// Over a per-token limit.
    #[error("over the {limit} limit of {max} for this token: retry after {retry_after_secs} s")]
    RateLimited {
        /// `orders_per_second` or `open_orders`.
        limit: &'static str,
        /// The limit.
        max: u32,
        /// When a retry may pass.
        retry_after_secs: u64,
    },
    /// The exchange refused it.
    #[error("the exchange refused the order: {0}")]
    Exchange(String),
    /// The journal could not record it; nothing was placed.
    #[error("the order could not be journaled, so it was not placed: {0}")]
    NotJournaled(String),
    /// A final refusal read back from the journal after a restart.
    #[error("{message}")]
    Recorded {
        /// Its code.
        code: &'static str,
        /// Its message.
        message: String,
    },
}

/// The codes of final refusals, as journaled.
pub(super) const FINAL_CODES: [&str; 7] = [
    "halted",
    "exchange_cancel_only",
    "exchange_post_only",
    "exchange_maintenance",
    "exchange_unknown",
    "risk_refused",
    "exchange_rejected",
];

fn halt_text(id: Option<u64>, reason: Option<&str>) -> String {
    match (id, reason) {
        (Some(id), Some(reason)) => format!(" (halt {id}: {reason})"),
        (Some(id), None) => format!(" (halt {id})"),
        _ => String::new(),
    }
}

impl Refusal {
    /// The API error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Disabled => "gateway_disabled",
            Refusal::Invalid { .. } => "invalid_field",
            Refusal::Conflict { .. } => "idempotency_conflict",
            Refusal::Halted { .. } => "halted",
            Refusal::Venue { mode, .. } => match mode.as_str() {
                "cancel_only" => "exchange_cancel_only",
                "post_only" => "exchange_post_only",
                "maintenance" => "exchange_maintenance",
                _ => "exchange_unknown",
            },
            Refusal::Risk(_) => "risk_refused",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Exchange(_) => "exchange_rejected",
            Refusal::NotJournaled(_) => "not_journaled",
            Refusal::Recorded { code, .. } => code,
        }
    }

    /// Whether the refusal is the order's answer for good: a retry with the same
    /// `client_order_id` returns it again. Refusals of the request (bad field, conflict,
    /// disabled), over a limit, or of a journal that failed are not: nothing was decided
    /// about an order, so a retry may pass.
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Refusal::Halted { .. }
                | Refusal::Venue { .. }
                | Refusal::Risk(_)
                | Refusal::Exchange(_)
                | Refusal::Recorded { .. }
        )
    }
}

/// A refusal, and whether it answers a retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Why.
    pub refusal: Refusal,
    /// `true` when the first attempt with this `client_order_id` was refused so.
    pub replayed: bool,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Self {
            refusal,
            replayed: false,
        }
    }
}

/// An accepted order.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The order as it stands.
    pub order: GatewayOrder,
    /// `true` when this answers a retry: no second order was placed.
    pub replayed: bool,
}

/// Why a cancel was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// The trader has no order with this id.
    #[error("no order {0:?} of this trader")]
    Unknown(String),
    /// The order is already filled, cancelled, rejected or expired.
    #[error("order {id:?} is already {status}")]
    Closed {
        /// The trader's id.
        id: String,
        /// Its status.
        status: String,
    },
    /// The exchange refused the cancel.
    #[error("the exchange refused the cancel of {id:?}: {reason}")]
    Exchange {
        /// The trader's id.
        id: String,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_refusals_are_the_ones_that_decided_about_an_order() {
        assert!(Refusal::Exchange("x".into()).is_final());
        assert!(
            Refusal::Halted {
                halt_id: Some(1),
                by: None,
                reason: None,
                state: "halted".into()
            }
            .is_final()
        );
        assert!(!Refusal::NotJournaled("disk".into()).is_final());
        assert!(
            !Refusal::RateLimited {
                limit: "open_orders",
                max: 1,
                retry_after_secs: 1
            }
            .is_final()
        );
        for code in FINAL_CODES {
            let r = Refusal::Recorded {
                code,
                message: String::new(),
            };
            assert!(r.is_final());
            assert_eq!(r.code(), code);
        }
        let venue = Refusal::Venue {
            mode: "cancel_only".into(),
            message: String::new(),
        };
        assert_eq!(venue.code(), "exchange_cancel_only");
        assert!(FINAL_CODES.contains(&venue.code()));
    }
}
