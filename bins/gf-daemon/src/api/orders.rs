//! The order gateway's routes ([`crate::gateway`]): `POST/GET/DELETE /api/v1/orders`,
//! `GET/DELETE /api/v1/orders/{client_order_id}`, `GET /api/v1/fills` and the sequenced
//! feed `WS /ws/orders`. Placing and cancelling need a `trader` token; listings show a
//! trader its own orders and viewers and up every trader's.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gf_api::{CancelFailure, CancelReply, FillsReply, OrderFeedFrame, OrdersReply, PlaceOrder};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AnyRole, ApiJson, ApiPath, ApiQuery, Trader};
use super::{ApiError, wire};
use crate::app::Daemon;
use crate::auth::Role;
use crate::gateway::{CancelError, FeedRead, Refusal, Refused, StatusFilter};

/// `Server-Timing: gateway;dur=<ms>`: the time the daemon spent on the order.
fn server_timing(started: Instant) -> (header::HeaderName, HeaderValue) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    (
        header::HeaderName::from_static("server-timing"),
        HeaderValue::from_str(&format!("gateway;dur={ms:.3}"))
            .unwrap_or(HeaderValue::from_static("gateway")),
    )
}

pub(super) async fn place(
    State(d): State<Daemon>,
    Trader(who): Trader,
    ApiJson(body): ApiJson<PlaceOrder>,
) -> Response {
    let started = Instant::now();
    let result = d.gateway.place(&who.name, body).await;
    let mut response = match result {
        Ok(placed) => {
            let code = if placed.replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let reply = gf_api::PlaceOrderReply {
                order: placed.order,
                replayed: placed.replayed,
            };
            (code, Json(wire::value(&reply))).into_response()
        }
        Err(refused) => refusal_response(&refused),
    };
    let (name, value) = server_timing(started);
    response.headers_mut().insert(name, value);
    response
}

/// The API answer for a refused order.
fn refusal_response(refused: &Refused) -> Response {
    let r = &refused.refusal;
    let code = r.code();
    let message = r.to_string();
    let (status, mut detail) = match r {
        Refusal::Disabled => (StatusCode::FORBIDDEN, json!({})),
        Refusal::Invalid { field, .. } => (StatusCode::BAD_REQUEST, json!({ "field": field })),
        Refusal::Conflict {
            client_order_id,
            fields,
        } => (
            StatusCode::CONFLICT,
            json!({ "client_order_id": client_order_id, "fields": fields }),
        ),
        Refusal::Halted {
            halt_id,
            by,
            reason,
            state,
        } => (
            StatusCode::CONFLICT,
            json!({ "halt_id": halt_id, "source": by, "reason": reason, "state": state }),
        ),
        Refusal::Venue { mode, .. } => (StatusCode::CONFLICT, json!({ "exchange_status": mode })),
        Refusal::Risk(refusal) => {
            let mut v = serde_json::to_value(refusal).unwrap_or_else(|_| json!({}));
            if let Some(obj) = v.as_object_mut()
                && let Some(check) = obj.remove("code")
            {
                obj.insert("check".into(), check);
            }
            (StatusCode::UNPROCESSABLE_ENTITY, v)
        }
        Refusal::RateLimited {
            limit,
            max,
            retry_after_secs,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "limit": limit, "max": max, "retry_after_secs": retry_after_secs }),
        ),
        Refusal::Exchange(reason) => (StatusCode::BAD_GATEWAY, json!({ "reason": reason })),
        Refusal::NotJournaled(cause) => {
            (StatusCode::SERVICE_UNAVAILABLE, json!({ "cause": cause }))
        }
        Refusal::Recorded { code, .. } => (
            match *code {
                "risk_refused" => StatusCode::UNPROCESSABLE_ENTITY,
                "exchange_rejected" => StatusCode::BAD_GATEWAY,
                _ => StatusCode::CONFLICT,
            },
            json!({ "restored": true }),
        ),
    };
    if refused.replayed {
        detail["replayed"] = Value::Bool(true);
    }
    let mut response = ApiError::new(status, code, message)
        .with_detail(detail)
        .into_response();
    if let Refusal::RateLimited {
        retry_after_secs, ..
    } = r
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    response
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
}

/// `GET /api/v1/orders`: a trader's own orders; for viewers and up every trader's and
/// the exchange's open orders.
pub(super) async fn list(
    State(d): State<Daemon>,
    AnyRole(who): AnyRole,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = match q.status.as_deref() {
        None => StatusFilter::All,
        Some(s) => s
            .parse()
            .map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e))?,
    };
    if who.role == Role::Trader {
        return Ok(Json(wire::value(&OrdersReply {
            orders: d.gateway.orders(Some(&who.name), filter),
            open: None,
        })));
    }
    let open = d
        .exchange
        .open_orders()
        .await
        .map_err(|e| ApiError::unavailable(format!("exchange: {e}")))?;
    Ok(Json(wire::value(&OrdersReply {
        orders: d.gateway.orders(None, filter),
        open: Some(wire::value(&open)),
    })))
}

/// `GET /api/v1/orders/{client_order_id}`.
pub(super) async fn one(
    State(d): State<Daemon>,
    Trader(who): Trader,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let order = d
        .gateway
        .order(&who.name, &id)
        .ok_or_else(|| unknown_order(&id))?;
    Ok(Json(json!({ "order": wire::value(&order) })))
}

fn unknown_order(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_order",
        format!(
            "no order {:?} of this trader",
            gf_core::text::escape_control(id)
        ),
    )
}

/// `DELETE /api/v1/orders/{client_order_id}`.
pub(super) async fn cancel_one(
    State(d): State<Daemon>,
    Trader(who): Trader,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    match d.gateway.cancel(&who.name, &id).await {
        Ok(()) => Ok(Json(wire::value(&CancelReply {
            cancelled: vec![id],
            failed: Vec::new(),
        }))),
        Err(CancelError::Unknown(_)) => Err(unknown_order(&id)),
        Err(e @ CancelError::Closed { .. }) => {
            Err(ApiError::conflict("order_closed", e.to_string()))
        }
        Err(e @ CancelError::Exchange { .. }) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "exchange_rejected",
            e.to_string(),
        )),
    }
}

/// `DELETE /api/v1/orders`: every open order of this trader (never another's).
pub(super) async fn cancel_all(State(d): State<Daemon>, Trader(who): Trader) -> Json<Value> {
    let mut reply = CancelReply::default();
    for id in d.gateway.open_ids(&who.name) {
        match d.gateway.cancel(&who.name, &id).await {
            Ok(()) => reply.cancelled.push(id),
            // Filled or cancelled meanwhile: nothing left to cancel.
            Err(CancelError::Closed { .. } | CancelError::Unknown(_)) => {}
            Err(e @ CancelError::Exchange { .. }) => reply.failed.push(CancelFailure {
                client_order_id: id,
                reason: e.to_string(),
            }),
        }
    }
    Json(wire::value(&reply))
}

#[derive(Debug, Deserialize)]
pub(super) struct FillsQuery {
    since: Option<String>,
}

/// `GET /api/v1/fills[?since=RFC3339]`.
pub(super) async fn fills(
    State(d): State<Daemon>,
    AnyRole(who): AnyRole,
    ApiQuery(q): ApiQuery<FillsQuery>,
) -> Result<Json<Value>, ApiError> {
    let since = q
        .since
        .as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!(
                            "since {:?}: {e}; expected an RFC 3339 time such as 2026-12-02T08:00:00Z",
                            gf_core::text::escape_control(s)
                        ),
                    )
                })
        })
        .transpose()?;
    let trader = (who.role == Role::Trader).then_some(who.name.as_str());
    Ok(Json(wire::value(&FillsReply {
        fills: d.gateway.fills(trader, since),
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    token: Option<String>,
    since: Option<u64>,
    epoch: Option<String>,
}

/// `WS /ws/orders[?since=N]`.
pub(super) async fn feed(
    State(d): State<Daemon>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FeedQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let who = super::authorize(&d, &headers, q.token.as_deref(), Role::Trader)?;
    let ws = super::ws::handshake(ws)?;
    // A sequence number of another run (the daemon restarted) names no frame of this one.
    let since = match (&q.epoch, q.since) {
        (Some(epoch), Some(_)) if epoch != d.gateway.epoch() => Some(u64::MAX),
        _ => q.since,
    };
    Ok(ws.on_upgrade(move |socket| feed_loop(d, socket, who.name, since)))
}

async fn feed_loop(d: Daemon, mut socket: WebSocket, trader: String, since: Option<u64>) {
    let gateway = d.gateway.clone();
    let (oldest, head) = gateway.feed_head(&trader);
    let hello = OrderFeedFrame::Hello {
        epoch: gateway.epoch().to_owned(),
        head_seq: head,
        oldest_seq: oldest,
        status: Box::new(wire::status(&d)),
    };
    if send(&mut socket, &wire::value(&hello).to_string())
        .await
        .is_err()
    {
        return;
    }
    let mut last = since.unwrap_or(head);
    loop {
        // Registered before reading, so a frame appended in between wakes the loop.
        let changed = gateway.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        match gateway.feed_after(&trader, last) {
            FeedRead::Frames(frames, _) => {
                for (seq, text) in frames {
                    if send(&mut socket, &text).await.is_err() {
                        return;
                    }
                    last = seq;
                }
            }
            FeedRead::Gap { oldest, head } => {
                let gap = OrderFeedFrame::Gap {
                    since: if last == u64::MAX { 0 } else { last },
                    oldest_seq: oldest,
                    head_seq: head,
                };
                if send(&mut socket, &wire::value(&gap).to_string())
                    .await
                    .is_err()
                {
                    return;
                }
                last = head;
                continue;
            }
        }
        tokio::select! {
            biased;
            () = d.shutdown.cancelled() => break,
            () = &mut changed => {}
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

async fn send(socket: &mut WebSocket, text: &str) -> Result<(), axum::Error> {
    socket.send(Message::Text(text.to_owned().into())).await
}
