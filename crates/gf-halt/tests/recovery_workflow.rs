//! The operator's recovery workflow (`recover_and_complete_item`, `recover_and_resume`):
//! the rule every front end follows — working the checklist or asking to resume while
//! Halted opens the checklist in the operator's name — lives in gf-halt.

mod common;

use std::sync::atomic::Ordering;

use common::{Env, FakeExchange, View, fast_cfg, halted};
use gf_core::config::HaltConfig;
use gf_core::{HaltSource, HaltState, ManualClock};
use gf_halt::checklist::CONFIRM_RESUME;
use gf_halt::coordinator::kinds;
use gf_halt::{Error, HaltCoordinator};

async fn halted_env(cfg: &HaltConfig, dir: &tempfile::TempDir) -> Env {
    let env = Env::open(cfg, &dir.path().join("gf.sqlite"));
    assert!(
        env.coordinator
            .halt(HaltSource::Cli, "workflow test")
            .await
            .started
    );
    halted(&env.coordinator).await;
    env
}

fn missing(c: &HaltCoordinator) -> Vec<String> {
    c.checklist().expect("a halt has a checklist").missing()
}

/// Journal records of `kind`, oldest first, as (actor, detail).
fn journaled(c: &HaltCoordinator, kind: &str) -> Vec<(String, serde_json::Value)> {
    let mut records: Vec<_> = c
        .journal()
        .records(1_000)
        .expect("the journal reads")
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect();
    records.sort_by_key(|r| r.id);
    records.into_iter().map(|r| (r.actor, r.detail)).collect()
}

#[tokio::test]
async fn an_item_completed_while_halted_opens_the_checklist_in_the_operators_name() {
    let dir = tempfile::tempdir().unwrap();
    let env = halted_env(&fast_cfg(), &dir).await;
    let halt = &env.coordinator;
    let first = missing(halt)[0].clone();

    // The primitive stays strict: no checklist work while Halted.
    assert!(matches!(
        halt.complete_item(&first, "alice", None).await,
        Err(Error::NotAllowed {
            state: HaltState::Halted,
            ..
        })
    ));

    let item = halt
        .recover_and_complete_item(&first, "alice", Some("balances checked"))
        .await
        .unwrap();
    assert_eq!(item.completed_by.as_deref(), Some("alice"));
    assert_eq!(item.note.as_deref(), Some("balances checked"));
    assert_eq!(halt.state(), HaltState::Recovering);
    assert!(!env.gate.is_open());
    let changes = journaled(halt, kinds::STATE_CHANGED);
    let (actor, detail) = changes.last().unwrap();
    assert_eq!(actor, "alice");
    assert_eq!(detail["to"], "recovering");
    assert_eq!(journaled(halt, kinds::CHECKLIST_STEP).len(), 1);

    // Already Recovering: no second recovery is journaled.
    let second = missing(halt)[0].clone();
    halt.recover_and_complete_item(&second, "bob", None)
        .await
        .unwrap();
    assert_eq!(journaled(halt, kinds::STATE_CHANGED).len(), changes.len());
}

#[tokio::test]
async fn resume_while_halted_opens_the_checklist_and_is_refused_until_the_rules_hold() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HaltConfig {
        two_person_rule: true,
        ..fast_cfg()
    };
    let env = halted_env(&cfg, &dir).await;
    let halt = &env.coordinator;

    // The primitive refuses from Halted; the workflow opens the checklist, then refuses
    // because it is incomplete, and the refusal is journaled.
    assert!(matches!(
        halt.resume("alice").await,
        Err(Error::IllegalTransition {
            from: HaltState::Halted,
            ..
        })
    ));
    match halt.recover_and_resume("alice").await {
        Err(Error::ResumeRefused(refusal)) => {
            assert!(refusal.missing_items.contains(&CONFIRM_RESUME.to_owned()));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(halt.state(), HaltState::Recovering);
    assert_eq!(journaled(halt, kinds::RESUME_REFUSED).len(), 1);

    for item in missing(halt) {
        let who = if item == CONFIRM_RESUME {
            "bob"
        } else {
            "alice"
        };
        halt.recover_and_complete_item(&item, who, None)
            .await
            .unwrap();
    }
    // Two-person rule: alice did the checks, so alice may not resume.
    match halt.recover_and_resume("alice").await {
        Err(Error::ResumeRefused(refusal)) => {
            assert!(refusal.missing_items.is_empty());
            assert!(refusal.two_person_violation.is_some(), "{refusal:?}");
        }
        other => panic!("expected a two-person refusal, got {other:?}"),
    }
    assert!(!env.gate.is_open());
    halt.recover_and_resume("bob").await.unwrap();
    assert_eq!(halt.state(), HaltState::Running);
    assert!(env.gate.is_open());
    assert!(halt.journal().verify().is_ok());
}

#[tokio::test]
async fn two_operators_working_the_checklist_from_halted_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let env = halted_env(&fast_cfg(), &dir).await;
    let halt = &env.coordinator;
    let items = missing(halt);
    // Both see Halted and both try to open the checklist; the one that loses finds it
    // open, which is what it wanted.
    let (a, b) = tokio::join!(
        halt.recover_and_complete_item(&items[0], "alice", None),
        halt.recover_and_complete_item(&items[1], "bob", None),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(halt.state(), HaltState::Recovering);
    let recoveries = journaled(halt, kinds::STATE_CHANGED)
        .into_iter()
        .filter(|(_, d)| d["to"] == "recovering")
        .count();
    assert_eq!(recoveries, 1);
}

#[tokio::test]
async fn nothing_starts_recovery_while_the_halt_actions_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let exchange = FakeExchange::new();
    exchange.hang_cancel_all.store(true, Ordering::SeqCst);
    let env = Env::open_with(
        &fast_cfg(),
        &dir.path().join("gf.sqlite"),
        exchange,
        View::new(),
        ManualClock::default(),
    );
    let halt = &env.coordinator;
    assert!(halt.halt(HaltSource::Cli, "hung exchange").await.started);
    assert_eq!(halt.state(), HaltState::Halting);
    let first = missing(halt)[0].clone();
    assert!(matches!(
        halt.recover_and_complete_item(&first, "alice", None).await,
        Err(Error::NotAllowed {
            state: HaltState::Halting,
            ..
        })
    ));
    assert!(matches!(
        halt.recover_and_resume("alice").await,
        Err(Error::IllegalTransition {
            from: HaltState::Halting,
            ..
        })
    ));
    assert_eq!(halt.state(), HaltState::Halting);
    assert!(!env.gate.is_open());
}

#[tokio::test]
async fn an_invalid_operator_never_opens_the_checklist() {
    let dir = tempfile::tempdir().unwrap();
    let env = halted_env(&fast_cfg(), &dir).await;
    let halt = &env.coordinator;
    let first = missing(halt)[0].clone();
    assert!(matches!(
        halt.recover_and_complete_item(&first, "", None).await,
        Err(Error::InvalidOperator(_))
    ));
    assert!(matches!(
        halt.recover_and_resume("bad\u{7}name").await,
        Err(Error::InvalidOperator(_))
    ));
    assert_eq!(halt.state(), HaltState::Halted);
}
