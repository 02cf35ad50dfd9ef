//! Alert channels (log, e-mail, webhook with Slack/Discord/Telegram shapes, SMS) and the
//! dispatcher that delivers a notice to each of them independently.
//!
//! Each channel is built from one `[[monitor.channels]]` table. Credentials never sit in
//! the table: keys ending in `_env` name the environment variable holding them. Unknown
//! keys are errors, so a typo is caught at startup.
//!
//! | kind | settings |
//! |---|---|
//! | every kind | `timeout_ms` (5000), `attempts` (3), `backoff_ms` (500, doubles per retry), `min_severity` |
//! | `log` | — |
//! | `email` | `host`, `port` (587/465/25), `security` = `starttls` (default, required) \| `tls` \| `none`, `username` + `password_env`, `ca_file` (PEM of a private CA), `from`, `to` (one or a list) |
//! | `webhook` | `url`, `bearer_token_env`; body: the [`Notice`] as JSON |
//! | `slack` | `url` (incoming webhook); body `{"text"}` |
//! | `discord` | `url`; body `{"content"}` (≤ 2000 characters) |
//! | `telegram` | `chat_id`, and `url` (the full `sendMessage` URL) or `bot_token_env` + `api_base` |
//! | `sms` | `url` (Twilio-compatible `Messages` endpoint), `account_sid`, `auth_token_env`, `from`, `to` |
//!
//! ```toml
//! [[monitor.channels]]
//! name = "ops-mail"
//! kind = "email"
//! min_severity = "warning"
//! host = "smtp.example.com"
//! username = "gal-friday"
//! password_env = "GF_SMTP_PASSWORD"
//! from = "Gal-Friday <gf@example.com>"
//! to = ["oncall@example.com"]
//! ```

mod email;
mod log;
mod settings;
mod sms;
mod webhook;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use gf_core::backoff::Backoff;
use gf_core::config::{ChannelConfig, ChannelKind};
use gf_core::{AlertStatus, Severity, SharedClock};

use crate::{Error, Metrics};

pub use email::{EmailChannel, SmtpSecurity};
pub use log::LogChannel;
pub use settings::EnvLookup;
pub use sms::SmsChannel;
pub use webhook::{WebhookChannel, WebhookShape};

/// What a channel delivers: one alert (possibly standing for a group of related ones),
/// firing or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// De-duplication key of the alert (e.g. `stale:XRP/USD`).
    pub key: String,
    /// The rule that raised it.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// One line.
    pub summary: String,
    /// Labels of the rule and the alert.
    pub labels: BTreeMap<String, String>,
    /// When the alert started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved, for resolved notices.
    pub ends_at: Option<DateTime<Utc>>,
    /// Other alerts of the same group folded into this notice.
    pub grouped: Vec<String>,
}

impl Notice {
    /// A short subject line: `[CRITICAL] FIRING halt: trading halted`.
    #[must_use]
    pub fn subject(&self) -> String {
        let sev = match self.severity {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        };
        let status = match self.status {
            AlertStatus::Firing => "FIRING",
            AlertStatus::Resolved => "RESOLVED",
        };
        format!("[{sev}] {status} {}: {}", self.rule, self.summary)
    }

    /// A plain-text body with every detail.
    #[must_use]
    pub fn body(&self) -> String {
        use std::fmt::Write as _;
        let mut s = self.subject();
        let _ = write!(
            s,
            "\nkey: {}\nsince: {}",
            self.key,
            self.starts_at.to_rfc3339()
        );
        if let Some(end) = self.ends_at {
            let _ = write!(s, "\nresolved: {}", end.to_rfc3339());
        }
        for (k, v) in &self.labels {
            let _ = write!(s, "\n{k}: {v}");
        }
        if !self.grouped.is_empty() {
            let _ = write!(s, "\nalso firing: {}", self.grouped.join(", "));
        }
        s
    }
}

/// A destination for alert notices.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug {
    /// The configured name.
    fn name(&self) -> &str;
    /// The channel kind (`log`, `email`, `webhook`, `slack`, …).
    fn kind(&self) -> &'static str;
    /// Delivers one notice, once (the dispatcher handles timeouts and retries).
    ///
    /// # Errors
    /// [`Error::Delivery`] saying whether a retry may help.
    async fn send(&self, notice: &Notice) -> Result<(), Error>;
}

/// How the dispatcher treats one channel's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Limit for one attempt.
    pub timeout: Duration,
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubles for each further one.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The waits between attempts: `backoff`, doubling, uncapped (the attempts bound
    /// them), no jitter (the workspace's one [`Backoff`]).
    #[must_use]
    pub fn schedule(&self) -> Backoff {
        Backoff::exponential(self.backoff, Duration::MAX)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// A channel with its severity floor and retry policy.
#[derive(Debug, Clone)]
pub struct ChannelEntry {
    /// The channel.
    pub channel: Arc<dyn Channel>,
    /// Lowest severity it receives.
    pub min_severity: Severity,
    /// Timeouts and retries.
    pub policy: RetryPolicy,
}

/// Builds one channel from its configuration table, reading `*_env` secrets through
/// `env`.
///
/// # Errors
/// [`Error::ChannelConfig`] naming the channel and the key that is missing or invalid.
pub fn build_channel(config: &ChannelConfig, env: &EnvLookup) -> Result<ChannelEntry, Error> {
    let mut s = settings::Settings::new(config, env);
    let min_severity = config.min_severity.unwrap_or(Severity::Info);
    let policy = RetryPolicy {
        timeout: Duration::from_millis(s.u64_or("timeout_ms", 5_000)?),
        attempts: u32::try_from(s.u64_or("attempts", 3)?.max(1)).unwrap_or(u32::MAX),
        backoff: Duration::from_millis(s.u64_or("backoff_ms", 500)?),
    };
    if policy.timeout.is_zero() {
        return Err(s.invalid("timeout_ms", "must be positive".into()));
    }
    let channel: Arc<dyn Channel> = match config.kind {
        ChannelKind::Log => Arc::new(LogChannel::new(&config.name)),
        ChannelKind::Email => Arc::new(EmailChannel::from_settings(&mut s, policy.timeout)?),
        ChannelKind::Webhook => Arc::new(WebhookChannel::from_settings(
            &mut s,
            WebhookShape::Generic,
            policy.timeout,
        )?),
        ChannelKind::Slack => Arc::new(WebhookChannel::from_settings(
            &mut s,
            WebhookShape::Slack,
            policy.timeout,
        )?),
        ChannelKind::Discord => Arc::new(WebhookChannel::from_settings(
            &mut s,
            WebhookShape::Discord,
            policy.timeout,
        )?),
        ChannelKind::Telegram => Arc::new(WebhookChannel::from_settings(
            &mut s,
            WebhookShape::Telegram,
            policy.timeout,
        )?),
        ChannelKind::Sms => Arc::new(SmsChannel::from_settings(&mut s, policy.timeout)?),
    };
    s.reject_unused()?;
    Ok(ChannelEntry {
        channel,
        min_severity,
        policy,
    })
}

/// Builds every configured channel; names must be unique.
///
/// # Errors
/// The first invalid channel, or [`Error::DuplicateChannel`].
pub fn build_channels(
    configs: &[ChannelConfig],
    env: &EnvLookup,
) -> Result<Vec<ChannelEntry>, Error> {
    let mut out: Vec<ChannelEntry> = Vec::with_capacity(configs.len());
    for c in configs {
        if out.iter().any(|e| e.channel.name() == c.name) {
            return Err(Error::DuplicateChannel(c.name.clone()));
        }
        out.push(build_channel(c, env)?);
    }
    Ok(out)
}

/// The outcome of delivering one notice to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Channel name.
    pub channel: String,
    /// Alert key.
    pub key: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Attempts made.
    pub attempts: u32,
    /// `None` when delivered, else the last error.
    pub error: Option<String>,
    /// When the delivery finished.
    pub finished_at: DateTime<Utc>,
}

impl DeliveryReport {
    /// Whether the notice arrived.
    #[must_use]
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

const RECENT: usize = 200;

/// Delivers each notice to each eligible channel in its own task, with a timeout per
/// attempt and retries with exponential backoff. A slow or failing channel never delays
/// another one. Outcomes are counted in [`Metrics`] and kept in a short history.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    channels: Arc<Vec<ChannelEntry>>,
    metrics: Metrics,
    clock: SharedClock,
    pending: Arc<Mutex<Vec<JoinHandle<DeliveryReport>>>>,
    recent: Arc<Mutex<VecDeque<DeliveryReport>>>,
}

impl Dispatcher {
    /// A dispatcher over `channels`.
    #[must_use]
    pub fn new(channels: Vec<ChannelEntry>, metrics: Metrics, clock: SharedClock) -> Self {
        Self {
            channels: Arc::new(channels),
            metrics,
            clock,
            pending: Arc::new(Mutex::new(Vec::new())),
            recent: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// The channels' names.
    #[must_use]
    pub fn channel_names(&self) -> Vec<String> {
        self.channels
            .iter()
            .map(|c| c.channel.name().to_owned())
            .collect()
    }

    /// Starts delivering `notice` to every channel whose severity floor it meets and,
    /// when `only` is not empty, whose name is listed. Returns the number of deliveries
    /// started. Must be called inside a tokio runtime; without one the deliveries are
    /// recorded as failed.
    pub fn dispatch(&self, notice: &Notice, only: &[String]) -> usize {
        let mut started = 0;
        for entry in self.channels.iter() {
            if notice.severity < entry.min_severity
                || (!only.is_empty() && !only.iter().any(|n| n == entry.channel.name()))
            {
                continue;
            }
            started += 1;
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                tracing::error!(
                    channel = entry.channel.name(),
                    "no tokio runtime: alert not delivered"
                );
                self.metrics.count_notification(entry.channel.name(), false);
                continue;
            };
            let task = rt.spawn(deliver(
                entry.clone(),
                notice.clone(),
                self.metrics.clone(),
                self.clock.clone(),
                self.recent.clone(),
            ));
            let mut pending = self.pending.lock();
            pending.retain(|h| !h.is_finished());
            pending.push(task);
        }
        started
    }

    /// Waits for every delivery started so far and returns their reports. Not
    /// cancellation-safe for the reports: if dropped midway, the deliveries keep running
    /// but the reports not yet collected are only in [`Self::recent`].
    pub async fn flush(&self) -> Vec<DeliveryReport> {
        let handles: Vec<_> = std::mem::take(&mut *self.pending.lock());
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            if let Ok(report) = h.await {
                out.push(report);
            }
        }
        out
    }

    /// The most recent delivery reports, oldest first.
    #[must_use]
    pub fn recent(&self) -> Vec<DeliveryReport> {
        self.recent.lock().iter().cloned().collect()
    }
}

async fn deliver(
    entry: ChannelEntry,
    notice: Notice,
    metrics: Metrics,
    clock: SharedClock,
    recent: Arc<Mutex<VecDeque<DeliveryReport>>>,
) -> DeliveryReport {
    let name = entry.channel.name().to_owned();
    let mut attempts = 0;
    let mut backoff = entry.policy.schedule();
    let result = loop {
        attempts += 1;
        let res =
            match tokio::time::timeout(entry.policy.timeout, entry.channel.send(&notice)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    channel: name.clone(),
                    millis: u64::try_from(entry.policy.timeout.as_millis()).unwrap_or(u64::MAX),
                }),
            };
        match res {
            Ok(()) => break Ok(()),
            Err(e) if e.is_retryable() && attempts < entry.policy.attempts => {
                tracing::warn!(channel = %name, attempt = attempts, cause = %e, "alert delivery failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => break Err(e),
        }
    };
    let error = match result {
        Ok(()) => {
            tracing::debug!(channel = %name, key = %notice.key, "alert delivered");
            None
        }
        Err(e) => {
            tracing::error!(channel = %name, key = %notice.key, attempts, cause = %e, "alert delivery failed");
            Some(e.to_string())
        }
    };
    metrics.count_notification(&name, error.is_none());
    let report = DeliveryReport {
        channel: name,
        key: notice.key.clone(),
        status: notice.status,
        attempts,
        error,
        finished_at: clock.now(),
    };
    let mut r = recent.lock();
    if r.len() == RECENT {
        r.pop_front();
    }
    r.push_back(report.clone());
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{Clock, ManualClock};

    pub(crate) fn notice(severity: Severity) -> Notice {
        Notice {
            key: "halt".into(),
            rule: "halt_triggered".into(),
            severity,
            status: AlertStatus::Firing,
            summary: "trading halted".into(),
            labels: BTreeMap::from([("source".into(), "cli".into())]),
            starts_at: ManualClock::default().now(),
            ends_at: None,
            grouped: vec![],
        }
    }

    fn cfg(kind: ChannelKind, toml_text: &str) -> ChannelConfig {
        let mut settings: BTreeMap<String, toml::Value> = toml::from_str(toml_text).unwrap();
        let min_severity = settings
            .remove("min_severity")
            .map(|v| v.try_into().unwrap());
        ChannelConfig {
            name: "ops".into(),
            kind,
            min_severity,
            settings,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn invalid_configs_name_channel_and_key() {
        struct Case {
            kind: ChannelKind,
            toml: &'static str,
            key: &'static str,
        }
        let cases = [
            Case {
                kind: ChannelKind::Webhook,
                toml: "",
                key: "url",
            },
            Case {
                kind: ChannelKind::Slack,
                toml: "url = \"ftp://x\"",
                key: "url",
            },
            Case {
                kind: ChannelKind::Discord,
                toml: "url = 5",
                key: "url",
            },
            Case {
                kind: ChannelKind::Telegram,
                toml: "url = \"http://127.0.0.1:1/x\"",
                key: "chat_id",
            },
            Case {
                kind: ChannelKind::Email,
                toml: "host = \"h\"\nfrom = \"not an address\"\nto = \"a@b.c\"",
                key: "from",
            },
            Case {
                kind: ChannelKind::Email,
                toml: "host = \"h\"\nfrom = \"a@b.c\"",
                key: "to",
            },
            Case {
                kind: ChannelKind::Email,
                toml: "host = \"h\"\nfrom = \"a@b.c\"\nto = [\"ok@x.y\", \"bad\"]",
                key: "to",
            },
            Case {
                kind: ChannelKind::Email,
                toml: "host = \"h\"\nfrom = \"a@b.c\"\nto = \"a@b.c\"\nsecurity = \"ssl3\"",
                key: "security",
            },
            Case {
                kind: ChannelKind::Email,
                toml: "host = \"h\"\nfrom = \"a@b.c\"\nto = \"a@b.c\"\nusername = \"u\"\npassword_env = \"GF_TEST_NOPE\"",
                key: "password_env",
            },
            Case {
                kind: ChannelKind::Sms,
                toml: "url = \"http://127.0.0.1:1/\"\naccount_sid = \"AC1\"\nfrom = \"+1\"\nto = \"+2\"",
                key: "auth_token_env",
            },
            Case {
                kind: ChannelKind::Webhook,
                toml: "url = \"http://x/\"\nurll = 1",
                key: "urll",
            },
            Case {
                kind: ChannelKind::Log,
                toml: "timeout_ms = 0",
                key: "timeout_ms",
            },
        ];
        for case in cases {
            let err = build_channel(&cfg(case.kind, case.toml), &no_env)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`ops`") && err.contains(case.key),
                "{} {:?} → {err}",
                case.kind,
                case.toml
            );
        }
        // A closed set of values names them all.
        let err = build_channel(
            &cfg(
                ChannelKind::Email,
                "host = \"h\"\nfrom = \"a@b.c\"\nto = \"a@b.c\"\nsecurity = \"ssl3\"",
            ),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown variant `ssl3`, expected one of `starttls`, `tls`, `none`"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let a = cfg(ChannelKind::Log, "");
        let err = build_channels(&[a.clone(), a], &no_env).unwrap_err();
        assert!(
            matches!(err, Error::DuplicateChannel(ref n) if n == "ops"),
            "{err}"
        );
    }

    #[test]
    fn subject_and_body_carry_the_details() {
        let n = notice(Severity::Critical);
        assert_eq!(
            n.subject(),
            "[CRITICAL] FIRING halt_triggered: trading halted"
        );
        assert!(n.body().contains("source: cli"));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_backoff_then_reports_failure_without_blocking_others() {
        let mut failing = MockChannel::new();
        failing.expect_name().return_const("bad".to_owned());
        failing.expect_send().times(3).returning(|_| {
            Err(Error::Delivery {
                channel: "bad".into(),
                reason: "503".into(),
                retryable: true,
            })
        });
        let mut good = MockChannel::new();
        good.expect_name().return_const("good".to_owned());
        good.expect_send().times(1).returning(|_| Ok(()));
        let policy = RetryPolicy {
            timeout: Duration::from_secs(1),
            attempts: 3,
            backoff: Duration::from_millis(100),
        };
        let metrics = Metrics::new();
        let clock: SharedClock = Arc::new(ManualClock::default());
        let d = Dispatcher::new(
            vec![
                ChannelEntry {
                    channel: Arc::new(failing),
                    min_severity: Severity::Info,
                    policy,
                },
                ChannelEntry {
                    channel: Arc::new(good),
                    min_severity: Severity::Info,
                    policy,
                },
            ],
            metrics.clone(),
            clock,
        );
        let started = tokio::time::Instant::now();
        assert_eq!(d.dispatch(&notice(Severity::Warning), &[]), 2);
        let mut reports = d.flush().await;
        reports.sort_by(|a, b| a.channel.cmp(&b.channel));
        assert_eq!(reports[0].channel, "bad");
        assert_eq!(reports[0].attempts, 3);
        assert!(reports[0].error.as_deref().unwrap().contains("503"));
        assert!(reports[1].delivered());
        // 100 ms + 200 ms of backoff, on the paused clock.
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(metrics.notifications("bad", false), 1);
        assert_eq!(metrics.notifications("good", true), 1);
        assert_eq!(d.recent().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_channel_times_out_and_non_retryable_errors_stop_at_once() {
        #[derive(Debug)]
        struct Hang;
        #[async_trait]
        impl Channel for Hang {
            fn name(&self) -> &str {
                "hang"
            }
            fn kind(&self) -> &'static str {
                "test"
            }
            async fn send(&self, _: &Notice) -> Result<(), Error> {
                std::future::pending().await
            }
        }
        let mut refused = MockChannel::new();
        refused.expect_name().return_const("refused".to_owned());
        refused.expect_send().times(1).returning(|_| {
            Err(Error::Delivery {
                channel: "refused".into(),
                reason: "400".into(),
                retryable: false,
            })
        });
        let policy = RetryPolicy {
            timeout: Duration::from_millis(50),
            attempts: 2,
            backoff: Duration::from_millis(10),
        };
        let d = Dispatcher::new(
            vec![
                ChannelEntry {
                    channel: Arc::new(Hang),
                    min_severity: Severity::Info,
                    policy,
                },
                ChannelEntry {
                    channel: Arc::new(refused),
                    min_severity: Severity::Info,
                    policy,
                },
            ],
            Metrics::new(),
            Arc::new(ManualClock::default()),
        );
        d.dispatch(&notice(Severity::Info), &[]);
        let mut reports = d.flush().await;
        reports.sort_by(|a, b| a.channel.cmp(&b.channel));
        assert_eq!(reports[0].attempts, 2);
        assert!(reports[0].error.as_deref().unwrap().contains("timed out"));
        assert_eq!(reports[1].attempts, 1);
    }

    #[test]
    fn retry_waits_double_from_the_configured_backoff() {
        let mut waits = RetryPolicy::default().schedule();
        let ms: Vec<u128> = (0..5).map(|_| waits.next_delay().as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 8000]);
    }

    #[tokio::test]
    async fn severity_floor_and_channel_selection() {
        let mut crit = MockChannel::new();
        crit.expect_name().return_const("pager".to_owned());
        crit.expect_send().times(1).returning(|_| Ok(()));
        let mut all = MockChannel::new();
        all.expect_name().return_const("log".to_owned());
        all.expect_send().times(1).returning(|_| Ok(()));
        let p = RetryPolicy::default();
        let d = Dispatcher::new(
            vec![
                ChannelEntry {
                    channel: Arc::new(crit),
                    min_severity: Severity::Critical,
                    policy: p,
                },
                ChannelEntry {
                    channel: Arc::new(all),
                    min_severity: Severity::Info,
                    policy: p,
                },
            ],
            Metrics::new(),
            Arc::new(ManualClock::default()),
        );
        assert_eq!(d.dispatch(&notice(Severity::Warning), &[]), 1);
        assert_eq!(
            d.dispatch(&notice(Severity::Critical), &["pager".to_owned()]),
            1
        );
        assert_eq!(d.flush().await.len(), 2);
    }
}
