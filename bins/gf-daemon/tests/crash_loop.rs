//! Crash–restart loop: the real `gf-daemon` binary is SIGKILLed at random moments across
//! every halt state (running, right after a halt request is written, halting, halted,
//! mid-checklist, right after a resume) and relaunched on the same data directory.
//!
//! Invariants checked after every restart:
//! - no acknowledged operation is lost: every halt, checklist step and resume that was
//!   answered 2xx is in the journal;
//! - never `running` after a halt was acknowledged (or seen in progress) and not followed by
//!   an acknowledged resume;
//! - the journal verifies offline (`gf-daemon journal verify`) at the end.
//!
//! The moments are drawn from a seeded generator (printed, and settable with
//! `GF_CRASH_SEED`) so a failure can be replayed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gf-daemon");
const KILLS: usize = 50;

/// A small deterministic generator (splitmix64): no dependency, replayable by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Launched {
    child: Child,
    addr: String,
    token: Option<String>,
    state: String,
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(data_dir: &Path, keys: &Path) -> Launched {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "launch",
            "--bind",
            "127.0.0.1:0",
            "--speed",
            "20",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("GF_JOURNAL__KEY_FILE", keys.join("journal.key"))
        .env("GF_JOURNAL__WITNESS_DIR", keys.join("witness"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gf-daemon");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let (mut addr, mut token, mut state) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("API") {
            addr = rest
                .trim()
                .strip_prefix("http://")
                .and_then(|r| r.strip_suffix("/api/v1/halt/status"))
                .map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("state") {
            state = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("export GF_TOKEN=") {
            token = Some(rest.to_owned());
        } else if line.starts_with("Halt:") {
            break;
        }
    }
    // Keep reading the banner pipe in the background so the daemon never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Launched {
        child,
        addr: addr.expect("the banner names the API address"),
        token,
        state: state.expect("the banner names the state"),
    }
}

/// One HTTP/1.1 request over a fresh connection, written whole.
fn send(addr: &str, token: &str, method: &str, path: &str, body: Option<&Value>) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the daemon");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("write the request");
    stream
}

/// Reads the whole answer: (status, JSON body or Null).
fn answer(mut stream: TcpStream) -> Option<(u16, Value)> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn call(addr: &str, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    answer(send(addr, token, method, path, body)).expect("the daemon answers")
}

/// What an acknowledged operation must have left in the journal.
#[derive(Debug, Clone)]
enum Acked {
    Halt(String),
    Step(String),
    Resume,
}

fn journal(addr: &str, token: &str) -> Vec<Value> {
    let (status, body) = call(addr, token, "GET", "/api/v1/journal?limit=1000", None);
    assert_eq!(status, 200, "journal: {body}");
    body["records"].as_array().cloned().unwrap_or_default()
}

fn assert_journaled(records: &[Value], acked: &[Acked], resumes_before: usize, seed: u64) {
    let text = |r: &Value, k: &str| r["detail"][k].as_str().unwrap_or_default().to_owned();
    let resumes = records
        .iter()
        .filter(|r| r["kind"] == "state_changed" && r["detail"]["to"] == "running")
        .count();
    let mut want_resumes = 0;
    for op in acked {
        match op {
            Acked::Halt(reason) => assert!(
                records.iter().any(|r| text(r, "reason") == *reason),
                "seed {seed}: acknowledged halt {reason:?} is not in the journal"
            ),
            Acked::Step(note) => assert!(
                records
                    .iter()
                    .any(|r| r["kind"] == "checklist_step" && text(r, "note") == *note),
                "seed {seed}: acknowledged checklist step {note:?} is not in the journal"
            ),
            Acked::Resume => want_resumes += 1,
        }
    }
    assert!(
        resumes >= resumes_before + want_resumes,
        "seed {seed}: {want_resumes} acknowledged resume(s) not journaled \
         ({resumes} in the journal, {resumes_before} before)"
    );
}

#[test]
fn sigkill_at_random_moments_never_loses_an_acknowledged_operation_nor_a_halt() {
    let seed = std::env::var("GF_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_secs())
        });
    eprintln!("crash loop seed {seed} (replay with GF_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    let started = Instant::now();

    let mut token: Option<String> = None;
    // A halt was acknowledged (or seen in progress) and no resume acknowledged since.
    let mut must_be_halted = false;
    let mut seen_states = std::collections::BTreeSet::new();
    let mut op_no = 0_u64;
    // What the previous cycle had acknowledged before its kill, checked after the restart.
    let mut acked: Vec<Acked> = Vec::new();
    let mut resumes_before = 0_usize;

    for cycle in 0..=KILLS {
        let mut d = launch(&data, &keys);
        if token.is_none() {
            token = d.token.clone();
        }
        let token = token
            .clone()
            .expect("the first launch prints an operator token");
        seen_states.insert(d.state.clone());
        assert!(
            !(must_be_halted && d.state == "running"),
            "seed {seed}, cycle {cycle}: restarted running after an acknowledged halt"
        );
        let records = journal(&d.addr, &token);
        assert_journaled(&records, &acked, resumes_before, seed);
        if cycle == KILLS {
            break;
        }
        resumes_before = records
            .iter()
            .filter(|r| r["kind"] == "state_changed" && r["detail"]["to"] == "running")
            .count();
        acked.clear();

        // Up to six operations, killed before one is written, after it is written and
        // before its answer, or after its answer.
        let kill_at = rng.below(6);
        let phase = rng.below(3);
        for step in 0..=kill_at {
            let (_, status) = call(&d.addr, &token, "GET", "/api/v1/halt/status", None);
            let state = status["state"].as_str().unwrap_or("?").to_owned();
            seen_states.insert(state.clone());
            if state == "halting" {
                must_be_halted = true;
            }
            op_no += 1;
            let (method, path, body, op) = match state.as_str() {
                "running" => {
                    let reason = format!("drill {seed}-{op_no}");
                    (
                        "POST",
                        "/api/v1/halt".to_owned(),
                        Some(serde_json::json!({ "reason": reason })),
                        Some(Acked::Halt(reason)),
                    )
                }
                "halted" | "recovering" => {
                    let missing = status["checklist_missing"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    match missing.first().and_then(Value::as_str) {
                        Some(item) => {
                            let note = format!("step {seed}-{op_no}");
                            (
                                "POST",
                                format!("/api/v1/recovery/checklist/{item}/complete"),
                                Some(serde_json::json!({ "note": note })),
                                Some(Acked::Step(note)),
                            )
                        }
                        None => (
                            "POST",
                            "/api/v1/resume".to_owned(),
                            Some(serde_json::json!({})),
                            Some(Acked::Resume),
                        ),
                    }
                }
                // Halting: the closure is running; look again.
                _ => ("GET", "/api/v1/halt/status".to_owned(), None, None),
            };
            if step == kill_at && phase == 0 {
                break;
            }
            let stream = send(&d.addr, &token, method, &path, body.as_ref());
            if step == kill_at && phase == 1 {
                // Written, not answered: the daemon may or may not have acted on it, and
                // nothing was acknowledged.
                break;
            }
            let Some((code, reply)) = answer(stream) else {
                panic!("seed {seed}, cycle {cycle}: no answer to {method} {path}");
            };
            if (200..300).contains(&code) {
                match &op {
                    Some(Acked::Halt(_)) => must_be_halted = true,
                    Some(Acked::Resume) => must_be_halted = false,
                    _ => {}
                }
                if let Some(op) = op {
                    acked.push(op);
                }
            } else {
                // A refusal (e.g. a resume refused while a condition is breached) must be
                // a clear JSON error, and it acknowledges nothing.
                assert!(
                    reply["code"].is_string(),
                    "seed {seed}, cycle {cycle}: {method} {path} answered {code} {reply}"
                );
            }
        }
        d.child.kill().expect("SIGKILL the daemon");
        d.child.wait().expect("reap the daemon");
    }

    let verify = Command::new(BIN)
        .args(["journal", "verify", "--data-dir"])
        .arg(&data)
        .env("GF_JOURNAL__KEY_FILE", keys.join("journal.key"))
        .env("GF_JOURNAL__WITNESS_DIR", keys.join("witness"))
        .output()
        .expect("run journal verify");
    assert!(
        verify.status.success(),
        "seed {seed}: journal verify failed after the loop: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    eprintln!(
        "{KILLS} SIGKILLs in {:.1} s; states seen: {seen_states:?}",
        started.elapsed().as_secs_f64()
    );
    for want in ["running", "halted", "recovering"] {
        assert!(
            seen_states.contains(want),
            "seed {seed}: the loop never killed the daemon while {want}: {seen_states:?}"
        );
    }
}
