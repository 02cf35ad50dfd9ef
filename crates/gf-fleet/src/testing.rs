//! A real `nats-server -js` for tests and benchmarks: started on a free loopback port
//! with its JetStream store in a temporary directory, killed (and restartable on the same
//! port and store) on demand, killed on drop. `cargo xtask test` installs the Debian
//! package `nats-server`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed) `nats-server -js` child process.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    log: PathBuf,
    extra: Vec<String>,
}

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    /// `nats-server` is not installed.
    #[error(
        "the NATS test peer is missing: install it with `apt-get install nats-server` (cargo xtask test does): {0}"
    )]
    Missing(String),
    /// Anything else.
    #[error("nats-server: {0}")]
    Other(String),
}

impl NatsServer {
    /// Starts `nats-server -js` on a free port of 127.0.0.1 and waits until it accepts
    /// connections (at most 10 s).
    ///
    /// # Errors
    /// [`NatsServerError::Missing`] without the program; [`NatsServerError::Other`] when
    /// it does not come up.
    pub fn start() -> Result<Self, NatsServerError> {
        Self::start_with(&[])
    }

    /// As [`NatsServer::start`], with more `nats-server` arguments (e.g. `--auth TOKEN`).
    ///
    /// # Errors
    /// As [`NatsServer::start`].
    pub fn start_with(extra: &[&str]) -> Result<Self, NatsServerError> {
        let store = tempfile::tempdir().map_err(|e| NatsServerError::Other(e.to_string()))?;
        let port = free_port()?;
        let log = store.path().join("nats.log");
        let mut me = Self {
            child: None,
            port,
            store,
            log,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        me.restart()?;
        Ok(me)
    }

    /// The client URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store (after [`NatsServer::kill`]).
    ///
    /// # Errors
    /// As [`NatsServer::start`].
    pub fn restart(&mut self) -> Result<(), NatsServerError> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.log)
            .map_err(|e| NatsServerError::Other(e.to_string()))?;
        // On PATH, else where Debian puts it (/usr/sbin, often not on a user's PATH).
        let program = if Path::new("/usr/sbin/nats-server").exists()
            && Command::new("nats-server")
                .arg("--version")
                .output()
                .is_err()
        {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path().join("js"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    NatsServerError::Missing(e.to_string())
                } else {
                    NatsServerError::Other(e.to_string())
                }
            })?;
        self.child = Some(child);
        // Ready when the log says so (JetStream is up once the client port listens).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("Server is ready")
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(NatsServerError::Other(format!(
                    "exited with {status} before it was ready; its log:\n{text}"
                )));
            }
            if Instant::now() > deadline {
                return Err(NatsServerError::Other(format!(
                    "not ready within 10 s; its log:\n{text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> Result<u16, NatsServerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| NatsServerError::Other(e.to_string()))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| NatsServerError::Other(e.to_string()))
}
