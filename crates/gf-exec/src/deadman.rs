//! The dead man's switch keeper: while this process lives it keeps Kraken's
//! `CancelAllOrdersAfter` armed, refreshing well before expiry, so the exchange cancels
//! every resting order if the process dies. It refreshes in every state, halted included:
//! the switch answers "is the daemon alive?", not "may it trade?" — a halt's own behaviour
//! decides what happens to resting orders (`hold` keeps them, and must not see them
//! cancelled by a lapsed switch). On clean shutdown it disarms if configured; a crash or
//! a killed process leaves it armed, and it fires.
//!
//! A failed refresh raises a critical `Alert` (key `dead_man_switch`), resolved by the
//! next success; the failed call itself is reported as an `ApiError` by the client.

use std::sync::Arc;
use std::time::Duration;

use gf_core::config::ExchangeConfig;
use gf_core::{AlertStatus, Severity};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::Publisher;
use crate::{Error, Exchange};

/// Alert key of a failing refresh.
pub const ALERT_KEY: &str = "dead_man_switch";

/// Settings of the keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadManConfig {
    /// `CancelAllOrdersAfter` timeout, seconds (> 0).
    pub timeout_secs: u32,
    /// How often to refresh; a quarter of the timeout by default.
    pub refresh_every: Duration,
    /// Disarm (timeout 0) on clean shutdown.
    pub disarm_on_shutdown: bool,
}

impl DeadManConfig {
    /// A keeper refreshing every quarter of `timeout_secs` (at least every second).
    #[must_use]
    pub fn new(timeout_secs: u32, disarm_on_shutdown: bool) -> Self {
        Self {
            timeout_secs,
            refresh_every: Duration::from_secs(gf_core::config::dead_man_refresh_secs(u64::from(
                timeout_secs,
            ))),
            disarm_on_shutdown,
        }
    }

    /// From `[exchange]`; `None` when `dead_man_switch_secs` is 0 (disabled).
    ///
    /// # Errors
    /// [`Error::Config`] when the timeout exceeds Kraken's maximum of 86 400 s.
    pub fn from_config(cfg: &ExchangeConfig) -> Result<Option<Self>, Error> {
        match cfg.dead_man_switch_secs {
            0 => Ok(None),
            s if s > 86_400 => Err(Error::Config {
                key: "exchange.dead_man_switch_secs".into(),
                value: s.to_string(),
                reason: "kraken accepts at most 86400 seconds".into(),
            }),
            s => Ok(Some(Self::new(
                u32::try_from(s).unwrap_or(86_400),
                cfg.disarm_on_shutdown,
            ))),
        }
    }
}

/// The running keeper. Dropping it stops the task without disarming; call
/// [`DeadManSwitch::shutdown`] for a clean stop.
#[derive(Debug)]
pub struct DeadManSwitch {
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl DeadManSwitch {
    /// Starts the keeper on the current runtime. It refreshes whatever the trading state.
    pub fn spawn(exchange: Arc<dyn Exchange>, cfg: DeadManConfig, events: Publisher) -> Self {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(cfg.refresh_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    biased;
                    () = stopped.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match exchange.cancel_all_after(cfg.timeout_secs).await {
                    Ok(_) if failing => {
                        failing = false;
                        events.alert(
                            ALERT_KEY,
                            Severity::Critical,
                            AlertStatus::Resolved,
                            "dead man's switch refreshed again".into(),
                        );
                    }
                    Ok(_) => {}
                    Err(err) => {
                        failing = true;
                        tracing::error!(cause = %err, "dead man's switch refresh failed");
                        events.alert(
                            ALERT_KEY,
                            Severity::Critical,
                            AlertStatus::Firing,
                            format!("dead man's switch refresh failed: {err}"),
                        );
                    }
                }
            }
            if cfg.disarm_on_shutdown {
                exchange.cancel_all_after(0).await.map(|_| ())
            } else {
                Ok(())
            }
        });
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Waits until the keeper's task ends by itself — it never should while not shut down:
    /// a panic or an abort means the switch is no longer refreshed, and the caller (the
    /// daemon's supervisor) must treat that as a failed task. Returns what ended it; pending
    /// forever once [`DeadManSwitch::shutdown`] or this has taken the task.
    pub async fn stopped(&mut self) -> String {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = task.await;
        self.task = None;
        match outcome {
            Ok(Ok(())) => "the keeper returned".into(),
            Ok(Err(e)) => format!("the keeper failed: {e}"),
            Err(e) if e.is_panic() => "the keeper panicked".into(),
            Err(e) => format!("the keeper was cancelled: {e}"),
        }
    }

    /// Stops refreshing and, if configured, disarms the switch.
    ///
    /// # Errors
    /// [`Error`] of the disarm call.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for DeadManSwitch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeadManStatus, MockExchange};
    use gf_core::{EventBus, EventKind, KindSet, ManualClock, Payload, Source};
    use std::sync::Mutex;

    fn spawn(mock: MockExchange, disarm: bool, bus: &EventBus) -> DeadManSwitch {
        let events = Publisher::new(
            Some(bus.clone()),
            Arc::new(ManualClock::default()),
            Source::Exec,
        );
        DeadManSwitch::spawn(Arc::new(mock), DeadManConfig::new(60, disarm), events)
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_in_every_state_and_disarms_on_shutdown() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut mock = MockExchange::new();
        let seen = calls.clone();
        mock.expect_cancel_all_after().returning(move |t| {
            seen.lock().unwrap().push(t);
            Ok(DeadManStatus { trigger_at: None })
        });
        let bus = EventBus::new(64);
        let keeper = spawn(mock, true, &bus);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(
            *calls.lock().unwrap(),
            vec![60, 60, 60],
            "at 0 s, 15 s, 30 s"
        );
        // The keeper knows no trading state: it goes on every 15 s, halted or not.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(calls.lock().unwrap().len(), 7);
        keeper.shutdown().await.unwrap();
        assert_eq!(calls.lock().unwrap().last(), Some(&0), "disarmed");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_alerts_and_success_resolves() {
        let mut mock = MockExchange::new();
        let n = Arc::new(Mutex::new(0));
        let count = n.clone();
        mock.expect_cancel_all_after().returning(move |_| {
            let mut c = count.lock().unwrap();
            *c += 1;
            if *c == 1 {
                Err(Error::Timeout {
                    endpoint: "CancelAllOrdersAfter".into(),
                    millis: 5000,
                })
            } else {
                Ok(DeadManStatus { trigger_at: None })
            }
        });
        let bus = EventBus::new(64);
        let mut alerts = bus.subscribe(KindSet::of(&[EventKind::Alert]));
        let keeper = spawn(mock, false, &bus);
        tokio::time::sleep(Duration::from_secs(16)).await;
        let statuses: Vec<AlertStatus> = std::iter::from_fn(|| alerts.try_recv().ok())
            .map(|ev| match &ev.payload {
                Payload::Alert { key, status, .. } => {
                    assert_eq!(key, ALERT_KEY);
                    *status
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(statuses, vec![AlertStatus::Firing, AlertStatus::Resolved]);
        keeper.shutdown().await.unwrap();
        assert_eq!(*n.lock().unwrap(), 2, "no disarm call when not configured");
    }

    #[tokio::test(start_paused = true)]
    async fn a_keeper_that_dies_is_reported_not_silently_gone() {
        let mut mock = MockExchange::new();
        let n = Arc::new(Mutex::new(0));
        let count = n.clone();
        mock.expect_cancel_all_after().returning(move |_| {
            let calls = {
                let mut c = count.lock().unwrap();
                *c += 1;
                *c
            };
            assert!(
                calls < 2,
                "the exchange double blows up on the second refresh"
            );
            Ok(DeadManStatus { trigger_at: None })
        });
        let bus = EventBus::new(64);
        let mut keeper = spawn(mock, false, &bus);
        // Still refreshing: `stopped` does not resolve.
        tokio::select! {
            why = keeper.stopped() => panic!("ended early: {why}"),
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        // The second refresh (at 15 s) panics inside the keeper's task.
        let why = keeper.stopped().await;
        assert_eq!(why, "the keeper panicked");
        assert_eq!(*n.lock().unwrap(), 2);
        // Once reported, shutting down is still clean (nothing left to stop).
        keeper.shutdown().await.unwrap();
    }

    #[test]
    fn config_from_exchange_section() {
        let mut cfg = ExchangeConfig::default();
        let dm = DeadManConfig::from_config(&cfg).unwrap().unwrap();
        assert_eq!(dm.timeout_secs, 60);
        assert_eq!(dm.refresh_every, Duration::from_secs(15));
        cfg.dead_man_switch_secs = 0;
        assert_eq!(DeadManConfig::from_config(&cfg).unwrap(), None);
        cfg.dead_man_switch_secs = 100_000;
        let err = DeadManConfig::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("100000"));
        assert_eq!(
            DeadManConfig::new(2, false).refresh_every,
            Duration::from_secs(1)
        );
    }
}
