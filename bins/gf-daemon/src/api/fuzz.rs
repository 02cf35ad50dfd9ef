//! Request decoding without a daemon, for the fuzz targets (`fuzz/`, `cargo xtask fuzz`).
//!
//! [`Harness`] serves the API's request-carrying routes with the same extractors, the same
//! body limit and the same checks as [`super::router`], but with handlers that stop after
//! decoding (no authentication, no daemon): what an attacker controls in a request body,
//! query or path reaches exactly the code it reaches in the daemon.

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Request, header};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use super::{ApiError, CompleteBody, HaltBody, JournalQuery, ReadyQuery, ws::WsQuery};

/// The decoding routes and a runtime to call them on.
#[derive(Debug)]
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl Harness {
    /// The routes, with the default body limit (`api.max_body_bytes`).
    ///
    /// # Errors
    /// When the current-thread runtime cannot be built.
    pub fn new() -> std::io::Result<Self> {
        let limit = gf_core::Config::default().api.max_body_bytes;
        let router = Router::new()
            .route("/api/v1/halt", post(halt))
            .route("/api/v1/orders", post(place_order))
            .route(
                "/api/v1/recovery/checklist/{item}/complete",
                post(complete_item),
            )
            .route("/api/v1/journal", get(journal))
            .route("/readyz", get(readyz))
            .route("/ws/halt-status", get(ws_query))
            .route("/ws/dashboard", get(ws_query))
            .fallback(super::not_found)
            .method_not_allowed_fallback(super::method_not_allowed)
            .layer(DefaultBodyLimit::max(limit));
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        Ok(Self { runtime, router })
    }

    /// Sends one request. `None` when `method`, `uri` or `content_type` cannot make an
    /// HTTP request at all (the server never sees such a request).
    #[must_use]
    pub fn send(
        &self,
        method: &[u8],
        uri: &str,
        content_type: Option<&[u8]>,
        body: &[u8],
    ) -> Option<Answer> {
        let mut request = Request::builder()
            .method(Method::from_bytes(method).ok()?)
            .uri(uri);
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let request = request.body(Body::from(body.to_vec())).ok()?;
        let router = self.router.clone();
        self.runtime.block_on(async move {
            let response = router.oneshot(request).await.ok()?;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .ok()?;
            Some(Answer {
                status,
                body: body.to_vec(),
            })
        })
    }
}

async fn halt(ApiJson(body): ApiJson<HaltBody>) -> Result<axum::Json<Value>, ApiError> {
    let (source, reason) = super::halt_request(&body, "fuzz")?;
    Ok(axum::Json(json!({ "source": source, "reason": reason })))
}

/// `POST /api/v1/orders` up to the gateway's own checks of the request
/// ([`crate::gateway::to_order`]): what an attacker controls in an order body reaches the
/// code it reaches in the daemon, and the order is built but placed nowhere.
async fn place_order(
    ApiJson(body): ApiJson<gf_api::PlaceOrder>,
) -> Result<axum::Json<Value>, ApiError> {
    match crate::gateway::to_order(&body) {
        Ok(order) => Ok(axum::Json(json!({
            "client_order_id": body.client_order_id,
            "qty": order.qty.to_string(),
        }))),
        Err(crate::gateway::Refusal::Invalid { field, message }) => {
            Err(ApiError::invalid_field(field, message))
        }
        Err(other) => Err(ApiError::internal(format!(
            "to_order refused with {}, not a field: {other}",
            other.code()
        ))),
    }
}

async fn complete_item(
    ApiPath(item): ApiPath<String>,
    OptionalJson(body): OptionalJson<CompleteBody>,
) -> Result<axum::Json<Value>, ApiError> {
    super::check_complete(&body)?;
    Ok(axum::Json(json!({ "item": item, "note": body.note })))
}

async fn journal(ApiQuery(q): ApiQuery<JournalQuery>) -> axum::Json<Value> {
    axum::Json(json!({ "limit": super::journal_limit(&q) }))
}

async fn readyz(ApiQuery(q): ApiQuery<ReadyQuery>) -> axum::Json<Value> {
    axum::Json(json!({ "verbose": q.verbose.is_some() }))
}

async fn ws_query(ApiQuery(_): ApiQuery<WsQuery>) -> axum::Json<Value> {
    axum::Json(json!({ "decoded": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harness() -> Harness {
        Harness::new().unwrap()
    }

    fn code(answer: &Answer) -> String {
        let v: Value = serde_json::from_slice(&answer.body).unwrap();
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_halt_body_decodes_as_the_route_decodes_it() {
        let h = harness();
        let ok = h
            .send(
                b"POST",
                "/api/v1/halt",
                Some(b"application/json"),
                br#"{"reason":"  drill  ","source":"console"}"#,
            )
            .unwrap();
        assert_eq!(ok.status, 200);
        let v: Value = serde_json::from_slice(&ok.body).unwrap();
        assert_eq!(v["reason"], "drill");
        let bad = h
            .send(
                b"POST",
                "/api/v1/halt",
                Some(b"application/json"),
                br#"{"reason":"x","source":"cron"}"#,
            )
            .unwrap();
        assert_eq!(bad.status, 400);
        let no_type = h
            .send(b"POST", "/api/v1/halt", None, br#"{"reason":"x"}"#)
            .unwrap();
        assert_eq!(no_type.status, 415);
        assert_eq!(code(&no_type), "unsupported_media_type");
    }

    #[test]
    fn an_order_body_decodes_as_the_route_decodes_it() {
        let h = harness();
        let post = |body: &[u8]| {
            h.send(b"POST", "/api/v1/orders", Some(b"application/json"), body)
                .unwrap()
        };
        let ok = post(
            br#"{"client_order_id":"s1-1","pair":"XRP/USD","side":"buy","type":"limit","qty":"10","limit_price":"0.5"}"#,
        );
        assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
        let number = post(
            br#"{"client_order_id":"s1-1","pair":"XRP/USD","side":"buy","type":"market","qty":10}"#,
        );
        assert_eq!(code(&number), "invalid_body");
        let zero = post(
            br#"{"client_order_id":"s1-1","pair":"XRP/USD","side":"buy","type":"market","qty":"0"}"#,
        );
        assert_eq!(zero.status, 400);
        assert_eq!(code(&zero), "invalid_field");
        let v: Value = serde_json::from_slice(&zero.body).unwrap();
        assert_eq!(v["error"]["detail"]["field"], "qty");
        let spaced = post(
            br#"{"client_order_id":"s1 1","pair":"XRP/USD","side":"buy","type":"market","qty":"1"}"#,
        );
        assert_eq!(code(&spaced), "invalid_field");
    }

    #[test]
    fn a_note_query_and_path_decode_as_the_routes_decode_them() {
        let h = harness();
        let empty = h
            .send(
                b"POST",
                "/api/v1/recovery/checklist/a%20b/complete",
                None,
                b" ",
            )
            .unwrap();
        assert_eq!(empty.status, 200);
        let v: Value = serde_json::from_slice(&empty.body).unwrap();
        assert_eq!(v["item"], "a b");
        let control = h
            .send(
                b"POST",
                "/api/v1/recovery/checklist/x/complete",
                None,
                br#"{"note":"a\u0007b"}"#,
            )
            .unwrap();
        assert_eq!(control.status, 400);
        let limit = h
            .send(b"GET", "/api/v1/journal?limit=5000", None, b"")
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&limit.body).unwrap()["limit"],
            1000
        );
        let bad = h
            .send(b"GET", "/api/v1/journal?limit=-1", None, b"")
            .unwrap();
        assert_eq!(code(&bad), "invalid_query");
    }
}
