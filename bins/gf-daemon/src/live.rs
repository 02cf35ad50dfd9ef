//! Live mode (`gf-daemon launch --live`): credentials from gf-secrets, the Kraken REST
//! client behind the order gate, the Kraken WebSocket market source, the dead man's switch
//! and the rotation watcher.
//!
//! [`Live::connect`] runs before the daemon is composed: it builds the configured secret
//! provider, loads and validates the credentials and tests them with a signed private
//! `Balance` call (refusing to start when any of that fails), builds the REST client that
//! reads the credentials through the rotating handle on every request and checks the
//! venue's [`gf_core::TradingGate`] (closed until the halt coordinator opens it) where
//! each order is written, learns the pairs' names and precisions (`AssetPairs`), and
//! reads the account balance that seeds the portfolio's starting cash. [`crate::app`]
//! then composes the daemon around that gate and the gated exchange [`Live::exchange`]
//! hands out (there is no accessor to the ungated client), and
//! [`Live::spawn`] starts the live tasks: the WebSocket source for `market.pairs`, the
//! order-status sync that turns executions into fills, the dead man's switch keeper
//! (`exchange.dead_man_switch_secs`) and the rotation watcher. Every credential access and
//! rotation is journaled through [`JournalAudit`].
//!
//! Operators: give the API key a *nonce window* on Kraken. Several tasks sign at once
//! (strategy, halt, order sync, dead man's switch, health check); nonces are strictly
//! increasing when signed, but two requests may reach Kraken in the opposite order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use gf_core::{Config, EventBus, SharedClock, Source, TradingGate};
use gf_exec::events::Publisher;
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
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use gf_secrets::env::{EnvLookup, env_from_pairs, process_env};

use crate::app::Daemon;
use crate::supervise::{Ending, Supervisor};

/// How often the orders this daemon placed are polled for executions (`QueryOrders`; only
/// while some are still open, so an idle daemon spends nothing on it).
pub const ORDER_SYNC_EVERY: Duration = Duration::from_secs(1);

/// Journal record kind of a credential access or rotation.
pub const AUDIT_KIND: &str = "credential_audit";

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
    /// them against `exchange.rest_url`, and reads the account balance. Nothing trades yet.
    ///
    /// # Errors
    /// [`LiveError::Credentials`] for provider `none`, a missing or malformed field (the
    /// message names it, never its value) or credentials the exchange refuses;
    /// [`LiveError::Exchange`] for an unusable REST setting or a failed balance call;
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
        let exchange: Arc<dyn Exchange> =
            Arc::new(Arc::clone(&client).into_gated(Publisher::new(
                Some(bus.clone()),
                clock,
                Source::Exec,
            ))?);
        // Kraken's names, precisions and minimums of the traded pairs.
        let listed = client.asset_pairs().await?;
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
        let balances = client.balances().await?;
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
        })
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
    /// traded base assets are not positions the daemon opened; they are logged, not
    /// managed (a halt does not sell them).
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
        for pair in &config.market.pairs {
            if let Some(held) = self.balances.get(pair.base()).filter(|q| !q.is_zero()) {
                tracing::warn!(pair = %pair, held = %held, "the account already holds the base asset; the daemon does not manage it");
            }
        }
        tracing::info!(cash = %cfg.initial_cash, quote = %quote, "starting cash from the kraken balance");
        cfg
    }

    /// Journals credential audit records into `journal` from now on (and those of the
    /// startup load).
    pub fn attach_journal(&self, journal: Arc<Journal>) {
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
    /// (`market_ws`), the order-status sync (`order_sync`), the dead man's switch keeper
    /// (`dead_man`, disarmed on shutdown if `exchange.disarm_on_shutdown`) and the rotation
    /// watcher (`rotation`).
    #[must_use]
    pub fn spawn(&self, daemon: &Daemon, sup: &Supervisor) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let token = daemon.shutdown.clone();

        // Market data from the Kraken WebSocket.
        tasks.push(sup.spawn("market_ws", Ending::AtShutdown, {
            let cfg = self.market.clone();
            let (bus, clock, token) = (daemon.bus.clone(), daemon.clock.clone(), token.clone());
            async move {
                let mut source =
                    gf_market::KrakenClient::new(cfg).context("kraken websocket source")?;
                let stats = source
                    .run(bus, clock, token)
                    .await
                    .context("kraken websocket source")?;
                tracing::info!(?stats, "kraken websocket source stopped");
                Ok(())
            }
        }));

        // Executions → fills and order updates on the bus.
        let sync = self.client.spawn_order_sync(ORDER_SYNC_EVERY);
        tasks.push(sup.watch_abort_at_shutdown("order_sync", sync));

        // The exchange-side dead man's switch, armed while the gate is open.
        if let Some(cfg) = self.dead_man {
            let keeper = DeadManSwitch::spawn(
                daemon.exchange.clone(),
                daemon.gate.clone(),
                cfg,
                Publisher::new(Some(daemon.bus.clone()), daemon.clock.clone(), Source::Exec),
            );
            tasks.push(sup.spawn("dead_man", Ending::AtShutdown, {
                let token = token.clone();
                async move {
                    token.cancelled().await;
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
            let (stop_tx, stop_rx) = broadcast::channel(1);
            let watcher = Arc::clone(&self.rotator).spawn(every, stop_rx);
            tasks.push(sup.spawn("rotation", Ending::AtShutdown, async move {
                token.cancelled().await;
                let _ = stop_tx.send(());
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

    /// A previous run left nonces far ahead of the clock (restarts in quick succession
    /// reserve ahead). The startup probe reads the nonce file, so Kraken accepts it, and
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
