//! Update-function tests: key sequences go through `handle_key`, the resulting action
//! through `execute` against a mocked [`ConsoleApi`], and the answer through `update` —
//! so each test pins which API calls a sequence of keys makes (a mock with no
//! expectation fails the test on any call).

use mockall::predicate::eq;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::json;

use crate::api::{ApiError, MockConsoleApi};
use crate::app::{
    Action, Channel, Dialog, FeedEvent, Level, Link, Msg, Screen, State, handle_key, update,
};
use crate::exec::execute;
use crate::fixtures::{self, console};
use crate::model::{ChecklistReply, HaltOutcome, HaltState, HaltStatus, Identity, Status};

fn k(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn text(s: &str) -> Vec<KeyEvent> {
    s.chars().map(|c| k(KeyCode::Char(c))).collect()
}

/// Presses `keys` in order; each action is executed against `api` and its answer
/// folded in. Returns the follow-up actions `update` asked for.
async fn press(state: &mut State, api: &MockConsoleApi, keys: &[KeyEvent]) -> Vec<Action> {
    let mut follow = Vec::new();
    for key in keys {
        let action = handle_key(state, *key);
        if let Some(msg) = execute(api, action).await {
            follow.push(update(state, msg));
        }
    }
    follow
}

fn notice(state: &State) -> String {
    state
        .notice
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn halt_takes_h_the_reason_and_enter() {
    let mut api = MockConsoleApi::new();
    api.expect_halt()
        .with(eq("XRP feed frozen"))
        .times(1)
        .returning(|_| {
            Ok(HaltOutcome {
                halt_id: 4,
                started: true,
                state: HaltState::Halting,
                journal_error: None,
                durable: true,
            })
        });
    let mut state = console(HaltState::Running);
    let mut keys = vec![k(KeyCode::Char('H'))];
    keys.extend(text("XRP feed frozen"));
    keys.push(k(KeyCode::Enter));
    assert_eq!(keys.len(), 2 + "XRP feed frozen".len());
    let follow = press(&mut state, &api, &keys).await;
    assert_eq!(follow, vec![Action::Refresh]);
    assert_eq!(state.halt_state(), HaltState::Halting);
    assert_eq!(state.dialog, Dialog::None);
    assert_eq!(state.pending, None);
    assert!(
        notice(&state).contains("halt #4 started by console:alice"),
        "{}",
        notice(&state)
    );
}

#[tokio::test]
async fn lowercase_h_backspace_and_trimmed_reason() {
    let mut api = MockConsoleApi::new();
    api.expect_halt()
        .with(eq("manual"))
        .times(1)
        .returning(|_| Ok(HaltOutcome::default()));
    let mut state = console(HaltState::Running);
    let mut keys = vec![k(KeyCode::Char('h'))];
    keys.extend(text("  manualx"));
    keys.push(k(KeyCode::Backspace));
    keys.push(k(KeyCode::Enter));
    press(&mut state, &api, &keys).await;
}

#[tokio::test]
async fn escape_or_an_empty_reason_halts_nothing() {
    let api = MockConsoleApi::new();
    let mut state = console(HaltState::Running);
    let mut keys = vec![k(KeyCode::Char('H'))];
    keys.extend(text("oops"));
    keys.push(k(KeyCode::Esc));
    press(&mut state, &api, &keys).await;
    assert_eq!(state.dialog, Dialog::None);
    assert_eq!(notice(&state), "halt cancelled");

    press(
        &mut state,
        &api,
        &[
            k(KeyCode::Char('H')),
            k(KeyCode::Char(' ')),
            k(KeyCode::Enter),
        ],
    )
    .await;
    assert!(
        matches!(&state.dialog, Dialog::Halt { error: Some(e), .. } if e.contains("reason")),
        "{:?}",
        state.dialog
    );
}

#[tokio::test]
async fn a_refused_halt_shows_the_daemons_answer() {
    let mut api = MockConsoleApi::new();
    api.expect_halt().times(1).returning(|_| {
        Err(ApiError::Api {
            status: 403,
            code: "forbidden".into(),
            message: "carol has role viewer; this needs operator".into(),
            detail: None,
        })
    });
    let mut state = console(HaltState::Running);
    let mut keys = vec![k(KeyCode::Char('H'))];
    keys.extend(text("x"));
    keys.push(k(KeyCode::Enter));
    let follow = press(&mut state, &api, &keys).await;
    assert_eq!(follow, vec![Action::None]);
    assert_eq!(state.halt_state(), HaltState::Running);
    let n = state.notice.clone().unwrap();
    assert_eq!(n.level, Level::Error);
    assert!(n.text.contains("needs operator"), "{}", n.text);
}

#[tokio::test]
async fn enter_on_the_recovery_screen_completes_the_selected_item_with_a_note() {
    let mut api = MockConsoleApi::new();
    api.expect_complete_item()
        .withf(|item, note| {
            item == "review_market_conditions" && note.as_deref() == Some("spreads normal")
        })
        .times(1)
        .returning(|_, _| Ok(()));
    let mut state = console(HaltState::Halted);
    let mut keys = vec![k(KeyCode::Char('2')), k(KeyCode::Down), k(KeyCode::Enter)];
    keys.extend(text("spreads normal"));
    keys.push(k(KeyCode::Enter));
    let follow = press(&mut state, &api, &keys).await;
    assert_eq!(follow, vec![Action::Refresh]);
    assert_eq!(state.screen, Screen::Recovery);
    let item = &state.items()[1];
    assert_eq!(item.completed_by.as_deref(), Some("alice"));
    assert_eq!(item.completed_at, Some(fixtures::now()));
    assert!(!state.status.core.checklist_missing.contains(&item.id));
    // Completing from Halted begins recovery; the cursor goes to the first open item.
    assert_eq!(state.halt_state(), HaltState::Recovering);
    assert_eq!(state.selected, 0);
}

#[tokio::test]
async fn enter_twice_completes_without_a_note_and_k_j_move() {
    let mut api = MockConsoleApi::new();
    api.expect_complete_item()
        .withf(|item, note| item == "review_positions_pnl" && note.is_none())
        .times(1)
        .returning(|_, _| Ok(()));
    let mut state = console(HaltState::Halted);
    let keys = [
        k(KeyCode::Char('2')),
        k(KeyCode::Char('j')),
        k(KeyCode::Char('j')),
        k(KeyCode::Char('j')),
        k(KeyCode::Char('k')),
        k(KeyCode::Enter),
        k(KeyCode::Enter),
    ];
    press(&mut state, &api, &keys).await;
}

#[tokio::test]
async fn the_checklist_is_closed_while_running_or_halting_and_done_items_stay_done() {
    let api = MockConsoleApi::new();
    for hs in [HaltState::Running, HaltState::Halting] {
        let mut state = console(hs);
        state.selected = 0;
        if hs == HaltState::Running {
            // Every item of the last halt is done; make one open to reach the state check.
            state.checklist.as_mut().unwrap().items[0].completed_by = None;
        }
        press(
            &mut state,
            &api,
            &[k(KeyCode::Char('2')), k(KeyCode::Enter)],
        )
        .await;
        assert_eq!(state.dialog, Dialog::None, "{hs}");
        assert!(
            notice(&state).contains("opens once halted"),
            "{hs}: {}",
            notice(&state)
        );
    }
    let mut state = console(HaltState::Recovering);
    state.selected = 0;
    press(
        &mut state,
        &api,
        &[k(KeyCode::Char('2')), k(KeyCode::Enter)],
    )
    .await;
    assert!(notice(&state).contains("already completed by alice"));
}

#[tokio::test]
async fn confirm_resume_before_the_others_is_refused_locally_naming_them() {
    let api = MockConsoleApi::new();
    let mut state = console(HaltState::Recovering);
    press(&mut state, &api, &[k(KeyCode::Char('2'))]).await;
    for _ in 0..10 {
        press(&mut state, &api, &[k(KeyCode::Down)]).await;
    }
    assert_eq!(state.items()[state.selected].id, "confirm_resume");
    press(&mut state, &api, &[k(KeyCode::Enter)]).await;
    assert_eq!(state.dialog, Dialog::None);
    let n = notice(&state);
    assert!(n.contains("complete these first"), "{n}");
    assert!(n.contains("Check API connectivity"), "{n}");
}

#[tokio::test]
async fn resume_is_disabled_with_the_missing_items_named() {
    let api = MockConsoleApi::new();
    let mut state = console(HaltState::Recovering);
    press(&mut state, &api, &[k(KeyCode::Char('R'))]).await;
    let n = state.notice.clone().unwrap();
    assert_eq!(n.level, Level::Error);
    assert!(n.text.starts_with("resume is disabled"), "{}", n.text);
    assert!(n.text.contains("Confirm resume"), "{}", n.text);
    assert!(n.text.contains("Check the account balance"), "{}", n.text);

    let mut running = console(HaltState::Running);
    press(&mut running, &api, &[k(KeyCode::Char('R'))]).await;
    assert!(notice(&running).contains("already running"));
}

fn all_done(state: &mut State) {
    for i in &mut state.checklist.as_mut().unwrap().items {
        i.completed_by = Some("alice".into());
    }
    state.status.core.checklist_missing.clear();
}

#[tokio::test]
async fn a_breached_condition_disables_resume() {
    let api = MockConsoleApi::new();
    let mut state = console(HaltState::Halted);
    all_done(&mut state);
    press(&mut state, &api, &[k(KeyCode::Char('R'))]).await;
    assert!(
        notice(&state).contains("condition breached: market_data_staleness"),
        "{}",
        notice(&state)
    );
}

#[tokio::test]
async fn r_resumes_once_everything_is_done() {
    let mut api = MockConsoleApi::new();
    api.expect_resume().times(1).returning(|| {
        Ok(Status {
            core: HaltStatus {
                state: HaltState::Running,
                gate_open: true,
                resumed_by: Some("alice".into()),
                ..HaltStatus::default()
            },
            ..Status::default()
        })
    });
    let mut state = console(HaltState::Recovering);
    all_done(&mut state);
    state.refusal = Some("old".into());
    let follow = press(&mut state, &api, &[k(KeyCode::Char('R'))]).await;
    assert_eq!(follow, vec![Action::Refresh]);
    assert_eq!(state.halt_state(), HaltState::Running);
    assert_eq!(state.refusal, None);
    assert_eq!(notice(&state), "resumed: trading is running");
}

#[tokio::test]
async fn a_refused_resume_shows_the_daemons_reason() {
    let mut api = MockConsoleApi::new();
    api.expect_resume().times(1).returning(|| {
        Err(ApiError::Api {
            status: 409,
            code: "resume_refused".into(),
            message: "resume refused".into(),
            detail: Some(json!({
                "missing_items": [],
                "breached_conditions": ["max_daily_drawdown"],
                "two_person_violation": "\"alice\" resumes but also completed other items",
            })),
        })
    });
    let mut state = console(HaltState::Recovering);
    all_done(&mut state);
    press(&mut state, &api, &[k(KeyCode::Char('R'))]).await;
    let refusal = state.refusal.clone().unwrap();
    assert!(refusal.contains("breached max_daily_drawdown"), "{refusal}");
    assert!(refusal.contains("two-person rule"), "{refusal}");
    assert_eq!(state.halt_state(), HaltState::Recovering);
}

#[tokio::test]
async fn the_journal_screen_loads_and_scrolls() {
    let mut api = MockConsoleApi::new();
    api.expect_journal()
        .with(eq(crate::app::JOURNAL_LIMIT))
        .times(1)
        .returning(|_| Ok(fixtures::journal()));
    let mut state = console(HaltState::Halted);
    state.journal.clear();
    press(&mut state, &api, &[k(KeyCode::Char('3'))]).await;
    assert_eq!(state.screen, Screen::Journal);
    assert_eq!(state.journal.len(), 10);
    struct Case {
        key: KeyCode,
        scroll: usize,
    }
    let cases = [
        Case {
            key: KeyCode::Down,
            scroll: 1,
        },
        Case {
            key: KeyCode::PageDown,
            scroll: 9,
        },
        Case {
            key: KeyCode::Up,
            scroll: 8,
        },
        Case {
            key: KeyCode::Home,
            scroll: 0,
        },
        Case {
            key: KeyCode::End,
            scroll: 9,
        },
        Case {
            key: KeyCode::PageUp,
            scroll: 0,
        },
    ];
    for c in cases {
        press(&mut state, &api, &[k(c.key)]).await;
        assert_eq!(state.journal_scroll, c.scroll, "{:?}", c.key);
    }
}

#[tokio::test]
async fn r_refreshes_everything() {
    let mut api = MockConsoleApi::new();
    api.expect_whoami().times(1).returning(|| {
        Ok(Identity {
            name: "dave".into(),
            role: "viewer".into(),
        })
    });
    api.expect_status().times(1).returning(|| {
        Ok(Status {
            core: HaltStatus {
                state: HaltState::Halted,
                ..HaltStatus::default()
            },
            ..Status::default()
        })
    });
    api.expect_checklist()
        .times(1)
        .returning(|| Ok(ChecklistReply::default()));
    api.expect_journal().times(1).returning(|_| Ok(Vec::new()));
    let mut state = State::new("http://x", fixtures::now());
    press(&mut state, &api, &[k(KeyCode::Char('r'))]).await;
    assert_eq!(state.identity.as_ref().unwrap().name, "dave");
    assert!(!state.identity.as_ref().unwrap().can_operate());
    assert_eq!(state.halt_state(), HaltState::Halted);
    assert!(state.have_status);
}

#[tokio::test]
async fn help_swallows_keys_until_closed_and_quit_keys_quit() {
    let api = MockConsoleApi::new();
    let mut state = console(HaltState::Running);
    press(
        &mut state,
        &api,
        &[k(KeyCode::Char('?')), k(KeyCode::Char('H'))],
    )
    .await;
    assert_eq!(state.dialog, Dialog::Help);
    press(&mut state, &api, &[k(KeyCode::Esc)]).await;
    assert_eq!(state.dialog, Dialog::None);

    assert_eq!(handle_key(&mut state, k(KeyCode::Char('q'))), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    state.dialog = Dialog::Halt {
        reason: "typing".into(),
        error: None,
    };
    assert_eq!(handle_key(&mut state, ctrl_c), Action::Quit);
    let mut release = k(KeyCode::Char('q'));
    release.kind = KeyEventKind::Release;
    assert_eq!(handle_key(&mut state, release), Action::None);
}

#[tokio::test]
async fn tab_cycles_screens_and_loads_the_journal() {
    let api = MockConsoleApi::new();
    let mut state = console(HaltState::Running);
    assert_eq!(handle_key(&mut state, k(KeyCode::Tab)), Action::None);
    assert_eq!(state.screen, Screen::Recovery);
    assert_eq!(handle_key(&mut state, k(KeyCode::Tab)), Action::LoadJournal);
    assert_eq!(state.screen, Screen::Journal);
    assert_eq!(handle_key(&mut state, k(KeyCode::BackTab)), Action::None);
    assert_eq!(state.screen, Screen::Recovery);
    press(&mut state, &api, &[k(KeyCode::Char('1'))]).await;
    assert_eq!(state.screen, Screen::Overview);
}

#[test]
fn losing_and_regaining_the_daemon_shows_then_clears_the_banner() {
    let mut state = console(HaltState::Halted);
    assert!(!state.is_disconnected());
    let down = FeedEvent::Down {
        channel: Channel::Dashboard,
        error: "Connection refused (os error 111)".into(),
        retry_in_secs: 2,
    };
    assert_eq!(update(&mut state, Msg::Feed(down)), Action::None);
    assert!(state.is_disconnected());
    assert_eq!(
        update(
            &mut state,
            Msg::Feed(FeedEvent::Connected(Channel::Dashboard))
        ),
        Action::None
    );
    assert_eq!(state.dashboard_link, Link::Up);
    let down = FeedEvent::Down {
        channel: Channel::HaltStatus,
        error: "reset".into(),
        retry_in_secs: 1,
    };
    update(&mut state, Msg::Feed(down));
    assert_eq!(
        update(
            &mut state,
            Msg::Feed(FeedEvent::Connected(Channel::HaltStatus))
        ),
        Action::Refresh
    );
    assert!(!state.is_disconnected());
    assert_eq!(notice(&state), "reconnected to the daemon");
}

#[test]
fn a_status_frame_updates_the_state_and_reloads_the_journal() {
    let mut state = console(HaltState::Running);
    let list = fixtures::checklist_json(3, 0);
    let frame = serde_json::from_value(json!({
        "type": "status",
        "status": fixtures::status_json(HaltState::Halted, &list),
        "checklist": list,
        "event": {"kind": "halt_triggered"},
    }))
    .unwrap();
    let action = update(&mut state, Msg::Feed(FeedEvent::Frame(Box::new(frame))));
    assert_eq!(action, Action::LoadJournal);
    assert_eq!(state.halt_state(), HaltState::Halted);
    assert_eq!(state.checklist.as_ref().unwrap().halt_id, 3);
    assert_eq!(state.status.core.checklist_missing.len(), 8);

    update(
        &mut state,
        Msg::Feed(FeedEvent::BadFrame("expected value".into())),
    );
    assert!(notice(&state).contains("malformed frame"));
    assert_eq!(state.halt_state(), HaltState::Halted);
}

#[test]
fn an_unreachable_refresh_is_a_notice_not_a_crash() {
    let mut state = console(HaltState::Halted);
    let err = ApiError::Unreachable {
        url: "http://127.0.0.1:8080".into(),
        message: "connection refused".into(),
    };
    update(&mut state, Msg::Refreshed(Box::new(Err(err))));
    assert!(notice(&state).contains("refresh failed"));
    assert_eq!(state.halt_state(), HaltState::Halted);
}

#[test]
fn dashboard_frames_carry_the_gateway_and_a_daemon_without_one_clears_it() {
    let state = console(HaltState::Running);
    let gateway = state
        .gateway
        .clone()
        .expect("the fixture's frame has a gateway");
    assert!(gateway.enabled);
    assert_eq!(
        gateway
            .traders
            .iter()
            .map(|t| (t.name.as_str(), t.open))
            .collect::<Vec<_>>(),
        [("py-momo", 0), ("strat-a", 2)]
    );
    assert_eq!(gateway.recent.len(), 5);
    assert_eq!(gateway.recent[0].client_order_id, "s1-0005");

    // A daemon from before the gateway (or a frame whose gateway cannot be read): the
    // rest of the frame is applied and the panel goes away rather than going stale.
    let list = fixtures::checklist_json(3, 0);
    let mut json = fixtures::dashboard_json(HaltState::Halted, &list, false);
    for gateway in [None, Some(json!({"recent": "oops"}))] {
        match gateway {
            None => json.as_object_mut().unwrap().remove("gateway"),
            Some(g) => json.as_object_mut().unwrap().insert("gateway".into(), g),
        };
        let mut s = console(HaltState::Running);
        let frame = serde_json::from_value(json.clone()).unwrap();
        let action = update(&mut s, Msg::Feed(FeedEvent::Frame(Box::new(frame))));
        assert_eq!(action, Action::None);
        assert_eq!(s.gateway, None, "{json}");
        assert_eq!(s.halt_state(), HaltState::Halted);
        assert_eq!(s.dashboard_link, Link::Up);
    }
}

#[test]
fn dashboard_frames_carry_the_fleet_and_a_frame_without_one_clears_it() {
    let list = fixtures::checklist_json(3, 0);
    let mut json = fixtures::dashboard_json(HaltState::Halted, &list, false);
    json["fleet"] = fixtures::fleet_json();
    let mut s = console(HaltState::Running);
    assert_eq!(s.fleet, None, "the fixture's frames carry no fleet");
    let frame = serde_json::from_value(json.clone()).unwrap();
    update(&mut s, Msg::Feed(FeedEvent::Frame(Box::new(frame))));
    let fleet = s.fleet.clone().expect("the frame's fleet is kept");
    assert!(fleet.enabled);
    assert_eq!(fleet.halt.as_ref().map(|h| h.revision), Some(7));
    assert_eq!(
        fleet
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.state, n.stale))
            .collect::<Vec<_>>(),
        [
            ("alpha", HaltState::Halted, false),
            ("beta", HaltState::Halting, false),
            ("gamma-3", HaltState::Running, true)
        ]
    );
    assert_eq!(fleet.total_exposure.to_string(), "1621");

    // A fleet this console cannot read, or none at all: the rest of the frame counts and
    // the panel goes away rather than going stale.
    for bad in [Some(json!({"nodes": "oops"})), Some(json!(null)), None] {
        match bad {
            None => json.as_object_mut().unwrap().remove("fleet"),
            Some(b) => json.as_object_mut().unwrap().insert("fleet".into(), b),
        };
        let frame = serde_json::from_value(json.clone()).unwrap();
        let action = update(&mut s, Msg::Feed(FeedEvent::Frame(Box::new(frame))));
        assert_eq!(action, Action::None);
        assert_eq!(s.fleet, None, "{json}");
        assert_eq!(s.halt_state(), HaltState::Halted);
        assert!(
            s.gateway.is_some(),
            "the gateway of the same frame is applied"
        );
    }
}
