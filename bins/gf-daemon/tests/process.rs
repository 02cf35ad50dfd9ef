//! The `gf-daemon` binary as an operator runs it: launch, the CLI clients, SIGUSR1,
//! SIGKILL while halted and a relaunch on the same data directory, and the offline tools.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gf-daemon");

/// A launched daemon process, killed on drop.
struct Daemon {
    child: Child,
    url: String,
    token: Option<String>,
    state: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The journal key and witness live outside the data directory: `<root>/keys`, with
/// `<root>/data` the data directory (and never the real `$HOME`).
fn journal_env<'a>(cmd: &'a mut Command, root: &Path) -> &'a mut Command {
    cmd.env("GF_JOURNAL__KEY_FILE", root.join("keys/journal.key"))
        .env("GF_JOURNAL__WITNESS_DIR", root.join("keys/witness"))
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("home/.config"))
}

fn launch(root: &Path, scenario: &str) -> Daemon {
    let mut cmd = Command::new(BIN);
    journal_env(&mut cmd, root);
    let mut child = cmd
        .args([
            "--log-format",
            "json",
            "launch",
            "--bind",
            "127.0.0.1:0",
            "--speed",
            "5",
        ])
        .args(["--scenario", scenario, "--data-dir"])
        .arg(root.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gf-daemon");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut token, mut state) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.trim().strip_prefix("API") {
            url = rest
                .trim()
                .strip_suffix("/api/v1/halt/status")
                .map(str::to_owned);
        } else if let Some(rest) = line.trim().strip_prefix("state") {
            state = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.trim().strip_prefix("export GF_TOKEN=") {
            token = Some(rest.to_owned());
        } else if line.starts_with("Halt:") {
            break;
        }
    }
    Daemon {
        child,
        url: url.expect("banner names the API"),
        token,
        state: state.expect("banner names the state"),
    }
}

fn cli(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--url", url])
        .env("GF_TOKEN", token)
        .output()
        .expect("run gf-daemon cli")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_for(url: &str, token: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = stdout(&cli(url, token, &["status"]));
        if out.contains(&format!("state: {want}")) {
            return out;
        }
        assert!(Instant::now() < deadline, "never reached {want}: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn halted_daemon_killed_and_relaunched_comes_back_halted_with_its_checklist() {
    let dir = tempfile::tempdir().unwrap();
    let first = launch(dir.path(), "normal");
    assert_eq!(first.state, "running");
    let token = first
        .token
        .clone()
        .expect("a fresh data dir prints a token");

    let halt = cli(&first.url, &token, &["halt", "--reason", "operator drill"]);
    assert!(halt.status.success(), "{halt:?}");
    let out = wait_for(&first.url, &token, "halted");
    assert!(out.contains("api:operator — operator drill"), "{out}");

    let done = cli(
        &first.url,
        &token,
        &[
            "checklist",
            "complete",
            "review_halt_reason",
            "--note",
            "drill",
        ],
    );
    assert!(done.status.success(), "{done:?}");
    assert!(stdout(&done).contains("completed review_halt_reason by operator"));

    // SIGKILL: no chance to clean up.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    drop(first);

    let second = launch(dir.path(), "normal");
    assert_eq!(
        second.state, "halted",
        "a crashed daemon must come back halted"
    );
    assert!(
        second.token.is_none(),
        "the token of the data dir stays valid; none is printed"
    );
    let list = stdout(&cli(&second.url, &token, &["checklist"]));
    assert!(list.contains("[x] review_halt_reason"), "{list}");
    assert!(list.contains("[ ] confirm_resume"), "{list}");
    let refused = cli(&second.url, &token, &["resume"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("409 resume_refused"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    drop(second);

    let verify = journal_env(&mut Command::new(BIN), dir.path())
        .args(["journal", "verify", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    assert!(stdout(&verify).contains("ok"));
    assert!(
        !dir.path().join("home").exists(),
        "nothing is written under $HOME when the journal paths are set"
    );
}

/// Runs `cmd` to completion, killing it (and failing) if it is still running after `limit`.
fn exits_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn journal_cli(root: &Path, args: &[&str]) -> Output {
    journal_env(&mut Command::new(BIN), root)
        .arg("journal")
        .args(args)
        .arg("--data-dir")
        .arg(root.join("data"))
        .output()
        .unwrap()
}

#[test]
fn one_daemon_per_data_dir_verify_beside_it_and_a_lost_journal_until_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let first = launch(dir.path(), "normal");
    assert_eq!(first.state, "running");
    let token = first.token.clone().unwrap();

    // A second daemon on the same data directory is refused, naming the holder.
    let mut cmd = Command::new(BIN);
    journal_env(&mut cmd, dir.path())
        .args(["launch", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"));
    let second = exits_within(cmd, Duration::from_secs(30));
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("in use by another gf-daemon")
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");

    // `journal verify` reads beside the running daemon, no lock needed.
    let verify = journal_cli(dir.path(), &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
    assert!(stdout(&verify).contains("MAC chain intact"), "{verify:?}");

    // Adopting needs the daemon stopped.
    let adopt = journal_cli(dir.path(), &["adopt", "--operator", "carol"]);
    assert!(!adopt.status.success());
    assert!(String::from_utf8_lossy(&adopt.stderr).contains("in use by another gf-daemon"));
    drop(first);

    // The journal disappears: verify fails naming the problem, the daemon starts halted.
    let db = dir.path().join("data/gal-friday.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let verify = journal_cli(dir.path(), &["verify"]);
    assert!(!verify.status.success());
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        err.contains("journal missing") && err.contains("has run before"),
        "{err}"
    );
    let relaunched = launch(dir.path(), "normal");
    assert_eq!(relaunched.state, "halted");
    let status = stdout(&cli(&relaunched.url, &token, &["status"]));
    assert!(status.contains("auto:journal_missing"), "{status}");
    drop(relaunched);

    // The administrator adopts a new journal: it verifies, and the daemon comes back
    // halted for a review, not with the problem.
    let adopt = journal_cli(dir.path(), &["adopt", "--operator", "carol"]);
    assert!(adopt.status.success(), "{adopt:?}");
    assert!(stdout(&adopt).contains("adopted by carol"), "{adopt:?}");
    let verify = journal_cli(dir.path(), &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
    let after = launch(dir.path(), "normal");
    assert_eq!(after.state, "halted");
    let status = stdout(&cli(&after.url, &token, &["status"]));
    assert!(status.contains("auto:journal_adopted"), "{status}");
}

#[cfg(unix)]
#[test]
fn sigusr1_halts_with_source_signal() {
    let dir = tempfile::tempdir().unwrap();
    let d = launch(dir.path(), "normal");
    let token = d.token.clone().unwrap();
    let kill = Command::new("kill")
        .args(["-USR1", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = wait_for(&d.url, &token, "halted");
    assert!(out.contains("signal — SIGUSR1 received"), "{out}");
}

#[test]
fn offline_tools_report_one_line_errors_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[halt]\nmax_total_drawdown_pct = -3\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("halt.max_total_drawdown_pct") && err.contains("-3"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/market/paper.jsonl");
    let ok = Command::new(BIN)
        .args(["market", "verify"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let report = stdout(&ok);
    assert!(
        report.contains("XRP/USD") && report.contains("DOGE/USD"),
        "{report}"
    );

    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "{\"channel\":\"book\"\nnot json\n").unwrap();
    let out = Command::new(BIN)
        .args(["market", "verify"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a bad recording must fail: {out:?}");

    // A recording that cannot be read: one line naming it, a failing exit.
    let missing = dir.path().join("no-such-recording.jsonl");
    let out = Command::new(BIN)
        .args(["market", "verify"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("gf-daemon: error: ") && err.contains("no-such-recording.jsonl"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let no_token = Command::new(BIN)
        .args(["status", "--url", "http://127.0.0.1:9"])
        .env_remove("GF_TOKEN")
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("no API token"));

    let unreachable = Command::new(BIN)
        .args(["status", "--url", "http://127.0.0.1:9", "--token", "x"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the daemon"));

    let token = Command::new(BIN)
        .args([
            "token",
            "create",
            "--name",
            "bob",
            "--role",
            "viewer",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(token.status.success());
    assert!(stdout(&token).trim().starts_with("gf_"));
    let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    assert!(
        !stored.contains(stdout(&token).trim()),
        "token stored in plaintext"
    );
}

#[test]
fn secrets_encrypt_then_check_never_prints_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = "K".repeat(56);
    // base64 of 64 bytes.
    let secret =
        "Z2FsLWZyaWRheS10ZXN0LXNlY3JldCFnYWwtZnJpZGF5LXRlc3Qtc2VjcmV0IWdhbC1mcmlkYXktdGVzdC1zZQ==";
    let plain = dir.path().join("kraken.json");
    std::fs::write(
        &plain,
        format!(r#"{{"api_key":"{key}","api_secret":"{secret}"}}"#),
    )
    .unwrap();
    let out = dir.path().join("kraken.age");
    let enc = Command::new(BIN)
        .args(["secrets", "encrypt"])
        .arg(&plain)
        .arg(&out)
        .arg("--shred")
        .env("GF_MASTER_PASSWORD", "correct horse battery staple")
        .output()
        .unwrap();
    assert!(enc.status.success(), "{enc:?}");
    assert!(!plain.exists(), "the plaintext was shredded");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    let cfg = dir.path().join("gf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[secrets]\nprovider = \"file\"\nfile_path = \"{}\"\n",
            out.display()
        ),
    )
    .unwrap();
    let check = Command::new(BIN)
        .args(["secrets", "check", "--config"])
        .arg(&cfg)
        .env("GF_MASTER_PASSWORD", "correct horse battery staple")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        stdout(&check),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("validation: ok") && text.contains("api_secret"),
        "{text}"
    );
    assert!(
        !text.contains(secret) && !text.contains(&key),
        "secret printed: {text}"
    );

    let wrong = Command::new(BIN)
        .args(["secrets", "check", "--config"])
        .arg(&cfg)
        .env("GF_MASTER_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("gf-daemon: error:") && err.contains("wrong passphrase"),
        "{err}"
    );
}

/// `fleet.enabled = false` (the default): `fleet status` says so in one line (and as JSON),
/// `fleet halt` is refused with `fleet_disabled` and halts nothing, `fleet resume` needs
/// an admin before anything else.
#[test]
fn fleet_commands_against_a_daemon_without_a_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let d = launch(dir.path(), "normal");
    let token = d.token.clone().expect("a fresh data dir prints a token");

    let status = cli(&d.url, &token, &["fleet", "status"]);
    assert!(status.status.success(), "{status:?}");
    assert_eq!(
        stdout(&status),
        "fleet: off (fleet.enabled = false on this daemon)\n"
    );
    let json = cli(&d.url, &token, &["fleet", "status", "--json"]);
    assert!(json.status.success(), "{json:?}");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["enabled"], false, "{v}");
    assert_eq!(v["nodes"], serde_json::json!([]), "{v}");

    let halt = cli(&d.url, &token, &["fleet", "halt", "--reason", "drill"]);
    assert!(!halt.status.success(), "{halt:?}");
    let err = String::from_utf8_lossy(&halt.stderr);
    assert!(err.contains("409 fleet_disabled"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    let out = stdout(&cli(&d.url, &token, &["status"]));
    assert!(out.starts_with("state: running\ngate: open\n"), "{out}");

    // The launch token is an operator's: clearing a fleet halt is an admin's.
    let resume = cli(&d.url, &token, &["fleet", "resume"]);
    assert!(!resume.status.success(), "{resume:?}");
    let err = String::from_utf8_lossy(&resume.stderr);
    assert!(err.contains("403 forbidden"), "{err}");
}

/// The first log line `launch` writes that contains `marker`, with `--log-format` given
/// as `flag` (or not) and `general.log_format` set to `configured` through the
/// environment. Stderr is a pipe, so `auto` would mean JSON.
fn launch_log_line(root: &Path, flag: Option<&str>, configured: &str, marker: &str) -> String {
    let mut cmd = Command::new(BIN);
    journal_env(&mut cmd, root);
    if let Some(f) = flag {
        cmd.args(["--log-format", f]);
    }
    let child = cmd
        .args(["launch", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(root.join("data"))
        .env("GF_GENERAL__LOG_FORMAT", configured)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gf-daemon");
    let mut daemon = Daemon {
        child,
        url: String::new(),
        token: None,
        state: String::new(),
    };
    let stderr = daemon.child.stderr.take().unwrap();
    // Whatever happens, the daemon is stopped within a minute (then its stderr ends); once
    // the line is found the watchdog is called off (the daemon, dropped, is killed).
    let pid = daemon.child.id();
    let (found, watch) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            watch.recv_timeout(Duration::from_secs(60))
        {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains(marker));
    drop(found);
    line.unwrap_or_else(|| panic!("no log line with {marker:?}"))
}

#[test]
fn launch_logs_in_the_configured_format_unless_the_flag_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let human = launch_log_line(dir.path(), None, "human", "gal-friday running");
    assert!(
        !human.trim_start().starts_with('{') && human.contains("INFO"),
        "general.log_format = human: {human}"
    );
    let json = launch_log_line(dir.path(), Some("json"), "human", "gal-friday running");
    let v: serde_json::Value = serde_json::from_str(&json).expect("--log-format json wins");
    assert_eq!(v["fields"]["message"], "gal-friday running");
}
