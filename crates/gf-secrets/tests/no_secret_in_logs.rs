//! Captures every log line (all targets, TRACE, including the `log` crate's records)
//! over a full fetch/validate/check/rotate cycle against a real OpenBao server and an
//! age file, plus failures, and asserts that no secret appears: not the API keys, not
//! the secrets' base64 or hex or raw bytes, not the Vault token, not the passphrase.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gf_core::{CredentialHandle, EventBus, KindSet, ManualClock, Payload};
use gf_secrets::audit::{Auditor, MemoryAuditSink};
use gf_secrets::cli::check;
use gf_secrets::file::{AgeFileProvider, EncryptTo, Unlock, encrypt_file};
use gf_secrets::provider::SecretProvider;
use gf_secrets::rotation::{RotatingCredentials, Rotator};
use gf_secrets::secret::Credentials;
use gf_secrets::vault::VaultAuth;
use secrecy::SecretString;
use support::bao::{Bao, PATH};
use support::{CheckServer, LogBuffer, sample_pair, wait_event};
use tracing_subscriber::util::SubscriberInitExt;

const ROOT_TOKEN: &str = "gf-dev-root-token-7c1e9a";
const PASSPHRASE: &str = "passphrase-that-must-not-leak";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_fetch_and_rotate_cycle_logs_no_secret() {
    let logs = LogBuffer::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish()
        .try_init()
        .expect("this test binary installs the only global subscriber");

    let bao = Bao::start(ROOT_TOKEN).await;
    bao.write(11, 0).await;
    let clock = Arc::new(ManualClock::default());
    let provider = Arc::new(bao.provider(
        VaultAuth::Token(SecretString::from(ROOT_TOKEN)),
        PATH,
        clock.clone(),
    ));
    let check_server = CheckServer::start().await;
    for seed in [11, 13] {
        let (k, s) = sample_pair(seed);
        check_server.accept(&k, &s);
    }
    let bus = EventBus::new(1024);
    let mut events = bus.subscribe(KindSet::ALL);
    let sink = Arc::new(MemoryAuditSink::new());
    let handle = Arc::new(RotatingCredentials::empty());
    let rotator = Arc::new(Rotator::new(
        provider.clone(),
        "kraken",
        handle.clone(),
        check_server.check(),
        Auditor::new(clock.clone())
            .with_bus(bus.clone())
            .with_sink(sink.clone()),
    ));
    rotator.load("startup").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = Arc::clone(&rotator).spawn(Duration::from_millis(100), stop.clone());

    // A version the exchange refuses (alert), then a good one (rotation).
    bao.write(12, 1).await;
    wait_event(&mut events, "alert", |p| matches!(p, Payload::Alert { .. })).await;
    bao.write(13, 2).await;
    wait_event(&mut events, "rotation", |p| {
        matches!(p, Payload::SecretAudit { action, version, .. } if action == "rotate" && version.as_deref() == Some("3"))
    })
    .await;
    stop.cancel();
    watcher.join().await;
    // Signing, Debug of everything that holds secrets, a check report, errors.
    assert!(handle.with_credentials(&mut |_, _| {}));
    tracing::debug!(?handle, creds = ?handle.current(), "handle state");
    let set = provider.fetch("kraken").await.unwrap();
    tracing::debug!(?set, ?provider, "fetched set");
    let report = check(
        provider.as_ref(),
        "kraken",
        &Auditor::new(clock.clone()),
        "cli",
    )
    .await
    .unwrap();
    tracing::info!(%report, "check report");
    let bad = bao.provider(
        VaultAuth::Token(SecretString::from("s.bad-token")),
        PATH,
        clock.clone(),
    );
    let err = bad.fetch("kraken").await.unwrap_err();
    tracing::warn!(%err, ?err, "expected failure");

    // The age file provider too, with a wrong passphrase along the way.
    let dir = tempfile::tempdir().unwrap();
    let (k14, s14) = sample_pair(14);
    let plain = dir.path().join("plain.json");
    fs::write(
        &plain,
        format!(r#"{{"api_key":"{k14}","api_secret":"{s14}"}}"#),
    )
    .unwrap();
    let out = dir.path().join("k.age");
    encrypt_file(
        &plain,
        &out,
        &EncryptTo::Passphrase {
            passphrase: SecretString::from(PASSPHRASE),
            work_factor: Some(10),
        },
    )
    .unwrap();
    let file = AgeFileProvider::new(&out, Unlock::Passphrase(SecretString::from(PASSPHRASE)));
    let fset = file.fetch("kraken").await.unwrap();
    let fcreds = Credentials::from_set(&fset).unwrap();
    tracing::debug!(?file, ?fset, ?fcreds, "file provider");
    let wrong = AgeFileProvider::new(&out, Unlock::Passphrase(SecretString::from("nope")));
    tracing::warn!(err = %wrong.fetch("kraken").await.unwrap_err(), "expected failure");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
    tracing::warn!(err = %file.fetch("kraken").await.unwrap_err(), "expected failure");

    let text = logs.text();
    let raw = logs.0.lock().unwrap().clone();
    // The capture really saw the cycle.
    for expected in [
        "secret audit",
        "credentials swapped in",
        "action=\"rotate\"",
        "secrets alert",
        "check report",
        "permission denied",
    ] {
        assert!(text.contains(expected), "log lacks {expected:?}:\n{text}");
    }
    let mut forbidden: Vec<(String, Vec<u8>)> = vec![
        ("vault root token".into(), ROOT_TOKEN.as_bytes().to_vec()),
        ("bad vault token".into(), b"s.bad-token".to_vec()),
        ("passphrase".into(), PASSPHRASE.as_bytes().to_vec()),
    ];
    for seed in [11, 12, 13, 14] {
        let (k, s) = sample_pair(seed);
        let bytes = STANDARD.decode(&s).unwrap();
        forbidden.push((format!("api key {seed}"), k.into_bytes()));
        forbidden.push((format!("secret base64 {seed}"), s.into_bytes()));
        forbidden.push((
            format!("secret hex {seed}"),
            hex::encode(&bytes).into_bytes(),
        ));
        forbidden.push((format!("secret bytes {seed}"), bytes[..16].to_vec()));
    }
    for (what, needle) in forbidden {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle.as_slice()),
            "{what} appears in the logs"
        );
    }
    // Nor in any event or audit record.
    let audit_json = serde_json::to_string(&sink.records()).unwrap();
    let (k13, s13) = sample_pair(13);
    assert!(!audit_json.contains(&k13) && !audit_json.contains(&s13));
}
