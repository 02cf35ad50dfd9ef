//! The API keeps answering when clients hold connections open: the real binary under
//! `ulimit -n 1024` (soft and hard, so the daemon cannot raise it) answers `POST
//! /api/v1/halt` and `/livez` with 2,000 idle and some half-sent connections open; a
//! half-sent request is closed after the header-read timeout, an idle connection after the
//! idle timeout; a connection beyond the limit closes the longest-idle one. Launched with a
//! soft open-file limit below the hard one, the daemon raises it to the hard limit.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::{Config, SystemClock};
use gf_daemon::app::{Running, Scenario, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_gf-daemon");

/// Idle connections the test opens against a daemon limited to 1,024 descriptors.
const IDLE: usize = 2_000;
/// Connections that send half a request head and stop.
const HALF_SENT: usize = 20;

/// A daemon process, killed on drop.
struct Daemon {
    child: Child,
    addr: String,
    token: String,
    log: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Raises this process's soft open-file limit to its hard limit; fails when the hard
/// limit cannot hold `needed` descriptors.
fn raise_own_fd_limit(needed: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= needed,
        "this test holds {needed} sockets open but the hard open-file limit is {hard}: \
         raise it (e.g. `ulimit -Hn 4096` in the shell that runs cargo test)"
    );
    if lim.current.is_some_and(|soft| soft < needed) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        )
        .expect("raising the soft open-file limit to the hard limit");
    }
}

/// Launches the binary under a soft open-file limit of `soft` and a hard limit of 1,024
/// through `sh`, which `exec`s it: the daemon's pid is the child's. Data in `<root>/data`,
/// the journal key and witness in `<root>/keys`, never under the real `$HOME`.
fn launch_limited(root: &Path, soft: u32) -> Daemon {
    let log = root.join("daemon.log");
    let mut child = Command::new("sh")
        .env("GF_JOURNAL__KEY_FILE", root.join("keys/journal.key"))
        .env("GF_JOURNAL__WITNESS_DIR", root.join("keys/witness"))
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("home/.config"))
        .arg("-c")
        .arg(format!(
            r#"ulimit -Sn {soft} && ulimit -Hn 1024 && exec "$0" "$@""#
        ))
        .arg(BIN)
        .args(["--log-format", "json", "launch", "--bind", "127.0.0.1:0"])
        .args(["--scenario", "normal", "--data-dir"])
        .arg(root.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn gf-daemon under sh");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut addr, mut token) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("API") {
            addr = rest
                .trim()
                .strip_prefix("http://")
                .and_then(|r| r.strip_suffix("/api/v1/halt/status"))
                .map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("export GF_TOKEN=") {
            token = Some(rest.to_owned());
        } else if line.starts_with("Halt:") {
            break;
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    Daemon {
        child,
        addr: addr.unwrap_or_else(|| panic!("the banner names the API; log:\n{log_text}")),
        token: token.expect("a fresh data dir prints a token"),
        log,
    }
}

/// `(soft, hard)` open-file limits of a process, from `/proc`.
fn fd_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): the status, the body
/// and how long it took. Fails after `deadline`.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    deadline: Duration,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(deadline)).unwrap();
    s.set_write_timeout(Some(deadline)).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        read.is_ok() && took < deadline,
        "{method} {path}: no complete answer within {deadline:?} ({read:?}): {text:?}"
    );
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body, took)
}

#[test]
fn halt_answers_with_2000_idle_connections_open_under_ulimit_1024() {
    raise_own_fd_limit((IDLE + HALF_SENT + 200) as u64);
    let dir = tempfile::tempdir().unwrap();
    let d = launch_limited(dir.path(), 1024);
    assert_eq!(
        fd_limits(d.child.id()),
        ("1024".to_owned(), "1024".to_owned()),
        "the daemon runs with 1,024 descriptors, soft and hard"
    );

    let opened = Instant::now();
    let mut held = Vec::with_capacity(IDLE + HALF_SENT);
    for _ in 0..IDLE {
        held.push(TcpStream::connect(&d.addr).expect("connect an idle socket"));
    }
    for _ in 0..HALF_SENT {
        let mut s = TcpStream::connect(&d.addr).expect("connect a half-sent socket");
        s.write_all(b"POST /api/v1/halt HTTP/1.1\r\nHost: x\r\nContent-Type: appli")
            .unwrap();
        held.push(s);
    }
    println!(
        "opened {} connections in {:?}",
        held.len(),
        opened.elapsed()
    );

    let (status, body, took) = request(
        &d.addr,
        "POST",
        "/api/v1/halt",
        Some(&d.token),
        r#"{"reason":"drill under 2000 idle connections"}"#,
        Duration::from_secs(5),
    );
    println!("POST /api/v1/halt answered {status} in {took:?}");
    assert_eq!(status, 202, "{body}\n{}", d.log_tail());
    assert!(body.contains(r#""started":true"#), "{body}");

    let (status, body, took) = request(&d.addr, "GET", "/livez", None, "", Duration::from_secs(5));
    println!("GET /livez answered {status} in {took:?}");
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = request(
        &d.addr,
        "GET",
        "/api/v1/halt/status",
        Some(&d.token),
        "",
        Duration::from_secs(5),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""state":"halting""#) || body.contains(r#""state":"halted""#),
        "{body}"
    );
    assert_eq!(
        fd_limits(d.child.id()).0,
        "1024",
        "still the same limited daemon"
    );
    drop(held);
}

#[test]
fn the_daemon_raises_its_soft_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = launch_limited(dir.path(), 256);
    assert_eq!(
        fd_limits(d.child.id()),
        ("1024".to_owned(), "1024".to_owned()),
        "launched with soft 256 and hard 1024, the daemon serves with soft = hard\n{}",
        d.log_tail()
    );
    let (status, body, _) = request(&d.addr, "GET", "/livez", None, "", Duration::from_secs(5));
    assert_eq!(status, 200, "{body}");
}

fn config(dir: &Path, header_ms: u64, idle_ms: u64, max_connections: usize) -> Config {
    let mut cfg = Config::from_toml_str("").unwrap();
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().unwrap();
    cfg.api.header_read_timeout_ms = header_ms;
    cfg.api.idle_timeout_ms = idle_ms;
    cfg.api.max_connections = max_connections;
    cfg
}

async fn start_daemon(cfg: Config) -> Running {
    start(cfg, Scenario::Normal, Arc::new(SystemClock))
        .await
        .unwrap()
}

/// Waits for the server to close `s` (end of file or reset); how long it took from `since`.
async fn closed_within(s: &mut tokio::net::TcpStream, since: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(since.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server did not close the connection within {limit:?}"),
        }
    }
}

/// Whether the server still holds `s` open (nothing to read, no end of file).
fn still_open(s: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A keep-alive `GET /livez` on `s`, read to the end of its body.
async fn livez_keep_alive(s: &mut tokio::net::TcpStream) {
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            s.read(&mut buf),
        )
        .await
        .expect("an answer to /livez")
        .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if body.len() >= len {
                assert!(head.starts_with("HTTP/1.1 200"), "{text}");
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_close_after_the_header_timeout_idle_connections_after_the_idle_timeout()
{
    let dir = tempfile::tempdir().unwrap();
    let running = start_daemon(config(dir.path(), 200, 2_000, 256)).await;
    let addr = running.addr;

    let t0 = Instant::now();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut kept_alive = tokio::net::TcpStream::connect(addr).await.unwrap();
    livez_keep_alive(&mut kept_alive).await;
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    let half_started = Instant::now();
    half.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();

    let took = closed_within(&mut half, half_started, Duration::from_secs(10)).await;
    println!("half-sent request closed after {took:?}");
    assert!(
        took >= Duration::from_millis(190),
        "closed before the header timeout: {took:?}"
    );
    // Closed by the header timeout, not the idle timeout (2 s): the idle connection, open
    // since before the half-sent one, would have been closed first by that.
    assert!(
        still_open(&idle) && still_open(&kept_alive),
        "idle connections outlive the header timeout"
    );

    let took = closed_within(&mut idle, t0, Duration::from_secs(15)).await;
    println!("idle connection closed after {took:?}");
    assert!(
        took >= Duration::from_millis(1_900),
        "closed before the idle timeout: {took:?}"
    );
    closed_within(&mut kept_alive, t0, Duration::from_secs(15)).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_limit_closes_the_longest_idle_one() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_daemon(config(dir.path(), 5_000, 60_000, 8)).await;
    let addr = running.addr;

    // The oldest: connected and silent.
    let mut oldest = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Seven more, each served a request since.
    let mut others = Vec::new();
    for _ in 0..7 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        livez_keep_alive(&mut s).await;
        others.push(s);
    }
    // The ninth is served, and the silent one makes room for it.
    let mut ninth = tokio::net::TcpStream::connect(addr).await.unwrap();
    livez_keep_alive(&mut ninth).await;
    closed_within(&mut oldest, Instant::now(), Duration::from_secs(10)).await;
    assert!(
        others.iter().all(still_open),
        "only the longest-idle connection is closed"
    );
    running.stop().await;
}
