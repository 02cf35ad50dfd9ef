//! End-to-end tests of the halt coordinator against a fake exchange and a real SQLite file.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use common::{Call, Env, FakeExchange, View, fast_cfg, halted, normal_order, pair, position};
use gf_core::config::{ConditionConfig, HaltConfig};
use gf_core::{
    ApiErrorKind, ClientOrderId, Event, EventKind, HaltBehaviour, HaltSource, HaltState, KindSet,
    ManualClock, OrderPurpose, OrderType, Payload, Side, Source, Subscription,
};
use gf_exec::Exchange;
use gf_halt::coordinator::kinds;
use gf_halt::{Error, HaltCoordinator};

fn trade(env: &Env, p: &str) -> Event {
    Event::new(
        env.now(),
        Source::Market,
        Payload::Trade {
            pair: pair(p),
            side: Side::Buy,
            price: dec!(0.5),
            qty: dec!(10),
            trade_id: 1,
        },
    )
}

fn drain(sub: &mut Subscription) -> Vec<Payload> {
    let mut out = Vec::new();
    while let Ok(ev) = sub.try_recv() {
        out.push(ev.payload.clone());
    }
    out
}

async fn complete_everything(c: &HaltCoordinator, who: &str, confirmer: &str) {
    for item in c.checklist().unwrap().missing() {
        let op = if item == "confirm_resume" {
            confirmer
        } else {
            who
        };
        c.complete_item(&item, op, Some("checked")).await.unwrap();
    }
}

#[tokio::test]
async fn drawdown_sixteen_over_fifteen_halts_fifteen_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    assert!(env.gate.is_open());
    *env.view.total_dd.lock() = dec!(15);
    assert_eq!(
        env.coordinator.on_event(&trade(&env, "XRP/USD")).await,
        None
    );
    assert!(env.gate.is_open());
    assert_eq!(env.coordinator.state(), HaltState::Running);

    *env.view.total_dd.lock() = dec!(16);
    let outcome = env
        .coordinator
        .on_event(&trade(&env, "XRP/USD"))
        .await
        .expect("16 % over 15 % halts");
    assert!(outcome.started);
    assert!(
        !env.gate.is_open(),
        "the gate is closed once the event is processed"
    );
    halted(&env.coordinator).await;
    assert!(env.exchange.cancel_all_count() >= 1);
    let status = env.coordinator.status();
    let halt = status.halt.unwrap();
    assert_eq!(
        halt.source,
        HaltSource::Auto("max_total_drawdown".to_owned())
    );
    assert_eq!(halt.reason, "max total drawdown % 16 > 15");
    assert!(
        status
            .checklist_missing
            .contains(&"review_drawdown_cause".to_owned())
    );
}

#[tokio::test]
async fn two_positions_produce_exactly_two_closure_orders() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    env.hold(vec![
        position("XRP/USD", dec!(1500)),
        position("DOGE/USD", dec!(2500)),
    ]);
    let mut sub = env.bus.subscribe(KindSet::critical());
    env.coordinator.halt(HaltSource::Cli, "flatten").await;
    halted(&env.coordinator).await;

    let orders = env.exchange.closure_orders();
    assert_eq!(orders.len(), 2, "{orders:#?}");
    let xrp = orders.iter().find(|o| o.pair == pair("XRP/USD")).unwrap();
    let doge = orders.iter().find(|o| o.pair == pair("DOGE/USD")).unwrap();
    assert_eq!((xrp.side, xrp.qty), (Side::Sell, dec!(1500)));
    assert_eq!((doge.side, doge.qty), (Side::Sell, dec!(2500)));
    for o in &orders {
        // A spot account has no margin position to reduce: Kraken would reject it.
        assert!(!o.reduce_only);
        assert_eq!(o.purpose, OrderPurpose::HaltClosure);
        assert_eq!(o.order_type, OrderType::Market);
        assert_eq!(o.limit_price, None);
    }
    // Cancel-all came before the closure orders.
    let calls = env.exchange.calls();
    let first_cancel = calls
        .iter()
        .position(|(_, c)| matches!(c, Call::CancelAll))
        .unwrap();
    let first_place = calls
        .iter()
        .position(|(_, c)| matches!(c, Call::Place(_)))
        .unwrap();
    assert!(first_cancel < first_place);

    let events = drain(&mut sub);
    assert!(events.iter().any(|p| matches!(
        p,
        Payload::ClosureResult { flat: true, detail } if detail == "2 position(s) closed"
    )));
    let report = env.coordinator.status().halt.unwrap().closure.unwrap();
    assert!(report.flat);
    assert_eq!(report.pairs.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submitters_get_no_normal_order_through_after_the_gate_closed() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    let halt_returned = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8_u64 {
        let gate = env.gate.clone();
        let exchange: Arc<FakeExchange> = env.exchange.clone();
        let (halt_returned, violations, accepted, refused) = (
            halt_returned.clone(),
            violations.clone(),
            accepted.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..1_500_u64 {
                let after_halt = halt_returned.load(Ordering::SeqCst);
                let order = normal_order(t * 10_000 + i);
                match gate.enter(&order) {
                    Ok(permit) => {
                        exchange.place_order(&order).await.unwrap();
                        drop(permit);
                        accepted.fetch_add(1, Ordering::SeqCst);
                        if after_halt {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Let the submitters get going, then halt in the middle of the flood.
    while accepted.load(Ordering::SeqCst) < 200 {
        tokio::task::yield_now().await;
    }
    let outcome = env.coordinator.halt(HaltSource::Signal, "SIGUSR1").await;
    halt_returned.store(true, Ordering::SeqCst);
    assert!(outcome.started);
    for t in tasks {
        t.await.unwrap();
    }
    halted(&env.coordinator).await;

    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the halt must have refused orders"
    );
    // Every normal order that reached the exchange came before the last cancel-all.
    let calls = env.exchange.calls();
    let last_cancel = calls
        .iter()
        .filter(|(_, c)| matches!(c, Call::CancelAll))
        .map(|(s, _)| *s)
        .max()
        .expect("cancel-all issued");
    for (seq, call) in &calls {
        if let Call::Place(o) = call
            && !o.is_closure()
        {
            assert!(
                *seq < last_cancel,
                "normal order {} after the last cancel",
                o.client_order_id
            );
        }
    }
}

#[tokio::test]
async fn restart_restores_halted_with_the_same_checklist() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gf.sqlite");
    let checklist_before;
    {
        let env = Env::open(&fast_cfg(), &db);
        env.coordinator
            .halt(HaltSource::Api("alice".into()), "manual")
            .await;
        halted(&env.coordinator).await;
        env.coordinator.begin_recovery("alice").await.unwrap();
        env.coordinator
            .complete_item("review_halt_reason", "alice", Some("fat finger"))
            .await
            .unwrap();
        env.coordinator
            .complete_item("review_market_conditions", "alice", None)
            .await
            .unwrap();
        checklist_before = env.coordinator.checklist().unwrap();
        assert_eq!(env.coordinator.state(), HaltState::Recovering);
    }
    let env = Env::open(&fast_cfg(), &db);
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(!env.gate.is_open());
    assert_eq!(env.coordinator.checklist().unwrap(), checklist_before);
    assert_eq!(
        env.coordinator.status().halt.unwrap().source,
        HaltSource::Api("alice".into())
    );
    env.coordinator.journal().verify().unwrap();
    // The operator carries on where they left off.
    env.coordinator.begin_recovery("alice").await.unwrap();
    complete_everything(&env.coordinator, "alice", "alice").await;
    env.coordinator.resume("alice").await.unwrap();
    assert!(env.gate.is_open());
    drop(env);
    let env = Env::open(&fast_cfg(), &db);
    assert_eq!(env.coordinator.state(), HaltState::Running);
    assert!(env.gate.is_open());
}

#[tokio::test]
async fn tampered_row_is_named_and_the_coordinator_starts_halted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gf.sqlite");
    {
        let env = Env::open(&fast_cfg(), &db);
        env.coordinator.halt(HaltSource::Cli, "drill").await;
        halted(&env.coordinator).await;
        env.coordinator.begin_recovery("alice").await.unwrap();
        complete_everything(&env.coordinator, "alice", "alice").await;
        env.coordinator.resume("alice").await.unwrap();
        assert!(env.coordinator.journal().len().unwrap() > 5);
    }
    {
        let raw = rusqlite::Connection::open(&db).unwrap();
        raw.execute_batch("DROP TRIGGER journal_no_update;")
            .unwrap();
        raw.execute("UPDATE journal SET actor = 'mallory' WHERE id = 3", [])
            .unwrap();
    }
    let env = Env::open(&fast_cfg(), &db);
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(
        !env.gate.is_open(),
        "a tampered journal never starts running"
    );
    let problem = env.coordinator.status().journal_problem.unwrap();
    assert!(problem.contains("journal record 3"), "{problem}");
    match env.coordinator.journal().verify() {
        Err(Error::Tampered { record_id, .. }) => assert_eq!(record_id, 3),
        other => panic!("expected tampering at 3, got {other:?}"),
    }
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.source, HaltSource::Auto("journal_integrity".into()));
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"review_journal_integrity".to_owned())
    );
}

#[tokio::test]
async fn deleted_last_row_is_detected_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gf.sqlite");
    let last;
    {
        let env = Env::open(&fast_cfg(), &db);
        env.coordinator.halt(HaltSource::Cli, "drill").await;
        halted(&env.coordinator).await;
        last = i64::try_from(env.coordinator.journal().len().unwrap()).unwrap();
    }
    {
        let raw = rusqlite::Connection::open(&db).unwrap();
        raw.execute_batch("DROP TRIGGER journal_no_delete;")
            .unwrap();
        raw.execute("DELETE FROM journal WHERE id = ?1", [last])
            .unwrap();
    }
    let env = Env::open(&fast_cfg(), &db);
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    let problem = env.coordinator.status().journal_problem.unwrap();
    assert!(
        problem.contains(&format!("journal record {last}")),
        "{problem}"
    );
}

#[tokio::test]
async fn second_trigger_while_halted_is_recorded_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    let first = env.coordinator.halt(HaltSource::Cli, "first").await;
    halted(&env.coordinator).await;
    let long = "x".repeat(100_000);
    let second = env.coordinator.halt(HaltSource::Fleet, &long).await;
    assert!(!second.started);
    assert_eq!(second.halt_id, first.halt_id);
    assert_eq!(second.state, HaltState::Halted);
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.later_triggers.len(), 1);
    assert_eq!(halt.later_triggers[0].source, HaltSource::Fleet);
    assert_eq!(halt.later_triggers[0].reason.len(), 500, "reasons are cut");
    let kinds_written: Vec<String> = env
        .coordinator
        .journal()
        .records(100)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert!(kinds_written.contains(&kinds::TRIGGER_RECORDED.to_owned()));
    // An automatic breach while halted is recorded too, and adds its checklist item.
    for _ in 0..11 {
        env.coordinator
            .on_event(&Event::new(
                env.now(),
                Source::Exec,
                Payload::ApiError {
                    endpoint: "AddOrder".into(),
                    kind: ApiErrorKind::Timeout,
                    message: "timeout".into(),
                    retryable: true,
                },
            ))
            .await;
    }
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.conditions, vec!["api_error_rate"]);
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"confirm_exchange_status".to_owned())
    );
}

#[tokio::test]
async fn resume_is_refused_with_everything_missing_then_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HaltConfig {
        two_person_rule: true,
        ..fast_cfg()
    };
    let env = Env::open(&cfg, &dir.path().join("gf.sqlite"));
    *env.view.daily_dd.lock() = dec!(3);
    env.coordinator
        .on_event(&trade(&env, "XRP/USD"))
        .await
        .unwrap();
    halted(&env.coordinator).await;

    assert!(matches!(
        env.coordinator.resume("alice").await,
        Err(Error::IllegalTransition {
            from: HaltState::Halted,
            to: HaltState::Running
        })
    ));
    env.coordinator.begin_recovery("alice").await.unwrap();
    match env.coordinator.resume("alice").await {
        Err(Error::ResumeRefused(r)) => {
            assert!(r.missing_items.contains(&"confirm_resume".to_owned()));
            assert!(
                r.missing_items
                    .contains(&"review_drawdown_cause".to_owned())
            );
            assert_eq!(r.breached_conditions, vec!["max_daily_drawdown"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    complete_everything(&env.coordinator, "alice", "alice").await;
    *env.view.daily_dd.lock() = dec!(1);
    match env.coordinator.resume("alice").await {
        Err(Error::ResumeRefused(r)) => {
            assert!(r.missing_items.is_empty());
            assert!(r.breached_conditions.is_empty());
            assert!(r.two_person_violation.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!env.gate.is_open());
    let refusals = env
        .coordinator
        .journal()
        .records(200)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kinds::RESUME_REFUSED)
        .count();
    assert_eq!(refusals, 2);
}

#[tokio::test]
async fn two_person_rule_passes_with_a_second_operator() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HaltConfig {
        two_person_rule: true,
        ..fast_cfg()
    };
    let env = Env::open(&cfg, &dir.path().join("gf.sqlite"));
    env.coordinator.halt(HaltSource::Cli, "drill").await;
    halted(&env.coordinator).await;
    env.coordinator.begin_recovery("alice").await.unwrap();
    complete_everything(&env.coordinator, "alice", "bob").await;
    env.coordinator.resume("bob").await.unwrap();
    assert!(env.gate.is_open());
    assert_eq!(env.coordinator.status().resumed_by.as_deref(), Some("bob"));
}

#[tokio::test]
async fn rejected_closure_is_retried_recorded_and_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    env.exchange.reject_closures.store(true, Ordering::SeqCst);
    env.hold(vec![position("XRP/USD", dec!(100))]);
    let mut sub = env.bus.subscribe_all();
    env.coordinator.halt(HaltSource::Cli, "flatten").await;
    halted(&env.coordinator).await;

    let orders = env.exchange.closure_orders();
    assert_eq!(orders.len(), 3, "retried up to closure_max_attempts");
    let ids: Vec<ClientOrderId> = orders.iter().map(|o| o.client_order_id.clone()).collect();
    let expected: Vec<ClientOrderId> = (1..=3)
        .map(|r| gf_halt::closure::closure_client_id(1, &pair("XRP/USD"), r))
        .collect();
    assert_eq!(ids, expected);
    let events = drain(&mut sub);
    assert!(events.iter().any(|p| matches!(
        p,
        Payload::ClosureResult { flat: false, detail } if detail.contains("XRP/USD 100 remaining")
    )));
    assert!(
        events
            .iter()
            .any(|p| matches!(p, Payload::Alert { key, .. } if key == "halt_1_closure"))
    );
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"resolve_open_positions".to_owned())
    );
    let closure = env
        .coordinator
        .journal()
        .last_of_kind(kinds::CLOSURE_RESULT)
        .unwrap()
        .unwrap();
    assert_eq!(closure.detail["flat"], false);
}

#[tokio::test]
async fn behaviours_hold_cancel_only_and_per_condition_override() {
    // hold: nothing but the gate.
    let dir = tempfile::tempdir().unwrap();
    let cfg = HaltConfig {
        behaviour: HaltBehaviour::Hold,
        ..fast_cfg()
    };
    let env = Env::open(&cfg, &dir.path().join("a.sqlite"));
    env.hold(vec![position("XRP/USD", dec!(100))]);
    env.coordinator.halt(HaltSource::Cli, "hold").await;
    halted(&env.coordinator).await;
    assert!(env.exchange.calls().is_empty());
    assert!(!env.gate.is_open());

    // Per condition: api errors → cancel_only although the global is close_positions.
    let mut cfg = fast_cfg();
    cfg.conditions.insert(
        "api_error_rate".into(),
        ConditionConfig {
            enabled: None,
            behaviour: Some(HaltBehaviour::CancelOnly),
        },
    );
    let env = Env::open(&cfg, &dir.path().join("b.sqlite"));
    env.hold(vec![position("XRP/USD", dec!(100))]);
    env.coordinator
        .halt(HaltSource::Auto("api_error_rate".into()), "errors")
        .await;
    halted(&env.coordinator).await;
    assert_eq!(env.exchange.cancel_all_count(), 1);
    assert!(env.exchange.closure_orders().is_empty());
}

#[tokio::test]
async fn failed_cancel_all_is_reported_and_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    env.exchange.fail_cancel_all.store(true, Ordering::SeqCst);
    let mut sub = env.bus.subscribe_all();
    env.coordinator.halt(HaltSource::Cli, "x").await;
    halted(&env.coordinator).await;
    let events = drain(&mut sub);
    assert!(events.iter().any(|p| matches!(
        p,
        Payload::ClosureResult { detail, .. } if detail.contains("cancel-all failed")
    )));
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"confirm_orders_cancelled".to_owned())
    );
}

#[tokio::test]
async fn every_transition_is_published_and_journaled_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    let mut sub = env.bus.subscribe(
        KindSet::critical()
            .with(EventKind::ConditionValue)
            .with(EventKind::Latency),
    );
    *env.view.total_dd.lock() = dec!(20);
    env.coordinator.on_event(&trade(&env, "XRP/USD")).await;
    halted(&env.coordinator).await;
    *env.view.total_dd.lock() = dec!(1);
    env.coordinator.begin_recovery("alice").await.unwrap();
    complete_everything(&env.coordinator, "alice", "alice").await;
    env.coordinator.resume("alice").await.unwrap();

    let events = drain(&mut sub);
    let transitions: Vec<(HaltState, HaltState)> = events
        .iter()
        .filter_map(|p| match p {
            Payload::HaltStateChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        [
            (HaltState::Running, HaltState::Halting),
            (HaltState::Halting, HaltState::Halted),
            (HaltState::Halted, HaltState::Recovering),
            (HaltState::Recovering, HaltState::Running),
        ]
    );
    let count = |k: EventKind| events.iter().filter(|p| p.kind() == k).count();
    assert_eq!(count(EventKind::HaltTriggered), 1);
    assert_eq!(count(EventKind::ClosureResult), 1);
    assert_eq!(count(EventKind::Resumed), 1);
    assert_eq!(count(EventKind::ChecklistStep), 8);
    assert!(events.iter().any(|p| matches!(
        p,
        Payload::ConditionValue { id, triggered: true, .. } if id == "max_total_drawdown"
    )));
    for exported in ["halt_gate_closed", "halt_cancel_sent", "halt_flat"] {
        assert!(
            events.iter().any(|p| matches!(
                p,
                Payload::Latency { stage, .. } if stage == exported
            )),
            "{exported}"
        );
    }

    let journal = env.coordinator.journal();
    let summary = journal.verify().unwrap();
    let records = journal.records(100).unwrap();
    assert_eq!(summary.records as usize, records.len());
    let kinds_in_order: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        &kinds_in_order[..4],
        [
            kinds::HALT_TRIGGERED,
            kinds::STATE_CHANGED,
            kinds::CLOSURE_RESULT,
            kinds::STATE_CHANGED
        ]
    );
    assert_eq!(records[0].actor, "auto:max_total_drawdown");
    assert_eq!(kinds_in_order.last(), Some(&kinds::STATE_CHANGED));
    assert_eq!(
        kinds_in_order
            .iter()
            .filter(|k| **k == kinds::CHECKLIST_STEP)
            .count(),
        8
    );
}

#[tokio::test]
async fn operations_in_the_wrong_state_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    assert!(matches!(
        env.coordinator.begin_recovery("alice").await,
        Err(Error::IllegalTransition {
            from: HaltState::Running,
            to: HaltState::Recovering
        })
    ));
    assert!(matches!(
        env.coordinator
            .complete_item("review_halt_reason", "alice", None)
            .await,
        Err(Error::NotAllowed { .. })
    ));
    assert!(matches!(
        env.coordinator.resume("").await,
        Err(Error::InvalidOperator(_))
    ));
    env.coordinator.halt(HaltSource::Cli, "x").await;
    halted(&env.coordinator).await;
    env.coordinator.begin_recovery("alice").await.unwrap();
    assert!(matches!(
        env.coordinator.complete_item("nope", "alice", None).await,
        Err(Error::UnknownItem(_))
    ));
    assert!(matches!(
        env.coordinator
            .complete_item("confirm_resume", "alice", None)
            .await,
        Err(Error::OutOfOrder { .. })
    ));
}

#[tokio::test]
async fn trigger_during_recovery_returns_to_halted() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    env.coordinator.halt(HaltSource::Cli, "one").await;
    halted(&env.coordinator).await;
    env.coordinator.begin_recovery("alice").await.unwrap();
    env.coordinator
        .complete_item("review_halt_reason", "alice", None)
        .await
        .unwrap();
    let second = env.coordinator.halt(HaltSource::Fleet, "two").await;
    assert!(second.started);
    assert_eq!(second.halt_id, 2);
    halted(&env.coordinator).await;
    assert_eq!(env.coordinator.checklist().unwrap().halt_id, 2);
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"review_halt_reason".to_owned())
    );
}

#[tokio::test]
async fn risk_snapshot_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gf.sqlite");
    let snap = serde_json::json!({"peak_equity": "120000", "day_start_equity": "118000"});
    {
        let env = Env::open(&fast_cfg(), &db);
        assert_eq!(env.coordinator.load_risk_snapshot().unwrap(), None);
        env.coordinator
            .save_risk_snapshot(snap.clone())
            .await
            .unwrap();
    }
    let env = Env::open(&fast_cfg(), &db);
    assert_eq!(env.coordinator.load_risk_snapshot().unwrap(), Some(snap));
}

#[tokio::test(start_paused = true)]
async fn run_loop_halts_on_stale_market_data_by_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let env = Env::open_with(
        &fast_cfg(),
        &dir.path().join("gf.sqlite"),
        FakeExchange::new(),
        View::new(),
        clock.clone(),
    );
    env.coordinator
        .watch_pairs(&[pair("XRP/USD"), pair("DOGE/USD")]);
    let sub = env.bus.subscribe(env.coordinator.subscription_kinds());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let runner = {
        let c = env.coordinator.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { c.run(sub, shutdown).await })
    };
    // Fresh data on XRP; DOGE never delivers.
    env.bus.publish(trade(&env, "XRP/USD"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.coordinator.state(), HaltState::Running);
    clock.advance(chrono::Duration::seconds(61));
    tokio::time::sleep(Duration::from_secs(2)).await;
    halted(&env.coordinator).await;
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(
        halt.source,
        HaltSource::Auto("market_data_staleness".into())
    );
    assert!(halt.reason.contains("DOGE/USD") || halt.reason.contains("XRP/USD"));
    shutdown.cancel();
    runner.await.unwrap();
}

#[tokio::test]
async fn conditions_are_listed_with_values_for_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    *env.view.exposure.lock() = Decimal::new(5_000, 0);
    env.coordinator.evaluate(&trade(&env, "XRP/USD"));
    let conditions = env.coordinator.conditions();
    assert_eq!(conditions.len(), 7);
    let risk = conditions.iter().find(|c| c.id == "position_risk").unwrap();
    assert_eq!(risk.value, dec!(5000));
    assert_eq!(risk.threshold, dec!(100000));
    assert!(!risk.triggered);
    assert_eq!(risk.last_evaluated, Some(env.now()));
    let json = serde_json::to_value(&conditions).unwrap();
    assert_eq!(json[6]["id"], "position_risk");
}

#[tokio::test]
async fn restart_while_halting_comes_back_halted_with_extra_checks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gf.sqlite");
    {
        let env = Env::open(&fast_cfg(), &db);
        env.exchange.hang_cancel_all.store(true, Ordering::SeqCst);
        let outcome = env
            .coordinator
            .halt(HaltSource::Cli, "crash mid-halt")
            .await;
        assert_eq!(outcome.state, HaltState::Halting);
        assert_eq!(env.coordinator.state(), HaltState::Halting);
        assert!(matches!(
            env.coordinator.begin_recovery("alice").await,
            Err(Error::IllegalTransition {
                from: HaltState::Halting,
                ..
            })
        ));
    }
    let env = Env::open(&fast_cfg(), &db);
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(!env.gate.is_open());
    let missing = env.coordinator.checklist().unwrap().missing();
    assert!(missing.contains(&"confirm_orders_cancelled".to_owned()));
    assert!(missing.contains(&"resolve_open_positions".to_owned()));
    let restored = env.coordinator.journal().records(1).unwrap().pop().unwrap();
    assert_eq!(restored.kind, kinds::RESTORED);
    assert_eq!(restored.detail["from"], "halting");
    env.coordinator.journal().verify().unwrap();
}

#[tokio::test]
async fn fresh_breach_at_resume_returns_to_halted() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    env.coordinator.halt(HaltSource::Cli, "drill").await;
    halted(&env.coordinator).await;
    env.coordinator.begin_recovery("alice").await.unwrap();
    complete_everything(&env.coordinator, "alice", "alice").await;
    *env.view.exposure.lock() = dec!(250000);
    match env.coordinator.resume("alice").await {
        Err(Error::ResumeRefused(r)) => {
            assert_eq!(r.breached_conditions, vec!["position_risk"]);
            assert!(
                r.missing_items
                    .contains(&"review_exposure_limits".to_owned())
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    halted(&env.coordinator).await;
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.id, 2);
    assert_eq!(halt.source, HaltSource::Auto("position_risk".into()));
    assert!(!env.gate.is_open());
}

#[tokio::test]
async fn api_mutations_are_journaled_and_chained() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    let a = env
        .coordinator
        .record(
            "api_token_created",
            "admin",
            serde_json::json!({"role": "viewer"}),
        )
        .await
        .unwrap();
    let b = env
        .coordinator
        .record(
            "secret_rotated",
            "system",
            serde_json::json!({"version": "7"}),
        )
        .await
        .unwrap();
    assert_eq!(b.prev_mac, a.mac);
    assert_eq!(env.coordinator.journal().verify().unwrap().records, 2);
    // The coordinator's state is unaffected by records without a snapshot.
    drop(env);
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    assert_eq!(env.coordinator.state(), HaltState::Running);
}

#[tokio::test]
async fn a_halt_whose_caller_gives_up_is_still_in_force_and_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    // Poll halt() once, then drop it (a client that disconnected).
    let gave_up = tokio::time::timeout(
        Duration::from_nanos(1),
        env.coordinator
            .halt(HaltSource::Api("alice".into()), "impatient"),
    )
    .await;
    assert!(gave_up.is_err(), "halt() was still journaling when dropped");
    assert!(!env.gate.is_open(), "the gate closed on the first poll");
    halted(&env.coordinator).await;
    let kinds_written: Vec<String> = env
        .coordinator
        .journal()
        .records(10)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds_written,
        [
            kinds::HALT_TRIGGERED,
            kinds::STATE_CHANGED,
            kinds::CLOSURE_RESULT,
            kinds::STATE_CHANGED
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_exchange_cannot_keep_the_halt_in_halting_forever() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    env.exchange.hang_cancel_all.store(true, Ordering::SeqCst);
    env.coordinator.halt(HaltSource::Cli, "exchange down").await;
    assert_eq!(env.coordinator.state(), HaltState::Halting);
    // Each cancel-all call times out after 10 s; three attempts, then Halted.
    let mut rx = env.coordinator.watch_state();
    tokio::time::timeout(
        Duration::from_secs(120),
        rx.wait_for(|s| *s == HaltState::Halted),
    )
    .await
    .expect("halted once the calls timed out")
    .unwrap();
    assert_eq!(env.exchange.cancel_all_count(), 3);
    let report = env.coordinator.status().halt.unwrap().closure.unwrap();
    let cancel = report.cancel.unwrap();
    assert_eq!(cancel.cancelled, None);
    assert!(cancel.error.unwrap().contains("timed out"));
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"confirm_orders_cancelled".to_owned())
    );
}

/// The daemon's one dead man's switch keeper (`gf_exec::DeadManSwitch`) next to a real
/// coordinator: a halt does not stop the refreshes (a `hold` halt keeps resting orders,
/// which a lapsed switch would cancel), and a clean shutdown disarms when configured.
#[tokio::test(start_paused = true)]
async fn dead_man_switch_is_refreshed_in_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
    let arms = |env: &Env| {
        env.exchange
            .calls()
            .iter()
            .filter(|(_, c)| matches!(c, Call::DeadMan(60)))
            .count()
    };
    let events = gf_exec::events::Publisher::new(
        Some(env.bus.clone()),
        Arc::new(env.clock.clone()),
        gf_core::Source::Exec,
    );
    let keeper = gf_exec::DeadManSwitch::spawn(
        env.exchange.clone(),
        gf_exec::DeadManConfig::new(60, true),
        events,
    );
    // Armed at once, then every 15 s.
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(arms(&env), 3);
    env.coordinator.halt(HaltSource::Cli, "stop").await;
    halted(&env.coordinator).await;
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(
        arms(&env),
        9,
        "refreshed while halted too (0 s to 120 s, every 15 s)"
    );
    keeper.shutdown().await.unwrap();
    let calls = env.exchange.calls();
    assert!(
        matches!(calls.last(), Some((_, Call::DeadMan(0)))),
        "disarmed at shutdown: {calls:?}"
    );
    // Zero disables it: no keeper is configured at all.
    let off = gf_core::config::ExchangeConfig {
        dead_man_switch_secs: 0,
        ..gf_core::config::ExchangeConfig::default()
    };
    assert_eq!(gf_exec::DeadManConfig::from_config(&off).unwrap(), None);
}

#[tokio::test]
async fn a_halt_takes_effect_even_when_the_journal_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gf.sqlite");
    let env = Env::open(&fast_cfg(), &db);
    // Break the journal under the coordinator's feet.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE journal_head;")
        .unwrap();
    let outcome = env.coordinator.halt(HaltSource::Cli, "disk trouble").await;
    assert!(outcome.started);
    assert!(
        !outcome.durable,
        "a halt the journal did not record is not durable"
    );
    assert!(outcome.journal_error.unwrap().contains("journal_head"));
    assert!(!env.gate.is_open());
    halted(&env.coordinator).await;
    let problem = env.coordinator.status().journal_problem.unwrap();
    assert!(problem.contains("journal write failed"), "{problem}");
    // Operator steps are write-ahead: without a journal they are refused, not applied.
    let err = env.coordinator.begin_recovery("alice").await.unwrap_err();
    assert_eq!(err.code(), "journal_database");
    assert_eq!(env.coordinator.state(), HaltState::Halted);
}

/// Tests that kill mutants `cargo xtask mutants` found alive in the coordinator.
mod mutant_kills {
    use super::*;
    use gf_core::{EventBus, TradingGate};
    use gf_halt::Journal;

    /// A coordinator on `db` whose bus was subscribed to before it opened.
    fn open_watched(db: &std::path::Path) -> (HaltCoordinator, Subscription) {
        let clock = ManualClock::default();
        let journal = Journal::open(db, Arc::new(clock.clone()), common::test_key()).unwrap();
        let bus = EventBus::new(1024);
        let sub = bus.subscribe(KindSet::critical());
        let c = HaltCoordinator::builder(&fast_cfg(), Arc::new(journal), TradingGate::new_closed())
            .exchange(FakeExchange::new())
            .portfolio(View::new())
            .bus(bus)
            .clock(Arc::new(clock))
            .open()
            .unwrap();
        (c, sub)
    }

    #[tokio::test]
    async fn a_restart_publishes_its_state_change_and_only_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gf.sqlite");
        let (c, mut sub) = open_watched(&db);
        assert!(
            drain(&mut sub)
                .iter()
                .all(|p| !matches!(p, Payload::HaltStateChanged { .. })),
            "running to running is no change"
        );
        c.halt(HaltSource::Cli, "drill").await;
        halted(&c).await;
        c.begin_recovery("alice").await.unwrap();
        drop((c, sub));
        let (c, mut sub) = open_watched(&db);
        assert_eq!(c.state(), HaltState::Halted);
        let changes: Vec<(HaltState, HaltState)> = drain(&mut sub)
            .into_iter()
            .filter_map(|p| match p {
                Payload::HaltStateChanged { from, to, .. } => Some((from, to)),
                _ => None,
            })
            .collect();
        assert_eq!(changes, [(HaltState::Recovering, HaltState::Halted)]);
    }

    #[tokio::test]
    async fn a_broken_journal_under_a_halt_is_recorded_on_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gf.sqlite");
        {
            let env = Env::open(&fast_cfg(), &db);
            env.coordinator.halt(HaltSource::Cli, "drill").await;
            halted(&env.coordinator).await;
        }
        {
            let raw = rusqlite::Connection::open(&db).unwrap();
            raw.execute_batch("DROP TRIGGER journal_no_update;")
                .unwrap();
            raw.execute("UPDATE journal SET actor = 'mallory' WHERE id = 3", [])
                .unwrap();
        }
        // Halted before, halted after: the problem alone is worth a record.
        let env = Env::open(&fast_cfg(), &db);
        assert_eq!(env.coordinator.state(), HaltState::Halted);
        let restored = env.coordinator.journal().records(1).unwrap().pop().unwrap();
        assert_eq!(restored.kind, kinds::RESTORED);
        assert_eq!(restored.detail["from"], "halted");
        assert_eq!(restored.detail["to"], "halted");
        let problem = restored.detail["problem"].as_str().unwrap();
        assert!(problem.contains("journal record 3"), "{problem}");
    }

    #[tokio::test]
    async fn an_order_of_unknown_outcome_is_reconciled_though_nothing_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
        let order = normal_order(7);
        {
            let mut permit = env.gate.enter(&order).unwrap();
            permit.mark_unresolved();
        }
        assert_eq!(env.gate.in_flight(), 0);
        env.exchange
            .cancelled_per_cancel_all
            .store(3, Ordering::SeqCst);
        env.coordinator.halt(HaltSource::Cli, "drill").await;
        halted(&env.coordinator).await;
        // Both cancel-alls count in the halt's report.
        let result = env
            .coordinator
            .journal()
            .last_of_kind(kinds::CLOSURE_RESULT)
            .unwrap()
            .unwrap();
        let cancel = &result.detail["report"]["cancel"];
        assert_eq!(cancel["attempts"], 2, "{cancel}");
        assert_eq!(cancel["cancelled"], 6, "{cancel}");
        let calls: Vec<Call> = env.exchange.calls().into_iter().map(|(_, c)| c).collect();
        assert!(
            calls.contains(&Call::Status(gf_exec::OrderRef::Client(
                order.client_order_id.clone()
            ))),
            "{calls:?}"
        );
        assert_eq!(env.exchange.cancel_all_count(), 2, "cancelled again after");
    }

    #[tokio::test(start_paused = true)]
    async fn the_halt_waits_for_the_wire_past_the_exchange_timeout_by_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
        env.coordinator.set_exchange_timeout(Duration::from_secs(1));
        let permit = env.gate.enter(&normal_order(9)).unwrap();
        env.coordinator.halt(HaltSource::Cli, "drill").await;
        // 1.2 s: past the exchange timeout, within its margin (1.5 s in all).
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(env.coordinator.state(), HaltState::Halting);
        assert_eq!(env.exchange.cancel_all_count(), 1);
        drop(permit);
        halted(&env.coordinator).await;
        assert_eq!(env.exchange.cancel_all_count(), 2);
    }

    #[tokio::test]
    async fn debug_output_shows_the_state_and_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
        let text = format!("{:?}", env.coordinator);
        assert!(
            text.starts_with("HaltCoordinator { state: Running, gate: TradingGate {"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn replaced_conditions_are_the_ones_evaluated() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
        env.coordinator
            .set_conditions(gf_halt::ConditionSet::empty());
        assert!(env.coordinator.conditions().is_empty());
        *env.view.total_dd.lock() = dec!(50);
        assert_eq!(
            env.coordinator.on_event(&trade(&env, "XRP/USD")).await,
            None
        );
        assert!(env.gate.is_open());
    }

    #[tokio::test]
    async fn a_watched_pair_that_never_delivers_goes_stale() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::open(&fast_cfg(), &dir.path().join("gf.sqlite"));
        env.coordinator.watch_pairs(&[pair("DOGE/USD")]);
        env.clock.advance(chrono::Duration::seconds(61));
        let outcomes = env.coordinator.sweep().await;
        assert_eq!(outcomes.len(), 1);
        let halt = env.coordinator.status().halt.unwrap();
        assert_eq!(
            halt.source,
            HaltSource::Auto("market_data_staleness".into())
        );
        assert!(halt.reason.contains("(DOGE/USD)"), "{}", halt.reason);
    }
}
