//! `gf-daemon`: the program an operator runs. Thin: parses arguments, sets up logging and
//! calls library code; errors are one line on stderr and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use gf_core::Config;
use gf_daemon::app::{LaunchOptions, Scenario};
use gf_daemon::auth::{Role, TokenStore};
use gf_daemon::client::{ApiClient, resolve_token};
use gf_daemon::logging::{LogFormat, init_logging};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Gal-Friday daemon.
#[derive(Debug, Parser)]
#[command(
    name = "gf-daemon",
    version,
    about = "Gal-Friday: the safety layer of a Kraken trading bot"
)]
struct Cli {
    /// Log format: auto (human on a TTY, JSON otherwise), human or json.
    #[arg(long, global = true, default_value = "auto")]
    log_format: LogFormat,
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
    },
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
    /// Verifies the hash chain of the journal.
    Verify {
        /// Data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
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
        /// viewer, operator or admin.
        #[arg(long, default_value = "operator")]
        role: String,
        /// Data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A running daemon narrates; one-shot commands only speak up about problems.
    let level = if matches!(cli.command, Command::Launch { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gf-daemon: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gf-daemon: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Launch {
            config,
            scenario,
            data_dir,
            bind,
            speed,
            live,
        } => {
            let mut cfg = match &config {
                Some(path) => Config::load(path)?,
                None => Config::embedded_default()?,
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
            cfg.validate()?;
            let shutdown = CancellationToken::new();
            tokio::spawn(shutdown_on_signals(shutdown.clone()));
            gf_daemon::app::launch(
                LaunchOptions {
                    config: cfg,
                    scenario,
                    banner: true,
                },
                shutdown,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(c) => {
            let s = c.client()?.get("/api/v1/halt/status").await?;
            print_status(&s);
            Ok(ExitCode::SUCCESS)
        }
        Command::Halt { client, reason } => {
            let v = client
                .client()?
                .post("/api/v1/halt", &json!({ "reason": reason }))
                .await?;
            print_status(&v["status"]);
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume(c) => {
            let v = c.client()?.post("/api/v1/resume", &json!({})).await?;
            print_status(&v["status"]);
            Ok(ExitCode::SUCCESS)
        }
        Command::Checklist {
            client,
            action: None,
        } => {
            let v = client.client()?.get("/api/v1/recovery/checklist").await?;
            print_checklist(&v);
            Ok(ExitCode::SUCCESS)
        }
        Command::Checklist {
            client,
            action: Some(ChecklistAction::Complete { item, note }),
        } => {
            let path = format!("/api/v1/recovery/checklist/{item}/complete");
            let v = client
                .client()?
                .post(&path, &json!({ "note": note }))
                .await?;
            println!(
                "completed {item} by {}",
                v["item"]["completed_by"].as_str().unwrap_or("?")
            );
            let missing: Vec<&str> = v["missing"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "missing: {}",
                if missing.is_empty() {
                    "nothing".to_owned()
                } else {
                    missing.join(", ")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Journal {
            command: JournalCommand::Verify { data_dir },
        } => {
            let path = gf_daemon::app::journal_path(&data_dir);
            if !path.exists() {
                bail!("no journal at {}", path.display());
            }
            let journal = gf_halt::Journal::open(&path, std::sync::Arc::new(gf_core::SystemClock))?;
            let summary = journal
                .verify()
                .with_context(|| format!("journal {}", path.display()))?;
            println!(
                "{}: ok — {} records, hash chain intact (head {})",
                path.display(),
                summary.records,
                summary.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Market {
            command: MarketCommand::Verify { file },
        } => {
            let report = gf_market::verify::verify_recording(&file)?;
            print!("{report}");
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
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
                "created {role} token for {name} in {} (only its hash is stored)",
                data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(s: &Value) {
    println!("state: {}", s["state"].as_str().unwrap_or("?"));
    println!(
        "gate: {}",
        if s["gate_open"].as_bool() == Some(true) {
            "open"
        } else {
            "closed"
        }
    );
    if let Some(h) = s["halt"].as_object() {
        let label = if s["state"] == "running" {
            "last halt"
        } else {
            "halt"
        };
        println!(
            "{label} #{}: {} — {} (at {})",
            h.get("id").and_then(Value::as_u64).unwrap_or(0),
            h.get("source").and_then(Value::as_str).unwrap_or("?"),
            h.get("reason").and_then(Value::as_str).unwrap_or("?"),
            h.get("triggered_at").and_then(Value::as_str).unwrap_or("?"),
        );
    }
    if let Some(missing) = s["checklist_missing"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
        println!("checklist missing: {}", names.join(", "));
    }
}

fn print_checklist(v: &Value) {
    println!("state: {}", v["state"].as_str().unwrap_or("?"));
    match v["checklist"]["items"].as_array() {
        None => println!("no checklist: nothing to recover from"),
        Some(items) => {
            for item in items {
                let done = item["completed_by"].as_str();
                println!(
                    "[{}] {:<28} {}{}",
                    if done.is_some() { "x" } else { " " },
                    item["id"].as_str().unwrap_or("?"),
                    item["title"].as_str().unwrap_or(""),
                    done.map(|by| format!(" (by {by})")).unwrap_or_default(),
                );
            }
        }
    }
}

async fn shutdown_on_signals(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("gf-daemon: shutting down (press ctrl-c again to force)");
    token.cancel();
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("gf-daemon: forced exit");
    std::process::exit(130);
}
