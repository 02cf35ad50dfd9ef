//! Test peers shared by the integration tests: an HTTP capture server and helpers to
//! serve the monitor's routes on a loopback port.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use parking_lot::Mutex;
use tokio::net::TcpListener;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct CaptureState {
    got: Arc<Mutex<Vec<Captured>>>,
    /// Statuses to answer, in order; 200 once exhausted.
    script: Arc<Mutex<VecDeque<u16>>>,
    hang: bool,
}

/// A loopback HTTP server that records every request.
pub struct CaptureServer {
    pub addr: SocketAddr,
    state: CaptureState,
    task: tokio::task::JoinHandle<()>,
}

impl CaptureServer {
    pub async fn start() -> Self {
        Self::start_with(Vec::new(), false).await
    }

    /// Answers the given statuses first (e.g. `[503, 503]`), then 200.
    pub async fn scripted(statuses: Vec<u16>) -> Self {
        Self::start_with(statuses, false).await
    }

    /// Accepts requests and never answers.
    pub async fn hanging() -> Self {
        Self::start_with(Vec::new(), true).await
    }

    async fn start_with(statuses: Vec<u16>, hang: bool) -> Self {
        let state = CaptureState {
            script: Arc::new(Mutex::new(statuses.into())),
            hang,
            ..Default::default()
        };
        let app = Router::new()
            .fallback(any(capture))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.state.got.lock().clone()
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn capture(
    State(st): State<CaptureState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    st.got.lock().push(Captured {
        method,
        path: uri.to_string(),
        headers,
        body,
    });
    if st.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let code = st.script.lock().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

/// Serves `router` on a loopback port; the task ends when the returned handle drops.
pub async fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, task)
}

/// A loopback port nobody listens on (bound then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `[[monitor.channels]]` table from TOML text.
pub fn channel(
    name: &str,
    kind: gf_core::config::ChannelKind,
    settings: &str,
) -> gf_core::config::ChannelConfig {
    let settings = toml::from_str(settings).unwrap();
    gf_core::config::ChannelConfig {
        name: name.into(),
        kind,
        min_severity: None,
        settings,
    }
}

/// A firing notice.
pub fn notice() -> gf_monitor::Notice {
    gf_monitor::Notice {
        key: "halt".into(),
        rule: "halt".into(),
        severity: gf_core::Severity::Critical,
        status: gf_core::AlertStatus::Firing,
        summary: "trading halted by cli: operator request".into(),
        labels: [("source".to_owned(), "cli".to_owned())].into(),
        starts_at: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .into(),
        ends_at: None,
        grouped: vec![],
    }
}
