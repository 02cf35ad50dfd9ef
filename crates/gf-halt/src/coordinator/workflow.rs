//! The operator's recovery workflow, as every front end (HTTP API, console, CLI) drives it.
//!
//! The primitives stay strict — [`HaltCoordinator::begin_recovery`] only from Halted,
//! [`HaltCoordinator::complete_item`] and [`HaltCoordinator::resume`] only while
//! Recovering — and the workflow rule lives here, once: an operator who works the
//! checklist or asks to resume while the state is Halted opens the checklist in their own
//! name first (Halted → Recovering, journaled and published like `begin_recovery`). Every
//! other rule (item order, `confirm_resume` last, no breached condition, the two-person
//! rule) is the primitives' and applies unchanged.

use gf_core::HaltState;

use super::HaltCoordinator;
use crate::checklist::ChecklistItem;
use crate::error::{Error, validate_operator};

impl HaltCoordinator {
    /// Completes a checklist item for `operator`, starting the recovery in their name
    /// first when the state is Halted.
    ///
    /// # Errors
    /// [`Error::InvalidOperator`]; [`Error::NotAllowed`] while the halt actions still run
    /// (Halting) or once Running; the errors of [`HaltCoordinator::begin_recovery`] and
    /// [`HaltCoordinator::complete_item`].
    pub async fn recover_and_complete_item(
        &self,
        item_id: &str,
        operator: &str,
        note: Option<&str>,
    ) -> Result<ChecklistItem, Error> {
        self.ensure_recovering(operator).await?;
        self.complete_item(item_id, operator, note).await
    }

    /// Resumes trading for `operator`, starting the recovery in their name first when the
    /// state is Halted (so a refused resume leaves the state Recovering, with the refusal
    /// journaled).
    ///
    /// # Errors
    /// [`Error::InvalidOperator`]; [`Error::IllegalTransition`] while Halting or Running;
    /// [`Error::ResumeRefused`] listing what is outstanding; the errors of
    /// [`HaltCoordinator::begin_recovery`] and [`HaltCoordinator::resume`].
    pub async fn recover_and_resume(&self, operator: &str) -> Result<(), Error> {
        self.ensure_recovering(operator).await?;
        self.resume(operator).await
    }

    /// Halted → Recovering in `operator`'s name; nothing in any other state. Another
    /// operator starting the recovery first is not an error: the checklist is open.
    async fn ensure_recovering(&self, operator: &str) -> Result<(), Error> {
        validate_operator(operator)?;
        if self.state() != HaltState::Halted {
            return Ok(());
        }
        match self.begin_recovery(operator).await {
            Err(Error::IllegalTransition {
                from: HaltState::Recovering,
                ..
            })
            | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
