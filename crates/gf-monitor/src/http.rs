//! Ready-made axum routes for `/metrics`, `/livez` and `/readyz`, which the daemon mounts
//! on its API router (and tests serve on a loopback port).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::Monitor;
use crate::metrics::CONTENT_TYPE;

/// Routes: `GET /metrics` (OpenMetrics text), `GET /livez` (always 200 while the process
/// answers), `GET /readyz` (200 or 503; `?verbose` lists every check).
pub fn router(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(monitor)
}

async fn metrics(State(m): State<Arc<Monitor>>) -> Response {
    match m.render_metrics() {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn livez() -> Response {
    axum::Json(json!({ "status": "alive" })).into_response()
}

async fn readyz(
    State(m): State<Arc<Monitor>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = m.readiness().await;
    let code = StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = if q.contains_key("verbose") {
        serde_json::to_value(&r).unwrap_or_default()
    } else {
        json!({ "ready": r.ready, "status": r.status })
    };
    (code, axum::Json(body)).into_response()
}
