//! End to end: a real paper daemon started in this process on a temporary data directory,
//! driven by the console's own client logic — keys through `handle_key`, actions through
//! `execute` over HTTP, answers and WebSocket frames through `update` — to halt, complete
//! every checklist item the daemon lists (confirm_resume last), resume, and see the
//! daemon go away (reconnect banner).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gf_console::api::{ConsoleApi, HttpApi};
use gf_console::app::{Action, Dialog, Level, Msg, Screen, State, handle_key, update};
use gf_console::exec::execute;
use gf_console::model::HaltState;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(30);

/// Runs an action and every follow-up action `update` asks for, as the runtime does.
async fn perform(state: &mut State, api: &dyn ConsoleApi, mut action: Action) {
    while let Some(msg) = execute(api, action).await {
        action = update(state, msg);
    }
}

async fn press(state: &mut State, api: &dyn ConsoleApi, code: KeyCode) {
    let action = handle_key(state, KeyEvent::from(code));
    perform(state, api, action).await;
}

async fn type_text(state: &mut State, api: &dyn ConsoleApi, text: &str) {
    for c in text.chars() {
        press(state, api, KeyCode::Char(c)).await;
    }
}

/// Folds feed messages into the state until `done` holds.
async fn pump_until(
    state: &mut State,
    api: &dyn ConsoleApi,
    rx: &mut mpsc::Receiver<Msg>,
    what: &str,
    done: impl Fn(&State) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(state) {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; state: {state:#?}"))
            .expect("the feeds stopped");
        let action = update(state, msg);
        perform(state, api, action).await;
    }
}

fn screen_text(state: &State) -> String {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| gf_console::ui::render(f, state)).unwrap();
    t.backend().to_string()
}

/// `GET path` on the real daemon, decoded with the shared wire type the console uses
/// ([`gf_api`]) and encoded again: it must give back exactly what the daemon sent — no
/// field the console's types do not know, none reshaped.
async fn decodes_losslessly<T>(url: &str, token: &str, path: &str) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let resp = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let raw: serde_json::Value = resp.json().await.unwrap();
    let typed: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("{path} does not decode: {e}\n{raw:#}"));
    assert_eq!(serde_json::to_value(&typed).unwrap(), raw, "{path}");
    typed
}

fn no_error(state: &State) {
    if let Some(n) = &state.notice {
        assert_ne!(n.level, Level::Error, "{}", n.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_complete_every_item_and_resume_against_a_real_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = gf_core::Config::default();
    config.api.bind = "127.0.0.1:0".parse().unwrap();
    config.general.data_dir = dir.path().join("data");
    config.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    config.market.replay_speed = rust_decimal::Decimal::TEN;
    let running = gf_daemon::app::start(
        config,
        gf_daemon::app::Scenario::Normal,
        Arc::new(gf_core::SystemClock),
    )
    .await
    .unwrap();
    let token = running
        .create_token("alice", gf_daemon::auth::Role::Operator)
        .unwrap();
    let url = running.url();
    let api = HttpApi::new(&url, &token).unwrap();
    let (tx, mut rx) = mpsc::channel(256);
    let feeds = gf_console::feed::spawn(&url, &token, &tx);
    drop(tx);
    let mut state = State::new(&url, Utc::now());

    // Start: the refresh and both feeds.
    perform(&mut state, &api, Action::Refresh).await;
    no_error(&state);
    assert_eq!(state.identity.as_ref().unwrap().name, "alice");
    assert_eq!(state.halt_state(), HaltState::Running);
    pump_until(&mut state, &api, &mut rx, "the dashboard feed", |s| {
        !s.snapshot.conditions.is_empty()
    })
    .await;
    assert!(screen_text(&state).contains("RUNNING"));
    // The daemon's frame carries its fleet: off here, so no fleet line or panel.
    let fleet = state
        .fleet
        .clone()
        .expect("the dashboard frame carries `fleet`");
    assert!(!fleet.enabled, "{fleet:?}");
    assert!(!screen_text(&state).contains("FLEET"));

    // Halt: H, the reason, Enter.
    press(&mut state, &api, KeyCode::Char('H')).await;
    type_text(&mut state, &api, "console end-to-end test").await;
    press(&mut state, &api, KeyCode::Enter).await;
    no_error(&state);
    assert!(
        state.notice.as_ref().unwrap().text.contains("started"),
        "{:?}",
        state.notice
    );
    pump_until(&mut state, &api, &mut rx, "Halted on the feed", |s| {
        s.halt_state() == HaltState::Halted
    })
    .await;
    let halt = state.status.core.halt.clone().unwrap();
    assert_eq!(halt.source, "console:alice");
    assert_eq!(halt.reason, "console end-to-end test");
    assert!(screen_text(&state).contains("HALTED"));

    // Recovery: complete every item the daemon lists, in the order the cursor offers.
    press(&mut state, &api, KeyCode::Char('2')).await;
    assert_eq!(state.screen, Screen::Recovery);
    let total = state.items().len();
    assert!(total >= 7, "{:?}", state.items());
    assert_eq!(state.items().last().unwrap().id, "confirm_resume");
    assert!(screen_text(&state).contains("DISABLED"));
    let mut completed = Vec::new();
    while let Some(open) = state.items().iter().position(|i| !i.is_done()) {
        assert!(completed.len() < total, "the checklist does not shrink");
        assert_eq!(
            state.selected, open,
            "the cursor waits on the next open item"
        );
        let id = state.items()[open].id.clone();
        press(&mut state, &api, KeyCode::Enter).await;
        assert!(
            matches!(&state.dialog, Dialog::Complete { item, .. } if *item == id),
            "{:?}",
            state.dialog
        );
        type_text(&mut state, &api, &format!("checked {id}")).await;
        press(&mut state, &api, KeyCode::Enter).await;
        no_error(&state);
        completed.push(id);
    }
    assert_eq!(completed.len(), total);
    assert_eq!(completed.last().map(String::as_str), Some("confirm_resume"));
    assert_eq!(state.halt_state(), HaltState::Recovering);
    assert!(state.status.core.checklist_missing.is_empty());
    for item in state.items() {
        assert_eq!(item.completed_by.as_deref(), Some("alice"), "{item:?}");
        assert_eq!(
            item.note.as_deref(),
            Some(format!("checked {}", item.id).as_str())
        );
    }
    assert!(
        state.resume_blockers().is_empty(),
        "{}",
        state.resume_blockers()
    );
    assert!(screen_text(&state).contains("READY"));

    // Every answer the console and the CLI read decodes with the shared wire types, with
    // nothing left over: a halt with its closure report, a worked checklist, journal
    // records with details and MACs.
    let status: gf_api::Status = decodes_losslessly(&url, &token, "/api/v1/halt/status").await;
    assert_eq!(status.core.state, HaltState::Recovering);
    assert!(status.core.halt.as_ref().unwrap().closure.is_some());
    assert_eq!(status.exchange_status, None, "paper mode");
    let checklist: gf_api::ChecklistReply =
        decodes_losslessly(&url, &token, "/api/v1/recovery/checklist").await;
    assert!(
        checklist
            .checklist
            .unwrap()
            .items
            .iter()
            .all(|i| i.is_done())
    );
    let conditions: gf_api::ConditionsReply =
        decodes_losslessly(&url, &token, "/api/v1/conditions").await;
    assert!(!conditions.conditions.is_empty());
    let journal: gf_api::JournalReply =
        decodes_losslessly(&url, &token, "/api/v1/journal?limit=1000").await;
    assert!(journal.records.iter().any(|r| r.kind == "checklist_step"));
    let me: gf_api::Identity = decodes_losslessly(&url, &token, "/api/v1/whoami").await;
    assert!(me.can_operate());

    // Resume: R.
    press(&mut state, &api, KeyCode::Char('R')).await;
    no_error(&state);
    assert_eq!(state.halt_state(), HaltState::Running);
    assert!(state.status.core.gate_open);
    assert_eq!(state.status.core.resumed_by.as_deref(), Some("alice"));
    assert_eq!(running.daemon.halt.state(), gf_core::HaltState::Running);
    pump_until(&mut state, &api, &mut rx, "Running on the feed", |s| {
        s.halt_state() == HaltState::Running && s.status.core.gate_open
    })
    .await;

    // The journal names the console and the operator.
    press(&mut state, &api, KeyCode::Char('3')).await;
    no_error(&state);
    let journal = serde_json::to_string(
        &state
            .journal
            .iter()
            .map(|r| (r.actor.clone(), r.kind.clone(), r.detail.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(journal.contains("console:alice"), "{journal}");
    assert!(journal.contains("checklist_step"), "{journal}");

    // The daemon goes away: a banner, not a crash.
    running.stop().await;
    pump_until(&mut state, &api, &mut rx, "the unreachable banner", |s| {
        s.is_disconnected()
    })
    .await;
    assert!(screen_text(&state).contains("DAEMON UNREACHABLE"));
    press(&mut state, &api, KeyCode::Char('r')).await;
    assert!(
        state
            .notice
            .as_ref()
            .is_some_and(|n| n.level == Level::Error && n.text.contains("refresh failed")),
        "{:?}",
        state.notice
    );
    drop(feeds);
}
