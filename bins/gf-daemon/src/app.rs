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
    Config, Event, EventBus, EventKind, HaltSource, KindSet, Mode, OrderPurpose, OrderRequest,
    OrderType, Payload, SharedClock, Side, Source, SystemClock, TimeInForce, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::{Exchange, GatedExchange, PaperConfig, PaperExchange};
use gf_halt::HaltCoordinator;
use gf_monitor::health::{CheckOutcome, FnCheck};
use gf_monitor::{Monitor, MonitorBuilder};
use gf_risk::{Portfolio, PreTradeCheck, SharedPortfolio, Verdict};
use parking_lot::RwLock;
use rust_decimal::Decimal;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::{Role, TokenStore};
use crate::strategy::{EmaCross, HoldLong, Signal, Strategy};

/// The bundled recordings, embedded so the binary runs from anywhere.
const PAPER_FIXTURE: &[u8] = include_bytes!("../../../fixtures/market/paper.jsonl");
const CRASH_FIXTURE: &[u8] = include_bytes!("../../../fixtures/market/crash.jsonl");
const GAP_FIXTURE: &[u8] = include_bytes!("../../../fixtures/market/gap.jsonl");

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
    /// Shutdown signal for every task.
    pub shutdown: CancellationToken,
    /// Live mode: the Kraken venue the live tasks run on (`None` in paper mode).
    pub live: Option<Arc<crate::live::Live>>,
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
    data_dir.join("gal-friday.sqlite")
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
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;

    let mut tokens = TokenStore::open(&data_dir)?;
    let new_token = if tokens.has_role(Role::Operator) {
        None
    } else {
        Some(tokens.create("operator", Role::Operator, &clock.now().to_rfc3339())?)
    };

    let bus = live
        .as_ref()
        .map_or_else(|| EventBus::new(1 << 16), |l| l.bus().clone());
    let gate = TradingGate::new_closed();
    let limits = gf_risk::RiskLimits::from_config(&config.risk)?;
    let portfolio_cfg = match &live {
        Some(l) => l.portfolio_config(&config),
        None => gf_risk::PortfolioConfig::from_config(&config),
    };
    let portfolio = SharedPortfolio::new(Portfolio::new(portfolio_cfg, clock.clone())?, limits);

    // The journal comes first so that a restored risk snapshot also seeds the paper balances.
    let journal = gf_halt::Journal::open(&journal_path(&data_dir), clock.clone())?;
    let restored = journal.load_risk_snapshot()?;
    drop(journal);
    let mut paper_cfg = PaperConfig::from_config(&config.exchange);
    if let Some(snap) = restored {
        let restored = Portfolio::restore_json(&snap.to_string(), clock.clone())
            .context("restoring the risk snapshot from the journal")?;
        paper_cfg.balances = restored.balances();
        portfolio.write(|p| *p = restored);
        tracing::info!("restored portfolio and drawdowns from the journal");
    }

    let exchange: Arc<dyn Exchange> = if let Some(l) = &live {
        Arc::new(GatedExchange::new(
            l.client().clone(),
            gate.clone(),
            Publisher::new(Some(bus.clone()), clock.clone(), Source::Exec),
        ))
    } else {
        let paper = Arc::new(PaperExchange::new(
            paper_cfg,
            Publisher::new(Some(bus.clone()), clock.clone(), Source::Paper),
        ));
        paper.spawn_feed(&bus);
        Arc::new(GatedExchange::new(
            paper,
            gate.clone(),
            Publisher::new(Some(bus.clone()), clock.clone(), Source::Exec),
        ))
    };

    let view: Arc<dyn gf_risk::PortfolioView> = Arc::new(portfolio.clone());
    let halt = HaltCoordinator::open(
        &config.halt,
        &journal_path(&data_dir),
        gate.clone(),
        exchange.clone(),
        view.clone(),
        bus.clone(),
        clock.clone(),
    )?;
    halt.watch_pairs(&config.market.pairs);
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
            async move {
                match tokio::task::spawn_blocking(move || journal.len()).await {
                    Ok(Ok(n)) => CheckOutcome::healthy(format!("{n} records")),
                    Ok(Err(e)) => CheckOutcome::unhealthy(e.to_string()),
                    Err(e) => CheckOutcome::unhealthy(e.to_string()),
                }
            }
        })))
        .build()?;

    Ok((
        Daemon {
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
        },
        new_token,
    ))
}

/// Starts the background tasks: market replay, risk, halt, monitor, strategy, snapshots.
/// Returns their handles; they stop when `daemon.shutdown` is cancelled.
pub fn spawn_tasks(
    daemon: &Daemon,
    scenario: Scenario,
    strategy: Box<dyn Strategy>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let (stop_tx, _) = broadcast::channel::<()>(1);
    {
        let token = daemon.shutdown.clone();
        let stop_tx = stop_tx.clone();
        tasks.push(tokio::spawn(async move {
            token.cancelled().await;
            let _ = stop_tx.send(());
        }));
    }

    // Risk: marks, fills, drawdown.
    let sub = daemon.bus.subscribe(SharedPortfolio::kinds());
    tasks.push(tokio::spawn({
        let p = daemon.portfolio.clone();
        let stop = stop_tx.subscribe();
        async move {
            let report = p.run(sub, stop).await;
            tracing::info!(?report, "risk task stopped");
        }
    }));

    // Halt conditions.
    let sub = daemon.bus.subscribe(daemon.halt.subscription_kinds());
    tasks.push(tokio::spawn({
        let halt = daemon.halt.clone();
        let stop = stop_tx.subscribe();
        async move { halt.run(sub, stop).await }
    }));

    // Monitor.
    let sub = daemon.bus.subscribe_all();
    tasks.push(tokio::spawn({
        let monitor = daemon.monitor.clone();
        let token = daemon.shutdown.clone();
        async move {
            monitor
                .run(
                    sub,
                    async move { token.cancelled().await },
                    Duration::from_secs(5),
                )
                .await;
        }
    }));

    // Strategy runner.
    let sub = daemon.bus.subscribe(KindSet::of(&[
        EventKind::BookSnapshot,
        EventKind::BookUpdate,
    ]));
    tasks.push(tokio::spawn(run_strategy(daemon.clone(), strategy, sub)));

    // Risk snapshots into the journal, so drawdowns survive a restart.
    tasks.push(tokio::spawn({
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
        }
    }));

    match &daemon.live {
        // Live: the Kraken WebSocket, order sync, dead man's switch, rotation watcher.
        Some(live) => tasks.extend(live.spawn(daemon)),
        // Market data: the bundled recording, looped in the normal scenario.
        None => tasks.push(tokio::spawn(run_replay(daemon.clone(), scenario))),
    }
    tasks
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

async fn run_replay(d: Daemon, scenario: Scenario) {
    use gf_market::MarketSource;
    let (bytes, looped) = match (&d.config.market.replay_file, scenario) {
        (Some(path), _) => match std::fs::read(path) {
            Ok(b) => (b, false),
            Err(e) => {
                tracing::error!(path = %path.display(), cause = %e, "cannot read the replay file");
                return;
            }
        },
        (None, Scenario::Normal) => (PAPER_FIXTURE.to_vec(), true),
        (None, Scenario::Crash) => (CRASH_FIXTURE.to_vec(), false),
        (None, Scenario::Gap) => (GAP_FIXTURE.to_vec(), false),
    };
    loop {
        let source =
            gf_market::ReplaySource::from_bytes(bytes.clone(), d.config.market.replay_speed).map(
                |s| {
                    s.with_pairs(d.config.market.pairs.clone())
                        .with_depth(d.config.market.book_depth as usize)
                        .with_staleness(Duration::from_secs(d.config.market.staleness_secs))
                },
            );
        let mut source = match source {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(cause = %e, "replay source");
                return;
            }
        };
        match source
            .run(d.bus.clone(), d.clock.clone(), d.shutdown.clone())
            .await
        {
            Ok(stats) => tracing::info!(?stats, "replay finished"),
            Err(e) => {
                tracing::error!(cause = %e, "replay failed");
                return;
            }
        }
        if !looped || d.shutdown.is_cancelled() {
            break;
        }
    }
}

async fn run_strategy(d: Daemon, mut strategy: Box<dyn Strategy>, mut sub: gf_core::Subscription) {
    let mut seq: u64 = 0;
    loop {
        let ev = tokio::select! {
            biased;
            () = d.shutdown.cancelled() => break,
            ev = sub.recv() => ev,
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(gf_core::RecvError::Lagged { missed }) => {
                tracing::warn!(missed, "strategy lagged behind market data");
                continue;
            }
            Err(gf_core::RecvError::Closed) => break,
        };
        let Some(pair) = gf_halt::condition::event_pair(&ev.payload) else {
            continue;
        };
        // Strategies start once the portfolio can price the pair (the risk task marks it
        // from the same events), so a signal is never refused for want of a price.
        let Some(position) = d
            .portfolio
            .read(|p| p.mark(pair).and_then(|_| p.position_qty(pair)))
        else {
            continue;
        };
        let Some(signal) = strategy.on_market(&ev, position) else {
            continue;
        };
        if !d.gate.is_open() {
            tracing::debug!(pair = %signal.pair, "signal ignored: trading is halted");
            continue;
        }
        seq += 1;
        execute_signal(&d, strategy.name(), &signal, position, seq).await;
    }
}

/// Turns a signal into an order: sized by gf-risk, checked, sent through the gate.
pub async fn execute_signal(
    d: &Daemon,
    strategy: &str,
    signal: &Signal,
    position: Decimal,
    seq: u64,
) {
    d.bus.publish(Event::new(
        d.clock.now(),
        Source::Strategy,
        Payload::Signal {
            strategy: strategy.to_owned(),
            pair: signal.pair.clone(),
            side: signal.side,
            entry: signal.entry,
            stop: signal.stop,
        },
    ));
    // Size against the price the pre-trade check will use (the portfolio's mark), scaled
    // so the stop keeps its distance; fall back to the signal's own price.
    let reference = d
        .portfolio
        .read(|p| p.mark(&signal.pair))
        .map_or(signal.entry, |m| m.price);
    let (qty, reduce_only) = match (signal.side, signal.stop) {
        (Side::Buy, Some(stop)) => match d.portfolio.size(
            &signal.pair,
            Side::Buy,
            reference,
            stop * reference / signal.entry,
        ) {
            Ok(q) => (q, false),
            Err(refusal) => {
                tracing::info!(pair = %signal.pair, reason = %refusal, "signal not sized");
                return;
            }
        },
        (Side::Sell, None) if position > Decimal::ZERO => (position, true),
        _ => return,
    };
    let order = OrderRequest {
        client_order_id: gf_core::ClientOrderId::new(format!(
            "{strategy}-{}-{seq}",
            d.clock.now().timestamp_millis()
        )),
        pair: signal.pair.clone(),
        side: signal.side,
        order_type: OrderType::Market,
        qty,
        limit_price: None,
        time_in_force: TimeInForce::Ioc,
        reduce_only,
        user_ref: None,
        purpose: OrderPurpose::Normal,
    };
    match d.portfolio.check(order) {
        Verdict::Approved(order) => {
            if let Err(e) = d.exchange.place_order(&order).await {
                tracing::warn!(order = %order.client_order_id, cause = %e, "order not placed");
                d.portfolio.release(&order.client_order_id);
            }
        }
        Verdict::Refused { order, reason } => {
            tracing::info!(order = %order.client_order_id, reason = %reason, "pre-trade check refused");
            d.bus.publish(Event::new(
                d.clock.now(),
                Source::Risk,
                Payload::OrderUpdate {
                    client_order_id: order.client_order_id.clone(),
                    order_id: None,
                    pair: order.pair.clone(),
                    status: gf_core::OrderStatus::Rejected,
                    filled_qty: Decimal::ZERO,
                    reason: Some(reason.to_string()),
                },
            ));
        }
    }
}

/// The strategy a scenario runs.
#[must_use]
pub fn strategy_for(scenario: Scenario) -> Box<dyn Strategy> {
    match scenario {
        Scenario::Crash => Box::new(HoldLong::default()),
        Scenario::Normal | Scenario::Gap => Box::new(EmaCross::default()),
    }
}

/// Halts on SIGUSR1 (source `signal`) until shutdown. The handler is installed before
/// this returns, so a signal sent right after cannot kill the process.
///
/// # Errors
/// When the handler cannot be installed.
#[cfg(unix)]
pub fn halt_on_sigusr1(d: Daemon) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                () = d.shutdown.cancelled() => break,
                got = usr1.recv() => {
                    if got.is_none() { break; }
                    let outcome = d.halt.halt(HaltSource::Signal, "SIGUSR1 received").await;
                    tracing::warn!(?outcome, "halted by SIGUSR1");
                }
            }
        }
    }))
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
    let (daemon, operator_token) = if config.general.mode == Mode::Live {
        let prompt = gf_secrets::cli::Prompt::IfTerminal;
        let live = crate::live::Live::connect(&config, clock.clone(), &env, prompt).await?;
        build_with(config, clock, Some(live))?
    } else {
        build(config, clock)?
    };
    let listener = tokio::net::TcpListener::bind(daemon.config.api.bind)
        .await
        .with_context(|| format!("binding the API on {}", daemon.config.api.bind))?;
    let addr = listener.local_addr()?;
    let tasks = spawn_tasks(&daemon, scenario, strategy_for(scenario));
    let router = crate::api::router(daemon.clone());
    let token = daemon.shutdown.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(cause = %e, "API server failed");
        }
    });
    Ok(Running {
        daemon,
        addr,
        operator_token,
        server,
        tasks,
    })
}

/// Runs the daemon until `shutdown` is cancelled (ctrl-c, SIGTERM, or the caller).
///
/// # Errors
/// Start-up failures: bad data directory, journal, bind address.
pub async fn launch(opts: LaunchOptions, shutdown: CancellationToken) -> Result<()> {
    let running = start(opts.config, opts.scenario, Arc::new(SystemClock)).await?;
    let d = running.daemon.clone();
    #[cfg(unix)]
    let usr1 = halt_on_sigusr1(d.clone()).context("installing the SIGUSR1 handler")?;
    if opts.banner {
        print_banner(
            &d,
            running.addr,
            running.operator_token.as_deref(),
            opts.scenario,
        );
    }
    tracing::info!(addr = %running.addr, state = %d.halt.state(), "gal-friday running");
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = d.shutdown.cancelled() => {}
    }
    running.stop().await;
    #[cfg(unix)]
    usr1.abort();
    if d.config.exchange.disarm_on_shutdown
        && let Err(e) = d.exchange.cancel_all_after(0).await
    {
        tracing::warn!(cause = %e, "disarming the dead man's switch failed");
    }
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
