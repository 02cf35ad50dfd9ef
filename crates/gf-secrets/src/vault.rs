//! The `vault` provider: HashiCorp Vault (or OpenBao) KV version 2 over HTTP.
//!
//! Reads `GET /v1/<mount>/data/<path>`, taking the fields of `data.data` and the
//! version from `data.metadata.version`. Authenticates with a token (`VAULT_TOKEN`) or
//! AppRole (`POST /v1/auth/<approle mount>/login` with `role_id`/`secret_id`), sends
//! `X-Vault-Namespace` when configured, and keeps its token alive with
//! `POST /v1/auth/token/renew-self` once two thirds of its TTL have passed (logging in
//! again with AppRole when the token cannot be renewed).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gf_core::SharedClock;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::http;
use crate::provider::SecretProvider;
use crate::secret::SecretSet;

const PROVIDER: &str = "vault";

/// How the provider authenticates.
pub enum VaultAuth {
    /// A token (e.g. from `VAULT_TOKEN`).
    Token(SecretString),
    /// AppRole login.
    AppRole {
        /// The auth mount, usually `approle`.
        mount: String,
        /// The role id (an identifier, not secret on its own).
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token([REDACTED])"),
            VaultAuth::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .field("secret_id", &"[REDACTED]")
                .finish(),
        }
    }
}

/// Where and how to read the secret.
#[derive(Debug)]
pub struct VaultSettings {
    /// Server address, `http(s)://host:port`.
    pub addr: String,
    /// Enterprise/OpenBao namespace.
    pub namespace: Option<String>,
    /// KV v2 mount (`secret`).
    pub mount: String,
    /// Path under the mount (`gal-friday/kraken`).
    pub path: String,
    /// Authentication.
    pub auth: VaultAuth,
    /// Bound on each request.
    pub timeout: Duration,
}

/// What is known about the token in use (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Whether `renew-self` may extend it.
    pub renewable: bool,
    /// Its TTL when obtained or last renewed; `None` for tokens that never expire.
    pub ttl: Option<Duration>,
    /// When it was obtained or last renewed.
    pub since: DateTime<Utc>,
}

struct TokenState {
    token: SecretString,
    info: TokenInfo,
}

/// Reads KV v2 secrets from Vault.
pub struct VaultProvider {
    http: reqwest::Client,
    settings: VaultSettings,
    clock: SharedClock,
    token: Mutex<Option<TokenState>>,
}

impl fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn check_segment(key: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            key,
            reason: "must be slash-separated segments of letters, digits, '-', '_' or '.'".into(),
        })
    }
}

impl VaultProvider {
    /// A provider; nothing is sent until the first fetch.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed address, mount or path.
    pub fn new(settings: VaultSettings, clock: SharedClock) -> Result<Self> {
        let url = reqwest::Url::parse(&settings.addr).map_err(|e| Error::Config {
            key: "secrets.vault_addr",
            reason: format!("is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config {
                key: "secrets.vault_addr",
                reason: "must start with http:// or https://".into(),
            });
        }
        check_segment("secrets.vault_mount", &settings.mount)?;
        check_segment("secrets.vault_path", &settings.path)?;
        if let VaultAuth::AppRole { mount, .. } = &settings.auth {
            check_segment("secrets.vault_auth", mount)?;
        }
        if let Some(ns) = &settings.namespace {
            check_segment("secrets.vault_namespace", ns)?;
        }
        let http = http::client(PROVIDER, settings.timeout)?;
        Ok(Self {
            http,
            settings,
            clock,
            token: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.settings.addr.trim_end_matches('/'))
    }

    fn data_path(&self) -> String {
        format!("{}/data/{}", self.settings.mount, self.settings.path)
    }

    fn headers(&self, token: Option<&SecretString>) -> Result<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert("X-Vault-Request", HeaderValue::from_static("true"));
        if let Some(ns) = &self.settings.namespace {
            let v = HeaderValue::from_str(ns).map_err(|_| Error::Config {
                key: "secrets.vault_namespace",
                reason: "is not a valid header value".into(),
            })?;
            h.insert("X-Vault-Namespace", v);
        }
        if let Some(token) = token {
            let mut v = HeaderValue::from_str(token.expose_secret()).map_err(|_| Error::Auth {
                provider: PROVIDER,
                operation: "use token".into(),
                code: "malformed".into(),
                message: "the token has characters not allowed in an HTTP header".into(),
            })?;
            v.set_sensitive(true);
            h.insert("X-Vault-Token", v);
        }
        Ok(h)
    }

    /// What is known about the current token, if one was obtained.
    pub async fn token_info(&self) -> Option<TokenInfo> {
        self.token.lock().await.as_ref().map(|t| t.info.clone())
    }

    /// Logs in (AppRole) or looks the configured token up (token auth), replacing the
    /// token state.
    ///
    /// # Errors
    /// [`Error::Auth`] for rejected credentials, [`Error::Forbidden`] for a token the
    /// server refuses, [`Error::Transport`] when unreachable.
    pub async fn login(&self) -> Result<TokenInfo> {
        let mut guard = self.token.lock().await;
        let state = self.obtain_token().await?;
        let info = state.info.clone();
        *guard = Some(state);
        Ok(info)
    }

    async fn obtain_token(&self) -> Result<TokenState> {
        match &self.settings.auth {
            VaultAuth::Token(token) => {
                let token = SecretString::from(token.expose_secret().to_owned());
                let op = "token lookup-self";
                let (status, body) = http::send(
                    PROVIDER,
                    op,
                    self.http
                        .get(self.url("auth/token/lookup-self"))
                        .headers(self.headers(Some(&token))?),
                )
                .await?;
                let v = expect_ok(status, &body, op, "auth/token/lookup-self")?;
                let data = &v["data"];
                let ttl = data["ttl"].as_u64().filter(|t| *t > 0);
                Ok(TokenState {
                    token,
                    info: TokenInfo {
                        renewable: data["renewable"].as_bool().unwrap_or(false),
                        ttl: ttl.map(Duration::from_secs),
                        since: self.clock.now(),
                    },
                })
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let op = "approle login";
                let body = json!({"role_id": role_id, "secret_id": secret_id.expose_secret()});
                let body = zeroize::Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
                let (status, answer) = http::send(
                    PROVIDER,
                    op,
                    self.http
                        .post(self.url(&format!("auth/{mount}/login")))
                        .headers(self.headers(None)?)
                        .header("Content-Type", "application/json")
                        .body(body.to_vec()),
                )
                .await?;
                if status == StatusCode::BAD_REQUEST {
                    return Err(Error::Auth {
                        provider: PROVIDER,
                        operation: op.into(),
                        code: status.as_u16().to_string(),
                        message: vault_errors(&answer),
                    });
                }
                let mut v = expect_ok(status, &answer, op, &format!("auth/{mount}/login"))?;
                self.token_from_auth(&mut v, op)
            }
        }
    }

    fn token_from_auth(&self, v: &mut Value, op: &str) -> Result<TokenState> {
        let auth = &mut v["auth"];
        let renewable = auth["renewable"].as_bool().unwrap_or(false);
        let ttl = auth["lease_duration"].as_u64().filter(|t| *t > 0);
        let Value::String(token) = auth["client_token"].take() else {
            return Err(Error::Provider {
                provider: PROVIDER,
                operation: op.into(),
                status: "200".into(),
                message: "answer has no auth.client_token".into(),
            });
        };
        Ok(TokenState {
            token: SecretString::from(token),
            info: TokenInfo {
                renewable,
                ttl: ttl.map(Duration::from_secs),
                since: self.clock.now(),
            },
        })
    }

    /// Renews the current token (`renew-self`), obtaining one first if needed.
    ///
    /// # Errors
    /// As [`Self::login`]; a token that is not renewable gives [`Error::Provider`] with
    /// Vault's message (the current token is kept).
    pub async fn renew_token(&self) -> Result<TokenInfo> {
        let mut guard = self.token.lock().await;
        let current = match guard.take() {
            Some(state) => state,
            None => self.obtain_token().await?,
        };
        match self.renew(&current.token).await {
            Ok(renewed) => {
                let info = renewed.info.clone();
                *guard = Some(renewed);
                Ok(info)
            }
            Err(e) => {
                *guard = Some(current);
                Err(e)
            }
        }
    }

    async fn renew(&self, token: &SecretString) -> Result<TokenState> {
        let op = "token renew-self";
        let (status, body) = http::send(
            PROVIDER,
            op,
            self.http
                .post(self.url("auth/token/renew-self"))
                .headers(self.headers(Some(token))?)
                .header("Content-Type", "application/json")
                .body("{}"),
        )
        .await?;
        let mut v = expect_ok(status, &body, op, "auth/token/renew-self")?;
        let mut state = self.token_from_auth(&mut v, op)?;
        // renew-self answers with the same token; keep ours if it were omitted.
        if state.token.expose_secret().is_empty() {
            state.token = SecretString::from(token.expose_secret().to_owned());
        }
        Ok(state)
    }

    fn past_two_thirds(&self, info: &TokenInfo) -> bool {
        info.ttl.is_some_and(|ttl| {
            let elapsed = (self.clock.now() - info.since).to_std().unwrap_or_default();
            elapsed >= ttl * 2 / 3
        })
    }

    /// Makes sure a usable token is held: obtains one, renews it past two thirds of its
    /// TTL, or obtains a fresh one (AppRole login, or a new lookup of the configured
    /// token) when renewal is impossible or fails. Returns a copy for one request.
    async fn ensure_token(&self) -> Result<SecretString> {
        let mut guard = self.token.lock().await;
        let state = match guard.take() {
            None => self.obtain_token().await?,
            Some(state) if !self.past_two_thirds(&state.info) => state,
            Some(state) => {
                let renewed = if state.info.renewable {
                    self.renew(&state.token)
                        .await
                        .inspect_err(|e| tracing::warn!(cause = %e, "vault token renewal failed"))
                        .ok()
                } else {
                    None
                };
                match renewed {
                    Some(renewed) => renewed,
                    None => match self.obtain_token().await {
                        Ok(fresh) => fresh,
                        Err(e) => {
                            *guard = Some(state);
                            return Err(e);
                        }
                    },
                }
            }
        };
        let token = SecretString::from(state.token.expose_secret().to_owned());
        *guard = Some(state);
        Ok(token)
    }

    async fn read(
        &self,
        token: &SecretString,
    ) -> Result<(StatusCode, zeroize::Zeroizing<Vec<u8>>)> {
        let path = self.data_path();
        http::send(
            PROVIDER,
            &format!("read {path}"),
            self.http
                .get(self.url(&path))
                .headers(self.headers(Some(token))?),
        )
        .await
    }
}

fn vault_errors(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v["errors"].as_array() {
            Some(list) if !list.is_empty() => http::short(
                &list
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => "no error message".into(),
        },
        Err(_) => http::short(&String::from_utf8_lossy(body)),
    }
}

fn expect_ok(status: StatusCode, body: &[u8], op: &str, path: &str) -> Result<Value> {
    match status {
        s if s.is_success() => serde_json::from_slice(body).map_err(|_| Error::Provider {
            provider: PROVIDER,
            operation: op.into(),
            status: s.as_u16().to_string(),
            message: "answer is not JSON".into(),
        }),
        StatusCode::FORBIDDEN => Err(Error::Forbidden {
            provider: PROVIDER,
            operation: op.into(),
            message: format!(
                "{} (the token is invalid or expired, or its policies do not allow {path})",
                vault_errors(body)
            ),
        }),
        StatusCode::NOT_FOUND => Err(Error::NotFound {
            provider: PROVIDER,
            name: path.to_owned(),
        }),
        s => Err(Error::Provider {
            provider: PROVIDER,
            operation: op.into(),
            status: s.as_u16().to_string(),
            message: vault_errors(body),
        }),
    }
}

#[async_trait]
impl SecretProvider for VaultProvider {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    #[tracing::instrument(skip(self), fields(mount = %self.settings.mount, path = %self.settings.path))]
    async fn fetch(&self, set: &str) -> Result<SecretSet> {
        let path = self.data_path();
        let op = format!("read {path}");
        let token = self.ensure_token().await?;
        let (mut status, mut body) = self.read(&token).await?;
        if status == StatusCode::FORBIDDEN
            && matches!(self.settings.auth, VaultAuth::AppRole { .. })
        {
            // The token may have been revoked or expired early: log in once more.
            tracing::info!("vault answered 403; logging in again with approle");
            self.login().await?;
            let token = self.ensure_token().await?;
            (status, body) = self.read(&token).await?;
        }
        let mut v = expect_ok(status, &body, &op, &path)?;
        drop(body);
        let version = v["data"]["metadata"]["version"]
            .as_u64()
            .map(|n| n.to_string());
        let data = v["data"]["data"].take();
        if data.is_null() {
            return Err(Error::Malformed {
                source_name: format!("vault {path}"),
                reason: "answer has no data.data (is the mount KV version 2?)".into(),
            });
        }
        SecretSet::from_json_value(set, PROVIDER, version, &format!("vault {path}"), data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::ManualClock;
    use std::sync::Arc;

    fn settings(addr: &str, path: &str) -> VaultSettings {
        VaultSettings {
            addr: addr.into(),
            namespace: None,
            mount: "secret".into(),
            path: path.into(),
            auth: VaultAuth::Token(SecretString::from("s.root")),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn config_is_checked() {
        struct Case {
            addr: &'static str,
            path: &'static str,
            key: &'static str,
        }
        for case in [
            Case {
                addr: "ftp://x",
                path: "kraken",
                key: "secrets.vault_addr",
            },
            Case {
                addr: "not a url",
                path: "kraken",
                key: "secrets.vault_addr",
            },
            Case {
                addr: "http://127.0.0.1:1",
                path: "../sys",
                key: "secrets.vault_path",
            },
            Case {
                addr: "http://127.0.0.1:1",
                path: "a?b",
                key: "secrets.vault_path",
            },
            Case {
                addr: "http://127.0.0.1:1",
                path: "",
                key: "secrets.vault_path",
            },
        ] {
            match VaultProvider::new(
                settings(case.addr, case.path),
                Arc::new(ManualClock::default()),
            ) {
                Err(Error::Config { key, .. }) => assert_eq!(key, case.key),
                other => panic!("{}: {other:?}", case.addr),
            }
        }
    }

    #[test]
    fn debug_redacts_tokens() {
        let p = VaultProvider::new(
            settings("http://127.0.0.1:1", "kraken"),
            Arc::new(ManualClock::default()),
        )
        .unwrap();
        let text = format!("{p:?}");
        assert!(!text.contains("s.root"), "{text}");
        let approle = VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: "r".into(),
            secret_id: SecretString::from("sid-123"),
        };
        assert!(!format!("{approle:?}").contains("sid-123"));
    }

    #[tokio::test]
    async fn unreachable_server_is_a_retryable_transport_error() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = VaultProvider::new(
            settings(&format!("http://127.0.0.1:{port}"), "kraken"),
            Arc::new(ManualClock::default()),
        )
        .unwrap();
        let err = p.fetch("kraken").await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string()
                .starts_with("vault: token lookup-self failed: cannot connect"),
            "{err}"
        );
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            vault_errors(br#"{"errors":["permission denied"]}"#),
            "permission denied"
        );
        assert_eq!(vault_errors(br#"{"errors":[]}"#), "no error message");
        assert_eq!(
            vault_errors(b"<html>\nbad gateway</html>"),
            "<html> bad gateway</html>"
        );
    }
}
