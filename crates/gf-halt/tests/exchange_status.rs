//! The `exchange_status` condition on a real coordinator: Kraken's `maintenance` (or an
//! undocumented mode) halts with its own checklist item and holds resume until Kraken is
//! `online`; `cancel_only` and `post_only` do not halt (the order path enforces them).

mod common;

use common::{Env, fast_cfg};
use gf_core::event::ExchangeSystem;
use gf_core::{Event, HaltBehaviour, HaltSource, HaltState, Payload, Source};
use gf_halt::condition::{EXCHANGE_STATUS, ExchangeStatus};

fn status(env: &Env, system: ExchangeSystem) -> Event {
    Event::new(
        env.now(),
        Source::Market,
        Payload::ExchangeStatus {
            system,
            detail: "ws status".into(),
        },
    )
}

#[tokio::test]
async fn maintenance_halts_and_resume_waits_for_online() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("j.sqlite"));
    let c = &env.coordinator;
    c.register_condition(
        Box::new(ExchangeStatus::new(ExchangeSystem::Online, "rest")),
        HaltBehaviour::CancelOnly,
    );
    assert_eq!(c.state(), HaltState::Running);

    for mode in [ExchangeSystem::CancelOnly, ExchangeSystem::PostOnly] {
        assert!(c.on_event(&status(&env, mode)).await.is_none(), "{mode}");
    }
    assert_eq!(c.state(), HaltState::Running);
    assert!(env.gate.is_open());

    let outcome = c
        .on_event(&status(&env, ExchangeSystem::Maintenance))
        .await
        .expect("maintenance halts");
    assert!(outcome.started);
    assert!(!env.gate.is_open());
    let info = c.status();
    let halt = info.halt.as_ref().unwrap();
    assert_eq!(halt.source, HaltSource::Auto(EXCHANGE_STATUS.into()));
    assert!(
        halt.reason.contains("kraken reports maintenance"),
        "{}",
        halt.reason
    );

    // Its checklist item, then everything else; resume is refused while in maintenance.
    c.begin_recovery("alice").await.unwrap();
    let items: Vec<String> = c
        .checklist()
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(
        items.iter().any(|i| i == "confirm_exchange_online"),
        "{items:?}"
    );
    for item in &items {
        c.complete_item(item, "alice", None).await.unwrap();
    }
    let refused = c.resume("alice").await.unwrap_err().to_string();
    assert!(refused.contains(EXCHANGE_STATUS), "{refused}");
    assert!(!env.gate.is_open());

    // Still only cancel_only: not tradeable, but not a halt reason either.
    c.on_event(&status(&env, ExchangeSystem::CancelOnly)).await;
    c.resume("alice").await.unwrap();
    assert_eq!(c.state(), HaltState::Running);
    assert!(env.gate.is_open());
}

#[tokio::test]
async fn an_undocumented_mode_halts_and_a_maintenance_start_up_halts_on_the_first_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("j.sqlite"));
    let c = &env.coordinator;
    c.register_condition(
        Box::new(ExchangeStatus::new(ExchangeSystem::Online, "rest")),
        HaltBehaviour::CancelOnly,
    );
    assert!(
        c.on_event(&status(&env, ExchangeSystem::Unknown))
            .await
            .is_some()
    );
    assert!(!env.gate.is_open());

    // Start-up read `maintenance` from SystemStatus: the condition starts breached, and
    // the periodic sweep halts even before any event arrives.
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("j.sqlite"));
    let c = &env.coordinator;
    c.register_condition(
        Box::new(ExchangeStatus::new(
            ExchangeSystem::Maintenance,
            "rest SystemStatus at start-up",
        )),
        HaltBehaviour::CancelOnly,
    );
    let outcomes = c.sweep().await;
    assert_eq!(outcomes.len(), 1);
    assert!(!env.gate.is_open());
    let reason = c.status().halt.unwrap().reason;
    assert!(reason.contains("rest SystemStatus at start-up"), "{reason}");
}
