//! `gf-console`: the ratatui operator console of Gal-Friday, a client of the daemon's
//! HTTP/WebSocket API (it never opens the database itself).
//!
//! The operator sees the halt state, the conditions against their limits, positions and
//! P&L and the alerts, live from the WebSockets; halts with `H`, a reason and Enter;
//! works the recovery checklist; resumes with `R`; reads the journal.
//!
//! The Elm architecture: [`app::State`] holds everything shown, [`app::handle_key`] and
//! [`app::update`] change it and return an [`app::Action`], [`exec::execute`] is the only
//! place an action becomes an API call (through the [`api::ConsoleApi`] trait), and
//! [`ui::render`] is a pure function of the state.
//!
//! ```
//! use gf_console::app::{Action, State, handle_key};
//! use ratatui::crossterm::event::{KeyCode, KeyEvent};
//!
//! let mut state = State::new("http://127.0.0.1:8080", chrono::Utc::now());
//! let mut press = |code| handle_key(&mut state, KeyEvent::from(code));
//! assert_eq!(press(KeyCode::Char('H')), Action::None); // opens the halt dialog
//! for c in "feed looks wrong".chars() {
//!     press(KeyCode::Char(c));
//! }
//! assert_eq!(
//!     press(KeyCode::Enter),
//!     Action::Halt { reason: "feed looks wrong".into() }
//! );
//! ```

pub mod api;
pub mod app;
pub mod exec;
pub mod feed;
pub mod model;
pub mod term;
pub mod ui;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod update_tests;

use std::path::PathBuf;
use std::sync::Arc;

use api::{ApiError, ConsoleApi, HttpApi};

/// Errors that stop the console before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token was given.
    #[error("no API token: pass --token-file FILE or set GF_TOKEN")]
    NoToken,
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The daemon rejected the token.
    #[error("the daemon rejected the token: {0}")]
    Token(ApiError),
    /// Anything else from the API client.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The terminal failed.
    #[error(transparent)]
    Term(#[from] term::TermError),
}

/// How to start the console.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daemon's base URL.
    pub url: String,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// The token from the environment (`GF_TOKEN`).
    pub env_token: Option<String>,
}

/// The token from the file, else from the environment.
///
/// # Errors
/// [`Error::NoToken`] or [`Error::TokenFile`].
pub fn resolve_token(opts: &Options) -> Result<String, Error> {
    if let Some(path) = &opts.token_file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
            path: path.clone(),
            source,
        })?;
        let t = text.trim();
        return if t.is_empty() {
            Err(Error::NoToken)
        } else {
            Ok(t.to_owned())
        };
    }
    match opts.env_token.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => Err(Error::NoToken),
    }
}

/// Checks the token, then runs the console until the operator quits. An unreachable
/// daemon is not an error: the console starts and shows it reconnecting.
///
/// # Errors
/// [`Error`] for a missing or rejected token, or a terminal failure.
pub async fn run(opts: Options) -> Result<(), Error> {
    let token = resolve_token(&opts)?;
    let api = HttpApi::new(&opts.url, &token)?;
    match api.whoami().await {
        Err(e) if e.is_auth() => return Err(Error::Token(e)),
        Ok(_) | Err(_) => {}
    }
    let url = api.base().to_owned();
    let api: Arc<dyn ConsoleApi> = Arc::new(api);
    term::run(api, &url, &token).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_the_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "gf_abc\n").unwrap();
        let opts = |token_file: Option<PathBuf>, env: Option<&str>| Options {
            url: "http://x".into(),
            token_file,
            env_token: env.map(str::to_owned),
        };
        assert_eq!(
            resolve_token(&opts(Some(file.clone()), Some("env"))).unwrap(),
            "gf_abc"
        );
        assert_eq!(resolve_token(&opts(None, Some(" env "))).unwrap(), "env");
        assert!(matches!(
            resolve_token(&opts(None, Some(""))),
            Err(Error::NoToken)
        ));
        let missing = resolve_token(&opts(Some(dir.path().join("nope")), None)).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
