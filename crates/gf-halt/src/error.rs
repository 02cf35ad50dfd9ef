//! The error type of gf-halt.

use std::fmt;

use gf_core::HaltState;
use serde::{Deserialize, Serialize};

/// Why `resume()` was refused: everything still missing, in one answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResumeRefusal {
    /// Checklist items not yet completed, by id.
    pub missing_items: Vec<String>,
    /// Conditions breached right now, by id.
    pub breached_conditions: Vec<String>,
    /// Set when the two-person rule is violated: who did what.
    pub two_person_violation: Option<String>,
}

impl ResumeRefusal {
    /// `true` when nothing stands in the way of resuming.
    #[must_use]
    pub fn is_clear(&self) -> bool {
        self.missing_items.is_empty()
            && self.breached_conditions.is_empty()
            && self.two_person_violation.is_none()
    }
}

impl fmt::Display for ResumeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing_items.is_empty() {
            parts.push(format!(
                "checklist items missing: {}",
                self.missing_items.join(", ")
            ));
        }
        if !self.breached_conditions.is_empty() {
            parts.push(format!(
                "conditions still breached: {}",
                self.breached_conditions.join(", ")
            ));
        }
        if let Some(v) = &self.two_person_violation {
            parts.push(format!("two-person rule: {v}"));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Errors raised by the halt coordinator, its journal and its checklist.
///
/// [`Error::is_retryable`] separates transient failures (a busy database, an operation
/// interrupted by a new halt) from refusals that will fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state machine does not allow this move.
    #[error("illegal halt transition from {from} to {to}")]
    IllegalTransition {
        /// Current state.
        from: HaltState,
        /// Requested state.
        to: HaltState,
    },
    /// The operation needs another state.
    #[error("{action} is not allowed while the coordinator is {state}")]
    NotAllowed {
        /// What was attempted (`complete_item`, …).
        action: &'static str,
        /// The current state.
        state: HaltState,
    },
    /// No checklist item has this id.
    #[error("unknown checklist item {0:?}")]
    UnknownItem(String),
    /// The item was already completed.
    #[error("checklist item {item:?} was already completed by {by:?}")]
    AlreadyCompleted {
        /// Item id.
        item: String,
        /// Operator who completed it.
        by: String,
    },
    /// `confirm_resume` was attempted before the other items.
    #[error("checklist item {item:?} must come last; still missing: {missing}")]
    OutOfOrder {
        /// Item id.
        item: String,
        /// Comma-separated missing items.
        missing: String,
    },
    /// An operator name that is empty, too long or contains control characters.
    #[error("invalid operator name {0:?}: must be 1 to 64 printable characters")]
    InvalidOperator(String),
    /// `resume()` was refused; the refusal lists everything outstanding.
    #[error("resume refused: {0}")]
    ResumeRefused(ResumeRefusal),
    /// A new halt trigger arrived while this operation was being journaled; look again.
    #[error("{action} interrupted by a new halt trigger; re-read the status and retry")]
    Interrupted {
        /// The interrupted operation.
        action: &'static str,
    },
    /// The SQLite journal failed.
    #[error("journal database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The journal's hash chain is broken at this record.
    #[error("journal record {record_id} failed verification: {reason}")]
    Tampered {
        /// First record that failed.
        record_id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A journal detail or snapshot could not be (de)serialised.
    #[error("journal record {record_id}: invalid json: {message}")]
    Json {
        /// The record (0 when not yet written).
        record_id: i64,
        /// The parser's message.
        message: String,
    },
    /// The blocking journal worker died (a panic in SQLite glue).
    #[error("journal worker failed: {0}")]
    Worker(String),
    /// The journal is missing, empty or replaced in a data directory that has run before.
    #[error("journal missing: {reason}")]
    Missing {
        /// What was found instead.
        reason: String,
    },
    /// The database holds a journal of the first format (an unkeyed SHA-256 chain).
    #[error(
        "journal {} was written by an older version without a journal key (unkeyed format); it cannot be trusted or extended: stop the daemon and run `gf-daemon journal adopt` to archive it and start a keyed journal",
        path.display()
    )]
    LegacyFormat {
        /// The database file.
        path: std::path::PathBuf,
    },
    /// The journal key file is missing, unreadable, too open or malformed.
    #[error("journal key file {}: {reason}", path.display())]
    KeyFile {
        /// The key file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The journal witness cannot be read or written.
    #[error("journal witness {}: {reason}", path.display())]
    Witness {
        /// The witness file or directory.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the data directory's lock.
    #[error(
        "data directory {} is in use by another gf-daemon ({holder}); one daemon per data directory",
        path.display()
    )]
    DataDirLocked {
        /// The data directory.
        path: std::path::PathBuf,
        /// The holder, as its lock file says (`pid N started T`).
        holder: String,
    },
    /// The data directory, its lock or its identity marker cannot be used.
    #[error("data directory {}: {reason}", path.display())]
    DataDir {
        /// The path concerned.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The trading gate's opener was already taken (by another coordinator, or by the
    /// code that built the gate): a coordinator must hold the only right to open it.
    #[error(
        "the trading gate's opener is already taken: the halt coordinator must be the only one able to open the gate"
    )]
    GateOpenerTaken,
}

impl Error {
    /// A stable machine-readable code for API error bodies (`resume_refused`, …).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Error::IllegalTransition { .. } => "illegal_transition",
            Error::NotAllowed { .. } => "not_allowed",
            Error::UnknownItem(_) => "unknown_item",
            Error::AlreadyCompleted { .. } => "already_completed",
            Error::OutOfOrder { .. } => "out_of_order",
            Error::InvalidOperator(_) => "invalid_operator",
            Error::ResumeRefused(_) => "resume_refused",
            Error::Interrupted { .. } => "interrupted",
            Error::Database(_) => "journal_database",
            Error::Tampered { .. } => "journal_tampered",
            Error::Json { .. } => "journal_json",
            Error::Worker(_) => "journal_worker",
            Error::Missing { .. } => "journal_missing",
            Error::LegacyFormat { .. } => "journal_legacy_format",
            Error::KeyFile { .. } => "journal_key",
            Error::Witness { .. } => "journal_witness",
            Error::DataDirLocked { .. } => "data_dir_locked",
            Error::DataDir { .. } => "data_dir",
            Error::GateOpenerTaken => "gate_opener_taken",
        }
    }

    /// Whether the same call may succeed when tried again.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Interrupted { .. } | Error::Worker(_) => true,
            Error::Database(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Error::IllegalTransition { .. }
            | Error::NotAllowed { .. }
            | Error::UnknownItem(_)
            | Error::AlreadyCompleted { .. }
            | Error::OutOfOrder { .. }
            | Error::InvalidOperator(_)
            | Error::ResumeRefused(_)
            | Error::Tampered { .. }
            | Error::Json { .. }
            | Error::Missing { .. }
            | Error::LegacyFormat { .. }
            | Error::KeyFile { .. }
            | Error::Witness { .. }
            | Error::DataDirLocked { .. }
            | Error::DataDir { .. }
            | Error::GateOpenerTaken => false,
        }
    }
}

/// Checks an operator name: 1–64 characters, none of them control characters.
///
/// # Errors
/// [`Error::InvalidOperator`] naming the text.
pub fn validate_operator(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        Err(Error::InvalidOperator(name.to_owned()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lists_everything() {
        let r = ResumeRefusal {
            missing_items: vec!["confirm_resume".into(), "check_account_balance".into()],
            breached_conditions: vec!["max_total_drawdown".into()],
            two_person_violation: None,
        };
        let text = Error::ResumeRefused(r.clone()).to_string();
        assert!(
            text.contains("confirm_resume, check_account_balance"),
            "{text}"
        );
        assert!(text.contains("max_total_drawdown"), "{text}");
        assert!(!r.is_clear());
        assert!(ResumeRefusal::default().is_clear());
    }

    #[test]
    fn operator_names_are_checked() {
        for ok in ["alice", "Bob Smith", "ops@desk-1"] {
            validate_operator(ok).unwrap();
        }
        for bad in ["", "   ", "a\nb", &"x".repeat(65)] {
            let err = validate_operator(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidOperator(_)), "{bad:?}");
        }
    }

    #[test]
    fn codes_are_stable_and_distinct() {
        let errors = [
            Error::IllegalTransition {
                from: HaltState::Running,
                to: HaltState::Recovering,
            },
            Error::NotAllowed {
                action: "x",
                state: HaltState::Running,
            },
            Error::UnknownItem("x".into()),
            Error::AlreadyCompleted {
                item: "x".into(),
                by: "a".into(),
            },
            Error::OutOfOrder {
                item: "x".into(),
                missing: "y".into(),
            },
            Error::InvalidOperator(String::new()),
            Error::ResumeRefused(ResumeRefusal::default()),
            Error::Interrupted { action: "resume" },
            Error::Database(rusqlite::Error::InvalidQuery),
            Error::Tampered {
                record_id: 1,
                reason: "x".into(),
            },
            Error::Json {
                record_id: 1,
                message: "x".into(),
            },
            Error::Worker("x".into()),
            Error::Missing { reason: "x".into() },
            Error::LegacyFormat { path: "x".into() },
            Error::KeyFile {
                path: "x".into(),
                reason: "x".into(),
            },
            Error::Witness {
                path: "x".into(),
                reason: "x".into(),
            },
            Error::DataDirLocked {
                path: "x".into(),
                holder: "pid 1".into(),
            },
            Error::DataDir {
                path: "x".into(),
                reason: "x".into(),
            },
            Error::GateOpenerTaken,
        ];
        let mut codes: Vec<&str> = errors.iter().map(Error::code).collect();
        assert_eq!(codes[6], "resume_refused");
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
        for e in &errors {
            let text = e.to_string();
            assert_eq!(
                text.chars().next(),
                text.chars().next().map(|c| c.to_ascii_lowercase()),
                "{text}"
            );
        }
    }

    #[test]
    fn retryable_split() {
        assert!(Error::Interrupted { action: "resume" }.is_retryable());
        assert!(!Error::UnknownItem("x".into()).is_retryable());
        assert!(
            !Error::Tampered {
                record_id: 3,
                reason: "hash".into()
            }
            .is_retryable()
        );
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(Error::Database(busy).is_retryable());
    }
}
