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

/// A decimal string (`"0.5"`): money and quantities travel as text, never as JSON numbers.
const DECIMAL: &str = "^[0-9]+(\\.[0-9]+)?$";

/// The largest `client_order_id`, characters (printable ASCII).
const MAX_CLIENT_ORDER_ID: u64 = 64;

fn error_response(what: &str) -> Value {
    json!({ "$ref": "#/components/responses/Error", "description": what })
}

/// An operation of the order gateway: `role` may call it; `also` lists the other roles that
/// may (reads that show every trader's orders to viewers and up).
fn trader_op(summary: &str, also: &[&str], ok: &str, schema: &str) -> Value {
    let mut o = op(summary, Some("trader"), ok);
    let mut roles = vec!["trader"];
    roles.extend_from_slice(also);
    o["x-roles"] = json!(roles);
    o["responses"][ok]["content"]["application/json"]["schema"] =
        json!({ "$ref": format!("#/components/schemas/{schema}") });
    o
}

fn client_order_id_param() -> Value {
    json!([{ "name": "client_order_id", "in": "path", "required": true,
        "description": "the trader's id of the order (its idempotency key)",
        "schema": { "type": "string", "minLength": 1, "maxLength": MAX_CLIENT_ORDER_ID } }])
}

/// `POST /api/v1/orders`.
fn place_order() -> Value {
    let mut o = trader_op(
        "Place an order through the gate and the pre-trade checks (idempotent per client_order_id)",
        &[],
        "201",
        "PlaceOrderReply",
    );
    o["description"] = json!(
        "201 for a new order. A retry with the same client_order_id and the same body answers \
         200 with `replayed: true` and the order as it stands: no second order is placed. The \
         refusals halted, exchange_*, risk_refused and exchange_rejected are final for the \
         client_order_id (a retry answers the same error with `detail.replayed: true`); 400, \
         401, 403, 409 idempotency_conflict, 429 and 503 are not recorded under the id. Every \
         answer of the gateway (all but 401, 403 forbidden, 400 invalid_json/invalid_body, \
         413 and 415) carries `Server-Timing: gateway;dur=<milliseconds>`."
    );
    o["requestBody"] = json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PlaceOrder" } } }
    });
    let timing = json!({ "Server-Timing": { "$ref": "#/components/headers/ServerTiming" } });
    o["responses"]["201"]["headers"] = timing.clone();
    o["responses"]["200"] = json!({
        "description": "a retry with the same client_order_id and body: `replayed: true`, no second order",
        "headers": timing,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PlaceOrderReply" } } }
    });
    o["responses"]["409"] = error_response(
        "halted (detail: halt_id, source, reason, state), exchange_cancel_only, exchange_post_only, \
         exchange_maintenance, exchange_unknown (detail: exchange_status), idempotency_conflict \
         (detail.fields)",
    );
    o["responses"]["413"] = error_response("payload_too_large");
    o["responses"]["415"] = error_response("unsupported_media_type");
    o["responses"]["422"] = error_response(
        "risk_refused: detail.check is the pre-trade check that failed, with its limit and value",
    );
    o["responses"]["429"] = json!({
        "description": "rate_limited: the token's order rate or open-order count; detail: limit, max, retry_after_secs",
        "headers": { "Retry-After": { "$ref": "#/components/headers/RetryAfter" } },
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    });
    o["responses"]["502"] =
        error_response("exchange_rejected: the exchange refused it; detail.reason");
    o["responses"]["503"] = error_response(
        "not_journaled: the journal could not record it; nothing was placed (retry allowed)",
    );
    o
}

/// The gateway's routes.
fn gateway_paths(paths: &mut serde_json::Map<String, Value>) {
    let mut list = trader_op(
        "Gateway orders: a trader's own, newest first; viewers and up see every trader's and the exchange's open orders",
        &["viewer", "operator", "admin"],
        "200",
        "OrdersReply",
    );
    list["parameters"] = json!([{ "name": "status", "in": "query", "required": false,
        "schema": { "type": "string", "enum": ["open", "closed", "all", "pending",
            "partially_filled", "filled", "cancelled", "rejected", "expired"] } }]);
    let mut cancel_all = trader_op(
        "Cancel every open order of this trader (never another's)",
        &[],
        "200",
        "CancelReply",
    );
    cancel_all["responses"]["503"] = error_response("unavailable: the exchange did not answer");
    paths.insert(
        "/api/v1/orders".into(),
        json!({ "get": list, "post": place_order(), "delete": cancel_all }),
    );

    let mut one = trader_op("One of this trader's orders", &[], "200", "PlaceOrderReply");
    one["responses"]["200"]["content"]["application/json"]["schema"] = json!({
        "type": "object", "required": ["order"],
        "properties": { "order": { "$ref": "#/components/schemas/GatewayOrder" } }
    });
    one["parameters"] = client_order_id_param();
    one["responses"]["404"] = error_response("unknown_order");
    let mut cancel = trader_op(
        "Cancel one of this trader's orders",
        &[],
        "200",
        "CancelReply",
    );
    cancel["parameters"] = client_order_id_param();
    cancel["responses"]["404"] = error_response("unknown_order");
    cancel["responses"]["409"] = error_response("order_closed: the order is already terminal");
    cancel["responses"]["503"] = error_response("unavailable: the exchange did not answer");
    paths.insert(
        "/api/v1/orders/{client_order_id}".into(),
        json!({ "get": one, "delete": cancel }),
    );

    let mut fills = trader_op(
        "Executions of gateway orders after `since`, oldest first: a trader's own; viewers and up every trader's",
        &["viewer", "operator", "admin"],
        "200",
        "FillsReply",
    );
    fills["parameters"] = json!([{ "name": "since", "in": "query", "required": false,
        "description": "RFC 3339; only fills executed after it",
        "schema": { "type": "string", "format": "date-time" } }]);
    paths.insert("/api/v1/fills".into(), json!({ "get": fills }));

    let mut ws = op(
        "WebSocket: the trader's order updates, fills, halts and resumes (OrderFeedFrame); `?since=<seq>` resumes after the last frame processed",
        Some("trader"),
        "101",
    );
    ws["x-roles"] = json!(["trader"]);
    ws["x-frame"] = json!({ "$ref": "#/components/schemas/OrderFeedFrame" });
    ws["parameters"] = json!([
        { "name": "since", "in": "query", "required": false,
          "description": "the last seq processed: every kept frame after it is sent, in order, then live frames; a `gap` frame when they are no longer kept",
          "schema": { "type": "integer", "minimum": 0 } },
        { "name": "epoch", "in": "query", "required": false,
          "description": "the epoch of the hello frame the client saw last: with another epoch (the daemon restarted) `since` names no frame and a `gap` frame comes first",
          "schema": { "type": "string" } },
        { "name": "token", "in": "query", "required": false,
          "description": "the bearer token, for clients that cannot set `Authorization`",
          "schema": { "type": "string" } }
    ]);
    paths.insert("/ws/orders".into(), json!({ "get": ws }));
}

/// The gateway's wire types (`gf_api`): money and quantities are decimal strings.
fn gateway_schemas() -> Value {
    let decimal = json!({ "type": "string", "pattern": DECIMAL });
    let opt_decimal = json!({ "type": ["string", "null"], "pattern": DECIMAL });
    let opt_string = json!({ "type": ["string", "null"] });
    let opt_time = json!({ "type": ["string", "null"], "format": "date-time" });
    let order = json!({
        "type": "object",
        "properties": {
            "client_order_id": { "type": "string" },
            "trader": { "type": "string", "description": "the token name that placed it" },
            "exchange_client_order_id": { "type": "string", "description": "the daemon's id at the exchange (`cl_ord_id`)" },
            "order_id": opt_string,
            "pair": { "type": "string" },
            "side": { "type": "string", "enum": ["buy", "sell"] },
            "type": { "type": "string", "enum": ["market", "limit"] },
            "qty": decimal,
            "limit_price": opt_decimal,
            "time_in_force": { "type": "string", "enum": ["gtc", "ioc"] },
            "post_only": { "type": "boolean" },
            "status": { "type": "string", "enum": ["pending", "open", "partially_filled",
                "filled", "cancelled", "rejected", "expired"] },
            "filled_qty": decimal,
            "avg_fill_price": opt_decimal,
            "fees": decimal,
            "reason": opt_string,
            "created_at": opt_time,
            "updated_at": opt_time
        }
    });
    let fill = json!({
        "type": "object",
        "properties": {
            "client_order_id": { "type": "string" },
            "trader": { "type": "string" },
            "trade_id": { "type": "string" },
            "order_id": { "type": "string" },
            "pair": { "type": "string" },
            "side": { "type": "string", "enum": ["buy", "sell"] },
            "qty": decimal,
            "price": decimal,
            "fee": decimal,
            "ts": opt_time
        }
    });
    let seq = json!({ "type": "integer", "minimum": 1 });
    let frame = |kind: &str, props: Value| -> Value {
        let mut p = props;
        p["type"] = json!({ "const": kind });
        json!({ "type": "object", "required": ["type"], "properties": p })
    };
    json!({
        "PlaceOrder": {
            "type": "object",
            "additionalProperties": false,
            "required": ["client_order_id", "pair", "side", "type", "qty"],
            "description": "Strict: an unknown field, a JSON number for qty or limit_price, or a missing field is refused (400 invalid_body). market: no limit_price, time_in_force absent or ioc, post_only false. limit: limit_price > 0; time_in_force gtc (default) or ioc; post_only only with gtc. A pair the daemon does not trade: 422 risk_refused (check unknown_pair).",
            "properties": {
                "client_order_id": {
                    "type": "string", "minLength": 1, "maxLength": MAX_CLIENT_ORDER_ID,
                    "pattern": "^[\\x21-\\x7e]+$",
                    "description": "the trader's idempotency key, unique per trader: printable ASCII, no spaces"
                },
                "pair": { "type": "string", "description": "BASE/QUOTE, one of the daemon's pairs", "examples": ["XRP/USD"] },
                "side": { "type": "string", "enum": ["buy", "sell"] },
                "type": { "type": "string", "enum": ["market", "limit"] },
                "qty": { "type": "string", "pattern": DECIMAL, "description": "base currency, > 0, a decimal string" },
                "limit_price": { "type": "string", "pattern": DECIMAL, "description": "limit orders only, > 0, a decimal string" },
                "time_in_force": { "type": "string", "enum": ["gtc", "ioc"] },
                "post_only": { "type": "boolean", "default": false }
            },
            "examples": [{ "client_order_id": "s1-0001", "pair": "XRP/USD", "side": "buy", "type": "limit",
                "qty": "100", "limit_price": "0.5", "time_in_force": "gtc", "post_only": false }]
        },
        "GatewayOrder": order,
        "PlaceOrderReply": {
            "type": "object", "required": ["order", "replayed"],
            "properties": {
                "order": { "$ref": "#/components/schemas/GatewayOrder" },
                "replayed": { "type": "boolean", "description": "true: a retry; no second order was placed" }
            }
        },
        "OrdersReply": {
            "type": "object", "required": ["orders"],
            "properties": {
                "orders": { "type": "array", "items": { "$ref": "#/components/schemas/GatewayOrder" } },
                "open": { "description": "viewers and up: every order open at the exchange, as it reports them" }
            }
        },
        "CancelReply": {
            "type": "object",
            "properties": {
                "cancelled": { "type": "array", "items": { "type": "string" } },
                "failed": { "type": "array", "items": { "type": "object",
                    "properties": { "client_order_id": { "type": "string" }, "reason": { "type": "string" } } } }
            }
        },
        "GatewayFill": fill,
        "FillsReply": {
            "type": "object",
            "properties": { "fills": { "type": "array", "items": { "$ref": "#/components/schemas/GatewayFill" } } }
        },
        "OrderFeedFrame": {
            "description": "A frame of WS /ws/orders: hello first, then order/fill/halt/resume with a per-trader seq (1, 2, 3, … within an epoch); gap when the frames after `since` are no longer kept.",
            "oneOf": [
                frame("hello", json!({ "epoch": { "type": "string" }, "head_seq": { "type": "integer" },
                    "oldest_seq": { "type": "integer" }, "status": { "type": "object" } })),
                frame("order", json!({ "seq": seq, "order": { "$ref": "#/components/schemas/GatewayOrder" } })),
                frame("fill", json!({ "seq": seq, "fill": { "$ref": "#/components/schemas/GatewayFill" } })),
                frame("halt", json!({ "seq": seq, "halt": { "type": "object" } })),
                frame("resume", json!({ "seq": seq, "resumed_by": opt_string })),
                frame("gap", json!({ "since": { "type": "integer" }, "oldest_seq": { "type": "integer" },
                    "head_seq": { "type": "integer" } }))
            ]
        }
    })
}

/// The fleet's routes (`[fleet]`, over NATS JetStream).
fn fleet_paths(paths: &mut serde_json::Map<String, Value>) {
    let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let mut status = op(
        "The fleet: the fleet halt record, every node's heartbeat (state, age, equity, drawdown, exposure) and the totals; `enabled: false` when the fleet is off",
        Some("viewer"),
        "200",
    );
    status["responses"]["200"]["content"]["application/json"]["schema"] = schema("FleetStatus");
    let mut halt = op(
        "Halt every node of the fleet (writes the fleet halt with compare-and-set) and this node now",
        Some("operator"),
        "201",
    );
    halt["description"] = json!(
        "201 when this request wrote the fleet halt; 200 when one was already in force (`created: \
         false`, nothing written). Every node watching the bucket closes its gate. When NATS does \
         not answer, this node halts anyway and the fleet write is retried until it lands: 503 \
         fleet_unreachable."
    );
    halt["requestBody"] = json!({
        "required": true,
        "content": { "application/json": { "schema": {
            "type": "object", "required": ["reason"], "additionalProperties": false,
            "properties": { "reason": {
                "type": "string", "minLength": 1, "maxLength": gf_halt::coordinator::MAX_REASON_CHARS,
                "pattern": NO_CONTROLS,
                "description": "characters, not bytes; journaled on every node; control characters are refused (400 invalid_field)"
            } }
        }}}
    });
    halt["responses"]["201"]["content"]["application/json"]["schema"] = schema("FleetHaltReply");
    halt["responses"]["200"] = json!({
        "description": "a fleet halt was already in force: `created: false`, nothing written",
        "content": { "application/json": { "schema": schema("FleetHaltReply") } }
    });
    halt["responses"]["409"] = error_response("fleet_disabled");
    halt["responses"]["503"] = error_response(
        "fleet_unreachable: this node is halted; the fleet halt is written as soon as NATS answers (detail: halt_id, durable)",
    );
    let mut resume = op(
        "Clear the fleet halt (two different administrators under fleet.two_person_rule); each node then still walks its own checklist",
        Some("admin"),
        "200",
    );
    resume["responses"]["200"]["content"]["application/json"]["schema"] =
        schema("FleetResumeReply");
    resume["responses"]["409"] = error_response("fleet_disabled");
    resume["responses"]["503"] =
        error_response("fleet_unreachable: NATS did not answer; nothing was cleared");
    paths.insert("/api/v1/fleet/status".into(), json!({ "get": status }));
    paths.insert("/api/v1/fleet/halt".into(), json!({ "post": halt }));
    paths.insert("/api/v1/fleet/resume".into(), json!({ "post": resume }));
}

/// The fleet's wire types (`gf_api::Fleet*`).
fn fleet_schemas() -> Value {
    let decimal = json!({ "type": "string", "description": "a decimal string" });
    let opt_time = json!({ "type": ["string", "null"], "format": "date-time" });
    let opt_string = json!({ "type": ["string", "null"] });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    json!({
        "FleetHaltRecord": {
            "type": "object",
            "description": "The fleet halt as the JetStream bucket gf_fleet_<name>_halt holds it (key `halt`).",
            "properties": {
                "active": { "type": "boolean", "description": "every node's gate is closed until an administrator clears it" },
                "reason": { "type": "string" },
                "by": { "type": "string", "description": "`operator:<name>` or `auto:<condition>`" },
                "node": { "type": "string", "description": "the node that wrote it" },
                "at": opt_time,
                "revision": { "type": "integer", "minimum": 0, "description": "the bucket's revision (compare-and-set)" },
                "two_person": { "type": "boolean", "description": "clearing it takes two different administrators (the writing node's fleet.two_person_rule)" },
                "approvals": { "type": "array", "items": { "type": "string" }, "description": "administrators who asked to clear it" },
                "cleared_by": opt_string,
                "cleared_at": opt_time
            }
        },
        "FleetHaltReply": {
            "type": "object", "required": ["record", "created"],
            "properties": {
                "record": { "$ref": "#/components/schemas/FleetHaltRecord" },
                "created": { "type": "boolean", "description": "false: a fleet halt was already in force" }
            }
        },
        "FleetResumeReply": {
            "type": "object", "required": ["record", "cleared"],
            "properties": {
                "record": { "$ref": "#/components/schemas/FleetHaltRecord" },
                "cleared": { "type": "boolean", "description": "cleared; each node still walks its own checklist" },
                "needs": { "type": ["string", "null"], "description": "what is still needed (the two-person rule's second administrator)" }
            }
        },
        "FleetNode": {
            "type": "object",
            "properties": {
                "node": { "type": "string" },
                "state": { "type": "string", "enum": ["running", "halting", "halted", "recovering", "unknown"] },
                "halt_reason": opt_string,
                "breached": strings,
                "equity": decimal,
                "peak_equity": decimal,
                "drawdown_pct": decimal,
                "exposure": decimal,
                "quote": { "type": "string" },
                "at": opt_time,
                "age_ms": { "type": "integer", "minimum": 0, "description": "since its heartbeat, by this node's clock" },
                "stale": { "type": "boolean", "description": "no heartbeat for longer than the partition timeout" }
            }
        },
        "FleetStatus": {
            "type": "object",
            "properties": {
                "enabled": { "type": "boolean", "description": "fleet.enabled; false: every other field is empty" },
                "fleet": { "type": "string" },
                "node": { "type": "string", "description": "this node's id" },
                "connected": { "type": "boolean", "description": "NATS answered within the partition timeout" },
                "last_contact_ms": { "type": ["integer", "null"], "minimum": 0 },
                "partition_halt_secs": { "type": "integer", "minimum": 0 },
                "halt": { "oneOf": [{ "$ref": "#/components/schemas/FleetHaltRecord" }, { "type": "null" }] },
                "nodes": { "type": "array", "items": { "$ref": "#/components/schemas/FleetNode" } },
                "total_equity": decimal,
                "total_drawdown_pct": decimal,
                "total_exposure": decimal
            }
        }
    })
}

/// Routes of viewers that a `trader` token may read too.
const TRADER_READS: &[&str] = &[
    "/api/v1/halt/status",
    "/api/v1/conditions",
    "/api/v1/whoami",
    "/ws/halt-status",
];

/// The roles at or above `role` in viewer < operator < admin.
fn roles_from(role: &str) -> Vec<&'static str> {
    let ladder = ["viewer", "operator", "admin"];
    let from = ladder
        .iter()
        .position(|r| *r == role)
        .unwrap_or(ladder.len());
    ladder[from..].to_vec()
}

/// The document. Every operation with a token names its least role (`x-role`) and every
/// role that may call it (`x-roles`).
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
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "Gal-Friday daemon API", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/api/v1/halt": { "post": halt },
            "/api/v1/resume": { "post": resume },
            "/api/v1/halt/status": { "get": op("Halt state, current halt, missing checklist items", Some("viewer"), "200") },
            "/api/v1/recovery/checklist": { "get": op("The recovery checklist", Some("viewer"), "200") },
            "/api/v1/recovery/checklist/{item}/complete": { "post": complete },
            "/api/v1/positions": { "get": op("Positions, P&L, drawdown, statistics", Some("viewer"), "200") },
            "/api/v1/conditions": { "get": op("Halt conditions: value, threshold, triggered", Some("viewer"), "200") },
            "/api/v1/alerts": { "get": op("Firing alerts, silences, recent deliveries", Some("viewer"), "200") },
            "/api/v1/journal": { "get": op("Recent journal records (?limit=, max 1000)", Some("viewer"), "200") },
            "/api/v1/secrets/rotate": { "post": op("Rotate exchange credentials now (tested before use)", Some("admin"), "200") },
            "/api/v1/whoami": { "get": op("The token's operator name and role", Some("viewer"), "200") },
            "/api/v1/openapi.json": { "get": op("This document", None, "200") },
            "/dashboard": { "get": op("The dashboard page (it asks for a token itself)", None, "200") },
            "/livez": { "get": op("The process is alive", None, "200") },
            "/readyz": { "get": readyz },
            "/metrics": { "get": op("Prometheus text exposition (viewer token unless api.public_metrics = true)", Some("viewer"), "200") },
            "/ws/halt-status": { "get": op("WebSocket: status on connect and on every halt-family event", Some("viewer"), "101") },
            "/ws/dashboard": { "get": op("WebSocket: a dashboard frame every second", Some("viewer"), "101") }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "headers": {
                "RetryAfter": {
                    "description": "seconds until the token may place an order again",
                    "required": true,
                    "schema": { "type": "integer", "minimum": 1 }
                },
                "ServerTiming": {
                    "description": "`gateway;dur=<milliseconds>`: the time the daemon spent on the order",
                    "schema": { "type": "string", "pattern": "^gateway;dur=[0-9]+(\\.[0-9]+)?$" }
                }
            },
            "responses": {
                "Error": {
                    "description": "error; `code` is one of x-error-codes",
                    "x-error-codes": codes,
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"],
                        "properties": {
                            "code": { "type": "string" },
                            "message": { "type": "string" },
                            "detail": {}
                        }
                    }}
                }
            }
        }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        gateway_paths(paths);
        fleet_paths(paths);
        for (path, item) in paths.iter_mut() {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for o in ops.values_mut() {
                if o.get("x-roles").is_none()
                    && let Some(role) = o["x-role"].as_str()
                {
                    let mut roles = roles_from(role);
                    if TRADER_READS.contains(&path.as_str()) {
                        roles.push("trader");
                    }
                    o["x-roles"] = json!(roles);
                }
            }
        }
    }
    if let (Some(all), Value::Object(gateway)) = (
        doc["components"]["schemas"].as_object_mut(),
        gateway_schemas(),
    ) {
        all.extend(gateway);
    }
    if let (Some(all), Value::Object(fleet)) = (
        doc["components"]["schemas"].as_object_mut(),
        fleet_schemas(),
    ) {
        all.extend(fleet);
    }
    doc
}

pub(super) async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(path, method)` of every `.route(…)` in [`super::super::router`], read from its
    /// source so that a route added there without a line here fails.
    fn router_routes() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let start = src.find("pub fn router(").expect("router() in api/mod.rs");
        let body = &src[start..];
        let end = body
            .find(".fallback(")
            .expect("router() ends with .fallback");
        let body = &body[..end];
        assert!(
            !body.contains(".merge(") && !body.contains(".nest("),
            "router() merges or nests routers this test cannot see; list their routes here"
        );
        let mut routes = BTreeSet::new();
        for chunk in body.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).expect("a route's path literal");
            let mut found = false;
            for method in ["get", "post", "delete", "put", "patch"] {
                let needle = format!("{method}(");
                let hit = chunk.match_indices(&needle).any(|(i, _)| {
                    !chunk[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    routes.insert((path.to_owned(), method.to_owned()));
                    found = true;
                }
            }
            assert!(found, "no method found for the route {path}");
        }
        routes
    }

    fn document_routes(doc: &Value) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                routes.insert((path.clone(), method.clone()));
            }
        }
        routes
    }

    #[test]
    fn every_route_of_the_router_is_documented_and_nothing_else() {
        let doc = spec();
        let router = router_routes();
        let documented = document_routes(&doc);
        assert!(router.len() >= 19, "{router:?}");
        let missing: Vec<_> = router.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes not in the document: {missing:?}"
        );
        let extra: Vec<_> = documented.difference(&router).collect();
        assert!(
            extra.is_empty(),
            "documented routes the router lacks: {extra:?}"
        );
    }

    #[test]
    fn every_operation_says_who_may_call_it() {
        let doc = spec();
        for (path, method) in document_routes(&doc) {
            let o = &doc["paths"][&path][&method];
            let security = o["security"].as_array().unwrap();
            if security.iter().any(|s| s.get("bearer").is_some()) && path != "/readyz" {
                let role = o["x-role"].as_str().unwrap_or_default();
                let roles: Vec<&str> = o["x-roles"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path}: no x-roles"))
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(roles.contains(&role), "{method} {path}: {role} {roles:?}");
            }
        }
        let roles = |path: &str, method: &str| doc["paths"][path][method]["x-roles"].clone();
        assert_eq!(roles("/api/v1/orders", "post"), json!(["trader"]));
        assert_eq!(roles("/api/v1/orders", "delete"), json!(["trader"]));
        assert_eq!(
            roles("/api/v1/orders/{client_order_id}", "delete"),
            json!(["trader"])
        );
        assert_eq!(roles("/ws/orders", "get"), json!(["trader"]));
        assert_eq!(
            roles("/api/v1/orders", "get"),
            json!(["trader", "viewer", "operator", "admin"])
        );
        // A trader may watch the halt state but never halt, resume or read positions.
        assert_eq!(
            roles("/api/v1/halt/status", "get"),
            json!(["viewer", "operator", "admin", "trader"])
        );
        assert_eq!(roles("/api/v1/halt", "post"), json!(["operator", "admin"]));
        assert_eq!(
            roles("/api/v1/positions", "get"),
            json!(["viewer", "operator", "admin"])
        );
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, v: &Value, refs: &mut usize) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r}"));
                        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
                        *refs += 1;
                    }
                    for child in map.values() {
                        walk(doc, child, refs);
                    }
                }
                Value::Array(items) => {
                    for child in items {
                        walk(doc, child, refs);
                    }
                }
                _ => {}
            }
        }
        let doc = spec();
        let mut refs = 0;
        walk(&doc, &doc, &mut refs);
        assert!(refs > 50, "{refs}");
    }

    #[test]
    fn the_place_order_schema_is_the_wire_type() {
        let doc = spec();
        let schema = &doc["components"]["schemas"]["PlaceOrder"];
        assert_eq!(schema["additionalProperties"], false);
        // Its example is an order the route decodes.
        let example = schema["examples"][0].clone();
        let decoded: gf_api::PlaceOrder = serde_json::from_value(example.clone()).unwrap();
        assert_eq!(decoded.qty.to_string(), "100");
        // The same fields as the wire type, every one of them …
        let documented: BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let wire: BTreeSet<String> = serde_json::to_value(&decoded)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(documented, wire);
        // … required exactly when the wire type cannot do without it.
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
        for field in &documented {
            let mut without = example.clone();
            without.as_object_mut().unwrap().remove(field);
            let decodes = serde_json::from_value::<gf_api::PlaceOrder>(without).is_ok();
            assert_eq!(!decodes, required.contains(field), "{field}");
        }
        // Decimal strings only: a JSON number is refused, as the schema's type says.
        for field in ["qty", "limit_price"] {
            assert_eq!(schema["properties"][field]["type"], "string", "{field}");
            let mut number = example.clone();
            number[field] = json!(1.5);
            assert!(serde_json::from_value::<gf_api::PlaceOrder>(number).is_err());
        }
        let mut unknown = example;
        unknown["leverage"] = json!("2");
        assert!(serde_json::from_value::<gf_api::PlaceOrder>(unknown).is_err());
    }

    #[test]
    fn placing_documents_its_refusals_the_retry_after_and_the_timing() {
        let doc = spec();
        let post = &doc["paths"]["/api/v1/orders"]["post"];
        for status in [
            "200", "201", "400", "401", "403", "409", "422", "429", "502", "503",
        ] {
            assert!(post["responses"][status].is_object(), "{status}");
        }
        assert_eq!(
            post["responses"]["429"]["headers"]["Retry-After"]["$ref"],
            "#/components/headers/RetryAfter"
        );
        assert_eq!(
            post["responses"]["201"]["headers"]["Server-Timing"]["$ref"],
            "#/components/headers/ServerTiming"
        );
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/PlaceOrder"
        );
        let codes: BTreeSet<&str> = CODES.iter().map(|(code, _, _)| *code).collect();
        for (code, status) in [
            ("halted", 409),
            ("idempotency_conflict", 409),
            ("exchange_cancel_only", 409),
            ("exchange_post_only", 409),
            ("exchange_maintenance", 409),
            ("exchange_unknown", 409),
            ("order_closed", 409),
            ("unknown_order", 404),
            ("risk_refused", 422),
            ("rate_limited", 429),
            ("exchange_rejected", 502),
            ("not_journaled", 503),
        ] {
            assert!(codes.contains(code), "{code} missing from CODES");
            let listed = doc["components"]["responses"]["Error"]["x-error-codes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["code"] == code && c["status"] == status);
            assert!(listed, "{code} {status}");
        }
    }

    #[test]
    fn the_fleet_routes_name_their_roles_errors_and_wire_types() {
        let doc = spec();
        let path = |p: &str, m: &str| doc["paths"][p][m].clone();
        assert_eq!(
            path("/api/v1/fleet/status", "get")["x-roles"],
            json!(["viewer", "operator", "admin"])
        );
        assert_eq!(
            path("/api/v1/fleet/halt", "post")["x-roles"],
            json!(["operator", "admin"])
        );
        assert_eq!(
            path("/api/v1/fleet/resume", "post")["x-roles"],
            json!(["admin"])
        );
        let halt = path("/api/v1/fleet/halt", "post");
        for status in ["200", "201", "409", "503"] {
            assert!(halt["responses"][status].is_object(), "{status}");
        }
        let codes = doc["components"]["responses"]["Error"]["x-error-codes"]
            .as_array()
            .unwrap()
            .clone();
        for (code, status) in [("fleet_disabled", 409), ("fleet_unreachable", 503)] {
            assert!(
                codes
                    .iter()
                    .any(|c| c["code"] == code && c["status"] == status),
                "{code} {status}"
            );
        }
        // The schema names every field of the wire type, no more.
        let wire = serde_json::to_value(gf_api::FleetStatus {
            halt: Some(gf_api::FleetHaltRecord::default()),
            nodes: vec![gf_api::FleetNode::default()],
            ..gf_api::FleetStatus::default()
        })
        .unwrap();
        for (schema, value) in [
            ("FleetStatus", &wire),
            ("FleetHaltRecord", &wire["halt"]),
            ("FleetNode", &wire["nodes"][0]),
        ] {
            let documented: BTreeSet<&String> = doc["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            let fields: BTreeSet<&String> = value.as_object().unwrap().keys().collect();
            assert_eq!(documented, fields, "{schema}");
        }
    }

    #[test]
    fn docs_api_md_lists_every_error_code() {
        let docs = include_str!("../../../../docs/api.md");
        for (code, status, _) in CODES {
            let row = docs
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&format!("`{code}`")))
                .unwrap_or_else(|| panic!("docs/api.md has no row for `{code}`"));
            assert!(row.contains(&format!("| {status} |")), "{code}: {row}");
        }
    }
}
