//! The fleet routes: `GET /api/v1/fleet/status` (viewer), `POST /api/v1/fleet/halt`
//! (operator) and `POST /api/v1/fleet/resume` (admin). Every mutation is journaled on this
//! node with the operator's identity.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gf_core::HaltSource;
use gf_core::text::check_line;
use gf_halt::coordinator::MAX_REASON_CHARS;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, Operator, Viewer};
use crate::app::Daemon;

fn fleet_of(d: &Daemon) -> Result<&gf_fleet::Fleet, ApiError> {
    d.fleet.as_ref().ok_or_else(|| {
        ApiError::conflict(
            "fleet_disabled",
            "the fleet is not enabled on this daemon (`fleet.enabled = false`)",
        )
    })
}

async fn journal(d: &Daemon, kind: &str, actor: &str, detail: serde_json::Value) {
    // A failed journal write halts the node by itself (auto:journal_unwritable).
    if let Err(e) = d.halt.record(kind, actor, detail).await {
        tracing::error!(error = %e, kind, "fleet: journaling failed");
    }
}

/// `GET /api/v1/fleet/status`.
pub(super) async fn status(
    State(d): State<Daemon>,
    Viewer(_): Viewer,
) -> Json<gf_api::FleetStatus> {
    Json(crate::fleet::status(&d))
}

/// `POST /api/v1/fleet/halt` `{reason}`: writes the fleet halt (every node halts) and
/// halts this node now. When NATS does not answer, this node halts anyway and the fleet
/// write is retried with every heartbeat until it lands: 503 `fleet_unreachable`.
pub(super) async fn halt(
    State(d): State<Daemon>,
    Operator(who): Operator,
    ApiJson(body): ApiJson<gf_api::FleetHaltRequest>,
) -> Result<Response, ApiError> {
    let fleet = fleet_of(&d)?;
    let reason = body.reason.trim();
    check_line("reason", reason, MAX_REASON_CHARS, true)?;
    let by = format!("operator:{}", who.name);
    match fleet.halt(&by, reason).await {
        Ok((record, created)) => {
            journal(
                &d,
                "fleet_halt_requested",
                &who.name,
                json!({ "reason": reason, "created": created, "revision": record.revision, "in_force": record.reason }),
            )
            .await;
            // This node halts now, not when the watch brings the record back.
            d.halt.sweep().await;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((code, Json(gf_api::FleetHaltReply { record, created })).into_response())
        }
        Err(e) => {
            fleet.owe_halt(&by, &format!("{}: {reason}", fleet.config().node));
            let outcome = d
                .halt
                .halt(
                    HaltSource::Api(who.name.clone()),
                    &format!("fleet halt (not yet written to the fleet): {reason}"),
                )
                .await;
            journal(
                &d,
                "fleet_halt_owed",
                &who.name,
                json!({ "reason": reason, "error": e.to_string() }),
            )
            .await;
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "fleet_unreachable",
                format!(
                    "this node is halted; the fleet halt is not written yet ({e}) and will be as soon as NATS answers"
                ),
            )
            .with_detail(json!({ "halt_id": outcome.halt_id, "durable": outcome.durable })))
        }
    }
}

/// `POST /api/v1/fleet/resume`: clears the fleet halt (two different administrators under
/// `fleet.two_person_rule`). Each node then still walks its own checklist.
pub(super) async fn resume(
    State(d): State<Daemon>,
    Admin(who): Admin,
) -> Result<Json<gf_api::FleetResumeReply>, ApiError> {
    let fleet = fleet_of(&d)?;
    match fleet.clear(&who.name).await {
        Ok(reply) => {
            let kind = if reply.cleared {
                "fleet_halt_cleared"
            } else {
                "fleet_clear_approved"
            };
            journal(
                &d,
                kind,
                &who.name,
                json!({ "revision": reply.record.revision, "approvals": reply.record.approvals }),
            )
            .await;
            Ok(Json(reply))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "fleet_unreachable",
            format!("the fleet halt was not cleared: {e}"),
        )),
    }
}
