//! The fleet against a real `nats-server -js` (started by the tests; `cargo xtask test`
//! installs it, and its absence fails these tests): compare-and-set fleet halts, a node
//! halting on another's fleet halt, the administrators' clear and each node's own
//! checklist, a malformed record failing closed, partition, escalation and the fleet's
//! summed drawdown over real heartbeats. Every node is a real halt coordinator.

#![allow(clippy::unwrap_used)]

mod common;

use common::{
    Figures, Node, admin, admin_with, fleet_cfg, fleet_halts_written, halt_cfg, halt_history,
    halt_store, nats, until,
};
use gf_core::{ClientOrderId, HaltSource, HaltState, OrderRequest, Side};
use gf_halt::Error;
use rust_decimal::Decimal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_halting_at_once_write_one_fleet_halt() {
    let server = nats();
    let url = server.url();
    for round in 0..5 {
        let name = format!("cas{round}");
        let a = admin(&url, &name, "a").await;
        let b = admin(&url, &name, "b").await;
        let (ra, rb) = tokio::join!(
            a.halt("operator:alice", "desk a loss"),
            b.halt("operator:bob", "desk b loss")
        );
        let ((rec_a, created_a), (rec_b, created_b)) = (ra.unwrap(), rb.unwrap());
        assert!(
            created_a ^ created_b,
            "round {round}: exactly one creates the fleet halt ({created_a}, {created_b})"
        );
        assert!(rec_a.active && rec_b.active);
        assert_eq!(
            rec_a.revision, rec_b.revision,
            "round {round}: the same record"
        );
        assert_eq!((&rec_a.by, &rec_a.reason), (&rec_b.by, &rec_b.reason));
        let winner = if created_a { &rec_a } else { &rec_b };
        assert_eq!(winner.node, if created_a { "a" } else { "b" });
        // Both now know it; a third call (another reason) changes nothing.
        assert_eq!(a.view().fleet_halted(), Some(true));
        assert_eq!(b.view().fleet_halted(), Some(true));
        let (again, created) = a.halt("operator:carol", "later").await.unwrap();
        assert!(!created);
        assert_eq!(again.revision, winner.revision);
        // The bucket, read directly: one write, and it is the winner's.
        let history = halt_history(&halt_store(&url, &name).await).await;
        assert_eq!(history.len(), 1, "round {round}: {history:?}");
        assert_eq!(fleet_halts_written(&history), 1);
        let (revision, stored) = &history[0];
        assert_eq!(*revision, winner.revision);
        assert_eq!(stored.as_ref().unwrap().by, winner.by);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_halt_halts_a_running_node_and_clearing_takes_two_admins_then_the_checklist() {
    let server = nats();
    let url = server.url();
    let cfg = |node: &str| gf_core::config::FleetConfig {
        two_person_rule: true,
        ..fleet_cfg(&url, "clear", node)
    };
    let node = Node::start(cfg("n1")).await;
    node.wait_state("running", |s| s == HaltState::Running)
        .await;
    assert!(node.gate.is_open(), "no fleet halt: the node trades");

    let ops = admin_with(cfg("ops")).await;
    let (record, created) = ops.halt("operator:alice", "firm-wide stop").await.unwrap();
    assert!(created);
    node.halted().await;
    assert_eq!(node.halt_source().as_deref(), Some("auto:fleet_halt"));
    let reason = node.halt.status().halt.unwrap().reason;
    assert!(reason.contains("firm-wide stop"), "{reason}");
    // The fleet's own condition never escalates: the bucket holds the one halt written.
    assert_eq!(
        node.fleet
            .escalation(&HaltSource::Auto("fleet_halt".into())),
        None
    );

    // While the fleet halt is in force the node's resume is refused, naming it.
    match node.halt.recover_and_resume("carol").await {
        Err(Error::ResumeRefused(r)) => {
            assert!(
                r.breached_conditions.contains(&"fleet_halt".to_owned()),
                "{r:?}"
            );
            assert!(!r.missing_items.is_empty());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Two-person rule: the first admin approves, the same admin again changes nothing.
    let first = ops.clear("admin:alice").await.unwrap();
    assert!(!first.cleared);
    assert!(
        first
            .needs
            .as_deref()
            .unwrap()
            .contains("second administrator")
    );
    assert!(first.record.active);
    assert_eq!(first.record.approvals, ["admin:alice"]);
    let again = ops.clear("admin:alice").await.unwrap();
    assert!(!again.cleared, "the same admin twice is still one person");
    assert!(again.record.active);
    assert_eq!(again.record.approvals, ["admin:alice"]);
    assert_eq!(node.fleet.view().fleet_halted(), Some(true));

    // A second admin, through another member of the fleet, clears it.
    let other = admin_with(cfg("ops2")).await;
    let second = other.clear("admin:bob").await.unwrap();
    assert!(second.cleared, "{second:?}");
    assert!(!second.record.active);
    assert_eq!(
        second.record.cleared_by.as_deref(),
        Some("admin:alice + admin:bob")
    );
    assert!(second.record.revision > record.revision);
    let view = node.fleet.view().clone();
    until(&view, "the node sees the fleet halt cleared", || {
        view.fleet_halted() == Some(false)
    })
    .await;

    // Cleared, the node is still halted: its own checklist comes first.
    assert!(!node.gate.is_open());
    assert_eq!(
        node.halt.state(),
        HaltState::Recovering,
        "the refused resume opened it"
    );
    match node.halt.resume("carol").await {
        Err(Error::ResumeRefused(r)) => {
            assert!(r.breached_conditions.is_empty(), "{r:?}");
            assert!(
                r.missing_items
                    .contains(&"confirm_fleet_halt_cleared".to_owned()),
                "{r:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!node.gate.is_open());
    node.walk_checklist_and_resume("carol").await;
    assert_eq!(node.halt.state(), HaltState::Running);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_halt_record_is_an_active_fleet_halt() {
    let server = nats();
    let url = server.url();
    let node = Node::start(fleet_cfg(&url, "garbage", "n1")).await;
    node.wait_state("running", |s| s == HaltState::Running)
        .await;
    let store = halt_store(&url, "garbage").await;
    store.put("halt", "{not json".into()).await.unwrap();
    node.halted().await;
    assert_eq!(node.halt_source().as_deref(), Some("auto:fleet_halt"));
    let rec = node.fleet.view().halt().unwrap();
    assert!(rec.active);
    assert!(rec.reason.contains("unreadable"), "{}", rec.reason);

    // A node joining now reads it as a halt, and a fleet halt is not written over it.
    let late = admin(&url, "garbage", "late").await;
    assert_eq!(late.view().fleet_halted(), Some(true));
    let (in_force, created) = late.halt("operator:x", "y").await.unwrap();
    assert!(!created);
    assert!(in_force.reason.contains("unreadable"));
    // An administrator can clear it (the two-person rule is off).
    let reply = late.clear("admin:alice").await.unwrap();
    assert!(reply.cleared);
    let view = node.fleet.view().clone();
    until(&view, "the node sees it cleared", || {
        view.fleet_halted() == Some(false)
    })
    .await;
    node.walk_checklist_and_resume("carol").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cut_off_from_nats_halt_themselves_and_resume_only_through_their_checklists() {
    let mut server = nats();
    let url = server.url();
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(Node::start(fleet_cfg(&url, "part", id)).await);
    }
    for node in &nodes {
        node.wait_state("running", |s| s == HaltState::Running)
            .await;
        let view = node.fleet.view().clone();
        until(&view, "every heartbeat seen", || view.nodes().len() == 3).await;
        assert!(
            node.gate.check(&order()).is_ok(),
            "trading before the partition"
        );
    }

    server.kill();
    let mut last_contact = Vec::new();
    for node in &nodes {
        node.halted().await;
        assert_eq!(node.halt_source().as_deref(), Some("auto:fleet_partition"));
        assert!(
            node.gate.check(&order()).is_err(),
            "a partitioned node does not trade"
        );
        assert!(
            node.fleet.owed_halt().is_none(),
            "a partition is this node's own: it is not escalated"
        );
        last_contact.push(node.fleet.view().last_contact().unwrap());
    }

    server.restart().unwrap();
    for (node, before) in nodes.iter().zip(last_contact) {
        let view = node.fleet.view().clone();
        until(&view, "NATS answers again", || {
            view.last_contact().is_some_and(|t| t > before)
                && view.silence(chrono::Utc::now()) < chrono::Duration::milliseconds(1000)
        })
        .await;
        node.halt.sweep().await;
        let partition = node
            .halt
            .conditions()
            .into_iter()
            .find(|c| c.id == "fleet_partition")
            .unwrap();
        assert!(!partition.triggered, "{partition:?}");
        // Reachable again, the node stays halted until its checklist is walked.
        assert_eq!(node.halt.state(), HaltState::Halted);
        assert!(node.gate.check(&order()).is_err());
        assert!(
            node.halt
                .checklist()
                .unwrap()
                .missing()
                .contains(&"confirm_fleet_reachable".to_owned())
        );
        node.walk_checklist_and_resume("carol").await;
        assert!(node.gate.check(&order()).is_ok());
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_halt_reaches_all_three_nodes_and_none_trades() {
    let server = nats();
    let url = server.url();
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(Node::start(fleet_cfg(&url, "three", id)).await);
    }
    for node in &nodes {
        node.wait_state("running", |s| s == HaltState::Running)
            .await;
        assert!(node.gate.check(&order()).is_ok());
    }
    // The fleet halt from one of the nodes (an operator's `fleet halt` on n2).
    let (record, created) = nodes[1]
        .fleet
        .halt("operator:olga", "desk-wide loss")
        .await
        .unwrap();
    assert!(created);
    for node in &nodes {
        node.halted().await;
        assert_eq!(node.halt_source().as_deref(), Some("auto:fleet_halt"));
        assert!(node.gate.check(&order()).is_err(), "no node trades");
        assert_eq!(node.fleet.view().halt().unwrap().revision, record.revision);
    }
    for node in nodes {
        node.stop().await;
    }
}

fn order() -> OrderRequest {
    OrderRequest::market(
        ClientOrderId::new("strat-1"),
        "XRP/USD".parse().unwrap(),
        Side::Buy,
        Decimal::ONE,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_halt_and_an_escalated_condition_halt_the_fleet() {
    let server = nats();
    let url = server.url();
    let cfg = |node: &str| gf_core::config::FleetConfig {
        escalate: vec!["operator".into(), "max_total_drawdown".into()],
        ..fleet_cfg(&url, "esc", node)
    };
    let a = Node::start(cfg("a")).await;
    let b = Node::start(cfg("b")).await;
    a.wait_state("running", |s| s == HaltState::Running).await;
    b.wait_state("running", |s| s == HaltState::Running).await;

    // An operator's local halt on A (escalate = ["operator", "max_total_drawdown"]).
    let outcome = a
        .halt
        .halt(HaltSource::Api("alice".into()), "fat finger")
        .await;
    assert!(outcome.started);
    b.halted().await;
    assert_eq!(b.halt_source().as_deref(), Some("auto:fleet_halt"));
    let rec = b.fleet.view().halt().unwrap();
    assert_eq!(rec.by, "operator:alice");
    assert_eq!(rec.node, "a");
    assert!(rec.reason.contains("fat finger"), "{}", rec.reason);
    a.halted().await;
    assert_eq!(
        a.halt_source().as_deref(),
        Some("api:alice"),
        "A's own halt stands"
    );

    // Clear, resume both; then a local condition in `fleet.escalate` breaches on B.
    assert!(
        admin(&url, "esc", "ops")
            .await
            .clear("admin:x")
            .await
            .unwrap()
            .cleared
    );
    for n in [&a, &b] {
        let view = n.fleet.view().clone();
        until(&view, "cleared", || view.fleet_halted() == Some(false)).await;
        n.walk_checklist_and_resume("carol").await;
    }
    // 20 % down against the local max_total_drawdown of 15 %.
    *b.portfolio.equity.lock() = Decimal::new(80_000, 0);
    b.halted().await;
    assert_eq!(b.halt_source().as_deref(), Some("auto:max_total_drawdown"));
    a.halted().await;
    assert_eq!(a.halt_source().as_deref(), Some("auto:fleet_halt"));
    let rec = a.fleet.view().halt().unwrap();
    assert_eq!(rec.by, "auto:max_total_drawdown");
    assert_eq!(rec.node, "b");
    let history = halt_history(&halt_store(&url, "esc").await).await;
    assert_eq!(fleet_halts_written(&history), 2, "{history:?}");

    // What escalates, by source (fleet.escalate = ["operator", "max_total_drawdown"]).
    let f = &a.fleet;
    let auto = |id: &str| f.escalation(&HaltSource::Auto(id.into()));
    assert_eq!(
        auto("max_total_drawdown").as_deref(),
        Some("auto:max_total_drawdown")
    );
    assert_eq!(
        auto("fleet_total_drawdown").as_deref(),
        Some("auto:fleet_total_drawdown")
    );
    assert_eq!(
        auto("fleet_exposure").as_deref(),
        Some("auto:fleet_exposure")
    );
    assert_eq!(
        auto("fleet_halt"),
        None,
        "the fleet's own halt never comes back"
    );
    assert_eq!(auto("fleet_partition"), None);
    assert_eq!(
        auto("max_daily_drawdown"),
        None,
        "not named in fleet.escalate"
    );
    assert_eq!(f.escalation(&HaltSource::Fleet), None);
    assert_eq!(
        f.escalation(&HaltSource::Console("bob".into())).as_deref(),
        Some("operator:bob")
    );
    // The default (`escalate = []`): only the fleet's own sums halt the fleet.
    let none = gf_fleet::Fleet::new(
        fleet_cfg(&url, "esc", "c"),
        gf_fleet::NatsCredentials::None,
        common::clock(),
    );
    assert_eq!(none.escalation(&HaltSource::Api("bob".into())), None);
    assert_eq!(none.escalation(&HaltSource::Cli), None);
    assert_eq!(
        none.escalation(&HaltSource::Auto("max_total_drawdown".into())),
        None
    );
    assert_eq!(
        none.escalation(&HaltSource::Auto("fleet_total_drawdown".into()))
            .as_deref(),
        Some("auto:fleet_total_drawdown")
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_summed_drawdown_over_real_heartbeats_halts_the_fleet_once() {
    let server = nats();
    let url = server.url();
    // A evaluates fleet_total_drawdown at 4 %; B (no fleet limit) is 10 % down, under its
    // own 15 %: alone neither breaches, summed the fleet is (200k - 190k) / 200k = 5 %.
    let a = Node::start(gf_core::config::FleetConfig {
        max_total_drawdown_pct: Decimal::new(4, 0),
        ..fleet_cfg(&url, "dd", "a")
    })
    .await;
    a.wait_state("running", |s| s == HaltState::Running).await;
    let down = Figures::new(Decimal::new(90_000, 0), Decimal::new(100_000, 0));
    let b = Node::start_with(fleet_cfg(&url, "dd", "b"), &halt_cfg(), down).await;

    a.halted().await;
    assert_eq!(
        a.halt_source().as_deref(),
        Some("auto:fleet_total_drawdown")
    );
    b.halted().await;
    assert_eq!(b.halt_source().as_deref(), Some("auto:fleet_halt"));
    let rec = b.fleet.view().halt().unwrap();
    assert_eq!(rec.by, "auto:fleet_total_drawdown");
    assert_eq!(rec.node, "a");
    let history = halt_history(&halt_store(&url, "dd").await).await;
    assert_eq!(fleet_halts_written(&history), 1, "{history:?}");
    assert_eq!(history.len(), 1, "{history:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_during_a_fleet_halt_starts_halted() {
    let server = nats();
    let url = server.url();
    let ops = admin(&url, "late", "ops").await;
    assert!(ops.halt("operator:alice", "stop all").await.unwrap().1);
    let node = Node::start(fleet_cfg(&url, "late", "n1")).await;
    // The sweep at start-up (before any task) already halted it: the gate never opened
    // for trading.
    assert_ne!(node.halt.state(), HaltState::Running);
    assert!(!node.gate.is_open());
    node.halted().await;
    assert_eq!(node.halt_source().as_deref(), Some("auto:fleet_halt"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_written_under_the_two_person_rule_needs_two_admins_whatever_the_clearer_says() {
    let server = nats();
    let url = server.url();
    let strict = admin_with(gf_core::config::FleetConfig {
        two_person_rule: true,
        ..fleet_cfg(&url, "strict", "strict")
    })
    .await;
    let (record, created) = strict.halt("operator:alice", "desk stop").await.unwrap();
    assert!(created);
    assert!(record.two_person, "the rule travels with the record");
    // A node without the rule may not clear it alone.
    let lax = admin(&url, "strict", "lax").await;
    let first = lax.clear("admin:bob").await.unwrap();
    assert!(!first.cleared, "{first:?}");
    assert!(first.record.active);
    let second = lax.clear("admin:carol").await.unwrap();
    assert!(second.cleared, "{second:?}");
    assert_eq!(
        second.record.cleared_by.as_deref(),
        Some("admin:bob + admin:carol")
    );
}
