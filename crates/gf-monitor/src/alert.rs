//! The embedded alert manager: rules evaluated on bus events, with Alertmanager's good
//! ideas — de-duplication by key, repeat interval (cooldown), grouping, inhibition,
//! silences with an end time, and one "resolved" notice when the condition clears.
//!
//! All time comes from the [`Clock`](gf_core::Clock), so cooldowns and silences are
//! testable with a [`ManualClock`](gf_core::ManualClock).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use gf_core::config::MonitorConfig;
use gf_core::{AlertStatus, Event, EventBus, HaltState, Payload, Severity, SharedClock, Source};
use gf_risk::PortfolioView;

use crate::channel::{Dispatcher, Notice};
use crate::{Error, Metrics};

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RuleKind {
    /// Total drawdown above `threshold_pct` percent (from `ConditionValue` events of
    /// `max_total_drawdown`, or from [`AlertManager::observe_portfolio`]).
    Drawdown {
        /// Percent.
        threshold_pct: Decimal,
    },
    /// More than `per_minute` API errors in the last 60 s.
    ApiErrorRate {
        /// Errors per minute.
        per_minute: u32,
    },
    /// Mean latency of `stage` over the last `window_secs` above `threshold_ms`.
    AverageLatency {
        /// Latency stage.
        stage: String,
        /// Milliseconds.
        threshold_ms: u64,
        /// Averaging window, seconds.
        window_secs: u64,
    },
    /// A halt was triggered; resolves when trading resumes.
    HaltTriggered,
    /// A pair's market data went stale; one alert per pair.
    DataStale,
    /// A pair's book failed its checksum; resolves with the next verified snapshot.
    ChecksumMismatch,
    /// A credential rotation failed; resolves with the next successful rotation.
    CredentialRotationFailed,
}

/// An alert rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Rule name (also the group key).
    pub name: String,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Labels added to every alert of the rule.
    pub labels: BTreeMap<String, String>,
    /// Channel names to notify; empty means every channel.
    pub channels: Vec<String>,
    /// Minimum time between two notices for the same alert key (cooldown).
    pub repeat_interval_secs: u64,
    /// Alerts of this rule that start within this many seconds of a notice of the same
    /// rule wait and are announced together in one notice when the interval has passed
    /// (Alertmanager's `group_interval`).
    pub group_interval_secs: u64,
    /// What it watches.
    pub kind: RuleKind,
}

impl AlertRule {
    fn new(name: &str, severity: Severity, kind: RuleKind) -> Self {
        Self {
            name: name.to_owned(),
            severity,
            labels: BTreeMap::new(),
            channels: Vec::new(),
            repeat_interval_secs: 3_600,
            group_interval_secs: group_interval_default(),
            kind,
        }
    }
}

/// A source alert that, while firing, suppresses notices of the target rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inhibition {
    /// The rule whose alerts inhibit.
    pub source_rule: String,
    /// Rules whose notices are suppressed meanwhile.
    pub target_rules: Vec<String>,
}

/// The default rules: drawdown over the alert threshold (critical), API errors per
/// minute (warning), mean order-ack latency (warning), halt triggered (critical), stale
/// market data (warning), checksum mismatches (warning), credential rotation failed
/// (critical). A halt inhibits the drawdown and API-error alerts that usually cause it.
#[must_use]
pub fn default_rules(config: &MonitorConfig) -> (Vec<AlertRule>, Vec<Inhibition>) {
    let mut rules = vec![
        AlertRule::new(
            "drawdown",
            Severity::Critical,
            RuleKind::Drawdown {
                threshold_pct: config.alert_drawdown_pct,
            },
        ),
        AlertRule::new(
            "api_errors",
            Severity::Warning,
            RuleKind::ApiErrorRate {
                per_minute: config.alert_api_errors_per_min,
            },
        ),
        AlertRule::new(
            "latency",
            Severity::Warning,
            RuleKind::AverageLatency {
                stage: "order_ack".into(),
                threshold_ms: config.alert_latency_ms,
                window_secs: 60,
            },
        ),
        AlertRule::new("halt", Severity::Critical, RuleKind::HaltTriggered),
        AlertRule::new("data_stale", Severity::Warning, RuleKind::DataStale),
        AlertRule::new(
            "checksum_mismatch",
            Severity::Warning,
            RuleKind::ChecksumMismatch,
        ),
        AlertRule::new(
            "credential_rotation_failed",
            Severity::Critical,
            RuleKind::CredentialRotationFailed,
        ),
    ];
    for r in &mut rules {
        if r.severity == Severity::Critical {
            r.repeat_interval_secs = 900;
        }
    }
    let inhibitions = vec![Inhibition {
        source_rule: "halt".into(),
        target_rules: vec!["drawdown".into(), "api_errors".into()],
    }];
    (rules, inhibitions)
}

const fn group_interval_default() -> u64 {
    30
}

/// A silence: matching alerts are not sent to channels until `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Id for expiring it early.
    pub id: u64,
    /// Matches a rule name exactly, or an alert key exactly or by prefix (`stale:` …).
    pub matcher: String,
    /// When it stops applying.
    pub ends_at: DateTime<Utc>,
    /// Who set it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    fn matches(&self, rule: &str, key: &str) -> bool {
        self.matcher == rule || key.starts_with(&self.matcher)
    }
}

/// An alert that is firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// De-duplication key.
    pub key: String,
    /// Rule name.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// Latest summary.
    pub summary: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When a firing notice last went to the channels (directly or in a group).
    pub last_notified: Option<DateTime<Utc>>,
    /// Why the last evaluation sent nothing, if it did not.
    pub suppressed: Option<Suppression>,
    /// Started within the group interval of a notice of its rule: it will be announced
    /// in the group's next notice.
    pub awaiting_group: bool,
}

/// Why a notice was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    /// Within the repeat interval of the previous notice.
    Cooldown,
    /// Waits for the next notice of its group (sent at most once per group interval).
    Grouped,
    /// An inhibiting alert is firing.
    Inhibited,
    /// A silence matches.
    Silenced,
}

/// What one evaluation decided for one alert key (returned for tests and audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A firing notice went to the channels.
    Notified(Notice),
    /// A resolved notice went to the channels.
    Resolved(Notice),
    /// The alert is firing but nothing was sent.
    Suppressed {
        /// Alert key.
        key: String,
        /// Why.
        why: Suppression,
    },
    /// It cleared without a notice (it had never been notified, or is silenced).
    ClearedQuietly {
        /// Alert key.
        key: String,
    },
}

enum Signal {
    Fire {
        rule: usize,
        key: String,
        summary: String,
        labels: BTreeMap<String, String>,
    },
    Resolve {
        key: String,
    },
}

#[derive(Default)]
struct State {
    active: BTreeMap<String, ActiveAlert>,
    silences: Vec<Silence>,
    next_silence: u64,
    api_errors: VecDeque<DateTime<Utc>>,
    latency: BTreeMap<usize, VecDeque<(DateTime<Utc>, u64)>>,
    halted: bool,
    /// Rule name → when its group last had a firing notice, and the keys it announced.
    group_notice: BTreeMap<String, (DateTime<Utc>, Vec<String>)>,
}

/// The alert manager. Evaluate with [`Self::on_event`] (and [`Self::tick`] once a
/// second for rules that clear with time); notices go to the [`Dispatcher`] and alerts
/// are published on the bus as `Payload::Alert` with `Source::Monitor`.
pub struct AlertManager {
    rules: Vec<AlertRule>,
    inhibitions: Vec<Inhibition>,
    state: Mutex<State>,
    dispatcher: Dispatcher,
    bus: Option<EventBus>,
    clock: SharedClock,
    metrics: Metrics,
}

impl std::fmt::Debug for AlertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertManager")
            .field("rules", &self.rules.len())
            .field("active", &self.state.lock().active.len())
            .finish_non_exhaustive()
    }
}

impl AlertManager {
    /// A manager with the given rules.
    ///
    /// # Errors
    /// [`Error::Rule`] when a rule names an unknown channel, two rules share a name, or
    /// an inhibition names an unknown rule.
    pub fn new(
        rules: Vec<AlertRule>,
        inhibitions: Vec<Inhibition>,
        dispatcher: Dispatcher,
        bus: Option<EventBus>,
        clock: SharedClock,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        let names = dispatcher.channel_names();
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.name == r.name) {
                return Err(rule_err(&r.name, "defined twice"));
            }
            if let Some(c) = r.channels.iter().find(|c| !names.contains(c)) {
                return Err(rule_err(&r.name, &format!("unknown channel `{c}`")));
            }
        }
        for inh in &inhibitions {
            for name in std::iter::once(&inh.source_rule).chain(&inh.target_rules) {
                if !rules.iter().any(|r| &r.name == name) {
                    return Err(rule_err(name, "named by an inhibition but not defined"));
                }
            }
        }
        Ok(Self {
            rules,
            inhibitions,
            state: Mutex::new(State::default()),
            dispatcher,
            bus,
            clock,
            metrics,
        })
    }

    /// The rules.
    #[must_use]
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// The dispatcher (for flushing deliveries and reading delivery reports).
    #[must_use]
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Alerts currently firing.
    #[must_use]
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.state.lock().active.values().cloned().collect()
    }

    /// Silences in force (expired ones are dropped).
    #[must_use]
    pub fn silences(&self) -> Vec<Silence> {
        let now = self.clock.now();
        let mut st = self.state.lock();
        st.silences.retain(|s| s.ends_at > now);
        st.silences.clone()
    }

    /// Silences alerts whose rule is `matcher` or whose key starts with it, until
    /// `ends_at`. Returns the silence id.
    pub fn silence(
        &self,
        matcher: &str,
        ends_at: DateTime<Utc>,
        created_by: &str,
        comment: &str,
    ) -> u64 {
        let mut st = self.state.lock();
        st.next_silence += 1;
        let id = st.next_silence;
        st.silences.push(Silence {
            id,
            matcher: matcher.to_owned(),
            ends_at,
            created_by: created_by.to_owned(),
            comment: comment.to_owned(),
        });
        id
    }

    /// Ends a silence early; `false` if no such silence.
    pub fn expire_silence(&self, id: u64) -> bool {
        let mut st = self.state.lock();
        let before = st.silences.len();
        st.silences.retain(|s| s.id != id);
        st.silences.len() != before
    }

    /// Evaluates the rules against one event. Returns what was decided per alert key.
    pub fn on_event(&self, event: &Event) -> Vec<Decision> {
        let now = self.clock.now();
        let signals = {
            let mut st = self.state.lock();
            self.signals_for(&mut st, event, now)
        };
        self.apply(signals, now)
    }

    /// Re-evaluates time-windowed rules (API error rate, mean latency) so that they
    /// resolve when the window empties. Call about once a second.
    pub fn tick(&self) -> Vec<Decision> {
        let now = self.clock.now();
        let signals = {
            let mut st = self.state.lock();
            let mut out = Vec::new();
            for idx in 0..self.rules.len() {
                self.window_signal(&mut st, idx, now, &mut out);
            }
            out
        };
        self.apply(signals, now)
    }

    /// Evaluates the drawdown rules against the portfolio.
    pub fn observe_portfolio(&self, view: &dyn PortfolioView) -> Vec<Decision> {
        let now = self.clock.now();
        let dd = view.total_drawdown_pct();
        let signals = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(idx, r)| match &r.kind {
                RuleKind::Drawdown { threshold_pct } => {
                    Some(drawdown_signal(idx, &r.name, dd, *threshold_pct))
                }
                _ => None,
            })
            .collect();
        self.apply(signals, now)
    }

    fn signals_for(&self, st: &mut State, event: &Event, now: DateTime<Utc>) -> Vec<Signal> {
        let mut out = Vec::new();
        match &event.payload {
            Payload::ApiError { .. } => st.api_errors.push_back(now),
            Payload::Latency { stage, micros } => {
                for (idx, r) in self.rules.iter().enumerate() {
                    if let RuleKind::AverageLatency { stage: s, .. } = &r.kind
                        && s == stage
                    {
                        st.latency.entry(idx).or_default().push_back((now, *micros));
                    }
                }
            }
            _ => {}
        }
        for (idx, rule) in self.rules.iter().enumerate() {
            match (&rule.kind, &event.payload) {
                (
                    RuleKind::Drawdown { threshold_pct },
                    Payload::ConditionValue { id, value, .. },
                ) if id == "max_total_drawdown" => {
                    out.push(drawdown_signal(idx, &rule.name, *value, *threshold_pct));
                }
                (RuleKind::ApiErrorRate { .. }, Payload::ApiError { .. })
                | (RuleKind::AverageLatency { .. }, Payload::Latency { .. }) => {
                    self.window_signal(st, idx, now, &mut out);
                }
                (RuleKind::HaltTriggered, Payload::HaltTriggered { source, reason }) => {
                    st.halted = true;
                    out.push(fire(
                        idx,
                        "halt",
                        format!("trading halted by {source}: {reason}"),
                        [("source", source.to_string())],
                    ));
                }
                (
                    RuleKind::HaltTriggered,
                    Payload::HaltStateChanged {
                        to, source, reason, ..
                    },
                ) => match to {
                    HaltState::Running => {
                        st.halted = false;
                        out.push(Signal::Resolve { key: "halt".into() });
                    }
                    HaltState::Halting | HaltState::Halted if !st.halted => {
                        st.halted = true;
                        out.push(fire(
                            idx,
                            "halt",
                            format!("trading halted by {source}: {reason}"),
                            [("source", source.to_string())],
                        ));
                    }
                    _ => {}
                },
                (RuleKind::HaltTriggered, Payload::Resumed { .. }) => {
                    st.halted = false;
                    out.push(Signal::Resolve { key: "halt".into() });
                }
                (
                    RuleKind::DataStale,
                    Payload::Staleness {
                        pair,
                        stale,
                        age_ms,
                        threshold_ms,
                    },
                ) => {
                    let key = format!("data_stale:{pair}");
                    if *stale {
                        out.push(fire(
                            idx,
                            &key,
                            format!("market data for {pair} is stale: {} s without a message (limit {} s)", age_ms / 1000, threshold_ms / 1000),
                            [("pair", pair.to_string())],
                        ));
                    } else {
                        out.push(Signal::Resolve { key });
                    }
                }
                (RuleKind::ChecksumMismatch, Payload::BookInvalid { pair, reason }) => {
                    out.push(fire(
                        idx,
                        &format!("checksum_mismatch:{pair}"),
                        format!("order book for {pair} failed verification: {reason}"),
                        [("pair", pair.to_string())],
                    ));
                }
                (RuleKind::ChecksumMismatch, Payload::BookSnapshot(snap)) => {
                    out.push(Signal::Resolve {
                        key: format!("checksum_mismatch:{}", snap.pair),
                    });
                }
                (
                    RuleKind::CredentialRotationFailed,
                    Payload::SecretAudit {
                        set,
                        action,
                        outcome,
                        ..
                    },
                ) if action.starts_with("rotat") => {
                    let key = format!("credential_rotation_failed:{set}");
                    if outcome == "ok" {
                        out.push(Signal::Resolve { key });
                    } else {
                        out.push(fire(
                            idx,
                            &key,
                            format!("credential rotation for {set} failed: {outcome}"),
                            [("set", set.clone())],
                        ));
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn window_signal(&self, st: &mut State, idx: usize, now: DateTime<Utc>, out: &mut Vec<Signal>) {
        let rule = &self.rules[idx];
        match &rule.kind {
            RuleKind::ApiErrorRate { per_minute } => {
                let since = now - Duration::seconds(60);
                while st.api_errors.front().is_some_and(|t| *t <= since) {
                    st.api_errors.pop_front();
                }
                let n = st.api_errors.len();
                if n > *per_minute as usize {
                    out.push(fire(
                        idx,
                        &rule.name,
                        format!("{n} exchange API errors in the last minute (limit {per_minute})"),
                        [],
                    ));
                } else if st.active.contains_key(&rule.name) {
                    out.push(Signal::Resolve {
                        key: rule.name.clone(),
                    });
                }
            }
            RuleKind::AverageLatency {
                stage,
                threshold_ms,
                window_secs,
            } => {
                let since =
                    now - Duration::seconds(i64::try_from(*window_secs).unwrap_or(i64::MAX));
                let q = st.latency.entry(idx).or_default();
                while q.front().is_some_and(|(t, _)| *t <= since) {
                    q.pop_front();
                }
                if q.is_empty() {
                    if st.active.contains_key(&rule.name) {
                        out.push(Signal::Resolve {
                            key: rule.name.clone(),
                        });
                    }
                    return;
                }
                let mean_us = q.iter().map(|(_, v)| u128::from(*v)).sum::<u128>() / q.len() as u128;
                if mean_us > u128::from(*threshold_ms) * 1000 {
                    out.push(fire(
                        idx,
                        &rule.name,
                        format!("mean {stage} latency {} ms over {window_secs} s (limit {threshold_ms} ms)", mean_us / 1000),
                        [("stage", stage.clone())],
                    ));
                } else if st.active.contains_key(&rule.name) {
                    out.push(Signal::Resolve {
                        key: rule.name.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    fn apply(&self, signals: Vec<Signal>, now: DateTime<Utc>) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let mut publish = Vec::new();
        {
            let mut st = self.state.lock();
            st.silences.retain(|s| s.ends_at > now);
            for sig in signals {
                match sig {
                    Signal::Fire {
                        rule,
                        key,
                        summary,
                        labels,
                    } => {
                        let d =
                            self.fire_one(&mut st, rule, key, summary, labels, now, &mut publish);
                        decisions.push(d);
                    }
                    Signal::Resolve { key } => {
                        if let Some(d) = self.resolve_one(&mut st, &key, now, &mut publish) {
                            decisions.push(d);
                        }
                    }
                }
            }
            self.flush_groups(&mut st, now, &mut decisions);
        }
        for (key, severity, status, summary) in publish {
            self.metrics
                .count_alert(severity, status == AlertStatus::Resolved);
            if let Some(bus) = &self.bus {
                bus.publish(Event::new(
                    now,
                    Source::Monitor,
                    Payload::Alert {
                        key,
                        severity,
                        status,
                        summary,
                    },
                ));
            }
        }
        for d in &decisions {
            match d {
                Decision::Notified(n) | Decision::Resolved(n) => {
                    let rule = self.rules.iter().find(|r| r.name == n.rule);
                    let only = rule.map(|r| r.channels.as_slice()).unwrap_or_default();
                    self.dispatcher.dispatch(n, only);
                }
                Decision::Suppressed { .. } | Decision::ClearedQuietly { .. } => {}
            }
        }
        decisions
    }

    fn suppression(&self, st: &State, rule: &AlertRule, key: &str) -> Option<Suppression> {
        if st.silences.iter().any(|s| s.matches(&rule.name, key)) {
            return Some(Suppression::Silenced);
        }
        let inhibited = self.inhibitions.iter().any(|inh| {
            inh.target_rules.contains(&rule.name)
                && st.active.values().any(|a| a.rule == inh.source_rule)
        });
        inhibited.then_some(Suppression::Inhibited)
    }

    #[allow(clippy::too_many_arguments)]
    fn fire_one(
        &self,
        st: &mut State,
        idx: usize,
        key: String,
        summary: String,
        mut labels: BTreeMap<String, String>,
        now: DateTime<Utc>,
        publish: &mut Vec<(String, Severity, AlertStatus, String)>,
    ) -> Decision {
        let rule = &self.rules[idx];
        for (k, v) in &rule.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let suppressed = self.suppression(st, rule, &key);
        let is_new = !st.active.contains_key(&key);
        if is_new {
            publish.push((
                key.clone(),
                rule.severity,
                AlertStatus::Firing,
                summary.clone(),
            ));
        }
        // Grouping: within the group interval of a notice of the same rule, a new alert
        // waits for the group's next notice instead of sending its own.
        // (An alert that resolved and fires again is not part of a burst of others.)
        let group_cover = is_new
            && st.group_notice.get(&rule.name).is_some_and(|(t, keys)| {
                now - *t < secs(rule.group_interval_secs) && !keys.contains(&key)
            });
        let alert = st.active.entry(key.clone()).or_insert_with(|| ActiveAlert {
            key: key.clone(),
            rule: rule.name.clone(),
            severity: rule.severity,
            summary: summary.clone(),
            labels: labels.clone(),
            started_at: now,
            last_notified: None,
            suppressed: None,
            awaiting_group: group_cover,
        });
        alert.summary = summary;
        alert.labels = labels;
        let why = suppressed.or_else(|| {
            if alert.awaiting_group {
                Some(Suppression::Grouped)
            } else if alert
                .last_notified
                .is_some_and(|t| now - t < secs(rule.repeat_interval_secs))
            {
                Some(Suppression::Cooldown)
            } else {
                None
            }
        });
        alert.suppressed = why;
        if let Some(why) = why {
            return Decision::Suppressed { key, why };
        }
        alert.last_notified = Some(now);
        let alert = alert.clone();
        st.group_notice
            .insert(rule.name.clone(), (now, vec![key.clone()]));
        let grouped = st
            .active
            .values()
            .filter(|a| a.rule == rule.name && a.key != key && !a.awaiting_group)
            .map(|a| a.key.clone())
            .collect();
        Decision::Notified(Notice {
            key,
            rule: rule.name.clone(),
            severity: rule.severity,
            status: AlertStatus::Firing,
            summary: alert.summary,
            labels: alert.labels,
            starts_at: alert.started_at,
            ends_at: None,
            grouped,
        })
    }

    /// Sends one notice per group whose waiting alerts are due: the notice's key is the
    /// rule name and `grouped` lists the alerts it announces.
    fn flush_groups(&self, st: &mut State, now: DateTime<Utc>, out: &mut Vec<Decision>) {
        for rule in &self.rules {
            let due = st
                .group_notice
                .get(&rule.name)
                .is_none_or(|(t, _)| now - *t >= secs(rule.group_interval_secs));
            if !due {
                continue;
            }
            let waiting: Vec<String> = st
                .active
                .values()
                .filter(|a| a.rule == rule.name && a.awaiting_group)
                .filter(|a| self.suppression(st, rule, &a.key).is_none())
                .map(|a| a.key.clone())
                .collect();
            if waiting.is_empty() {
                continue;
            }
            let mut starts_at = now;
            let mut lines = Vec::with_capacity(waiting.len());
            for key in &waiting {
                if let Some(a) = st.active.get_mut(key) {
                    a.awaiting_group = false;
                    a.suppressed = None;
                    a.last_notified = Some(now);
                    starts_at = starts_at.min(a.started_at);
                    lines.push(a.summary.clone());
                }
            }
            st.group_notice
                .insert(rule.name.clone(), (now, waiting.clone()));
            out.push(Decision::Notified(Notice {
                key: rule.name.clone(),
                rule: rule.name.clone(),
                severity: rule.severity,
                status: AlertStatus::Firing,
                summary: format!(
                    "{} more {} alerts: {}",
                    waiting.len(),
                    rule.name,
                    lines.join("; ")
                ),
                labels: rule.labels.clone(),
                starts_at,
                ends_at: None,
                grouped: waiting,
            }));
        }
    }

    fn resolve_one(
        &self,
        st: &mut State,
        key: &str,
        now: DateTime<Utc>,
        publish: &mut Vec<(String, Severity, AlertStatus, String)>,
    ) -> Option<Decision> {
        let alert = st.active.remove(key)?;
        let summary = format!("resolved: {}", alert.summary);
        publish.push((
            key.to_owned(),
            alert.severity,
            AlertStatus::Resolved,
            summary.clone(),
        ));
        let silenced = st.silences.iter().any(|s| s.matches(&alert.rule, key));
        if alert.last_notified.is_none() || silenced {
            return Some(Decision::ClearedQuietly {
                key: key.to_owned(),
            });
        }
        Some(Decision::Resolved(Notice {
            key: key.to_owned(),
            rule: alert.rule,
            severity: alert.severity,
            status: AlertStatus::Resolved,
            summary,
            labels: alert.labels,
            starts_at: alert.started_at,
            ends_at: Some(now),
            grouped: Vec::new(),
        }))
    }
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

fn rule_err(rule: &str, reason: &str) -> Error {
    Error::Rule {
        rule: rule.to_owned(),
        reason: reason.to_owned(),
    }
}

fn fire<const N: usize>(
    rule: usize,
    key: &str,
    summary: String,
    labels: [(&str, String); N],
) -> Signal {
    Signal::Fire {
        rule,
        key: key.to_owned(),
        summary,
        labels: labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

fn drawdown_signal(idx: usize, key: &str, value: Decimal, threshold: Decimal) -> Signal {
    if value > threshold {
        fire(
            idx,
            key,
            format!("drawdown {}% exceeds {}%", value.round_dp(2), threshold),
            [],
        )
    } else {
        Signal::Resolve {
            key: key.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use gf_core::{Clock, HaltSource, KindSet, ManualClock, Pair};
    use rust_decimal_macros::dec;

    use super::*;
    use crate::channel::{Channel, ChannelEntry, RetryPolicy};

    #[derive(Debug, Default, Clone)]
    struct Recorder {
        got: Arc<Mutex<Vec<Notice>>>,
    }

    #[async_trait]
    impl Channel for Recorder {
        fn name(&self) -> &str {
            "rec"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn send(&self, notice: &Notice) -> Result<(), Error> {
            self.got.lock().push(notice.clone());
            Ok(())
        }
    }

    struct Fixture {
        clock: ManualClock,
        bus: EventBus,
        rec: Recorder,
        am: AlertManager,
    }

    fn fixture() -> Fixture {
        let clock = ManualClock::default();
        let shared: SharedClock = Arc::new(clock.clone());
        let rec = Recorder::default();
        let metrics = Metrics::new();
        let dispatcher = Dispatcher::new(
            vec![ChannelEntry {
                channel: Arc::new(rec.clone()),
                min_severity: Severity::Info,
                policy: RetryPolicy::default(),
            }],
            metrics.clone(),
            shared.clone(),
        );
        let bus = EventBus::new(256);
        let (rules, inh) = default_rules(&MonitorConfig::default());
        let am =
            AlertManager::new(rules, inh, dispatcher, Some(bus.clone()), shared, metrics).unwrap();
        Fixture {
            clock,
            bus,
            rec,
            am,
        }
    }

    impl Fixture {
        fn ev(&self, payload: Payload) -> Vec<Decision> {
            self.am
                .on_event(&Event::new(self.clock.now(), Source::Test, payload))
        }
        fn advance_secs(&self, s: i64) {
            self.clock.advance(Duration::seconds(s));
        }
        async fn delivered(&self) -> Vec<Notice> {
            self.am.dispatcher().flush().await;
            self.rec.got.lock().clone()
        }
    }

    fn stale(pair: &str, stale: bool) -> Payload {
        Payload::Staleness {
            pair: Pair::new(pair).unwrap(),
            stale,
            age_ms: 61_000,
            threshold_ms: 60_000,
        }
    }

    fn kinds(ds: &[Decision]) -> Vec<String> {
        ds.iter()
            .map(|d| match d {
                Decision::Notified(n) => format!("notified {}", n.key),
                Decision::Resolved(n) => format!("resolved {}", n.key),
                Decision::Suppressed { key, why } => format!("suppressed {key} {why:?}"),
                Decision::ClearedQuietly { key } => format!("cleared {key}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn cooldown_suppresses_a_repeat_within_the_window_and_allows_it_after() {
        let f = fixture();
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", true))),
            ["notified data_stale:XRP/USD"]
        );
        f.advance_secs(600);
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", true))),
            ["suppressed data_stale:XRP/USD Cooldown"]
        );
        f.advance_secs(2_999);
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", true))),
            ["suppressed data_stale:XRP/USD Cooldown"]
        );
        f.advance_secs(1);
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", true))),
            ["notified data_stale:XRP/USD"]
        );
        let got = f.delivered().await;
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|n| n.status == AlertStatus::Firing));
        assert_eq!(
            got[1].starts_at, got[0].starts_at,
            "a repeat keeps the start time"
        );
    }

    #[tokio::test]
    async fn the_resolved_notice_is_sent_once_and_published_on_the_bus() {
        let f = fixture();
        let mut sub = f.bus.subscribe(KindSet::of(&[gf_core::EventKind::Alert]));
        f.ev(stale("XRP/USD", true));
        f.advance_secs(5);
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", false))),
            ["resolved data_stale:XRP/USD"]
        );
        assert!(f.ev(stale("XRP/USD", false)).is_empty());
        assert!(f.ev(stale("XRP/USD", false)).is_empty());
        let got = f.delivered().await;
        assert_eq!(
            got.iter()
                .filter(|n| n.status == AlertStatus::Resolved)
                .count(),
            1
        );
        assert_eq!(got[1].ends_at, Some(f.clock.now()));
        let first = sub.try_recv().unwrap();
        assert_eq!(first.source, Source::Monitor);
        assert!(
            matches!(&first.payload, Payload::Alert { status: AlertStatus::Firing, key, .. } if key == "data_stale:XRP/USD")
        );
        assert!(matches!(
            &sub.try_recv().unwrap().payload,
            Payload::Alert {
                status: AlertStatus::Resolved,
                ..
            }
        ));
        assert!(sub.try_recv().is_err(), "no further alert events");
        assert!(f.am.active().is_empty());
    }

    #[tokio::test]
    async fn a_burst_for_one_cause_is_one_notice() {
        let f = fixture();
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", true))),
            ["notified data_stale:XRP/USD"]
        );
        f.advance_secs(2);
        assert_eq!(
            kinds(&f.ev(stale("DOGE/USD", true))),
            ["suppressed data_stale:DOGE/USD Grouped"]
        );
        f.advance_secs(3);
        assert_eq!(
            kinds(&f.ev(stale("ETH/USD", true))),
            ["suppressed data_stale:ETH/USD Grouped"]
        );
        assert_eq!(
            kinds(&f.ev(stale("ETH/USD", true))),
            ["suppressed data_stale:ETH/USD Grouped"]
        );
        f.advance_secs(24);
        assert!(
            f.am.tick().is_empty(),
            "the group interval (30 s) has not passed"
        );
        f.advance_secs(1);
        // One notice announces the rest of the burst.
        let d = f.am.tick();
        let [Decision::Notified(n)] = &d[..] else {
            panic!("{d:?}")
        };
        assert_eq!(n.key, "data_stale");
        assert_eq!(n.grouped, ["data_stale:DOGE/USD", "data_stale:ETH/USD"]);
        assert!(
            n.summary
                .starts_with("2 more data_stale alerts: market data for DOGE/USD"),
            "{}",
            n.summary
        );
        assert_eq!(f.delivered().await.len(), 2, "three alerts, two notices");
        assert!(f.am.tick().is_empty(), "announced once");
        // Announced members get their own resolved notice; a member that resolves while
        // still waiting clears quietly.
        assert_eq!(
            kinds(&f.ev(stale("DOGE/USD", false))),
            ["resolved data_stale:DOGE/USD"]
        );
        f.ev(stale("ADA/USD", true));
        assert_eq!(
            kinds(&f.ev(stale("ADA/USD", false))),
            ["cleared data_stale:ADA/USD"]
        );
        // A new key outside the group interval gets its own notice, naming the others.
        f.advance_secs(60);
        let d = f.ev(stale("SOL/USD", true));
        let Decision::Notified(n) = &d[0] else {
            panic!("{d:?}")
        };
        assert_eq!(n.grouped, ["data_stale:ETH/USD", "data_stale:XRP/USD"]);
    }

    #[tokio::test]
    async fn a_halt_inhibits_the_drawdown_alert_that_caused_it() {
        let f = fixture();
        let dd = |v| Payload::ConditionValue {
            id: "max_total_drawdown".into(),
            value: v,
            threshold: dec!(15),
            triggered: false,
        };
        assert_eq!(kinds(&f.ev(dd(dec!(11)))), ["notified drawdown"]);
        f.ev(Payload::HaltTriggered {
            source: HaltSource::Auto("max_total_drawdown".into()),
            reason: "drawdown 15.2% > 15%".into(),
        });
        f.advance_secs(3_600);
        assert_eq!(
            kinds(&f.ev(dd(dec!(16)))),
            ["suppressed drawdown Inhibited"]
        );
        // Once trading resumes, the inhibition lifts.
        assert_eq!(
            kinds(&f.ev(Payload::Resumed {
                operator: "alice".into()
            })),
            ["resolved halt"]
        );
        assert_eq!(kinds(&f.ev(dd(dec!(16)))), ["notified drawdown"]);
        let got = f.delivered().await;
        let rules: Vec<_> = got.iter().map(|n| (n.rule.as_str(), n.status)).collect();
        assert_eq!(
            rules,
            [
                ("drawdown", AlertStatus::Firing),
                ("halt", AlertStatus::Firing),
                ("halt", AlertStatus::Resolved),
                ("drawdown", AlertStatus::Firing)
            ]
        );
    }

    #[tokio::test]
    async fn silences_apply_until_their_end_time() {
        let f = fixture();
        let until = f.clock.now() + Duration::minutes(10);
        let id =
            f.am.silence("data_stale", until, "alice", "exchange maintenance");
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", true))),
            ["suppressed data_stale:XRP/USD Silenced"]
        );
        f.advance_secs(601);
        assert!(f.am.silences().is_empty());
        assert_eq!(
            kinds(&f.ev(stale("XRP/USD", true))),
            ["notified data_stale:XRP/USD"]
        );
        assert!(!f.am.expire_silence(id), "already expired");
        let id2 =
            f.am.silence("data_stale:XRP", until + Duration::hours(1), "bob", "");
        assert!(f.am.expire_silence(id2));
        assert_eq!(f.delivered().await.len(), 1);
    }

    #[tokio::test]
    async fn api_error_rate_fires_above_the_limit_and_resolves_when_the_minute_passes() {
        let f = fixture();
        let err = || Payload::ApiError {
            endpoint: "AddOrder".into(),
            kind: gf_core::ApiErrorKind::ServiceUnavailable,
            message: "EService:Unavailable".into(),
            retryable: true,
        };
        for _ in 0..5 {
            assert!(f.ev(err()).is_empty());
            f.advance_secs(1);
        }
        assert_eq!(kinds(&f.ev(err())), ["notified api_errors"]);
        f.advance_secs(30);
        assert_eq!(
            kinds(&f.am.tick()),
            ["suppressed api_errors Cooldown"],
            "still 6 in the window"
        );
        f.advance_secs(30);
        assert_eq!(kinds(&f.am.tick()), ["resolved api_errors"]);
    }

    #[tokio::test]
    async fn mean_latency_over_the_limit_fires_and_clears() {
        let f = fixture();
        let lat = |ms: u64| Payload::Latency {
            stage: "order_ack".into(),
            micros: ms * 1000,
        };
        assert!(f.ev(lat(400)).is_empty());
        assert!(
            f.ev(Payload::Latency {
                stage: "decision".into(),
                micros: 9_000_000
            })
            .is_empty(),
            "other stages do not count"
        );
        assert_eq!(kinds(&f.ev(lat(700))), ["notified latency"]);
        assert_eq!(kinds(&f.ev(lat(100))), ["resolved latency"]);
        assert_eq!(kinds(&f.ev(lat(2_000))), ["notified latency"]);
        f.advance_secs(61);
        assert_eq!(kinds(&f.am.tick()), ["resolved latency"]);
    }

    #[tokio::test]
    async fn checksum_rotation_and_halt_state_rules() {
        let f = fixture();
        let pair = Pair::new("XRP/USD").unwrap();
        assert_eq!(
            kinds(&f.ev(Payload::BookInvalid {
                pair: pair.clone(),
                reason: "checksum mismatch".into()
            })),
            ["notified checksum_mismatch:XRP/USD"]
        );
        let snap = gf_core::BookSnapshot {
            pair,
            bids: vec![],
            asks: vec![],
            checksum: 1,
        };
        assert_eq!(
            kinds(&f.ev(Payload::BookSnapshot(snap))),
            ["resolved checksum_mismatch:XRP/USD"]
        );
        let audit = |outcome: &str| Payload::SecretAudit {
            set: "kraken".into(),
            provider: "vault".into(),
            version: Some("7".into()),
            action: "rotate".into(),
            outcome: outcome.into(),
        };
        assert_eq!(
            kinds(&f.ev(audit("exchange rejected the new key"))),
            ["notified credential_rotation_failed:kraken"]
        );
        assert_eq!(
            kinds(&f.ev(audit("ok"))),
            ["resolved credential_rotation_failed:kraken"]
        );
        let change = |to| Payload::HaltStateChanged {
            from: HaltState::Running,
            to,
            source: HaltSource::Cli,
            reason: "operator".into(),
        };
        assert_eq!(kinds(&f.ev(change(HaltState::Halting))), ["notified halt"]);
        assert!(f.ev(change(HaltState::Halted)).is_empty());
        assert_eq!(kinds(&f.ev(change(HaltState::Running))), ["resolved halt"]);
        let sent = f.delivered().await;
        assert_eq!(sent.len(), 6);
        assert_eq!(sent[4].severity, Severity::Critical);
    }

    #[test]
    fn rules_naming_unknown_channels_or_rules_are_refused() {
        let clock: SharedClock = Arc::new(ManualClock::default());
        let d = Dispatcher::new(vec![], Metrics::new(), clock.clone());
        let (mut rules, inh) = default_rules(&MonitorConfig::default());
        rules[0].channels = vec!["pager".into()];
        let err = AlertManager::new(
            rules,
            inh.clone(),
            d.clone(),
            None,
            clock.clone(),
            Metrics::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "alert rule `drawdown`: unknown channel `pager`"
        );
        let (mut rules, _) = default_rules(&MonitorConfig::default());
        rules.retain(|r| r.name != "halt");
        let err = AlertManager::new(rules, inh, d, None, clock, Metrics::new()).unwrap_err();
        assert!(err.to_string().contains("`halt`"), "{err}");
    }
}

#[cfg(test)]
mod property_tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use gf_core::{Clock, ManualClock, Pair};
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Stale(usize, bool),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..3, any::<bool>()).prop_map(|(p, s)| Op::Stale(p, s)),
            (0i64..5_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Whatever the sequence of events and time steps: a resolved notice follows a
        /// firing notice of the same key (never two in a row, never for a key that was
        /// not notified), and two firing notices of one episode are a repeat interval apart.
        #[test]
        fn prop_notices_respect_cooldown_and_resolve_once(ops in prop::collection::vec(op(), 1..80)) {
            let clock = ManualClock::default();
            let shared: SharedClock = Arc::new(clock.clone());
            let d = Dispatcher::new(vec![], Metrics::new(), shared.clone());
            let (rules, inh) = default_rules(&MonitorConfig::default());
            let repeat = rules.iter().find(|r| r.name == "data_stale").unwrap().repeat_interval_secs;
            let am = AlertManager::new(rules, inh, d, None, shared, Metrics::new()).unwrap();
            let pairs = ["XRP/USD", "DOGE/USD", "ETH/USD"];
            // key → time of the last firing notice of the current episode
            let mut notified: HashMap<String, DateTime<Utc>> = HashMap::new();
            for op in ops {
                match op {
                    Op::Advance(s) => clock.advance(Duration::seconds(s)),
                    Op::Stale(p, stale) => {
                        let payload = Payload::Staleness {
                            pair: Pair::new(pairs[p]).unwrap(),
                            stale,
                            age_ms: 0,
                            threshold_ms: 60_000,
                        };
                        let now = clock.now();
                        for dec in am.on_event(&Event::new(now, Source::Test, payload)) {
                            match dec {
                                Decision::Notified(n) if n.key == "data_stale" => {
                                    for k in n.grouped {
                                        prop_assert!(!notified.contains_key(&k), "announced twice: {}", k);
                                        notified.insert(k, now);
                                    }
                                }
                                Decision::Notified(n) => {
                                    if let Some(prev) = notified.get(&n.key) {
                                        prop_assert!(now - *prev >= Duration::seconds(i64::try_from(repeat).unwrap()));
                                    }
                                    notified.insert(n.key, now);
                                }
                                Decision::Resolved(n) => {
                                    prop_assert!(notified.remove(&n.key).is_some(), "resolved without firing: {}", n.key);
                                }
                                Decision::ClearedQuietly { key } => {
                                    prop_assert!(!notified.contains_key(&key));
                                }
                                Decision::Suppressed { key, why } => {
                                    prop_assert!(am.active().iter().any(|a| a.key == key));
                                    if why == Suppression::Cooldown {
                                        prop_assert!(notified.contains_key(&key));
                                    }
                                }
                            }
                        }
                        let key = format!("data_stale:{}", pairs[p]);
                        prop_assert_eq!(am.active().iter().any(|a| a.key == key), stale);
                    }
                }
            }
        }
    }
}
