//! The terminal and the event loop: raw mode and the alternate screen (restored on exit,
//! on error and on panic), keys read on a thread, API calls and feeds on tasks, one
//! redraw per event.

use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyEvent};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::sync::mpsc;

use crate::api::ConsoleApi;
use crate::app::{Action, Msg, State, handle_key, update};
use crate::exec::execute;

/// Errors of the terminal.
#[derive(Debug, thiserror::Error)]
pub enum TermError {
    /// The terminal could not be set up or drawn.
    #[error("terminal: {0}")]
    Io(#[from] io::Error),
}

/// Puts the terminal back: raw mode off, main screen, cursor shown. Safe to call twice.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

/// Installs a panic hook that restores the terminal before the panic message is printed,
/// so a panic never leaves the operator's shell in raw mode.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// The terminal in raw mode on the alternate screen; restored when dropped.
struct Guard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Guard {
    fn new() -> Result<Self, TermError> {
        enable_raw_mode()?;
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen) {
            restore();
            return Err(e.into());
        }
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                restore();
                Err(e.into())
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Reads terminal events on a thread (crossterm's reads block) until `stop` is set or
/// the receiver is gone.
fn spawn_input(tx: mpsc::Sender<Option<KeyEvent>>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => break,
            }
            let sent = match event::read() {
                Ok(Event::Key(k)) => tx.blocking_send(Some(k)),
                // A resize (or focus change) only needs a redraw.
                Ok(Event::Resize(..) | Event::FocusGained) => tx.blocking_send(None),
                Ok(_) => Ok(()),
                Err(_) => break,
            };
            if sent.is_err() {
                break;
            }
        }
    });
}

/// Runs the console until the operator quits.
///
/// # Errors
/// [`TermError`] when the terminal cannot be set up or drawn.
pub async fn run(api: Arc<dyn ConsoleApi>, url: &str, token: &str) -> Result<(), TermError> {
    install_panic_hook();
    let mut guard = Guard::new()?;
    let (msg_tx, mut msg_rx) = mpsc::channel::<Msg>(256);
    let (key_tx, mut key_rx) = mpsc::channel::<Option<KeyEvent>>(64);
    let stop = Arc::new(AtomicBool::new(false));
    spawn_input(key_tx, stop.clone());
    let _feeds = crate::feed::spawn(url, token, &msg_tx);
    let ticker = {
        let tx = msg_tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if tx.send(Msg::Tick(Utc::now())).await.is_err() {
                    break;
                }
            }
        })
    };

    let mut state = State::new(url, Utc::now());
    dispatch(&api, &msg_tx, Action::Refresh);
    let result = loop {
        if let Err(e) = guard.terminal.draw(|f| crate::ui::render(f, &state)) {
            break Err(e.into());
        }
        let action = tokio::select! {
            biased;
            key = key_rx.recv() => match key {
                Some(Some(k)) => handle_key(&mut state, k),
                Some(None) => Action::None,
                None => break Ok(()),
            },
            Some(msg) = msg_rx.recv() => update(&mut state, msg),
        };
        if action == Action::Quit {
            break Ok(());
        }
        dispatch(&api, &msg_tx, action);
    };
    stop.store(true, Ordering::Relaxed);
    ticker.abort();
    drop(guard);
    result
}

/// Runs an action's API call on a task; its answer comes back as a message.
fn dispatch(api: &Arc<dyn ConsoleApi>, tx: &mpsc::Sender<Msg>, action: Action) {
    if matches!(action, Action::None | Action::Quit) {
        return;
    }
    let api = api.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        if let Some(msg) = execute(api.as_ref(), action).await {
            let _ = tx.send(msg).await;
        }
    });
}
