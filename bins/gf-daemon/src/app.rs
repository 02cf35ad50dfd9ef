//! `launch`: composes every crate into the running daemon.
//!
//! Paper mode (the embedded default): a replayed recording → gf-market's book code → the
//! bus → gf-risk (marks, P&L, drawdown), the paper exchange (fills), gf-halt (conditions),
//! gf-monitor (metrics, alerts, health) and the strategy runner (signals → sizing →
//! pre-trade checks → the gated exchange). The API serves all of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gf_core::{
    Config, EventBus, EventKind, KindSet, Mode, SharedClock, Source, SystemClock, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::{Exchange, GatedExchange, PaperConfig, PaperExchange};
use gf_halt::HaltCoordinator;
use gf_monitor::health::{CheckOutcome, FnCheck};
use gf_monitor::{Monitor, MonitorBuilder};
use gf_risk::{Portfolio, SharedPortfolio};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::auth::{Role, TokenStore};
use gf_strategy::{OrderIds, SignalExecutor, Strategy, StrategyKind};

/// Which bundled market scenario paper mode replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scenario {
    /// A quiet five minutes, looped; the example EMA-crossover strategy trades it.
    #[default]
    Normal,
    /// Two quiet minutes, then a 26 % slide; a buy-and-hold strategy is caught in it and
    /// the daily-drawdown condition halts and flattens.
    Crash,
    /// A feed gap longer than the staleness limit: the staleness condition halts.
    Gap,
}

impl Scenario {
    /// The bundled recording it replays, and its file name under `fixtures/market`.
    #[must_use]
    pub fn recording(self) -> (&'static str, &'static [u8]) {
        match self {
            Self::Normal => ("paper.jsonl", gf_market::bundled::PAPER),
            Self::Crash => ("crash.jsonl", gf_market::bundled::CRASH),
            Self::Gap => ("gap.jsonl", gf_market::bundled::GAP),
        }
    }

    /// The example strategy it runs unless one is chosen.
    #[must_use]
    pub fn strategy(self) -> StrategyKind {
        match self {
            Self::Crash => StrategyKind::HoldLong,
            Self::Normal | Self::Gap => StrategyKind::EmaCross,
        }
    }
}

/// How to launch.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The effective configuration.
    pub config: Config,
    /// Paper scenario.
    pub scenario: Scenario,
    /// Print the banner (where to look, the generated token) to stdout.
    pub banner: bool,
}

/// Everything the API reads and drives. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// The event bus.
    pub bus: EventBus,
    /// The clock.
    pub clock: SharedClock,
    /// The order gate.
    pub gate: TradingGate,
    /// Portfolio and pre-trade checks.
    pub portfolio: SharedPortfolio,
    /// The halt coordinator.
    pub halt: HaltCoordinator,
    /// Metrics, alerts, health.
    pub monitor: Arc<Monitor>,
    /// The gated exchange every order goes through.
    pub exchange: Arc<dyn Exchange>,
    /// API tokens.
    pub tokens: Arc<RwLock<TokenStore>>,
    /// The order gateway: external strategies' orders (`trader` tokens).
    pub gateway: crate::gateway::Gateway,
    /// Shutdown signal for every task.
    pub shutdown: CancellationToken,
    /// Live mode: the Kraken venue the live tasks run on (`None` in paper mode).
    pub live: Option<Arc<crate::live::Live>>,
    /// The supervised tasks and their states (the `tasks` health check reads it).
    pub tasks: crate::supervise::TaskHealth,
    /// This node's membership of the fleet (`[fleet]`; `None` when off).
    pub fleet: Option<gf_fleet::Fleet>,
    /// Paper mode: the paper exchange's book feed, spawned by [`build_with`] and handed to
    /// the supervisor by [`spawn_tasks`] (its fills depend on it).
    paper_feed: Arc<parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("halt", &self.halt)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

/// The journal database inside the data directory.
#[must_use]
pub fn journal_path(data_dir: &Path) -> PathBuf {
    gf_halt::datadir::journal_path(data_dir)
}

/// Where the journal key file and the witness directory are: `[journal]` or the
/// defaults under `$XDG_CONFIG_HOME` / `$HOME/.config` (read from the process
/// environment).
///
/// # Errors
/// When neither is configured and no home directory is known.
pub fn journal_key_and_witness(config: &Config) -> Result<(PathBuf, PathBuf)> {
    let env = |k: &str| std::env::var(k).ok();
    let key = config.journal.key_file_path(env).context(
        "journal.key_file is not set and neither XDG_CONFIG_HOME nor HOME is: set [journal] key_file and witness_dir",
    )?;
    let witness = config
        .journal
        .witness_dir_path(env)
        .context("journal.witness_dir is not set and neither XDG_CONFIG_HOME nor HOME is")?;
    Ok((key, witness))
}

/// The journal key the offline tools (`journal verify|adopt`) use: in live mode the
/// secret provider's `journal_key` when the credentials' set has one, else the key file
/// (`create`: made when missing, as `journal adopt` does).
///
/// # Errors
/// The provider cannot be read or its key is malformed; the key file is refused.
pub async fn journal_key_for(
    config: &Config,
    env: &gf_secrets::env::EnvLookup,
    create: bool,
) -> Result<gf_halt::JournalKey> {
    if config.general.mode == Mode::Live {
        let clock: SharedClock = Arc::new(SystemClock);
        let provider = gf_secrets::cli::provider_from_config(
            &config.secrets,
            env,
            clock,
            gf_secrets::cli::Prompt::IfTerminal,
        )?;
        if let Some(key) =
            crate::live::journal_key_from_provider(&*provider, &config.secrets.set).await?
        {
            return Ok(key);
        }
    }
    let (key_file, _) = journal_key_and_witness(config)?;
    gf_halt::DataDir::inspect(&config.general.data_dir)?
        .refuse_inside("journal.key_file", &key_file)?;
    Ok(if create {
        gf_halt::JournalKey::load_or_create(&key_file)?
    } else {
        gf_halt::JournalKey::load(&key_file)?
    })
}

/// Opens the daemon's journal: creates the data directory (mode `0700`) and takes its
/// lock (refusing, with the holder's pid, when another daemon has it), reads (or creates
/// on the first launch) the journal key outside the data directory, and opens the journal
/// bound to the directory's identity and witness. The lock is held as long as the journal
/// lives.
///
/// # Errors
/// Another daemon on the directory; a key file that is missing its permissions, malformed
/// or inside the data directory; a witness directory inside it; an unreadable journal
/// (or one of the old unkeyed format, which `gf-daemon journal adopt` archives).
pub fn open_journal(config: &Config, clock: SharedClock) -> Result<Arc<gf_halt::Journal>> {
    open_journal_with(config, clock, None)
}

/// As [`open_journal`], with the key given (live mode: from the secret provider) instead
/// of read from `journal.key_file`.
///
/// # Errors
/// As [`open_journal`].
pub fn open_journal_with(
    config: &Config,
    clock: SharedClock,
    key: Option<gf_halt::JournalKey>,
) -> Result<Arc<gf_halt::Journal>> {
    let data_dir = &config.general.data_dir;
    let dir = gf_halt::DataDir::open(data_dir, clock.now())?;
    let (key_file, witness_dir) = journal_key_and_witness(config)?;
    let key = match key {
        Some(key) => key,
        None => {
            dir.refuse_inside("journal.key_file", &key_file)?;
            gf_halt::JournalKey::load_or_create(&key_file)?
        }
    };
    let journal = gf_halt::Journal::open_data_dir(dir, clock, key, &witness_dir)
        .with_context(|| format!("opening the journal in {}", data_dir.display()))?;
    Ok(Arc::new(journal))
}

/// Builds the daemon (paper mode) without starting any task: the composition the API and
/// the tests use. Restores halt state and the risk snapshot from the journal.
///
/// # Errors
/// When the data directory, the journal or a component cannot be set up.
pub fn build(config: Config, clock: SharedClock) -> Result<(Daemon, Option<String>)> {
    build_with(config, clock, None)
}

/// As [`build`]; in live mode around the venue [`crate::live::Live::connect`] returned
/// (its REST client behind the gate, its bus, the account's cash), which [`start`] does.
///
/// # Errors
/// As [`build`], and when a venue is given in paper mode or missing in live mode.
pub fn build_with(
    config: Config,
    clock: SharedClock,
    live: Option<crate::live::Live>,
) -> Result<(Daemon, Option<String>)> {
    if (config.general.mode == Mode::Live) != live.is_some() {
        bail!(
            "live mode is built around a connected Kraken venue (app::start connects it) and paper mode without one"
        );
    }
    let data_dir = config.general.data_dir.clone();
    // First: the data directory's lock (one daemon per directory), key, witness, journal.
    let journal = open_journal_with(
        &config,
        clock.clone(),
        live.as_ref().and_then(|l| l.journal_key().cloned()),
    )?;

    let mut tokens = TokenStore::open(&data_dir)?;
    let new_token = if tokens.has_role(Role::Operator) {
        None
    } else {
        Some(tokens.create("operator", Role::Operator, &clock.now().to_rfc3339())?)
    };

    let bus = live
        .as_ref()
        .map_or_else(|| EventBus::new(1 << 16), |l| l.bus().clone());
    // Closed until the halt coordinator (which takes its opener) restores or resumes.
    let gate = live
        .as_ref()
        .map_or_else(TradingGate::new_closed, |l| l.gate().clone());
    let limits = gf_risk::RiskLimits::from_config(&config.risk)?;
    let portfolio_cfg = match &live {
        Some(l) => l.portfolio_config(&config),
        None => gf_risk::PortfolioConfig::from_config(&config),
    };
    let portfolio = SharedPortfolio::new(Portfolio::new(portfolio_cfg, clock.clone())?, limits);

    // The journal comes first so that a restored risk snapshot also seeds the paper balances.
    let restored = journal.load_risk_snapshot()?;
    let had_snapshot = restored.is_some();
    let mut paper_cfg = PaperConfig::from_config(&config.exchange);
    if let Some(snap) = restored {
        let restored = Portfolio::restore_json(&snap.to_string(), clock.clone())
            .context("restoring the risk snapshot from the journal")?;
        paper_cfg.balances = restored.balances();
        portfolio.write(|p| *p = restored);
        tracing::info!("restored portfolio and drawdowns from the journal");
    }
    // Positions from what the account holds of each traded base asset (the closure sells
    // by balance; the risk figures see the same holding). Live: the exchange's balances
    // are the truth at start, for the positions and for the cash, over a restored snapshot
    // (journaled with the reconciliation).
    // Paper: `exchange.paper_balances` on a fresh start (a snapshot holds the paper
    // balances itself).
    if let Some(l) = &live {
        l.seed_positions(&portfolio)
            .context("seeding positions from the kraken balances")?;
        l.seed_cash(&portfolio)
            .context("seeding the cash from the kraken balance")?;
    } else if !had_snapshot {
        let seeded = portfolio
            .write(|p| p.seed_holdings(&config.exchange.paper_balances))
            .context("seeding positions from exchange.paper_balances")?;
        for r in &seeded {
            tracing::info!(pair = %r.pair, qty = %r.qty_after, "paper position seeded from exchange.paper_balances");
        }
    }

    let paper_feed = Arc::new(parking_lot::Mutex::new(None));
    let exchange: Arc<dyn Exchange> = if let Some(l) = &live {
        // Gated at the wire by the client itself, on the same gate.
        l.exchange()
    } else {
        let paper = Arc::new(PaperExchange::new(
            paper_cfg,
            Publisher::new(Some(bus.clone()), clock.clone(), Source::Paper),
        ));
        *paper_feed.lock() = Some(paper.spawn_feed(&bus));
        Arc::new(GatedExchange::new(
            paper,
            gate.clone(),
            Publisher::new(Some(bus.clone()), clock.clone(), Source::Exec),
        ))
    };

    let view: Arc<dyn gf_risk::PortfolioView> = Arc::new(portfolio.clone());
    let halt = HaltCoordinator::builder(&config.halt, journal, gate.clone())
        .exchange(exchange.clone())
        .portfolio(view.clone())
        .bus(bus.clone())
        .clock(clock.clone())
        // A halt waits this long for orders already on the wire before it reconciles them.
        .exchange_timeout(Duration::from_millis(config.exchange.timeout_ms))
        .watch_pairs(&config.market.pairs)
        .open()?;
    if config.journal.min_free_disk_mb > 0 {
        // Halt while the journal can still record it, not once the disk is full.
        let dir = data_dir.clone();
        halt.register_condition(
            Box::new(gf_halt::DiskSpace::new(
                config.journal.min_free_disk_mb,
                Box::new(move || gf_monitor::system::free_space(&dir)),
            )),
            config.halt.behaviour,
        );
    }
    if let Some(l) = &live {
        l.attach_journal(halt.journal().clone());
    }

    let ex = exchange.clone();
    let answering = if live.is_some() {
        "kraken answering signed calls"
    } else {
        "paper exchange answering"
    };
    let journal = halt.journal().clone();
    let journal_status = halt.clone();
    let tasks = crate::supervise::TaskHealth::new();
    let monitor = MonitorBuilder::new(&config.monitor, clock.clone())
        .bus(bus.clone())
        .portfolio(view)
        .data_dir(&data_dir)
        .market_pairs(
            config.market.pairs.clone(),
            Duration::from_secs(config.market.staleness_secs),
        )
        .check(Arc::new(FnCheck::new("exchange", move || {
            let ex = ex.clone();
            async move {
                match ex.check().await {
                    Ok(()) => CheckOutcome::healthy(answering),
                    Err(e) => CheckOutcome::unhealthy(e.to_string()),
                }
            }
        })))
        .check(Arc::new(FnCheck::new("journal", move || {
            let journal = journal.clone();
            let problem = journal_status.status().journal_problem;
            async move {
                // A journal that could not be written (or failed verification) is not
                // ready, whatever it answers now.
                if let Some(p) = problem {
                    return CheckOutcome::unhealthy(p);
                }
                match tokio::task::spawn_blocking(move || journal.len()).await {
                    Ok(Ok(n)) => CheckOutcome::healthy(format!("{n} records")),
                    Ok(Err(e)) => CheckOutcome::unhealthy(e.to_string()),
                    Err(e) => CheckOutcome::unhealthy(e.to_string()),
                }
            }
        })))
        .check(tasks.check())
        .build()?;
    // The journal's head as a metric (`gf_journal_head_id`), updated on every commit.
    let metrics = monitor.metrics().clone();
    halt.journal()
        .observe_head(move |id| metrics.set_journal_head(id));

    // The gateway re-reads its journal records: a trader's retry after a restart still
    // finds its first result.
    let gateway = crate::gateway::Gateway::new(
        config.gateway.clone(),
        clock.clone(),
        bus.clone(),
        portfolio.clone(),
        halt.clone(),
        exchange.clone(),
    )
    .with_metrics(monitor.metrics().clone());
    let restored = gateway
        .restore()
        .context("reading the order gateway's records from the journal")?;
    if restored > 0 {
        tracing::info!(
            restored,
            "order gateway: client order ids restored from the journal"
        );
    }

    Ok((
        Daemon {
            gateway,
            config: Arc::new(config),
            bus,
            clock,
            gate,
            portfolio,
            halt,
            monitor: Arc::new(monitor),
            exchange,
            tokens: Arc::new(RwLock::new(tokens)),
            shutdown: CancellationToken::new(),
            live: live.map(Arc::new),
            tasks,
            fleet: None,
            paper_feed,
        },
        new_token,
    ))
}

/// Starts the background tasks — market replay (or the live venue's tasks), risk, halt
/// conditions, monitor, strategy, risk snapshots, the token-file watcher — each under the
/// [`Supervisor`](crate::supervise::Supervisor): a task that panics, fails or ends while
/// the daemon is not shutting down halts it (`auto:task_failed:<name>`) and fails
/// `/readyz`. Only a replay that is not looped may finish on its own. Returns the
/// supervisors' handles; the tasks stop when `daemon.shutdown` is cancelled.
pub fn spawn_tasks(
    daemon: &Daemon,
    scenario: Scenario,
    strategy: Box<dyn Strategy>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use crate::supervise::{Ending, Supervisor};
    let sup = Supervisor::for_daemon(daemon);
    // Once a task has failed, resume is refused until the daemon restarts.
    daemon.halt.register_condition(
        Box::new(daemon.tasks.condition()),
        daemon.config.halt.behaviour,
    );
    let mut tasks = Vec::new();

    // Paper mode: the paper exchange's book feed (a dead feed would fill at stale prices).
    if let Some(feed) = daemon.paper_feed.lock().take() {
        tasks.push(sup.watch_abort_at_shutdown("paper_feed", feed));
    }

    // Risk, then the halt conditions on the same event: the risk task applies each event
    // to the portfolio and then lets the coordinator evaluate it, so a condition that reads
    // the portfolio (drawdown, exposure, losses) sees the event applied and halts on the
    // event that breaks the limit, not on a later one — the order the backtest runs too.
    // The halt task takes every other kind it listens to, its periodic sweep and lags.
    let risk_kinds = SharedPortfolio::kinds();
    let sub = daemon.bus.subscribe(risk_kinds);
    tasks.push(sup.spawn("risk", Ending::AtShutdown, {
        let (p, halt) = (daemon.portfolio.clone(), daemon.halt.clone());
        let stop = daemon.shutdown.clone();
        async move {
            let halt_kinds = halt.subscription_kinds();
            let report = p
                .run_then(sub, stop, move |ev| {
                    let halt = halt.clone();
                    async move {
                        match ev {
                            Some(ev) if halt_kinds.contains(ev.kind()) => {
                                halt.on_event(&ev).await;
                            }
                            Some(_) => {}
                            // A lag skipped market data: re-sample every condition.
                            None => {
                                halt.sweep().await;
                            }
                        }
                    }
                })
                .await;
            tracing::info!(?report, "risk task stopped");
            Ok(())
        }
    }));

    // Halt conditions.
    let sub = daemon
        .bus
        .subscribe(daemon.halt.subscription_kinds().difference(risk_kinds));
    tasks.push(sup.spawn("halt", Ending::AtShutdown, {
        let halt = daemon.halt.clone();
        let stop = daemon.shutdown.clone();
        async move {
            halt.run(sub, stop).await;
            Ok(())
        }
    }));

    // Monitor.
    let sub = daemon.bus.subscribe_all();
    tasks.push(sup.spawn("monitor", Ending::AtShutdown, {
        let monitor = daemon.monitor.clone();
        let token = daemon.shutdown.clone();
        async move {
            monitor.run(sub, token, Duration::from_secs(5)).await;
            Ok(())
        }
    }));

    // Strategy runner.
    let sub = daemon.bus.subscribe(KindSet::of(&[
        EventKind::BookSnapshot,
        EventKind::BookUpdate,
    ]));
    tasks.push(sup.spawn(
        "strategy",
        Ending::AtShutdown,
        run_strategy(daemon.clone(), strategy, sub),
    ));

    // The order gateway follows its orders' updates and fills and the halt's transitions
    // (for its traders' feeds).
    let sub = daemon.bus.subscribe(crate::gateway::Gateway::kinds());
    tasks.push(sup.spawn("gateway", Ending::AtShutdown, {
        let (gateway, stop) = (daemon.gateway.clone(), daemon.shutdown.clone());
        async move {
            gateway.reconcile_restored().await;
            gateway.run(sub, stop).await;
            Ok(())
        }
    }));

    // Risk snapshots into the journal, so drawdowns survive a restart.
    tasks.push(sup.spawn("snapshots", Ending::AtShutdown, {
        let d = daemon.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    biased;
                    () = d.shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                save_risk_snapshot(&d).await;
            }
            save_risk_snapshot(&d).await;
            Ok(())
        }
    }));

    // The fleet: heartbeats, the fleet halt watch and escalation. Supervised like every
    // task: a fleet task that dies halts the node (and NATS silence trips fleet_partition).
    if let Some(fleet) = daemon.fleet.clone() {
        let rc = crate::fleet::run_context(daemon);
        tasks.push(sup.spawn("fleet", Ending::AtShutdown, async move {
            fleet.run(rc).await;
            Ok(())
        }));
    }

    // API tokens: a token created or revoked while running takes effect within a second.
    tasks.push(sup.spawn("tokens", Ending::AtShutdown, {
        let (tokens, token) = (daemon.tokens.clone(), daemon.shutdown.clone());
        async move {
            crate::auth::watch(tokens, crate::auth::WATCH_EVERY, token).await;
            Ok(())
        }
    }));

    match &daemon.live {
        // Live: the Kraken WebSocket, order sync, dead man's switch, rotation watcher.
        Some(live) => tasks.extend(live.spawn(daemon, &sup)),
        // Market data: the bundled recording, looped in the normal scenario; a recording
        // that is not looped may end (the staleness condition then halts on its own).
        None => {
            let ending = if replay_looped(&daemon.config, scenario) {
                Ending::AtShutdown
            } else {
                Ending::MayFinish
            };
            tasks.push(sup.spawn("replay", ending, run_replay(daemon.clone(), scenario)));
        }
    }
    tasks
}

/// Whether paper mode replays its recording in a loop: the bundled normal scenario only.
fn replay_looped(config: &Config, scenario: Scenario) -> bool {
    config.market.replay_file.is_none() && scenario == Scenario::Normal
}

async fn save_risk_snapshot(d: &Daemon) {
    match serde_json::to_value(d.portfolio.snapshot()) {
        Ok(v) => {
            if let Err(e) = d.halt.save_risk_snapshot(v).await {
                tracing::error!(cause = %e, "saving the risk snapshot failed");
            }
        }
        Err(e) => tracing::error!(cause = %e, "serialising the risk snapshot failed"),
    }
}

/// Replays the scenario's recording (looped when [`replay_looped`]) until shutdown. An
/// unreadable or broken recording is an error: the supervisor halts on it.
async fn run_replay(d: Daemon, scenario: Scenario) -> Result<()> {
    use gf_market::MarketSource;
    let looped = replay_looped(&d.config, scenario);
    let bytes = match (&d.config.market.replay_file, scenario) {
        (Some(path), _) => std::fs::read(path)
            .with_context(|| format!("cannot read the replay file {}", path.display()))?,
        // The bundled recordings, embedded so the binary runs from anywhere.
        (None, scenario) => scenario.recording().1.to_vec(),
    };
    loop {
        let mut source =
            gf_market::ReplaySource::from_bytes(bytes.clone(), d.config.market.replay_speed)
                .map(|s| {
                    s.with_pairs(d.config.market.pairs.clone())
                        .with_depth(d.config.market.book_depth as usize)
                        .with_staleness(Duration::from_secs(d.config.market.staleness_secs))
                        .with_latency(latency_sink(&d))
                })
                .context("replay source")?;
        let stats = source
            .run(d.bus.clone(), d.clock.clone(), d.shutdown.clone())
            .await
            .context("replay")?;
        tracing::info!(?stats, "replay finished");
        if !looped || d.shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// Feeds book events to the strategy and executes its signals (gf-strategy's
/// [`SignalExecutor`], the path the backtest runs too) until shutdown. A strategy that
/// panics takes this task down with it; the supervisor halts on that.
async fn run_strategy(
    d: Daemon,
    mut strategy: Box<dyn Strategy>,
    mut sub: gf_core::Subscription,
) -> Result<()> {
    let mut executor = signal_executor(&d);
    loop {
        let ev = tokio::select! {
            biased;
            () = d.shutdown.cancelled() => break,
            ev = sub.recv() => ev,
        };
        match ev {
            Ok(ev) => {
                // Let the tasks woken by the same event (the paper exchange's book, the
                // risk marks) take it first, so the strategy sizes on this event's mark
                // and the order meets this event's book, as in the backtest.
                tokio::task::yield_now().await;
                executor.on_market(strategy.as_mut(), &ev).await;
            }
            Err(gf_core::RecvError::Lagged { missed }) => {
                tracing::warn!(missed, "strategy lagged behind market data");
            }
            Err(gf_core::RecvError::Closed) => break,
        }
    }
    Ok(())
}

/// Journal kind of the record mapping a strategy order's client order id to its strategy
/// and signal sequence number.
pub use gf_strategy::CLIENT_ORDER_ID_KIND;

/// The daemon's signal executor: random client order ids, the gated exchange, the halt
/// coordinator's journal.
#[must_use]
pub fn signal_executor(d: &Daemon) -> SignalExecutor {
    SignalExecutor::new(
        d.bus.clone(),
        d.clock.clone(),
        d.portfolio.clone(),
        d.halt.clone(),
        d.exchange.clone(),
        OrderIds::Random,
    )
    .with_latency(latency_sink(d))
}

/// Where the daemon's hot stages (market ingest, book, decision, order sent) record their
/// latencies: gf-monitor's metrics, directly, without a bus event per sample.
#[must_use]
pub fn latency_sink(d: &Daemon) -> gf_core::SharedLatency {
    Arc::new(d.monitor.metrics().clone())
}

/// The strategy a scenario runs.
#[must_use]
pub fn strategy_for(scenario: Scenario) -> Box<dyn Strategy> {
    gf_strategy::by_kind(scenario.strategy())
}

/// The strategy `config` chooses ([`gf_core::config::StrategyConfig::effective`]): the
/// configured kind, else none in live mode, else (paper) the scenario's example.
#[must_use]
pub fn chosen_strategy(config: &Config, scenario: Scenario) -> Box<dyn Strategy> {
    match config.strategy.effective(config.general.mode) {
        Some(kind) => gf_strategy::by_kind(kind),
        None => strategy_for(scenario),
    }
}

/// A daemon started in this process (for tests, the console's and dashboard's end-to-end
/// tests, and research harnesses): API bound, every task running.
#[derive(Debug)]
pub struct Running {
    /// The composed daemon.
    pub daemon: Daemon,
    /// Where the API listens.
    pub addr: std::net::SocketAddr,
    /// The operator token generated for a fresh data directory.
    pub operator_token: Option<String>,
    server: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// `http://<addr>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a token for `name` with `role` (printed once by the CLI; returned here).
    ///
    /// # Errors
    /// When the token store cannot be written.
    pub fn create_token(&self, name: &str, role: Role) -> Result<String> {
        Ok(self
            .daemon
            .tokens
            .write()
            .create(name, role, &self.daemon.clock.now().to_rfc3339())?)
    }

    /// Waits until the portfolio can price `pair` (the market feed's first book of it has
    /// been applied), woken by the market events themselves, for at most `within`. What
    /// tests, examples and benchmarks wait for before their first order.
    ///
    /// # Errors
    /// When no price arrived within `within`, or the bus closed.
    pub async fn wait_for_price(&self, pair: &gf_core::Pair, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        let mut market = self.daemon.bus.subscribe(KindSet::of(&[
            EventKind::BookSnapshot,
            EventKind::BookUpdate,
            EventKind::Trade,
        ]));
        while self.daemon.portfolio.read(|p| p.mark(pair)).is_none() {
            match tokio::time::timeout_at(deadline, market.recv()).await {
                Err(_) => bail!("no {pair} price within {within:?}"),
                Ok(Err(gf_core::RecvError::Closed)) => bail!("the event bus closed"),
                // A lag skipped market events; the next one wakes us again.
                Ok(Ok(_) | Err(gf_core::RecvError::Lagged { .. })) => {}
            }
        }
        Ok(())
    }

    /// Stops every task and the server, and waits for them.
    pub async fn stop(self) {
        self.daemon.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Builds and starts a daemon on `config.api.bind` (use port 0 for any free port). Live
/// mode reads secret-provider variables from the process environment.
///
/// # Errors
/// As [`build`] and [`crate::live::Live::connect`], or when the address cannot be bound.
pub async fn start(config: Config, scenario: Scenario, clock: SharedClock) -> Result<Running> {
    start_with_env(config, scenario, clock, crate::live::process_env()).await
}

/// As [`start`], with live mode's secret-provider variables (`KRAKEN_API_KEY`, `VAULT_TOKEN`,
/// `GF_MASTER_PASSWORD`, …) read through `env` (tests, embedding). Paper mode ignores it.
///
/// # Errors
/// As [`start`].
pub async fn start_with_env(
    config: Config,
    scenario: Scenario,
    clock: SharedClock,
    env: crate::live::EnvLookup,
) -> Result<Running> {
    // The fleet first: its halt record is read before any task that places orders runs.
    let fleet = crate::fleet::join(&config, &env, clock.clone()).await?;
    let (mut daemon, operator_token) = if config.general.mode == Mode::Live {
        let prompt = gf_secrets::cli::Prompt::IfTerminal;
        let live = crate::live::Live::connect(&config, clock.clone(), &env, prompt).await?;
        build_with(config, clock, Some(live))?
    } else {
        build(config, clock)?
    };
    daemon.fleet = fleet;
    crate::fleet::attach(&daemon).await;
    let listener = crate::api::server::bind(daemon.config.api.bind)
        .with_context(|| format!("binding the API on {}", daemon.config.api.bind))?;
    let addr = listener.local_addr()?;
    let tasks = spawn_tasks(&daemon, scenario, chosen_strategy(&daemon.config, scenario));
    let router = crate::api::router(daemon.clone());
    // Supervised like every task: an API that stops serving halts the daemon.
    let server = crate::supervise::Supervisor::for_daemon(&daemon).watch(
        "api",
        crate::supervise::Ending::AtShutdown,
        crate::api::serve(
            listener,
            router,
            &daemon.config.api,
            daemon.shutdown.clone(),
        ),
    );
    Ok(Running {
        daemon,
        addr,
        operator_token,
        server,
        tasks,
    })
}

/// Runs the daemon until a stop signal or the daemon's own shutdown, acting on `signals`
/// meanwhile (see [`crate::signals`]). The data directory is made private first (0700,
/// files 0600). While stopping, a second stop signal exits the process at once (130).
///
/// # Errors
/// Start-up failures: bad data directory, journal, bind address.
pub async fn launch(opts: LaunchOptions, mut signals: crate::signals::Signals) -> Result<()> {
    use crate::signals::Action;
    let data_dir = &opts.config.general.data_dir;
    let tightened = crate::perms::secure_data_dir(data_dir)
        .with_context(|| format!("making the data directory {} private", data_dir.display()))?;
    for t in &tightened {
        tracing::warn!(
            path = %t.path.display(),
            from = %format!("{:o}", t.from),
            to = %format!("{:o}", t.to),
            "permissions tightened"
        );
    }
    let running = start(opts.config, opts.scenario, Arc::new(SystemClock)).await?;
    let d = running.daemon.clone();
    if opts.banner {
        print_banner(
            &d,
            running.addr,
            running.operator_token.as_deref(),
            opts.scenario,
        );
    }
    tracing::info!(addr = %running.addr, state = %d.halt.state(), "gal-friday running");
    loop {
        tokio::select! {
            () = d.shutdown.cancelled() => break,
            got = signals.recv() => match got {
                Some(got) if got.action == Action::Stop => {
                    tracing::warn!(signal = got.name, "stopping");
                    eprintln!("gf-daemon: {}: shutting down (send it again to force)", got.name);
                    break;
                }
                Some(got) => crate::signals::act(&d, got).await,
                None => {
                    d.shutdown.cancelled().await;
                    break;
                }
            },
        }
    }
    // Stopping: a second stop signal forces the exit; others are logged and ignored.
    let force = tokio::spawn(async move {
        while let Some(got) = signals.recv().await {
            if got.action == Action::Stop {
                eprintln!("gf-daemon: {}: forced exit", got.name);
                std::process::exit(130);
            }
            tracing::warn!(signal = got.name, "ignored while stopping");
        }
    });
    running.stop().await;
    if d.config.exchange.disarm_on_shutdown
        && let Err(e) = d.exchange.cancel_all_after(0).await
    {
        tracing::warn!(cause = %e, "disarming the dead man's switch failed");
    }
    force.abort();
    tracing::info!("gal-friday stopped");
    Ok(())
}

fn print_banner(d: &Daemon, addr: std::net::SocketAddr, token: Option<&str>, scenario: Scenario) {
    let mode = if d.live.is_some() {
        "LIVE trading on Kraken".to_owned()
    } else {
        format!("paper trading ({scenario:?} scenario)")
    };
    println!(
        "Gal-Friday {} — {mode} on {}",
        env!("CARGO_PKG_VERSION"),
        d.config
            .market
            .pairs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  state      {}", d.halt.state());
    let strategy = chosen_strategy(&d.config, scenario);
    if strategy.name() == gf_strategy::NoStrategy.name() {
        println!(
            "  strategy   none (orders come only from the halt's closure; choose one with strategy.kind or --strategy)"
        );
    } else {
        let how = if d.config.strategy.kind.is_some() {
            "chosen explicitly"
        } else {
            "the paper scenario's example"
        };
        println!("  strategy   {} ({how})", strategy.name());
    }
    if let Some(fleet) = &d.fleet {
        let c = fleet.config();
        let halted = match fleet.view().fleet_halted() {
            Some(true) => "fleet HALTED",
            Some(false) => "fleet not halted",
            None => "fleet halt record unread: NATS did not answer",
        };
        println!(
            "  fleet      {} as node {} via {} ({halted})",
            c.name,
            c.node,
            c.nats_url.join(", ")
        );
    }
    println!("  API        http://{addr}/api/v1/halt/status");
    println!("  dashboard  http://{addr}/dashboard");
    println!("  metrics    http://{addr}/metrics");
    println!(
        "  journal    {}",
        journal_path(&d.config.general.data_dir).display()
    );
    match token {
        Some(t) => {
            println!("  operator token (shown once; only its hash is stored):");
            println!("    export GF_TOKEN={t}");
        }
        None => println!(
            "  operator token: created at first launch; `gf-daemon token create --name NAME --role operator` issues another"
        ),
    }
    println!("Halt: gf-daemon halt --reason \"...\"   Stop: ctrl-c");
}

#[cfg(test)]
mod seed_tests {
    //! Paper mode seeds positions from `exchange.paper_balances` as live mode does from the
    //! account's balances.
    use super::*;
    use gf_core::{ManualClock, Pair};
    use rust_decimal::Decimal;

    #[tokio::test]
    async fn paper_balances_holding_a_base_asset_are_a_position_the_paper_exchange_holds_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::from_toml_str("").unwrap();
        cfg.general.data_dir = dir.path().join("data");
        cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
        cfg.exchange
            .paper_balances
            .insert("XRP".to_owned(), Decimal::from(100));
        let (d, _) = build(cfg, Arc::new(ManualClock::default())).unwrap();
        let (xrp, doge) = (
            Pair::new("XRP/USD").unwrap(),
            Pair::new("DOGE/USD").unwrap(),
        );
        let seen = d.portfolio.read(|p| {
            (
                p.position_qty(&xrp),
                p.is_unpriced(&xrp),
                p.position_qty(&doge),
                p.cash(),
            )
        });
        assert_eq!(
            seen,
            (
                Some(Decimal::from(100)),
                true,
                Some(Decimal::ZERO),
                Decimal::from(100_000)
            )
        );
        // What a halt's closure would sell by balance is the position the risk figures see.
        let balances = d.exchange.balances().await.unwrap();
        assert_eq!(balances["XRP"], Decimal::from(100));
    }
}
