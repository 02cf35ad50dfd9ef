//! The HTTP/WebSocket API (axum): the routes of the design, bearer-token auth with roles,
//! JSON errors with stable codes, size-limited bodies.
//!
//! | route | role |
//! |---|---|
//! | `POST /api/v1/halt` `{reason, source?}` | operator |
//! | `POST /api/v1/resume` | operator |
//! | `GET /api/v1/halt/status` | viewer |
//! | `GET /api/v1/recovery/checklist` | viewer |
//! | `POST /api/v1/recovery/checklist/{item}/complete` `{note?}` | operator |
//! | `GET /api/v1/positions`, `/orders`, `/conditions`, `/alerts`, `/journal` | viewer |
//! | `POST /api/v1/secrets/rotate` | admin |
//! | `GET /api/v1/openapi.json` | none |
//! | `GET /livez`, `/readyz[?verbose]`, `/metrics` | none |
//! | `GET /dashboard` (the page asks for a token itself) | none |
//! | `WS /ws/halt-status`, `WS /ws/dashboard` (token in `Authorization` or `?token=`) | viewer |

pub mod error;
mod openapi;
mod ws;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gf_core::{HaltSource, HaltState};
use serde::Deserialize;
use serde_json::{Value, json};

pub use error::ApiError;

use crate::app::Daemon;
use crate::auth::{Identity, Role};

/// Builds the router over a running daemon.
pub fn router(daemon: Daemon) -> Router {
    let limit = daemon.config.api.max_body_bytes;
    Router::new()
        .route("/api/v1/halt", post(halt))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/halt/status", get(status))
        .route("/api/v1/recovery/checklist", get(checklist))
        .route(
            "/api/v1/recovery/checklist/{item}/complete",
            post(complete_item),
        )
        .route("/api/v1/positions", get(positions))
        .route("/api/v1/orders", get(orders))
        .route("/api/v1/conditions", get(conditions))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/journal", get(journal))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/secrets/rotate", post(rotate_secrets))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(crate::dashboard::page))
        .route("/ws/halt-status", get(ws::halt_status))
        .route("/ws/dashboard", get(ws::dashboard))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(daemon)
}

/// Authenticates a request: a bearer token (or, for WebSockets, `?token=`) with at least
/// `role`. 401 without a valid token, 403 with a valid one lacking the role.
pub(crate) fn authorize(
    d: &Daemon,
    headers: &HeaderMap,
    query_token: Option<&str>,
    role: Role,
) -> Result<Identity, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or(query_token)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let who = d
        .tokens
        .read()
        .authenticate(token)
        .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    if who.role < role {
        return Err(ApiError::forbidden(format!(
            "{} has role {}; this needs {role}",
            who.name, who.role
        )));
    }
    Ok(who)
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(v)) => Ok(v),
        Err(rejection) => {
            let status = rejection.status();
            let code = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                _ => "bad_request",
            };
            Err(ApiError::new(status, code, rejection.body_text()))
        }
    }
}

fn halt_error(e: gf_halt::Error) -> ApiError {
    use gf_halt::Error as E;
    match e {
        E::ResumeRefused(refusal) => {
            ApiError::conflict("resume_refused", format!("resume refused: {refusal}"))
                .with_detail(serde_json::to_value(&refusal).unwrap_or(Value::Null))
        }
        E::IllegalTransition { .. } => ApiError::conflict("illegal_transition", e.to_string()),
        E::NotAllowed { .. } => ApiError::conflict("not_allowed", e.to_string()),
        E::UnknownItem(_) => ApiError::not_found(e.to_string()),
        E::AlreadyCompleted { .. } => ApiError::conflict("already_completed", e.to_string()),
        E::OutOfOrder { .. } => ApiError::conflict("out_of_order", e.to_string()),
        E::InvalidOperator(_) => ApiError::bad_request(e.to_string()),
        E::Interrupted { .. } => ApiError::conflict("interrupted", e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HaltBody {
    reason: String,
    /// `api` (default) or `console`; the operator is always the token's.
    #[serde(default)]
    source: Option<String>,
}

async fn halt(
    State(d): State<Daemon>,
    headers: HeaderMap,
    body: Result<Json<HaltBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = authorize(&d, &headers, None, Role::Operator)?;
    let body = json_body(body)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::bad_request("reason must be 1 to 500 characters"));
    }
    let source = match body.source.as_deref() {
        None | Some("api") => HaltSource::Api(who.name.clone()),
        Some("console") => HaltSource::Console(who.name.clone()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "source {other:?}: expected \"api\" or \"console\""
            )));
        }
    };
    let outcome = d.halt.halt(source, reason).await;
    let code = if outcome.started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(json!({ "outcome": outcome, "status": d.halt.status() })),
    )
        .into_response())
}

async fn resume(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let who = authorize(&d, &headers, None, Role::Operator)?;
    if d.halt.state() == HaltState::Halted {
        d.halt.begin_recovery(&who.name).await.map_err(halt_error)?;
    }
    d.halt.resume(&who.name).await.map_err(halt_error)?;
    Ok(Json(json!({ "status": d.halt.status() })))
}

async fn status(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&d, &headers, None, Role::Viewer)?;
    Ok(Json(
        serde_json::to_value(d.halt.status()).unwrap_or(Value::Null),
    ))
}

async fn checklist(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&d, &headers, None, Role::Viewer)?;
    Ok(Json(json!({
        "state": d.halt.state(),
        "checklist": d.halt.checklist(),
        "missing": d.halt.status().checklist_missing,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    note: Option<String>,
}

async fn complete_item(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Path(item): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let who = authorize(&d, &headers, None, Role::Operator)?;
    let bytes = body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, r.body_text())
    })?;
    let body: CompleteBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        CompleteBody::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    if body.note.as_ref().is_some_and(|n| n.len() > 1000) {
        return Err(ApiError::bad_request(
            "note must be at most 1000 characters",
        ));
    }
    if d.halt.state() == HaltState::Halted {
        d.halt.begin_recovery(&who.name).await.map_err(halt_error)?;
    }
    let done = d
        .halt
        .complete_item(&item, &who.name, body.note.as_deref())
        .await
        .map_err(halt_error)?;
    Ok(Json(
        json!({ "item": done, "missing": d.halt.status().checklist_missing }),
    ))
}

async fn positions(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&d, &headers, None, Role::Viewer)?;
    let body = d.portfolio.read(|p| {
        use gf_risk::PortfolioView;
        json!({
            "positions": p.positions(),
            "cash": p.cash(),
            "equity": p.equity(),
            "peak_equity": p.peak_equity(),
            "realised_pnl": p.realised_pnl(),
            "unrealised_pnl": p.unrealised_pnl(),
            "fees": p.fees(),
            "total_drawdown_pct": p.total_drawdown_pct(),
            "daily_drawdown_pct": p.daily_drawdown_pct(),
            "exposure": p.exposure(),
            "statistics": p.statistics(),
        })
    });
    Ok(Json(body))
}

async fn orders(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&d, &headers, None, Role::Viewer)?;
    let open = d
        .exchange
        .open_orders()
        .await
        .map_err(|e| ApiError::unavailable(format!("exchange: {e}")))?;
    Ok(Json(json!({ "open": open })))
}

async fn conditions(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&d, &headers, None, Role::Viewer)?;
    Ok(Json(json!({ "conditions": d.halt.conditions() })))
}

async fn alerts(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&d, &headers, None, Role::Viewer)?;
    let alerts = d.monitor.alerts();
    Ok(Json(json!({
        "active": alerts.active(),
        "silences": alerts.silences(),
        "deliveries": alerts.dispatcher().recent(),
    })))
}

#[derive(Debug, Deserialize)]
struct JournalQuery {
    limit: Option<usize>,
}

async fn journal(
    State(d): State<Daemon>,
    headers: HeaderMap,
    Query(q): Query<JournalQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&d, &headers, None, Role::Viewer)?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let journal = d.halt.journal().clone();
    let records = tokio::task::spawn_blocking(move || journal.records(limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({ "records": records })))
}

async fn whoami(State(d): State<Daemon>, headers: HeaderMap) -> Result<Json<Identity>, ApiError> {
    Ok(Json(authorize(&d, &headers, None, Role::Viewer)?))
}

async fn rotate_secrets(
    State(d): State<Daemon>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let who = authorize(&d, &headers, None, Role::Admin)?;
    let Some(live) = d.live.as_ref() else {
        return Err(ApiError::conflict(
            "no_credentials",
            "paper mode holds no exchange credentials to rotate",
        ));
    };
    match live.rotate_now(&format!("api:{}", who.name)).await {
        Ok(outcome) => Ok(Json(
            json!({ "outcome": format!("{outcome:?}"), "version": live.credentials_version() }),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "rotation_failed",
            format!("rotation failed; the credentials in force are unchanged: {e}"),
        )),
    }
}

async fn livez() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

#[derive(Debug, Deserialize)]
struct ReadyQuery {
    verbose: Option<String>,
}

async fn readyz(State(d): State<Daemon>, Query(q): Query<ReadyQuery>) -> Response {
    let readiness = d.monitor.readiness().await;
    let ready = readiness.ready;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if q.verbose.is_some() {
        serde_json::to_value(&readiness).unwrap_or(Value::Null)
    } else {
        json!({ "ready": ready })
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(d): State<Daemon>) -> Response {
    match d.monitor.render_metrics() {
        Ok(text) => ([(header::CONTENT_TYPE, gf_monitor::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /api/v1/openapi.json")
}
