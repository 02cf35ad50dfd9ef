//! Health checks (exchange API, database, market-data freshness, memory, disk) and their
//! aggregate, which answers `/readyz`.
//!
//! A check is a small async trait; [`FnCheck`] turns an async closure into one so that
//! the daemon can register checks over things this crate does not know (the exchange
//! client, the SQLite journal). Each result carries its own latency.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use gf_core::{HealthStatus, Pair, SharedClock};

use crate::system::SystemSampler;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Healthy, degraded or unhealthy.
    pub status: HealthStatus,
    /// Detail for operators.
    pub message: String,
}

impl CheckOutcome {
    /// Healthy.
    #[must_use]
    pub fn healthy(message: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Healthy,
            message: message.into(),
        }
    }
    /// Degraded.
    #[must_use]
    pub fn degraded(message: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Degraded,
            message: message.into(),
        }
    }
    /// Unhealthy.
    #[must_use]
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Unhealthy,
            message: message.into(),
        }
    }
}

/// One check's result with its latency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name.
    pub name: String,
    /// Outcome.
    pub status: HealthStatus,
    /// Detail.
    pub message: String,
    /// How long the check took, microseconds.
    pub latency_micros: u64,
}

/// A health check.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync + std::fmt::Debug {
    /// Its name in `/readyz?verbose` and metrics.
    fn name(&self) -> &str;
    /// Runs the check. It should not take long; the registry applies a timeout anyway.
    async fn check(&self) -> CheckOutcome;
}

type BoxedCheckFn =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = CheckOutcome> + Send>> + Send + Sync>;

/// A check from an async closure.
///
/// ```
/// use gf_monitor::health::{CheckOutcome, FnCheck, HealthCheck};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let check = FnCheck::new("exchange", || async { CheckOutcome::healthy("status online") });
/// assert_eq!(check.check().await.message, "status online");
/// # });
/// ```
pub struct FnCheck {
    name: String,
    f: BoxedCheckFn,
}

impl std::fmt::Debug for FnCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FnCheck {
    /// Wraps `f`, called once per check.
    pub fn new<F, Fut>(name: &str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckOutcome> + Send + 'static,
    {
        Self {
            name: name.to_owned(),
            f: Box::new(move || Box::pin(f())),
        }
    }
}

#[async_trait]
impl HealthCheck for FnCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> CheckOutcome {
        (self.f)().await
    }
}

/// Exchange API reachability: a GET of a status URL (e.g. Kraken's public
/// `SystemStatus`) must answer 2xx; slower than `slow_after` is degraded.
#[derive(Debug)]
pub struct HttpCheck {
    name: String,
    url: String,
    slow_after: Duration,
    client: reqwest::Client,
}

impl HttpCheck {
    /// A check of `url` with a per-request `timeout`.
    #[must_use]
    pub fn new(name: &str, url: &str, timeout: Duration, slow_after: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            slow_after,
            client,
        }
    }
}

#[async_trait]
impl HealthCheck for HttpCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> CheckOutcome {
        let started = Instant::now();
        match self.client.get(&self.url).send().await {
            Ok(r) if r.status().is_success() => {
                let took = started.elapsed();
                if took > self.slow_after {
                    CheckOutcome::degraded(format!("answered in {} ms", took.as_millis()))
                } else {
                    CheckOutcome::healthy(format!(
                        "answered {} in {} ms",
                        r.status(),
                        took.as_millis()
                    ))
                }
            }
            Ok(r) => CheckOutcome::unhealthy(format!("http status {}", r.status())),
            Err(e) => CheckOutcome::unhealthy(format!("unreachable: {e}")),
        }
    }
}

/// The data directory is writable: a probe file is written, synced and removed.
#[derive(Debug)]
pub struct WritableDirCheck {
    name: String,
    dir: PathBuf,
}

impl WritableDirCheck {
    /// A check of `dir`.
    #[must_use]
    pub fn new(name: &str, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            dir: dir.into(),
        }
    }
}

#[async_trait]
impl HealthCheck for WritableDirCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> CheckOutcome {
        let path = self.dir.join(".gf-health-probe");
        let res = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(b"probe")?;
            f.sync_all()?;
            std::fs::remove_file(&path)
        })
        .await;
        match res {
            Ok(Ok(())) => CheckOutcome::healthy(format!("{} is writable", self.dir.display())),
            Ok(Err(e)) => {
                CheckOutcome::unhealthy(format!("{} is not writable: {e}", self.dir.display()))
            }
            Err(e) => CheckOutcome::unhealthy(format!("probe task failed: {e}")),
        }
    }
}

/// Resident memory against a limit: degraded above 80 %, unhealthy above the limit.
#[derive(Debug)]
pub struct MemoryCheck {
    max_bytes: u64,
    sampler: Mutex<SystemSampler>,
}

impl MemoryCheck {
    /// A check against `max_mib` MiB.
    #[must_use]
    pub fn new(max_mib: u64) -> Self {
        Self {
            max_bytes: max_mib.saturating_mul(1024 * 1024),
            sampler: Mutex::new(SystemSampler::new(".")),
        }
    }
}

fn grade(value: u64, limit: u64, higher_is_worse: bool) -> HealthStatus {
    let (bad, warn) = if higher_is_worse {
        (
            value > limit,
            value.saturating_mul(5) > limit.saturating_mul(4),
        )
    } else {
        (value < limit, value < limit.saturating_mul(2))
    };
    if bad {
        HealthStatus::Unhealthy
    } else if warn {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    }
}

#[async_trait]
impl HealthCheck for MemoryCheck {
    fn name(&self) -> &str {
        "memory"
    }
    async fn check(&self) -> CheckOutcome {
        let rss = self.sampler.lock().sample().resident_bytes;
        let mib = |b: u64| b / (1024 * 1024);
        CheckOutcome {
            status: grade(rss, self.max_bytes, true),
            message: format!(
                "resident {} MiB of {} MiB allowed",
                mib(rss),
                mib(self.max_bytes)
            ),
        }
    }
}

/// Free disk of the data directory's own file system (`statvfs` of the directory):
/// degraded below twice the minimum, unhealthy below it.
#[derive(Debug)]
pub struct DiskCheck {
    min_free_bytes: u64,
    dir: PathBuf,
}

impl DiskCheck {
    /// A check of the file system holding `dir`, requiring `min_free_mib` MiB.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>, min_free_mib: u64) -> Self {
        Self {
            min_free_bytes: min_free_mib.saturating_mul(1024 * 1024),
            dir: dir.into(),
        }
    }
}

#[async_trait]
impl HealthCheck for DiskCheck {
    fn name(&self) -> &str {
        "disk"
    }
    async fn check(&self) -> CheckOutcome {
        match crate::system::free_space(&self.dir) {
            Some(free) => CheckOutcome {
                status: grade(free, self.min_free_bytes, false),
                message: format!(
                    "{} MiB free, {} MiB required",
                    free / (1024 * 1024),
                    self.min_free_bytes / (1024 * 1024)
                ),
            },
            None => CheckOutcome::degraded("free space of the data directory is unknown"),
        }
    }
}

/// Market-data freshness per pair: unhealthy when a pair has had no message within
/// `max_age` (or none yet). Fed by [`FreshnessCheck::note`] (the monitor does this for
/// every market-data event).
#[derive(Debug, Clone)]
pub struct FreshnessCheck {
    pairs: Vec<Pair>,
    max_age: chrono::Duration,
    clock: SharedClock,
    last: Arc<Mutex<BTreeMap<Pair, DateTime<Utc>>>>,
}

impl FreshnessCheck {
    /// A check of `pairs`.
    #[must_use]
    pub fn new(pairs: Vec<Pair>, max_age: Duration, clock: SharedClock) -> Self {
        Self {
            pairs,
            max_age: chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX),
            clock,
            last: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Records a market-data message for `pair` at `at`.
    pub fn note(&self, pair: &Pair, at: DateTime<Utc>) {
        let mut last = self.last.lock();
        let e = last.entry(pair.clone()).or_insert(at);
        if at > *e {
            *e = at;
        }
    }

    /// When each pair last had data.
    #[must_use]
    pub fn last_seen(&self) -> BTreeMap<Pair, DateTime<Utc>> {
        self.last.lock().clone()
    }
}

#[async_trait]
impl HealthCheck for FreshnessCheck {
    fn name(&self) -> &str {
        "market_data"
    }
    async fn check(&self) -> CheckOutcome {
        let now = self.clock.now();
        let last = self.last.lock();
        let stale: Vec<String> = self
            .pairs
            .iter()
            .filter_map(|p| match last.get(p) {
                None => Some(format!("{p}: no data yet")),
                Some(t) if now - *t > self.max_age => {
                    Some(format!("{p}: {} s old", (now - *t).num_seconds()))
                }
                Some(_) => None,
            })
            .collect();
        if stale.is_empty() {
            CheckOutcome::healthy(format!("{} pairs fresh", self.pairs.len()))
        } else {
            CheckOutcome::unhealthy(format!("stale: {}", stale.join("; ")))
        }
    }
}

/// The aggregate of every check: what `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `true` when no check is unhealthy (degraded still serves).
    pub ready: bool,
    /// The worst status.
    pub status: HealthStatus,
    /// Every result, in registration order.
    pub checks: Vec<CheckResult>,
    /// When the checks ran.
    pub checked_at: DateTime<Utc>,
}

impl Readiness {
    /// The HTTP status `/readyz` answers: 200 when ready, 503 otherwise.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        if self.ready { 200 } else { 503 }
    }
}

/// Runs registered checks concurrently, each under a timeout.
#[derive(Debug, Clone)]
pub struct HealthRegistry {
    checks: Vec<Arc<dyn HealthCheck>>,
    timeout: Duration,
    clock: SharedClock,
}

impl HealthRegistry {
    /// An empty registry; each check gets `timeout`.
    #[must_use]
    pub fn new(timeout: Duration, clock: SharedClock) -> Self {
        Self {
            checks: Vec::new(),
            timeout,
            clock,
        }
    }

    /// Adds a check.
    pub fn register(&mut self, check: Arc<dyn HealthCheck>) {
        self.checks.push(check);
    }

    /// Names of the registered checks.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.checks.iter().map(|c| c.name().to_owned()).collect()
    }

    /// Runs every check concurrently and aggregates. A check that exceeds the timeout or
    /// panics is unhealthy. With no checks registered the process is ready.
    pub async fn run(&self) -> Readiness {
        let mut set = tokio::task::JoinSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            let c = c.clone();
            let timeout = self.timeout;
            set.spawn(async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(timeout, c.check())
                    .await
                    .unwrap_or_else(|_| {
                        CheckOutcome::unhealthy(format!(
                            "timed out after {} ms",
                            timeout.as_millis()
                        ))
                    });
                let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                (
                    i,
                    CheckResult {
                        name: c.name().to_owned(),
                        status: outcome.status,
                        message: outcome.message,
                        latency_micros: latency,
                    },
                )
            });
        }
        let mut results: Vec<Option<CheckResult>> = vec![None; self.checks.len()];
        while let Some(joined) = set.join_next().await {
            if let Ok((i, r)) = joined {
                results[i] = Some(r);
            }
        }
        let checks: Vec<CheckResult> = results
            .into_iter()
            .zip(&self.checks)
            .map(|(r, c)| {
                r.unwrap_or_else(|| CheckResult {
                    name: c.name().to_owned(),
                    status: HealthStatus::Unhealthy,
                    message: "check panicked".into(),
                    latency_micros: 0,
                })
            })
            .collect();
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        Readiness {
            ready: status != HealthStatus::Unhealthy,
            status,
            checks,
            checked_at: self.clock.now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{Clock, ManualClock};

    fn clock() -> (ManualClock, SharedClock) {
        let c = ManualClock::default();
        (c.clone(), Arc::new(c))
    }

    #[tokio::test]
    async fn one_unhealthy_check_makes_the_aggregate_not_ready() {
        let (_, shared) = clock();
        let mut reg = HealthRegistry::new(Duration::from_secs(1), shared);
        reg.register(Arc::new(FnCheck::new("exchange", || async {
            CheckOutcome::healthy("ok")
        })));
        reg.register(Arc::new(FnCheck::new("slowish", || async {
            CheckOutcome::degraded("slow")
        })));
        let r = reg.run().await;
        assert!(r.ready);
        assert_eq!(r.status, HealthStatus::Degraded);
        reg.register(Arc::new(FnCheck::new("database", || async {
            CheckOutcome::unhealthy("locked")
        })));
        let r = reg.run().await;
        assert!(!r.ready);
        assert_eq!(r.http_status(), 503);
        assert_eq!(
            r.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["exchange", "slowish", "database"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_times_out_as_unhealthy() {
        let (_, shared) = clock();
        let mut reg = HealthRegistry::new(Duration::from_millis(200), shared);
        let mut quick = MockHealthCheck::new();
        quick.expect_name().return_const("quick".to_owned());
        quick
            .expect_check()
            .times(1)
            .returning(|| CheckOutcome::healthy("fine"));
        reg.register(Arc::new(quick));
        reg.register(Arc::new(FnCheck::new("hang", std::future::pending)));
        let r = reg.run().await;
        assert!(!r.ready);
        assert_eq!(r.checks[0].status, HealthStatus::Healthy);
        assert!(
            r.checks[1].message.contains("timed out after 200 ms"),
            "{:?}",
            r.checks
        );
        assert!(r.checks[1].latency_micros >= 200_000);
    }

    #[tokio::test]
    async fn freshness_per_pair_follows_the_clock() {
        let (manual, shared) = clock();
        let xrp = Pair::new("XRP/USD").unwrap();
        let doge = Pair::new("DOGE/USD").unwrap();
        let check = FreshnessCheck::new(
            vec![xrp.clone(), doge.clone()],
            Duration::from_secs(60),
            shared,
        );
        assert_eq!(check.check().await.status, HealthStatus::Unhealthy);
        check.note(&xrp, manual.now());
        check.note(&doge, manual.now());
        assert_eq!(check.check().await.status, HealthStatus::Healthy);
        manual.advance(chrono::Duration::seconds(30));
        check.note(&xrp, manual.now());
        manual.advance(chrono::Duration::seconds(31));
        let out = check.check().await;
        assert_eq!(out.status, HealthStatus::Unhealthy);
        assert!(
            out.message.contains("DOGE/USD: 61 s old") && !out.message.contains("XRP"),
            "{}",
            out.message
        );
    }

    #[tokio::test]
    async fn writable_dir_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            WritableDirCheck::new("database", dir.path())
                .check()
                .await
                .status,
            HealthStatus::Healthy
        );
        let missing = dir.path().join("nope");
        assert_eq!(
            WritableDirCheck::new("database", &missing)
                .check()
                .await
                .status,
            HealthStatus::Unhealthy
        );
        assert_eq!(
            MemoryCheck::new(1).check().await.status,
            HealthStatus::Unhealthy
        );
        assert_eq!(
            MemoryCheck::new(1 << 30).check().await.status,
            HealthStatus::Healthy
        );
        assert_eq!(
            DiskCheck::new(dir.path(), 1).check().await.status,
            HealthStatus::Healthy
        );
        assert_eq!(
            DiskCheck::new(dir.path(), u64::MAX / (1 << 21))
                .check()
                .await
                .status,
            HealthStatus::Unhealthy
        );
    }

    #[test]
    fn grading_thresholds() {
        assert_eq!(grade(79, 100, true), HealthStatus::Healthy);
        assert_eq!(grade(81, 100, true), HealthStatus::Degraded);
        assert_eq!(grade(101, 100, true), HealthStatus::Unhealthy);
        assert_eq!(grade(250, 100, false), HealthStatus::Healthy);
        assert_eq!(grade(150, 100, false), HealthStatus::Degraded);
        assert_eq!(grade(99, 100, false), HealthStatus::Unhealthy);
    }
}
