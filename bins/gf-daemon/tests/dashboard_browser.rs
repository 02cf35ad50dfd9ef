//! The web dashboard in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini), against a paper daemon started in this process.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; override with `CHROMIUM` / `CHROMEDRIVER`). Without them the
//! tests fail and say what to install: a browser test that silently skips proves nothing.
//! Every JavaScript error the browser logs fails the test (a probe `console.error` first
//! proves the log is really read). Screenshots go to `target/`: `dashboard-running.png`,
//! `dashboard-halted.png`, `dashboard-phone.png` (390 px wide) and `dashboard-crash.png`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use fantoccini::{Client, ClientBuilder, Locator};
use gf_core::{Config, HaltSource, HaltState, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const LAPTOP: (u32, u32) = (1366, 900);
const PHONE: (u32, u32) = (390, 844);
const PROBE: &str = "gf-dashboard-console-probe";

// ------------------------------------------------------------------ browser plumbing

/// Where an executable is: `$var` if set (and then only there), else the Debian path,
/// else `PATH`.
fn locate(var: &str, debian: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    if Path::new(debian).is_file() {
        return Some(PathBuf::from(debian));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn missing(what: &str, var: &str) -> anyhow::Error {
    anyhow!(
        "{what} not found: install the Debian packages `chromium` and `chromium-driver` \
         (apt-get install -y chromium chromium-driver), or point {var} at it"
    )
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

/// A chromedriver child process on a free local port; killed (with the browsers it
/// started, which share its process group) when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            // The group is the one `process_group(0)` gave the child: ours alone.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChromeDriver {
    async fn start() -> Result<Self> {
        let driver = locate("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")
            .ok_or_else(|| missing("chromedriver", "CHROMEDRIVER"))?;
        let port = free_port()?;
        let profile = tempfile::tempdir()?;
        let mut cmd = Command::new(&driver);
        cmd.arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let mut this = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(code) = this.child.try_wait()? {
                bail!("chromedriver exited at start ({code}): {}", this.log_tail());
            }
            let ready = http
                .get(format!("{}/status", this.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(resp) = ready
                && let Ok(body) = resp.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Ok(this);
            }
            if Instant::now() > deadline {
                bail!("chromedriver not ready after {WAIT:?}: {}", this.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("chromedriver.log"))
            .unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_owned()
    }

    /// A new headless Chromium session with its own fresh profile.
    async fn browser(&self) -> Result<Browser> {
        let chromium = locate("CHROMIUM", "/usr/bin/chromium", "chromium")
            .ok_or_else(|| missing("chromium", "CHROMIUM"))?;
        let user_data = tempfile::tempdir_in(self.profile.path())?;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    format!("--window-size={},{}", LAPTOP.0, LAPTOP.1),
                    format!("--user-data-dir={}", user_data.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        // The WebDriver connection is plain HTTP on loopback, but fantoccini's connector
        // loads the system's CA roots all the same.
        let client = ClientBuilder::rustls()
            .context("WebDriver client: install the Debian package `ca-certificates`")?
            .capabilities(caps)
            .connect(&self.url)
            .await
            .map_err(|e| anyhow!("starting a Chromium session: {e}; {}", self.log_tail()))?;
        let session = client
            .session_id()
            .await?
            .context("the WebDriver session has no id")?;
        Ok(Browser {
            client,
            logs_url: format!("{}/session/{session}/se/log", self.url),
            http: reqwest::Client::new(),
            _user_data: user_data,
        })
    }
}

/// A browser session plus what it needs to read the browser's console log.
struct Browser {
    client: Client,
    logs_url: String,
    http: reqwest::Client,
    _user_data: tempfile::TempDir,
}

#[derive(Debug, Clone)]
struct LogEntry {
    level: String,
    source: String,
    message: String,
}

impl std::fmt::Display for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.level, self.source, self.message)
    }
}

/// The entries at error level, one a line, for a failure message.
fn severe(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.level == "SEVERE")
        .map(ToString::to_string)
        .collect()
}

impl Browser {
    /// Drains the browser's console log (Chrome's `goog:loggingPrefs`).
    async fn console(&self) -> Result<Vec<LogEntry>> {
        let resp: Value = self
            .http
            .post(&self.logs_url)
            .json(&json!({ "type": "browser" }))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let entries = resp["value"]
            .as_array()
            .with_context(|| format!("browser log answer: {resp}"))?;
        Ok(entries
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_owned(),
                source: e["source"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Proves the console log is really collected: a `console.error` from the page's
    /// context must come back through [`Browser::console`].
    async fn probe_console(&self, errors: &mut Vec<LogEntry>) -> Result<()> {
        self.client
            .execute(&format!("console.error('{PROBE}')"), vec![])
            .await?;
        let entries = self.console().await?;
        ensure!(
            entries
                .iter()
                .any(|e| e.level == "SEVERE" && e.message.contains(PROBE)),
            "the probe console.error did not reach the browser log: {entries:?}"
        );
        errors.extend(entries.into_iter().filter(|e| !e.message.contains(PROBE)));
        Ok(())
    }

    async fn text(&self, css: &str) -> Result<String> {
        Ok(self.client.find(Locator::Css(css)).await?.text().await?)
    }

    async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    async fn click(&self, css: &str) -> Result<()> {
        let el = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await?;
        el.click().await?;
        Ok(())
    }

    /// Waits until `check` answers `Some`, polling; fails naming `what` and the last
    /// answer.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what} (last error: {last})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn until_text(&self, css: &str, expected: &str) -> Result<()> {
        self.until_text_within(css, expected, WAIT).await
    }

    async fn until_text_within(&self, css: &str, expected: &str, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let seen = self.text(css).await;
            if seen.as_deref().is_ok_and(|s| s == expected) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {css} to read {expected:?}; it reads {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn until_js(&self, what: &str, script: &str) -> Result<Value> {
        self.until(what, || async move {
            let v = self.js(script).await?;
            Ok((v != Value::Null && v != Value::Bool(false)).then_some(v))
        })
        .await
    }

    async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        ensure!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "screenshot is not a PNG"
        );
        let dir = target_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.canonicalize()?.join(name);
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

// ------------------------------------------------------------------ daemon

fn config(dir: &Path, bind: SocketAddr) -> Result<Config> {
    let mut cfg = Config::from_toml_str("")?;
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = bind;
    Ok(cfg)
}

async fn daemon(dir: &Path, bind: SocketAddr) -> Result<Running> {
    start(config(dir, bind)?, Scenario::Normal, Arc::new(SystemClock)).await
}

/// The bundled crash, replayed 20 times faster than recorded.
async fn crashing_daemon(dir: &Path) -> Result<Running> {
    let mut cfg = config(dir, "127.0.0.1:0".parse()?)?;
    cfg.market.replay_speed = 20.into();
    start(cfg, Scenario::Crash, Arc::new(SystemClock)).await
}

/// What the daemon itself says (halt, positions, equity, drawdown), for a failure message
/// that tells a page fault from a daemon that never got there.
fn daemon_view(running: &Running) -> String {
    use gf_risk::PortfolioView;
    let status = running.daemon.halt.status();
    let portfolio = running.daemon.portfolio.read(|p| {
        format!(
            "positions {:?}, equity {}, total drawdown {} %",
            p.positions(),
            p.equity(),
            p.total_drawdown_pct()
        )
    });
    format!(
        "daemon: state {:?}, halt {:?}; {portfolio}",
        status.state, status.halt
    )
}

/// Runs `scenario` with a fresh browser, then closes the browser and the driver whatever
/// happened, and re-raises the scenario's panic or error.
async fn with_browser<F, Fut>(scenario: F) -> Result<()>
where
    F: FnOnce(Arc<Browser>) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let driver = ChromeDriver::start().await?;
    let browser = Arc::new(driver.browser().await?);
    let outcome = tokio::spawn(scenario(browser.clone())).await;
    let _ = browser.client.clone().close().await;
    drop(driver);
    match outcome {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(e.into()),
    }
}

/// Opens the dashboard and signs in with `token`; returns once the state banner shows a
/// state from the daemon.
async fn open_and_sign_in(
    b: &Browser,
    url: &str,
    token: &str,
    errors: &mut Vec<LogEntry>,
) -> Result<()> {
    b.client.goto(&format!("{url}/dashboard")).await?;
    b.probe_console(errors).await?;
    let input = b
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#token-input"))
        .await?;
    ensure!(input.is_displayed().await?, "the token form is not shown");
    input.send_keys(token).await?;
    b.click("#token-submit").await?;
    b.until_js(
        "the first dashboard frame",
        "return window.gfDashboard.frames > 0",
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_halts_from_the_page_and_walks_the_checklist() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = Arc::new(daemon(dir.path(), "127.0.0.1:0".parse()?).await?);
    let token = running
        .operator_token
        .clone()
        .context("a fresh data directory gets an operator token")?;
    let url = running.url();
    let d = running.clone();
    let reason = "dashboard test: spread looks wrong";

    with_browser(move |b| async move {
        let mut errors = Vec::new();
        open_and_sign_in(&b, &url, &token, &mut errors).await?;

        // Running, with live content.
        b.until_text("#state-text", "Running").await?;
        let class = b
            .js("return document.getElementById('state-banner').className")
            .await?;
        assert_eq!(class, "banner state-running");
        assert_eq!(b.text("#who").await?, "operator (operator)");
        assert_eq!(b.text("#conn").await?, "live");
        assert!(
            !b.client
                .find(Locator::Id("disconnected"))
                .await?
                .is_displayed()
                .await?
        );
        b.until_js(
            "three frames of history",
            "return window.gfDashboard.historyLength >= 3",
        )
        .await?;
        let equity_path = b
            .js("return document.querySelector('#equity-chart path.equity').getAttribute('d')")
            .await?;
        assert!(
            equity_path
                .as_str()
                .is_some_and(|d| d.starts_with('M') && d.contains('L')),
            "the equity curve is drawn: {equity_path}"
        );
        let conditions = b
            .js("return document.querySelectorAll('#conditions li[data-condition]').length")
            .await?;
        assert!(
            conditions.as_u64() > Some(0),
            "conditions listed: {conditions}"
        );
        let system = b.text("#system").await?;
        assert!(
            system.contains("CPU") && system.contains("Memory"),
            "{system}"
        );
        // Latency percentiles over time, per stage, from the page's own history.
        for micros in [120, 180, 250, 400, 900, 2_500] {
            d.daemon
                .monitor
                .metrics()
                .record_latency("order_ack", micros);
        }
        b.until_js(
            "the order_ack latency chart",
            "const p = document.querySelector('#latency [data-stage=\"order_ack\"] path.p99'); \
             return p && p.getAttribute('d').includes('L')",
        )
        .await?;
        let caption = b
            .text("#latency [data-stage=\"order_ack\"] .caption")
            .await?;
        let served = d.daemon.monitor.metrics().latency_percentiles()["order_ack"];
        for expected in [
            format!("p50 {} µs", served.p50),
            format!("p99 {} µs", served.p99),
            "6 samples".to_owned(),
        ] {
            assert!(caption.contains(&expected), "{expected:?} in {caption:?}");
        }

        // The whole page, tall enough to show every card.
        b.client.set_window_size(LAPTOP.0, 1800).await?;
        b.screenshot("dashboard-running.png").await?;
        b.client.set_window_size(LAPTOP.0, LAPTOP.1).await?;

        // Cancelling the dialog halts nothing.
        b.click("#halt-button").await?;
        b.until_js(
            "the halt dialog",
            "return document.getElementById('halt-dialog').open",
        )
        .await?;
        b.click("#halt-cancel").await?;
        b.until_js(
            "the dialog to close",
            "return !document.getElementById('halt-dialog').open",
        )
        .await?;
        assert_eq!(d.daemon.halt.state(), HaltState::Running);
        assert_eq!(b.text("#state-text").await?, "Running");

        // Halt with the page's button: a dialog asks for the reason, then confirms.
        b.click("#halt-button").await?;
        b.until_js(
            "the halt dialog",
            "return document.getElementById('halt-dialog').open",
        )
        .await?;
        let confirm = b.client.find(Locator::Id("halt-confirm")).await?;
        assert!(!confirm.is_enabled().await?, "no halt without a reason");
        b.client
            .find(Locator::Id("halt-reason"))
            .await?
            .send_keys(reason)
            .await?;
        assert!(confirm.is_enabled().await?);
        confirm.click().await?;

        b.until_text("#state-text", "Halted").await?;
        assert_eq!(b.text("#state-reason").await?, reason);
        assert_eq!(b.text("#state-source").await?, "api:operator");
        assert!(b.text("#state-since").await?.contains("ago"));
        assert_eq!(b.text("#gate").await?, "order gate closed");
        let class = b
            .js("return document.getElementById('state-banner').className")
            .await?;
        assert_eq!(class, "banner state-halted");
        assert_eq!(
            b.js("return document.getElementById('halt-dialog').open")
                .await?,
            false
        );
        assert!(
            !b.client
                .find(Locator::Id("halt-button"))
                .await?
                .is_enabled()
                .await?
        );

        // The daemon really halted, for the reason typed in the page.
        let status = d.daemon.halt.status();
        assert_eq!(status.state, HaltState::Halted);
        let halt = status.halt.context("a halt is recorded")?;
        assert_eq!(halt.reason, reason);
        assert_eq!(halt.source, HaltSource::Api("operator".into()));

        b.until_js(
            "the recovery checklist",
            "return !document.getElementById('checklist-card').hidden \
             && document.querySelectorAll('#checklist li').length",
        )
        .await?;
        let shot = b.screenshot("dashboard-halted.png").await?;
        eprintln!("screenshot: {}", shot.display());

        // A phone's width: everything reflows into one column, nothing scrolls sideways.
        b.client.set_window_size(PHONE.0, PHONE.1).await?;
        b.until_js(
            "the phone layout",
            &format!("return window.innerWidth <= {}", PHONE.0),
        )
        .await?;
        let overflow = b
            .js("return document.documentElement.scrollWidth - window.innerWidth")
            .await?;
        assert!(
            overflow.as_i64() <= Some(0),
            "horizontal overflow of {overflow} px"
        );
        let button = b
            .client
            .find(Locator::Id("halt-button"))
            .await?
            .rectangle()
            .await?;
        assert!(
            button.0 >= 0.0 && button.0 + button.2 <= f64::from(PHONE.0),
            "{button:?}"
        );
        b.screenshot("dashboard-phone.png").await?;
        b.client.set_window_size(LAPTOP.0, LAPTOP.1).await?;

        // Walk the checklist from the page, one item at a time, then resume.
        let items = b
            .js("return document.querySelectorAll('#checklist li').length")
            .await?
            .as_u64()
            .context("item count")?;
        for done in 1..=items {
            b.click("#checklist button.complete").await?;
            b.until_js(
                &format!("{done} checklist item(s) done"),
                &format!("return document.querySelectorAll('#checklist li.done').length >= {done}"),
            )
            .await?;
        }
        assert_eq!(b.text("#checklist-missing").await?, "all items done");
        b.until_js(
            "the resume button",
            "return !document.getElementById('resume-button').disabled",
        )
        .await?;
        b.click("#resume-button").await?;
        b.until_text("#state-text", "Running").await?;
        assert_eq!(d.daemon.halt.state(), HaltState::Running);
        assert!(b.text("#state-reason").await?.contains(reason));
        let checklist_error = b.text("#checklist-error").await?;
        assert_eq!(checklist_error, "", "no API call failed");

        errors.extend(b.console().await?);
        let severe = severe(&errors);
        assert!(
            severe.is_empty(),
            "JavaScript errors in the console: {severe:#?}"
        );
        Ok(())
    })
    .await?;
    Arc::into_inner(running)
        .context("the daemon is still shared")?
        .stop()
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_refuses_a_bad_token_and_reconnects_after_a_daemon_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = daemon(dir.path(), "127.0.0.1:0".parse()?).await?;
    let token = first.operator_token.clone().context("operator token")?;
    let addr = first.addr;
    let url = first.url();
    let data_dir = dir.path().to_path_buf();

    with_browser(move |b| async move {
        let mut errors = Vec::new();
        // A wrong token is refused at the form and never reaches the sockets.
        b.client.goto(&format!("{url}/dashboard")).await?;
        let input = b
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("token-input"))
            .await?;
        input.send_keys("not-a-token").await?;
        b.click("#token-submit").await?;
        b.until_text("#token-error", "the daemon rejected this token")
            .await?;
        assert!(
            !b.client
                .find(Locator::Id("app"))
                .await?
                .is_displayed()
                .await?
        );
        assert_eq!(b.js("return window.gfDashboard.frames").await?, 0);

        open_and_sign_in(&b, &url, &token, &mut errors).await?;
        b.until_text("#state-text", "Running").await?;

        // A reload keeps the token for the tab: no second prompt.
        b.client.refresh().await?;
        b.until_js(
            "a frame after the reload",
            "return window.gfDashboard.frames > 0",
        )
        .await?;
        assert!(
            !b.client
                .find(Locator::Id("login"))
                .await?
                .is_displayed()
                .await?
        );

        // A halt from elsewhere reaches the page over /ws/halt-status.
        first
            .daemon
            .halt
            .halt(HaltSource::Cli, "before the restart")
            .await;
        b.until_text("#state-text", "Halted").await?;
        assert_eq!(b.text("#state-reason").await?, "before the restart");

        // The daemon goes away: the page says so and keeps trying.
        first.stop().await;
        b.until_js(
            "the disconnected banner",
            "return !document.getElementById('disconnected').hidden",
        )
        .await?;
        assert!(
            b.text("#disconnected")
                .await?
                .starts_with("Disconnected from the daemon.")
        );
        assert_eq!(b.text("#conn").await?, "offline");
        let frames_before = b.js("return window.gfDashboard.frames").await?;

        // It comes back on the same address and data directory: the page reconnects by
        // itself, with the token it kept, and shows the state restored from the journal.
        let second = b
            .until("the daemon to bind its old address again", || {
                let data_dir = data_dir.clone();
                async move { Ok(daemon(&data_dir, addr).await.ok()) }
            })
            .await?;
        assert!(second.operator_token.is_none(), "the token store persisted");
        b.until_js(
            "the banner to clear",
            "return document.getElementById('disconnected').hidden",
        )
        .await?;
        b.until_js(
            "frames from the new daemon",
            &format!("return window.gfDashboard.frames > {frames_before}"),
        )
        .await?;
        assert_eq!(b.text("#state-text").await?, "Halted");
        assert_eq!(b.text("#state-reason").await?, "before the restart");
        assert_eq!(b.text("#conn").await?, "live");
        second.stop().await;

        // The browser logs the refused token's 401 and, while the daemon was down, the
        // refused connections; those are the only errors allowed here.
        errors.extend(b.console().await?);
        let unexpected: Vec<_> = severe(&errors)
            .into_iter()
            .filter(|e| {
                let expected = e.contains("ERR_CONNECTION_REFUSED")
                    || (e.contains("WebSocket connection to") && e.contains(&addr.to_string()))
                    || (e.contains("/api/v1/whoami") && e.contains("401"));
                !expected
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "JavaScript errors in the console: {unexpected:#?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_halt_in_a_crash_shows_its_condition_and_the_drawdown() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = Arc::new(crashing_daemon(dir.path()).await?);
    let token = running.operator_token.clone().context("operator token")?;
    let url = running.url();
    let d = running.clone();

    with_browser(move |b| async move {
        let mut errors = Vec::new();
        open_and_sign_in(&b, &url, &token, &mut errors).await?;

        // Nobody presses anything: the slide trips a drawdown condition and the page shows
        // the automatic halt and points at the condition that caused it (which may have
        // cleared again once the positions were flattened).
        b.until_text_within("#state-text", "Halted", Duration::from_secs(90))
            .await
            .with_context(|| daemon_view(&d))?;
        let source = b.text("#state-source").await?;
        assert!(source.starts_with("auto:"), "{source}");
        let status = d.daemon.halt.status();
        let halt = status.halt.context("a halt is recorded")?;
        assert_eq!(b.text("#state-reason").await?, halt.reason);
        let HaltSource::Auto(condition) = &halt.source else {
            bail!("expected an automatic halt, got {}", halt.source);
        };
        let row = format!("#conditions li[data-condition=\"{condition}\"]");
        b.until_js(
            "the condition that caused the halt marked",
            &format!(
                "const li = document.querySelector('{row}'); \
                 return li && li.classList.contains('cause')"
            ),
        )
        .await?;
        let text = b.text(&row).await?;
        assert!(text.contains("caused the halt"), "{text}");

        // The equity curve dropped below its peak: the drawdown band has an area (once
        // the history holds at least two points of it).
        let band = b
            .until_js(
                "a shaded drawdown",
                "const dd = window.gfDashboard.maxDrawdownPct; \
                 const r = document.querySelector('#equity-chart path.drawdown').getBBox(); \
                 return dd > 0.1 && r.width * r.height > 1 && [dd, r.width * r.height]",
            )
            .await
            .with_context(|| daemon_view(&d))?;
        eprintln!("drawdown % and band area: {band}");

        b.client.set_window_size(LAPTOP.0, 1800).await?;
        b.screenshot("dashboard-crash.png").await?;

        errors.extend(b.console().await?);
        let severe = severe(&errors);
        assert!(
            severe.is_empty(),
            "JavaScript errors in the console: {severe:#?}"
        );
        Ok(())
    })
    .await?;
    Arc::into_inner(running)
        .context("the daemon is still shared")?
        .stop()
        .await;
    Ok(())
}
