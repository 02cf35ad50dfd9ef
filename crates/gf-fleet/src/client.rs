//! The node's link to NATS JetStream: the connection, the two key-value buckets, the
//! compare-and-set writes of the fleet halt record, heartbeats, watches and escalation.
//!
//! Buckets (created by the first node that needs them, file storage):
//! - `gf_fleet_<name>_halt`, key `halt`: the [`FleetHaltRecord`] as JSON. Every write is a
//!   compare-and-set on the key's revision (`create` when absent, `update` with the
//!   revision read), so two nodes that breach at once write one fleet halt: the loser reads
//!   the winner's active record and stops.
//! - `gf_fleet_<name>_nodes`, key = node id: each node's [`Heartbeat`] (kept 24 h).
//!
//! The halt key is watched (new values arrive within milliseconds) **and** re-read with
//! every heartbeat, so a watch that silently stopped delivering after a reconnect costs at
//! most one heartbeat interval. A heartbeat acknowledged by JetStream and a halt record
//! read are what "NATS answered" means for the partition condition.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use gf_api::{FleetHaltRecord, FleetResumeReply};
use gf_core::config::FleetConfig;
use gf_core::{Event, HaltSource, Payload, RecvError, SharedClock, Subscription};
use gf_halt::HaltCoordinator;
use gf_risk::PortfolioView;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::condition::{
    FLEET_EXPOSURE, FLEET_HALT, FLEET_PARTITION, FLEET_TOTAL_DRAWDOWN, FleetHaltCondition,
    FleetSum, FleetSumCondition, OwnFigures, PartitionCondition,
};
use crate::error::FleetError;
use crate::view::{FleetView, Heartbeat};

/// The key of the fleet halt record in its bucket.
pub const HALT_KEY: &str = "halt";
/// How long a node's heartbeat stays in the nodes bucket without a newer one.
pub const NODE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Compare-and-set attempts before a write gives up ([`FleetError::Contended`]).
const CAS_ATTEMPTS: u32 = 8;

/// The fleet halt bucket of fleet `name`.
#[must_use]
pub fn halt_bucket(name: &str) -> String {
    format!("gf_fleet_{name}_halt")
}

/// The heartbeat bucket of fleet `name`.
#[must_use]
pub fn nodes_bucket(name: &str) -> String {
    format!("gf_fleet_{name}_nodes")
}

/// How the node authenticates to NATS, resolved from the secret provider.
#[derive(Clone, Default)]
pub enum NatsCredentials {
    /// No credentials.
    #[default]
    None,
    /// A token.
    Token(SecretString),
    /// User and password.
    UserPassword {
        /// User.
        user: String,
        /// Password.
        password: SecretString,
    },
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NatsCredentials::None => "NatsCredentials::None",
            NatsCredentials::Token(_) => "NatsCredentials::Token(<redacted>)",
            NatsCredentials::UserPassword { .. } => "NatsCredentials::UserPassword(<redacted>)",
        })
    }
}

/// What the node's fleet task works with: its coordinator, portfolio and halt events.
pub struct RunContext {
    /// This node's halt coordinator (its fleet conditions are swept on every change).
    pub halt: HaltCoordinator,
    /// This node's portfolio (heartbeat figures).
    pub portfolio: Arc<dyn PortfolioView>,
    /// This node's quote currency.
    pub quote: String,
    /// `HaltTriggered` events of this node (escalation).
    pub events: Subscription,
    /// Ends the task.
    pub shutdown: CancellationToken,
    /// Set once `events` reported the bus closed (it is not polled again).
    pub events_closed: bool,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("quote", &self.quote)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Conn {
    halt: kv::Store,
    nodes: kv::Store,
}

struct Inner {
    cfg: FleetConfig,
    creds: NatsCredentials,
    clock: SharedClock,
    view: FleetView,
    conn: Mutex<Option<Conn>>,
    /// A fleet halt this node owes the fleet (escalated while NATS was unreachable).
    pending: Mutex<Option<(String, String)>>,
    /// Held across every read-then-record and write-then-record of the halt record, so
    /// a read that started before a write can never overwrite the view after it.
    halt_io: tokio::sync::Mutex<()>,
    op_timeout: Duration,
}

/// This node's membership of the fleet. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("fleet", &self.inner.cfg.name)
            .field("node", &self.inner.cfg.node)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// A node of the fleet `cfg` describes; nothing is connected yet.
    #[must_use]
    pub fn new(cfg: FleetConfig, creds: NatsCredentials, clock: SharedClock) -> Self {
        let started = clock.now();
        // A JetStream call may take at most a heartbeat interval (at least 500 ms, at most
        // 2 s): a slow answer counts as no answer.
        let op_timeout = Duration::from_millis(cfg.heartbeat_ms.clamp(500, 2000));
        Self {
            inner: Arc::new(Inner {
                cfg,
                creds,
                clock,
                view: FleetView::new(started),
                conn: Mutex::new(None),
                pending: Mutex::new(None),
                halt_io: tokio::sync::Mutex::new(()),
                op_timeout,
            }),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &FleetConfig {
        &self.inner.cfg
    }

    /// What this node knows of the fleet.
    #[must_use]
    pub fn view(&self) -> &FleetView {
        &self.inner.view
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(self.inner.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(FleetError::js(op, e)),
            Err(_) => Err(FleetError::js(
                op,
                format!("no answer within {:?}", self.inner.op_timeout),
            )),
        }
    }

    async fn open(&self) -> Result<Conn, FleetError> {
        let cfg = &self.inner.cfg;
        let urls = cfg.nats_url.join(", ");
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("gal-friday {}/{}", cfg.name, cfg.node))
            .connection_timeout(self.inner.op_timeout)
            .max_reconnects(None);
        match &self.inner.creds {
            NatsCredentials::None => {}
            NatsCredentials::Token(t) => opts = opts.token(t.expose_secret().to_owned()),
            NatsCredentials::UserPassword { user, password } => {
                opts = opts.user_and_password(user.clone(), password.expose_secret().to_owned());
            }
        }
        let client = tokio::time::timeout(self.inner.op_timeout * 2, opts.connect(&cfg.nats_url))
            .await
            .map_err(|_| FleetError::Connect {
                urls: urls.clone(),
                message: "timed out".into(),
            })?
            .map_err(|e| FleetError::Connect {
                urls: urls.clone(),
                message: e.to_string(),
            })?;
        let mut js = jetstream::new(client);
        js.set_timeout(self.inner.op_timeout);
        let halt = self
            .bucket(
                &js,
                kv::Config {
                    bucket: halt_bucket(&cfg.name),
                    description: "Gal-Friday fleet halt record".into(),
                    history: 64,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                },
            )
            .await?;
        let nodes = self
            .bucket(
                &js,
                kv::Config {
                    bucket: nodes_bucket(&cfg.name),
                    description: "Gal-Friday fleet heartbeats".into(),
                    history: 1,
                    max_age: NODE_MAX_AGE,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Conn { halt, nodes })
    }

    /// Opens the bucket, creating it when missing. The stream is created directly with the
    /// key-value layout (what `create_key_value` builds) because that call first asks for
    /// account details that servers before 2.10 (Debian's 2.9) answer in an older shape.
    async fn bucket(
        &self,
        js: &jetstream::Context,
        config: kv::Config,
    ) -> Result<kv::Store, FleetError> {
        let name = config.bucket.clone();
        if let Ok(Ok(store)) =
            tokio::time::timeout(self.inner.op_timeout, js.get_key_value(name.clone())).await
        {
            return Ok(store);
        }
        let stream = jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some(config.description),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: config.history.max(1),
            max_messages: -1,
            max_bytes: -1,
            max_message_size: -1,
            max_age: config.max_age,
            storage: config.storage,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            num_replicas: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        match self
            .timed("creating a bucket", js.get_or_create_stream(stream))
            .await
        {
            Ok(_) => self.timed("opening a bucket", js.get_key_value(name)).await,
            // Another node created it between our two calls.
            Err(first) => self
                .timed("opening a bucket", js.get_key_value(name))
                .await
                .map_err(|_| first),
        }
    }

    fn conn(&self) -> Option<Conn> {
        self.inner.conn.lock().clone()
    }

    /// Connects, opens (or creates) the buckets and reads the fleet halt record and the
    /// heartbeats. Start-up calls it before the node's gate may open.
    ///
    /// # Errors
    /// [`FleetError::Connect`] or [`FleetError::JetStream`] when NATS does not answer.
    pub async fn connect(&self) -> Result<(), FleetError> {
        self.establish().await.map(|_| ())
    }

    async fn establish(&self) -> Result<Conn, FleetError> {
        let conn = self.open().await?;
        self.read_halt(&conn).await?;
        self.read_nodes(&conn).await?;
        *self.inner.conn.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// As [`Fleet::connect`], retrying until it succeeds or `within` has passed.
    ///
    /// # Errors
    /// The last attempt's error.
    pub async fn connect_within(&self, within: Duration) -> Result<(), FleetError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut backoff =
            gf_core::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            match self.connect().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + backoff.ceiling() >= deadline => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fleet: NATS not reachable yet; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    async fn read_halt(&self, conn: &Conn) -> Result<FleetHaltRecord, FleetError> {
        let _io = self.inner.halt_io.lock().await;
        let entry = self
            .timed("reading the fleet halt", conn.halt.entry(HALT_KEY))
            .await?;
        let record = entry.as_ref().map_or_else(FleetHaltRecord::default, decode);
        self.inner.view.set_halt(record.clone());
        self.inner.view.contact(self.now());
        Ok(record)
    }

    async fn read_nodes(&self, conn: &Conn) -> Result<(), FleetError> {
        let mut keys = self
            .timed("listing the fleet's nodes", conn.nodes.keys())
            .await?;
        let mut names = Vec::new();
        while let Ok(Some(k)) = tokio::time::timeout(self.inner.op_timeout, keys.next())
            .await
            .map(|o| o.and_then(Result::ok))
        {
            names.push(k);
        }
        for name in names {
            if let Some(entry) = self
                .timed("reading a heartbeat", conn.nodes.entry(name))
                .await?
            {
                self.apply_node(&entry);
            }
        }
        Ok(())
    }

    fn apply_node(&self, entry: &kv::Entry) {
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Heartbeat>(&entry.value) {
                Ok(hb) if hb.node == entry.key => self.inner.view.set_node(hb),
                Ok(hb) => tracing::warn!(
                    key = %entry.key, node = %hb.node,
                    "fleet: a heartbeat under another node's key was ignored"
                ),
                Err(e) => tracing::warn!(
                    key = %entry.key, error = %e,
                    "fleet: an unreadable heartbeat was ignored"
                ),
            },
            kv::Operation::Delete | kv::Operation::Purge => self.inner.view.remove_node(&entry.key),
        }
    }

    /// Registers the fleet conditions on this node's coordinator with `behaviour`:
    /// `fleet_halt` and `fleet_partition` always, `fleet_total_drawdown` and
    /// `fleet_exposure` when their limits are set; this node's own figures (in `quote`) are
    /// taken live from the coordinator's portfolio. Sweep the coordinator afterwards so a
    /// fleet halt in force (or unknown) halts at once.
    pub fn register_conditions(
        &self,
        halt: &HaltCoordinator,
        behaviour: gf_core::HaltBehaviour,
        quote: &str,
    ) {
        let cfg = &self.inner.cfg;
        let view = &self.inner.view;
        halt.register_condition(Box::new(FleetHaltCondition::new(view.clone())), behaviour);
        halt.register_condition(
            Box::new(PartitionCondition::new(
                view.clone(),
                cfg.partition_halt_secs,
            )),
            behaviour,
        );
        for (sum, limit) in [
            (FleetSum::TotalDrawdown, cfg.max_total_drawdown_pct),
            (FleetSum::Exposure, cfg.max_exposure_notional),
        ] {
            if limit <= Decimal::ZERO {
                continue;
            }
            let (node, quote) = (cfg.node.clone(), quote.to_owned());
            let own: OwnFigures = Box::new(move |ctx, now| {
                own_figures(
                    &node,
                    ctx.portfolio,
                    &quote,
                    now,
                    gf_core::HaltState::Running,
                    None,
                    Vec::new(),
                )
            });
            halt.register_condition(
                Box::new(FleetSumCondition::new(sum, view.clone(), limit, own)),
                behaviour,
            );
        }
    }

    /// Writes the fleet halt (compare-and-set): every node watching the bucket halts. When
    /// one is already in force, nothing is written and `created` is `false`.
    ///
    /// # Errors
    /// [`FleetError::NotConnected`], [`FleetError::JetStream`] when NATS does not answer,
    /// [`FleetError::Contended`] when the record kept changing.
    pub async fn halt(
        &self,
        by: &str,
        reason: &str,
    ) -> Result<(FleetHaltRecord, bool), FleetError> {
        let conn = self.conn().ok_or(FleetError::NotConnected)?;
        let _io = self.inner.halt_io.lock().await;
        for _ in 0..CAS_ATTEMPTS {
            let current = self
                .timed("reading the fleet halt", conn.halt.entry(HALT_KEY))
                .await?;
            let decoded = current.as_ref().map(decode);
            if let Some(rec) = decoded.as_ref().filter(|r| r.active) {
                self.inner.view.set_halt(rec.clone());
                self.inner.view.contact(self.now());
                return Ok((rec.clone(), false));
            }
            let mut record = FleetHaltRecord {
                active: true,
                reason: reason.to_owned(),
                by: by.to_owned(),
                node: self.inner.cfg.node.clone(),
                at: Some(self.now()),
                two_person: self.inner.cfg.two_person_rule,
                ..FleetHaltRecord::default()
            };
            let bytes = encode(&record);
            let written = match &current {
                None => conn.halt.create(HALT_KEY, bytes).await.map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
                Some(e) => conn
                    .halt
                    .update(HALT_KEY, bytes, e.revision)
                    .await
                    .map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            e.to_string(),
                        )
                    }),
            };
            match written {
                Ok(revision) => {
                    record.revision = revision;
                    self.inner.view.set_halt(record.clone());
                    self.inner.view.contact(self.now());
                    return Ok((record, true));
                }
                // Someone else wrote first: read again.
                Err((true, _)) => {}
                Err((false, message)) => {
                    return Err(FleetError::JetStream {
                        op: "writing the fleet halt",
                        message,
                    });
                }
            }
        }
        Err(FleetError::Contended {
            attempts: CAS_ATTEMPTS,
        })
    }

    /// Clears the fleet halt on behalf of administrator `admin` (compare-and-set). Under
    /// `fleet.two_person_rule` the first administrator's call records an approval and a
    /// second, different administrator's call clears it. Each node then still walks its
    /// own checklist before it resumes.
    ///
    /// # Errors
    /// As [`Fleet::halt`].
    pub async fn clear(&self, admin: &str) -> Result<FleetResumeReply, FleetError> {
        let conn = self.conn().ok_or(FleetError::NotConnected)?;
        let _io = self.inner.halt_io.lock().await;
        for _ in 0..CAS_ATTEMPTS {
            let current = self
                .timed("reading the fleet halt", conn.halt.entry(HALT_KEY))
                .await?;
            let Some(entry) = current else {
                let record = FleetHaltRecord::default();
                self.inner.view.set_halt(record.clone());
                return Ok(FleetResumeReply {
                    record,
                    cleared: true,
                    needs: None,
                });
            };
            let mut record = decode(&entry);
            if !record.active {
                self.inner.view.set_halt(record.clone());
                return Ok(FleetResumeReply {
                    record,
                    cleared: true,
                    needs: None,
                });
            }
            let admin_owned = admin.to_owned();
            if !record.approvals.contains(&admin_owned) {
                record.approvals.push(admin_owned);
            }
            // The rule of the node that wrote the halt holds too: one node's laxer
            // configuration cannot clear alone what another wrote under the rule.
            let two = self.inner.cfg.two_person_rule || record.two_person;
            let cleared = !two || record.approvals.len() >= 2;
            if cleared {
                record.active = false;
                record.cleared_by = Some(record.approvals.join(" + "));
                record.cleared_at = Some(self.now());
            }
            match conn
                .halt
                .update(HALT_KEY, encode(&record), entry.revision)
                .await
            {
                Ok(revision) => {
                    record.revision = revision;
                    self.inner.view.set_halt(record.clone());
                    self.inner.view.contact(self.now());
                    let needs = (!cleared).then(|| {
                        format!(
                            "the two-person rule: a second administrator (not {admin}) must also clear the fleet halt"
                        )
                    });
                    return Ok(FleetResumeReply {
                        record,
                        cleared,
                        needs,
                    });
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(FleetError::js("clearing the fleet halt", e)),
            }
        }
        Err(FleetError::Contended {
            attempts: CAS_ATTEMPTS,
        })
    }

    /// Remembers a fleet halt to write as soon as NATS answers (an escalation or an
    /// operator's fleet halt that could not be written now).
    pub fn owe_halt(&self, by: &str, reason: &str) {
        let mut p = self.inner.pending.lock();
        if p.is_none() {
            *p = Some((by.to_owned(), reason.to_owned()));
        }
    }

    /// The fleet halt this node still owes, if any.
    #[must_use]
    pub fn owed_halt(&self) -> Option<(String, String)> {
        self.inner.pending.lock().clone()
    }

    /// Whether a local halt from `source` halts the fleet (`fleet.escalate`), and as whom.
    #[must_use]
    pub fn escalation(&self, source: &HaltSource) -> Option<String> {
        let escalate = &self.inner.cfg.escalate;
        let any = escalate.iter().any(|e| e == "any");
        let operator = any || escalate.iter().any(|e| e == "operator");
        match source {
            HaltSource::Auto(id) => {
                let fleet_wide = id == FLEET_TOTAL_DRAWDOWN || id == FLEET_EXPOSURE;
                let own = id == FLEET_HALT || id == FLEET_PARTITION;
                (fleet_wide || (!own && (any || escalate.iter().any(|e| e == id))))
                    .then(|| format!("auto:{id}"))
            }
            HaltSource::Api(op) | HaltSource::Console(op) => {
                operator.then(|| format!("operator:{op}"))
            }
            HaltSource::Cli => operator.then(|| "operator:cli".to_owned()),
            HaltSource::Signal => operator.then(|| "operator:signal".to_owned()),
            HaltSource::Fleet => None,
        }
    }

    /// This node's heartbeat now.
    #[must_use]
    pub fn heartbeat(&self, rc: &RunContext) -> Heartbeat {
        self.heartbeat_of(&rc.halt, &*rc.portfolio, &rc.quote)
    }

    /// This node's heartbeat now, from its coordinator and portfolio.
    #[must_use]
    pub fn heartbeat_of(
        &self,
        halt: &HaltCoordinator,
        portfolio: &dyn PortfolioView,
        quote: &str,
    ) -> Heartbeat {
        let status = halt.status();
        let breached = halt
            .conditions()
            .into_iter()
            .filter(|c| c.triggered)
            .map(|c| c.id)
            .collect();
        own_figures(
            &self.inner.cfg.node,
            portfolio,
            quote,
            self.now(),
            status.state,
            status
                .halt
                .filter(|_| status.state != gf_core::HaltState::Running)
                .map(|h| h.reason),
            breached,
        )
    }

    /// The fleet as this node sees it.
    #[must_use]
    pub fn status(&self, own: Option<&Heartbeat>) -> gf_api::FleetStatus {
        let cfg = &self.inner.cfg;
        let now = self.now();
        let view = &self.inner.view;
        let silence = view.silence(now);
        let limit =
            chrono::Duration::seconds(i64::try_from(cfg.partition_halt_secs).unwrap_or(i64::MAX));
        let totals = view.totals(own);
        let mut nodes: Vec<Heartbeat> = view
            .nodes()
            .into_iter()
            .filter(|h| own.is_none_or(|o| o.node != h.node))
            .collect();
        if let Some(o) = own {
            nodes.push(o.clone());
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let num = |d: Decimal| gf_api::Num(d.normalize().to_string());
        gf_api::FleetStatus {
            enabled: cfg.enabled,
            fleet: cfg.name.clone(),
            node: cfg.node.clone(),
            connected: view.last_contact().is_some() && silence <= limit,
            last_contact_ms: view
                .last_contact()
                .map(|t| u64::try_from((now - t).num_milliseconds().max(0)).unwrap_or(0)),
            partition_halt_secs: cfg.partition_halt_secs,
            halt: view.halt(),
            nodes: nodes
                .into_iter()
                .map(|h| {
                    let age = (now - h.at).max(chrono::Duration::zero());
                    gf_api::FleetNode {
                        state: h.state.into(),
                        halt_reason: h.halt_reason,
                        breached: h.breached,
                        equity: num(h.equity),
                        peak_equity: num(h.peak_equity),
                        drawdown_pct: num(h.drawdown_pct),
                        exposure: num(h.exposure),
                        quote: h.quote,
                        at: Some(h.at),
                        age_ms: u64::try_from(age.num_milliseconds()).unwrap_or(0),
                        stale: age > limit,
                        node: h.node,
                    }
                })
                .collect(),
            total_equity: num(totals.equity),
            total_drawdown_pct: num(totals.drawdown_pct),
            total_exposure: num(totals.exposure),
        }
    }

    async fn put_heartbeat(&self, conn: &Conn, hb: &Heartbeat) -> Result<(), FleetError> {
        let bytes = Bytes::from(serde_json::to_vec(hb).unwrap_or_default());
        self.timed("publishing the heartbeat", conn.nodes.put(&hb.node, bytes))
            .await?;
        self.inner.view.set_node(hb.clone());
        Ok(())
    }

    /// One heartbeat round: publish this node's heartbeat, re-read the halt record, and
    /// write a fleet halt this node owes. NATS answered when both succeeded.
    async fn beat(&self, conn: &Conn, rc: &RunContext) -> Result<(), FleetError> {
        self.put_heartbeat(conn, &self.heartbeat(rc)).await?;
        let record = self.read_halt(conn).await?;
        // A change the watch did not bring closes the gate now, not at the next sweep.
        if record.active && rc.halt.state() == gf_core::HaltState::Running {
            rc.halt.sweep().await;
        }
        self.pay_debt(rc).await;
        Ok(())
    }

    async fn pay_debt(&self, rc: &RunContext) {
        let Some((by, reason)) = self.owed_halt() else {
            return;
        };
        match self.halt(&by, &reason).await {
            Ok((record, created)) => {
                *self.inner.pending.lock() = None;
                tracing::warn!(%by, %reason, created, "fleet: halt escalated to the fleet");
                let detail = serde_json::json!({
                    "reason": reason,
                    "revision": record.revision,
                    "created": created,
                    "in_force": record.reason,
                });
                if let Err(e) = rc.halt.record("fleet_halt_written", &by, detail).await {
                    tracing::error!(error = %e, "fleet: journaling the escalation failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, %by, "fleet: escalation not written yet; retrying with the next heartbeat");
            }
        }
    }

    /// Takes one receive from the halt events; `true` when a fleet halt is now owed. A
    /// lagging subscription may have lost a trigger, so the halt in force is looked at
    /// instead; a closed bus (shutdown) is not polled again.
    fn take_event(&self, rc: &mut RunContext, ev: Result<Arc<Event>, RecvError>) -> bool {
        match ev {
            Ok(ev) => self.on_event(&ev),
            Err(RecvError::Lagged { .. }) => {
                let status = rc.halt.status();
                match status.halt {
                    Some(h) if status.state != gf_core::HaltState::Running => {
                        if let Some(by) = self.escalation(&h.source) {
                            self.owe_halt(&by, &format!("{}: {}", self.inner.cfg.node, h.reason));
                            return true;
                        }
                        false
                    }
                    _ => false,
                }
            }
            Err(RecvError::Closed) => {
                rc.events_closed = true;
                false
            }
        }
    }

    fn on_event(&self, ev: &Event) -> bool {
        if let Payload::HaltTriggered { source, reason } = &ev.payload
            && let Some(by) = self.escalation(source)
        {
            self.owe_halt(&by, &format!("{}: {reason}", self.inner.cfg.node));
            return true;
        }
        false
    }

    /// The fleet task: keeps the connection, publishes heartbeats every
    /// `fleet.heartbeat_ms`, watches the halt record and the heartbeats (sweeping the
    /// coordinator's conditions on every change, so a fleet halt closes the gate as soon
    /// as it arrives) and escalates local halts. Runs until `rc.shutdown`.
    pub async fn run(&self, mut rc: RunContext) {
        let heartbeat = Duration::from_millis(self.inner.cfg.heartbeat_ms);
        let mut backoff = gf_core::backoff::Backoff::new(Duration::from_millis(100), heartbeat);
        loop {
            if rc.shutdown.is_cancelled() {
                return;
            }
            let conn = match self.conn() {
                Some(c) => c,
                None => match self.establish().await {
                    Ok(conn) => {
                        rc.halt.sweep().await;
                        conn
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet: NATS not reachable");
                        if self.idle(&mut rc, backoff.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            match self.watch(&conn, &mut rc, heartbeat).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "fleet: watches ended; reconnecting");
                    // Reopen from scratch: the buckets may be gone (a server that lost
                    // its store) and are created again, the record read again.
                    *self.inner.conn.lock() = None;
                    if self.idle(&mut rc, backoff.next_delay()).await {
                        return;
                    }
                    backoff.reset();
                }
            }
        }
    }

    /// Waits `delay` while still taking in halt events; `true` at shutdown.
    async fn idle(&self, rc: &mut RunContext, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = rc.shutdown.cancelled() => return true,
                () = tokio::time::sleep_until(until) => return false,
                ev = rc.events.recv(), if !rc.events_closed => { self.take_event(rc, ev); }
            }
        }
    }

    async fn watch(
        &self,
        conn: &Conn,
        rc: &mut RunContext,
        heartbeat: Duration,
    ) -> Result<(), FleetError> {
        let mut halts = self
            .timed(
                "watching the fleet halt",
                conn.halt.watch_with_history(HALT_KEY),
            )
            .await?;
        let mut nodes = self
            .timed(
                "watching the heartbeats",
                conn.nodes.watch_with_history(">"),
            )
            .await?;
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let fleet_sums = self.inner.cfg.max_total_drawdown_pct > Decimal::ZERO
            || self.inner.cfg.max_exposure_notional > Decimal::ZERO;
        loop {
            tokio::select! {
                biased;
                () = rc.shutdown.cancelled() => return Ok(()),
                entry = halts.next() => match entry {
                    Some(Ok(entry)) => {
                        // A watch may hand over a value older than one a write or
                        // read already recorded; the next read corrects any other case.
                        self.inner.view.set_halt_if_newer(decode(&entry));
                        self.inner.view.contact(self.now());
                        rc.halt.sweep().await;
                    }
                    Some(Err(e)) => return Err(FleetError::js("watching the fleet halt", e)),
                    None => return Err(FleetError::js("watching the fleet halt", "ended")),
                },
                entry = nodes.next() => match entry {
                    Some(Ok(entry)) => {
                        if entry.key != self.inner.cfg.node {
                            self.apply_node(&entry);
                            if fleet_sums {
                                rc.halt.sweep().await;
                            }
                        }
                    }
                    Some(Err(e)) => return Err(FleetError::js("watching the heartbeats", e)),
                    None => return Err(FleetError::js("watching the heartbeats", "ended")),
                },
                ev = rc.events.recv(), if !rc.events_closed => {
                    if self.take_event(rc, ev) {
                        self.pay_debt(rc).await;
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.beat(conn, rc).await {
                        tracing::warn!(error = %e, "fleet: heartbeat not acknowledged");
                    }
                }
            }
        }
    }
}

/// This node's heartbeat figures from its portfolio.
#[must_use]
pub fn own_figures(
    node: &str,
    portfolio: &dyn PortfolioView,
    quote: &str,
    at: DateTime<Utc>,
    state: gf_core::HaltState,
    halt_reason: Option<String>,
    breached: Vec<String>,
) -> Heartbeat {
    Heartbeat {
        node: node.to_owned(),
        state,
        halt_reason,
        breached,
        equity: portfolio.equity(),
        peak_equity: portfolio.peak_equity(),
        drawdown_pct: portfolio.total_drawdown_pct(),
        exposure: portfolio.exposure(),
        quote: quote.to_owned(),
        at,
    }
}

fn encode(record: &FleetHaltRecord) -> Bytes {
    let mut stored = record.clone();
    // The revision is the bucket's, not part of the value.
    stored.revision = 0;
    Bytes::from(serde_json::to_vec(&stored).unwrap_or_default())
}

/// The record an entry holds. A deleted or purged key is an inactive record; a value that
/// does not decode is an **active** one (fail closed: nobody can tell it is not a halt).
#[must_use]
pub fn decode(entry: &kv::Entry) -> FleetHaltRecord {
    let mut record = match entry.operation {
        kv::Operation::Delete | kv::Operation::Purge => FleetHaltRecord::default(),
        kv::Operation::Put => match serde_json::from_slice::<FleetHaltRecord>(&entry.value) {
            Ok(r) => r,
            Err(e) => FleetHaltRecord {
                active: true,
                reason: format!("unreadable fleet halt record: {e}"),
                by: "unknown".into(),
                ..FleetHaltRecord::default()
            },
        },
    };
    record.revision = entry.revision;
    record
}
