//! Shared helpers for the integration tests: real peer processes on 127.0.0.1 free
//! ports (killed by a drop guard), a Kraken-like credential check server, log capture.
#![allow(dead_code, clippy::unwrap_used)]

pub mod bao;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use gf_secrets::rotation::{CredentialCheck, FnCheck};
use gf_secrets::secret::Credentials;
use hmac::{KeyInit, Mac};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Finds `tool` on PATH or fails the test saying how to install it.
pub fn require_tool(tool: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{tool}` is not on PATH; install it with: {install}");
}

/// A child process killed (and reaped) when dropped.
pub struct Peer {
    name: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Starts `program args…` with its output in a log file and `HOME` in a temp dir.
    pub fn start(name: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Self {
            name: name.into(),
            child,
            log,
            _dir: dir,
        }
    }

    /// The peer's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `url` answers any HTTP status (or fails with the peer's log).
    pub async fn wait_http(&mut self, url: &str) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited early ({status}):\n{}", self.name, self.log());
            }
            if client.get(url).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer on {url} within 60 s:\n{}",
                self.name,
                self.log()
            );
            // Readiness polling of an external process, not a timing assumption.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A well-shaped Kraken key pair (not real), distinct per seed.
pub fn sample_pair(seed: u8) -> (String, String) {
    let key: String = (0..56u8)
        .map(|i| char::from(b'a' + (i.wrapping_mul(7).wrapping_add(seed) % 26)))
        .collect();
    let secret = STANDARD.encode(
        (0..64u8)
            .map(|i| i.wrapping_mul(31) ^ seed)
            .collect::<Vec<_>>(),
    );
    (key, secret)
}

/// A stand-in for Kraken's private `Balance` endpoint: accepts requests whose
/// `API-Sign` is base64(HMAC-SHA256(secret, body)) for a key it knows.
pub struct CheckServer {
    pub addr: SocketAddr,
    accepted: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub seen_keys: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct CheckState {
    accepted: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn balance(
    State(st): State<CheckState>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let key = headers
        .get("API-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let sign = headers
        .get("API-Sign")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    st.seen.lock().unwrap().push(key.clone());
    let secret = st.accepted.lock().unwrap().get(&key).cloned();
    let Some(secret) = secret else {
        return (StatusCode::OK, r#"{"error":["EAPI:Invalid key"]}"#.into());
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
    mac.update(body.as_bytes());
    if STANDARD.encode(mac.finalize().into_bytes()) == sign {
        (
            StatusCode::OK,
            r#"{"error":[],"result":{"ZUSD":"100.0"}}"#.into(),
        )
    } else {
        (
            StatusCode::OK,
            r#"{"error":["EAPI:Invalid signature"]}"#.into(),
        )
    }
}

impl CheckServer {
    pub async fn start() -> Self {
        let accepted = Arc::new(Mutex::new(HashMap::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/0/private/Balance", post(balance))
            .with_state(CheckState {
                accepted: accepted.clone(),
                seen: seen.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            accepted,
            seen_keys: seen,
            task,
        }
    }

    /// Makes the exchange accept this pair.
    pub fn accept(&self, key: &str, secret_b64: &str) {
        self.accepted
            .lock()
            .unwrap()
            .insert(key.to_owned(), STANDARD.decode(secret_b64).unwrap());
    }

    /// A check that signs a Balance request with the candidate credentials.
    pub fn check(&self) -> Arc<dyn CredentialCheck> {
        let url = format!("http://{}/0/private/Balance", self.addr);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Arc::new(FnCheck(move |creds: Arc<Credentials>| {
            let url = url.clone();
            let client = client.clone();
            Box::pin(async move {
                let body = "nonce=1".to_string();
                let (key, sign) = creds.lend(|key, secret| {
                    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
                    mac.update(body.as_bytes());
                    (key.to_owned(), STANDARD.encode(mac.finalize().into_bytes()))
                });
                let answer: serde_json::Value = client
                    .post(url)
                    .header("API-Key", key)
                    .header("API-Sign", sign)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                match answer["error"].as_array() {
                    Some(errors) if errors.is_empty() => Ok(()),
                    _ => Err(answer["error"].to_string()),
                }
            }) as BoxFuture<'static, Result<(), String>>
        }))
    }
}

impl Drop for CheckServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct LogBuffer(pub Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Waits (bounded) for the first bus event matching `pred`.
pub async fn wait_event(
    sub: &mut gf_core::Subscription,
    what: &str,
    mut pred: impl FnMut(&gf_core::Payload) -> bool,
) -> Arc<gf_core::Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} event within 20 s"))
            .unwrap();
        if pred(&ev.payload) {
            return ev;
        }
    }
}
