//! Test fixtures: console states in each halt state, built by feeding the daemon's JSON
//! shapes (with frozen timestamps) through [`update`], as the live console would.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::app::{FeedEvent, Msg, Refresh, State, update};
use crate::model::{ChecklistReply, Frame, HaltState, Identity, JournalRecord, Status};

/// The frozen wall clock of every fixture.
pub const NOW: &str = "2026-03-02T14:05:00Z";

/// [`NOW`] parsed.
pub fn now() -> DateTime<Utc> {
    NOW.parse().unwrap()
}

fn item(id: &str, title: &str, added_for: Option<&str>, done: Option<(&str, &str)>) -> Value {
    json!({
        "id": id,
        "title": title,
        "added_for": added_for,
        "completed_by": done.map(|(by, _)| by),
        "completed_at": done.map(|_| "2026-03-02T14:01:30Z"),
        "note": done.map(|(_, note)| note),
    })
}

/// The checklist JSON of halt `halt_id` with the first `done` items completed.
pub fn checklist_json(halt_id: u64, done: usize) -> Value {
    let specs = [
        ("review_halt_reason", "Review the halt reason", None),
        ("review_market_conditions", "Review market conditions", None),
        ("review_positions_pnl", "Review positions and P&L", None),
        ("check_api_connectivity", "Check API connectivity", None),
        ("check_account_balance", "Check the account balance", None),
        ("review_risk_parameters", "Review risk parameters", None),
        (
            "confirm_market_data_restored",
            "Confirm the market data feed is restored",
            Some("market_data_staleness"),
        ),
        ("confirm_resume", "Confirm resume", None),
    ];
    let items: Vec<Value> = specs
        .iter()
        .enumerate()
        .map(|(i, (id, title, why))| {
            let d = (i < done).then_some(("alice", "checked, fine"));
            item(id, title, *why, d)
        })
        .collect();
    json!({ "halt_id": halt_id, "items": items })
}

fn missing(checklist: &Value) -> Vec<String> {
    checklist["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["completed_by"].is_null())
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The status JSON of `state`.
pub fn status_json(state: HaltState, checklist: &Value) -> Value {
    let (id, source, reason) = if state == HaltState::Running {
        (2, "auto:max_daily_drawdown", "daily drawdown 2.31% > 2%")
    } else {
        (3, "console:alice", "XRP/USD feed looks frozen")
    };
    json!({
        "state": state.to_string(),
        "gate_open": state == HaltState::Running,
        "halt": {
            "id": id,
            "source": source,
            "reason": reason,
            "behaviour": "cancel_orders",
            "triggered_at": "2026-03-02T13:58:20Z",
            "conditions": [],
            "later_triggers": [],
            "closure": null,
        },
        "checklist_missing": missing(checklist),
        "resumed_by": (state == HaltState::Running).then_some("bob"),
        "journal_problem": null,
    })
}

/// A gateway order: `fields` over a resting XRP/USD limit buy of `strat-a`.
fn gateway_order(fields: &Value) -> Value {
    let mut order = json!({
        "client_order_id": "s1", "trader": "strat-a", "exchange_client_order_id": "gw-1",
        "order_id": null, "pair": "XRP/USD", "side": "buy", "type": "limit", "qty": "10",
        "limit_price": "2.10", "time_in_force": "gtc", "post_only": false, "status": "open",
        "filled_qty": "0", "avg_fill_price": null, "fees": "0", "reason": null,
        "created_at": "2026-03-02T14:04:58Z", "updated_at": "2026-03-02T14:04:58Z",
    });
    for (k, v) in fields.as_object().unwrap() {
        order[k] = v.clone();
    }
    order
}

/// The dashboard frame's `gateway`: two traders and their five newest orders, one in
/// each state the console colours differently.
pub fn gateway_json() -> Value {
    json!({
        "enabled": true,
        "traders": [
            {"name": "py-momo", "open": 0, "accepted": 1, "refused": 0},
            {"name": "strat-a", "open": 2, "accepted": 3, "refused": 1},
        ],
        "recent": [
            gateway_order(&json!({"client_order_id": "s1-0005"})),
            gateway_order(&json!({
                "client_order_id": "s1-0004", "side": "sell", "qty": "500",
                "limit_price": "2.90", "status": "rejected",
                "reason": "risk_refused: max_order_notional (notional 1450 > max 1000)",
                "created_at": "2026-03-02T14:04:40Z",
            })),
            gateway_order(&json!({
                "client_order_id": "m-17", "trader": "py-momo", "pair": "DOGE/USD",
                "type": "market", "qty": "25", "limit_price": null, "time_in_force": "ioc",
                "status": "filled", "filled_qty": "25", "created_at": "2026-03-02T14:03:10Z",
            })),
            gateway_order(&json!({
                "client_order_id": "s1-0002", "qty": "20", "limit_price": "2.05",
                "status": "partially_filled", "filled_qty": "8",
                "created_at": "2026-03-02T14:02:00Z",
            })),
            gateway_order(&json!({
                "client_order_id": "s1-0001", "limit_price": "2.00", "status": "cancelled",
                "reason": "cancelled by the trader", "created_at": "2026-03-02T14:01:00Z",
            })),
        ],
    })
}

/// The dashboard frame's `fleet`: a fleet halt in force (one clear approval of two) over
/// three nodes — this one halted, one halting, one stale and still running.
pub fn fleet_json() -> Value {
    let node = |id: &str, state: &str, equity: &str, dd: &str, exposure: &str, age: u64| {
        json!({"node": id, "state": state, "equity": equity, "peak_equity": equity,
               "drawdown_pct": dd, "exposure": exposure, "quote": "USD",
               "at": "2026-03-02T14:04:59Z", "age_ms": age, "stale": age > 10_000,
               "breached": []})
    };
    let mut alpha = node("alpha", "halted", "10123.46", "3.1", "1520.5", 240);
    alpha["breached"] = json!(["fleet_halt"]);
    alpha["halt_reason"] = json!("fleet halt: desk-wide drawdown drill");
    let beta = node("beta", "halting", "20500.25", "0.4", "0", 1_250);
    let mut gamma = node("gamma-3", "running", "9000", "12.25", "100.5", 75_000);
    gamma["breached"] = json!(["max_total_drawdown"]);
    json!({
        "enabled": true,
        "fleet": "prod",
        "node": "alpha",
        "connected": true,
        "last_contact_ms": 240,
        "partition_halt_secs": 10,
        "halt": {
            "active": true,
            "reason": "desk-wide drawdown drill",
            "by": "operator:alice",
            "node": "alpha",
            "at": "2026-03-02T14:03:00Z",
            "revision": 7,
            "approvals": ["bob"],
        },
        "nodes": [alpha, beta, gamma],
        "total_equity": "39623.71",
        "total_drawdown_pct": "3.9",
        "total_exposure": "1621",
        "a_field_from_the_future": true,
    })
}

/// A dashboard frame: conditions (staleness breached unless `clear`), two positions, an
/// alert, the order gateway.
pub fn dashboard_json(state: HaltState, checklist: &Value, clear: bool) -> Value {
    let cond = |id: &str, value: &str, threshold: &str, triggered: bool| {
        json!({"id": id, "value": value, "threshold": threshold, "triggered": triggered,
               "updated_at": "2026-03-02T14:04:59Z"})
    };
    let stale = if clear { "1.2" } else { "75" };
    json!({
        "type": "dashboard",
        "snapshot": {
            "ts": "2026-03-02T14:04:59Z",
            "halt_state": state.to_string(),
            "conditions": [
                cond("max_total_drawdown", "3.1", "15", false),
                cond("max_daily_drawdown", "0.82", "2", false),
                cond("max_consecutive_losses", "2", "5", false),
                cond("market_volatility", "3.9", "5", false),
                cond("api_error_rate", "0", "10", false),
                cond("market_data_staleness", stale, "60", !clear),
                cond("position_risk", "0.41", "1", false),
            ],
            "portfolio": {
                "equity": "10123.456",
                "total_drawdown_pct": "3.1",
                "daily_drawdown_pct": "0.82",
                "exposure": "1520.5",
                "unrealised_pnl": "-12.345",
                "daily_pnl": "23.4",
                "positions": [
                    {"pair": "XRP/USD", "qty": "1200", "avg_entry": "0.6123", "mark": "0.6050",
                     "realised_pnl": "5", "unrealised_pnl": "-8.76", "fees": "0.4"},
                    {"pair": "DOGE/USD", "qty": "3000", "avg_entry": "0.1510", "mark": "0.1498",
                     "realised_pnl": "0", "unrealised_pnl": "-3.585", "fees": "0.1"},
                ],
            },
            "stats": null,
            "latency": {},
            "alerts": [
                {"key": "k", "rule": "market_data_stale", "severity": "critical",
                 "summary": "no XRP/USD book update for 75s", "labels": {},
                 "started_at": "2026-03-02T13:58:20Z", "last_notified": null,
                 "suppressed": null, "awaiting_group": false},
            ],
            "health": null,
            "system": null,
            "a_field_from_the_future": [1, 2, 3],
        },
        "status": status_json(state, checklist),
        "checklist": checklist,
        "portfolio": {"realised_pnl": "41.5"},
        "gateway": gateway_json(),
    })
}

/// Ten journal records, newest first.
pub fn journal() -> Vec<JournalRecord> {
    let kinds = [
        (
            "checklist_step",
            "alice",
            json!({"item": "review_positions_pnl"}),
        ),
        (
            "checklist_step",
            "alice",
            json!({"item": "review_market_conditions"}),
        ),
        (
            "checklist_step",
            "alice",
            json!({"item": "review_halt_reason"}),
        ),
        (
            "state_changed",
            "alice",
            json!({"from": "halted", "to": "recovering"}),
        ),
        ("closure_result", "system", json!({"cancelled": 2})),
        (
            "state_changed",
            "system",
            json!({"from": "halting", "to": "halted"}),
        ),
        (
            "halt_triggered",
            "console:alice",
            json!({"reason": "XRP/USD feed looks frozen"}),
        ),
        (
            "state_changed",
            "bob",
            json!({"from": "recovering", "to": "running"}),
        ),
        (
            "api_halt",
            "alice",
            Value::String("plain text detail".into()),
        ),
        ("restored", "system", Value::Null),
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, (kind, actor, detail))| JournalRecord {
            id: 40 - i64::try_from(i).unwrap(),
            ts: Some(now() - chrono::TimeDelta::seconds(30 * i64::try_from(i).unwrap())),
            kind: kind.into(),
            actor: actor.into(),
            detail,
            ..JournalRecord::default()
        })
        .collect()
}

/// A connected console in `state`, as after a refresh and a dashboard frame.
pub fn console(state: HaltState) -> State {
    let done = match state {
        HaltState::Running => 8,
        HaltState::Recovering => 3,
        _ => 0,
    };
    let halt_id = if state == HaltState::Running { 2 } else { 3 };
    let list = checklist_json(halt_id, done);
    let status: Status = serde_json::from_value(status_json(state, &list)).unwrap();
    let mut s = State::new("http://127.0.0.1:8080", now());
    let _ = update(
        &mut s,
        Msg::Feed(FeedEvent::Connected(crate::app::Channel::HaltStatus)),
    );
    let _ = update(
        &mut s,
        Msg::Feed(FeedEvent::Connected(crate::app::Channel::Dashboard)),
    );
    let _ = update(
        &mut s,
        Msg::Refreshed(Box::new(Ok(Refresh {
            identity: Identity {
                name: "alice".into(),
                role: "operator".into(),
            },
            status,
            checklist: ChecklistReply {
                state,
                checklist: serde_json::from_value(list.clone()).unwrap(),
                missing: missing(&list),
            },
            journal: journal(),
        }))),
    );
    let clear = state == HaltState::Recovering || state == HaltState::Running;
    let frame: Frame = serde_json::from_value(dashboard_json(state, &list, clear)).unwrap();
    let _ = update(&mut s, Msg::Feed(FeedEvent::Frame(Box::new(frame))));
    s.selected = done.min(7);
    s
}
