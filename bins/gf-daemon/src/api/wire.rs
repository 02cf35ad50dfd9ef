//! From the halt coordinator's types to the API's wire types ([`gf_api`]), field by
//! field: what the daemon serves is what gf-console and the CLI decode, and a field that
//! changes on either side stops this module compiling. Answers go out through
//! [`value`], a JSON value with its keys sorted, exactly as before the wire types existed.

use serde::Serialize;
use serde_json::Value;

use crate::app::Daemon;

/// `v` as a JSON value (object keys sorted); `null` if it cannot be represented.
pub(crate) fn value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The word a string-like value serialises to (`cancel_orders`, `api:alice`, `online`).
fn word<T: Serialize>(v: &T) -> String {
    match value(v) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The halt status plus `exchange_status` (Kraken's trading mode as last reported, `null`
/// in paper mode) and `fills` (`pushed` or `polled`, `null` in paper mode).
pub(crate) fn status(d: &Daemon) -> gf_api::Status {
    gf_api::Status {
        core: halt_status(d.halt.status()),
        exchange_status: d.live.as_ref().map(|l| word(&l.exchange_status())),
        fills: d.live.as_ref().map(|l| word(&l.fills_path())),
    }
}

/// The coordinator's status alone (the halt and resume answers).
pub(crate) fn halt_status(s: gf_halt::HaltStatus) -> gf_api::HaltStatus {
    gf_api::HaltStatus {
        state: s.state.into(),
        gate_open: s.gate_open,
        halt: s.halt.as_ref().map(halt_info),
        checklist_missing: s.checklist_missing,
        resumed_by: s.resumed_by,
        journal_problem: s.journal_problem,
    }
}

pub(crate) fn identity(who: &crate::auth::Identity) -> gf_api::Identity {
    gf_api::Identity {
        name: who.name.clone(),
        role: word(&who.role),
    }
}

pub(crate) fn halt_info(h: &gf_halt::HaltInfo) -> gf_api::HaltInfo {
    gf_api::HaltInfo {
        id: h.id,
        source: h.source.to_string(),
        reason: h.reason.clone(),
        behaviour: Some(word(&h.behaviour)),
        triggered_at: Some(h.triggered_at),
        conditions: h.conditions.clone(),
        later_triggers: h
            .later_triggers
            .iter()
            .map(|t| gf_api::LaterTrigger {
                source: t.source.to_string(),
                reason: t.reason.clone(),
                at: Some(t.at),
            })
            .collect(),
        later_trigger_count: h.later_trigger_count,
        closure: h.closure.as_ref().map(value),
    }
}

pub(crate) fn checklist_item(i: &gf_halt::ChecklistItem) -> gf_api::ChecklistItem {
    gf_api::ChecklistItem {
        id: i.id.clone(),
        title: i.title.clone(),
        added_for: i.added_for.clone(),
        completed_by: i.completed_by.clone(),
        completed_at: i.completed_at,
        note: i.note.clone(),
    }
}

pub(crate) fn checklist(c: &gf_halt::Checklist) -> gf_api::Checklist {
    gf_api::Checklist {
        halt_id: c.halt_id,
        items: c.items.iter().map(checklist_item).collect(),
    }
}

pub(crate) fn outcome(o: &gf_halt::HaltOutcome) -> gf_api::HaltOutcome {
    gf_api::HaltOutcome {
        halt_id: o.halt_id,
        started: o.started,
        state: o.state.into(),
        journal_error: o.journal_error.clone(),
        durable: o.durable,
    }
}

pub(crate) fn condition(c: &gf_halt::ConditionStatus) -> gf_api::ConditionStatus {
    gf_api::ConditionStatus {
        id: c.id.clone(),
        name: c.name.clone(),
        threshold: c.threshold.into(),
        value: c.value.into(),
        triggered: c.triggered,
        last_evaluated: c.last_evaluated,
        detail: c.detail.clone(),
        behaviour: word(&c.behaviour),
    }
}

pub(crate) fn journal_record(r: gf_halt::JournalRecord) -> gf_api::JournalRecord {
    gf_api::JournalRecord {
        id: r.id,
        ts: r.ts,
        ts_malformed: r.ts_malformed,
        kind: r.kind,
        actor: r.actor,
        detail: r.detail,
        prev_mac: r.prev_mac,
        mac: r.mac,
    }
}

#[cfg(test)]
mod tests {
    //! Byte compatibility: each wire value equals the coordinator type's own serialisation
    //! (what the daemon served before the wire types), field for field.
    use super::*;
    use chrono::TimeZone;
    use gf_core::{HaltBehaviour, HaltSource, HaltState};
    use rust_decimal::Decimal;

    fn t(s: u32) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, s).unwrap()
    }

    fn info() -> gf_halt::HaltInfo {
        gf_halt::HaltInfo {
            id: 4,
            source: HaltSource::Api("alice".into()),
            reason: "drill".into(),
            behaviour: HaltBehaviour::default(),
            triggered_at: t(0),
            conditions: vec!["max_daily_drawdown".into()],
            later_triggers: vec![gf_halt::machine::LaterTrigger {
                source: HaltSource::Auto("max_api_errors".into()),
                reason: "errors".into(),
                at: t(1),
            }],
            later_trigger_count: 3,
            closure: None,
        }
    }

    #[test]
    fn halt_status_parts_serialise_as_the_coordinator_types_do() {
        let h = info();
        assert_eq!(value(&halt_info(&h)), value(&h));
        let status = gf_halt::HaltStatus {
            state: HaltState::Recovering,
            gate_open: false,
            halt: Some(h),
            checklist_missing: vec!["confirm_resume".into()],
            resumed_by: Some("bob".into()),
            journal_problem: Some("witness unreadable".into()),
        };
        assert_eq!(value(&halt_status(status.clone())), value(&status));
        // Paper mode: the venue's fields are there, and null.
        let wire = gf_api::Status {
            core: halt_status(status.clone()),
            exchange_status: None,
            fills: None,
        };
        let mut expected = value(&status);
        expected["exchange_status"] = Value::Null;
        expected["fills"] = Value::Null;
        assert_eq!(value(&wire), expected);
        assert_eq!(
            serde_json::to_string(&value(&wire)).unwrap(),
            serde_json::to_string(&expected).unwrap(),
            "same bytes"
        );

        let outcome_in = gf_halt::HaltOutcome {
            halt_id: 4,
            started: true,
            state: HaltState::Halting,
            journal_error: Some("disk full".into()),
            durable: false,
        };
        assert_eq!(value(&outcome(&outcome_in)), value(&outcome_in));
    }

    #[test]
    fn checklist_condition_and_journal_serialise_as_the_coordinator_types_do() {
        let list = gf_halt::Checklist::new(9, &[]);
        assert_eq!(value(&checklist(&list)), value(&list));
        let cond = gf_halt::ConditionStatus {
            id: "max_daily_drawdown".into(),
            name: "Daily drawdown".into(),
            threshold: Decimal::new(3, 0),
            value: Decimal::new(-1250, 3),
            triggered: false,
            last_evaluated: Some(t(2)),
            detail: None,
            behaviour: HaltBehaviour::default(),
        };
        assert_eq!(value(&condition(&cond)), value(&cond));
        for ts_malformed in [None, Some("not a time".to_owned())] {
            let record = gf_halt::JournalRecord {
                id: 2,
                ts: ts_malformed.is_none().then(|| t(3)),
                ts_malformed,
                kind: "halt_triggered".into(),
                actor: "api:alice".into(),
                detail: serde_json::json!({"reason": "drill"}),
                prev_mac: "00".into(),
                mac: "ff".into(),
            };
            assert_eq!(value(&journal_record(record.clone())), value(&record));
        }
    }
}
