//! Where actions become API calls: [`execute`] performs one [`Action`] against a
//! [`ConsoleApi`] and returns the [`Msg`] carrying the daemon's answer.

use crate::api::ConsoleApi;
use crate::app::{Action, JOURNAL_LIMIT, Msg, Refresh};

/// Performs `action`; `None` for actions without a call (`None`, `Quit`).
///
/// Cancellation-safe in the sense that dropping the future abandons the request; a
/// mutation the daemon already received still takes effect and arrives on the feed.
pub async fn execute(api: &dyn ConsoleApi, action: Action) -> Option<Msg> {
    Some(match action {
        Action::None | Action::Quit => return None,
        Action::Refresh => Msg::Refreshed(Box::new(refresh(api).await)),
        Action::LoadJournal => Msg::Journal(api.journal(JOURNAL_LIMIT).await),
        Action::Halt { reason } => Msg::Halted(api.halt(&reason).await),
        Action::Complete { item, note } => {
            let result = api.complete_item(&item, note).await;
            Msg::Completed { item, result }
        }
        Action::Resume => Msg::Resumed(api.resume().await),
    })
}

async fn refresh(api: &dyn ConsoleApi) -> Result<Refresh, crate::api::ApiError> {
    Ok(Refresh {
        identity: api.whoami().await?,
        status: api.status().await?,
        checklist: api.checklist().await?,
        journal: api.journal(JOURNAL_LIMIT).await?,
    })
}
