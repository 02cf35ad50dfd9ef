//! Shared by the NATS tests and the propagation benchmark: a fleet node as the daemon
//! builds one — a [`Fleet`], a real [`HaltCoordinator`] (in-memory journal, the null
//! exchange, a settable portfolio) with the fleet conditions registered, the fleet task and
//! the coordinator's own run loop (its 1 s sweep) — and waits with deadlines.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt;
use gf_api::FleetHaltRecord;
use gf_core::config::{FleetConfig, HaltConfig};
use gf_core::{
    EventBus, EventKind, HaltBehaviour, HaltState, KindSet, Pair, Position, SharedClock,
    SystemClock, TradingGate,
};
use gf_exec::NullExchange;
use gf_fleet::testing::NatsServer;
use gf_fleet::{Fleet, FleetView, NatsCredentials, RunContext};
use gf_halt::{HaltCoordinator, Journal};
use gf_risk::PortfolioView;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any awaited change may take before the test fails (a bound on a broken test,
/// not a timing).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Starts a real `nats-server -js`. A missing program fails the test with the installer's
/// message (`cargo xtask test` installs it): it is never skipped.
pub fn nats() -> NatsServer {
    match NatsServer::start() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// A fleet member's configuration on `url`: heartbeats every 100 ms, partition after 1 s.
pub fn fleet_cfg(url: &str, fleet: &str, node: &str) -> FleetConfig {
    FleetConfig {
        enabled: true,
        nats_url: vec![url.to_owned()],
        name: fleet.to_owned(),
        node: node.to_owned(),
        partition_halt_secs: 1,
        heartbeat_ms: 100,
        ..FleetConfig::default()
    }
}

/// Cancel-only halts (nothing to close over the null exchange anyway).
pub fn halt_cfg() -> HaltConfig {
    HaltConfig {
        behaviour: HaltBehaviour::CancelOnly,
        ..HaltConfig::default()
    }
}

pub fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A portfolio whose equity and peak tests set; drawdown follows from them.
#[derive(Debug)]
pub struct Figures {
    pub equity: Mutex<Decimal>,
    pub peak: Mutex<Decimal>,
    pub exposure: Mutex<Decimal>,
}

impl Figures {
    pub fn new(equity: Decimal, peak: Decimal) -> Arc<Self> {
        Arc::new(Self {
            equity: Mutex::new(equity),
            peak: Mutex::new(peak),
            exposure: Mutex::new(Decimal::ZERO),
        })
    }
}

impl PortfolioView for Figures {
    fn equity(&self) -> Decimal {
        *self.equity.lock()
    }
    fn peak_equity(&self) -> Decimal {
        *self.peak.lock()
    }
    fn total_drawdown_pct(&self) -> Decimal {
        let (e, p) = (*self.equity.lock(), *self.peak.lock());
        if p.is_zero() {
            Decimal::ZERO
        } else {
            ((p - e) / p * Decimal::ONE_HUNDRED).max(Decimal::ZERO)
        }
    }
    fn daily_drawdown_pct(&self) -> Decimal {
        Decimal::ZERO
    }
    fn consecutive_losses(&self) -> u32 {
        0
    }
    fn positions(&self) -> Vec<Position> {
        Vec::new()
    }
    fn exposure(&self) -> Decimal {
        *self.exposure.lock()
    }
    fn volatility_pct(&self, _pair: &Pair) -> Option<Decimal> {
        None
    }
}

/// One daemon's worth of fleet: its membership, coordinator, gate and tasks.
pub struct Node {
    pub fleet: Fleet,
    pub halt: HaltCoordinator,
    pub gate: TradingGate,
    pub bus: EventBus,
    pub portfolio: Arc<Figures>,
    pub shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("fleet", &self.fleet).finish()
    }
}

impl Node {
    /// Starts a node as the daemon does: join (read the fleet halt record), open the
    /// coordinator, register the fleet conditions and sweep them, then run the fleet task
    /// and the coordinator's loop. Equity 100 000, no drawdown.
    pub async fn start(cfg: FleetConfig) -> Self {
        let portfolio = Figures::new(Decimal::new(100_000, 0), Decimal::new(100_000, 0));
        Self::start_with(cfg, &halt_cfg(), portfolio).await
    }

    pub async fn start_with(cfg: FleetConfig, hc: &HaltConfig, portfolio: Arc<Figures>) -> Self {
        let clock = clock();
        let fleet = Fleet::new(cfg, NatsCredentials::None, clock.clone());
        fleet.connect_within(DEADLINE).await.unwrap();
        let journal = Arc::new(Journal::in_memory(clock.clone()).unwrap());
        let gate = TradingGate::new_closed();
        let bus = EventBus::new(4096);
        let halt = HaltCoordinator::builder(hc, journal, gate.clone())
            .exchange(Arc::new(NullExchange))
            .portfolio(portfolio.clone())
            .bus(bus.clone())
            .clock(clock)
            .open()
            .unwrap();
        attach(&fleet, &halt, hc.behaviour);
        halt.sweep().await;
        let shutdown = CancellationToken::new();
        let rc = RunContext {
            halt: halt.clone(),
            portfolio: portfolio.clone(),
            quote: "USD".into(),
            events: bus.subscribe(KindSet::of(&[EventKind::HaltTriggered])),
            shutdown: shutdown.clone(),
            events_closed: false,
        };
        let mut tasks = Vec::new();
        let f = fleet.clone();
        tasks.push(tokio::spawn(async move { f.run(rc).await }));
        let h = halt.clone();
        let events = bus.subscribe(halt.subscription_kinds());
        let s = shutdown.clone();
        tasks.push(tokio::spawn(async move { h.run(events, s).await }));
        Self {
            fleet,
            halt,
            gate,
            bus,
            portfolio,
            shutdown,
            tasks,
        }
    }

    /// The coordinator's halt source as text (`auto:<id>`, `api:<op>`), when halted.
    pub fn halt_source(&self) -> Option<String> {
        self.halt.status().halt.map(|h| h.source.to_string())
    }

    /// Waits until the coordinator's state satisfies `want`.
    pub async fn wait_state(&self, what: &str, want: impl Fn(HaltState) -> bool) {
        let mut rx = self.halt.watch_state();
        let node = self.fleet.config().node.clone();
        tokio::time::timeout(DEADLINE, rx.wait_for(|s| want(*s)))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "node {node}: {what} not within {DEADLINE:?} (state {:?}, halt {:?})",
                    self.halt.state(),
                    self.halt.status().halt
                )
            })
            .unwrap();
    }

    /// Waits until Halted (the halt actions done).
    pub async fn halted(&self) {
        self.wait_state("halted", |s| s == HaltState::Halted).await;
        assert!(!self.gate.is_open(), "a halted node's gate is closed");
    }

    /// Works the whole checklist and resumes, as operator `op`.
    pub async fn walk_checklist_and_resume(&self, op: &str) {
        let missing = self.halt.checklist().unwrap().missing();
        for item in missing {
            self.halt
                .recover_and_complete_item(&item, op, None)
                .await
                .unwrap();
        }
        self.halt.recover_and_resume(op).await.unwrap();
        assert!(self.gate.is_open(), "resumed: the gate is open");
    }

    /// Stops the node's tasks and waits for them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The fleet conditions on the node's coordinator, as the daemon registers them.
pub fn attach(fleet: &Fleet, halt: &HaltCoordinator, behaviour: HaltBehaviour) {
    fleet.register_conditions(halt, behaviour, "USD");
}

/// A fleet member that only writes and reads (an operator's `gf-daemon fleet` command).
pub async fn admin(url: &str, fleet: &str, node: &str) -> Fleet {
    admin_with(fleet_cfg(url, fleet, node)).await
}

/// As [`admin`], with its own configuration (the two-person rule is the clearing
/// member's).
pub async fn admin_with(cfg: FleetConfig) -> Fleet {
    let f = Fleet::new(cfg, NatsCredentials::None, clock());
    f.connect_within(DEADLINE).await.unwrap();
    f
}

/// Waits until `check` holds, re-checking on every change of `view` (a halt record, a
/// heartbeat or a contact with NATS). The wake-up is armed before each check, so no change
/// between the check and the wait is missed.
pub async fn until(view: &FleetView, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let changed = view.changed();
        if check() {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: not within {DEADLINE:?}");
        let _ = tokio::time::timeout(left, changed).await;
    }
}

/// The halt bucket of `fleet`, opened directly with async-nats (not through gf-fleet).
pub async fn halt_store(url: &str, fleet: &str) -> kv::Store {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_key_value(gf_fleet::halt_bucket(fleet))
        .await
        .unwrap()
}

/// Every value the halt key has held, oldest first, as (revision, the JSON, if it parses).
pub async fn halt_history(store: &kv::Store) -> Vec<(u64, Option<FleetHaltRecord>)> {
    let mut history = store.history("halt").await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(entry)) = tokio::time::timeout(Duration::from_secs(2), history.next()).await {
        let entry = entry.unwrap();
        out.push((entry.revision, serde_json::from_slice(&entry.value).ok()));
    }
    out
}

/// How many writes of the halt key made an active record out of an inactive or absent one.
pub fn fleet_halts_written(history: &[(u64, Option<FleetHaltRecord>)]) -> usize {
    let mut active = false;
    let mut n = 0;
    for (_, rec) in history {
        let now = rec.as_ref().is_none_or(|r| r.active);
        if now && !active {
            n += 1;
        }
        active = now;
    }
    n
}
