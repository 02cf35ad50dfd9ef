//! Every channel delivers to a real local peer: webhooks, Slack, Discord, Telegram and SMS
//! to a loopback HTTP server that captures requests; e-mail to a real SMTP server
//! (`aiosmtpd`, started here as a child process). Faults: retries, timeouts, unreachable
//! peers — a failing channel never holds up the others.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf_core::config::ChannelKind;
use gf_core::{ManualClock, SharedClock};
use gf_monitor::Metrics;
use gf_monitor::channel::{Dispatcher, build_channel, build_channels};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};

use common::{CaptureServer, channel, closed_port, notice};

fn clock() -> SharedClock {
    Arc::new(ManualClock::default())
}

fn env(k: &str) -> Option<String> {
    match k {
        "GF_TEST_HOOK_TOKEN" => Some("s3cret".into()),
        "GF_TEST_SMS_TOKEN" => Some("tok".into()),
        _ => None,
    }
}

#[tokio::test]
async fn webhook_slack_discord_telegram_and_sms_deliver_their_shapes() {
    let server = CaptureServer::start().await;
    let configs = vec![
        channel(
            "hook",
            ChannelKind::Webhook,
            &format!(
                "url = \"{}\"\nbearer_token_env = \"GF_TEST_HOOK_TOKEN\"",
                server.url("/generic")
            ),
        ),
        channel(
            "slack",
            ChannelKind::Slack,
            &format!("url = \"{}\"", server.url("/services/T0/B0/x")),
        ),
        channel(
            "discord",
            ChannelKind::Discord,
            &format!("url = \"{}\"", server.url("/api/webhooks/1/abc")),
        ),
        channel(
            "tg",
            ChannelKind::Telegram,
            &format!(
                "url = \"{}\"\nchat_id = \"-1001\"",
                server.url("/bot123:abc/sendMessage")
            ),
        ),
        channel(
            "sms",
            ChannelKind::Sms,
            &format!(
                "url = \"{}\"\naccount_sid = \"AC123\"\nauth_token_env = \"GF_TEST_SMS_TOKEN\"\nfrom = \"+15559999\"\nto = [\"+15550001\", \"+15550002\"]",
                server.url("/2010-04-01/Accounts/AC123/Messages.json")
            ),
        ),
    ];
    let metrics = Metrics::new();
    let d = Dispatcher::new(
        build_channels(&configs, &env).unwrap(),
        metrics.clone(),
        clock(),
    );
    assert_eq!(d.dispatch(&notice(), &[]), 5);
    let reports = d.flush().await;
    assert!(
        reports.iter().all(|r| r.delivered() && r.attempts == 1),
        "{reports:?}"
    );

    let reqs = server.requests();
    let by_path = |p: &str| {
        reqs.iter()
            .filter(|r| r.path == p)
            .cloned()
            .collect::<Vec<_>>()
    };

    let generic = &by_path("/generic")[0];
    assert_eq!(generic.header("authorization"), "Bearer s3cret");
    assert_eq!(generic.header("content-type"), "application/json");
    let body = generic.json();
    assert_eq!(body["key"], "halt");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["labels"]["source"], "cli");

    let slack = by_path("/services/T0/B0/x")[0].json();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] FIRING halt: trading halted by cli"),
        "{slack}"
    );

    let discord = by_path("/api/webhooks/1/abc")[0].json();
    assert!(
        discord["content"].as_str().unwrap().contains("key: halt"),
        "{discord}"
    );

    let tg = by_path("/bot123:abc/sendMessage")[0].json();
    assert_eq!(tg["chat_id"], "-1001");
    assert!(tg["text"].as_str().unwrap().starts_with("[CRITICAL]"));

    let sms = by_path("/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(sms.len(), 2, "one message per recipient");
    for (req, to) in sms.iter().zip(["%2B15550001", "%2B15550002"]) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.header("authorization"), "Basic QUMxMjM6dG9r");
        assert_eq!(
            req.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        let form = String::from_utf8(req.body.to_vec()).unwrap();
        assert!(form.contains(&format!("To={to}")), "{form}");
        assert!(form.contains("From=%2B15559999"), "{form}");
        assert!(form.contains("Body=%5BCRITICAL%5D+FIRING+halt"), "{form}");
    }
    for name in ["hook", "slack", "discord", "tg", "sms"] {
        assert_eq!(metrics.notifications(name, true), 1, "{name}");
    }
}

// Paused tokio time: the backoff is measured on tokio's clock, not the machine's.
#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_backoff_until_delivered() {
    let server = CaptureServer::scripted(vec![503, 502]).await;
    let cfg = channel(
        "hook",
        ChannelKind::Webhook,
        &format!(
            "url = \"{}\"\nattempts = 3\nbackoff_ms = 50",
            server.url("/h")
        ),
    );
    let d = Dispatcher::new(
        vec![build_channel(&cfg, &env).unwrap()],
        Metrics::new(),
        clock(),
    );
    let started = tokio::time::Instant::now();
    d.dispatch(&notice(), &[]);
    let r = d.flush().await.remove(0);
    assert!(r.delivered(), "{r:?}");
    assert_eq!(r.attempts, 3);
    assert_eq!(server.requests().len(), 3);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(200),
        "50 ms then 100 ms of backoff, not {waited:?}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = CaptureServer::scripted(vec![400]).await;
    let cfg = channel(
        "hook",
        ChannelKind::Slack,
        &format!(
            "url = \"{}\"\nattempts = 5\nbackoff_ms = 1",
            server.url("/h")
        ),
    );
    let d = Dispatcher::new(
        vec![build_channel(&cfg, &env).unwrap()],
        Metrics::new(),
        clock(),
    );
    d.dispatch(&notice(), &[]);
    let r = d.flush().await.remove(0);
    assert_eq!(r.attempts, 1);
    assert!(r.error.as_deref().unwrap().contains("400"), "{r:?}");
}

// Paused tokio time: "while the hanging one is still waiting" is measured on tokio's clock
// (the hanging channel's 2 s timeout), not the machine's.
#[tokio::test(start_paused = true)]
async fn a_hanging_or_unreachable_channel_never_blocks_the_others() {
    let hanging = CaptureServer::hanging().await;
    let good = CaptureServer::start().await;
    let configs = vec![
        channel(
            "hang",
            ChannelKind::Webhook,
            &format!(
                "url = \"{}\"\ntimeout_ms = 2000\nattempts = 2\nbackoff_ms = 10",
                hanging.url("/h")
            ),
        ),
        channel(
            "down",
            ChannelKind::Discord,
            &format!(
                "url = \"http://127.0.0.1:{}/x\"\nattempts = 2\nbackoff_ms = 10",
                closed_port()
            ),
        ),
        channel(
            "good",
            ChannelKind::Slack,
            &format!("url = \"{}\"", good.url("/ok")),
        ),
    ];
    let metrics = Metrics::new();
    let d = Dispatcher::new(
        build_channels(&configs, &env).unwrap(),
        metrics.clone(),
        clock(),
    );
    let started = tokio::time::Instant::now();
    d.dispatch(&notice(), &[]);
    // The good channel's request arrives while the hanging one is still waiting for its
    // first answer.
    while good.requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "good channel held up"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(metrics.notifications("hang", false), 0, "still waiting");
    let mut reports = d.flush().await;
    reports.sort_by(|a, b| a.channel.cmp(&b.channel));
    let [down, good_r, hang] = &reports[..] else {
        panic!("{reports:?}")
    };
    assert!(good_r.delivered());
    assert_eq!((down.attempts, hang.attempts), (2, 2));
    assert!(
        down.error
            .as_deref()
            .unwrap()
            .contains("http request failed"),
        "{down:?}"
    );
    assert!(
        hang.error.as_deref().unwrap().contains("timed out"),
        "{hang:?}"
    );
    assert_eq!(hanging.requests().len(), 2);
    assert_eq!(metrics.notifications("hang", false), 1);
    assert_eq!(metrics.notifications("down", false), 1);
    assert_eq!(metrics.notifications("good", true), 1);
    assert!(
        metrics
            .render()
            .unwrap()
            .contains("gf_alert_notifications_total{channel=\"hang\",outcome=\"failed\"} 1")
    );
}

/// A real SMTP server: `python3 -m aiosmtpd` with its debugging handler, which prints
/// every message it accepts to stdout.
struct SmtpServer {
    port: u16,
    child: tokio::process::Child,
    out: Arc<Mutex<String>>,
}

impl SmtpServer {
    /// `python3 -m aiosmtpd` with its debugging handler, no TLS, no auth.
    async fn start() -> Self {
        let port = closed_port();
        Self::spawn(
            vec![
                "-u".into(),
                "-m".into(),
                "aiosmtpd".into(),
                "-n".into(),
                "-l".into(),
                format!("127.0.0.1:{port}"),
            ],
            port,
        )
        .await
    }

    /// Our peer script: aiosmtpd requiring TLS (`mode`: `starttls` or `tls`) and AUTH.
    async fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        user: &str,
        password: &str,
        mode: &str,
    ) -> Self {
        let port = closed_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp_tls_peer.py");
        let args = vec![
            "-u".into(),
            script.into(),
            "127.0.0.1".into(),
            port.to_string(),
            cert.display().to_string(),
            key.display().to_string(),
            user.into(),
            password.into(),
            mode.into(),
        ];
        Self::spawn(args, port).await
    }

    async fn spawn(args: Vec<String>, port: u16) -> Self {
        let python = std::env::var("GF_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = std::process::Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output();
        match probe {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "the SMTP test peer is missing: install it with `python3 -m pip install aiosmtpd` \
                 (or point GF_PYTHON at a python that has it)"
            ),
        }
        let mut child = tokio::process::Command::new(&python)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP peer");
        let out = Arc::new(Mutex::new(String::new()));
        // Both streams go to one buffer: assertion messages then show the peer's errors.
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(stderr),
        ] {
            let sink = out.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut s = sink.lock();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start listening on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { port, child, out }
    }

    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.out.lock().clone();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "SMTP server never printed {needle:?}; got:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn email_arrives_at_a_real_smtp_server_with_subject_and_body() {
    let smtp = SmtpServer::start().await;
    let cfg = channel(
        "mail",
        ChannelKind::Email,
        &format!(
            "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"Gal-Friday <gf@example.invalid>\"\nto = [\"ops@example.invalid\", \"Trader <trader@example.invalid>\"]",
            smtp.port
        ),
    );
    let d = Dispatcher::new(
        vec![build_channel(&cfg, &env).unwrap()],
        Metrics::new(),
        clock(),
    );
    d.dispatch(&notice(), &[]);
    let r = d.flush().await.remove(0);
    assert!(r.delivered(), "{r:?}");
    let text = smtp.wait_for("END MESSAGE").await;
    assert!(
        text.contains("Subject: [CRITICAL] FIRING halt: trading halted by cli: operator request"),
        "{text}"
    );
    assert!(
        text.contains("From: \"Gal-Friday\" <gf@example.invalid>")
            || text.contains("From: Gal-Friday <gf@example.invalid>"),
        "{text}"
    );
    assert!(
        text.contains("ops@example.invalid") && text.contains("trader@example.invalid"),
        "{text}"
    );
    assert!(text.contains("key: halt"), "body missing:\n{text}");
    assert!(text.contains("source: cli"), "body missing:\n{text}");
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_retried_then_recorded_failed_while_others_deliver() {
    let good = CaptureServer::start().await;
    let configs = vec![
        channel(
            "mail",
            ChannelKind::Email,
            &format!(
                "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"gf@example.invalid\"\nto = \"ops@example.invalid\"\nattempts = 3\nbackoff_ms = 10\ntimeout_ms = 2000",
                closed_port()
            ),
        ),
        channel(
            "hook",
            ChannelKind::Webhook,
            &format!("url = \"{}\"", good.url("/ok")),
        ),
    ];
    let metrics = Metrics::new();
    let d = Dispatcher::new(
        build_channels(&configs, &env).unwrap(),
        metrics.clone(),
        clock(),
    );
    d.dispatch(&notice(), &[]);
    let mut reports = d.flush().await;
    reports.sort_by(|a, b| a.channel.cmp(&b.channel));
    assert!(reports[0].delivered(), "{reports:?}");
    assert_eq!(reports[1].channel, "mail");
    assert_eq!(reports[1].attempts, 3);
    assert!(
        reports[1]
            .error
            .as_deref()
            .unwrap()
            .contains("smtp 127.0.0.1"),
        "{reports:?}"
    );
    assert_eq!(metrics.notifications("mail", false), 1);
    assert_eq!(d.recent().len(), 2);
}

/// A private CA and a leaf certificate for 127.0.0.1, made with the `openssl` command.
fn make_certs(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("the `openssl` command is needed to make test certificates (apt-get install -y openssl): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=gf test ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

fn smtp_env(k: &str) -> Option<String> {
    (k == "GF_TEST_SMTP_PASSWORD").then(|| "hunter2".to_owned())
}

#[tokio::test]
async fn email_over_required_starttls_with_auth_reaches_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let smtp = SmtpServer::start_tls(&cert, &key, "gf-alerts", "hunter2", "starttls").await;
    smtp.wait_for("READY").await;
    let settings = |password_env: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nusername = \"gf-alerts\"\npassword_env = \"{password_env}\"\nca_file = \"{}\"\nfrom = \"gf@example.invalid\"\nto = \"ops@example.invalid\"\nbackoff_ms = 10",
            smtp.port,
            ca.display()
        )
    };
    let good = build_channel(
        &channel(
            "mail",
            ChannelKind::Email,
            &settings("GF_TEST_SMTP_PASSWORD"),
        ),
        &smtp_env,
    )
    .unwrap();
    let d = Dispatcher::new(vec![good], Metrics::new(), clock());
    d.dispatch(&notice(), &[]);
    let r = d.flush().await.remove(0);
    assert!(r.delivered(), "{r:?}");
    let text = smtp.wait_for("END MESSAGE").await;
    assert!(text.contains("TLS True"), "{text}");
    assert!(text.contains("AUTH gf-alerts"), "{text}");
    assert!(text.contains("RCPT ops@example.invalid"), "{text}");
    assert!(text.contains("Subject: [CRITICAL] FIRING halt"), "{text}");

    // A wrong password is a permanent SMTP error: recorded as failed, not retried.
    let wrong = |k: &str| (k == "GF_TEST_SMTP_PASSWORD").then(|| "wrong".to_owned());
    let bad = build_channel(
        &channel(
            "mail",
            ChannelKind::Email,
            &settings("GF_TEST_SMTP_PASSWORD"),
        ),
        &wrong,
    )
    .unwrap();
    let d = Dispatcher::new(vec![bad], Metrics::new(), clock());
    d.dispatch(&notice(), &[]);
    let r = d.flush().await.remove(0);
    assert!(!r.delivered());
    assert_eq!(r.attempts, 1, "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("535"), "{r:?}");

    // Without the private CA the server's certificate is not trusted.
    let no_ca =
        settings("GF_TEST_SMTP_PASSWORD").replace(&format!("ca_file = \"{}\"\n", ca.display()), "");
    let untrusting =
        build_channel(&channel("mail", ChannelKind::Email, &no_ca), &smtp_env).unwrap();
    let d = Dispatcher::new(vec![untrusting], Metrics::new(), clock());
    d.dispatch(&notice(), &[]);
    let r = d.flush().await.remove(0);
    assert!(!r.delivered(), "{r:?}");
    assert_eq!(r.attempts, 1, "a TLS failure is not retried: {r:?}");
}

#[tokio::test]
async fn email_over_implicit_tls_with_auth_reaches_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let smtp = SmtpServer::start_tls(&cert, &key, "gf-alerts", "hunter2", "tls").await;
    smtp.wait_for("READY").await;
    let cfg = channel(
        "mail",
        ChannelKind::Email,
        &format!(
            "host = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\nusername = \"gf-alerts\"\npassword_env = \"GF_TEST_SMTP_PASSWORD\"\nca_file = \"{}\"\nfrom = \"gf@example.invalid\"\nto = \"ops@example.invalid\"",
            smtp.port,
            ca.display()
        ),
    );
    let d = Dispatcher::new(
        vec![build_channel(&cfg, &smtp_env).unwrap()],
        Metrics::new(),
        clock(),
    );
    d.dispatch(&notice(), &[]);
    let r = d.flush().await.remove(0);
    assert!(r.delivered(), "{r:?}");
    let text = smtp.wait_for("END MESSAGE").await;
    assert!(
        text.contains("TLS True") && text.contains("AUTH gf-alerts"),
        "{text}"
    );
}
