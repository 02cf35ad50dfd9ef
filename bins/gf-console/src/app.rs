//! The console's state and its two update functions, in the Elm manner:
//! [`handle_key`] turns a key into an [`Action`] (an API call to make, or nothing), and
//! [`update`] folds a [`Msg`] (an API answer, a WebSocket frame, a clock tick) into the
//! [`State`]. Neither performs I/O; [`crate::exec::execute`] does, and rendering
//! ([`crate::ui::render`]) only reads the state.

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::api::ApiError;
use crate::model::{
    Checklist, ChecklistReply, FleetStatus, Frame, GatewaySummary, HaltOutcome, HaltState,
    Identity, JournalRecord, Num, ResumeRefusal, Snapshot, Status,
};

/// Longest halt reason the daemon accepts, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest checklist note the daemon accepts, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// Journal records fetched.
pub const JOURNAL_LIMIT: usize = 200;
/// The checklist item that must come last.
pub const CONFIRM_RESUME: &str = "confirm_resume";

/// The main screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Screen {
    /// State, conditions, positions, alerts.
    #[default]
    Overview,
    /// The recovery checklist and resume.
    Recovery,
    /// The journal.
    Journal,
}

impl Screen {
    /// Every screen, in tab order, with its number key.
    pub const ALL: [(Screen, char, &'static str); 3] = [
        (Screen::Overview, '1', "Overview"),
        (Screen::Recovery, '2', "Recovery"),
        (Screen::Journal, '3', "Journal"),
    ];

    fn next(self) -> Screen {
        match self {
            Screen::Overview => Screen::Recovery,
            Screen::Recovery => Screen::Journal,
            Screen::Journal => Screen::Overview,
        }
    }

    fn prev(self) -> Screen {
        self.next().next()
    }
}

/// A dialog over the current screen; while one is open it receives every key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Dialog {
    /// None open.
    #[default]
    None,
    /// Halt: the reason being typed.
    Halt {
        /// The reason so far.
        reason: String,
        /// Shown when Enter was pressed with an empty reason.
        error: Option<String>,
    },
    /// Completing a checklist item: the optional note being typed.
    Complete {
        /// Item id.
        item: String,
        /// Item title.
        title: String,
        /// The note so far.
        note: String,
    },
    /// The key list.
    Help,
}

/// The two WebSockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `/ws/halt-status`.
    HaltStatus,
    /// `/ws/dashboard`.
    Dashboard,
}

/// One WebSocket's connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Link {
    /// Not connected yet.
    #[default]
    Connecting,
    /// Frames are arriving.
    Up,
    /// Lost; retrying.
    Down {
        /// Why.
        error: String,
        /// Seconds until the next attempt.
        retry_in_secs: u64,
    },
}

/// What a WebSocket task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// Connected.
    Connected(Channel),
    /// Disconnected or could not connect; the task retries after `retry_in_secs`.
    Down {
        /// Which.
        channel: Channel,
        /// Why.
        error: String,
        /// Seconds until the next attempt.
        retry_in_secs: u64,
    },
    /// A frame.
    Frame(Box<Frame>),
    /// A frame that is not valid JSON of a known shape.
    BadFrame(String),
}

/// Everything a refresh fetches.
#[derive(Debug, Clone, PartialEq)]
pub struct Refresh {
    /// The token's operator.
    pub identity: Identity,
    /// Halt status.
    pub status: Status,
    /// Checklist.
    pub checklist: ChecklistReply,
    /// Recent journal records, newest first.
    pub journal: Vec<JournalRecord>,
}

/// Something that happened, folded into the state by [`update`].
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// The wall clock (for "how long ago").
    Tick(DateTime<Utc>),
    /// A WebSocket event.
    Feed(FeedEvent),
    /// A full refresh's answer.
    Refreshed(Box<Result<Refresh, ApiError>>),
    /// The journal's answer.
    Journal(Result<Vec<JournalRecord>, ApiError>),
    /// The halt's answer.
    Halted(Result<HaltOutcome, ApiError>),
    /// A checklist item's answer.
    Completed {
        /// Item id.
        item: String,
        /// The answer.
        result: Result<(), ApiError>,
    },
    /// The resume's answer.
    Resumed(Result<Status, ApiError>),
}

/// What the runtime must do next. Only [`crate::exec::execute`] turns these into calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Leave the console.
    Quit,
    /// Fetch identity, status, checklist and journal.
    Refresh,
    /// Fetch the journal.
    LoadJournal,
    /// `POST /api/v1/halt`.
    Halt {
        /// Why.
        reason: String,
    },
    /// `POST /api/v1/recovery/checklist/{item}/complete`.
    Complete {
        /// Item id.
        item: String,
        /// Optional note.
        note: Option<String>,
    },
    /// `POST /api/v1/resume`.
    Resume,
}

/// How a notice is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Neutral.
    Info,
    /// Something succeeded.
    Success,
    /// Something failed.
    Error,
}

/// The one-line message under the header: the result of the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Colour.
    pub level: Level,
    /// Text.
    pub text: String,
}

/// What stands between the operator and a resume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blockers {
    /// The state does not allow it (Running, Halting).
    pub state: Option<String>,
    /// Checklist items not completed, by title.
    pub items: Vec<String>,
    /// Conditions breached now, by id.
    pub conditions: Vec<String>,
}

impl Blockers {
    /// `true` when nothing blocks a resume.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.state.is_none() && self.items.is_empty() && self.conditions.is_empty()
    }
}

impl std::fmt::Display for Blockers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(s) = &self.state {
            parts.push(s.clone());
        }
        if !self.items.is_empty() {
            parts.push(format!(
                "{} item(s) missing: {}",
                self.items.len(),
                self.items.join(", ")
            ));
        }
        if !self.conditions.is_empty() {
            parts.push(format!(
                "condition breached: {}",
                self.conditions.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Everything the console shows.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The daemon's base URL.
    pub url: String,
    /// The token's operator, once known.
    pub identity: Option<Identity>,
    /// The wall clock as of the last tick.
    pub now: DateTime<Utc>,
    /// Halt status (state, halt info, missing items).
    pub status: Status,
    /// `false` until the daemon has answered once.
    pub have_status: bool,
    /// The checklist of the current (or last) halt.
    pub checklist: Option<Checklist>,
    /// Conditions, portfolio and alerts from the dashboard feed.
    pub snapshot: Snapshot,
    /// Realised P&L from the dashboard feed.
    pub realised_pnl: Num,
    /// The order gateway (traders, newest orders) from the dashboard feed; `None` until
    /// a frame carries it (a daemon without a gateway never sends one).
    pub gateway: Option<GatewaySummary>,
    /// The fleet (fleet halt, nodes) from the dashboard feed; `None` until a frame carries
    /// it (a daemon from before the fleet never sends one), `enabled: false` when off.
    pub fleet: Option<FleetStatus>,
    /// Journal records, newest first.
    pub journal: Vec<JournalRecord>,
    /// First journal row shown.
    pub journal_scroll: usize,
    /// The screen shown.
    pub screen: Screen,
    /// The dialog open over it.
    pub dialog: Dialog,
    /// The checklist row selected.
    pub selected: usize,
    /// `/ws/halt-status`.
    pub status_link: Link,
    /// `/ws/dashboard`.
    pub dashboard_link: Link,
    /// The result of the last action.
    pub notice: Option<Notice>,
    /// An action in flight (`halt`, `resume`, …), shown until its answer.
    pub pending: Option<String>,
    /// What the daemon said when it last refused to resume.
    pub refusal: Option<String>,
}

impl State {
    /// A console for the daemon at `url`, knowing nothing yet.
    #[must_use]
    pub fn new(url: &str, now: DateTime<Utc>) -> Self {
        Self {
            url: url.to_owned(),
            identity: None,
            now,
            status: Status::default(),
            have_status: false,
            checklist: None,
            snapshot: Snapshot::default(),
            realised_pnl: Num::default(),
            gateway: None,
            fleet: None,
            journal: Vec::new(),
            journal_scroll: 0,
            screen: Screen::Overview,
            dialog: Dialog::None,
            selected: 0,
            status_link: Link::Connecting,
            dashboard_link: Link::Connecting,
            notice: None,
            pending: None,
            refusal: None,
        }
    }

    /// The state shown (from the last status).
    #[must_use]
    pub fn halt_state(&self) -> HaltState {
        self.status.core.state
    }

    /// The checklist's items (empty before the first halt).
    #[must_use]
    pub fn items(&self) -> &[crate::model::ChecklistItem] {
        self.checklist.as_ref().map_or(&[], |c| c.items.as_slice())
    }

    /// The title of item `id`, or the id itself.
    #[must_use]
    pub fn title_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.items()
            .iter()
            .find(|i| i.id == id)
            .map_or(id, |i| i.title.as_str())
    }

    /// Why resume is disabled right now; empty when the daemon would accept it.
    #[must_use]
    pub fn resume_blockers(&self) -> Blockers {
        let state = self.halt_state();
        let not_now = match state {
            HaltState::Running => Some("trading is already running"),
            HaltState::Halting => Some("the halt is still closing orders"),
            HaltState::Unknown => Some("the daemon's state is not known"),
            HaltState::Halted | HaltState::Recovering => None,
        };
        if let Some(why) = not_now {
            return Blockers {
                state: Some(why.to_owned()),
                ..Blockers::default()
            };
        }
        Blockers {
            state: None,
            items: self
                .status
                .core
                .checklist_missing
                .iter()
                .map(|id| self.title_of(id).to_owned())
                .collect(),
            conditions: self
                .snapshot
                .conditions
                .iter()
                .filter(|c| c.triggered)
                .map(|c| c.id.clone())
                .collect(),
        }
    }

    /// Whether the daemon is unreachable (either WebSocket down).
    #[must_use]
    pub fn is_disconnected(&self) -> bool {
        matches!(self.status_link, Link::Down { .. })
            || matches!(self.dashboard_link, Link::Down { .. })
    }

    fn operator(&self) -> String {
        self.identity
            .as_ref()
            .map_or_else(|| "you".to_owned(), |i| i.name.clone())
    }

    fn set_notice(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some(Notice {
            level,
            text: text.into(),
        });
    }

    fn apply_status(&mut self, status: Status, checklist: Option<Checklist>) {
        self.status = status;
        self.have_status = true;
        if checklist.is_some() || self.status.core.halt.is_none() {
            self.checklist = checklist;
        }
        let n = self.items().len();
        if self.selected >= n {
            self.selected = n.saturating_sub(1);
        }
        if self.status.core.state == HaltState::Running {
            self.refusal = None;
        }
    }

    fn select_next_missing(&mut self) {
        if let Some(i) = self.items().iter().position(|i| !i.is_done()) {
            self.selected = i;
        }
    }
}

fn api_error_text(e: &ApiError) -> String {
    match e {
        ApiError::Api {
            code,
            message,
            detail,
            ..
        } if code == "resume_refused" => {
            let refusal: ResumeRefusal = detail
                .clone()
                .and_then(|d| serde_json::from_value(d).ok())
                .unwrap_or_default();
            let mut parts = Vec::new();
            if !refusal.missing_items.is_empty() {
                parts.push(format!("missing {}", refusal.missing_items.join(", ")));
            }
            if !refusal.breached_conditions.is_empty() {
                parts.push(format!(
                    "breached {}",
                    refusal.breached_conditions.join(", ")
                ));
            }
            if let Some(v) = refusal.two_person_violation {
                parts.push(format!("two-person rule: {v}"));
            }
            if parts.is_empty() {
                message.clone()
            } else {
                format!("daemon refused resume: {}", parts.join("; "))
            }
        }
        other => other.to_string(),
    }
}

/// Turns a key into an action, changing only what the screen shows (screen, dialog,
/// selection, typed text). Never performs I/O.
pub fn handle_key(state: &mut State, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    match std::mem::take(&mut state.dialog) {
        Dialog::None => {}
        Dialog::Help => {
            if !matches!(
                key.code,
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?' | 'q')
            ) {
                state.dialog = Dialog::Help;
            }
            return Action::None;
        }
        Dialog::Halt { mut reason, error } => {
            return match key.code {
                KeyCode::Esc => {
                    state.set_notice(Level::Info, "halt cancelled");
                    Action::None
                }
                KeyCode::Enter if reason.trim().is_empty() => {
                    state.dialog = Dialog::Halt {
                        reason,
                        error: Some("type a reason first".to_owned()),
                    };
                    Action::None
                }
                KeyCode::Enter => {
                    state.pending = Some("halt".to_owned());
                    state.set_notice(Level::Info, "halt requested…");
                    Action::Halt {
                        reason: reason.trim().to_owned(),
                    }
                }
                KeyCode::Backspace => {
                    reason.pop();
                    state.dialog = Dialog::Halt { reason, error };
                    Action::None
                }
                KeyCode::Char(c) => {
                    if reason.chars().count() < MAX_REASON_CHARS {
                        reason.push(c);
                    }
                    state.dialog = Dialog::Halt {
                        reason,
                        error: None,
                    };
                    Action::None
                }
                _ => {
                    state.dialog = Dialog::Halt { reason, error };
                    Action::None
                }
            };
        }
        Dialog::Complete {
            item,
            title,
            mut note,
        } => {
            return match key.code {
                KeyCode::Esc => Action::None,
                KeyCode::Enter => {
                    state.pending = Some(format!("complete {item}"));
                    let note = note.trim();
                    Action::Complete {
                        item,
                        note: (!note.is_empty()).then(|| note.to_owned()),
                    }
                }
                KeyCode::Backspace => {
                    note.pop();
                    state.dialog = Dialog::Complete { item, title, note };
                    Action::None
                }
                KeyCode::Char(c) => {
                    if note.chars().count() < MAX_NOTE_CHARS {
                        note.push(c);
                    }
                    state.dialog = Dialog::Complete { item, title, note };
                    Action::None
                }
                _ => {
                    state.dialog = Dialog::Complete { item, title, note };
                    Action::None
                }
            };
        }
    }

    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') => state.dialog = Dialog::Help,
        KeyCode::Char('H' | 'h') => {
            state.dialog = Dialog::Halt {
                reason: String::new(),
                error: None,
            };
        }
        KeyCode::Char('R') => return resume(state),
        KeyCode::Char('r') => return Action::Refresh,
        KeyCode::Tab => return switch(state, state.screen.next()),
        KeyCode::BackTab => return switch(state, state.screen.prev()),
        KeyCode::Char(c) => {
            if let Some((screen, _, _)) = Screen::ALL.iter().find(|(_, k, _)| *k == c) {
                return switch(state, *screen);
            }
        }
        _ => {}
    }
    match state.screen {
        Screen::Overview => Action::None,
        Screen::Recovery => recovery_key(state, key.code),
        Screen::Journal => {
            let last = state.journal.len().saturating_sub(1);
            state.journal_scroll = match key.code {
                KeyCode::Up => state.journal_scroll.saturating_sub(1),
                KeyCode::Down => (state.journal_scroll + 1).min(last),
                KeyCode::PageUp => state.journal_scroll.saturating_sub(10),
                KeyCode::PageDown => (state.journal_scroll + 10).min(last),
                KeyCode::Home => 0,
                KeyCode::End => last,
                _ => state.journal_scroll,
            };
            Action::None
        }
    }
}

fn switch(state: &mut State, screen: Screen) -> Action {
    state.screen = screen;
    if screen == Screen::Journal {
        Action::LoadJournal
    } else {
        Action::None
    }
}

fn resume(state: &mut State) -> Action {
    let blockers = state.resume_blockers();
    if blockers.is_empty() {
        state.pending = Some("resume".to_owned());
        state.set_notice(Level::Info, "resume requested…");
        Action::Resume
    } else {
        state.set_notice(Level::Error, format!("resume is disabled: {blockers}"));
        Action::None
    }
}

fn recovery_key(state: &mut State, code: KeyCode) -> Action {
    let n = state.items().len();
    match code {
        KeyCode::Up | KeyCode::Char('k') => state.selected = state.selected.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => {
            state.selected = (state.selected + 1).min(n.saturating_sub(1));
        }
        KeyCode::Enter => {
            let Some(item) = state.items().get(state.selected).cloned() else {
                state.set_notice(Level::Info, "no checklist: nothing has halted yet");
                return Action::None;
            };
            if !state.halt_state().is_recoverable() {
                state.set_notice(
                    Level::Error,
                    format!(
                        "the checklist opens once halted; the daemon is {}",
                        state.halt_state()
                    ),
                );
            } else if let Some(by) = &item.completed_by {
                state.set_notice(
                    Level::Info,
                    format!("{} was already completed by {by}", item.title),
                );
            } else if item.id == CONFIRM_RESUME
                && let others = state
                    .items()
                    .iter()
                    .filter(|i| !i.is_done() && i.id != CONFIRM_RESUME)
                    .map(|i| i.title.clone())
                    .collect::<Vec<_>>()
                && !others.is_empty()
            {
                state.set_notice(
                    Level::Error,
                    format!("complete these first: {}", others.join(", ")),
                );
            } else {
                state.dialog = Dialog::Complete {
                    item: item.id,
                    title: item.title,
                    note: String::new(),
                };
            }
        }
        _ => {}
    }
    Action::None
}

/// Folds a message into the state; returns a follow-up action (a refresh after a
/// change, the journal after a halt-family event).
pub fn update(state: &mut State, msg: Msg) -> Action {
    match msg {
        Msg::Tick(now) => {
            state.now = now;
            Action::None
        }
        Msg::Feed(ev) => feed(state, ev),
        Msg::Refreshed(result) => {
            match *result {
                Ok(r) => {
                    state.identity = Some(r.identity);
                    state.apply_status(r.status, r.checklist.checklist);
                    state.journal = r.journal;
                    clamp_scroll(state);
                }
                Err(e) => state.set_notice(Level::Error, format!("refresh failed: {e}")),
            }
            Action::None
        }
        Msg::Journal(result) => {
            match result {
                Ok(records) => {
                    state.journal = records;
                    clamp_scroll(state);
                }
                Err(e) => state.set_notice(Level::Error, format!("journal: {e}")),
            }
            Action::None
        }
        Msg::Halted(result) => {
            state.pending = None;
            match result {
                Ok(out) => {
                    let text = if out.started {
                        format!(
                            "halt #{} started by console:{} — state {}",
                            out.halt_id,
                            state.operator(),
                            out.state
                        )
                    } else {
                        format!(
                            "halt #{} was already in force; your reason was recorded on it",
                            out.halt_id
                        )
                    };
                    state.status.core.state = out.state;
                    match out.journal_error {
                        Some(j) => state.set_notice(
                            Level::Error,
                            format!("{text} (journal write failed: {j})"),
                        ),
                        None => state.set_notice(Level::Success, text),
                    }
                    Action::Refresh
                }
                Err(e) => {
                    state.set_notice(Level::Error, format!("halt failed: {e}"));
                    Action::None
                }
            }
        }
        Msg::Completed { item, result } => {
            state.pending = None;
            match result {
                Ok(()) => {
                    let who = state.operator();
                    let now = state.now;
                    let mut title = item.clone();
                    if let Some(list) = state.checklist.as_mut()
                        && let Some(entry) = list.items.iter_mut().find(|i| i.id == item)
                    {
                        entry.completed_by = Some(who);
                        entry.completed_at = Some(now);
                        title.clone_from(&entry.title);
                    }
                    state.status.core.checklist_missing.retain(|m| *m != item);
                    if state.status.core.state == HaltState::Halted {
                        state.status.core.state = HaltState::Recovering;
                    }
                    state.select_next_missing();
                    state.set_notice(Level::Success, format!("completed: {title}"));
                    Action::Refresh
                }
                Err(e) => {
                    state.set_notice(Level::Error, format!("{item} not completed: {e}"));
                    Action::Refresh
                }
            }
        }
        Msg::Resumed(result) => {
            state.pending = None;
            match result {
                Ok(status) => {
                    state.apply_status(status, None);
                    state.refusal = None;
                    state.set_notice(Level::Success, "resumed: trading is running");
                    Action::Refresh
                }
                Err(e) => {
                    let text = api_error_text(&e);
                    if e.code() == Some("resume_refused") {
                        state.refusal = Some(text.clone());
                    }
                    state.set_notice(Level::Error, text);
                    Action::Refresh
                }
            }
        }
    }
}

fn clamp_scroll(state: &mut State) {
    state.journal_scroll = state
        .journal_scroll
        .min(state.journal.len().saturating_sub(1));
}

fn feed(state: &mut State, ev: FeedEvent) -> Action {
    match ev {
        FeedEvent::Connected(channel) => {
            let was_down = state.is_disconnected();
            *link(state, channel) = Link::Up;
            if channel == Channel::HaltStatus && was_down {
                state.set_notice(Level::Success, "reconnected to the daemon");
            }
            if channel == Channel::HaltStatus {
                Action::Refresh
            } else {
                Action::None
            }
        }
        FeedEvent::Down {
            channel,
            error,
            retry_in_secs,
        } => {
            *link(state, channel) = Link::Down {
                error,
                retry_in_secs,
            };
            Action::None
        }
        FeedEvent::Frame(frame) => match *frame {
            Frame::Status { status, checklist } => {
                state.status_link = Link::Up;
                state.apply_status(status, checklist);
                Action::LoadJournal
            }
            Frame::Dashboard {
                snapshot,
                status,
                checklist,
                portfolio,
                gateway,
                fleet,
            } => {
                state.dashboard_link = Link::Up;
                state.apply_status(status, checklist);
                state.snapshot = *snapshot;
                state.realised_pnl = portfolio.realised_pnl;
                state.gateway = gateway;
                state.fleet = fleet.map(|f| *f);
                Action::None
            }
            Frame::Other => Action::None,
        },
        FeedEvent::BadFrame(e) => {
            state.set_notice(Level::Error, format!("ignored a malformed frame: {e}"));
            Action::None
        }
    }
}

fn link(state: &mut State, channel: Channel) -> &mut Link {
    match channel {
        Channel::HaltStatus => &mut state.status_link,
        Channel::Dashboard => &mut state.dashboard_link,
    }
}
