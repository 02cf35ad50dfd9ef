//! The closure's bookkeeping around fills it does not see at once, under paused tokio time:
//! a halt waits (at most `SETTLE_TIMEOUT`) for the portfolio to show what the
//! reconciliation of an order in flight published, and a fill that lands after a flat
//! closure starts exactly one more closure round once seen unchanged for
//! `LATE_FILL_CONFIRM` — not before, not while a round runs, not after a closure that was
//! not flat — numbered after the rounds before it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tokio::time::Instant;

use common::{Env, fast_cfg, halted, normal_order, pair, position};
use gf_core::config::HaltConfig;
use gf_core::{
    AlertStatus, ClientOrderId, Event, EventKind, Fill, HaltBehaviour, HaltSource, HaltState,
    KindSet, OrderId, OrderPurpose, Payload, Position, Severity, Side, Source, Subscription,
};
use gf_exec::Exchange;
use gf_halt::HaltCoordinator;
use gf_halt::closure::closure_client_id;
use gf_halt::coordinator::{LATE_FILL_CONFIRM, SETTLE_TIMEOUT, kinds};

fn open(cfg: &HaltConfig) -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(cfg, &dir.path().join("gf.sqlite"));
    (env, dir)
}

/// The `closure_result` records: (round, flat, detail).
fn closure_results(c: &HaltCoordinator) -> Vec<(u64, bool, String)> {
    c.journal()
        .records(1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kinds::CLOSURE_RESULT)
        .map(|r| {
            (
                r.detail["round"].as_u64().unwrap(),
                r.detail["flat"].as_bool().unwrap(),
                r.detail["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A normal order of `qty` XRP whose request was unresolved when the halt came (the gate
/// records it), though it reached the exchange and filled; the portfolio has not seen the
/// fill. Reconciling it reports `published` as newly published.
async fn order_of_unknown_outcome(env: &Env, qty: Decimal, published: Decimal) {
    let mut order = normal_order(7);
    order.qty = qty;
    {
        let mut permit = env.gate.enter(&order).unwrap();
        permit.mark_unresolved();
    }
    env.exchange.place_order(&order).await.unwrap();
    env.exchange
        .publish_on_reconcile
        .lock()
        .insert(order.client_order_id.clone(), published);
}

/// The portfolio shows `positions` `after` from now (the risk task applying a fill).
fn portfolio_shows_after(env: &Env, after: Duration, positions: Vec<Position>) {
    let view = Arc::clone(&env.view);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        *view.positions.lock() = positions;
    });
}

/// Halts and returns how long (tokio time) the halt took to reach Halted.
async fn halt_and_time(env: &Env) -> Duration {
    let start = Instant::now();
    let outcome = env.coordinator.halt(HaltSource::Cli, "drill").await;
    assert!(outcome.started);
    halted(&env.coordinator).await;
    start.elapsed()
}

fn xrp_sells(env: &Env) -> Vec<(ClientOrderId, Decimal)> {
    env.exchange
        .closure_orders()
        .into_iter()
        .map(|o| {
            assert_eq!(o.pair, pair("XRP/USD"));
            assert_eq!(o.side, Side::Sell);
            (o.client_order_id, o.qty)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_closure_waits_until_the_portfolio_shows_the_reconciled_fill() {
    let (env, _dir) = open(&fast_cfg());
    order_of_unknown_outcome(&env, dec!(2), dec!(2)).await;
    portfolio_shows_after(
        &env,
        Duration::from_millis(200),
        vec![position("XRP/USD", dec!(2))],
    );
    let took = halt_and_time(&env).await;
    assert!(
        took >= Duration::from_millis(200) && took < SETTLE_TIMEOUT,
        "closed {took:?} after the halt"
    );
    assert_eq!(xrp_sells(&env).len(), 1);
    assert_eq!(xrp_sells(&env)[0].1, dec!(2));
    assert_eq!(
        closure_results(&env.coordinator),
        [(1, true, "1 position(s) closed".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn the_closure_gives_up_waiting_at_the_settle_timeout_and_closes_what_is_held() {
    let (env, _dir) = open(&fast_cfg());
    order_of_unknown_outcome(&env, dec!(2), dec!(2)).await;
    // The portfolio never shows the fill.
    let took = halt_and_time(&env).await;
    assert!(
        took >= SETTLE_TIMEOUT && took < SETTLE_TIMEOUT + Duration::from_millis(100),
        "closed {took:?} after the halt"
    );
    // The closure sells what the account holds.
    assert_eq!(xrp_sells(&env).len(), 1);
    assert_eq!(xrp_sells(&env)[0].1, dec!(2));
}

#[tokio::test(start_paused = true)]
async fn a_fill_published_before_the_reconciliation_is_not_waited_for() {
    let (env, _dir) = open(&fast_cfg());
    // Nothing newly published: the fill went out before, and reaches the portfolio while
    // the reconciliation asks the exchange.
    *env.exchange.reconcile_delay.lock() = Duration::from_millis(100);
    order_of_unknown_outcome(&env, dec!(2), Decimal::ZERO).await;
    portfolio_shows_after(
        &env,
        Duration::from_millis(50),
        vec![position("XRP/USD", dec!(2))],
    );
    let took = halt_and_time(&env).await;
    // The in-flight order's query, then the closure order's (100 ms each); no settle wait.
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(300),
        "closed {took:?} after the halt"
    );
    assert_eq!(xrp_sells(&env).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancel_only_does_not_wait_for_the_portfolio() {
    let cfg = HaltConfig {
        behaviour: HaltBehaviour::CancelOnly,
        ..fast_cfg()
    };
    let (env, _dir) = open(&cfg);
    order_of_unknown_outcome(&env, dec!(2), dec!(2)).await;
    let took = halt_and_time(&env).await;
    assert!(took < Duration::from_millis(100), "halted {took:?} after");
    assert!(xrp_sells(&env).is_empty());
    assert_eq!(env.exchange.cancel_all_count(), 2);
}

fn fill_event(env: &Env) -> Event {
    Event::new(
        env.now(),
        Source::Exec,
        Payload::Fill(Fill {
            trade_id: "T-late".into(),
            order_id: OrderId::new("O-late"),
            client_order_id: None,
            pair: pair("XRP/USD"),
            side: Side::Buy,
            qty: dec!(1),
            price: dec!(0.5),
            fee: Decimal::ZERO,
            ts: env.now(),
            purpose: OrderPurpose::Normal,
        }),
    )
}

/// The coordinator's event loop delivering a fill (which looks for late fills).
async fn deliver_fill(env: &Env) {
    assert_eq!(env.coordinator.on_event(&fill_event(env)).await, None);
}

/// Lets spawned work run without moving tokio time far (a closure round against the fake
/// takes no timer).
async fn settle_tasks() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The next `ClosureResult` published, and the alerts published before it.
async fn next_closure_result(sub: &mut Subscription) -> ((bool, String), Vec<Payload>) {
    let mut alerts = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), sub.recv())
            .await
            .expect("a closure result in time")
            .unwrap();
        match &ev.payload {
            Payload::ClosureResult { flat, detail } => {
                // An alert follows its result: take what is already there.
                while let Ok(ev) = sub.try_recv() {
                    alerts.push(ev.payload.clone());
                }
                return ((*flat, detail.clone()), alerts);
            }
            other => alerts.push(other.clone()),
        }
    }
}

fn results_sub(env: &Env) -> Subscription {
    env.bus
        .subscribe(KindSet::of(&[EventKind::ClosureResult, EventKind::Alert]))
}

#[tokio::test(start_paused = true)]
async fn a_late_fill_after_a_flat_closure_is_closed_once_confirmed_and_only_once() {
    let (env, _dir) = open(&fast_cfg());
    let mut sub = results_sub(&env);
    let outcome = env.coordinator.halt(HaltSource::Cli, "drill").await;
    halted(&env.coordinator).await;
    let halt_id = outcome.halt_id;
    let ((flat, _), _) = next_closure_result(&mut sub).await;
    assert!(flat);
    assert_eq!(
        closure_results(&env.coordinator),
        [(1, true, "nothing to close".to_owned())]
    );
    let xrp = pair("XRP/USD");

    // A late fill: seen, then seen unchanged just short of the confirmation …
    env.hold(vec![position("XRP/USD", dec!(1))]);
    let t0 = Instant::now();
    deliver_fill(&env).await;
    tokio::time::sleep(LATE_FILL_CONFIRM - Duration::from_millis(2)).await;
    deliver_fill(&env).await;
    settle_tasks().await;
    assert!(
        xrp_sells(&env).is_empty(),
        "no round before the confirmation"
    );
    assert_eq!(t0.elapsed(), LATE_FILL_CONFIRM - Duration::from_millis(1));
    settle_tasks().await;
    // … and exactly at it: round 2, numbered after round 1's one attempt.
    deliver_fill(&env).await;
    let ((flat, detail), alerts) = next_closure_result(&mut sub).await;
    let at = t0.elapsed();
    assert!(
        at >= LATE_FILL_CONFIRM && at < LATE_FILL_CONFIRM + Duration::from_millis(50),
        "{at:?}"
    );
    assert!(flat);
    assert_eq!(detail, "round 2: 1 position(s) closed");
    assert!(alerts.is_empty(), "{alerts:?}");
    assert_eq!(
        xrp_sells(&env),
        [(closure_client_id(halt_id, &xrp, 2), dec!(1))]
    );
    assert_eq!(
        closure_results(&env.coordinator)[1..],
        [(2, true, "1 position(s) closed".to_owned())]
    );

    // The closure's own fill reaches the portfolio a little later: not a late fill.
    deliver_fill(&env).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    *env.view.positions.lock() = Vec::new();
    deliver_fill(&env).await;
    tokio::time::sleep(LATE_FILL_CONFIRM * 2).await;
    deliver_fill(&env).await;
    settle_tasks().await;
    assert_eq!(xrp_sells(&env).len(), 1, "flat stays flat");
    assert_eq!(closure_results(&env.coordinator).len(), 2);

    // Another late fill, whose position changes while being confirmed: the confirmation
    // starts again from the change.
    env.hold(vec![position("XRP/USD", dec!(1))]);
    let t1 = Instant::now();
    deliver_fill(&env).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.hold(vec![position("XRP/USD", dec!(2))]);
    deliver_fill(&env).await;
    tokio::time::sleep(LATE_FILL_CONFIRM - Duration::from_millis(300)).await;
    deliver_fill(&env).await;
    settle_tasks().await;
    assert_eq!(
        xrp_sells(&env).len(),
        1,
        "the changed position is not confirmed yet"
    );
    tokio::time::sleep(Duration::from_millis(299)).await;
    assert_eq!(t1.elapsed(), Duration::from_millis(800));
    deliver_fill(&env).await;
    let ((flat, detail), alerts) = next_closure_result(&mut sub).await;
    assert!(flat);
    assert_eq!(detail, "round 3: 1 position(s) closed");
    assert!(alerts.is_empty(), "{alerts:?}");
    // Round 3 numbers its attempt after rounds 1 and 2 (one attempt each).
    assert_eq!(
        xrp_sells(&env)[1..],
        [(closure_client_id(halt_id, &xrp, 3), dec!(2))]
    );
    assert_eq!(
        closure_results(&env.coordinator)[2..],
        [(3, true, "1 position(s) closed".to_owned())]
    );
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(!env.gate.is_open());
    assert!(env.coordinator.journal().verify().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_late_round_that_cannot_close_alerts_and_no_round_overlaps_or_follows_it() {
    // Three attempts, 400 ms then 800 ms apart: a failing round runs for 1.2 s.
    let cfg = HaltConfig {
        closure_backoff_ms: 400,
        ..fast_cfg()
    };
    let (env, _dir) = open(&cfg);
    let mut sub = results_sub(&env);
    let outcome = env.coordinator.halt(HaltSource::Cli, "drill").await;
    halted(&env.coordinator).await;
    let halt_id = outcome.halt_id;
    assert!(next_closure_result(&mut sub).await.0.0, "round 1 was flat");

    env.exchange.reject_closures.store(true, Ordering::SeqCst);
    env.hold(vec![position("XRP/USD", dec!(1))]);
    deliver_fill(&env).await;
    tokio::time::sleep(LATE_FILL_CONFIRM).await;
    deliver_fill(&env).await;
    settle_tasks().await;
    assert_eq!(xrp_sells(&env).len(), 1, "round 2 started");
    // While round 2 retries, the position stays: no second round alongside it.
    deliver_fill(&env).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    deliver_fill(&env).await;
    settle_tasks().await;

    let ((flat, detail), alerts) = next_closure_result(&mut sub).await;
    assert!(!flat);
    assert!(detail.starts_with("round 2: "), "{detail}");
    let xrp = pair("XRP/USD");
    // Three attempts of round 2, numbered after round 1's one.
    assert_eq!(
        xrp_sells(&env),
        [2, 3, 4].map(|n| (closure_client_id(halt_id, &xrp, n), dec!(1)))
    );
    let critical: Vec<&Payload> = alerts
        .iter()
        .filter(|p| {
            matches!(p, Payload::Alert { key, severity: Severity::Critical,
                status: AlertStatus::Firing, summary }
                if *key == format!("halt_{halt_id}_closure")
                    && summary.contains("closure round 2"))
        })
        .collect();
    assert_eq!(critical.len(), 1, "{alerts:?}");
    let results = closure_results(&env.coordinator);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!((results[1].0, results[1].1), (2, false));

    // The position is still there, but the last round was not flat: the operator
    // resolves it (the checklist), no further round starts.
    deliver_fill(&env).await;
    tokio::time::sleep(LATE_FILL_CONFIRM * 2).await;
    deliver_fill(&env).await;
    settle_tasks().await;
    assert_eq!(xrp_sells(&env).len(), 3);
    assert_eq!(closure_results(&env.coordinator).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_position_after_a_closure_that_was_not_flat_starts_no_round() {
    let (env, _dir) = open(&fast_cfg());
    env.hold(vec![position("XRP/USD", dec!(1))]);
    env.exchange.reject_closures.store(true, Ordering::SeqCst);
    env.coordinator.halt(HaltSource::Cli, "drill").await;
    halted(&env.coordinator).await;
    let attempts = xrp_sells(&env).len();
    assert_eq!(attempts, 3);
    assert_eq!(closure_results(&env.coordinator).len(), 1);
    assert!(!closure_results(&env.coordinator)[0].1);

    // The position the closure could not sell stays: the operator resolves it.
    env.exchange.reject_closures.store(false, Ordering::SeqCst);
    deliver_fill(&env).await;
    tokio::time::sleep(LATE_FILL_CONFIRM * 2).await;
    deliver_fill(&env).await;
    settle_tasks().await;
    assert_eq!(xrp_sells(&env).len(), attempts);
    assert_eq!(closure_results(&env.coordinator).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_position_once_running_again_is_no_late_fill() {
    let (env, _dir) = open(&fast_cfg());
    env.coordinator.halt(HaltSource::Cli, "drill").await;
    halted(&env.coordinator).await;
    env.coordinator.begin_recovery("alice").await.unwrap();
    for item in env.coordinator.checklist().unwrap().missing() {
        env.coordinator
            .complete_item(&item, "alice", Some("checked"))
            .await
            .unwrap();
    }
    env.coordinator.resume("alice").await.unwrap();
    assert_eq!(env.coordinator.state(), HaltState::Running);

    // Trading again: a position is the strategy's, not a late fill of the halt.
    env.hold(vec![position("XRP/USD", dec!(1))]);
    deliver_fill(&env).await;
    tokio::time::sleep(LATE_FILL_CONFIRM * 2).await;
    deliver_fill(&env).await;
    settle_tasks().await;
    assert!(xrp_sells(&env).is_empty());
    assert_eq!(closure_results(&env.coordinator).len(), 1);
    assert!(env.gate.is_open());
}
