//! `gf-daemon`: the program an operator runs. Thin: parses arguments and calls library code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Gal-Friday daemon.
#[derive(Debug, Parser)]
#[command(
    name = "gf-daemon",
    version,
    about = "Gal-Friday: the safety layer of a Kraken trading bot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Loads and validates a config file (with GF_* environment overrides) and prints the
    /// effective configuration.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Prints the embedded default configuration.
    Default,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gf-daemon: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = gf_core::Config::load(&file)?;
            print!("{}", config.to_toml()?);
            eprintln!("{}: ok", file.display());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            let config = gf_core::Config::embedded_default().context("embedded default")?;
            print!("{}", config.to_toml()?);
            Ok(())
        }
    }
}
