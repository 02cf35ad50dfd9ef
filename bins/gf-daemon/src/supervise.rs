//! Supervision of the daemon's long-running tasks, one implementation for all of them: a
//! task that panics, fails or ends while the daemon is not shutting down halts trading
//! (`auto:task_failed:<name>`, the reason naming the task and the panic or error) and turns
//! the `tasks` health check — and with it `/readyz` — red until the daemon restarts.
//!
//! The halt is issued through [`HaltCoordinator::halt`], which closes the gate and runs the
//! halt behaviour itself; it does not need the coordinator's event loop, so the death of
//! that loop (the `halt` task) halts too. A task is not restarted: whatever it held (a
//! subscription, its place in a stream) is gone, and a half-working daemon is what this
//! module exists to prevent. The [`TaskCondition`] (`task_failed`) stays breached once a
//! task failed, so resume is refused until the daemon restarts; it comes back Halted from
//! the journal with every task running.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use gf_core::{Event, HaltSource, KindSet};
use gf_halt::{Condition, EvalContext, HaltCoordinator, ItemSpec};
use gf_monitor::health::{CheckOutcome, FnCheck, HealthCheck};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

/// Whether a supervised task may end on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Runs until the daemon shuts down; ending before that, cleanly or not, is a failure.
    AtShutdown,
    /// May finish on its own (a replay that is not looped); only an error or a panic is a
    /// failure.
    MayFinish,
}

/// Where a supervised task is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum TaskState {
    /// Running.
    Running,
    /// Ended on its own, as it may ([`Ending::MayFinish`]).
    Finished,
    /// Ended because the daemon is shutting down.
    Stopped,
    /// Panicked, failed or ended early; the text says which and why.
    Failed(String),
}

/// The state of every supervised task, shared by the supervisor, the `tasks` health check,
/// the [`TaskCondition`] and the status dump (SIGUSR2). Cheap to clone.
#[derive(Clone, Default)]
pub struct TaskHealth {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    tasks: Vec<(String, TaskState)>,
    /// Failed tasks the daemon has halted for (what [`TaskCondition`] counts).
    halted_for: Vec<String>,
}

impl fmt::Debug for TaskHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.snapshot()).finish()
    }
}

impl TaskHealth {
    /// No task yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every task and its state, in the order they were started.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(String, TaskState)> {
        self.inner.lock().tasks.clone()
    }

    /// The state of the task called `name`.
    #[must_use]
    pub fn state(&self, name: &str) -> Option<TaskState> {
        self.inner
            .lock()
            .tasks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }

    /// The failed tasks with their reasons.
    #[must_use]
    pub fn failures(&self) -> Vec<(String, String)> {
        self.inner
            .lock()
            .tasks
            .iter()
            .filter_map(|(n, s)| match s {
                TaskState::Failed(why) => Some((n.clone(), why.clone())),
                _ => None,
            })
            .collect()
    }

    /// The `tasks` health check: unhealthy, naming each, while any task has failed.
    #[must_use]
    pub fn check(&self) -> Arc<dyn HealthCheck> {
        let health = self.clone();
        Arc::new(FnCheck::new("tasks", move || {
            let outcome = health.outcome();
            async move { outcome }
        }))
    }

    fn outcome(&self) -> CheckOutcome {
        let failures = self.failures();
        if failures.is_empty() {
            let tasks = self.snapshot();
            let running = tasks
                .iter()
                .filter(|(_, s)| *s == TaskState::Running)
                .count();
            CheckOutcome::healthy(format!("{running} of {} tasks running", tasks.len()))
        } else {
            let text: Vec<String> = failures
                .iter()
                .map(|(name, why)| format!("{name} {why}"))
                .collect();
            CheckOutcome::unhealthy(format!("task failed: {}", text.join("; ")))
        }
    }

    /// The `task_failed` halt condition over these tasks (see [`TaskCondition`]).
    #[must_use]
    pub fn condition(&self) -> TaskCondition {
        TaskCondition {
            health: self.clone(),
            last: Vec::new(),
        }
    }

    fn set(&self, name: &str, state: TaskState) {
        let tasks = &mut self.inner.lock().tasks;
        match tasks.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s = state,
            None => tasks.push((name.to_owned(), state)),
        }
    }

    fn halted_for(&self, name: &str) {
        self.inner.lock().halted_for.push(name.to_owned());
    }
}

/// `task_failed`: the number of supervised tasks that failed while the daemon ran (and that
/// it halted for); breached from the first, and never clear again in this process. Resume is
/// refused while any condition is breached, so a daemon with a dead task cannot trade
/// again until it is restarted. Time-based (the sweep and the resume check sample it).
///
/// It counts a failure only once the supervisor's own halt (`task_failed:<name>`) is in
/// force, so that halt, naming the task, is always the first trigger.
#[derive(Debug)]
pub struct TaskCondition {
    health: TaskHealth,
    last: Vec<String>,
}

/// The id of [`TaskCondition`].
pub const TASK_FAILED: &str = "task_failed";

impl Condition for TaskCondition {
    fn id(&self) -> &str {
        TASK_FAILED
    }
    fn name(&self) -> &str {
        "failed supervised tasks"
    }
    fn threshold(&self) -> Decimal {
        Decimal::ZERO
    }
    fn kinds(&self) -> KindSet {
        KindSet::NONE
    }
    fn observe(&mut self, _event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        self.sample(ctx)
    }
    fn sample(&mut self, _ctx: &EvalContext<'_>) -> Decimal {
        self.last.clone_from(&self.health.inner.lock().halted_for);
        Decimal::from(self.last.len())
    }
    fn detail(&self) -> Option<String> {
        (!self.last.is_empty()).then(|| self.last.join(", "))
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "restart_daemon",
            "Restart the daemon: a failed task is not restarted in place",
        )]
    }
}

/// Spawns and watches the daemon's tasks. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    halt: HaltCoordinator,
    shutdown: CancellationToken,
    health: TaskHealth,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("health", &self.health)
            .field("shutting_down", &self.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor that halts through `halt`, treats ends after `shutdown` as normal and
    /// records every task in `health`.
    #[must_use]
    pub fn new(halt: HaltCoordinator, shutdown: CancellationToken, health: TaskHealth) -> Self {
        Self {
            halt,
            shutdown,
            health,
        }
    }

    /// The supervisor of a composed daemon.
    #[must_use]
    pub fn for_daemon(d: &crate::app::Daemon) -> Self {
        Self::new(d.halt.clone(), d.shutdown.clone(), d.tasks.clone())
    }

    /// Runs `task` in its own Tokio task and watches it. The returned handle completes
    /// once the task has ended and its end has been dealt with (a failure halts first).
    /// Names are unique per daemon; a second task with a name replaces the first's entry.
    pub fn spawn<F>(&self, name: &str, ending: Ending, task: F) -> JoinHandle<()>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.health.set(name, TaskState::Running);
        let inner = tokio::spawn(task);
        let me = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let result = inner.await;
            me.ended(&name, ending, result).await;
        })
    }

    /// Watches a task something else spawned (e.g. the API server), as
    /// [`Supervisor::spawn`] does. The task stops on its own at shutdown; if something
    /// aborts it after shutdown began, that is a normal end.
    pub fn watch(&self, name: &str, ending: Ending, handle: JoinHandle<()>) -> JoinHandle<()> {
        let shutdown = self.shutdown.clone();
        self.spawn(name, ending, async move { joined(handle.await, &shutdown) })
    }

    /// As [`Supervisor::watch`], for a loop with no stop signal of its own (a library's
    /// background poller): it is aborted when the daemon shuts down.
    pub fn watch_abort_at_shutdown(
        &self,
        name: &str,
        mut handle: JoinHandle<()>,
    ) -> JoinHandle<()> {
        let shutdown = self.shutdown.clone();
        self.spawn(name, Ending::AtShutdown, async move {
            tokio::select! {
                ended = &mut handle => joined(ended, &shutdown),
                () = shutdown.cancelled() => {
                    handle.abort();
                    let _ = handle.await;
                    Ok(())
                }
            }
        })
    }

    async fn ended(
        &self,
        name: &str,
        ending: Ending,
        result: Result<anyhow::Result<()>, JoinError>,
    ) {
        let shutting_down = self.shutdown.is_cancelled();
        let failure = match result {
            Ok(Ok(())) if shutting_down => None,
            Ok(Ok(())) if ending == Ending::MayFinish => {
                tracing::info!(task = name, "task finished");
                self.health.set(name, TaskState::Finished);
                return;
            }
            Ok(Ok(())) => Some("ended unexpectedly".to_owned()),
            Ok(Err(e)) => Some(match e.downcast_ref::<Died>() {
                Some(died) => died.0.clone(),
                None => format!("failed: {e:#}"),
            }),
            Err(e) => Some(join_error_text(e)),
        };
        let Some(why) = failure else {
            self.health.set(name, TaskState::Stopped);
            return;
        };
        let why = escape_controls(&why);
        self.health.set(name, TaskState::Failed(why.clone()));
        if shutting_down {
            tracing::warn!(task = name, reason = %why, "task failed while shutting down");
            return;
        }
        tracing::error!(task = name, reason = %why, "task failed: halting");
        let outcome = self
            .halt
            .halt(
                HaltSource::Auto(format!("task_failed:{name}")),
                &format!("task {name} {why}"),
            )
            .await;
        self.health.halted_for(name);
        tracing::warn!(?outcome, task = name, "halted: a supervised task failed");
    }
}

fn joined(ended: Result<(), JoinError>, shutdown: &CancellationToken) -> anyhow::Result<()> {
    match ended {
        Ok(()) => Ok(()),
        Err(e) if e.is_cancelled() && shutdown.is_cancelled() => Ok(()),
        Err(e) => Err(Died(join_error_text(e)).into()),
    }
}

/// A watched task panicked or was cancelled (reported as such, not as "failed").
#[derive(Debug)]
struct Died(String);

impl fmt::Display for Died {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Died {}

/// `panicked: <message>` or `was cancelled`.
fn join_error_text(e: JoinError) -> String {
    if e.is_panic() {
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        format!("panicked: {message}")
    } else {
        "was cancelled".to_owned()
    }
}

/// Control characters escaped (`\n`, `\u{1b}`), so a panic message cannot forge log
/// lines or terminal output through a halt reason.
fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{HaltState, ManualClock};
    use std::time::Duration;

    struct Env {
        sup: Supervisor,
        halt: HaltCoordinator,
        shutdown: CancellationToken,
        health: TaskHealth,
        _dir: tempfile::TempDir,
    }

    /// A composed paper daemon with no task running: nothing drives the coordinator's
    /// event loop, so any halt seen here came from the supervisor.
    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = gf_core::Config::from_toml_str("").unwrap();
        cfg.general.data_dir = dir.path().join("data");
        cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
        let (d, _) = crate::app::build(cfg, Arc::new(ManualClock::default())).unwrap();
        d.halt.register_condition(
            Box::new(d.tasks.condition()),
            gf_core::HaltBehaviour::CancelOnly,
        );
        Env {
            sup: Supervisor::for_daemon(&d),
            halt: d.halt.clone(),
            shutdown: d.shutdown.clone(),
            health: d.tasks.clone(),
            _dir: dir,
        }
    }

    async fn halted_by(halt: &HaltCoordinator) -> String {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if halt.state() != HaltState::Running
                    && let Some(h) = halt.status().halt
                {
                    return format!("{} — {}", h.source, h.reason);
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("halted in time")
    }

    #[tokio::test]
    async fn a_panic_halts_naming_the_task_and_the_message_without_the_halt_loop() {
        let e = env();
        assert_eq!(e.halt.state(), HaltState::Running);
        // Nothing runs the coordinator's event loop here: the supervisor halts directly.
        let watcher = e.sup.spawn("halt", Ending::AtShutdown, async {
            panic!("boom\x1b[31m");
        });
        watcher.await.unwrap();
        let halt = halted_by(&e.halt).await;
        assert_eq!(
            halt,
            "auto:task_failed:halt — task halt panicked: boom\\u{1b}[31m"
        );
        assert!(!e.halt.gate().is_open());
        let failures = e.health.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, "halt");
        let outcome = e.health.outcome();
        assert_eq!(outcome.status, gf_core::HealthStatus::Unhealthy);
        assert!(
            outcome.message.contains("halt panicked: boom"),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn the_task_failed_condition_stays_breached_so_resume_is_refused() {
        let e = env();
        let condition = |halt: &HaltCoordinator| {
            halt.conditions()
                .into_iter()
                .find(|c| c.id == TASK_FAILED)
                .expect("registered")
        };
        e.halt.sweep().await;
        assert!(!condition(&e.halt).triggered);
        e.sup
            .spawn("monitor", Ending::AtShutdown, async {
                panic!("monitor bug");
            })
            .await
            .unwrap();
        // The supervisor's halt names the task; the condition follows it.
        assert_eq!(
            halted_by(&e.halt).await,
            "auto:task_failed:monitor — task monitor panicked: monitor bug"
        );
        e.halt.sweep().await;
        let c = condition(&e.halt);
        assert!(c.triggered, "{c:?}");
        assert_eq!(c.value, Decimal::ONE);
        assert_eq!(c.detail.as_deref(), Some("monitor"));
        // Still breached on every later look: nothing clears it but a restart.
        e.halt.sweep().await;
        assert!(condition(&e.halt).triggered);
    }

    #[tokio::test]
    async fn ending_early_or_with_an_error_halts() {
        let e = env();
        e.sup
            .spawn("risk", Ending::AtShutdown, async { Ok(()) })
            .await
            .unwrap();
        assert_eq!(
            halted_by(&e.halt).await,
            "auto:task_failed:risk — task risk ended unexpectedly"
        );
        let e = env();
        e.sup
            .spawn("replay", Ending::MayFinish, async {
                Err(anyhow::anyhow!("checksum mismatch"))
            })
            .await
            .unwrap();
        assert_eq!(
            halted_by(&e.halt).await,
            "auto:task_failed:replay — task replay failed: checksum mismatch"
        );
    }

    #[tokio::test]
    async fn normal_ends_do_not_halt() {
        let e = env();
        e.sup
            .spawn("replay", Ending::MayFinish, async { Ok(()) })
            .await
            .unwrap();
        assert_eq!(e.health.state("replay"), Some(TaskState::Finished));
        let waiting = e.sup.spawn("risk", Ending::AtShutdown, {
            let token = e.shutdown.clone();
            async move {
                token.cancelled().await;
                Ok(())
            }
        });
        assert_eq!(e.health.state("risk"), Some(TaskState::Running));
        e.shutdown.cancel();
        waiting.await.unwrap();
        assert_eq!(e.health.state("risk"), Some(TaskState::Stopped));
        assert_eq!(e.halt.state(), HaltState::Running);
        assert!(e.health.failures().is_empty());
        assert_eq!(e.health.outcome().status, gf_core::HealthStatus::Healthy);
    }

    #[tokio::test]
    async fn a_watched_handle_that_panics_halts() {
        let e = env();
        let library_task = tokio::spawn(async { panic!("order sync lost its client") });
        e.sup
            .watch("order_sync", Ending::AtShutdown, library_task)
            .await
            .unwrap();
        assert_eq!(
            halted_by(&e.halt).await,
            "auto:task_failed:order_sync — task order_sync panicked: order sync lost its client"
        );
    }
}
