//! Rotation without restart: [`RotatingCredentials`] is the handle gf-exec reads on
//! every request; a [`Rotator`] fetches a new version from the provider, validates it,
//! tests it with a caller-supplied [`CredentialCheck`] and only then swaps it in. A
//! failed test keeps the old credentials, is audited and raises a critical alert.
//! [`Rotator::spawn`] runs the polling watcher; [`Rotator::rotate_now`] is the manual
//! rotation behind `gf-daemon secrets rotate`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use gf_core::{AlertStatus, CredentialHandle, Severity};
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audit::{Auditor, ROTATION_FAILED_ALERT};
use crate::error::{Error, Result};
use crate::provider::SecretProvider;
use crate::secret::Credentials;

/// The credentials gf-exec signs with; swapped atomically by the [`Rotator`].
#[derive(Default)]
pub struct RotatingCredentials {
    current: RwLock<Option<Arc<Credentials>>>,
    lends: AtomicU64,
}

impl fmt::Debug for RotatingCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingCredentials")
            .field("version", &self.current_version())
            .field("lends", &self.lends())
            .finish()
    }
}

impl RotatingCredentials {
    /// A handle with no credentials loaded (`with_credentials` returns `false`).
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// A handle holding `creds`.
    #[must_use]
    pub fn new(creds: Credentials) -> Self {
        let this = Self::default();
        this.swap(Arc::new(creds));
        this
    }

    /// The credentials now in force.
    #[must_use]
    pub fn current(&self) -> Option<Arc<Credentials>> {
        self.current.read().clone()
    }

    /// Their version.
    #[must_use]
    pub fn current_version(&self) -> Option<String> {
        self.current
            .read()
            .as_ref()
            .and_then(|c| c.version().map(str::to_owned))
    }

    /// Replaces the credentials; returns the previous ones. Requests already signing
    /// keep the old `Arc` until they finish.
    pub fn swap(&self, creds: Arc<Credentials>) -> Option<Arc<Credentials>> {
        self.current.write().replace(creds)
    }

    /// How many times credentials were lent for signing.
    #[must_use]
    pub fn lends(&self) -> u64 {
        self.lends.load(Ordering::Relaxed)
    }
}

impl CredentialHandle for RotatingCredentials {
    fn with_credentials(&self, sign: &mut dyn FnMut(&str, &[u8])) -> bool {
        // Clone the Arc and release the lock before signing: a rotation never waits on
        // a request, and a request never sees half a swap.
        let Some(creds) = self.current() else {
            return false;
        };
        self.lends.fetch_add(1, Ordering::Relaxed);
        creds.lend(|k, s| sign(k, s));
        true
    }

    fn version(&self) -> Option<String> {
        self.current_version()
    }
}

/// Tests a candidate credential version against the exchange (the daemon passes a
/// private Kraken `Balance` call signed with it).
#[async_trait]
pub trait CredentialCheck: Send + Sync {
    /// `Ok` when the credentials work; `Err(reason)` otherwise. The reason must not
    /// contain secret material.
    async fn check(&self, creds: Arc<Credentials>) -> Result<(), String>;
}

/// A [`CredentialCheck`] from a closure returning a boxed future.
pub struct FnCheck<F>(pub F);

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnCheck")
    }
}

#[async_trait]
impl<F> CredentialCheck for FnCheck<F>
where
    F: Fn(Arc<Credentials>) -> BoxFuture<'static, Result<(), String>> + Send + Sync,
{
    async fn check(&self, creds: Arc<Credentials>) -> Result<(), String> {
        (self.0)(creds).await
    }
}

/// What one rotation attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    /// Nothing was loaded; the fetched version passed and is now in force.
    Loaded {
        /// The version loaded.
        version: Option<String>,
    },
    /// The provider still has the version in force.
    Unchanged {
        /// That version.
        version: Option<String>,
    },
    /// A new version passed its check and replaced the old one.
    Rotated {
        /// The previous version.
        from: Option<String>,
        /// The new version.
        to: Option<String>,
    },
    /// A new version failed validation or its check; the old one stays.
    Rejected {
        /// The rejected version.
        version: Option<String>,
        /// Why.
        reason: String,
    },
    /// The watcher already rejected this version; it is not retested until it changes
    /// or an operator rotates by hand.
    StillRejected {
        /// The rejected version.
        version: Option<String>,
    },
}

/// Fetches, validates, checks and swaps credentials.
pub struct Rotator {
    provider: Arc<dyn SecretProvider>,
    set: String,
    handle: Arc<RotatingCredentials>,
    check: Arc<dyn CredentialCheck>,
    auditor: Auditor,
    check_timeout: Duration,
    serial: tokio::sync::Mutex<()>,
    rejected: Mutex<Option<Option<String>>>,
    alert_firing: AtomicBool,
}

impl fmt::Debug for Rotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotator")
            .field("provider", &self.provider.kind())
            .field("set", &self.set)
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

fn show(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

impl Rotator {
    /// A rotator for `set` from `provider` into `handle`.
    #[must_use]
    pub fn new(
        provider: Arc<dyn SecretProvider>,
        set: impl Into<String>,
        handle: Arc<RotatingCredentials>,
        check: Arc<dyn CredentialCheck>,
        auditor: Auditor,
    ) -> Self {
        Self {
            provider,
            set: set.into(),
            handle,
            check,
            auditor,
            check_timeout: Duration::from_secs(30),
            serial: tokio::sync::Mutex::new(()),
            rejected: Mutex::new(None),
            alert_firing: AtomicBool::new(false),
        }
    }

    /// Bounds how long one check may take (default 30 s); a check that times out fails.
    #[must_use]
    pub fn with_check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// The handle this rotator swaps into.
    #[must_use]
    pub fn handle(&self) -> &Arc<RotatingCredentials> {
        &self.handle
    }

    /// One rotation attempt on behalf of `actor` (`watcher`, `operator:alice`, …).
    /// `force` retests a version that was already rejected (manual rotation).
    ///
    /// Attempts are serialised. Cancellation-safe in the sense that a dropped attempt
    /// swaps nothing it has not fully checked.
    ///
    /// # Errors
    /// Only when the provider cannot be read (the old credentials stay); a rejected
    /// version is an `Ok(RotationOutcome::Rejected)`.
    #[tracing::instrument(skip(self), fields(set = %self.set, provider = self.provider.kind()))]
    pub async fn rotate_now(&self, actor: &str, force: bool) -> Result<RotationOutcome> {
        let _serial = self.serial.lock().await;
        let kind = self.provider.kind();
        let fetched = match self.provider.fetch(&self.set).await {
            Ok(set) => set,
            Err(e) => {
                self.auditor
                    .record(actor, &self.set, kind, None, "fetch", &e.to_string());
                tracing::warn!(cause = %e, "secret fetch failed; keeping current credentials");
                return Err(e);
            }
        };
        let version = fetched.version().map(str::to_owned);
        self.auditor
            .record(actor, &self.set, kind, version.as_deref(), "fetch", "ok");

        let current = self.handle.current();
        if let Some(cur) = &current
            && cur.version() == version.as_deref()
        {
            return Ok(RotationOutcome::Unchanged { version });
        }
        if !force && self.rejected.lock().as_ref() == Some(&version) {
            return Ok(RotationOutcome::StillRejected { version });
        }

        let creds = match Credentials::from_set(&fetched) {
            Ok(c) => Arc::new(c),
            Err(e) => return Ok(self.reject(actor, version, "validate", e.to_string())),
        };
        drop(fetched);
        let checked =
            tokio::time::timeout(self.check_timeout, self.check.check(Arc::clone(&creds)))
                .await
                .unwrap_or_else(|_| Err(format!("check timed out after {:?}", self.check_timeout)));
        if let Err(reason) = checked {
            return Ok(self.reject(actor, version, "check", reason));
        }
        self.auditor
            .record(actor, &self.set, kind, version.as_deref(), "check", "ok");

        let previous = self.handle.swap(creds);
        *self.rejected.lock() = None;
        let from = previous
            .as_ref()
            .and_then(|p| p.version().map(str::to_owned));
        let action = if previous.is_some() { "rotate" } else { "load" };
        self.auditor
            .record(actor, &self.set, kind, version.as_deref(), action, "ok");
        if self.alert_firing.swap(false, Ordering::SeqCst) {
            self.auditor.alert(
                ROTATION_FAILED_ALERT,
                Severity::Critical,
                AlertStatus::Resolved,
                format!(
                    "secret set {} now at version {} from {kind}",
                    self.set,
                    show(version.as_deref())
                ),
            );
        }
        tracing::info!(
            from = show(from.as_deref()),
            to = show(version.as_deref()),
            "credentials swapped in"
        );
        Ok(if previous.is_some() {
            RotationOutcome::Rotated { from, to: version }
        } else {
            RotationOutcome::Loaded { version }
        })
    }

    fn reject(
        &self,
        actor: &str,
        version: Option<String>,
        stage: &str,
        reason: String,
    ) -> RotationOutcome {
        let kind = self.provider.kind();
        self.auditor
            .record(actor, &self.set, kind, version.as_deref(), stage, &reason);
        let kept = self.handle.current_version();
        self.auditor.alert(
            ROTATION_FAILED_ALERT,
            Severity::Critical,
            AlertStatus::Firing,
            format!(
                "secret set {} version {} from {kind} failed {stage}: {reason}; keeping version {}",
                self.set,
                show(version.as_deref()),
                show(kept.as_deref()),
            ),
        );
        self.alert_firing.store(true, Ordering::SeqCst);
        *self.rejected.lock() = Some(version.clone());
        RotationOutcome::Rejected { version, reason }
    }

    /// Loads the first credentials (startup), failing when they do not pass.
    ///
    /// # Errors
    /// The provider's error, or [`Error::CheckFailed`] when validation or the check
    /// rejects them.
    pub async fn load(&self, actor: &str) -> Result<RotationOutcome> {
        match self.rotate_now(actor, true).await? {
            RotationOutcome::Rejected { version, reason } => Err(Error::CheckFailed {
                version: show(version.as_deref()).to_owned(),
                reason,
            }),
            other => Ok(other),
        }
    }

    /// Starts the watcher: every `interval` it calls [`Self::rotate_now`] as `watcher`,
    /// until `shutdown` is cancelled or the returned guard is dropped.
    #[must_use]
    pub fn spawn(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) -> WatcherGuard {
        let interval = interval.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {
                        if let Err(e) = self.rotate_now("watcher", false).await {
                            tracing::warn!(cause = %e, retryable = e.is_retryable(), "rotation poll failed");
                        }
                    }
                }
            }
        });
        WatcherGuard { task: Some(task) }
    }
}

/// Stops the watcher task when dropped.
#[derive(Debug)]
pub struct WatcherGuard {
    task: Option<JoinHandle<()>>,
}

impl WatcherGuard {
    /// Waits for the watcher to end (after its shutdown signal).
    pub async fn join(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the watcher task ends by itself (a panic or an abort: it only returns
    /// after its shutdown signal otherwise); pending forever once joined.
    pub async fn ended(&mut self) {
        match self.task.as_mut() {
            Some(task) => {
                let _ = task.await;
                self.task = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Whether the watcher task has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::MockSecretProvider;
    use crate::secret::SecretSet;
    use crate::secret::tests::sample_pair;
    use gf_core::{EventBus, EventKind, KindSet, ManualClock, Payload};
    use parking_lot::Mutex as PlMutex;

    fn set_for(seed: u8, version: &str) -> SecretSet {
        let (k, s) = sample_pair(seed);
        SecretSet::new("kraken", "vault", Some(version.into()))
            .with("api_key", k)
            .with("api_secret", s)
    }

    /// A provider whose versions a test script controls.
    fn scripted(versions: Arc<PlMutex<Vec<(u8, &'static str)>>>) -> MockSecretProvider {
        let mut p = MockSecretProvider::new();
        p.expect_kind().return_const("vault");
        p.expect_fetch().returning(move |_| {
            let v = versions.lock();
            let (seed, version) = *v.last().unwrap();
            Ok(set_for(seed, version))
        });
        p
    }

    /// Accepts keys whose first byte of secret is not 0xFF-seeded "bad" (seed 99).
    fn check_rejecting_seed(bad: u8) -> Arc<dyn CredentialCheck> {
        let (bad_key, _) = sample_pair(bad);
        Arc::new(FnCheck(move |c: Arc<Credentials>| {
            let bad_key = bad_key.clone();
            Box::pin(async move {
                if c.lend(|k, _| k == bad_key) {
                    Err("EAPI:Invalid key".to_string())
                } else {
                    Ok(())
                }
            }) as BoxFuture<'static, Result<(), String>>
        }))
    }

    #[tokio::test]
    async fn rotation_swaps_only_after_check_and_alerts_on_failure() {
        let versions = Arc::new(PlMutex::new(vec![(1, "1")]));
        let bus = EventBus::new(256);
        let mut alerts = bus.subscribe(KindSet::of(&[EventKind::Alert]));
        let mut audits = bus.subscribe(KindSet::of(&[EventKind::SecretAudit]));
        let handle = Arc::new(RotatingCredentials::empty());
        let rotator = Rotator::new(
            Arc::new(scripted(versions.clone())),
            "kraken",
            handle.clone(),
            check_rejecting_seed(99),
            Auditor::new(Arc::new(ManualClock::default())).with_bus(bus.clone()),
        );
        assert!(!handle.with_credentials(&mut |_, _| {}));
        assert_eq!(
            rotator.load("startup").await.unwrap(),
            RotationOutcome::Loaded {
                version: Some("1".into())
            }
        );
        assert_eq!(
            rotator.rotate_now("watcher", false).await.unwrap(),
            RotationOutcome::Unchanged {
                version: Some("1".into())
            }
        );

        versions.lock().push((99, "2"));
        let out = rotator.rotate_now("watcher", false).await.unwrap();
        assert_eq!(
            out,
            RotationOutcome::Rejected {
                version: Some("2".into()),
                reason: "EAPI:Invalid key".into()
            }
        );
        assert_eq!(
            handle.current_version().as_deref(),
            Some("1"),
            "old credentials kept"
        );
        let alert = alerts.recv().await.unwrap();
        match &alert.payload {
            Payload::Alert {
                key,
                severity,
                status,
                summary,
            } => {
                assert_eq!(key, ROTATION_FAILED_ALERT);
                assert_eq!(*severity, Severity::Critical);
                assert_eq!(*status, AlertStatus::Firing);
                assert!(summary.contains("keeping version 1"), "{summary}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            rotator.rotate_now("watcher", false).await.unwrap(),
            RotationOutcome::StillRejected {
                version: Some("2".into())
            }
        );
        assert!(matches!(
            rotator.rotate_now("operator:alice", true).await.unwrap(),
            RotationOutcome::Rejected { .. }
        ));
        let _second_alert = alerts.recv().await.unwrap();

        versions.lock().push((3, "3"));
        assert_eq!(
            rotator.rotate_now("watcher", false).await.unwrap(),
            RotationOutcome::Rotated {
                from: Some("1".into()),
                to: Some("3".into())
            }
        );
        let (k3, _) = sample_pair(3);
        assert!(handle.with_credentials(&mut |k, _| assert_eq!(k, k3)));
        match &alerts.recv().await.unwrap().payload {
            Payload::Alert { status, .. } => assert_eq!(*status, AlertStatus::Resolved),
            other => panic!("unexpected {other:?}"),
        }
        let mut actions = Vec::new();
        while let Ok(ev) = audits.try_recv() {
            if let Payload::SecretAudit {
                action,
                outcome,
                version,
                ..
            } = &ev.payload
            {
                actions.push(format!(
                    "{action}:{}:{}",
                    version.as_deref().unwrap_or("-"),
                    if outcome == "ok" { "ok" } else { "err" }
                ));
            }
        }
        assert_eq!(
            actions,
            [
                "fetch:1:ok",
                "check:1:ok",
                "load:1:ok",
                "fetch:1:ok",
                "fetch:2:ok",
                "check:2:err",
                "fetch:2:ok",
                "fetch:2:ok",
                "check:2:err",
                "fetch:3:ok",
                "check:3:ok",
                "rotate:3:ok",
            ]
        );
    }

    #[tokio::test]
    async fn invalid_shape_is_rejected_before_the_check() {
        let mut p = MockSecretProvider::new();
        p.expect_kind().return_const("aws");
        p.expect_fetch().returning(|_| {
            Ok(SecretSet::new("kraken", "aws", Some("v1".into()))
                .with("api_key", "x")
                .with("api_secret", "y"))
        });
        let calls = Arc::new(AtomicU64::new(0));
        let c2 = calls.clone();
        let check = Arc::new(FnCheck(move |_c: Arc<Credentials>| {
            c2.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) }) as BoxFuture<'static, Result<(), String>>
        }));
        let rotator = Rotator::new(
            Arc::new(p),
            "kraken",
            Arc::new(RotatingCredentials::empty()),
            check,
            Auditor::new(Arc::new(ManualClock::default())),
        );
        let err = rotator.load("startup").await.unwrap_err();
        assert!(err.to_string().contains("field `api_key`"), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn fetch_errors_keep_old_credentials() {
        let mut p = MockSecretProvider::new();
        p.expect_kind().return_const("vault");
        let mut first = true;
        p.expect_fetch().returning(move |_| {
            if std::mem::take(&mut first) {
                Ok(set_for(1, "1"))
            } else {
                Err(Error::Transport {
                    provider: "vault",
                    operation: "read".into(),
                    reason: "connection refused".into(),
                })
            }
        });
        let handle = Arc::new(RotatingCredentials::empty());
        let rotator = Rotator::new(
            Arc::new(p),
            "kraken",
            handle.clone(),
            check_rejecting_seed(99),
            Auditor::new(Arc::new(ManualClock::default())),
        );
        rotator.load("startup").await.unwrap();
        assert!(
            rotator
                .rotate_now("watcher", false)
                .await
                .unwrap_err()
                .is_retryable()
        );
        assert_eq!(handle.current_version().as_deref(), Some("1"));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_check_times_out_and_is_rejected() {
        let versions = Arc::new(PlMutex::new(vec![(1, "1")]));
        let check = Arc::new(FnCheck(|_c: Arc<Credentials>| {
            Box::pin(std::future::pending()) as BoxFuture<'static, Result<(), String>>
        }));
        let rotator = Rotator::new(
            Arc::new(scripted(versions)),
            "kraken",
            Arc::new(RotatingCredentials::empty()),
            check,
            Auditor::new(Arc::new(ManualClock::default())),
        )
        .with_check_timeout(Duration::from_secs(5));
        match rotator.rotate_now("watcher", false).await.unwrap() {
            RotationOutcome::Rejected { reason, .. } => {
                assert!(reason.contains("timed out"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_polls_on_its_interval_and_stops_on_shutdown() {
        let versions = Arc::new(PlMutex::new(vec![(1, "1")]));
        let bus = EventBus::new(256);
        let mut audits = bus.subscribe(KindSet::of(&[EventKind::SecretAudit]));
        let handle = Arc::new(RotatingCredentials::empty());
        let rotator = Arc::new(Rotator::new(
            Arc::new(scripted(versions.clone())),
            "kraken",
            handle.clone(),
            check_rejecting_seed(99),
            Auditor::new(Arc::new(ManualClock::default())).with_bus(bus),
        ));
        rotator.load("startup").await.unwrap();
        let stop = CancellationToken::new();
        let guard = Arc::clone(&rotator).spawn(Duration::from_secs(300), stop.clone());
        versions.lock().push((4, "4"));
        // Nothing before the first interval elapses.
        tokio::time::sleep(Duration::from_secs(299)).await;
        assert_eq!(handle.current_version().as_deref(), Some("1"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(handle.current_version().as_deref(), Some("4"));
        let mut rotated = false;
        while let Ok(ev) = audits.try_recv() {
            if let Payload::SecretAudit {
                action, version, ..
            } = &ev.payload
            {
                rotated |= action == "rotate" && version.as_deref() == Some("4");
            }
        }
        assert!(rotated);
        stop.cancel();
        guard.join().await;
    }
}
