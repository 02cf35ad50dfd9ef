//! `gf-console`: the operator console. It is a client of the daemon's HTTP/WebSocket API,
//! which is built first; until then it says so and exits non-zero.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "gf-console: error: the operator console is not built yet; use `gf-daemon` subcommands"
    );
    ExitCode::from(2)
}
