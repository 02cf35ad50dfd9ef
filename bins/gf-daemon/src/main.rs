//! `gf-daemon`: the program an operator runs. Thin: parses arguments, sets up logging and
//! calls library code; errors are one line on stderr and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use gf_core::Config;
use gf_daemon::app::{LaunchOptions, Scenario};
use gf_daemon::auth::{Role, TokenStore};
use gf_daemon::client::{ApiClient, resolve_token};
use gf_daemon::logging::{LogFormat, init_logging};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Gal-Friday daemon.
#[derive(Debug, Parser)]
#[command(
    name = "gf-daemon",
    version,
    about = "Gal-Friday: the safety layer of a Kraken trading bot"
)]
struct Cli {
    /// Log format: auto (human on a TTY, JSON otherwise), human or json. Default: for
    /// `launch` the configuration's `general.log_format`, else auto.
    #[arg(long, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// The daemon's API.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080",
        env = "GF_URL"
    )]
    url: String,
    /// API token (else --token-file, else GF_TOKEN).
    #[arg(long, global = true)]
    token: Option<String>,
    /// File holding the API token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

impl ClientArgs {
    fn client(&self) -> Result<ApiClient> {
        let token = resolve_token(self.token.as_deref(), self.token_file.as_deref())?;
        Ok(ApiClient::new(&self.url, &token))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the daemon (paper trading on the bundled recording unless configured).
    Launch {
        /// Configuration file (TOML); without it the embedded default runs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bundled paper scenario.
        #[arg(long, value_enum, default_value = "normal")]
        scenario: Scenario,
        /// Data directory (overrides general.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// API listen address (overrides api.bind).
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// Replay speed factor (overrides market.replay_speed; 0 = full speed).
        #[arg(long)]
        speed: Option<rust_decimal::Decimal>,
        /// Trade live on Kraken (needs credentials from a secret provider).
        #[arg(long)]
        live: bool,
        /// Strategy to run: none, ema_cross or hold_long (overrides strategy.kind). Live
        /// mode runs none unless one is chosen here or in the configuration.
        #[arg(long, value_parser = parse_strategy)]
        strategy: Option<gf_core::config::StrategyKind>,
    },
    /// Replays a recording through the daemon's own market, risk, gate, paper-exchange
    /// and halt code on the recording's event time: trades, statistics, every halt that
    /// would have fired and what it saved. Deterministic: the same input gives the same
    /// output, byte for byte.
    Backtest(gf_daemon::backtest::BacktestOptions),
    /// Shows the halt state.
    Status(ClientArgs),
    /// Halts trading now.
    Halt {
        #[command(flatten)]
        client: ClientArgs,
        /// Why (journaled).
        #[arg(long)]
        reason: String,
    },
    /// Resumes trading (refused until the checklist is complete).
    Resume(ClientArgs),
    /// Shows the recovery checklist, or completes an item.
    Checklist {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: Option<ChecklistAction>,
    },
    /// The fleet: many daemons halted as one, over NATS JetStream (`[fleet]`).
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Journal tools.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Market-data tools.
    Market {
        #[command(subcommand)]
        command: MarketCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Exchange credentials (age-encrypted file, Vault, AWS, env).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Encrypts a plaintext JSON secret file (`{"api_key": "...", "api_secret": "..."}`)
    /// into an age file (mode 0600), to recipients or to the master passphrase
    /// (GF_MASTER_PASSWORD, else asked twice on the terminal).
    Encrypt {
        /// The plaintext JSON.
        plain: PathBuf,
        /// The age file to write.
        out: PathBuf,
        /// age recipients (`age1…`); none means passphrase.
        #[arg(short, long = "recipient")]
        recipients: Vec<String>,
        /// Overwrite and delete the plaintext afterwards.
        #[arg(long)]
        shred: bool,
    },
    /// Fetches the configured secret set and validates its shape; prints provider,
    /// version and field names, never a value.
    Check {
        /// Configuration file with the `[secrets]` section.
        #[arg(long)]
        config: PathBuf,
    },
    /// Asks the running (live) daemon to rotate its credentials now; needs an admin token.
    Rotate(ClientArgs),
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Halts every node of the fleet now (operator). This node halts even when NATS does
    /// not answer; the fleet write is then retried.
    Halt {
        #[command(flatten)]
        client: ClientArgs,
        /// Why (journaled on every node).
        #[arg(long)]
        reason: String,
    },
    /// Clears the fleet halt (admin; the two-person rule needs a second administrator).
    /// Each node then still walks its own recovery checklist.
    Resume(ClientArgs),
    /// Shows the fleet: the fleet halt, every node's state, heartbeat age, equity,
    /// drawdown and exposure.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Prints the status as JSON (`GET /api/v1/fleet/status`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ChecklistAction {
    /// Completes one item.
    Complete {
        /// Item id (see `gf-daemon checklist`).
        item: String,
        /// Optional note.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Verifies the journal: its HMAC chain under the journal key, that it is the data
    /// directory's own, and that it is not behind its witness (a rollback). Read-only:
    /// works while the daemon runs.
    Verify(JournalDirArgs),
    /// Adopts a new journal for a data directory (after journal_missing, journal_integrity
    /// or a lost key): archives the current journal under <data dir>/archive, starts a new
    /// one that comes back halted and names the operator, and re-bases the witness. The
    /// daemon must be stopped.
    Adopt {
        #[command(flatten)]
        dir: JournalDirArgs,
        /// Who adopts it (journaled).
        #[arg(long)]
        operator: String,
    },
}

#[derive(Debug, clap::Args)]
struct JournalDirArgs {
    /// Data directory (default: general.data_dir of the configuration, "./data").
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Configuration file, for `[journal] key_file` and `witness_dir` (default: the
    /// embedded configuration with GF_* overrides).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl JournalDirArgs {
    fn config(&self) -> Result<Config> {
        let mut cfg = load_config(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            cfg.general.data_dir.clone_from(d);
        }
        Ok(cfg)
    }
}

#[derive(Debug, Subcommand)]
enum MarketCommand {
    /// Replays a recording through the book, verifying every checksum.
    Verify {
        /// JSON-lines recording.
        file: PathBuf,
    },
    /// Records the live Kraken feed (one raw WebSocket message per line) until ctrl-c.
    Record {
        /// Comma-separated pairs.
        #[arg(long, value_delimiter = ',', default_value = "XRP/USD,DOGE/USD")]
        pairs: Vec<gf_core::Pair>,
        /// Output file (JSON lines).
        #[arg(long)]
        out: PathBuf,
        /// Book depth.
        #[arg(long, default_value_t = 10)]
        depth: u32,
        /// WebSocket URL.
        #[arg(long, default_value = "wss://ws.kraken.com/v2")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validates a config file (with GF_* overrides) and prints the effective config.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Prints the embedded default configuration.
    Default,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Creates a token (printed once; only its hash is stored).
    Create {
        /// Operator name, journaled with every mutation made with the token.
        #[arg(long)]
        name: String,
        /// viewer, trader, operator or admin (a trader places orders through the gateway).
        #[arg(long, default_value = "operator")]
        role: String,
        /// Data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Revokes every token of an operator name. A running daemon stops accepting them
    /// within a second (or at once on SIGHUP).
    Revoke {
        /// Operator name the tokens were created for.
        #[arg(long)]
        name: String,
        /// Data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // Everything this process creates (journal, tokens, nonce, keys) is private to its
    // user; `launch` also fixes data directories made before this was enforced.
    gf_daemon::perms::private_umask();
    let cli = Cli::parse();
    // A running daemon narrates; one-shot commands only speak up about problems.
    let level = if matches!(cli.command, Command::Launch { .. }) {
        "info"
    } else {
        "warn"
    };
    // `launch` logs in its configuration's `general.log_format` unless the flag says
    // otherwise: the configuration is read once, here, before logging starts (an error
    // is reported by `launch`, after logging has started).
    let launch_config = match &cli.command {
        Command::Launch { config, .. } => Some(load_config(config.as_deref())),
        _ => None,
    };
    let configured = match &launch_config {
        Some(Ok(cfg)) => cfg.general.log_format,
        _ => LogFormat::Auto,
    };
    init_logging(cli.log_format.unwrap_or(configured), level);
    // Verifying a recording is synchronous work on its own threads: no runtime (whose
    // worker threads would only compete with it for the cores).
    if let Command::Market {
        command: MarketCommand::Verify { file },
    } = &cli.command
    {
        return report(market_verify(file));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gf-daemon: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    report(runtime.block_on(run(cli.command, launch_config)))
}

/// The configuration file at `path`, or the embedded default; GF_* overrides applied.
fn load_config(path: Option<&Path>) -> Result<Config, gf_core::ConfigError> {
    match path {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    }
}

/// A command's outcome as the exit code; an error as one line on stderr.
fn report(outcome: Result<ExitCode>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gf-daemon: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `market verify FILE`: the report on stdout; passing or not is the exit code.
fn market_verify(file: &Path) -> Result<ExitCode> {
    let report = gf_market::verify::verify_recording(file)?;
    print!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_strategy(text: &str) -> Result<gf_core::config::StrategyKind, String> {
    text.parse()
}

/// Runs `command`; `launch_config` is what `main` read for `launch` (its configuration).
async fn run(
    command: Command,
    launch_config: Option<Result<Config, gf_core::ConfigError>>,
) -> Result<ExitCode> {
    match command {
        Command::Launch {
            config,
            scenario,
            data_dir,
            bind,
            speed,
            live,
            strategy,
        } => {
            // First: from here on no handled signal (SIGHUP, SIGUSR2, …) can kill the
            // process with its default action, even while it starts.
            let signals =
                gf_daemon::signals::Signals::install().context("installing the signal handlers")?;
            let mut cfg = match launch_config {
                Some(loaded) => loaded?,
                None => load_config(config.as_deref())?,
            };
            if let Some(d) = data_dir {
                cfg.general.data_dir = d;
            }
            if let Some(b) = bind {
                cfg.api.bind = b;
            }
            if let Some(s) = speed {
                cfg.market.replay_speed = s;
            }
            if live {
                cfg.general.mode = gf_core::Mode::Live;
            }
            if let Some(kind) = strategy {
                cfg.strategy.kind = Some(kind);
            }
            cfg.validate()?;
            gf_daemon::app::launch(
                LaunchOptions {
                    config: cfg,
                    scenario,
                    banner: true,
                },
                signals,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest(opts) => {
            // CPU-bound and synchronous: off the async runtime's worker.
            tokio::task::spawn_blocking(move || gf_daemon::backtest::run(&opts))
                .await
                .context("the backtest thread")??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(c) => {
            let s: gf_api::Status = c.client()?.get_as("/api/v1/halt/status").await?;
            print_status(&s.core);
            Ok(ExitCode::SUCCESS)
        }
        Command::Halt { client, reason } => {
            let body = gf_api::HaltRequest {
                reason,
                source: None,
            };
            let v: gf_api::HaltReply = client.client()?.post_as("/api/v1/halt", &body).await?;
            print_status(&v.status);
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume(c) => {
            let v: gf_api::ResumeReply = c.client()?.post_as("/api/v1/resume", &json!({})).await?;
            print_status(&v.status);
            Ok(ExitCode::SUCCESS)
        }
        Command::Checklist {
            client,
            action: None,
        } => {
            let v: gf_api::ChecklistReply = client
                .client()?
                .get_as("/api/v1/recovery/checklist")
                .await?;
            print_checklist(&v);
            Ok(ExitCode::SUCCESS)
        }
        Command::Checklist {
            client,
            action: Some(ChecklistAction::Complete { item, note }),
        } => {
            let path = format!("/api/v1/recovery/checklist/{item}/complete");
            let v: gf_api::CompleteReply = client
                .client()?
                .post_as(&path, &gf_api::CompleteRequest { note })
                .await?;
            print!("{}", gf_daemon::client::format_completed(&item, &v));
            Ok(ExitCode::SUCCESS)
        }
        Command::Fleet {
            command: FleetCommand::Halt { client, reason },
        } => {
            let v: gf_api::FleetHaltReply = client
                .client()?
                .post_as("/api/v1/fleet/halt", &gf_api::FleetHaltRequest { reason })
                .await?;
            print!("{}", gf_daemon::client::format_fleet_halt_reply(&v));
            Ok(ExitCode::SUCCESS)
        }
        Command::Fleet {
            command: FleetCommand::Resume(c),
        } => {
            let v: gf_api::FleetResumeReply = c
                .client()?
                .post_as("/api/v1/fleet/resume", &json!({}))
                .await?;
            print!("{}", gf_daemon::client::format_fleet_resume_reply(&v));
            Ok(ExitCode::SUCCESS)
        }
        Command::Fleet {
            command: FleetCommand::Status { client, json },
        } => {
            let s: gf_api::FleetStatus = client.client()?.get_as("/api/v1/fleet/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", gf_daemon::client::format_fleet_status(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Journal {
            command: JournalCommand::Verify(args),
        } => {
            let cfg = args.config()?;
            let data_dir = &cfg.general.data_dir;
            let path = gf_daemon::app::journal_path(data_dir);
            let (_, witness_dir) = gf_daemon::app::journal_key_and_witness(&cfg)?;
            let env: gf_secrets::env::EnvLookup =
                std::sync::Arc::new(|k: &str| std::env::var(k).ok());
            let key = gf_daemon::app::journal_key_for(&cfg, &env, false).await?;
            // No lock: a running daemon keeps writing while this reads.
            let dir = gf_halt::DataDir::inspect(data_dir)?;
            let clock: gf_core::SharedClock = std::sync::Arc::new(gf_core::SystemClock);
            let summary = gf_halt::Journal::open_data_dir(dir, clock, key, &witness_dir)
                .and_then(|j| j.verify())
                .with_context(|| format!("journal {}", path.display()))?;
            println!(
                "{}: ok — {} records, MAC chain intact under the journal key (head #{} {}); witness at #{}",
                path.display(),
                summary.records,
                summary.head_id,
                summary.head_mac,
                summary
                    .witnessed_id
                    .map_or_else(|| "none yet".to_owned(), |id| id.to_string()),
            );
            if let Some(h) = &summary.unjournaled_halt {
                println!(
                    "note: the witness holds a halt that could not be journaled ({}: {}); the next start comes back halted",
                    gf_core::text::escape_control(&h.source.to_string()),
                    gf_core::text::escape_control(&h.reason)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Journal {
            command: JournalCommand::Adopt { dir, operator },
        } => {
            let cfg = dir.config()?;
            let data_dir = &cfg.general.data_dir;
            let (_, witness_dir) = gf_daemon::app::journal_key_and_witness(&cfg)?;
            let clock: gf_core::SharedClock = std::sync::Arc::new(gf_core::SystemClock);
            // The lock: refused while a daemon runs on the directory.
            let locked = gf_halt::DataDir::open(data_dir, clock.now())?;
            let env: gf_secrets::env::EnvLookup =
                std::sync::Arc::new(|k: &str| std::env::var(k).ok());
            let key = gf_daemon::app::journal_key_for(&cfg, &env, true).await?;
            let report = gf_halt::adopt(locked, clock, key, &witness_dir, &operator)?;
            match &report.archived_to {
                Some(p) => println!("archived the previous journal to {}", p.display()),
                None => println!("there was no journal to archive"),
            }
            println!(
                "previous journal: {} records; {}",
                report.previous_records,
                gf_core::text::escape_control(&report.previous_verification)
            );
            if report.risk_snapshot_carried {
                println!("carried over its newest risk snapshot (peak equity, drawdowns)");
            }
            println!(
                "new journal {} adopted by {operator}: {} records, witness re-based; the next launch comes back halted (review_adopted_journal)",
                gf_daemon::app::journal_path(data_dir).display(),
                report.head_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Market {
            command: MarketCommand::Verify { file },
        } => market_verify(&file),
        Command::Market {
            command:
                MarketCommand::Record {
                    pairs,
                    out,
                    depth,
                    url,
                },
        } => {
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            eprintln!("recording {} to {} (ctrl-c to stop)", url, out.display());
            let stats = gf_market::record::record(&url, &pairs, depth, &out, shutdown).await?;
            eprintln!("stopped: {stats:?}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets {
            command: SecretsCommand::Rotate(c),
        } => {
            let v = c
                .client()?
                .post("/api/v1/secrets/rotate", &json!({}))
                .await?;
            println!(
                "rotation: {} (version {})",
                v["outcome"].as_str().unwrap_or("?"),
                v["version"].as_str().unwrap_or("-")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = Config::load(&file)?;
            print!("{}", config.to_toml()?);
            eprintln!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", Config::embedded_default()?.to_toml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets {
            command:
                SecretsCommand::Encrypt {
                    plain,
                    out,
                    recipients,
                    shred,
                },
        } => {
            let env: gf_secrets::env::EnvLookup =
                std::sync::Arc::new(|k: &str| std::env::var(k).ok());
            gf_secrets::cli::encrypt(
                &plain,
                &out,
                &recipients,
                &env,
                gf_secrets::cli::Prompt::IfTerminal,
            )?;
            println!("wrote {} (mode 0600)", out.display());
            if shred {
                gf_secrets::file::shred_file(&plain)?;
                println!("shredded {}", plain.display());
            } else {
                println!(
                    "the plaintext {} is still there: shred it (--shred) once you have checked the file",
                    plain.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets {
            command: SecretsCommand::Check { config },
        } => {
            let cfg = Config::load(&config)?;
            let env: gf_secrets::env::EnvLookup =
                std::sync::Arc::new(|k: &str| std::env::var(k).ok());
            let clock: gf_core::SharedClock = std::sync::Arc::new(gf_core::SystemClock);
            let provider = gf_secrets::cli::provider_from_config(
                &cfg.secrets,
                &env,
                clock.clone(),
                gf_secrets::cli::Prompt::IfTerminal,
            )?;
            let auditor = gf_secrets::audit::Auditor::new(clock);
            let report =
                gf_secrets::cli::check(&*provider, &cfg.secrets.set, &auditor, "cli").await?;
            print!("{report}");
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    name,
                    role,
                    data_dir,
                },
        } => {
            let role: Role = role.parse()?;
            let mut store = TokenStore::open(&data_dir)?;
            let token = store.create(&name, role, &chrono::Utc::now().to_rfc3339())?;
            println!("{token}");
            eprintln!(
                "created {role} token for {name} in {} (only its hash is stored; a running daemon accepts it within a second)",
                data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Revoke { name, data_dir },
        } => {
            let revoked = TokenStore::open(&data_dir)?.revoke(&name)?;
            if revoked == 0 {
                bail!("no token for {name} in {}", data_dir.display());
            }
            println!(
                "revoked {revoked} token(s) of {name} in {} (a running daemon refuses them within a second)",
                data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(s: &gf_api::HaltStatus) {
    print!("{}", gf_daemon::client::format_status(s));
}

fn print_checklist(v: &gf_api::ChecklistReply) {
    print!("{}", gf_daemon::client::format_checklist(v));
}
