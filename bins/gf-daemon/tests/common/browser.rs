//! Browser plumbing shared by the browser tests: locate and launch chromedriver and
//! headless Chromium, read the browser's console log (with a probe that proves it is read),
//! wait for the page, take screenshots under `target/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; override with `CHROMIUM` / `CHROMEDRIVER`). Without them the
//! tests fail and say what to install: a browser test that silently skips proves nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long any wait for the browser or the page lasts at most.
pub const WAIT: Duration = Duration::from_secs(30);
/// The window size a session starts with.
pub const LAPTOP: (u32, u32) = (1366, 900);
/// The text of the probe `console.error`.
const PROBE: &str = "gf-browser-console-probe";

/// Where an executable is: `$var` if set (and then only there), else the Debian path,
/// else `PATH`.
pub fn locate(var: &str, debian: &str, name: &str) -> Option<PathBuf> {
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

pub fn missing(what: &str, var: &str) -> anyhow::Error {
    anyhow!(
        "{what} not found: install the Debian packages `chromium` and `chromium-driver` \
         (apt-get install -y chromium chromium-driver), or point {var} at it"
    )
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

/// A chromedriver child process on a free local port; killed (with the browsers it
/// started, which share its process group) when dropped.
pub struct ChromeDriver {
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
    pub async fn start() -> Result<Self> {
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
    pub async fn browser(&self) -> Result<Browser> {
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
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    logs_url: String,
    http: reqwest::Client,
    _user_data: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`…
    pub level: String,
    /// Where it came from (`console-api`, `network`, `javascript`…).
    pub source: String,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.level, self.source, self.message)
    }
}

/// The entries at error level, one a line, for a failure message.
pub fn severe(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.level == "SEVERE")
        .map(ToString::to_string)
        .collect()
}

impl Browser {
    /// Drains the browser's console log (Chrome's `goog:loggingPrefs`).
    pub async fn console(&self) -> Result<Vec<LogEntry>> {
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
    pub async fn probe_console(&self, errors: &mut Vec<LogEntry>) -> Result<()> {
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

    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.client.find(Locator::Css(css)).await?.text().await?)
    }

    pub async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    pub async fn click(&self, css: &str) -> Result<()> {
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
    pub async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T>
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

    pub async fn until_text(&self, css: &str, expected: &str) -> Result<()> {
        self.until_text_within(css, expected, WAIT).await
    }

    pub async fn until_text_within(&self, css: &str, expected: &str, wait: Duration) -> Result<()> {
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

    pub async fn until_js(&self, what: &str, script: &str) -> Result<Value> {
        self.until(what, || async move {
            let v = self.js(script).await?;
            Ok((v != Value::Null && v != Value::Bool(false)).then_some(v))
        })
        .await
    }

    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
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

/// Runs `scenario` with a fresh browser, then closes the browser and the driver whatever
/// happened, and re-raises the scenario's panic or error.
pub async fn with_browser<F, Fut>(scenario: F) -> Result<()>
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
