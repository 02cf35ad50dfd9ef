//! AWS Secrets Manager against a real moto server (`pip install 'moto[server]'`) with
//! signature checking on (`INITIAL_NO_AUTH_ACTION_COUNT`), started on a free 127.0.0.1
//! port by each test and killed at its end.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gf_core::{Clock, CredentialHandle, EventBus, EventKind, KindSet, Payload, SystemClock};
use gf_secrets::Error;
use gf_secrets::audit::Auditor;
use gf_secrets::aws::{AwsProvider, AwsSettings};
use gf_secrets::provider::SecretProvider;
use gf_secrets::rotation::{RotatingCredentials, Rotator};
use gf_secrets::sigv4::{self, AwsCredentials, SigningRequest};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::{CheckServer, Peer, require_tool, sample_pair, wait_event};

const REGION: &str = "us-east-1";
const SECRET_ID: &str = "gal-friday/kraken";

fn creds(id: &str, secret: &str) -> AwsCredentials {
    AwsCredentials {
        access_key_id: id.into(),
        secret_access_key: SecretString::from(secret.to_owned()),
        session_token: None,
    }
}

fn xml_value(text: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {text}"))
        + open.len();
    let end = text[start..].find(&format!("</{name}>")).unwrap();
    text[start..start + end].to_owned()
}

struct Moto {
    _peer: Peer,
    endpoint: String,
    host: String,
    http: reqwest::Client,
    /// The IAM user's key, created during the unauthenticated first actions.
    key: AwsCredentials,
}

impl Moto {
    /// Starts moto with authentication after 4 actions: CreateUser, PutUserPolicy,
    /// CreateAccessKey, CreateSecret.
    async fn start(first_secret: &Value) -> Self {
        let moto = require_tool("moto_server", "pip install 'moto[server]'");
        let port = support::free_port();
        let mut peer = Peer::start(
            "moto",
            &moto,
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            &[("INITIAL_NO_AUTH_ACTION_COUNT", "4")],
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        peer.wait_http(&format!("{endpoint}/moto-api/")).await;
        let mut this = Self {
            _peer: peer,
            endpoint,
            host: format!("127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            key: creds("AKIDBOOTSTRAP", "bootstrap"),
        };
        let (s, t) = this
            .iam("Action=CreateUser&UserName=gal-friday&Version=2010-05-08")
            .await;
        assert_eq!(s, 200, "{t}");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        let form = format!(
            "Action=PutUserPolicy&UserName=gal-friday&PolicyName=all&PolicyDocument={}&Version=2010-05-08",
            form_encode(policy)
        );
        let (s, t) = this.iam(&form).await;
        assert_eq!(s, 200, "{t}");
        let (s, t) = this
            .iam("Action=CreateAccessKey&UserName=gal-friday&Version=2010-05-08")
            .await;
        assert_eq!(s, 200, "{t}");
        this.key = creds(
            &xml_value(&t, "AccessKeyId"),
            &xml_value(&t, "SecretAccessKey"),
        );
        let (s, v) = this
            .secrets(
                "CreateSecret",
                &json!({"Name": SECRET_ID, "SecretString": first_secret.to_string()}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        this
    }

    async fn signed(
        &self,
        service: &str,
        content_type: &str,
        target: Option<&str>,
        body: &str,
        key: &AwsCredentials,
    ) -> (u16, String) {
        let now = SystemClock.now();
        let amz = sigv4::amz_date(now);
        let mut headers = vec![
            ("content-type", content_type),
            ("host", self.host.as_str()),
            ("x-amz-date", amz.as_str()),
        ];
        if let Some(t) = target {
            headers.push(("x-amz-target", t));
        }
        let auth = sigv4::authorization(
            key,
            REGION,
            service,
            now,
            &SigningRequest {
                method: "POST",
                path: "/",
                query: &[],
                headers: &headers,
                payload: body.as_bytes(),
            },
        );
        let mut req = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("authorization", auth);
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.to_owned()).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn iam(&self, form: &str) -> (u16, String) {
        self.signed(
            "iam",
            "application/x-www-form-urlencoded",
            None,
            form,
            &self.key,
        )
        .await
    }

    async fn secrets(&self, op: &str, body: &Value) -> (u16, Value) {
        let (s, t) = self
            .signed(
                "secretsmanager",
                "application/x-amz-json-1.1",
                Some(&format!("secretsmanager.{op}")),
                &body.to_string(),
                &self.key,
            )
            .await;
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    fn provider(&self, key: AwsCredentials, secret_id: &str) -> AwsProvider {
        AwsProvider::new(
            AwsSettings {
                region: REGION.into(),
                endpoint: Some(self.endpoint.clone()),
                secret_id: secret_id.into(),
                credentials: key,
                version_stage: None,
                timeout: Duration::from_secs(5),
            },
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    fn own_key(&self) -> AwsCredentials {
        creds(
            &self.key.access_key_id,
            secrecy::ExposeSecret::expose_secret(&self.key.secret_access_key),
        )
    }
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn doc(seed: u8) -> Value {
    let (k, s) = sample_pair(seed);
    json!({"api_key": k, "api_secret": s})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_secret_value_then_put_secret_value_is_picked_up_by_the_watcher() {
    let moto = Moto::start(&doc(1)).await;
    let provider = Arc::new(moto.provider(moto.own_key(), SECRET_ID));
    let first = provider.fetch("kraken").await.unwrap();
    let v1 = first.version().unwrap().to_owned();
    assert_eq!(first.provider(), "aws");

    let check = CheckServer::start().await;
    for seed in [1, 2] {
        let (k, s) = sample_pair(seed);
        check.accept(&k, &s);
    }
    let bus = EventBus::new(1024);
    let mut audits = bus.subscribe(KindSet::of(&[EventKind::SecretAudit]));
    let handle = Arc::new(RotatingCredentials::empty());
    let rotator = Arc::new(Rotator::new(
        provider.clone(),
        "kraken",
        handle.clone(),
        check.check(),
        Auditor::new(Arc::new(SystemClock)).with_bus(bus),
    ));
    rotator.load("startup").await.unwrap();
    assert_eq!(handle.version().as_deref(), Some(v1.as_str()));

    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = Arc::clone(&rotator).spawn(Duration::from_millis(100), stop.clone());
    let (s, put) = moto
        .secrets(
            "PutSecretValue",
            &json!({"SecretId": SECRET_ID, "SecretString": doc(2).to_string()}),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    let v2 = put["VersionId"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    wait_event(&mut audits, "rotate to the new VersionId", |p| {
        matches!(p, Payload::SecretAudit { action, version, .. } if action == "rotate" && version.as_deref() == Some(v2.as_str()))
    })
    .await;
    let (k2, _) = sample_pair(2);
    assert!(handle.with_credentials(&mut |k, _| assert_eq!(k, k2)));
    stop.cancel();
    watcher.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_key_unknown_key_and_missing_secret_give_clear_errors() {
    let moto = Moto::start(&doc(3)).await;

    let wrong = moto.provider(
        creds(&moto.key.access_key_id, "definitely-not-the-secret-key"),
        SECRET_ID,
    );
    let err = wrong.fetch("kraken").await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("aws: authentication failed for GetSecretValue: SignatureDoesNotMatch"),
        "{msg}"
    );
    assert!(!msg.contains("definitely-not-the-secret-key"));

    let unknown = moto.provider(creds("AKIAUNKNOWNKEY000000", "whatever"), SECRET_ID);
    let err = unknown.fetch("kraken").await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(
        err.to_string().contains("InvalidClientTokenId")
            || err.to_string().contains("UnrecognizedClient"),
        "{err}"
    );

    let missing = moto.provider(moto.own_key(), "gal-friday/nope");
    let err = missing.fetch("kraken").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(err.to_string(), "aws: secret gal-friday/nope not found");
}
