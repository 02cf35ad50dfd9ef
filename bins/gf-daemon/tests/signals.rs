//! The `gf-daemon` binary and signals and file modes, as an operator meets them: SIGHUP
//! reloads the tokens (a token from `gf-daemon token create` then works) and does not kill
//! the daemon, nor do SIGUSR2 (status line) or SIGALRM (ignored); SIGTERM stops it
//! gracefully. The data directory is 0700 and its files 0600 after launch, including an
//! older install's 0755/0644.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gf-daemon");

/// A launched daemon process (killed on drop) with its log lines.
struct Daemon {
    child: Child,
    url: String,
    token: Option<String>,
    logs: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The journal key and witness at `<root>/keys`, outside the data directory, and a
/// `$HOME` under `root`: nothing is written under the real one.
fn env<'a>(cmd: &'a mut Command, root: &Path) -> &'a mut Command {
    cmd.env("GF_JOURNAL__KEY_FILE", root.join("keys/journal.key"))
        .env("GF_JOURNAL__WITNESS_DIR", root.join("keys/witness"))
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("home/.config"))
}

impl Daemon {
    /// Launches on the data directory `<root>/data`.
    fn launch(root: &Path) -> Self {
        let data_dir = root.join("data");
        let mut child = env(&mut Command::new(BIN), root)
            .args(["--log-format", "json", "launch", "--bind", "127.0.0.1:0"])
            .args(["--speed", "5", "--data-dir"])
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gf-daemon");
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut url, mut token) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.trim().strip_prefix("API") {
                url = rest
                    .trim()
                    .strip_suffix("/api/v1/halt/status")
                    .map(str::to_owned);
            } else if let Some(rest) = line.trim().strip_prefix("export GF_TOKEN=") {
                token = Some(rest.to_owned());
            } else if line.starts_with("Halt:") {
                break;
            }
        }
        Self {
            child,
            url: url.expect("banner names the API"),
            token,
            logs,
            seen: Vec::new(),
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{name}");
    }

    /// Waits (at most 20 s) for a log line containing every one of `parts`.
    fn wait_log(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {parts:?}; exit: {:?}; log:\n{}",
                    self.child.try_wait(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits (at most 20 s) for a clean exit.
    fn stop(mut self) {
        self.signal("TERM");
        self.wait_log(&["gal-friday stopped"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status:?}");
                return;
            }
            assert!(Instant::now() < deadline, "still running after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn cli_status(url: &str, token: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["status", "--url", url])
        .env("GF_TOKEN", token)
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn sighup_reloads_tokens_and_no_handled_signal_kills_the_daemon() {
    let root = tempfile::tempdir().unwrap();
    let mut d = Daemon::launch(root.path());
    d.wait_log(&["gal-friday running"]);

    let created = Command::new(BIN)
        .args([
            "token",
            "create",
            "--name",
            "vic",
            "--role",
            "viewer",
            "--data-dir",
        ])
        .arg(root.path().join("data"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let viewer = String::from_utf8(created.stdout).unwrap().trim().to_owned();

    d.signal("HUP");
    let line = d.wait_log(&["API tokens reloaded", "SIGHUP"]);
    assert!(line.contains("\"tokens\":2"), "{line}");
    assert!(d.alive(), "SIGHUP killed the daemon");
    let out = cli_status(&d.url, &viewer);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("state: running"));

    d.signal("USR2");
    let line = d.wait_log(&["\"status\"", "SIGUSR2"]);
    assert!(line.contains("\"state\":\"running\""), "{line}");
    assert!(line.contains("strategy=running"), "{line}");
    assert!(d.alive(), "SIGUSR2 killed the daemon");

    d.signal("ALRM");
    d.wait_log(&["signal ignored", "SIGALRM"]);
    assert!(d.alive(), "SIGALRM killed the daemon");

    let out = cli_status(&d.url, d.token.as_deref().unwrap());
    assert!(out.status.success(), "{out:?}");
    d.stop();
}

#[test]
fn the_data_dir_is_private_after_launch_even_for_an_older_install() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let d = Daemon::launch(root.path());
    let private = |data: &Path| {
        assert_eq!(mode(data), 0o700, "data dir");
        let mut files = 0;
        for entry in std::fs::read_dir(data).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                files += 1;
                assert_eq!(
                    mode(&entry.path()) & 0o077,
                    0,
                    "{} is {:o}",
                    entry.path().display(),
                    mode(&entry.path())
                );
            }
        }
        for name in ["gal-friday.sqlite", "tokens.json"] {
            assert_eq!(mode(&data.join(name)), 0o600, "{name}");
        }
        files
    };
    assert!(private(&data) >= 2);
    d.stop();

    // An install from before: world-readable directory, journal, tokens and nonce.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("kraken.nonce"), "1").unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let mut d = Daemon::launch(root.path());
    d.wait_log(&["permissions tightened", "gal-friday.sqlite"]);
    d.wait_log(&["gal-friday running"]);
    private(&data);
    assert_eq!(mode(&data.join("kraken.nonce")), 0o600);
    d.stop();
    assert!(!root.path().join("home").exists(), "nothing under $HOME");
}
