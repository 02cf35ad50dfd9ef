//! Live mode (`gf-daemon launch --live`): credentials from gf-secrets, the Kraken REST
//! client behind the order gate, the Kraken WebSocket market source, the dead man's switch
//! and the rotation watcher.
//!
//! [`Live::connect`] runs before the daemon is composed: it builds the configured secret
//! provider, loads and validates the credentials and tests them with a signed private
//! `Balance` call (refusing to start when any of that fails), builds the REST client that
//! reads the credentials through the rotating handle on every request and checks the
//! venue's [`gf_core::TradingGate`] (closed until the halt coordinator opens it) where
//! each order is written, learns the pairs' names and precisions (`AssetPairs`), reads
//! Kraken's `SystemStatus`, reads the account balance that seeds the portfolio's cash
//! ([`Live::seed_cash`]) and its positions (the holding of each traded base asset,
//! [`Live::seed_positions`]) — over a restored risk snapshot too,
//! and reconciles the account ([`reconcile_startup`]: open orders cancelled or
//! adopted per `exchange.unknown_orders`, journaled as [`RECONCILIATION_KIND`]). [`crate::app`]
//! then composes the daemon around that gate and the gated exchange [`Live::exchange`]
//! hands out (there is no accessor to the ungated client), and
//! [`Live::spawn`] starts the live tasks: the WebSocket source for `market.pairs`, the
//! private WebSocket's `executions` feed that pushes fills, the REST order-status sync as
//! its fallback (every second while the feed is down), the dead man's switch keeper
//! (`exchange.dead_man_switch_secs`) and the rotation watcher. Every credential access and
//! rotation is journaled through [`JournalAudit`].
//!
//! Kraken's own trading mode is followed: `SystemStatus` is read at start-up (retried with
//! backoff like every public start-up call, [`retry_public`]) and the WebSocket `status`
//! channel reports every change ([`gf_core::Payload::ExchangeStatus`]). The mode is
//! enforced where orders pass ([`gf_exec::gated::VenueMode`]: `cancel_only` lets only
//! cancels and sealed closures through, `post_only` only post-only limit orders) and
//! `maintenance` (or an undocumented mode) halts through the `exchange_status` condition.
//!
//! Nonces: several tasks sign at once (strategy, halt, order sync, dead man's switch,
//! health check); the Kraken client assigns each nonce and writes its request under one
//! lock, so they reach Kraken in nonce order even on a key without a nonce window (see
//! the runbook, "Nonces and Kraken's nonce window").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use gf_core::event::ExchangeSystem;
use gf_core::{
    Config, Event, EventBus, EventKind, KindSet, Payload, SharedClock, Source, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::gated::VenueMode;
use gf_exec::{DeadManConfig, DeadManSwitch, Exchange, KrakenClient, KrakenConfig};
use gf_halt::Journal;
use gf_market::{ClientConfig, MarketSource};
use gf_risk::PortfolioConfig;
use gf_secrets::Credentials;
use gf_secrets::audit::{AuditRecord, AuditSink, Auditor};
use gf_secrets::cli::Prompt;
use gf_secrets::rotation::RotationOutcome;
use gf_secrets::rotation::{CredentialCheck, RotatingCredentials, Rotator};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use tokio::task::JoinHandle;

pub use gf_secrets::env::{EnvLookup, env_from_pairs, process_env};

use crate::app::Daemon;
use crate::supervise::{Ending, Supervisor};

/// How fills reach a live daemon (status field `fills`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FillsPath {
    /// Pushed by the private WebSocket's `executions` channel (REST only as a safety net).
    Pushed,
    /// Polled over REST: the feed is down, reconnecting or not started.
    Polled,
}

/// How often the orders this daemon placed are polled for executions (`QueryOrders`; only
/// while some are still open, so an idle daemon spends nothing on it) while the private
/// WebSocket's `executions` feed is down: the fallback of pushed fills.
pub const ORDER_SYNC_EVERY: Duration = Duration::from_secs(1);

/// How often they are polled while the `executions` feed is live: a safety net only (fills
/// are pushed; the feed also syncs once after every reconnect).
pub const ORDER_SYNC_LIVE_EVERY: Duration = Duration::from_secs(20);

/// Start-up public calls (`AssetPairs`, `SystemStatus`) are tried this many times, with
/// [`gf_market::Backoff`] (full jitter) between attempts, before live mode gives up.
pub const STARTUP_ATTEMPTS: u32 = 5;
/// The first backoff bound between start-up attempts (doubling up to
/// [`STARTUP_BACKOFF_MAX`]).
pub const STARTUP_BACKOFF: Duration = Duration::from_millis(250);
/// The largest backoff bound between start-up attempts.
pub const STARTUP_BACKOFF_MAX: Duration = Duration::from_secs(4);

/// Calls `call` until it succeeds, fails with an error that retrying cannot fix, or
/// [`STARTUP_ATTEMPTS`] attempts failed; waits `backoff`'s next delay in between (the
/// reconnect backoff of the market feed: one implementation of the mechanism).
///
/// # Errors
/// The last error.
pub async fn retry_public<T, F, Fut>(
    endpoint: &str,
    backoff: &mut gf_market::Backoff,
    mut call: F,
) -> Result<T, gf_exec::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, gf_exec::Error>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < STARTUP_ATTEMPTS => {
                let delay = backoff.next_delay();
                tracing::warn!(endpoint, attempt, cause = %e, ?delay, "start-up call failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Journal record kind of a credential access or rotation.
pub const AUDIT_KIND: &str = "credential_audit";

/// Journal record kind of what live start-up found on the account and did about it.
pub const RECONCILIATION_KIND: &str = "startup_reconciliation";

/// Start-up reconciliation, before the gate can open: reads the orders open on the
/// account and the most recent closed ones, cancels or adopts every open order
/// (`exchange.unknown_orders`; this process placed none of them yet), and notes the
/// traded base assets the account holds. Returns the journal record's detail.
///
/// # Errors
/// A failed read, or a cancel Kraken did not confirm (live mode then refuses to start:
/// an order it could neither cancel nor account for would trade unseen).
pub async fn reconcile_startup(
    client: &KrakenClient,
    policy: gf_core::config::UnknownOrders,
    pairs: &[gf_core::Pair],
    balances: &BTreeMap<String, Decimal>,
) -> Result<serde_json::Value, gf_exec::Error> {
    use gf_core::config::UnknownOrders;
    let describe = |o: &gf_exec::OrderInfo| {
        serde_json::json!({
            "txid": o.order_id,
            "cl_ord_id": o.client_order_id,
            "pair": o.pair,
            "side": o.side,
            "type": o.order_type,
            "qty": o.qty,
            "filled": o.filled_qty,
            "limit_price": o.limit_price,
            "status": o.status,
        })
    };
    let mut open = Vec::new();
    for (info, cost, fee) in client.open_orders_with_cost().await? {
        let mut entry = describe(&info);
        match policy {
            UnknownOrders::Cancel => {
                client
                    .cancel_order(&gf_exec::OrderRef::Exchange(info.order_id.clone()))
                    .await?;
                tracing::warn!(txid = %info.order_id, pair = %info.pair, "start-up: cancelled an open order this process did not place");
                entry["action"] = "cancelled".into();
            }
            UnknownOrders::Adopt => {
                let id = client.adopt_order(&info, cost, fee);
                tracing::warn!(txid = %info.order_id, pair = %info.pair, cl_ord_id = %id, "start-up: adopted an open order this process did not place");
                entry["action"] = "adopted".into();
                entry["tracked_as"] = serde_json::json!(id);
            }
        }
        open.push(entry);
    }
    let closed: Vec<serde_json::Value> = client
        .recent_closed_orders()
        .await?
        .iter()
        .map(|(o, _, _)| describe(o))
        .collect();
    let held: BTreeMap<&str, Decimal> = pairs
        .iter()
        .filter_map(|p| {
            balances
                .get(p.base())
                .filter(|q| !q.is_zero())
                .map(|q| (p.base(), *q))
        })
        .collect();
    Ok(serde_json::json!({
        "unknown_orders": policy,
        "open_orders": open,
        "recent_closed_orders": closed,
        "held": held,
    }))
}

/// Why live mode could not start. Messages name the setting or field, never a value, and
/// carry their cause inline (one line, however the error is printed).
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No usable credentials: provider misconfigured, a field missing or malformed, or
    /// the exchange refused them.
    #[error("live mode needs valid Kraken credentials: {0}")]
    Credentials(gf_secrets::Error),
    /// The REST client could not be set up, or the account balance could not be read.
    #[error("live mode: kraken rest: {0}")]
    Exchange(gf_exec::Error),
    /// The WebSocket market source settings are unusable.
    #[error("live mode: kraken websocket: {0}")]
    Market(gf_market::Error),
    /// `AssetPairs` does not list some of `market.pairs`.
    #[error("live mode: kraken does not list market.pairs {}", .0.join(", "))]
    UnknownPairs(Vec<String>),
    /// The secret set's `journal_key` field is malformed.
    #[error("live mode: journal key: {0}")]
    JournalKey(gf_halt::Error),
}

/// The field of the credentials' secret set that may hold the journal key in live mode
/// (64 hex characters): the key then lives with the exchange credentials in the secret
/// provider, not in a file.
pub const JOURNAL_KEY_FIELD: &str = gf_secrets::env::JOURNAL_KEY_FIELD;

/// The journal key the secret provider holds for `set` (its [`JOURNAL_KEY_FIELD`]), or
/// `None` when the set has no such field (the key file is used then).
///
/// # Errors
/// [`LiveError::Credentials`] when the provider cannot be read; [`LiveError::JournalKey`]
/// when the field is not 64 hex characters (the value never appears in the message).
pub async fn journal_key_from_provider(
    provider: &dyn gf_secrets::SecretProvider,
    set: &str,
) -> Result<Option<gf_halt::JournalKey>, LiveError> {
    use secrecy::ExposeSecret as _;
    let secrets = provider.fetch(set).await?;
    secrets
        .get(JOURNAL_KEY_FIELD)
        .map(|value| {
            gf_halt::JournalKey::from_hex(
                &format!("secret set {set}, field {JOURNAL_KEY_FIELD}"),
                value.expose_secret(),
            )
            .map_err(LiveError::JournalKey)
        })
        .transpose()
}

impl From<gf_secrets::Error> for LiveError {
    fn from(e: gf_secrets::Error) -> Self {
        Self::Credentials(e)
    }
}

impl From<gf_exec::Error> for LiveError {
    fn from(e: gf_exec::Error) -> Self {
        Self::Exchange(e)
    }
}

impl From<gf_market::Error> for LiveError {
    fn from(e: gf_market::Error) -> Self {
        Self::Market(e)
    }
}

/// Tests candidate credentials with a signed private `Balance` call from a short-lived
/// probe client (it never touches the running client's state).
///
/// Kraken's nonces are per key. The startup probe shares the nonce file, read before the
/// main client exists, so its nonce is above everything sent before a restart and the
/// main client continues above it. Later probes test a *new* key version and keep their
/// nonces in memory: they follow the clock, so the main client's next nonce with the new
/// key (never below the clock) is higher.
struct BalanceCheck {
    cfg: KrakenConfig,
    clock: SharedClock,
    startup_nonce_file: Mutex<Option<PathBuf>>,
}

#[async_trait]
impl CredentialCheck for BalanceCheck {
    async fn check(&self, creds: Arc<Credentials>) -> Result<(), String> {
        let mut cfg = self.cfg.clone();
        cfg.nonce_file.clone_from(&self.startup_nonce_file.lock());
        let probe = KrakenClient::new(
            cfg,
            creds,
            Publisher::new(None, self.clock.clone(), Source::Exec),
        )
        .map_err(|e| e.to_string())?;
        probe
            .balances()
            .await
            .map(|_| ())
            .map_err(|e| format!("kraken balance call failed: {e}"))
    }
}

/// Hands credential audit records to gf-halt's hash-chained journal. Records made before
/// the journal is open (the startup load) are held and written when it is attached.
#[derive(Default)]
pub struct JournalAudit {
    state: Mutex<(Option<Arc<Journal>>, Vec<AuditRecord>)>,
}

impl std::fmt::Debug for JournalAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("JournalAudit")
            .field("attached", &state.0.is_some())
            .field("pending", &state.1.len())
            .finish()
    }
}

impl JournalAudit {
    /// Starts journaling into `journal`, writing the records held so far first.
    pub fn attach(&self, journal: Arc<Journal>) {
        let mut state = self.state.lock();
        for record in std::mem::take(&mut state.1) {
            Self::write(&journal, &record);
        }
        state.0 = Some(journal);
    }

    /// Records not yet written (made before [`JournalAudit::attach`]).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.state.lock().1.len()
    }

    fn write(journal: &Journal, record: &AuditRecord) {
        let detail = match serde_json::to_value(record) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(cause = %e, "serialising a credential audit record failed");
                return;
            }
        };
        if let Err(e) = journal.append(AUDIT_KIND, &record.actor, &detail) {
            tracing::error!(cause = %e, action = %record.action, "journaling a credential audit record failed");
        }
    }
}

impl AuditSink for JournalAudit {
    fn record(&self, record: &AuditRecord) {
        let mut state = self.state.lock();
        match &state.0 {
            Some(journal) => Self::write(journal, record),
            None => state.1.push(record.clone()),
        }
    }
}

/// The live venue: a connected, credentialed Kraken REST client and what the live tasks
/// need. Held by the [`Daemon`] in live mode.
pub struct Live {
    client: Arc<KrakenClient>,
    gate: TradingGate,
    exchange: Arc<dyn Exchange>,
    rotator: Arc<Rotator>,
    audit: Arc<JournalAudit>,
    bus: EventBus,
    balances: BTreeMap<String, Decimal>,
    rotation_poll: Option<Duration>,
    dead_man: Option<DeadManConfig>,
    market: ClientConfig,
    /// The private WebSocket's `executions` feed (fills pushed).
    executions: gf_exec::ExecutionsConfig,
    /// The running feed's state, once [`Live::spawn`] started it.
    fills_feed: Mutex<Option<tokio::sync::watch::Receiver<gf_exec::FeedState>>>,
    /// Kraken's trading mode, enforced by the gated exchange.
    venue: VenueMode,
    /// What start-up reconciliation found and did, journaled on attach.
    reconciliation: Mutex<Option<serde_json::Value>>,
    /// The journal key from the secret provider, when the credentials' set holds one.
    journal_key: Option<gf_halt::JournalKey>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("client", &self.client)
            .field(
                "credentials_version",
                &self.rotator.handle().current_version(),
            )
            .field("dead_man", &self.dead_man)
            .field("ws_url", &self.market.url)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// Loads the credentials (`[secrets]`, environment variables through `env`), tests
    /// them against `exchange.rest_url`, reads `AssetPairs` and `SystemStatus` (retried,
    /// [`retry_public`]) and the account balance, and reconciles the account
    /// ([`reconcile_startup`]). Nothing trades yet.
    ///
    /// # Errors
    /// [`LiveError::Credentials`] for provider `none`, a missing or malformed field (the
    /// message names it, never its value) or credentials the exchange refuses;
    /// [`LiveError::Exchange`] for an unusable REST setting, public calls that kept
    /// failing, a failed balance or order read, or an unknown order that could not be
    /// cancelled;
    /// [`LiveError::Market`] for an unusable `market.ws_url` or depth;
    /// [`LiveError::UnknownPairs`] when Kraken does not list a configured pair.
    pub async fn connect(
        config: &Config,
        clock: SharedClock,
        env: &EnvLookup,
        prompt: Prompt,
    ) -> Result<Self, LiveError> {
        let market = ClientConfig::from_market_config(&config.market);
        market.validate()?;
        let rest = KrakenConfig::from_config(config)?;
        let executions = gf_exec::ExecutionsConfig::from_config(config);
        executions.validate()?;
        std::fs::create_dir_all(&config.general.data_dir).map_err(|e| {
            gf_exec::Error::NonceFile {
                path: config.general.data_dir.display().to_string(),
                message: e.to_string(),
            }
        })?;
        let dead_man = DeadManConfig::from_config(&config.exchange)?;

        let bus = EventBus::new(1 << 16);
        let provider =
            gf_secrets::cli::provider_from_config(&config.secrets, env, clock.clone(), prompt)?;
        let audit = Arc::new(JournalAudit::default());
        let handle = Arc::new(RotatingCredentials::empty());
        let check = Arc::new(BalanceCheck {
            cfg: rest.clone(),
            clock: clock.clone(),
            startup_nonce_file: Mutex::new(rest.nonce_file.clone()),
        });
        let key_provider = Arc::clone(&provider);
        let rotator = Arc::new(Rotator::new(
            provider,
            config.secrets.set.clone(),
            handle.clone(),
            check.clone(),
            Auditor::new(clock.clone())
                .with_bus(bus.clone())
                .with_sink(audit.clone()),
        ));
        let outcome = rotator.load("startup").await?;
        *check.startup_nonce_file.lock() = None;
        tracing::info!(?outcome, set = %config.secrets.set, "kraken credentials loaded");
        let journal_key = journal_key_from_provider(&*key_provider, &config.secrets.set).await?;
        tracing::info!(
            from_provider = journal_key.is_some(),
            "journal key source: the secret provider when its set has `journal_key`, else the key file"
        );

        // Closed until the halt coordinator, which takes its opener, restores or resumes.
        let gate = TradingGate::new_closed();
        let client = Arc::new(
            KrakenClient::new(
                rest,
                handle,
                Publisher::new(Some(bus.clone()), clock.clone(), Source::Exec),
            )?
            .with_gate(gate.clone()),
        );
        // Nothing passes until Kraken said it trades: `SystemStatus` below sets the mode.
        let venue = VenueMode::new(ExchangeSystem::Unknown);
        let exchange: Arc<dyn Exchange> = Arc::new(
            Arc::clone(&client)
                .into_gated(Publisher::new(Some(bus.clone()), clock, Source::Exec))?
                .with_venue_mode(venue.clone()),
        );
        let mut backoff = gf_market::Backoff::new(STARTUP_BACKOFF, STARTUP_BACKOFF_MAX);
        // Kraken's names, precisions and minimums of the traded pairs.
        let listed = retry_public("AssetPairs", &mut backoff, || client.asset_pairs()).await?;
        let missing: Vec<String> = config
            .market
            .pairs
            .iter()
            .filter(|p| !listed.iter().any(|l| &l.pair == *p))
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(LiveError::UnknownPairs(missing));
        }
        let system = retry_public("SystemStatus", &mut backoff, || client.system_status()).await?;
        venue.set(system);
        if system == ExchangeSystem::Online {
            tracing::info!(%system, "kraken SystemStatus");
        } else {
            tracing::warn!(%system, "kraken is not online: orders are refused per its mode and maintenance halts");
        }
        let balances = client.balances().await?;
        let mut reconciliation = reconcile_startup(
            &client,
            config.exchange.unknown_orders,
            &config.market.pairs,
            &balances,
        )
        .await?;
        reconciliation["system_status"] = serde_json::json!(system);
        Ok(Self {
            client,
            gate,
            exchange,
            rotator,
            audit,
            bus,
            balances,
            rotation_poll: gf_secrets::cli::poll_interval(&config.secrets),
            dead_man,
            market,
            executions,
            fills_feed: Mutex::new(None),
            venue,
            reconciliation: Mutex::new(Some(reconciliation)),
            journal_key,
        })
    }

    /// The journal key held by the secret provider, if the credentials' set has one.
    #[must_use]
    pub fn journal_key(&self) -> Option<&gf_halt::JournalKey> {
        self.journal_key.as_ref()
    }

    /// Kraken's trading mode as last reported (`SystemStatus` at start, then the
    /// WebSocket `status` channel).
    #[must_use]
    pub fn exchange_status(&self) -> ExchangeSystem {
        self.venue.get()
    }

    /// How fills reach the daemon now: [`FillsPath::Pushed`] while the private WebSocket's
    /// `executions` feed is live, [`FillsPath::Polled`] while it is down (REST every
    /// [`ORDER_SYNC_EVERY`]) or before the live tasks started.
    #[must_use]
    pub fn fills_path(&self) -> FillsPath {
        match self.fills_feed.lock().as_ref() {
            Some(state) if state.borrow().live => FillsPath::Pushed,
            _ => FillsPath::Polled,
        }
    }

    /// The bus the client publishes on; the daemon is composed around it.
    #[must_use]
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The trading gate the REST client checks where each order is written (closed until
    /// the halt coordinator, given it, opens it).
    #[must_use]
    pub fn gate(&self) -> &TradingGate {
        &self.gate
    }

    /// The REST client behind its gate: every order the daemon places goes through it.
    #[must_use]
    pub fn exchange(&self) -> Arc<dyn Exchange> {
        Arc::clone(&self.exchange)
    }

    /// The account balances read at connect, by asset (`USD`, `XRP`, …).
    #[must_use]
    pub fn balances(&self) -> &BTreeMap<String, Decimal> {
        &self.balances
    }

    /// The portfolio settings of `config` with the starting cash taken from the account's
    /// balance of the quote currency instead of `exchange.paper_balances`. Holdings of the
    /// traded base assets become positions afterwards ([`Live::seed_positions`]); a
    /// restored risk snapshot's cash is set to the balance again ([`Live::seed_cash`]).
    #[must_use]
    pub fn portfolio_config(&self, config: &Config) -> PortfolioConfig {
        let mut cfg = PortfolioConfig::from_config(config);
        let quote = config
            .market
            .pairs
            .first()
            .map(|p| p.quote().to_owned())
            .unwrap_or_default();
        cfg.initial_cash = self
            .balances
            .get(&quote)
            .copied()
            .unwrap_or(Decimal::ZERO)
            .max(Decimal::ZERO);
        tracing::info!(cash = %cfg.initial_cash, quote = %quote, "starting cash from the kraken balance");
        cfg
    }

    /// Seeds the positions from the balances read at connect: the account's whole holding
    /// of each traded base asset is a position the daemon manages — the one a halt's
    /// closure sells — and the balance is the truth for its quantity at start. A position
    /// restored from the journal that agrees with the balance keeps its entry; one that
    /// differs is replaced (logged as a warning); a seeded holding's entry is its first
    /// price (gf-risk `portfolio`, "Seeded holdings"). What was found and done goes into
    /// the start-up reconciliation record as `positions`: call this after restoring the
    /// risk snapshot and before [`Live::attach_journal`].
    ///
    /// # Errors
    /// [`gf_risk::Error::InvalidHolding`] for a balance no holding can be (negative,
    /// absurd): nothing is seeded and live mode refuses to start.
    pub fn seed_positions(
        &self,
        portfolio: &gf_risk::SharedPortfolio,
    ) -> Result<Vec<gf_risk::SeedReport>, gf_risk::Error> {
        let (before, reports) = portfolio.write(|p| {
            let before: Vec<(gf_core::Pair, Decimal)> = p
                .pairs()
                .filter_map(|pair| Some((pair.clone(), p.position_qty(pair)?)))
                .collect();
            p.seed_holdings(&self.balances).map(|r| (before, r))
        })?;
        let mut found = Vec::new();
        for (pair, was) in before {
            let balance = self
                .balances
                .get(pair.base())
                .copied()
                .unwrap_or(Decimal::ZERO);
            let report = reports.iter().find(|r| r.pair == pair);
            let action = match report {
                None if was.is_zero() => continue,
                None => "kept",
                Some(_) if was.is_zero() => "seeded",
                Some(_) => "replaced",
            };
            if action == "replaced" {
                tracing::warn!(pair = %pair, balance = %balance, restored = %was, "the restored position differs from the kraken balance; the balance wins, its entry is the next price");
            } else {
                tracing::info!(pair = %pair, balance = %balance, action, "position from the kraken balance");
            }
            found.push(serde_json::json!({
                "pair": pair,
                "balance": balance,
                "portfolio_before": was,
                "action": action,
                "replaced_avg_entry": report.and_then(|r| r.replaced_avg_entry),
            }));
        }
        if let Some(record) = self.reconciliation.lock().as_mut() {
            record["positions"] = serde_json::Value::Array(found);
        }
        Ok(reports)
    }

    /// Sets the portfolio's cash to the account's balance of the quote currency read at
    /// connect (zero when the account has none): the balance is the truth at start, over
    /// a restored risk snapshot. A difference — a deposit, a withdrawal, fees or a fill
    /// the daemon did not see while it was down — is replaced (logged as a warning) as a
    /// deposit or withdrawal, not P&L: initial, peak and start-of-day equity move with it
    /// (gf-risk [`gf_risk::Portfolio::seed_cash`]). What was found and done goes into the
    /// start-up reconciliation record as `cash`: call this after restoring the risk
    /// snapshot and before [`Live::attach_journal`].
    ///
    /// # Errors
    /// [`gf_risk::Error::InvalidBalance`] for a balance no cash can be (negative, absurd):
    /// the cash is unchanged and live mode refuses to start.
    pub fn seed_cash(
        &self,
        portfolio: &gf_risk::SharedPortfolio,
    ) -> Result<Option<gf_risk::CashReport>, gf_risk::Error> {
        let (currency, before, report) = portfolio.write(|p| {
            let currency = p.quote().to_owned();
            let before = p.cash();
            let balance = self
                .balances
                .get(&currency)
                .copied()
                .unwrap_or(Decimal::ZERO);
            p.seed_cash(balance).map(|r| (currency, before, r))
        })?;
        let balance = report.as_ref().map_or(before, |r| r.cash_after);
        let action = if report.is_some() {
            tracing::warn!(currency = %currency, balance = %balance, restored = %before, "the restored cash differs from the kraken balance; the balance wins (a deposit or withdrawal, not P&L)");
            "replaced"
        } else {
            tracing::info!(currency = %currency, balance = %balance, "cash agrees with the kraken balance");
            "kept"
        };
        if let Some(record) = self.reconciliation.lock().as_mut() {
            record["cash"] = serde_json::json!({
                "currency": currency,
                "balance": balance,
                "portfolio_before": before,
                "action": action,
            });
        }
        Ok(report)
    }

    /// Journals credential audit records into `journal` from now on (and those of the
    /// startup load), after the start-up reconciliation record.
    pub fn attach_journal(&self, journal: Arc<Journal>) {
        if let Some(found) = self.reconciliation.lock().take()
            && let Err(e) = journal.append(RECONCILIATION_KIND, "startup", &found)
        {
            tracing::error!(cause = %e, "journaling the start-up reconciliation failed");
        }
        self.audit.attach(journal);
    }

    /// Manual rotation (`gf-daemon secrets rotate`): fetches the provider's current
    /// version, validates it and tests it against the exchange, and only then swaps it in;
    /// a failure keeps the credentials in force, raises an alert and is returned.
    ///
    /// # Errors
    /// The provider's, the validation's or the exchange check's error.
    pub async fn rotate_now(&self, actor: &str) -> Result<RotationOutcome, gf_secrets::Error> {
        self.rotator.rotate_now(actor, true).await
    }

    /// The credential handle's current version (provider-specific; `None` for env).
    #[must_use]
    pub fn credentials_version(&self) -> Option<String> {
        self.rotator.handle().current_version()
    }

    /// Starts the live tasks for `daemon` under `sup` (a task that dies halts the daemon);
    /// each stops when `daemon.shutdown` is cancelled: the WebSocket market source
    /// (`market_ws`), the private WebSocket's `executions` feed (`executions`), the REST
    /// order-status sync as its fallback (`order_sync`), the dead man's switch keeper
    /// (`dead_man`, disarmed on shutdown if `exchange.disarm_on_shutdown`) and the rotation
    /// watcher (`rotation`).
    #[must_use]
    pub fn spawn(&self, daemon: &Daemon, sup: &Supervisor) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let token = daemon.shutdown.clone();

        // Kraken's own status: `maintenance` (or an undocumented mode) halts, and resume is
        // refused until it is `online` again; every report also sets the mode the gated
        // exchange enforces, then goes to the halt coordinator (whose bus subscription was
        // made before this condition existed). The start-up reading goes first.
        let initial = self.venue.get();
        daemon.halt.register_condition(
            Box::new(gf_halt::condition::ExchangeStatus::new(
                initial,
                "rest SystemStatus at start-up",
            )),
            daemon.config.halt.behaviour,
        );
        let mut statuses = daemon
            .bus
            .subscribe(KindSet::of(&[EventKind::ExchangeStatus]));
        daemon.bus.publish(Event::new(
            daemon.clock.now(),
            Source::Exec,
            Payload::ExchangeStatus {
                system: initial,
                detail: "rest SystemStatus at start-up".into(),
            },
        ));
        tasks.push(sup.spawn("exchange_status", Ending::AtShutdown, {
            let (venue, token, halt) = (self.venue.clone(), token.clone(), daemon.halt.clone());
            async move {
                loop {
                    tokio::select! {
                        biased;
                        () = token.cancelled() => return Ok(()),
                        ev = statuses.recv() => match ev {
                            Ok(ev) => {
                                if let Payload::ExchangeStatus { system, detail } = &ev.payload {
                                    if venue.get() != *system {
                                        tracing::warn!(%system, %detail, "kraken trading mode changed");
                                    }
                                    venue.set(*system);
                                    halt.on_event(&ev).await;
                                }
                            }
                            // A lossless kind: a lag skips only other kinds' events.
                            Err(gf_core::bus::RecvError::Lagged { .. }) => {}
                            // A closed bus ends the daemon; fail closed until then.
                            Err(e @ gf_core::bus::RecvError::Closed) => {
                                venue.set(ExchangeSystem::Unknown);
                                anyhow::bail!("exchange status subscription ended: {e}");
                            }
                        },
                    }
                }
            }
        }));

        // Market data from the Kraken WebSocket.
        tasks.push(sup.spawn("market_ws", Ending::AtShutdown, {
            let cfg = self.market.clone();
            let (bus, clock, token) = (daemon.bus.clone(), daemon.clock.clone(), token.clone());
            let latency = crate::app::latency_sink(daemon);
            async move {
                let mut source = gf_market::MarketClient::new(cfg)
                    .context("kraken websocket source")?
                    .with_latency(latency);
                let stats = source
                    .run(bus, clock, token)
                    .await
                    .context("kraken websocket source")?;
                tracing::info!(?stats, "kraken websocket source stopped");
                Ok(())
            }
        }));

        // Executions → fills and order updates on the bus: pushed by the private
        // WebSocket's `executions` channel; REST polling every second while it is down,
        // rarely while it is live. Both apply cumulative reports: a fill is published once.
        match gf_exec::ExecutionsFeed::new(Arc::clone(&self.client), self.executions.clone()) {
            Ok(feed) => {
                *self.fills_feed.lock() = Some(feed.state());
                let sync = self.client.spawn_sync_fallback(
                    feed.state(),
                    gf_exec::SyncPlan {
                        while_down: ORDER_SYNC_EVERY,
                        while_live: ORDER_SYNC_LIVE_EVERY,
                    },
                );
                tasks.push(sup.watch_abort_at_shutdown("order_sync", sync));
                tasks.push(sup.spawn("executions", Ending::AtShutdown, {
                    let token = token.clone();
                    async move {
                        tokio::select! {
                            () = token.cancelled() => Ok(()),
                            () = feed.run() => anyhow::bail!("kraken executions feed ended"),
                        }
                    }
                }));
            }
            // Validated at connect; should it fail here, poll every second as before.
            Err(e) => {
                tracing::error!(cause = %e, "kraken executions feed unusable; fills are polled");
                let sync = self.client.spawn_order_sync(ORDER_SYNC_EVERY);
                tasks.push(sup.watch_abort_at_shutdown("order_sync", sync));
            }
        }

        // The exchange-side dead man's switch, refreshed while the daemon lives, halted or
        // not (docs/runbook.md, "Going live"), disarmed at a clean shutdown if configured.
        if let Some(cfg) = self.dead_man {
            let mut keeper = DeadManSwitch::spawn(
                daemon.exchange.clone(),
                cfg,
                Publisher::new(Some(daemon.bus.clone()), daemon.clock.clone(), Source::Exec),
            );
            // The keeper's own task is watched too: should it die, the switch is no longer
            // refreshed, and that is a failed task (`auto:task_failed:dead_man`).
            tasks.push(sup.spawn("dead_man", Ending::AtShutdown, {
                let token = token.clone();
                async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        why = keeper.stopped() => anyhow::bail!("dead man's switch keeper ended: {why}"),
                    }
                    if let Err(e) = keeper.shutdown().await {
                        tracing::warn!(cause = %e, "disarming the dead man's switch failed");
                    }
                    Ok(())
                }
            }));
        } else {
            tracing::warn!("exchange.dead_man_switch_secs is 0: resting orders outlive a crash");
        }

        // Credential rotation.
        if let Some(every) = self.rotation_poll {
            let mut watcher = Arc::clone(&self.rotator).spawn(every, token.clone());
            tasks.push(sup.spawn("rotation", Ending::AtShutdown, async move {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = watcher.ended() => anyhow::bail!("credential rotation watcher ended"),
                }
                watcher.join().await;
                Ok(())
            }));
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{ManualClock, SystemClock};
    use gf_exec::sim::{DEFAULT_SECRET_B64, MockConfig, MockKraken};
    use gf_secrets::SecretSet;

    const KEY: &str = "GfLiveUnitMockKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn credentials() -> Arc<Credentials> {
        let set = SecretSet::new("kraken", "env", None)
            .with("api_key", KEY)
            .with("api_secret", DEFAULT_SECRET_B64);
        Arc::new(Credentials::from_set(&set).unwrap())
    }

    /// A previous run left nonces ahead of the clock (e.g. an older version, or a clock set
    /// back). The startup probe reads the nonce file, so Kraken accepts it, and
    /// the main client created after it continues above it; later probes (new key
    /// versions) follow the clock and do not touch the file.
    #[tokio::test]
    async fn startup_probe_shares_the_nonce_file_and_the_main_client_stays_above_it() {
        let clock: SharedClock = Arc::new(SystemClock);
        let server = MockKraken::start(MockConfig {
            api_key: KEY.into(),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let nonce_file = dir.path().join("kraken.nonce");
        let ahead = u64::try_from(clock.now().timestamp_micros()).unwrap() + 60_000_000;
        std::fs::write(&nonce_file, ahead.to_string()).unwrap();
        let mut cfg = KrakenConfig::new(server.url());
        cfg.nonce_file = Some(nonce_file.clone());
        let quiet = || Publisher::new(None, clock.clone(), Source::Exec);

        // The previous run's last call, a minute ahead of the clock.
        let previous = KrakenClient::new(cfg.clone(), credentials(), quiet()).unwrap();
        previous.balances().await.unwrap();
        drop(previous);

        let check = BalanceCheck {
            cfg: cfg.clone(),
            clock: clock.clone(),
            startup_nonce_file: Mutex::new(Some(nonce_file.clone())),
        };
        check.check(credentials()).await.unwrap();
        *check.startup_nonce_file.lock() = None;
        let main = KrakenClient::new(cfg, credentials(), quiet()).unwrap();
        main.balances().await.unwrap();

        // A clock-following probe is now below what the key has used: Kraken says so, and
        // the probe did not move the file the main client relies on.
        let reserved = std::fs::read_to_string(&nonce_file).unwrap();
        let err = check.check(credentials()).await.unwrap_err();
        assert!(err.contains("EAPI:Invalid nonce"), "{err}");
        assert_eq!(std::fs::read_to_string(&nonce_file).unwrap(), reserved);
        main.balances().await.unwrap();
        let outcomes: Vec<String> = server.requests().into_iter().map(|r| r.outcome).collect();
        // previous, startup probe, main; the late probe (with the client's retries); main.
        let (first, rest) = outcomes.split_at(3);
        let (last, refused) = rest.split_last().unwrap();
        assert_eq!(
            (first, last.as_str()),
            (&["ok", "ok", "ok"].map(String::from)[..], "ok")
        );
        assert!(
            !refused.is_empty() && refused.iter().all(|o| o == "EAPI:Invalid nonce"),
            "{outcomes:?}"
        );
        server.shutdown().await;
    }

    /// Retryable failures are retried with the backoff up to [`STARTUP_ATTEMPTS`] times;
    /// one that retrying cannot fix returns at once; a success ends the retries.
    #[tokio::test(start_paused = true)]
    async fn start_up_calls_are_retried_with_backoff_then_given_up() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let backoff = || gf_market::Backoff::with_seed(STARTUP_BACKOFF, STARTUP_BACKOFF_MAX, 7);
        let down = || gf_exec::Error::Network {
            endpoint: "AssetPairs".into(),
            message: "connection refused".into(),
        };

        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retry_public("AssetPairs", &mut backoff(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(down()) }
        })
        .await;
        assert!(matches!(result, Err(gf_exec::Error::Network { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), STARTUP_ATTEMPTS);
        assert!(started.elapsed() <= STARTUP_BACKOFF_MAX * STARTUP_ATTEMPTS);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_public("AssetPairs", &mut backoff(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(gf_exec::Error::UnknownOrder("x".into())) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retryable: tried once");

        let calls = AtomicU32::new(0);
        let result = retry_public("AssetPairs", &mut backoff(), || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(down()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 2, "the third attempt succeeded");
    }

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            ts: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            actor: "startup".into(),
            set: "kraken".into(),
            provider: "env".into(),
            version: None,
            action: action.into(),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn audit_records_wait_for_the_journal_then_go_into_it_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(
            Journal::open(
                &dir.path().join("j.sqlite"),
                Arc::new(ManualClock::default()),
                gf_halt::JournalKey::random(),
            )
            .unwrap(),
        );
        let sink = JournalAudit::default();
        sink.record(&record("fetch"));
        sink.record(&record("load"));
        assert_eq!(sink.pending(), 2);
        assert_eq!(journal.len().unwrap(), 0);

        sink.attach(journal.clone());
        sink.record(&record("rotate"));
        assert_eq!(sink.pending(), 0);
        let actions: Vec<String> = journal
            .records(10)
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == AUDIT_KIND && r.actor == "startup")
            .map(|r| r.detail["action"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(actions, ["fetch", "load", "rotate"]);
        journal.verify().unwrap();
    }
}
