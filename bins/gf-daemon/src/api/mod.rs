//! The HTTP/WebSocket API (axum): the routes of the design, bearer-token auth with roles,
//! JSON errors with stable codes ([`error::CODES`]) for every rejection, size-limited
//! bodies, free text checked for control characters, and a server ([`server`]) with a
//! connection limit and header-read and idle timeouts. docs/api.md is the reference.
//!
//! | route | role |
//! |---|---|
//! | `POST /api/v1/halt` `{reason, source?}` | operator |
//! | `POST /api/v1/resume` | operator |
//! | `GET /api/v1/halt/status`, `/conditions`, `/whoami` | any role (trader too) |
//! | `GET /api/v1/recovery/checklist` | viewer |
//! | `POST /api/v1/recovery/checklist/{item}/complete` `{note?}` | operator |
//! | `GET /api/v1/positions`, `/alerts`, `/journal` | viewer |
//! | `POST /api/v1/orders`, `DELETE /api/v1/orders[/{id}]`, `GET /api/v1/orders/{id}`, `WS /ws/orders` | trader |
//! | `GET /api/v1/orders`, `/fills` | trader (its own) or viewer (every trader's) |
//! | `POST /api/v1/secrets/rotate` | admin |
//! | `GET /api/v1/fleet/status` | viewer |
//! | `POST /api/v1/fleet/halt` `{reason}` | operator |
//! | `POST /api/v1/fleet/resume` | admin |
//! | `GET /api/v1/openapi.json` | none |
//! | `GET /livez`, `/readyz` (`{"ready": bool}` only) | none |
//! | `GET /metrics`, `/readyz?verbose` (equity, P&L, the halt reason) | viewer, or none with `api.public_metrics = true` |
//! | `GET /dashboard` (the page asks for a token itself) | none |
//! | `WS /ws/halt-status` (token in `Authorization` or `?token=`) | any role |
//! | `WS /ws/dashboard` | viewer |

pub mod error;
mod extract;
mod fleet;
#[doc(hidden)]
pub mod fuzz;
mod openapi;
mod orders;
pub mod server;
pub(crate) mod wire;
pub(crate) mod ws;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gf_core::HaltSource;
use gf_core::text::check_line;
use gf_halt::checklist::MAX_NOTE_CHARS;
use gf_halt::coordinator::MAX_REASON_CHARS;
use serde::Deserialize;
use serde_json::{Value, json};

pub use error::ApiError;
pub(crate) use server::spawn as serve;

use extract::{Admin, AnyRole, ApiJson, ApiPath, ApiQuery, Operator, OptionalJson, Viewer};

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
        .route(
            "/api/v1/orders",
            get(orders::list)
                .post(orders::place)
                .delete(orders::cancel_all),
        )
        .route(
            "/api/v1/orders/{client_order_id}",
            get(orders::one).delete(orders::cancel_one),
        )
        .route("/api/v1/fills", get(orders::fills))
        .route("/api/v1/conditions", get(conditions))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/journal", get(journal))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/secrets/rotate", post(rotate_secrets))
        .route("/api/v1/fleet/status", get(fleet::status))
        .route("/api/v1/fleet/halt", post(fleet::halt))
        .route("/api/v1/fleet/resume", post(fleet::resume))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(crate::dashboard::page))
        .route("/ws/halt-status", get(ws::halt_status))
        .route("/ws/dashboard", get(ws::dashboard))
        .route("/ws/orders", get(orders::feed))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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
    let who = authenticate(d, headers, query_token)?;
    if !who.role.includes(role) {
        return Err(ApiError::forbidden(format!(
            "{} has role {}; this needs {role}",
            who.name, who.role
        )));
    }
    Ok(who)
}

/// Authenticates a request with any valid token (any role): 401 without one.
pub(crate) fn authenticate(
    d: &Daemon,
    headers: &HeaderMap,
    query_token: Option<&str>,
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
    // The name is journaled with every mutation; a hand-edited token file must not smuggle
    // control characters into it.
    if who.name.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_operator",
            format!(
                "the token's operator name {} contains control characters; issue a new token",
                gf_core::text::escape_control(&who.name)
            ),
        ));
    }
    Ok(who)
}

/// `/metrics` and `/readyz?verbose` show equity, P&L and the halt reason: a viewer token
/// unless `api.public_metrics` says otherwise.
fn authorize_metrics(d: &Daemon, headers: &HeaderMap) -> Result<(), ApiError> {
    if d.config.api.public_metrics {
        Ok(())
    } else {
        authorize(d, headers, None, Role::Viewer).map(drop)
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
        E::UnknownItem(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_item", e.to_string()),
        E::AlreadyCompleted { .. } => ApiError::conflict("already_completed", e.to_string()),
        E::OutOfOrder { .. } => ApiError::conflict("out_of_order", e.to_string()),
        E::InvalidOperator(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_operator", e.to_string())
        }
        E::Interrupted { .. } => ApiError::conflict("interrupted", e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// `{reason, source?}`: `source` is `api` (default) or `console`; the operator is always
/// the token's.
type HaltBody = gf_api::HaltRequest;

async fn halt(
    State(d): State<Daemon>,
    Operator(who): Operator,
    ApiJson(body): ApiJson<HaltBody>,
) -> Result<Response, ApiError> {
    let (source, reason) = halt_request(&body, &who.name)?;
    let outcome = d.halt.halt(source, reason).await;
    if !outcome.durable {
        // Never 2xx for a halt the journal could not record: a restart could forget it.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "halt_not_durable",
            format!(
                "trading is halted and the gate is closed, but the halt is not durable: the journal could not record it ({}); a restart may not remember it — fix the journal's disk",
                outcome.journal_error.as_deref().unwrap_or("unknown error")
            ),
        )
        .with_detail(halt_reply(&d, &outcome)));
    }
    let code = if outcome.started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(halt_reply(&d, &outcome))).into_response())
}

/// `{outcome, status}`: what a halt request did and the coordinator's status after it.
fn halt_reply(d: &Daemon, outcome: &gf_halt::HaltOutcome) -> Value {
    wire::value(&gf_api::HaltReply {
        outcome: wire::outcome(outcome),
        status: wire::halt_status(d.halt.status()),
    })
}

/// Checks a halt body: the trimmed reason and the source the halt is recorded under.
fn halt_request<'b>(body: &'b HaltBody, operator: &str) -> Result<(HaltSource, &'b str), ApiError> {
    let reason = body.reason.trim();
    check_line("reason", reason, MAX_REASON_CHARS, true)?;
    let source = match body.source.as_deref() {
        None | Some("api") => HaltSource::Api(operator.to_owned()),
        Some("console") => HaltSource::Console(operator.to_owned()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "source",
                format!(
                    "source \"{}\": expected \"api\" or \"console\"",
                    gf_core::text::escape_control(other)
                ),
            ));
        }
    };
    Ok((source, reason))
}

async fn resume(State(d): State<Daemon>, Operator(who): Operator) -> Result<Json<Value>, ApiError> {
    d.halt
        .recover_and_resume(&who.name)
        .await
        .map_err(halt_error)?;
    Ok(Json(wire::value(&gf_api::ResumeReply {
        status: wire::halt_status(d.halt.status()),
    })))
}

async fn status(State(d): State<Daemon>, _: AnyRole) -> Result<Json<Value>, ApiError> {
    Ok(Json(status_value(&d)))
}

/// The halt status plus `exchange_status`: Kraken's trading mode as last reported
/// (`online`, `maintenance`, `cancel_only`, `post_only`, `unknown`), `null` in paper mode.
/// Served by `GET /api/v1/halt/status` and in the WebSocket frames' `status`.
pub(crate) fn status_value(d: &Daemon) -> Value {
    wire::value(&wire::status(d))
}

async fn checklist(State(d): State<Daemon>, _: Viewer) -> Result<Json<Value>, ApiError> {
    Ok(Json(wire::value(&gf_api::ChecklistReply {
        state: d.halt.state().into(),
        checklist: d.halt.checklist().as_ref().map(wire::checklist),
        missing: d.halt.status().checklist_missing,
    })))
}

/// `{note?}`.
type CompleteBody = gf_api::CompleteRequest;

async fn complete_item(
    State(d): State<Daemon>,
    Operator(who): Operator,
    ApiPath(item): ApiPath<String>,
    OptionalJson(body): OptionalJson<CompleteBody>,
) -> Result<Json<Value>, ApiError> {
    check_complete(&body)?;
    let done = d
        .halt
        .recover_and_complete_item(&item, &who.name, body.note.as_deref())
        .await
        .map_err(halt_error)?;
    Ok(Json(wire::value(&gf_api::CompleteReply {
        item: wire::checklist_item(&done),
        missing: d.halt.status().checklist_missing,
    })))
}

/// Checks a checklist completion body (the note, when given).
fn check_complete(body: &CompleteBody) -> Result<(), ApiError> {
    if let Some(note) = &body.note {
        check_line("note", note, MAX_NOTE_CHARS, false)?;
    }
    Ok(())
}

async fn positions(State(d): State<Daemon>, _: Viewer) -> Result<Json<Value>, ApiError> {
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

async fn conditions(State(d): State<Daemon>, _: AnyRole) -> Result<Json<Value>, ApiError> {
    Ok(Json(wire::value(&gf_api::ConditionsReply {
        conditions: d.halt.conditions().iter().map(wire::condition).collect(),
    })))
}

async fn alerts(State(d): State<Daemon>, _: Viewer) -> Result<Json<Value>, ApiError> {
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
    _: Viewer,
    ApiQuery(q): ApiQuery<JournalQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = journal_limit(&q);
    let journal = d.halt.journal().clone();
    let records = tokio::task::spawn_blocking(move || journal.records(limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(wire::value(&gf_api::JournalReply {
        records: records.into_iter().map(wire::journal_record).collect(),
    })))
}

/// How many records `GET /api/v1/journal` returns.
fn journal_limit(q: &JournalQuery) -> usize {
    q.limit.unwrap_or(100).min(1000)
}

async fn whoami(AnyRole(who): AnyRole) -> Json<Value> {
    Json(wire::value(&wire::identity(&who)))
}

async fn rotate_secrets(
    State(d): State<Daemon>,
    Admin(who): Admin,
) -> Result<Json<Value>, ApiError> {
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

async fn readyz(
    State(d): State<Daemon>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReadyQuery>,
) -> Result<Response, ApiError> {
    if q.verbose.is_some() {
        authorize_metrics(&d, &headers)?;
    }
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
    Ok((code, Json(body)).into_response())
}

async fn metrics(State(d): State<Daemon>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize_metrics(&d, &headers)?;
    crate::fleet::export_metrics(&d);
    match d.monitor.render_metrics() {
        Ok(text) => Ok(([(header::CONTENT_TYPE, gf_monitor::CONTENT_TYPE)], text).into_response()),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /api/v1/openapi.json",
    )
}
