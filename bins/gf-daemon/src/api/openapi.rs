//! The OpenAPI 3.1 description of the API, served at `/api/v1/openapi.json`.

use axum::Json;
use serde_json::{Value, json};

use super::error::CODES;

/// One-line free text: no control character (C0, DEL, C1).
const NO_CONTROLS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

fn op(summary: &str, role: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "responses": {
            ok: { "description": "success", "content": { "application/json": {} } },
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "$ref": "#/components/responses/Error" },
            "403": { "$ref": "#/components/responses/Error" },
        }
    });
    if let Some(role) = role {
        o["security"] = json!([{ "bearer": [] }]);
        o["x-role"] = json!(role);
    } else {
        o["security"] = json!([]);
    }
    o
}

/// The document.
#[must_use]
pub fn spec() -> Value {
    let mut halt = op(
        "Halt trading now (no checklist needed)",
        Some("operator"),
        "202",
    );
    halt["requestBody"] = json!({
        "required": true,
        "content": { "application/json": { "schema": {
            "type": "object", "required": ["reason"], "additionalProperties": false,
            "properties": {
                "reason": {
                    "type": "string", "minLength": 1, "maxLength": gf_halt::coordinator::MAX_REASON_CHARS,
                    "pattern": NO_CONTROLS,
                    "description": "characters, not bytes; control characters are refused (400 invalid_field)"
                },
                "source": { "type": "string", "enum": ["api", "console"] }
            }
        }}}
    });
    let mut resume = op(
        "Resume after the checklist is complete",
        Some("operator"),
        "200",
    );
    resume["responses"]["409"] = json!({ "$ref": "#/components/responses/Error" });
    let mut complete = op(
        "Complete a recovery checklist item",
        Some("operator"),
        "200",
    );
    complete["parameters"] =
        json!([{ "name": "item", "in": "path", "required": true, "schema": { "type": "string" } }]);
    complete["requestBody"] = json!({
        "required": false,
        "content": { "application/json": { "schema": {
            "type": "object", "additionalProperties": false,
            "properties": { "note": {
                "type": "string", "maxLength": gf_halt::checklist::MAX_NOTE_CHARS, "pattern": NO_CONTROLS,
                "description": "characters, not bytes; control characters are refused (400 invalid_field)"
            } }
        }}}
    });
    complete["responses"]["409"] = json!({ "$ref": "#/components/responses/Error" });
    let mut readyz = op(
        "Health aggregate, {\"ready\": bool}; 503 when a check is unhealthy. ?verbose lists the checks and needs a viewer token unless api.public_metrics = true",
        None,
        "200",
    );
    readyz["parameters"] = json!([{ "name": "verbose", "in": "query", "required": false,
        "description": "list every check (viewer token unless api.public_metrics = true)",
        "schema": { "type": "string" } }]);
    readyz["security"] = json!([{}, { "bearer": [] }]);
    let codes: Vec<Value> = CODES
        .iter()
        .map(|(code, status, when)| json!({ "code": code, "status": status, "when": when }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Gal-Friday daemon API", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/api/v1/halt": { "post": halt },
            "/api/v1/resume": { "post": resume },
            "/api/v1/halt/status": { "get": op("Halt state, current halt, missing checklist items", Some("viewer"), "200") },
            "/api/v1/recovery/checklist": { "get": op("The recovery checklist", Some("viewer"), "200") },
            "/api/v1/recovery/checklist/{item}/complete": { "post": complete },
            "/api/v1/positions": { "get": op("Positions, P&L, drawdown, statistics", Some("viewer"), "200") },
            "/api/v1/orders": { "get": op("Open orders", Some("viewer"), "200") },
            "/api/v1/conditions": { "get": op("Halt conditions: value, threshold, triggered", Some("viewer"), "200") },
            "/api/v1/alerts": { "get": op("Firing alerts, silences, recent deliveries", Some("viewer"), "200") },
            "/api/v1/journal": { "get": op("Recent journal records (?limit=, max 1000)", Some("viewer"), "200") },
            "/api/v1/secrets/rotate": { "post": op("Rotate exchange credentials now (tested before use)", Some("admin"), "200") },
            "/api/v1/whoami": { "get": op("The token's operator name and role", Some("viewer"), "200") },
            "/livez": { "get": op("The process is alive", None, "200") },
            "/readyz": { "get": readyz },
            "/metrics": { "get": op("Prometheus text exposition (viewer token unless api.public_metrics = true)", Some("viewer"), "200") },
            "/ws/halt-status": { "get": op("WebSocket: status on connect and on every halt-family event", Some("viewer"), "101") },
            "/ws/dashboard": { "get": op("WebSocket: a dashboard frame every second", Some("viewer"), "101") }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error": {
                    "description": "error; `code` is one of x-error-codes",
                    "x-error-codes": codes,
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "object", "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" },
                                "detail": {}
                            }
                        }}
                    }}}
                }
            }
        }
    })
}

pub(super) async fn document() -> Json<Value> {
    Json(spec())
}
