//! What each signal does to a running daemon (the table in docs/runbook.md, "Signals").
//!
//! [`Signals::install`] registers every handled signal at once, first thing at start-up,
//! so none of them can kill the process with its default action — not even while the
//! daemon is still starting (a signal received then is acted on once it runs).
//!
//! | Signal | Action |
//! |---|---|
//! | `SIGTERM`, `SIGINT`, `SIGQUIT`, `SIGPWR`, `SIGXCPU` | graceful stop; a second one while stopping exits at once (130) |
//! | `SIGHUP` | reload the API tokens (`tokens.json`) |
//! | `SIGUSR1` | halt (source `signal`) |
//! | `SIGUSR2` | log a status summary (state, gate, halt, tasks, tokens, equity) |
//! | `SIGALRM`, `SIGVTALRM`, `SIGPROF`, `SIGIO`, `SIGXFSZ` | logged and ignored |
//!
//! Everything else keeps its default, as documented in the runbook.

use gf_core::HaltSource;
use gf_risk::PortfolioView;

use crate::app::Daemon;

/// What a handled signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Graceful stop.
    Stop,
    /// Halt trading (source `signal`).
    Halt,
    /// Reload the API tokens from the data directory.
    ReloadTokens,
    /// Log a status summary.
    DumpStatus,
    /// Log it and carry on.
    Ignore,
}

/// A signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// `SIGHUP`, `SIGUSR1`, …
    pub name: &'static str,
    /// What it asks for.
    pub action: Action,
}

/// Every handled signal, its name and its action.
#[cfg(unix)]
#[must_use]
pub fn table() -> Vec<(&'static str, i32, Action)> {
    use rustix::process::Signal as S;
    #[allow(unused_mut)]
    let mut t = vec![
        ("SIGTERM", S::TERM, Action::Stop),
        ("SIGINT", S::INT, Action::Stop),
        ("SIGQUIT", S::QUIT, Action::Stop),
        ("SIGXCPU", S::XCPU, Action::Stop),
        ("SIGHUP", S::HUP, Action::ReloadTokens),
        ("SIGUSR1", S::USR1, Action::Halt),
        ("SIGUSR2", S::USR2, Action::DumpStatus),
        ("SIGALRM", S::ALARM, Action::Ignore),
        ("SIGVTALRM", S::VTALARM, Action::Ignore),
        ("SIGPROF", S::PROF, Action::Ignore),
        ("SIGIO", S::IO, Action::Ignore),
        ("SIGXFSZ", S::XFSZ, Action::Ignore),
    ];
    #[cfg(target_os = "linux")]
    t.push(("SIGPWR", S::POWER, Action::Stop));
    t.into_iter()
        .map(|(name, sig, action)| (name, sig.as_raw(), action))
        .collect()
}

/// The installed handlers; [`Signals::recv`] yields what arrives.
pub struct Signals {
    #[cfg(unix)]
    streams: Vec<(&'static str, Action, tokio::signal::unix::Signal)>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Signals");
        #[cfg(unix)]
        d.field(
            "handled",
            &self.streams.iter().map(|(n, ..)| *n).collect::<Vec<_>>(),
        );
        d.finish()
    }
}

impl Signals {
    /// Installs a handler for every signal of [`table`]. Needs a Tokio runtime. From this
    /// call on, those signals never take their default action in this process.
    ///
    /// # Errors
    /// When a handler cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = table()
                .into_iter()
                .map(|(name, raw, action)| {
                    signal(SignalKind::from_raw(raw)).map(|s| (name, action, s))
                })
                .collect::<std::io::Result<_>>()?;
            Ok(Self { streams })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal. Signals that arrived since [`Signals::install`] (or the previous
    /// call) are not lost; several of one kind may be reported once. `None` when the
    /// runtime is shutting down.
    pub async fn recv(&mut self) -> Option<Received> {
        #[cfg(unix)]
        {
            std::future::poll_fn(|cx| {
                let mut open = false;
                for (name, action, stream) in &mut self.streams {
                    match stream.poll_recv(cx) {
                        std::task::Poll::Ready(Some(())) => {
                            return std::task::Poll::Ready(Some(Received {
                                name,
                                action: *action,
                            }));
                        }
                        std::task::Poll::Ready(None) => {}
                        std::task::Poll::Pending => open = true,
                    }
                }
                if open {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(None)
                }
            })
            .await
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| Received {
                name: "ctrl-c",
                action: Action::Stop,
            })
        }
    }
}

/// Carries out a non-stop action on a running daemon (a stop is the caller's, which owns
/// the shutdown sequence).
pub async fn act(d: &Daemon, got: Received) {
    match got.action {
        Action::Halt => {
            let outcome = d
                .halt
                .halt(HaltSource::Signal, &format!("{} received", got.name))
                .await;
            tracing::warn!(?outcome, signal = got.name, "halted by signal");
        }
        Action::ReloadTokens => {
            crate::auth::reload_logged(&d.tokens, got.name);
        }
        Action::DumpStatus => log_status(d, got.name),
        Action::Ignore => {
            tracing::warn!(
                signal = got.name,
                "signal ignored (see the runbook, Signals)"
            );
        }
        Action::Stop => {
            tracing::warn!(signal = got.name, "already stopping");
        }
    }
}

/// One log line with what an operator asks first: state, gate, halt, tasks, tokens,
/// equity. Text from outside (the halt reason, task failures) is `Debug`-quoted, so control
/// characters in it are escaped.
pub fn log_status(d: &Daemon, why: &str) {
    let st = d.halt.status();
    let halt = st
        .halt
        .as_ref()
        .map(|h| format!("#{} {} — {:?}", h.id, h.source, h.reason));
    let tasks: Vec<String> = d
        .tasks
        .snapshot()
        .into_iter()
        .map(|(name, state)| match state {
            crate::supervise::TaskState::Failed(why) => format!("{name}=failed({why:?})"),
            other => format!("{name}={}", format!("{other:?}").to_lowercase()),
        })
        .collect();
    tracing::info!(
        trigger = why,
        state = %st.state,
        gate_open = st.gate_open,
        halt = ?halt,
        checklist_missing = st.checklist_missing.len(),
        journal_problem = ?st.journal_problem,
        tasks = %tasks.join(" "),
        tokens = d.tokens.read().len(),
        equity = %d.portfolio.equity(),
        open_orders = d.portfolio.open_orders(),
        events_published = d.bus.published(),
        "status"
    );
}
