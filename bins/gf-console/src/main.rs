//! `gf-console`: parses arguments and runs the console; on failure prints one line and
//! exits non-zero.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The Gal-Friday operator console: live state, halt, recovery checklist, journal.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The daemon's API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A file holding the API token (else GF_TOKEN is read).
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let opts = gf_console::Options {
        url: args.url,
        token_file: args.token_file,
        env_token: std::env::var("GF_TOKEN").ok(),
    };
    match gf_console::run(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gf-console: error: {e}");
            ExitCode::FAILURE
        }
    }
}
