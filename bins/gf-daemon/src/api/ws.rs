//! The two WebSockets: `/ws/halt-status` pushes the status on connect and on every
//! halt-family event; `/ws/dashboard` pushes a dashboard frame every
//! `monitor.dashboard_interval_ms` (1 s by default).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gf_core::{KindSet, RecvError};
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiQuery;
use super::{ApiError, authorize};
use crate::app::Daemon;
use crate::auth::Role;

#[derive(Debug, Deserialize)]
pub(super) struct WsQuery {
    token: Option<String>,
}

/// Authenticates first (401/403 before anything else; `need: None` takes any role), then
/// maps a failed handshake to `invalid_upgrade` (or `method_not_allowed`).
fn upgrade(
    d: &Daemon,
    headers: &HeaderMap,
    q: &WsQuery,
    need: Option<Role>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    match need {
        Some(role) => authorize(d, headers, q.token.as_deref(), role).map(drop)?,
        None => super::authenticate(d, headers, q.token.as_deref()).map(drop)?,
    }
    handshake(ws)
}

/// Maps a failed handshake to `invalid_upgrade` (or `method_not_allowed`).
pub(super) fn handshake(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::METHOD_NOT_ALLOWED {
            "method_not_allowed"
        } else {
            "invalid_upgrade"
        };
        ApiError::new(status, code, r.body_text())
    })
}

pub(super) async fn halt_status(
    State(d): State<Daemon>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = upgrade(&d, &headers, &q, None, ws)?;
    Ok(ws.on_upgrade(move |socket| halt_status_loop(d, socket)))
}

fn status_frame(d: &Daemon, event: Option<&gf_core::Event>) -> String {
    json!({
        "type": "status",
        "status": super::status_value(d),
        "checklist": super::wire::value(&d.halt.checklist().as_ref().map(super::wire::checklist)),
        "event": event,
    })
    .to_string()
}

async fn halt_status_loop(d: Daemon, mut socket: WebSocket) {
    // Subscribe before the first frame so no transition falls between them.
    let mut sub = d.bus.subscribe(KindSet::critical());
    if socket
        .send(Message::Text(status_frame(&d, None).into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            biased;
            () = d.shutdown.cancelled() => break,
            ev = sub.recv() => match ev {
                Ok(ev) => {
                    if socket.send(Message::Text(status_frame(&d, Some(&ev)).into())).await.is_err() {
                        break;
                    }
                }
                // Critical events are never dropped; resend the status to be safe.
                Err(RecvError::Lagged { .. }) => {
                    if socket.send(Message::Text(status_frame(&d, None).into())).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

pub(super) async fn dashboard(
    State(d): State<Daemon>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = upgrade(&d, &headers, &q, Some(Role::Viewer), ws)?;
    Ok(ws.on_upgrade(move |socket| dashboard_loop(d, socket)))
}

/// One dashboard frame: the monitor's snapshot plus the halt status, checklist,
/// positions, the order gateway's summary and the fleet (`gf_api::FleetStatus`).
#[must_use]
pub fn dashboard_frame(d: &Daemon) -> serde_json::Value {
    use gf_risk::PortfolioView;
    let positions = d.portfolio.read(|p| {
        json!({
            "positions": p.positions(),
            "equity": p.equity(),
            "realised_pnl": p.realised_pnl(),
            "unrealised_pnl": p.unrealised_pnl(),
            "total_drawdown_pct": p.total_drawdown_pct(),
            "daily_drawdown_pct": p.daily_drawdown_pct(),
        })
    });
    // Every condition the coordinator evaluates, not only those that have published a
    // value change since the monitor started.
    let mut snapshot = serde_json::to_value(d.monitor.dashboard_snapshot()).unwrap_or_default();
    snapshot["conditions"] = d
        .halt
        .conditions()
        .into_iter()
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.name,
                "value": c.value,
                "threshold": c.threshold,
                "triggered": c.triggered,
                "updated_at": c.last_evaluated,
                "detail": c.detail,
            })
        })
        .collect();
    json!({
        "type": "dashboard",
        "snapshot": snapshot,
        "status": super::status_value(d),
        "checklist": super::wire::value(&d.halt.checklist().as_ref().map(super::wire::checklist)),
        "portfolio": positions,
        "gateway": super::wire::value(&d.gateway.summary()),
        "fleet": super::wire::value(&crate::fleet::status(d)),
    })
}

async fn dashboard_loop(d: Daemon, mut socket: WebSocket) {
    let every = Duration::from_millis(d.config.monitor.dashboard_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            () = d.shutdown.cancelled() => break,
            _ = tick.tick() => {
                let frame = dashboard_frame(&d).to_string();
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
