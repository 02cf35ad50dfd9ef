//! The recovery checklist: the design's seven items plus items added per halt reason, each
//! recording who completed it and when.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, validate_operator};

/// The last item; it can only be completed once every other item is.
pub const CONFIRM_RESUME: &str = "confirm_resume";

/// Longest note kept, in characters; longer notes are cut.
pub const MAX_NOTE_CHARS: usize = 1_000;

/// The standard items, in order (`confirm_resume` last).
pub const STANDARD_ITEMS: [(&str, &str); 7] = [
    ("review_halt_reason", "Review the halt reason"),
    ("review_market_conditions", "Review market conditions"),
    ("review_positions_pnl", "Review positions and P&L"),
    ("check_api_connectivity", "Check API connectivity"),
    ("check_account_balance", "Check the account balance"),
    ("review_risk_parameters", "Review risk parameters"),
    (CONFIRM_RESUME, "Confirm resume"),
];

/// An item a halt reason adds to the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSpec {
    /// Stable id (`confirm_market_data_restored`).
    pub id: String,
    /// What the operator must do.
    pub title: String,
}

impl ItemSpec {
    /// An item.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
        }
    }
}

/// One checklist item and its completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    /// Stable id.
    pub id: String,
    /// What the operator must do.
    pub title: String,
    /// The halt reason that added it (`None` for the standard items).
    pub added_for: Option<String>,
    /// Who completed it.
    pub completed_by: Option<String>,
    /// When.
    pub completed_at: Option<DateTime<Utc>>,
    /// The operator's note.
    pub note: Option<String>,
}

impl ChecklistItem {
    fn new(id: &str, title: &str, added_for: Option<String>) -> Self {
        Self {
            id: id.to_owned(),
            title: title.to_owned(),
            added_for,
            completed_by: None,
            completed_at: None,
            note: None,
        }
    }

    /// `true` once completed.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.completed_by.is_some()
    }
}

/// The checklist of one halt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checklist {
    /// The halt it belongs to.
    pub halt_id: u64,
    /// Items in the order to work through them; `confirm_resume` is last.
    pub items: Vec<ChecklistItem>,
}

impl Checklist {
    /// The standard checklist plus `extra` items (`(item, added_for)`), deduplicated.
    #[must_use]
    pub fn new(halt_id: u64, extra: &[(ItemSpec, String)]) -> Self {
        let mut list = Self {
            halt_id,
            items: STANDARD_ITEMS
                .iter()
                .map(|(id, title)| ChecklistItem::new(id, title, None))
                .collect(),
        };
        list.add_items(extra);
        list
    }

    /// Adds items (before `confirm_resume`) unless an item with that id exists.
    pub fn add_items(&mut self, extra: &[(ItemSpec, String)]) {
        for (spec, why) in extra {
            if self.items.iter().any(|i| i.id == spec.id) {
                continue;
            }
            let at = self
                .items
                .iter()
                .position(|i| i.id == CONFIRM_RESUME)
                .unwrap_or(self.items.len());
            self.items.insert(
                at,
                ChecklistItem::new(&spec.id, &spec.title, Some(why.clone())),
            );
        }
    }

    /// Items added for a reason (not standard), as specs with their reason.
    #[must_use]
    pub fn extras(&self) -> Vec<(ItemSpec, String)> {
        self.items
            .iter()
            .filter_map(|i| {
                i.added_for
                    .as_ref()
                    .map(|why| (ItemSpec::new(&i.id, &i.title), why.clone()))
            })
            .collect()
    }

    /// Marks an item complete.
    ///
    /// # Errors
    /// [`Error::InvalidOperator`], [`Error::UnknownItem`], [`Error::AlreadyCompleted`], or
    /// [`Error::OutOfOrder`] for `confirm_resume` before the others.
    pub fn complete(
        &mut self,
        item: &str,
        operator: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<&ChecklistItem, Error> {
        validate_operator(operator)?;
        let idx = self
            .items
            .iter()
            .position(|i| i.id == item)
            .ok_or_else(|| Error::UnknownItem(item.to_owned()))?;
        if let Some(by) = &self.items[idx].completed_by {
            return Err(Error::AlreadyCompleted {
                item: item.to_owned(),
                by: by.clone(),
            });
        }
        if item == CONFIRM_RESUME {
            let missing: Vec<String> = self
                .missing()
                .into_iter()
                .filter(|m| m != CONFIRM_RESUME)
                .collect();
            if !missing.is_empty() {
                return Err(Error::OutOfOrder {
                    item: item.to_owned(),
                    missing: missing.join(", "),
                });
            }
        }
        let entry = &mut self.items[idx];
        entry.completed_by = Some(operator.to_owned());
        entry.completed_at = Some(now);
        entry.note = note
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.chars().take(MAX_NOTE_CHARS).collect());
        Ok(&self.items[idx])
    }

    /// Ids of the items not yet completed, in order.
    #[must_use]
    pub fn missing(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| !i.is_done())
            .map(|i| i.id.clone())
            .collect()
    }

    /// `true` when every item is completed.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.items.iter().all(ChecklistItem::is_done)
    }

    /// Under the two-person rule, the operator confirming resume (and the one calling
    /// resume) must differ from everyone who completed another item. Returns what is wrong.
    #[must_use]
    pub fn two_person_violation(&self, resuming_operator: &str) -> Option<String> {
        let others: Vec<&str> = self
            .items
            .iter()
            .filter(|i| i.id != CONFIRM_RESUME)
            .filter_map(|i| i.completed_by.as_deref())
            .collect();
        let confirmer = self
            .items
            .iter()
            .find(|i| i.id == CONFIRM_RESUME)
            .and_then(|i| i.completed_by.as_deref());
        if let Some(c) = confirmer
            && others.contains(&c)
        {
            return Some(format!(
                "{c:?} confirmed resume but also completed other items"
            ));
        }
        if others.contains(&resuming_operator) {
            return Some(format!(
                "{resuming_operator:?} resumes but also completed other items"
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn standard_items_with_extras_before_confirm() {
        let extra = [
            (
                ItemSpec::new("confirm_market_data_restored", "Confirm feed"),
                "market_data_staleness".to_owned(),
            ),
            (
                ItemSpec::new("confirm_market_data_restored", "dup"),
                "market_data_staleness".to_owned(),
            ),
        ];
        let list = Checklist::new(1, &extra);
        assert_eq!(list.items.len(), 8);
        assert_eq!(list.items[6].id, "confirm_market_data_restored");
        assert_eq!(list.items[7].id, CONFIRM_RESUME);
        assert_eq!(list.extras().len(), 1);
        assert_eq!(list.missing().len(), 8);
    }

    #[test]
    fn completion_records_operator_and_time_and_refuses_misuse() {
        let mut list = Checklist::new(1, &[]);
        let item = list
            .complete("review_halt_reason", "alice", Some("looked"), now())
            .unwrap();
        assert_eq!(item.completed_by.as_deref(), Some("alice"));
        assert_eq!(item.completed_at, Some(now()));
        assert_eq!(item.note.as_deref(), Some("looked"));
        assert!(matches!(
            list.complete("review_halt_reason", "bob", None, now()),
            Err(Error::AlreadyCompleted { by, .. }) if by == "alice"
        ));
        assert!(matches!(
            list.complete("nope", "bob", None, now()),
            Err(Error::UnknownItem(id)) if id == "nope"
        ));
        assert!(matches!(
            list.complete(CONFIRM_RESUME, "bob", None, now()),
            Err(Error::OutOfOrder { missing, .. }) if missing.contains("check_account_balance")
        ));
        assert!(matches!(
            list.complete("check_account_balance", "", None, now()),
            Err(Error::InvalidOperator(_))
        ));
    }

    #[test]
    fn long_notes_are_cut_and_blank_notes_dropped() {
        let mut list = Checklist::new(1, &[]);
        let long = "n".repeat(5_000);
        let item = list
            .complete("review_halt_reason", "a", Some(&long), now())
            .unwrap();
        assert_eq!(item.note.as_ref().unwrap().chars().count(), MAX_NOTE_CHARS);
        let item = list
            .complete("review_market_conditions", "a", Some("  "), now())
            .unwrap();
        assert_eq!(item.note, None);
    }

    #[test]
    fn two_person_rule() {
        let mut list = Checklist::new(1, &[]);
        for (id, _) in &STANDARD_ITEMS[..6] {
            list.complete(id, "alice", None, now()).unwrap();
        }
        assert!(!list.is_complete());
        list.complete(CONFIRM_RESUME, "alice", None, now()).unwrap();
        assert!(list.is_complete());
        assert!(list.two_person_violation("alice").is_some());
        let mut list2 = Checklist::new(1, &[]);
        for (id, _) in &STANDARD_ITEMS[..6] {
            list2.complete(id, "alice", None, now()).unwrap();
        }
        list2.complete(CONFIRM_RESUME, "bob", None, now()).unwrap();
        assert_eq!(list2.two_person_violation("bob"), None);
        assert!(list2.two_person_violation("alice").is_some());
    }
}
