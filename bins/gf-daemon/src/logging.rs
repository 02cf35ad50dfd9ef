//! One `init_logging` for the daemon: tracing with an `EnvFilter` (`RUST_LOG`, default
//! `info` for `launch`, `warn` for the one-shot commands), human format on a TTY and
//! JSON lines otherwise, or as chosen.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log formats (`--log-format`, `general.log_format`).
pub use gf_core::config::LogFormat;

/// Installs the global subscriber, writing to stderr, at `default_level` unless
/// `RUST_LOG` says otherwise. Safe to call more than once (later calls are no-ops).
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}
