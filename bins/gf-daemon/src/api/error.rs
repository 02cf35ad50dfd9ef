//! JSON errors of the HTTP API: `{"error": {"code": "...", "message": "...", "detail"?}}`
//! with a stable `code` per kind of failure, and the right status. Every rejection — bad
//! JSON, a wrong type, a bad query or path, an unknown route, a wrong method, a body too
//! large — has this shape; [`CODES`] lists them all (docs/api.md documents the same list).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error code the API answers with, its HTTP status and when.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_json",
        400,
        "the body is not JSON (syntax error, truncated)",
    ),
    (
        "invalid_body",
        400,
        "JSON of the wrong shape: a wrong type, a missing or an unknown field",
    ),
    (
        "invalid_field",
        400,
        "a field's value is refused: empty, too long or with a control character; `detail.field` names it",
    ),
    ("invalid_query", 400, "the query string does not parse"),
    ("invalid_path", 400, "a path parameter does not parse"),
    (
        "invalid_operator",
        400,
        "the token's operator name cannot be journaled",
    ),
    (
        "invalid_upgrade",
        400,
        "a WebSocket route without a valid WebSocket handshake",
    ),
    ("unauthorized", 401, "no bearer token, or an unknown one"),
    (
        "forbidden",
        403,
        "a valid token without the role the route needs",
    ),
    (
        "gateway_disabled",
        403,
        "`POST /api/v1/orders` while `gateway.enabled = false`",
    ),
    ("not_found", 404, "no such route"),
    ("unknown_item", 404, "no such checklist item"),
    (
        "unknown_order",
        404,
        "no order of this trader has that `client_order_id`",
    ),
    (
        "method_not_allowed",
        405,
        "the route exists, not with this method",
    ),
    (
        "payload_too_large",
        413,
        "the body is larger than `api.max_body_bytes`",
    ),
    (
        "unsupported_media_type",
        415,
        "a JSON body without `content-type: application/json`",
    ),
    (
        "illegal_transition",
        409,
        "the halt state does not allow it",
    ),
    (
        "not_allowed",
        409,
        "the action is not allowed in this state",
    ),
    (
        "already_completed",
        409,
        "the checklist item was completed already",
    ),
    (
        "out_of_order",
        409,
        "`confirm_resume` before the other checklist items",
    ),
    (
        "resume_refused",
        409,
        "items missing or conditions still breached; `detail` lists them",
    ),
    (
        "interrupted",
        409,
        "a new halt trigger arrived meanwhile; re-read the status and retry",
    ),
    (
        "no_credentials",
        409,
        "paper mode has no credentials to rotate",
    ),
    (
        "fleet_disabled",
        409,
        "the fleet is not enabled (`fleet.enabled = false`)",
    ),
    (
        "halted",
        409,
        "trading is halted: the order is refused; `detail` has `halt_id`, `source`, `reason`, `state`",
    ),
    (
        "exchange_cancel_only",
        409,
        "the exchange accepts only cancels now; `detail.exchange_status`",
    ),
    (
        "exchange_post_only",
        409,
        "the exchange accepts only post-only limit orders now; `detail.exchange_status`",
    ),
    (
        "exchange_maintenance",
        409,
        "the exchange is in maintenance; `detail.exchange_status`",
    ),
    (
        "exchange_unknown",
        409,
        "the exchange's trading status is unknown, so orders are refused; `detail.exchange_status`",
    ),
    (
        "idempotency_conflict",
        409,
        "the `client_order_id` was used with a different body; `detail.fields` lists the differences",
    ),
    (
        "order_closed",
        409,
        "the order is already filled, cancelled, rejected or expired",
    ),
    (
        "risk_refused",
        422,
        "a pre-trade check refused the order; `detail.check` names it, with its limit and value",
    ),
    (
        "rate_limited",
        429,
        "the token's order rate or open-order limit; `Retry-After` and `detail.retry_after_secs` say when to retry",
    ),
    (
        "internal",
        500,
        "a bug or a journal failure; the log has the cause",
    ),
    (
        "rotation_failed",
        502,
        "the new credentials failed their test; the old ones stay in force",
    ),
    (
        "exchange_rejected",
        502,
        "the exchange refused the order; `detail.reason` has its answer",
    ),
    ("unavailable", 503, "the exchange did not answer"),
    (
        "halt_not_durable",
        503,
        "the gate is closed but the journal could not record the halt; `detail` has the outcome",
    ),
    (
        "not_journaled",
        503,
        "the journal could not record the order, so nothing was placed; a retry may succeed",
    ),
    (
        "fleet_unreachable",
        503,
        "NATS did not answer: this node is halted anyway (fleet halt) and the fleet write is retried; a fleet resume cleared nothing",
    ),
];

/// An API failure, rendered as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Optional structured detail (e.g. missing checklist items).
    pub detail: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// Attaches structured detail.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// 401: no or unknown token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a valid token without the needed role.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400 `invalid_field`: a field's value is refused; `detail.field` names the field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", message)
            .with_detail(serde_json::json!({ "field": field }))
    }

    /// 404 `not_found`: no such route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<gf_core::text::TextError> for ApiError {
    fn from(e: gf_core::text::TextError) -> Self {
        Self::invalid_field(e.field(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                detail: self.detail.as_ref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_statuses_are_errors() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, status, what) in CODES {
            assert!(seen.insert(*code), "{code} listed twice");
            assert!((400..600).contains(status), "{code}: {status}");
            assert!(!what.is_empty());
        }
    }

    #[test]
    fn a_refused_field_is_named_in_the_detail() {
        let e: ApiError = gf_core::text::check_line("reason", "a\x1bb", 500, true)
            .unwrap_err()
            .into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "invalid_field");
        assert_eq!(e.detail, Some(serde_json::json!({ "field": "reason" })));
        assert!(e.message.starts_with("reason contains"), "{}", e.message);
    }
}
