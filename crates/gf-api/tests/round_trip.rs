//! Every wire type survives encode → decode unchanged, and decoding what was encoded
//! gives the same bytes again: nothing the daemon sends is lost or reshaped on the way to
//! the console or the CLI.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use chrono::{TimeZone, Utc};
use gf_api::{
    Checklist, ChecklistItem, ChecklistReply, CompleteReply, CompleteRequest, ConditionStatus,
    ConditionsReply, HaltInfo, HaltOutcome, HaltReply, HaltRequest, HaltState, HaltStatus,
    Identity, JournalRecord, JournalReply, LaterTrigger, Num, ResumeRefusal, ResumeReply, Status,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{text}");
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
}

fn t(s: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, s).unwrap()
}

fn item(id: &str, done: bool) -> ChecklistItem {
    ChecklistItem {
        id: id.into(),
        title: format!("do {id}"),
        added_for: (!done).then(|| "stale market data".into()),
        completed_by: done.then(|| "alice".into()),
        completed_at: done.then(|| t(5)),
        note: done.then(|| "checked on the exchange".into()),
    }
}

fn halt_status() -> HaltStatus {
    HaltStatus {
        state: HaltState::Recovering,
        gate_open: false,
        halt: Some(HaltInfo {
            id: 7,
            source: "auto:max_daily_drawdown".into(),
            reason: "daily drawdown 3.1% > 3%".into(),
            behaviour: Some("close_positions".into()),
            triggered_at: Some(t(0)),
            conditions: vec!["max_daily_drawdown".into()],
            later_triggers: vec![LaterTrigger {
                source: "api:bob".into(),
                reason: "belt and braces".into(),
                at: Some(t(1)),
            }],
            later_trigger_count: 1,
            closure: Some(json!({"flat": true, "rounds": 1, "pairs": []})),
        }),
        checklist_missing: vec!["confirm_resume".into()],
        resumed_by: Some("carol".into()),
        journal_problem: None,
    }
}

fn status() -> Status {
    Status {
        core: halt_status(),
        exchange_status: Some("online".into()),
        fills: Some("pushed".into()),
    }
}

#[test]
fn every_type_round_trips() {
    round_trip(&status());
    round_trip(&Status::default());
    let checklist = Checklist {
        halt_id: 7,
        items: vec![
            item("confirm_orders_cancelled", true),
            item("confirm_resume", false),
        ],
    };
    round_trip(&checklist);
    round_trip(&ChecklistReply {
        state: HaltState::Halted,
        checklist: Some(checklist),
        missing: vec!["confirm_resume".into()],
    });
    round_trip(&HaltRequest {
        reason: "fat finger".into(),
        source: Some("console".into()),
    });
    let outcome = HaltOutcome {
        halt_id: 7,
        started: true,
        state: HaltState::Halting,
        journal_error: Some("disk full".into()),
        durable: false,
    };
    round_trip(&outcome);
    round_trip(&HaltReply {
        outcome,
        status: halt_status(),
    });
    round_trip(&ResumeReply {
        status: halt_status(),
    });
    round_trip(&ResumeRefusal {
        missing_items: vec!["confirm_resume".into()],
        breached_conditions: vec!["max_api_errors".into()],
        two_person_violation: Some("alice halted and resumed".into()),
    });
    round_trip(&CompleteRequest {
        note: Some("done".into()),
    });
    round_trip(&CompleteReply {
        item: item("confirm_resume", true),
        missing: vec![],
    });
    round_trip(&ConditionsReply {
        conditions: vec![ConditionStatus {
            id: "max_daily_drawdown".into(),
            name: "Daily drawdown".into(),
            threshold: Num::from(rust_decimal::Decimal::new(3, 0)),
            value: Num::from(rust_decimal::Decimal::new(-125, 2)),
            triggered: false,
            last_evaluated: Some(t(9)),
            detail: Some("XRP/USD".into()),
            behaviour: "cancel_orders".into(),
        }],
    });
    round_trip(&JournalReply {
        records: vec![
            JournalRecord {
                id: 2,
                ts: Some(t(3)),
                ts_malformed: None,
                kind: "halt_triggered".into(),
                actor: "api:alice".into(),
                detail: json!({"reason": "drill", "nested": [1, "two", null]}),
                prev_mac: "00".repeat(32),
                mac: "ab".repeat(32),
            },
            JournalRecord {
                id: 3,
                ts: None,
                ts_malformed: Some("yesterday".into()),
                kind: "tampered".into(),
                actor: "system".into(),
                detail: json!("not json"),
                prev_mac: "ab".repeat(32),
                mac: "cd".repeat(32),
            },
        ],
    });
    round_trip(&Identity {
        name: "alice".into(),
        role: "operator".into(),
    });
}

#[test]
fn the_status_carries_the_coordinator_fields_inline_and_null_venue_fields_in_paper_mode() {
    let paper = Status {
        core: halt_status(),
        ..Status::default()
    };
    let v = serde_json::to_value(&paper).unwrap();
    assert_eq!(v["state"], "recovering");
    assert_eq!(v["halt"]["id"], 7);
    assert!(v.get("core").is_none(), "{v}");
    assert_eq!(v["exchange_status"], serde_json::Value::Null);
    assert!(v.as_object().unwrap().contains_key("fills"));
    assert_eq!(v.as_object().unwrap().len(), 8);
}

#[test]
fn a_journal_record_with_a_good_timestamp_has_no_malformed_field() {
    let record = JournalRecord {
        id: 1,
        ts: Some(t(0)),
        kind: "genesis".into(),
        actor: "system".into(),
        ..JournalRecord::default()
    };
    let v = serde_json::to_value(&record).unwrap();
    assert!(v.get("ts_malformed").is_none(), "{v}");
    assert_eq!(v["ts"], "2026-03-02T14:00:00Z");
}
