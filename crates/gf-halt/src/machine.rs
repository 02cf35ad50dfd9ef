//! The halt state machine, pure: `Running → Halting → Halted → Recovering → Running`.
//!
//! No I/O happens here; the coordinator journals a [`Snapshot`] of the machine with every
//! transition and restores the latest one on start. Allowed moves:
//!
//! | from       | to         | by                                   |
//! |------------|------------|--------------------------------------|
//! | Running    | Halting    | a trigger                            |
//! | Recovering | Halting    | a trigger (back to halted, new halt) |
//! | Halting    | Halted     | the halt actions finishing           |
//! | Halted     | Recovering | an operator opening the checklist    |
//! | Recovering | Running    | resume, when nothing is outstanding  |
//!
//! Everything else is [`Error::IllegalTransition`]. A trigger while Halting or Halted is
//! recorded on the current halt, not lost.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use gf_core::{HaltBehaviour, HaltSource, HaltState};

use crate::checklist::{Checklist, ChecklistItem, ItemSpec};
use crate::closure::ClosureReport;
use crate::error::{Error, ResumeRefusal, validate_operator};

/// A trigger that arrived while a halt was already in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaterTrigger {
    /// Who or what.
    pub source: HaltSource,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// How many later triggers a halt keeps in its snapshot. The snapshot is journaled and
/// served with every status read, so a trigger storm (an operator hammering halt, a
/// condition re-firing) must not grow it without bound; the journal keeps them all.
pub const MAX_LATER_TRIGGERS: usize = 50;

/// One halt: what triggered it and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltInfo {
    /// Increasing id (client order ids of closure orders derive from it).
    pub id: u64,
    /// Who or what triggered it.
    pub source: HaltSource,
    /// Why.
    pub reason: String,
    /// What it does beyond closing the gate.
    pub behaviour: HaltBehaviour,
    /// When it was triggered.
    pub triggered_at: DateTime<Utc>,
    /// Conditions involved (the trigger's and later ones').
    pub conditions: Vec<String>,
    /// The newest triggers that arrived while it was in force (at most
    /// [`MAX_LATER_TRIGGERS`]; every one of them is in the journal).
    pub later_triggers: Vec<LaterTrigger>,
    /// How many triggers arrived while it was in force, in all.
    #[serde(default)]
    pub later_trigger_count: u64,
    /// The outcome of cancel and closure, once finished.
    pub closure: Option<ClosureReport>,
}

/// Everything the coordinator persists: restoring it restores the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Current state.
    pub state: HaltState,
    /// Highest halt id used.
    pub last_halt_id: u64,
    /// The current (or, when Running, the last) halt.
    pub halt: Option<HaltInfo>,
    /// The checklist of that halt.
    pub checklist: Option<Checklist>,
    /// Who resumed last.
    pub resumed_by: Option<String>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            state: HaltState::Running,
            last_halt_id: 0,
            halt: None,
            checklist: None,
            resumed_by: None,
        }
    }
}

/// A trigger to apply.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Who or what.
    pub source: HaltSource,
    /// Why.
    pub reason: String,
    /// Behaviour if this trigger starts a halt.
    pub behaviour: HaltBehaviour,
    /// The condition, for automatic triggers.
    pub condition: Option<String>,
    /// Checklist items this trigger adds.
    pub items: Vec<ItemSpec>,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerEffect {
    /// A new halt started; the machine is now Halting.
    Started {
        /// The new halt.
        halt_id: u64,
        /// The state it left.
        from: HaltState,
    },
    /// A halt was already in force; the trigger was recorded on it.
    Recorded {
        /// The halt it was recorded on.
        halt_id: u64,
    },
}

/// The state machine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Machine {
    snap: Snapshot,
    epoch: u64,
}

impl Machine {
    /// A machine at a restored snapshot.
    #[must_use]
    pub fn from_snapshot(snap: Snapshot) -> Self {
        Self { snap, epoch: 0 }
    }

    /// The persistent part.
    #[must_use]
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> HaltState {
        self.snap.state
    }

    /// Bumped by every trigger; operations prepared under an older epoch are stale.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Applies a trigger.
    pub fn trigger(&mut self, t: Trigger) -> TriggerEffect {
        self.epoch += 1;
        let why = t.condition.clone().unwrap_or_else(|| t.source.to_string());
        let extras: Vec<(ItemSpec, String)> =
            t.items.iter().map(|i| (i.clone(), why.clone())).collect();
        match self.snap.state {
            HaltState::Running | HaltState::Recovering => {
                let from = self.snap.state;
                let id = self.snap.last_halt_id + 1;
                // Items added for an earlier halt still apply to a re-halt during recovery.
                let mut carried = match (&self.snap.checklist, from) {
                    (Some(c), HaltState::Recovering) => c.extras(),
                    _ => Vec::new(),
                };
                carried.extend(extras);
                let mut conditions: Vec<String> = match (&self.snap.halt, from) {
                    (Some(h), HaltState::Recovering) => h.conditions.clone(),
                    _ => Vec::new(),
                };
                if let Some(c) = &t.condition
                    && !conditions.contains(c)
                {
                    conditions.push(c.clone());
                }
                self.snap.last_halt_id = id;
                self.snap.state = HaltState::Halting;
                self.snap.checklist = Some(Checklist::new(id, &carried));
                self.snap.halt = Some(HaltInfo {
                    id,
                    source: t.source,
                    reason: t.reason,
                    behaviour: t.behaviour,
                    triggered_at: t.at,
                    conditions,
                    later_triggers: Vec::new(),
                    later_trigger_count: 0,
                    closure: None,
                });
                TriggerEffect::Started { halt_id: id, from }
            }
            HaltState::Halting | HaltState::Halted => {
                let halt_id = self.snap.last_halt_id;
                if let Some(h) = &mut self.snap.halt {
                    if let Some(c) = &t.condition
                        && !h.conditions.contains(c)
                    {
                        h.conditions.push(c.clone());
                    }
                    h.later_triggers.push(LaterTrigger {
                        source: t.source,
                        reason: t.reason,
                        at: t.at,
                    });
                    h.later_trigger_count += 1;
                    if h.later_triggers.len() > MAX_LATER_TRIGGERS {
                        h.later_triggers.remove(0);
                    }
                }
                if let Some(list) = &mut self.snap.checklist {
                    list.add_items(&extras);
                }
                TriggerEffect::Recorded { halt_id }
            }
        }
    }

    /// Halting → Halted, recording the halt actions' outcome and any items it adds.
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] when not Halting (or halting a different halt).
    pub fn finish_halting(
        &mut self,
        halt_id: u64,
        report: Option<ClosureReport>,
        items: &[ItemSpec],
    ) -> Result<(), Error> {
        if self.snap.state != HaltState::Halting || self.snap.last_halt_id != halt_id {
            return Err(Error::IllegalTransition {
                from: self.snap.state,
                to: HaltState::Halted,
            });
        }
        self.snap.state = HaltState::Halted;
        if let Some(h) = &mut self.snap.halt {
            h.closure = report;
        }
        if let Some(list) = &mut self.snap.checklist {
            let extras: Vec<(ItemSpec, String)> = items
                .iter()
                .map(|i| (i.clone(), "halt actions".to_owned()))
                .collect();
            list.add_items(&extras);
        }
        Ok(())
    }

    /// Forces Halted (restore after a crash in Halting or Recovering, or a bad journal).
    /// The checklist, with its completions, is kept.
    pub fn restore_halted(&mut self, fallback: Trigger) {
        if self.snap.state == HaltState::Running || self.snap.halt.is_none() {
            self.trigger(fallback);
        } else if !fallback.items.is_empty() {
            let why = fallback
                .condition
                .clone()
                .unwrap_or_else(|| fallback.source.to_string());
            if let Some(list) = &mut self.snap.checklist {
                let extras: Vec<(ItemSpec, String)> = fallback
                    .items
                    .iter()
                    .map(|i| (i.clone(), why.clone()))
                    .collect();
                list.add_items(&extras);
            }
        }
        self.snap.state = HaltState::Halted;
        if self.snap.checklist.is_none() {
            self.snap.checklist = Some(Checklist::new(self.snap.last_halt_id, &[]));
        }
    }

    /// Halted → Recovering.
    ///
    /// # Errors
    /// [`Error::InvalidOperator`]; [`Error::IllegalTransition`] when not Halted.
    pub fn begin_recovery(&mut self, operator: &str) -> Result<(), Error> {
        validate_operator(operator)?;
        if self.snap.state != HaltState::Halted {
            return Err(Error::IllegalTransition {
                from: self.snap.state,
                to: HaltState::Recovering,
            });
        }
        self.snap.state = HaltState::Recovering;
        Ok(())
    }

    /// Completes a checklist item (Recovering only).
    ///
    /// # Errors
    /// [`Error::NotAllowed`] outside Recovering, and the checklist's own errors.
    pub fn complete(
        &mut self,
        item: &str,
        operator: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ChecklistItem, Error> {
        if self.snap.state != HaltState::Recovering {
            return Err(Error::NotAllowed {
                action: "completing a checklist item",
                state: self.snap.state,
            });
        }
        let list = self.snap.checklist.as_mut().ok_or(Error::NotAllowed {
            action: "completing a checklist item without a checklist",
            state: self.snap.state,
        })?;
        list.complete(item, operator, note, now).cloned()
    }

    /// What stands in the way of resuming now.
    #[must_use]
    pub fn resume_refusal(
        &self,
        operator: &str,
        breached: Vec<String>,
        two_person_rule: bool,
    ) -> ResumeRefusal {
        let list = self.snap.checklist.as_ref();
        ResumeRefusal {
            missing_items: list.map(Checklist::missing).unwrap_or_default(),
            breached_conditions: breached,
            two_person_violation: if two_person_rule {
                list.and_then(|l| l.two_person_violation(operator))
            } else {
                None
            },
        }
    }

    /// Recovering → Running when every item is complete, no condition is breached and the
    /// two-person rule (if on) holds.
    ///
    /// # Errors
    /// [`Error::InvalidOperator`]; [`Error::IllegalTransition`] when not Recovering;
    /// [`Error::ResumeRefused`] listing everything outstanding.
    pub fn resume(
        &mut self,
        operator: &str,
        breached: Vec<String>,
        two_person_rule: bool,
    ) -> Result<(), Error> {
        validate_operator(operator)?;
        if self.snap.state != HaltState::Recovering {
            return Err(Error::IllegalTransition {
                from: self.snap.state,
                to: HaltState::Running,
            });
        }
        let refusal = self.resume_refusal(operator, breached, two_person_rule);
        if !refusal.is_clear() {
            return Err(Error::ResumeRefused(refusal));
        }
        self.snap.state = HaltState::Running;
        self.snap.resumed_by = Some(operator.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checklist::{CONFIRM_RESUME, STANDARD_ITEMS};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn trig(source: HaltSource, condition: Option<&str>, items: &[&str]) -> Trigger {
        Trigger {
            source,
            reason: "r".into(),
            behaviour: HaltBehaviour::CancelOnly,
            condition: condition.map(str::to_owned),
            items: items.iter().map(|i| ItemSpec::new(*i, *i)).collect(),
            at: now(),
        }
    }

    fn complete_all(m: &mut Machine, who: &str, confirmer: &str) {
        let ids: Vec<String> = m.snapshot().checklist.as_ref().unwrap().missing();
        for id in ids.iter().filter(|i| *i != CONFIRM_RESUME) {
            m.complete(id, who, None, now()).unwrap();
        }
        m.complete(CONFIRM_RESUME, confirmer, None, now()).unwrap();
    }

    #[test]
    fn full_cycle() {
        let mut m = Machine::default();
        assert_eq!(m.state(), HaltState::Running);
        let e = m.trigger(trig(HaltSource::Cli, None, &[]));
        assert_eq!(
            e,
            TriggerEffect::Started {
                halt_id: 1,
                from: HaltState::Running
            }
        );
        assert_eq!(m.state(), HaltState::Halting);
        m.finish_halting(1, None, &[]).unwrap();
        m.begin_recovery("alice").unwrap();
        complete_all(&mut m, "alice", "alice");
        m.resume("alice", vec![], false).unwrap();
        assert_eq!(m.state(), HaltState::Running);
        assert_eq!(m.snapshot().resumed_by.as_deref(), Some("alice"));
    }

    #[test]
    fn illegal_transitions_are_errors() {
        let mut m = Machine::default();
        assert!(matches!(
            m.begin_recovery("a"),
            Err(Error::IllegalTransition {
                from: HaltState::Running,
                to: HaltState::Recovering
            })
        ));
        assert!(matches!(
            m.resume("a", vec![], false),
            Err(Error::IllegalTransition { .. })
        ));
        assert!(matches!(
            m.finish_halting(1, None, &[]),
            Err(Error::IllegalTransition { .. })
        ));
        assert!(matches!(
            m.complete("review_halt_reason", "a", None, now()),
            Err(Error::NotAllowed { .. })
        ));
        m.trigger(trig(HaltSource::Signal, None, &[]));
        assert!(matches!(
            m.begin_recovery("a"),
            Err(Error::IllegalTransition {
                from: HaltState::Halting,
                ..
            })
        ));
        assert!(matches!(
            m.finish_halting(7, None, &[]),
            Err(Error::IllegalTransition { .. })
        ));
    }

    #[test]
    fn second_trigger_is_recorded_not_lost() {
        let mut m = Machine::default();
        m.trigger(trig(
            HaltSource::Auto("max_total_drawdown".into()),
            Some("max_total_drawdown"),
            &["review_drawdown_cause"],
        ));
        let e = m.trigger(trig(
            HaltSource::Auto("api_error_rate".into()),
            Some("api_error_rate"),
            &["confirm_exchange_status"],
        ));
        assert_eq!(e, TriggerEffect::Recorded { halt_id: 1 });
        let h = m.snapshot().halt.as_ref().unwrap();
        assert_eq!(h.conditions, vec!["max_total_drawdown", "api_error_rate"]);
        assert_eq!(h.later_triggers.len(), 1);
        assert_eq!(h.later_trigger_count, 1);
        let missing = m.snapshot().checklist.as_ref().unwrap().missing();
        assert!(missing.contains(&"confirm_exchange_status".to_owned()));
        assert!(missing.contains(&"review_drawdown_cause".to_owned()));
    }

    #[test]
    fn a_trigger_storm_keeps_the_snapshot_bounded_and_counts_everything() {
        let mut m = Machine::default();
        m.trigger(trig(HaltSource::Cli, None, &[]));
        for i in 0..500 {
            let mut t = trig(HaltSource::Api("op".into()), None, &[]);
            t.reason = format!("again {i}");
            m.trigger(t);
        }
        let h = m.snapshot().halt.as_ref().unwrap();
        assert_eq!(h.later_trigger_count, 500);
        assert_eq!(h.later_triggers.len(), MAX_LATER_TRIGGERS);
        assert_eq!(h.later_triggers.last().unwrap().reason, "again 499");
        assert_eq!(
            h.later_triggers[0].reason,
            format!("again {}", 500 - MAX_LATER_TRIGGERS)
        );
    }

    #[test]
    fn trigger_during_recovery_starts_a_new_halt_and_resets_completions() {
        let mut m = Machine::default();
        m.trigger(trig(HaltSource::Cli, Some("x"), &["extra_x"]));
        m.finish_halting(1, None, &[]).unwrap();
        m.begin_recovery("alice").unwrap();
        m.complete("review_halt_reason", "alice", None, now())
            .unwrap();
        let e = m.trigger(trig(HaltSource::Fleet, None, &[]));
        assert_eq!(
            e,
            TriggerEffect::Started {
                halt_id: 2,
                from: HaltState::Recovering
            }
        );
        let list = m.snapshot().checklist.as_ref().unwrap();
        assert_eq!(list.halt_id, 2);
        assert!(list.missing().contains(&"review_halt_reason".to_owned()));
        assert!(list.missing().contains(&"extra_x".to_owned()));
        assert_eq!(m.snapshot().halt.as_ref().unwrap().conditions, vec!["x"]);
    }

    #[test]
    fn resume_refusal_lists_items_conditions_and_two_person() {
        let mut m = Machine::default();
        m.trigger(trig(HaltSource::Cli, None, &[]));
        m.finish_halting(1, None, &[ItemSpec::new("resolve_left", "x")])
            .unwrap();
        m.begin_recovery("alice").unwrap();
        match m.resume("bob", vec!["max_daily_drawdown".into()], true) {
            Err(Error::ResumeRefused(r)) => {
                assert_eq!(r.missing_items.len(), STANDARD_ITEMS.len() + 1);
                assert_eq!(r.breached_conditions, vec!["max_daily_drawdown"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        complete_all(&mut m, "alice", "alice");
        match m.resume("alice", vec![], true) {
            Err(Error::ResumeRefused(r)) => {
                assert!(r.missing_items.is_empty());
                assert!(r.two_person_violation.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
        m.resume("alice", vec![], false).unwrap();
    }

    #[test]
    fn restore_halted_keeps_completions() {
        let mut m = Machine::default();
        m.trigger(trig(HaltSource::Cli, None, &[]));
        m.finish_halting(1, None, &[]).unwrap();
        m.begin_recovery("alice").unwrap();
        m.complete("review_halt_reason", "alice", None, now())
            .unwrap();
        let snap = m.snapshot().clone();
        let mut r = Machine::from_snapshot(snap);
        r.restore_halted(trig(HaltSource::Auto("restart".into()), None, &[]));
        assert_eq!(r.state(), HaltState::Halted);
        let list = r.snapshot().checklist.as_ref().unwrap();
        assert!(!list.missing().contains(&"review_halt_reason".to_owned()));
        // From Running, a restore starts a fresh halt.
        let mut fresh = Machine::default();
        fresh.restore_halted(trig(
            HaltSource::Auto("journal_integrity".into()),
            Some("journal_integrity"),
            &["review_journal_integrity"],
        ));
        assert_eq!(fresh.state(), HaltState::Halted);
        assert!(
            fresh
                .snapshot()
                .checklist
                .as_ref()
                .unwrap()
                .missing()
                .contains(&"review_journal_integrity".to_owned())
        );
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let mut m = Machine::default();
        m.trigger(trig(HaltSource::Api("alice".into()), None, &[]));
        let text = serde_json::to_string(m.snapshot()).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, m.snapshot());
    }
}

/// Tests that kill mutants `cargo xtask mutants` found alive.
#[cfg(test)]
mod mutant_kills {
    use super::*;
    use chrono::TimeZone;

    fn trig(source: HaltSource, condition: Option<&str>, items: &[&str]) -> Trigger {
        Trigger {
            source,
            reason: "r".into(),
            behaviour: HaltBehaviour::Hold,
            condition: condition.map(str::to_owned),
            items: items.iter().map(|i| ItemSpec::new(*i, *i)).collect(),
            at: at(),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn every_trigger_bumps_the_epoch_by_one() {
        let mut m = Machine::default();
        assert_eq!(m.epoch(), 0);
        m.trigger(trig(HaltSource::Cli, None, &[]));
        assert_eq!(m.epoch(), 1);
        m.trigger(trig(HaltSource::Cli, None, &[]));
        m.trigger(trig(HaltSource::Fleet, None, &[]));
        assert_eq!(m.epoch(), 3);
        assert_eq!(Machine::from_snapshot(m.snapshot().clone()).epoch(), 0);
    }

    #[test]
    fn restoring_a_resumed_machine_starts_a_new_halt() {
        let mut m = Machine::default();
        m.trigger(trig(HaltSource::Cli, None, &[]));
        m.finish_halting(1, None, &[]).unwrap();
        m.begin_recovery("alice").unwrap();
        let ids = m.snapshot().checklist.as_ref().unwrap().missing();
        for id in ids
            .iter()
            .filter(|i| *i != crate::checklist::CONFIRM_RESUME)
        {
            m.complete(id, "alice", None, at()).unwrap();
        }
        m.complete(crate::checklist::CONFIRM_RESUME, "alice", None, at())
            .unwrap();
        m.resume("alice", vec![], false).unwrap();
        assert!(m.snapshot().halt.is_some(), "Running keeps its last halt");
        m.restore_halted(trig(
            HaltSource::Auto("journal_integrity".into()),
            Some("journal_integrity"),
            &[],
        ));
        assert_eq!(m.state(), HaltState::Halted);
        let halt = m.snapshot().halt.as_ref().unwrap();
        assert_eq!(halt.id, 2, "a fresh halt, not the resumed one");
        assert_eq!(halt.source, HaltSource::Auto("journal_integrity".into()));
    }

    #[test]
    fn restoring_a_halt_in_force_adds_the_fallbacks_items_to_its_checklist() {
        let mut m = Machine::default();
        m.trigger(trig(HaltSource::Cli, None, &[]));
        m.finish_halting(1, None, &[]).unwrap();
        m.begin_recovery("alice").unwrap();
        m.restore_halted(trig(
            HaltSource::Auto("restart".into()),
            Some("journal_unwritable"),
            &["review_journal_storage"],
        ));
        assert_eq!(m.state(), HaltState::Halted);
        assert_eq!(m.snapshot().halt.as_ref().unwrap().id, 1, "the same halt");
        let list = m.snapshot().checklist.as_ref().unwrap();
        let item = list
            .items
            .iter()
            .find(|i| i.id == "review_journal_storage")
            .expect("the fallback's item is on the checklist");
        assert_eq!(item.added_for.as_deref(), Some("journal_unwritable"));
        // Without a condition, the source names the reason.
        m.restore_halted(trig(HaltSource::Fleet, None, &["check_fleet"]));
        let list = m.snapshot().checklist.as_ref().unwrap();
        let item = list.items.iter().find(|i| i.id == "check_fleet").unwrap();
        assert_eq!(item.added_for.as_deref(), Some("fleet"));
    }
}
