//! The fleet end to end: real paper daemons on loopback joined through a real
//! `nats-server -js` started here. A fleet halt reaches every node; a node started during
//! a fleet halt starts halted; two operators halting at once write one record; killing
//! nats-server halts every node after the partition timeout and none trades; clearing the
//! fleet halt takes an admin and each node still walks its checklist; a daemon with
//! `fleet.enabled = false` has no fleet at all.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::config::StrategyKind;
use gf_core::{Config, HaltState, Pair, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use gf_daemon::auth::Role;
use gf_fleet::testing::NatsServer;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(20);

fn config(dir: &std::path::Path, nats: &str, node: &str) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.strategy.kind = Some(StrategyKind::None);
    cfg.fleet.enabled = true;
    cfg.fleet.nats_url = vec![nats.to_owned()];
    cfg.fleet.name = "desk".into();
    cfg.fleet.node = node.into();
    cfg.fleet.partition_halt_secs = 1;
    cfg.fleet.heartbeat_ms = 200;
    cfg
}

struct Node {
    _dir: tempfile::TempDir,
    running: Running,
    operator: String,
    admin: String,
    trader: String,
}

async fn node(nats: &str, name: &str, edit: impl FnOnce(&mut Config)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), nats, name);
    edit(&mut cfg);
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    Node {
        operator: running.create_token("olga", Role::Operator).unwrap(),
        admin: running
            .create_token(&format!("ada-{name}"), Role::Admin)
            .unwrap(),
        trader: running.create_token("strat", Role::Trader).unwrap(),
        running,
        _dir: dir,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WITHIN).build().unwrap()
}

impl Node {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http()
            .request(method, format!("{}{path}", self.running.url()))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    fn state(&self) -> HaltState {
        self.running.daemon.halt.state()
    }

    fn halt_source(&self) -> String {
        self.running
            .daemon
            .halt
            .status()
            .halt
            .map(|h| h.source.to_string())
            .unwrap_or_default()
    }

    async fn wait_state(&self, want: HaltState) {
        let mut rx = self.running.daemon.halt.watch_state();
        tokio::time::timeout(WITHIN, rx.wait_for(|s| *s == want))
            .await
            .unwrap_or_else(|_| panic!("{:?} within {WITHIN:?}; it is {:?}", want, self.state()))
            .unwrap();
    }

    /// An order through the gateway: the answer's status and error code.
    async fn order(&self, id: &str) -> (u16, String) {
        let (status, body) = self
            .post(
                "/api/v1/orders",
                &self.trader,
                json!({"client_order_id": id, "pair": "XRP/USD", "side": "buy", "type": "limit",
                       "qty": "10", "limit_price": "2.10"}),
            )
            .await;
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    /// Walks the checklist and resumes over the API, as an operator would: every item,
    /// `confirm_resume` last, then `POST /api/v1/resume`. Its answer: status and body.
    async fn walk_checklist_and_resume(&self) -> (u16, Value) {
        let (status, list) = self.get("/api/v1/recovery/checklist", &self.operator).await;
        assert_eq!(status, 200, "{list}");
        let mut ids: Vec<String> = list["checklist"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["completed_by"].is_null())
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort_by_key(|id| id == "confirm_resume");
        for id in ids {
            let (status, body) = self
                .post(
                    &format!("/api/v1/recovery/checklist/{id}/complete"),
                    &self.operator,
                    json!({"note": "checked"}),
                )
                .await;
            assert_eq!(status, 200, "{id}: {body}");
        }
        self.post("/api/v1/resume", &self.operator, json!({})).await
    }

    async fn walk_checklist_and_resume_ok(&self) {
        let (status, body) = self.walk_checklist_and_resume().await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(self.state(), HaltState::Running);
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

async fn fleet_status(n: &Node) -> Value {
    let (status, body) = n.get("/api/v1/fleet/status", &n.operator).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_halt_reaches_every_node_and_clearing_it_takes_an_admin_and_each_checklist() {
    let nats = NatsServer::start().unwrap();
    let url = nats.url();
    let (a, b, c) = tokio::join!(
        node(&url, "a", |_| {}),
        node(&url, "b", |_| {}),
        node(&url, "c", |_| {}),
    );
    for n in [&a, &b, &c] {
        assert_eq!(
            n.state(),
            HaltState::Running,
            "joined a fleet that is not halted"
        );
    }
    let pair: Pair = "XRP/USD".parse().unwrap();
    c.running.wait_for_price(&pair, WITHIN).await.unwrap();
    assert_eq!(
        c.order("before").await.0,
        201,
        "node c trades before the fleet halt"
    );

    // Every node's heartbeat reaches the others.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let changed = a.running.daemon.fleet.as_ref().unwrap().view().changed();
        let s = fleet_status(&a).await;
        let nodes: Vec<&str> = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node"].as_str().unwrap())
            .collect();
        if nodes == ["a", "b", "c"] {
            assert_eq!(s["connected"], true);
            break;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "heartbeats: {s}");
        let _ = tokio::time::timeout(left, changed).await;
    }

    let (status, body) = a
        .post(
            "/api/v1/fleet/halt",
            &a.operator,
            json!({"reason": "desk-wide loss"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created"], true);
    assert_eq!(body["record"]["by"], "operator:olga");
    assert_eq!(body["record"]["node"], "a");
    for n in [&a, &b, &c] {
        n.wait_state(HaltState::Halted).await;
        assert_eq!(n.halt_source(), "auto:fleet_halt");
        assert!(!n.running.daemon.gate.is_open());
    }
    let (status, code) = c.order("during").await;
    assert_eq!(
        (status, code.as_str()),
        (409, "halted"),
        "no node trades during a fleet halt"
    );
    let (_, metrics) = c.get("/metrics", &c.operator).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    for line in [
        "gf_fleet_connected 1",
        "gf_fleet_halt_active 1",
        "gf_fleet_heartbeat_age_seconds{node=\"a\"}",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // A node's own checklist cannot resume it while the fleet halt stands.
    let (status, body) = b.walk_checklist_and_resume().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "resume_refused");
    assert!(body.to_string().contains("fleet_halt"), "{body}");
    assert_ne!(b.state(), HaltState::Running);

    // Clearing it takes an admin.
    let (status, body) = b.post("/api/v1/fleet/resume", &b.operator, json!({})).await;
    assert_eq!(
        status, 403,
        "an operator may not clear the fleet halt: {body}"
    );
    let (status, body) = b.post("/api/v1/fleet/resume", &b.admin, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cleared"], true);
    assert_eq!(body["record"]["active"], false);
    assert_eq!(body["record"]["cleared_by"], "ada-b");

    // Every node is still halted until its own checklist is walked.
    for n in [&a, &b, &c] {
        let deadline = tokio::time::Instant::now() + WITHIN;
        let view = n.running.daemon.fleet.as_ref().unwrap().view();
        loop {
            let changed = view.changed();
            if view.fleet_halted() == Some(false) {
                break;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "node saw the clear");
            let _ = tokio::time::timeout(left, changed).await;
        }
        assert_ne!(
            n.state(),
            HaltState::Running,
            "clearing the fleet halt resumes no node"
        );
    }
    for n in [&a, &c] {
        let (status, body) = n.post("/api/v1/resume", &n.operator, json!({})).await;
        assert_eq!(
            status, 409,
            "resume without the checklist is refused: {body}"
        );
        n.walk_checklist_and_resume_ok().await;
    }
    // b walked its checklist during the fleet halt (refused then): the clear lets it resume.
    let (status, body) = b.post("/api/v1/resume", &b.operator, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.state(), HaltState::Running);
    assert_eq!(c.order("after").await.0, 201, "node c trades again");

    // The journal of the node that asked says who did what.
    let (_, journal) = a.get("/api/v1/journal?limit=200", &a.operator).await;
    let text = journal.to_string();
    assert!(text.contains("fleet_halt_requested"), "{text}");
    let (_, journal) = b.get("/api/v1/journal?limit=200", &b.operator).await;
    assert!(journal.to_string().contains("fleet_halt_cleared"));

    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_started_during_a_fleet_halt_starts_halted_and_two_halts_at_once_write_one_record() {
    let nats = NatsServer::start().unwrap();
    let url = nats.url();
    let (a, b) = tokio::join!(node(&url, "a", |_| {}), node(&url, "b", |_| {}));
    // Two operators on two nodes halt the fleet at the same moment: one record.
    let ((s1, r1), (s2, r2)) = tokio::join!(
        a.post(
            "/api/v1/fleet/halt",
            &a.operator,
            json!({"reason": "from a"})
        ),
        b.post(
            "/api/v1/fleet/halt",
            &b.operator,
            json!({"reason": "from b"})
        ),
    );
    let mut statuses = [s1, s2];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 201],
        "one created, one found it in force: {r1} {r2}"
    );
    assert_eq!(r1["record"]["revision"], r2["record"]["revision"]);
    assert_eq!(r1["record"]["reason"], r2["record"]["reason"]);

    // A node that was not running comes up halted, before any task of it trades.
    let late = node(&nats.url(), "late", |_| {}).await;
    assert!(
        !late.running.daemon.gate.is_open(),
        "the fleet halt is read before the gate opens"
    );
    assert_ne!(late.state(), HaltState::Running);
    assert_eq!(late.halt_source(), "auto:fleet_halt");
    late.wait_state(HaltState::Halted).await;
    let status = fleet_status(&late).await;
    assert_eq!(status["halt"]["active"], true, "{status}");

    for n in [a, b, late] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_nats_halts_every_node_after_the_partition_timeout_and_none_trades() {
    let mut nats = NatsServer::start().unwrap();
    let url = nats.url();
    let (a, b, c) = tokio::join!(
        node(&url, "a", |_| {}),
        node(&url, "b", |_| {}),
        node(&url, "c", |_| {}),
    );
    let pair: Pair = "XRP/USD".parse().unwrap();
    for n in [&a, &b, &c] {
        assert_eq!(n.state(), HaltState::Running);
        n.running.wait_for_price(&pair, WITHIN).await.unwrap();
    }
    nats.kill();
    for n in [&a, &b, &c] {
        n.wait_state(HaltState::Halted).await;
        assert_eq!(n.halt_source(), "auto:fleet_partition");
        let (status, code) = n.order("cut-off").await;
        assert_eq!(
            (status, code.as_str()),
            (409, "halted"),
            "a partitioned node does not trade"
        );
    }
    // NATS back: the partition clears, but only the checklist resumes.
    nats.restart().unwrap();
    for n in [&a, &b, &c] {
        let fleet = n.running.daemon.fleet.as_ref().unwrap();
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let changed = fleet.view().changed();
            if fleet_status(n).await["connected"].as_bool().unwrap() {
                break;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "reconnected");
            let _ = tokio::time::timeout(left, changed).await;
        }
        assert_eq!(
            n.state(),
            HaltState::Halted,
            "reconnecting resumes nothing by itself"
        );
        n.walk_checklist_and_resume_ok().await;
    }
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_read_the_fleet_halt_starts_halted() {
    // A port nobody listens on: the record cannot be read, so the node cannot tell whether
    // the fleet is halted — it is.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let n = node(&format!("nats://{unused}"), "lonely", |_| {}).await;
    assert!(!n.running.daemon.gate.is_open());
    assert_eq!(n.halt_source(), "auto:fleet_halt");
    n.wait_state(HaltState::Halted).await;
    let (status, body) = n.walk_checklist_and_resume().await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("fleet_halt"), "{body}");
    let (status, body) = n
        .post("/api/v1/fleet/halt", &n.operator, json!({"reason": "try"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "fleet_unreachable");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_come_from_the_secret_provider_and_a_wrong_token_halts() {
    let nats = NatsServer::start_with(&["--auth", "fleet-s3cret"]).unwrap();
    let start_node = |token: &'static str, name: &'static str| {
        let url = nats.url();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(dir.path(), &url, name);
            cfg.fleet.auth = gf_core::config::FleetAuth::Token;
            cfg.secrets.provider = gf_core::config::SecretProviderKind::Env;
            let env = gf_secrets::env::env_from_pairs([("NATS_TOKEN", token)]);
            let running =
                gf_daemon::app::start_with_env(cfg, Scenario::Normal, Arc::new(SystemClock), env)
                    .await
                    .unwrap();
            (dir, running)
        }
    };
    let (_d1, good) = start_node("fleet-s3cret", "good").await;
    assert_eq!(
        good.daemon.halt.state(),
        HaltState::Running,
        "the right token joins"
    );
    assert_eq!(
        good.daemon.fleet.as_ref().unwrap().view().fleet_halted(),
        Some(false)
    );
    let (_d2, bad) = start_node("wrong", "bad").await;
    assert!(
        !bad.daemon.gate.is_open(),
        "a refused token cannot read the fleet halt: halted"
    );
    assert_eq!(
        bad.daemon.halt.status().halt.unwrap().source.to_string(),
        "auto:fleet_halt"
    );
    good.stop().await;
    bad.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_the_fleet_has_no_fleet_routes_conditions_or_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "nats://127.0.0.1:1", "x");
    cfg.fleet.enabled = false;
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    let n = Node {
        operator: running.create_token("olga", Role::Operator).unwrap(),
        admin: running.create_token("ada", Role::Admin).unwrap(),
        trader: running.create_token("strat", Role::Trader).unwrap(),
        running,
        _dir: dir,
    };
    assert!(n.running.daemon.fleet.is_none());
    assert_eq!(n.state(), HaltState::Running);
    let s = fleet_status(&n).await;
    assert_eq!(s["enabled"], false);
    let (status, body) = n
        .post("/api/v1/fleet/halt", &n.operator, json!({"reason": "x"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("fleet_disabled"))
    );
    let (status, _) = n.post("/api/v1/fleet/resume", &n.admin, json!({})).await;
    assert_eq!(status, 409);
    let (_, conds) = n.get("/api/v1/conditions", &n.operator).await;
    assert!(!conds.to_string().contains("fleet_"), "{conds}");
    n.stop().await;
}
