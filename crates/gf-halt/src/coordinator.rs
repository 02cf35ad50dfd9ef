//! The halt coordinator: closes the gate, runs the halt behaviour, keeps the state machine
//! and the checklist, evaluates conditions on events, journals and publishes everything.
//!
//! Ordering on a trigger (the architecture invariant "gf-halt never waits on the network
//! before closing the gate"):
//! 1. [`TradingGate::close`], before any lock, I/O or allocation of note;
//! 2. the state machine moves to Halting (in memory: a halt is applied fail-safe first);
//! 3. a task issues cancel-all at once; then, if orders were in flight at the close (their
//!    request on the wire, or with an unknown outcome), it waits for those requests to
//!    resolve — bounded by the exchange's request timeout
//!    ([`HaltCoordinator::set_exchange_timeout`]) — asks the exchange what became of each
//!    by client order id (publishing any execution the portfolio has not seen), waits for
//!    the portfolio to reflect what that published, cancels again, and only then closes
//!    positions per behaviour;
//! 4. meanwhile the trigger is journaled (durably) and only then published and returned.
//!
//! A fill that lands after the closure reported flat (an order that reached the exchange
//! only after the drain gave up on it) leaves the portfolio holding a position while
//! Halted or Recovering. With behaviour `close_positions`, [`HaltCoordinator::run`] sees it
//! — on the `Fill` event and on every sweep — and once the same position is seen again
//! [`LATE_FILL_CONFIRM`] later (so a closure fill still on its way to the portfolio is not
//! mistaken for one), starts another closure round, journaled as a `closure_result` with
//! its round number.
//!
//! The coordinator holds the gate's only [`GateOpener`]: the resume path and the restore
//! to Running open the gate, and closure orders are sealed with it
//! ([`crate::closure::ClosureMint`]). Nothing else can open the gate or pass it while
//! closed.
//!
//! Every other transition is write-ahead: prepared on a copy of the machine, journaled,
//! then applied and published. Operations are serialised by an async lock; a trigger
//! arriving while one is being journaled wins, and the operation returns
//! [`Error::Interrupted`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use gf_core::config::HaltConfig;
use gf_core::{
    AlertStatus, Event, EventBus, GateOpener, HaltBehaviour, HaltSource, HaltState, KindSet, Pair,
    Payload, Position, RecvError, Severity, SharedClock, Source, Subscription, TradingGate,
};
use gf_exec::Exchange;
use gf_risk::PortfolioView;

use crate::checklist::{Checklist, ChecklistItem, ItemSpec};
use crate::closure::{
    CancelOutcome, ClosureMint, ClosureReport, RetryPolicy, cancel_all_with_retry, close_positions,
};
use crate::condition::{Breach, ConditionSet, ConditionStatus, EvalContext};
use crate::error::{Error, ResumeRefusal, validate_operator};
use crate::journal::{Entry, Journal, JournalRecord, RISK_SNAPSHOT};
use crate::machine::{HaltInfo, Machine, Snapshot, Trigger, TriggerEffect};
use crate::witness::UnjournaledHalt;

mod builder;
mod workflow;
pub use builder::{
    DEFAULT_BUS_CAPACITY, HaltCoordinatorBuilder, MissingExchange, MissingPortfolio,
};

/// Journal record kinds written by the coordinator.
pub mod kinds {
    /// A trigger that started a halt.
    pub const HALT_TRIGGERED: &str = "halt_triggered";
    /// A trigger recorded on a halt already in force.
    pub const TRIGGER_RECORDED: &str = "trigger_recorded";
    /// A state machine transition (carries the snapshot).
    pub const STATE_CHANGED: &str = "state_changed";
    /// The outcome of cancel-all and closure.
    pub const CLOSURE_RESULT: &str = "closure_result";
    /// A checklist item completed (carries the snapshot).
    pub const CHECKLIST_STEP: &str = "checklist_step";
    /// A refused resume attempt.
    pub const RESUME_REFUSED: &str = "resume_refused";
    /// The state restored on start (carries the snapshot).
    pub const RESTORED: &str = "restored";
}

/// The exchange request timeout a coordinator assumes until
/// [`HaltCoordinator::set_exchange_timeout`] says otherwise (`exchange.timeout_ms`'s
/// default).
pub const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Added to the exchange request timeout when a halt waits for requests on the wire: the
/// transport's own timeout fires first, and the permit is released right after it.
pub const DRAIN_MARGIN: Duration = Duration::from_millis(500);

/// Longest a halt waits for the portfolio to apply the fills its reconciliation published
/// before it computes the closure (anything later is caught by a later closure round).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the settle wait looks at the portfolio.
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// How long a position seen after a flat closure must stay the same before it starts
/// another closure round: longer than the risk task takes to apply a fill (microseconds),
/// so a closure's own fill on its way to the portfolio never looks like a late fill.
pub const LATE_FILL_CONFIRM: Duration = Duration::from_millis(500);

/// How often [`HaltCoordinator::run`] sweeps the time-based conditions.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Longest halt reason kept, in characters; longer ones are cut.
pub const MAX_REASON_CHARS: usize = 500;

/// The condition id used when the journal fails verification on start (an edited or
/// re-chained record, a rollback behind the witness, an unreadable witness).
pub const JOURNAL_INTEGRITY: &str = "journal_integrity";

/// The condition id used when the journal is missing, empty or replaced in a data
/// directory that has run before.
pub const JOURNAL_MISSING: &str = "journal_missing";

/// The condition id of the halt the coordinator triggers on itself when a journal write
/// fails.
pub const JOURNAL_UNWRITABLE: &str = "journal_unwritable";

/// The checklist item each journal halt adds.
fn journal_item(condition: &str) -> ItemSpec {
    match condition {
        JOURNAL_MISSING => ItemSpec::new(
            "review_journal_missing",
            "Find out why the journal is missing, empty or replaced; once reviewed, adopt a new one (gf-daemon journal adopt)",
        ),
        JOURNAL_UNWRITABLE => ItemSpec::new(
            "review_journal_storage",
            "Check the journal's disk (free space, permissions, I/O errors) and that the journal verifies",
        ),
        _ => ItemSpec::new(
            "review_journal_integrity",
            "Review the journal: archive the tampered database before trusting it",
        ),
    }
}

/// What [`HaltCoordinator::halt`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltOutcome {
    /// The halt in force.
    pub halt_id: u64,
    /// `true` when this trigger started the halt; `false` when one was already in force
    /// and the trigger was recorded on it.
    pub started: bool,
    /// State right after the trigger (Halting, or Halted when recorded).
    pub state: HaltState,
    /// Set when the journal write failed; the halt is in force regardless.
    pub journal_error: Option<String>,
    /// `true` when the trigger is journaled. `false`: the gate is closed and the halt is
    /// in force in this process, but the journal could not record it (the coordinator
    /// then notes it in the witness, best effort, so a restart still comes back halted).
    pub durable: bool,
}

/// Everything the status endpoint shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltStatus {
    /// State.
    pub state: HaltState,
    /// Whether non-closure orders may pass.
    pub gate_open: bool,
    /// The current (or last) halt.
    pub halt: Option<HaltInfo>,
    /// Checklist items still missing.
    pub checklist_missing: Vec<String>,
    /// Who resumed last.
    pub resumed_by: Option<String>,
    /// A journal verification or write problem, if any.
    pub journal_problem: Option<String>,
}

struct Shared {
    cfg: HaltConfig,
    policy: RetryPolicy,
    gate: TradingGate,
    /// Opens the gate (resume, restore to Running) and seals closure orders; never leaves.
    opener: GateOpener,
    exchange: Arc<dyn Exchange>,
    portfolio: Arc<dyn PortfolioView>,
    bus: EventBus,
    clock: SharedClock,
    journal: Arc<Journal>,
    machine: Mutex<Machine>,
    conditions: Mutex<ConditionSet>,
    op: tokio::sync::Mutex<()>,
    state_tx: watch::Sender<HaltState>,
    journal_problem: Mutex<Option<String>>,
    /// Set by the first failed journal write (which halts); never cleared.
    journal_failed: std::sync::atomic::AtomicBool,
    /// The last risk snapshot journaled (an unchanged one is not journaled again).
    last_risk: Mutex<Option<serde_json::Value>>,
    /// Waiting for requests on the wire, and closure rounds after late fills.
    closing: Closing,
}

/// The closure side of a halt beyond the halt task itself.
#[derive(Debug)]
struct Closing {
    /// The exchange's request timeout, milliseconds (bounds the wait for the wire).
    exchange_timeout_ms: std::sync::atomic::AtomicU64,
    late: Mutex<LateFills>,
}

impl Default for Closing {
    fn default() -> Self {
        Self {
            exchange_timeout_ms: std::sync::atomic::AtomicU64::new(
                u64::try_from(DEFAULT_EXCHANGE_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
            ),
            late: Mutex::new(LateFills::default()),
        }
    }
}

/// Closure rounds of the current halt (behaviour `close_positions` only).
#[derive(Debug, Default)]
struct LateFills {
    /// The halt whose closure is watched; `None` when no closure is to be watched.
    halt_id: Option<u64>,
    /// Closure rounds run for it (the halt's own is round 1).
    rounds: u32,
    /// Order-placing attempts used by those rounds (later rounds number their client
    /// order ids after them).
    attempts: u32,
    /// The last round reported flat (only then can a late fill be told apart).
    flat: bool,
    /// A round is running.
    running: bool,
    /// Positions seen after a flat round, and when first seen.
    seen: Option<(Vec<(Pair, rust_decimal::Decimal)>, tokio::time::Instant)>,
}

/// The halt coordinator. Cheap to clone (an `Arc` inside) and safe to call from
/// concurrent API handlers.
#[derive(Clone)]
pub struct HaltCoordinator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HaltCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaltCoordinator")
            .field("state", &self.state())
            .field("gate", &self.shared.gate)
            .finish_non_exhaustive()
    }
}

type Rec = Entry;

fn rec(kind: impl Into<String>, actor: impl Into<String>, detail: serde_json::Value) -> Rec {
    Entry::new(kind, actor, detail)
}

fn snapshot_json(snap: &Snapshot) -> Result<String, Error> {
    serde_json::to_string(snap).map_err(|e| Error::Json {
        record_id: 0,
        message: e.to_string(),
    })
}

impl HaltCoordinator {
    /// Takes over `journal` and restores the state it records; documented on
    /// [`HaltCoordinatorBuilder::open`], the only caller.
    fn restore(
        cfg: &HaltConfig,
        journal: Arc<Journal>,
        gate: TradingGate,
        exchange: Arc<dyn Exchange>,
        portfolio: Arc<dyn PortfolioView>,
        bus: EventBus,
        clock: SharedClock,
    ) -> Result<Self, Error> {
        gate.close();
        // The right to open the gate and seal closure orders: held here, never handed out.
        let opener = gate.take_opener().ok_or(Error::GateOpenerTaken)?;
        let now = clock.now();
        let mut unjournaled = None;
        let mut problem: Option<(&'static str, String)> = match journal.verify() {
            Ok(summary) => {
                unjournaled = summary.unjournaled_halt;
                None
            }
            Err(e @ Error::Missing { .. }) => Some((JOURNAL_MISSING, e.to_string())),
            Err(e @ (Error::Tampered { .. } | Error::Witness { .. })) => {
                Some((JOURNAL_INTEGRITY, e.to_string()))
            }
            Err(e) => return Err(e),
        };
        let mut snapshot = Snapshot::default();
        if let Some((id, text)) = journal.last_snapshot()? {
            match serde_json::from_str::<Snapshot>(&text) {
                Ok(s) => snapshot = s,
                Err(e) => {
                    problem.get_or_insert((
                        JOURNAL_INTEGRITY,
                        format!("journal record {id}: unreadable snapshot: {e}"),
                    ));
                }
            }
        }
        let mut machine = Machine::from_snapshot(snapshot);
        let before = machine.state();
        if let Some((condition, text)) = &problem {
            tracing::error!(problem = %text, "journal failed verification; starting halted");
            machine.restore_halted(Trigger {
                source: HaltSource::Auto((*condition).into()),
                reason: text.clone(),
                behaviour: HaltBehaviour::Hold,
                condition: Some((*condition).into()),
                items: vec![journal_item(condition)],
                at: now,
            });
        }
        if let Some(h) = &unjournaled {
            tracing::error!(reason = %h.reason, "a halt was in force but not journaled; starting halted");
            machine.restore_halted(Trigger {
                source: h.source.clone(),
                reason: format!(
                    "{} (in force at {} but not journaled: the journal was unwritable)",
                    h.reason, h.at
                ),
                behaviour: HaltBehaviour::Hold,
                condition: Some(JOURNAL_UNWRITABLE.into()),
                items: vec![journal_item(JOURNAL_UNWRITABLE)],
                at: now,
            });
        }
        // A halt the journal holds without a later resume (a torn write of an older
        // version) is in force, whatever the snapshot says.
        let unresolved = if machine.state() == HaltState::Running {
            journal.unresolved_halt()?
        } else {
            None
        };
        if let Some(r) = &unresolved {
            let source = serde_json::from_value::<HaltSource>(r.detail["source"].clone())
                .unwrap_or_else(|_| HaltSource::Auto("restart".into()));
            let why = r.detail["reason"].as_str().unwrap_or("unknown").to_owned();
            tracing::error!(
                record = r.id,
                "journal holds a halt without a later resume; starting halted"
            );
            machine.restore_halted(Trigger {
                source,
                reason: format!(
                    "{why} (journal record {} holds this halt without a later resume)",
                    r.id
                ),
                behaviour: HaltBehaviour::Hold,
                condition: None,
                items: vec![
                    ItemSpec::new(
                        "confirm_orders_cancelled",
                        "Confirm no order rests on the exchange (the halt's record was torn)",
                    ),
                    ItemSpec::new(
                        "resolve_open_positions",
                        "Check positions: closure may not have run before the restart",
                    ),
                ],
                at: now,
            });
        } else if before != HaltState::Running && problem.is_none() && unjournaled.is_none() {
            // A crash while Halting may have left orders resting and positions open.
            let items = if before == HaltState::Halting {
                vec![
                    ItemSpec::new(
                        "confirm_orders_cancelled",
                        "Confirm no order rests on the exchange (restarted while halting)",
                    ),
                    ItemSpec::new(
                        "resolve_open_positions",
                        "Check positions: closure may not have finished before the restart",
                    ),
                ]
            } else {
                Vec::new()
            };
            machine.restore_halted(Trigger {
                source: HaltSource::Auto("restart".into()),
                reason: format!("restarted while {before}"),
                behaviour: HaltBehaviour::Hold,
                condition: None,
                items,
                at: now,
            });
        }
        let after = machine.state();
        let problem_text = problem.as_ref().map(|(_, t)| t.clone());
        if after != before || problem.is_some() || unjournaled.is_some() || unresolved.is_some() {
            journal.append_batch(
                &[rec(
                    kinds::RESTORED,
                    "system",
                    json!({ "from": before, "to": after, "problem": problem_text,
                            "unjournaled_halt": unjournaled,
                            "unresolved_halt_record": unresolved.as_ref().map(|r| r.id) }),
                )],
                Some(&snapshot_json(machine.snapshot())?),
            )?;
        }
        if after == HaltState::Running {
            opener.open();
        }
        let (state_tx, _) = watch::channel(after);
        let coordinator = Self {
            shared: Arc::new(Shared {
                policy: RetryPolicy::from_config(cfg),
                conditions: Mutex::new(ConditionSet::from_config(cfg)),
                cfg: cfg.clone(),
                gate,
                opener,
                exchange,
                portfolio,
                bus,
                clock,
                journal: Arc::clone(&journal),
                machine: Mutex::new(machine),
                op: tokio::sync::Mutex::new(()),
                state_tx,
                journal_problem: Mutex::new(problem_text),
                journal_failed: std::sync::atomic::AtomicBool::new(false),
                last_risk: Mutex::new(None),
                closing: Closing::default(),
            }),
        };
        // Any failed write on this journal halts, whoever wrote.
        let weak = Arc::downgrade(&coordinator.shared);
        let runtime = tokio::runtime::Handle::try_current().ok();
        journal.on_write_failure(move |error| {
            if let Some(shared) = weak.upgrade() {
                HaltCoordinator { shared }.journal_write_failed(error, runtime.as_ref());
            }
        });
        if after != before {
            let (source, reason) = coordinator.halt_source_reason();
            coordinator.publish(Payload::HaltStateChanged {
                from: before,
                to: after,
                source,
                reason,
            });
        }
        Ok(coordinator)
    }

    /// A journal write failed: close the gate now and halt (once; the halt's own
    /// journaling may fail too). Runs on the writer's thread: never blocks.
    fn journal_write_failed(&self, error: &str, runtime: Option<&tokio::runtime::Handle>) {
        let s = &self.shared;
        s.gate.close();
        s.journal_problem
            .lock()
            .get_or_insert_with(|| format!("journal write failed: {error}"));
        if s.journal_failed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        tracing::error!(cause = %error, "journal unwritable: halting");
        let me = self.clone();
        let reason = format!("journal write failed: {error}");
        let halt = async move { me.halt_journal_unwritable(reason).await };
        match runtime
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        {
            Some(rt) => {
                rt.spawn(halt);
            }
            None => tracing::error!("no runtime to halt on; the gate stays closed"),
        }
    }

    async fn halt_journal_unwritable(&self, reason: String) -> HaltOutcome {
        let started_at = Instant::now();
        self.shared.gate.close();
        let t = Trigger {
            source: HaltSource::Auto(JOURNAL_UNWRITABLE.into()),
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
            behaviour: self.shared.cfg.behaviour,
            condition: Some(JOURNAL_UNWRITABLE.into()),
            items: vec![journal_item(JOURNAL_UNWRITABLE)],
            at: self.shared.clock.now(),
        };
        self.trigger(started_at, t).await
    }

    /// Adds a condition (e.g. gf-daemon's free-disk check of the data directory) to
    /// those evaluated on events and sweeps.
    pub fn register_condition(&self, cond: Box<dyn crate::Condition>, behaviour: HaltBehaviour) {
        self.shared.conditions.lock().register(cond, behaviour);
    }

    /// Replaces the condition set (e.g. to add a custom [`crate::Condition`]).
    pub fn set_conditions(&self, set: ConditionSet) {
        *self.shared.conditions.lock() = set;
    }

    /// Starts measuring market-data staleness for these pairs from now, so a pair that
    /// never delivers data becomes stale.
    pub fn watch_pairs(&self, pairs: &[Pair]) {
        let now = self.shared.clock.now();
        let mut set = self.shared.conditions.lock();
        for p in pairs {
            set.watch_pair(p, now);
        }
    }

    fn publish(&self, payload: Payload) {
        self.shared
            .bus
            .publish(Event::new(self.shared.clock.now(), Source::Halt, payload));
    }

    fn halt_source_reason(&self) -> (HaltSource, String) {
        let m = self.shared.machine.lock();
        m.snapshot().halt.as_ref().map_or_else(
            || (HaltSource::Cli, String::new()),
            |h| (h.source.clone(), h.reason.clone()),
        )
    }

    async fn write(
        &self,
        records: Vec<Rec>,
        snapshot: Option<String>,
    ) -> Result<Vec<JournalRecord>, Error> {
        let journal = Arc::clone(&self.shared.journal);
        // One transaction: the records and the snapshot are committed together or not
        // at all. A failure also reaches journal_write_failed() through the journal.
        let result = tokio::task::spawn_blocking(move || {
            journal.append_batch(&records, snapshot.as_deref())
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))
        .and_then(|r| r);
        if let Err(e) = &result {
            tracing::error!(cause = %e, "journal write failed");
            // Normally already done through the journal's hook; not for a worker panic.
            self.journal_write_failed(&e.to_string(), None);
        }
        result
    }

    /// Halts: closes the gate first, then runs the behaviour configured for the source
    /// (per condition for `auto:<id>`, else global) in a background task, journals the
    /// trigger and publishes it. A halt always takes effect, even when the journal write
    /// fails ([`HaltOutcome::journal_error`]). A trigger while a halt is in force is
    /// recorded on it. Needs a Tokio runtime.
    ///
    /// Cancellation-safe: from its first poll the gate is closed and the halt is in force;
    /// the journaling and the halt actions run in their own tasks and complete even if
    /// this future is dropped.
    pub async fn halt(&self, source: HaltSource, reason: &str) -> HaltOutcome {
        let started_at = Instant::now();
        self.shared.gate.close();
        let (behaviour, condition, items) = match &source {
            HaltSource::Auto(id) => (
                self.shared
                    .cfg
                    .conditions
                    .get(id)
                    .and_then(|c| c.behaviour)
                    .unwrap_or(self.shared.cfg.behaviour),
                Some(id.clone()),
                self.shared.conditions.lock().recovery_items(id),
            ),
            _ => (self.shared.cfg.behaviour, None, Vec::new()),
        };
        self.trigger(
            started_at,
            Trigger {
                source,
                reason: reason.chars().take(MAX_REASON_CHARS).collect(),
                behaviour,
                condition,
                items,
                at: self.shared.clock.now(),
            },
        )
        .await
    }

    async fn trigger(&self, started_at: Instant, t: Trigger) -> HaltOutcome {
        let s = &self.shared;
        s.gate.close();
        let gate_closed = started_at.elapsed();
        let in_flight = s.gate.in_flight();
        let source = t.source.clone();
        let reason = t.reason.clone();
        let behaviour = t.behaviour;
        let effect = {
            let mut m = s.machine.lock();
            // Again under the lock: a resume racing this trigger cannot leave it open.
            s.gate.close();
            m.trigger(t)
        };
        // The journaling runs in its own task so that dropping this future (a client that
        // disconnects) cannot lose the trigger's record.
        match effect {
            TriggerEffect::Started { halt_id, from } => {
                s.state_tx.send_replace(HaltState::Halting);
                let (journaled_tx, journaled_rx) = oneshot::channel();
                let task = self.clone();
                tokio::spawn(async move {
                    task.halting(halt_id, behaviour, in_flight, started_at, journaled_rx)
                        .await;
                });
                // Published after the halt task is on its way: the stage is measured at
                // the close, reported off the critical path.
                self.publish(Payload::Latency {
                    stage: "halt_gate_closed".into(),
                    micros: u64::try_from(gate_closed.as_micros()).unwrap_or(u64::MAX),
                });
                let task = self.clone();
                let journaling = tokio::spawn(async move {
                    // Let the halt task issue cancel-all before this one spends time here.
                    tokio::task::yield_now().await;
                    let error = task
                        .journal_started(halt_id, from, source, reason, behaviour)
                        .await;
                    // The receiver is gone only if the halt task already ended.
                    let _ = journaled_tx.send(());
                    error
                });
                let journal_error = journaling
                    .await
                    .unwrap_or_else(|e| Some(format!("journal task failed: {e}")));
                HaltOutcome {
                    halt_id,
                    started: true,
                    state: HaltState::Halting,
                    durable: journal_error.is_none(),
                    journal_error,
                }
            }
            TriggerEffect::Recorded { halt_id } => {
                let task = self.clone();
                let journaling =
                    tokio::spawn(
                        async move { task.journal_recorded(halt_id, source, reason).await },
                    );
                let state = self.state();
                match journaling.await {
                    Ok(outcome) => outcome,
                    Err(e) => HaltOutcome {
                        halt_id,
                        started: false,
                        state,
                        journal_error: Some(format!("journal task failed: {e}")),
                        durable: false,
                    },
                }
            }
        }
    }

    async fn journal_started(
        &self,
        halt_id: u64,
        from: HaltState,
        source: HaltSource,
        reason: String,
        behaviour: HaltBehaviour,
    ) -> Option<String> {
        let s = &self.shared;
        let _op = s.op.lock().await;
        let snap = snapshot_json(s.machine.lock().snapshot());
        let records = vec![
            rec(
                kinds::HALT_TRIGGERED,
                source.to_string(),
                json!({ "halt_id": halt_id, "source": source, "reason": reason,
                        "behaviour": behaviour }),
            ),
            rec(
                kinds::STATE_CHANGED,
                source.to_string(),
                json!({ "halt_id": halt_id, "from": from, "to": HaltState::Halting }),
            ),
        ];
        let journal_error = match snap {
            Ok(snap) => self.write(records, Some(snap)).await.err(),
            Err(e) => Some(e),
        }
        .map(|e| e.to_string());
        if journal_error.is_some() {
            // Not in the journal: keep it in the witness, so a restart is halted.
            let journal = Arc::clone(&s.journal);
            let halt = UnjournaledHalt {
                source: source.clone(),
                reason: reason.clone(),
                at: s.clock.now(),
            };
            let _ = tokio::task::spawn_blocking(move || journal.note_unjournaled_halt(halt)).await;
        }
        self.publish(Payload::HaltTriggered {
            source: source.clone(),
            reason: reason.clone(),
        });
        self.publish(Payload::HaltStateChanged {
            from,
            to: HaltState::Halting,
            source,
            reason,
        });
        journal_error
    }

    async fn journal_recorded(
        &self,
        halt_id: u64,
        source: HaltSource,
        reason: String,
    ) -> HaltOutcome {
        let s = &self.shared;
        let _op = s.op.lock().await;
        let (snap, state) = {
            let m = s.machine.lock();
            (snapshot_json(m.snapshot()), m.state())
        };
        let records = vec![rec(
            kinds::TRIGGER_RECORDED,
            source.to_string(),
            json!({ "halt_id": halt_id, "source": source, "reason": reason }),
        )];
        let journal_error = match snap {
            Ok(snap) => self.write(records, Some(snap)).await.err(),
            Err(e) => Some(e),
        }
        .map(|e| e.to_string());
        self.publish(Payload::HaltTriggered { source, reason });
        HaltOutcome {
            halt_id,
            started: false,
            state,
            durable: journal_error.is_none(),
            journal_error,
        }
    }

    async fn halting(
        &self,
        halt_id: u64,
        behaviour: HaltBehaviour,
        in_flight: u64,
        started_at: Instant,
        journaled: oneshot::Receiver<()>,
    ) {
        let s = &self.shared;
        let mut cancel: Option<CancelOutcome> = None;
        if behaviour != HaltBehaviour::Hold {
            let issued = started_at.elapsed();
            let mut outcome = cancel_all_with_retry(&*s.exchange, s.policy).await;
            self.publish(Payload::Latency {
                stage: "halt_cancel_sent".into(),
                micros: u64::try_from(issued.as_micros()).unwrap_or(u64::MAX),
            });
            if in_flight > 0 || !s.gate.in_flight_orders().is_empty() {
                // Requests that passed the gate before it closed may still be on the wire:
                // let them resolve, learn what became of each, then cancel again.
                let wait = self.exchange_timeout() + DRAIN_MARGIN;
                if !s.gate.drained(wait).await {
                    tracing::warn!(
                        in_flight = s.gate.in_flight(),
                        waited_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "requests still on the wire after the exchange timeout; reconciling anyway (a later fill starts another closure round)"
                    );
                }
                self.reconcile_in_flight(behaviour == HaltBehaviour::ClosePositions)
                    .await;
                let second = cancel_all_with_retry(&*s.exchange, s.policy).await;
                outcome.attempts += second.attempts;
                outcome.cancelled = match (outcome.cancelled, second.cancelled) {
                    (Some(a), Some(b)) => Some(a + b),
                    (_, None) => None,
                    (None, b) => b,
                };
                outcome.error = second.error;
            }
            cancel = Some(outcome);
        }
        let mut report = ClosureReport {
            flat: true,
            cancel,
            rounds: 0,
            pairs: Vec::new(),
            unread: None,
        };
        if behaviour == HaltBehaviour::ClosePositions {
            // A spot account: the closure sells what the balances hold (of these pairs and
            // of every configured pair the exchange lists as held), not what the portfolio
            // believes.
            let pairs: Vec<Pair> = s
                .portfolio
                .positions()
                .into_iter()
                .map(|p| p.pair)
                .collect();
            let mint = ClosureMint::new(&s.opener);
            let run = close_positions(&*s.exchange, &mint, halt_id, &pairs, s.policy, 1).await;
            report.flat = run.flat();
            if report.flat {
                self.publish(Payload::Latency {
                    stage: "halt_flat".into(),
                    micros: u64::try_from(started_at.elapsed().as_micros()).unwrap_or(u64::MAX),
                });
            }
            report.pairs = run.pairs;
            report.rounds = run.rounds;
            report.unread = run.unread;
        }
        // From now on a fill that lands after this closure starts another round.
        *s.closing.late.lock() = LateFills {
            halt_id: (behaviour == HaltBehaviour::ClosePositions).then_some(halt_id),
            rounds: 1,
            attempts: report.rounds,
            flat: report.flat,
            running: false,
            seen: None,
        };
        let cancel_failed = report
            .cancel
            .as_ref()
            .is_some_and(|c| c.cancelled.is_none());
        let mut items = Vec::new();
        if !report.flat {
            items.push(ItemSpec::new(
                "resolve_open_positions",
                "Resolve the positions the halt could not close",
            ));
        }
        if cancel_failed {
            items.push(ItemSpec::new(
                "confirm_orders_cancelled",
                "Confirm no order rests on the exchange (cancel-all failed)",
            ));
        }
        // The trigger's record must precede the outcome's. An error means halt() was
        // dropped before journaling; carry on, the outcome is still worth recording.
        let _ = journaled.await;
        let _op = s.op.lock().await;
        let mut draft = s.machine.lock().clone();
        if let Err(e) = draft.finish_halting(halt_id, Some(report.clone()), &items) {
            tracing::error!(cause = %e, halt_id, "halt actions finished in an unexpected state");
            return;
        }
        let detail = report.detail();
        let report_json = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
        let records = vec![
            rec(
                kinds::CLOSURE_RESULT,
                "system",
                json!({ "halt_id": halt_id, "round": 1, "flat": report.flat, "detail": detail,
                        "report": report_json }),
            ),
            rec(
                kinds::STATE_CHANGED,
                "system",
                json!({ "halt_id": halt_id, "from": HaltState::Halting, "to": HaltState::Halted }),
            ),
        ];
        if let Ok(snap) = snapshot_json(draft.snapshot()) {
            // A failed write is recorded in journal_problem by write(); the halt stands.
            let _ = self.write(records, Some(snap)).await;
        }
        {
            let mut live = s.machine.lock();
            if let Err(e) = live.finish_halting(halt_id, Some(report.clone()), &items) {
                tracing::error!(cause = %e, halt_id, "could not apply the halted state");
                return;
            }
        }
        self.publish(Payload::ClosureResult {
            flat: report.flat,
            detail: detail.clone(),
        });
        if !report.flat || cancel_failed {
            self.publish(Payload::Alert {
                key: format!("halt_{halt_id}_closure"),
                severity: Severity::Critical,
                status: AlertStatus::Firing,
                summary: format!("halt {halt_id}: {detail}"),
            });
        }
        let (source, reason) = self.halt_source_reason();
        self.publish(Payload::HaltStateChanged {
            from: HaltState::Halting,
            to: HaltState::Halted,
            source,
            reason,
        });
        s.state_tx.send_replace(HaltState::Halted);
    }

    /// The exchange's request timeout in force.
    fn exchange_timeout(&self) -> Duration {
        Duration::from_millis(
            self.shared
                .closing
                .exchange_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Asks the exchange what became of every order the gate recorded as in flight across
    /// the close, so that each execution reaches the portfolio (the exchange publishes
    /// what was not yet published), and an order that came to rest is cancelled by the
    /// cancel-all that follows. When the closure is next, waits (at most
    /// [`SETTLE_TIMEOUT`]) until the portfolio shows what the reconciliation published.
    async fn reconcile_in_flight(&self, settle: bool) {
        let s = &self.shared;
        let ids = s.gate.in_flight_orders();
        let before: Vec<Position> = s.portfolio.positions();
        let mut expected: std::collections::BTreeMap<Pair, rust_decimal::Decimal> =
            before.iter().map(|p| (p.pair.clone(), p.qty)).collect();
        let mut published = false;
        for id in &ids {
            match s
                .policy
                .bounded("QueryOrders", s.exchange.reconcile_order(id))
                .await
            {
                Ok(Some(found)) => {
                    tracing::info!(order = %id, status = ?found.info.status,
                        filled = %found.info.filled_qty, published = %found.published,
                        "reconciled an order in flight at the halt");
                    if found.published > rust_decimal::Decimal::ZERO {
                        published = true;
                        *expected.entry(found.info.pair.clone()).or_default() +=
                            found.info.side.sign() * found.published;
                    }
                }
                Ok(None) => {
                    tracing::info!(order = %id, "an order in flight at the halt never reached the exchange");
                }
                Err(e) => {
                    tracing::warn!(order = %id, cause = %e, "could not reconcile an order in flight at the halt");
                }
            }
        }
        if !(settle && published) {
            return;
        }
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let now: std::collections::BTreeMap<Pair, rust_decimal::Decimal> = s
                .portfolio
                .positions()
                .into_iter()
                .map(|p| (p.pair, p.qty))
                .collect();
            let settled = expected
                .iter()
                .all(|(pair, qty)| now.get(pair).copied().unwrap_or_default() == *qty);
            if settled {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "the portfolio did not show the reconciled fills in time; closing what it shows (a later closure round takes the rest)"
                );
                return;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// After a flat closure, a position in the portfolio while Halted or Recovering is a
    /// fill that landed late: once seen unchanged [`LATE_FILL_CONFIRM`] later, start
    /// another closure round. Cheap (a state read and a positions read); called by
    /// [`HaltCoordinator::run`] on fills and sweeps.
    fn watch_late_fills(&self) {
        let s = &self.shared;
        if !matches!(self.state(), HaltState::Halted | HaltState::Recovering) {
            return;
        }
        let mut late = s.closing.late.lock();
        let Some(halt_id) = late.halt_id else {
            return;
        };
        if late.running || !late.flat {
            return;
        }
        let open: Vec<(Pair, rust_decimal::Decimal)> = s
            .portfolio
            .positions()
            .into_iter()
            .filter(|p| !p.qty.is_zero())
            .map(|p| (p.pair, p.qty))
            .collect();
        if open.is_empty() {
            late.seen = None;
            return;
        }
        let now = tokio::time::Instant::now();
        match &late.seen {
            Some((seen, at)) if *seen == open => {
                if now.duration_since(*at) < LATE_FILL_CONFIRM {
                    return;
                }
            }
            _ => {
                late.seen = Some((open, now));
                return;
            }
        }
        late.seen = None;
        late.running = true;
        late.rounds += 1;
        let (round, first_attempt) = (late.rounds, late.attempts + 1);
        drop(late);
        tracing::warn!(
            halt_id,
            round,
            "a fill landed after the closure reported flat: closing again"
        );
        let me = self.clone();
        tokio::spawn(async move { me.late_closure(halt_id, round, first_attempt).await });
    }

    /// One closure round after a late fill: closes what the portfolio holds now with
    /// sealed orders, journals a `closure_result` with the round, publishes it, alerts
    /// when it could not close everything.
    async fn late_closure(&self, halt_id: u64, round: u32, first_attempt: u32) {
        let s = &self.shared;
        let pairs: Vec<Pair> = s
            .portfolio
            .positions()
            .into_iter()
            .map(|p| p.pair)
            .collect();
        let mint = ClosureMint::new(&s.opener);
        let run = close_positions(
            &*s.exchange,
            &mint,
            halt_id,
            &pairs,
            s.policy,
            first_attempt,
        )
        .await;
        let attempts = run.rounds;
        let report = ClosureReport {
            flat: run.flat(),
            cancel: None,
            rounds: attempts,
            pairs: run.pairs,
            unread: run.unread,
        };
        let detail = report.detail();
        let report_json = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
        // A failed write halts through the journal's hook; the round's outcome stands.
        let _ = self
            .write(
                vec![rec(
                    kinds::CLOSURE_RESULT,
                    "system",
                    json!({ "halt_id": halt_id, "round": round, "flat": report.flat,
                            "detail": detail, "report": report_json }),
                )],
                None,
            )
            .await;
        {
            let mut late = s.closing.late.lock();
            if late.halt_id == Some(halt_id) {
                late.running = false;
                late.flat = report.flat;
                late.attempts += attempts;
            }
        }
        self.publish(Payload::ClosureResult {
            flat: report.flat,
            detail: format!("round {round}: {detail}"),
        });
        if !report.flat {
            self.publish(Payload::Alert {
                key: format!("halt_{halt_id}_closure"),
                severity: Severity::Critical,
                status: AlertStatus::Firing,
                summary: format!("halt {halt_id}, closure round {round}: {detail}"),
            });
        }
    }

    /// Prepares `f` on a copy of the machine, journals the result with `describe`, then
    /// applies it unless a trigger intervened. Opens the gate when the result is Running.
    async fn mutate<T: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&mut Machine) -> Result<T, Error> + Send + 'static,
        describe: impl FnOnce(&T) -> (Vec<Rec>, Vec<Payload>) + Send + 'static,
    ) -> Result<T, Error> {
        // In its own task: a caller that gives up half-way cannot leave the journal ahead
        // of the state (the write and the apply happen together or not at all).
        let task = self.clone();
        tokio::spawn(async move { task.mutate_now(action, f, describe).await })
            .await
            .map_err(|e| Error::Worker(e.to_string()))?
    }

    async fn mutate_now<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&mut Machine) -> Result<T, Error>,
        describe: impl FnOnce(&T) -> (Vec<Rec>, Vec<Payload>),
    ) -> Result<T, Error> {
        let s = &self.shared;
        let _op = s.op.lock().await;
        let (mut draft, epoch) = {
            let m = s.machine.lock();
            (m.clone(), m.epoch())
        };
        let out = f(&mut draft)?;
        let snap = snapshot_json(draft.snapshot())?;
        let (records, events) = describe(&out);
        self.write(records, Some(snap)).await?;
        {
            let mut live = s.machine.lock();
            if live.epoch() != epoch {
                return Err(Error::Interrupted { action });
            }
            *live = draft;
            if live.state() == HaltState::Running {
                s.opener.open();
            }
            s.state_tx.send_replace(live.state());
        }
        for payload in events {
            self.publish(payload);
        }
        Ok(out)
    }

    /// Halted → Recovering: the operator opens the checklist.
    ///
    /// Like every operator operation, cancellation-safe: it runs in its own task and is
    /// journaled and applied as a whole, or not at all.
    ///
    /// # Errors
    /// [`Error::InvalidOperator`]; [`Error::IllegalTransition`] unless Halted (in
    /// particular while the halt actions are still running); journal errors;
    /// [`Error::Interrupted`].
    pub async fn begin_recovery(&self, operator: &str) -> Result<(), Error> {
        let op = operator.to_owned();
        let actor = op.clone();
        self.mutate(
            "begin_recovery",
            move |m| m.begin_recovery(&op),
            move |()| {
                (
                    vec![rec(
                        kinds::STATE_CHANGED,
                        actor.clone(),
                        json!({ "from": HaltState::Halted, "to": HaltState::Recovering }),
                    )],
                    vec![Payload::HaltStateChanged {
                        from: HaltState::Halted,
                        to: HaltState::Recovering,
                        reason: format!("recovery started by {actor}"),
                        source: HaltSource::Api(actor),
                    }],
                )
            },
        )
        .await
    }

    /// Completes a checklist item; returns it with who and when.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] unless Recovering; [`Error::UnknownItem`],
    /// [`Error::AlreadyCompleted`], [`Error::OutOfOrder`], [`Error::InvalidOperator`];
    /// journal errors; [`Error::Interrupted`].
    pub async fn complete_item(
        &self,
        item_id: &str,
        operator: &str,
        note: Option<&str>,
    ) -> Result<ChecklistItem, Error> {
        let now = self.shared.clock.now();
        let (item_id, op, note) = (
            item_id.to_owned(),
            operator.to_owned(),
            note.map(str::to_owned),
        );
        let actor = op.clone();
        self.mutate(
            "complete_item",
            move |m| m.complete(&item_id, &op, note.as_deref(), now),
            move |item: &ChecklistItem| {
                (
                    vec![rec(
                        kinds::CHECKLIST_STEP,
                        actor.clone(),
                        json!({ "item": item.id, "note": item.note }),
                    )],
                    vec![Payload::ChecklistStep {
                        item: item.id.clone(),
                        operator: actor,
                        note: item.note.clone(),
                    }],
                )
            },
        )
        .await
    }

    /// Recovering → Running: opens the gate. Refused, with everything outstanding, until
    /// every checklist item is complete, no condition is breached now (all of them, not
    /// only those behind the halt: a condition still breached at resume would never fire
    /// again), and the two-person rule (if configured) holds. Refusals are journaled.
    ///
    /// # Errors
    /// [`Error::ResumeRefused`]; [`Error::IllegalTransition`] unless Recovering;
    /// [`Error::InvalidOperator`]; journal errors; [`Error::Interrupted`].
    pub async fn resume(&self, operator: &str) -> Result<(), Error> {
        validate_operator(operator)?;
        if self.state() != HaltState::Recovering {
            return Err(Error::IllegalTransition {
                from: self.state(),
                to: HaltState::Running,
            });
        }
        // Look at every condition now. A fresh breach is a trigger like any other: during
        // recovery it starts a new halt, and this resume is refused.
        let rehalted = !self.sweep().await.is_empty();
        let breached = self.shared.conditions.lock().breached();
        let two = self.shared.cfg.two_person_rule;
        let refusal: ResumeRefusal = {
            let m = self.shared.machine.lock();
            if m.state() != HaltState::Recovering && !rehalted {
                return Err(Error::IllegalTransition {
                    from: m.state(),
                    to: HaltState::Running,
                });
            }
            m.resume_refusal(operator, breached.clone(), two)
        };
        if !refusal.is_clear() {
            let detail = serde_json::to_value(&refusal).unwrap_or(serde_json::Value::Null);
            self.write(vec![rec(kinds::RESUME_REFUSED, operator, detail)], None)
                .await?;
            return Err(Error::ResumeRefused(refusal));
        }
        let op = operator.to_owned();
        let actor = op.clone();
        self.mutate(
            "resume",
            move |m| m.resume(&op, breached, two),
            move |()| {
                (
                    vec![rec(
                        kinds::STATE_CHANGED,
                        actor.clone(),
                        json!({ "from": HaltState::Recovering, "to": HaltState::Running }),
                    )],
                    vec![
                        Payload::Resumed {
                            operator: actor.clone(),
                        },
                        Payload::HaltStateChanged {
                            from: HaltState::Recovering,
                            to: HaltState::Running,
                            reason: format!("resumed by {actor}"),
                            source: HaltSource::Api(actor),
                        },
                    ],
                )
            },
        )
        .await
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> HaltState {
        self.shared.machine.lock().state()
    }

    /// The full status.
    #[must_use]
    pub fn status(&self) -> HaltStatus {
        let m = self.shared.machine.lock();
        let snap = m.snapshot();
        HaltStatus {
            state: snap.state,
            gate_open: self.shared.gate.is_open(),
            halt: snap.halt.clone(),
            checklist_missing: if snap.state == HaltState::Running {
                Vec::new()
            } else {
                snap.checklist
                    .as_ref()
                    .map(Checklist::missing)
                    .unwrap_or_default()
            },
            resumed_by: snap.resumed_by.clone(),
            journal_problem: self.shared.journal_problem.lock().clone().or_else(|| {
                self.shared
                    .journal
                    .witness_problem()
                    .map(|p| format!("journal witness not written: {p}"))
            }),
        }
    }

    /// The checklist of the current (or last) halt.
    #[must_use]
    pub fn checklist(&self) -> Option<Checklist> {
        self.shared.machine.lock().snapshot().checklist.clone()
    }

    /// Every condition's status.
    #[must_use]
    pub fn conditions(&self) -> Vec<ConditionStatus> {
        self.shared.conditions.lock().statuses()
    }

    /// The event kinds [`HaltCoordinator::on_event`] cares about (subscribe with these).
    #[must_use]
    pub fn subscription_kinds(&self) -> KindSet {
        // Fills: a fill that lands after a halt's closure starts another closure round.
        self.shared
            .conditions
            .lock()
            .kinds()
            .with(gf_core::EventKind::Fill)
    }

    /// The exchange's request timeout (`exchange.timeout_ms`; default
    /// [`DEFAULT_EXCHANGE_TIMEOUT`]): a halt waits this long (plus [`DRAIN_MARGIN`]) for
    /// requests already on the wire to resolve before it reconciles them and computes the
    /// closure.
    pub fn set_exchange_timeout(&self, timeout: Duration) {
        self.shared.closing.exchange_timeout_ms.store(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// A receiver that sees every state change.
    #[must_use]
    pub fn watch_state(&self) -> watch::Receiver<HaltState> {
        self.shared.state_tx.subscribe()
    }

    /// The gate this coordinator controls.
    #[must_use]
    pub fn gate(&self) -> &TradingGate {
        &self.shared.gate
    }

    /// The journal, for API mutations (`append`), the console (`records`) and `verify`.
    #[must_use]
    pub fn journal(&self) -> &Arc<Journal> {
        &self.shared.journal
    }

    /// Journals several records of the daemon's own in one transaction (one `fsync`),
    /// in the order given: the group commit of callers that write often (the order
    /// gateway). All are committed or none; a failure halts like [`HaltCoordinator::record`].
    ///
    /// # Errors
    /// [`Error`] when the journal cannot record them.
    pub async fn record_many(
        &self,
        records: Vec<(String, String, serde_json::Value)>,
    ) -> Result<Vec<JournalRecord>, Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.write(
            records
                .into_iter()
                .map(|(kind, actor, detail)| rec(kind, actor, detail))
                .collect(),
            None,
        )
        .await
    }

    /// Journals an API mutation (or any other record) without blocking the runtime.
    ///
    /// # Errors
    /// [`Error::Database`], [`Error::Worker`].
    pub async fn record(
        &self,
        kind: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<JournalRecord, Error> {
        let mut written = self.write(vec![rec(kind, actor, detail)], None).await?;
        written
            .pop()
            .ok_or_else(|| Error::Worker("the journal wrote nothing".into()))
    }

    /// Journals gf-risk's snapshot as a chained record (kind
    /// [`crate::journal::RISK_SNAPSHOT`]), unless it equals the last one journaled. A
    /// failed write halts like any other.
    ///
    /// # Errors
    /// [`Error::Database`], [`Error::Worker`].
    pub async fn save_risk_snapshot(&self, data: serde_json::Value) -> Result<(), Error> {
        if self.shared.last_risk.lock().as_ref() == Some(&data) {
            return Ok(());
        }
        self.write(vec![rec(RISK_SNAPSHOT, "system", data.clone())], None)
            .await?;
        *self.shared.last_risk.lock() = Some(data);
        Ok(())
    }

    /// The persisted gf-risk snapshot, if any.
    ///
    /// # Errors
    /// [`Error::Database`], [`Error::Json`].
    pub fn load_risk_snapshot(&self) -> Result<Option<serde_json::Value>, Error> {
        self.shared.journal.load_risk_snapshot()
    }

    /// Evaluates the conditions that listen to this event's kind; returns the new
    /// breaches without acting on them. Publishes `ConditionValue` on changes (at most
    /// once a second per condition unless its flag flips). Cheap: a table lookup and one
    /// call per interested condition.
    pub fn evaluate(&self, event: &Event) -> Vec<Breach> {
        let now = self.shared.clock.now();
        let ctx = EvalContext {
            now,
            portfolio: &*self.shared.portfolio,
        };
        let bus = &self.shared.bus;
        self.shared
            .conditions
            .lock()
            .observe(event, &ctx, &mut |st| publish_condition(bus, now, st))
    }

    async fn act_on(&self, breaches: Vec<Breach>) -> Vec<HaltOutcome> {
        let mut out = Vec::with_capacity(breaches.len());
        for b in breaches {
            let started_at = Instant::now();
            self.shared.gate.close();
            let t = Trigger {
                source: HaltSource::Auto(b.id.clone()),
                reason: b.reason,
                behaviour: b.behaviour,
                condition: Some(b.id),
                items: b.recovery_items,
                at: self.shared.clock.now(),
            };
            out.push(self.trigger(started_at, t).await);
        }
        out
    }

    /// Evaluates an event and halts on a breach (further breaches are recorded on the
    /// same halt). Returns the outcome of the first breach, if any.
    pub async fn on_event(&self, event: &Event) -> Option<HaltOutcome> {
        let breaches = self.evaluate(event);
        if matches!(event.payload, Payload::Fill(_)) {
            self.watch_late_fills();
        }
        if breaches.is_empty() {
            return None;
        }
        self.act_on(breaches).await.into_iter().next()
    }

    /// Re-samples every condition (time-based ones in particular) and halts on a breach.
    pub async fn sweep(&self) -> Vec<HaltOutcome> {
        let now = self.shared.clock.now();
        let ctx = EvalContext {
            now,
            portfolio: &*self.shared.portfolio,
        };
        let bus = &self.shared.bus;
        let breaches = self
            .shared
            .conditions
            .lock()
            .sweep(&ctx, &mut |st| publish_condition(bus, now, st));
        self.act_on(breaches).await
    }

    /// The periodic duty, every [`SWEEP_INTERVAL`] of the clock: re-samples every
    /// condition ([`HaltCoordinator::sweep`]) and watches for a fill that landed after a
    /// halt's closure reported flat. [`HaltCoordinator::run`] calls it on a timer; a
    /// deterministic backtest calls it as event time passes each interval.
    pub async fn tick(&self) -> Vec<HaltOutcome> {
        let outcomes = self.sweep().await;
        self.watch_late_fills();
        outcomes
    }

    /// Feeds events from `events` to [`HaltCoordinator::on_event`] and sweeps every
    /// [`SWEEP_INTERVAL`], until `shutdown` is cancelled or the bus closes. A lagging
    /// subscription triggers an immediate sweep (the portfolio figures are re-read). Fills
    /// and sweeps also watch for a fill that landed after a halt's closure reported flat
    /// (see the module documentation): subscribe with
    /// [`HaltCoordinator::subscription_kinds`].
    pub async fn run(&self, mut events: Subscription, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.tick().await;
                }
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        self.on_event(&ev).await;
                    }
                    Err(RecvError::Lagged { missed }) => {
                        tracing::warn!(missed, "halt coordinator lagged behind the bus");
                        self.sweep().await;
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
    }
}

fn publish_condition(bus: &EventBus, now: chrono::DateTime<chrono::Utc>, st: &ConditionStatus) {
    bus.publish(Event::new(
        now,
        Source::Halt,
        Payload::ConditionValue {
            id: st.id.clone(),
            value: st.value,
            threshold: st.threshold,
            triggered: st.triggered,
        },
    ));
}
