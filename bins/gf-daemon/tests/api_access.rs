//! Which endpoints are public: `/livez`, plain `/readyz`, the OpenAPI document and the
//! dashboard page answer without a token; `/metrics` and `/readyz?verbose` (equity, P&L,
//! the halt reason) need a viewer token unless `api.public_metrics = true`. A real
//! Prometheus scrapes `/metrics` with a bearer token from its scrape config.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::{Config, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use gf_daemon::auth::Role;
use serde_json::Value;

async fn daemon(public_metrics: bool) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.path().join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.api.public_metrics = public_metrics;
    let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    (dir, running)
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_verbose_readiness_need_a_viewer_token_unless_configured_public() {
    let (_dir, running) = daemon(false).await;
    let url = running.url();
    let viewer = running.create_token("vic", Role::Viewer).unwrap();

    // Public: liveness, the bare readiness verdict, the API description, the page.
    assert_eq!(get(&format!("{url}/livez"), None).await.0, 200);
    let (status, body) = get(&format!("{url}/readyz"), None).await;
    assert!(status == 200 || status == 503, "{status} {body}");
    let ready = json(&body);
    assert_eq!(
        ready.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["ready"],
        "plain /readyz says ready or not, nothing more: {body}"
    );
    assert_eq!(
        get(&format!("{url}/api/v1/openapi.json"), None).await.0,
        200
    );
    assert_eq!(get(&format!("{url}/dashboard"), None).await.0, 200);

    // Private: what shows equity, P&L and the halt reason.
    for path in ["/metrics", "/readyz?verbose", "/readyz?verbose=1"] {
        let (status, body) = get(&format!("{url}{path}"), None).await;
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert_eq!(json(&body)["error"]["code"], "unauthorized", "{path}");
        let (status, _) = get(&format!("{url}{path}"), Some("gf_not_a_token")).await;
        assert_eq!(status, 401, "{path} with an unknown token");
    }
    let (status, metrics) = get(&format!("{url}/metrics"), Some(&viewer)).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("gf_halt_state"), "{metrics}");
    let (_, verbose) = get(&format!("{url}/readyz?verbose"), Some(&viewer)).await;
    assert!(
        json(&verbose)["checks"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{verbose}"
    );

    // The OpenAPI document says the same.
    let (_, spec) = get(&format!("{url}/api/v1/openapi.json"), None).await;
    let spec = json(&spec);
    assert_eq!(
        spec["paths"]["/metrics"]["get"]["security"][0]["bearer"],
        serde_json::json!([])
    );
    assert_eq!(
        spec["paths"]["/livez"]["get"]["security"],
        serde_json::json!([])
    );
    let codes = spec["components"]["responses"]["Error"]["x-error-codes"]
        .as_array()
        .unwrap();
    for code in [
        "invalid_json",
        "invalid_body",
        "invalid_field",
        "invalid_query",
        "invalid_path",
    ] {
        assert!(
            codes
                .iter()
                .any(|c| c["code"] == code && c["status"] == 400),
            "{code} documented"
        );
    }
    running.stop().await;

    // api.public_metrics = true: both answer without a token.
    let (_dir, running) = daemon(true).await;
    let url = running.url();
    let (status, metrics) = get(&format!("{url}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("gf_halt_state"));
    let (_, verbose) = get(&format!("{url}/readyz?verbose"), None).await;
    assert!(json(&verbose)["checks"].is_array(), "{verbose}");
    running.stop().await;
}

async fn prometheus_query(client: &reqwest::Client, port: u16, q: &str) -> Vec<Value> {
    let Ok(res) = client
        .post(format!("http://127.0.0.1:{port}/api/v1/query"))
        .form(&[("query", q)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let Ok(body) = res.json::<Value>().await else {
        return Vec::new();
    };
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_metrics_with_a_bearer_token_and_fails_without() {
    let bin = std::env::var("GF_PROMETHEUS")
        .ok()
        .into_iter()
        .chain(["/usr/bin/prometheus".to_owned()])
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "the Prometheus server is missing: install it with `apt-get install -y prometheus` (or set GF_PROMETHEUS to its path)",
        );
    let (dir, running) = daemon(false).await;
    let viewer = running.create_token("prometheus", Role::Viewer).unwrap();
    let target = running.addr;

    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    let yaml = [
        "global:".to_owned(),
        "  scrape_interval: 1s".to_owned(),
        "  scrape_timeout: 1s".to_owned(),
        "scrape_configs:".to_owned(),
        "  - job_name: gf".to_owned(),
        "    authorization:".to_owned(),
        format!("      credentials: {viewer}"),
        "    static_configs:".to_owned(),
        format!("      - targets: ['{target}']"),
        "  - job_name: anonymous".to_owned(),
        "    static_configs:".to_owned(),
        format!("      - targets: ['{target}']"),
    ];
    std::fs::write(&config, yaml.join("\n") + "\n").unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (with_token, anonymous) = loop {
        let with_token = prometheus_query(&client, prom_port, "up{job=\"gf\"}").await;
        let anonymous = prometheus_query(&client, prom_port, "up{job=\"anonymous\"}").await;
        if !with_token.is_empty() && !anonymous.is_empty() {
            break (with_token, anonymous);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("prometheus exited with {status}:\n{log}");
        }
        assert!(Instant::now() < deadline, "prometheus never scraped");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(with_token[0]["value"][1], "1", "scraped with the token");
    assert_eq!(anonymous[0]["value"][1], "0", "refused without a token");
    let state = prometheus_query(&client, prom_port, "gf_halt_state{job=\"gf\"}").await;
    assert_eq!(state.len(), 4, "one series per halt state: {state:?}");
    let _ = child.kill().await;
    running.stop().await;
}
