//! Library functions behind `gf-daemon secrets encrypt|check|rotate`: building the
//! configured provider, obtaining the master passphrase, and the `check` report.
//! Manual rotation is [`crate::rotation::Rotator::rotate_now`] with `force = true`.
//!
//! Credentials never come from the config file: Vault reads `VAULT_TOKEN` or
//! `VAULT_ROLE_ID`/`VAULT_SECRET_ID`, AWS reads `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`, the age file's passphrase
//! is `GF_MASTER_PASSWORD` or an interactive prompt.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gf_core::SharedClock;
use gf_core::config::{SecretProviderKind, SecretsConfig, VaultAuthMethod};
use secrecy::{ExposeSecret, SecretString};

use crate::audit::Auditor;
use crate::aws::{AwsProvider, AwsSettings};
use crate::env::{EnvLookup, EnvProvider};
use crate::error::{Error, Result};
use crate::file::{AgeFileProvider, EncryptTo, Unlock, encrypt_file};
use crate::http::DEFAULT_TIMEOUT;
use crate::provider::SecretProvider;
use crate::secret::Credentials;
use crate::sigv4::AwsCredentials;
use crate::vault::{VaultAuth, VaultProvider, VaultSettings};

/// Environment variable holding the age file's passphrase.
pub const MASTER_PASSWORD_VAR: &str = "GF_MASTER_PASSWORD";

/// Whether a passphrase may be asked for on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Ask when stdin is a terminal.
    IfTerminal,
    /// Never ask (daemons, CI).
    Never,
}

impl Prompt {
    fn allowed(self) -> bool {
        self == Prompt::IfTerminal && std::io::stdin().is_terminal()
    }
}

/// The master passphrase: `GF_MASTER_PASSWORD`, else a prompt (only on a terminal).
///
/// # Errors
/// [`Error::NoPassphrase`] when neither is available, or the prompt was answered
/// with nothing.
pub fn master_passphrase(env: &EnvLookup, prompt: Prompt) -> Result<SecretString> {
    if let Some(p) = env(MASTER_PASSWORD_VAR).filter(|p| !p.is_empty()) {
        return Ok(SecretString::from(p));
    }
    if !prompt.allowed() {
        return Err(Error::NoPassphrase);
    }
    let typed = rpassword::prompt_password("gal-friday master passphrase: ")
        .map_err(|e| Error::io("/dev/tty", e))?;
    if typed.is_empty() {
        return Err(Error::NoPassphrase);
    }
    Ok(SecretString::from(typed))
}

/// As [`master_passphrase`] for encrypting: a prompted passphrase is asked twice.
///
/// # Errors
/// [`Error::NoPassphrase`], or [`Error::Config`] when the two entries differ.
pub fn new_master_passphrase(env: &EnvLookup, prompt: Prompt) -> Result<SecretString> {
    if env(MASTER_PASSWORD_VAR).is_some_and(|p| !p.is_empty()) {
        return master_passphrase(env, prompt);
    }
    let first = master_passphrase(env, prompt)?;
    let again = rpassword::prompt_password("repeat the passphrase: ")
        .map_err(|e| Error::io("/dev/tty", e))?;
    let again = SecretString::from(again);
    if first.expose_secret() != again.expose_secret() {
        return Err(Error::Config {
            key: MASTER_PASSWORD_VAR,
            reason: "the two passphrases typed differ".into(),
        });
    }
    Ok(first)
}

fn required<'a, T>(value: Option<&'a T>, key: &'static str, provider: &str) -> Result<&'a T>
where
    T: ?Sized,
{
    value.ok_or_else(|| Error::Config {
        key,
        reason: format!("is required by provider `{provider}`"),
    })
}

fn env_var(env: &EnvLookup, var: &str) -> Result<String> {
    env(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::MissingEnv {
            var: var.to_owned(),
        })
}

/// Builds the provider chosen in `[secrets]`.
///
/// # Errors
/// [`Error::Config`] for a missing or malformed setting (or provider `none`),
/// [`Error::MissingEnv`] for a missing credential variable, [`Error::NoPassphrase`].
pub fn provider_from_config(
    cfg: &SecretsConfig,
    env: &EnvLookup,
    clock: SharedClock,
    prompt: Prompt,
) -> Result<Arc<dyn SecretProvider>> {
    Ok(match cfg.provider {
        SecretProviderKind::None => {
            return Err(Error::Config {
                key: "secrets.provider",
                reason: "is `none` (paper mode has no credentials); choose env, file, vault or aws"
                    .into(),
            });
        }
        SecretProviderKind::Env => Arc::new(EnvProvider::new(env.clone())),
        SecretProviderKind::File => {
            let path = required(cfg.file_path.as_ref(), "secrets.file_path", "file")?;
            let unlock = match &cfg.file_identity {
                Some(identity) => Unlock::IdentityFile(identity.clone()),
                None => Unlock::Passphrase(master_passphrase(env, prompt)?),
            };
            Arc::new(AgeFileProvider::new(path.clone(), unlock))
        }
        SecretProviderKind::Vault => {
            let addr = required(cfg.vault_addr.as_ref(), "secrets.vault_addr", "vault")?;
            let path = required(cfg.vault_path.as_ref(), "secrets.vault_path", "vault")?;
            let auth = match cfg.vault_auth {
                VaultAuthMethod::Token => {
                    VaultAuth::Token(SecretString::from(env_var(env, "VAULT_TOKEN")?))
                }
                VaultAuthMethod::AppRole => VaultAuth::AppRole {
                    mount: "approle".into(),
                    role_id: env_var(env, "VAULT_ROLE_ID")?,
                    secret_id: SecretString::from(env_var(env, "VAULT_SECRET_ID")?),
                },
            };
            Arc::new(VaultProvider::new(
                VaultSettings {
                    addr: addr.clone(),
                    namespace: cfg.vault_namespace.clone(),
                    mount: cfg.vault_mount.clone(),
                    path: path.clone(),
                    auth,
                    timeout: DEFAULT_TIMEOUT,
                },
                clock,
            )?)
        }
        SecretProviderKind::Aws => {
            let region = required(cfg.aws_region.as_ref(), "secrets.aws_region", "aws")?;
            let secret_id = required(cfg.aws_secret_id.as_ref(), "secrets.aws_secret_id", "aws")?;
            let credentials = AwsCredentials {
                access_key_id: env_var(env, "AWS_ACCESS_KEY_ID")?,
                secret_access_key: SecretString::from(env_var(env, "AWS_SECRET_ACCESS_KEY")?),
                session_token: env("AWS_SESSION_TOKEN")
                    .filter(|t| !t.is_empty())
                    .map(SecretString::from),
            };
            Arc::new(AwsProvider::new(
                AwsSettings {
                    region: region.clone(),
                    endpoint: cfg.aws_endpoint.clone(),
                    secret_id: secret_id.clone(),
                    credentials,
                    version_stage: None,
                    timeout: DEFAULT_TIMEOUT,
                },
                clock,
            )?)
        }
    })
}

/// The rotation watcher's poll interval from `secrets.rotation_poll_secs`; `None` when
/// 0 (disabled) or when the provider cannot change under a running process (`env`).
#[must_use]
pub fn poll_interval(cfg: &SecretsConfig) -> Option<Duration> {
    match cfg.provider {
        SecretProviderKind::None | SecretProviderKind::Env => None,
        _ if cfg.rotation_poll_secs == 0 => None,
        _ => Some(Duration::from_secs(cfg.rotation_poll_secs)),
    }
}

/// `gf-daemon secrets encrypt <plain.json> <out.age> [-r age1…]…`: encrypts to the
/// given recipients, or — with none — to the master passphrase (`GF_MASTER_PASSWORD`,
/// else asked twice on the terminal). The output is written 0600; the plaintext is
/// left for the caller to offer to [`crate::file::shred_file`].
///
/// # Errors
/// As [`encrypt_file`] and [`new_master_passphrase`].
pub fn encrypt(
    plain: &Path,
    out: &Path,
    recipients: &[String],
    env: &EnvLookup,
    prompt: Prompt,
) -> Result<()> {
    let to = if recipients.is_empty() {
        EncryptTo::Passphrase {
            passphrase: new_master_passphrase(env, prompt)?,
            work_factor: None,
        }
    } else {
        EncryptTo::Recipients(recipients.to_vec())
    };
    encrypt_file(plain, out, &to)
}

/// What `gf-daemon secrets check` prints: where the secret came from, its version, its
/// field names and whether it has the Kraken shape — never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Provider name.
    pub provider: &'static str,
    /// Secret set.
    pub set: String,
    /// Version found.
    pub version: Option<String>,
    /// Field names present.
    pub fields: Vec<String>,
    /// `Ok` or the validation error.
    pub validation: Result<(), String>,
}

impl CheckReport {
    /// Whether the credentials are usable.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.validation.is_ok()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "provider:   {}", self.provider)?;
        writeln!(f, "set:        {}", self.set)?;
        writeln!(f, "version:    {}", self.version.as_deref().unwrap_or("-"))?;
        writeln!(f, "fields:     {}", self.fields.join(", "))?;
        match &self.validation {
            Ok(()) => writeln!(f, "validation: ok"),
            Err(e) => writeln!(f, "validation: FAILED: {e}"),
        }
    }
}

/// Fetches `set` and validates it, auditing the access as `actor`.
///
/// # Errors
/// The provider's error when the secret cannot be read; a shape problem is reported
/// in [`CheckReport::validation`] instead.
pub async fn check(
    provider: &dyn SecretProvider,
    set: &str,
    auditor: &Auditor,
    actor: &str,
) -> Result<CheckReport> {
    let fetched = match provider.fetch(set).await {
        Ok(s) => s,
        Err(e) => {
            auditor.record(actor, set, provider.kind(), None, "fetch", &e.to_string());
            return Err(e);
        }
    };
    auditor.record(
        actor,
        set,
        provider.kind(),
        fetched.version(),
        "fetch",
        "ok",
    );
    let validation = Credentials::from_set(&fetched)
        .map(drop)
        .map_err(|e| e.to_string());
    auditor.record(
        actor,
        set,
        provider.kind(),
        fetched.version(),
        "validate",
        validation.as_ref().err().map_or("ok", String::as_str),
    );
    Ok(CheckReport {
        provider: provider.kind(),
        set: set.to_owned(),
        version: fetched.version().map(str::to_owned),
        fields: fetched.field_names().map(str::to_owned).collect(),
        validation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAuditSink;
    use crate::env::env_from_pairs;
    use crate::secret::tests::sample_pair;
    use gf_core::ManualClock;

    fn clock() -> SharedClock {
        Arc::new(ManualClock::default())
    }

    fn cfg(provider: SecretProviderKind) -> SecretsConfig {
        SecretsConfig {
            provider,
            ..SecretsConfig::default()
        }
    }

    fn build_err(cfg: &SecretsConfig, env: &EnvLookup) -> String {
        provider_from_config(cfg, env, clock(), Prompt::Never)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn config_errors_name_the_key_or_variable() {
        let none = env_from_pairs::<_, String, String>([]);
        struct Case {
            cfg: SecretsConfig,
            message: &'static str,
        }
        let mut vault = cfg(SecretProviderKind::Vault);
        vault.vault_addr = Some("http://127.0.0.1:8200".into());
        vault.vault_path = Some("gal-friday/kraken".into());
        let mut approle = vault.clone();
        approle.vault_auth = VaultAuthMethod::AppRole;
        let mut aws = cfg(SecretProviderKind::Aws);
        aws.aws_region = Some("eu-west-1".into());
        aws.aws_secret_id = Some("kraken".into());
        let mut file = cfg(SecretProviderKind::File);
        file.file_path = Some("/nonexistent/k.age".into());
        for case in [
            Case {
                cfg: cfg(SecretProviderKind::None),
                message: "secrets config: `secrets.provider` is `none`",
            },
            Case {
                cfg: cfg(SecretProviderKind::File),
                message: "`secrets.file_path` is required by provider `file`",
            },
            Case {
                cfg: cfg(SecretProviderKind::Vault),
                message: "`secrets.vault_addr` is required by provider `vault`",
            },
            Case {
                cfg: vault,
                message: "environment variable `VAULT_TOKEN` is not set",
            },
            Case {
                cfg: approle,
                message: "environment variable `VAULT_ROLE_ID` is not set",
            },
            Case {
                cfg: cfg(SecretProviderKind::Aws),
                message: "`secrets.aws_region` is required by provider `aws`",
            },
            Case {
                cfg: aws,
                message: "environment variable `AWS_ACCESS_KEY_ID` is not set",
            },
            Case {
                cfg: file,
                message: "no passphrase: set GF_MASTER_PASSWORD",
            },
        ] {
            let msg = build_err(&case.cfg, &none);
            assert!(msg.contains(case.message), "{msg}");
        }
    }

    #[test]
    fn providers_are_built_from_config_and_env() {
        let env = env_from_pairs([
            ("VAULT_TOKEN", "t"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            (MASTER_PASSWORD_VAR, "pw"),
        ]);
        let mut vault = cfg(SecretProviderKind::Vault);
        vault.vault_addr = Some("http://127.0.0.1:8200".into());
        vault.vault_path = Some("gal-friday/kraken".into());
        let mut aws = cfg(SecretProviderKind::Aws);
        aws.aws_region = Some("eu-west-1".into());
        aws.aws_secret_id = Some("kraken".into());
        let mut file = cfg(SecretProviderKind::File);
        file.file_path = Some("/tmp/k.age".into());
        for (c, kind) in [
            (cfg(SecretProviderKind::Env), "env"),
            (vault, "vault"),
            (aws, "aws"),
            (file, "file"),
        ] {
            let p = provider_from_config(&c, &env, clock(), Prompt::Never).unwrap();
            assert_eq!(p.kind(), kind);
            assert!(!format!("{p:?}").contains("pw\""));
        }
    }

    #[test]
    fn poll_interval_follows_config() {
        let mut c = cfg(SecretProviderKind::Vault);
        c.rotation_poll_secs = 60;
        assert_eq!(poll_interval(&c), Some(Duration::from_secs(60)));
        c.rotation_poll_secs = 0;
        assert_eq!(poll_interval(&c), None);
        let mut e = cfg(SecretProviderKind::Env);
        e.rotation_poll_secs = 60;
        assert_eq!(poll_interval(&e), None);
    }

    #[tokio::test]
    async fn encrypt_uses_the_master_passphrase_without_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let (k, s) = sample_pair(12);
        let plain = dir.path().join("plain.json");
        std::fs::write(&plain, format!(r#"{{"api_key":"{k}","api_secret":"{s}"}}"#)).unwrap();
        let out = dir.path().join("k.age");
        let none = env_from_pairs::<_, String, String>([]);
        assert!(matches!(
            encrypt(&plain, &out, &[], &none, Prompt::Never),
            Err(Error::NoPassphrase)
        ));
        let env = env_from_pairs([(MASTER_PASSWORD_VAR, "pw-from-env")]);
        encrypt(&plain, &out, &[], &env, Prompt::Never).unwrap();
        let mut c = cfg(SecretProviderKind::File);
        c.file_path = Some(out.clone());
        let p = provider_from_config(&c, &env, clock(), Prompt::Never).unwrap();
        let report = check(p.as_ref(), "kraken", &Auditor::new(clock()), "cli")
            .await
            .unwrap();
        assert!(report.is_ok(), "{report}");
        assert!(report.version.unwrap().starts_with("sha256:"));
    }

    #[test]
    fn passphrase_comes_from_the_environment_or_not_at_all() {
        let env = env_from_pairs([(MASTER_PASSWORD_VAR, "hunter2")]);
        assert_eq!(
            master_passphrase(&env, Prompt::Never)
                .unwrap()
                .expose_secret(),
            "hunter2"
        );
        assert_eq!(
            new_master_passphrase(&env, Prompt::IfTerminal)
                .unwrap()
                .expose_secret(),
            "hunter2"
        );
        let empty = env_from_pairs([(MASTER_PASSWORD_VAR, "")]);
        assert!(matches!(
            master_passphrase(&empty, Prompt::Never),
            Err(Error::NoPassphrase)
        ));
    }

    #[tokio::test]
    async fn check_reports_without_values_and_audits() {
        let (key, secret) = sample_pair(8);
        let sink = Arc::new(MemoryAuditSink::new());
        let auditor = Auditor::new(clock()).with_sink(sink.clone());
        let good = EnvProvider::new(env_from_pairs([
            ("KRAKEN_API_KEY", key.as_str()),
            ("KRAKEN_API_SECRET", secret.as_str()),
        ]));
        let report = check(&good, "kraken", &auditor, "cli").await.unwrap();
        assert!(report.is_ok());
        let text = report.to_string();
        assert_eq!(
            text,
            "provider:   env\nset:        kraken\nversion:    -\nfields:     api_key, api_secret\nvalidation: ok\n"
        );

        let bad = EnvProvider::new(env_from_pairs([
            ("KRAKEN_API_KEY", key.as_str()),
            ("KRAKEN_API_SECRET", "bm90LTY0LWJ5dGVz"),
        ]));
        let report = check(&bad, "kraken", &auditor, "cli").await.unwrap();
        assert!(!report.is_ok());
        let text = report.to_string();
        assert!(
            text.contains(
                "validation: FAILED: secret set `kraken`: field `api_secret` decodes to 12 bytes"
            ),
            "{text}"
        );
        assert!(!text.contains(&key) && !text.contains("bm90LTY0LWJ5dGVz"));

        let missing = EnvProvider::new(env_from_pairs::<_, String, String>([]));
        assert!(matches!(
            check(&missing, "kraken", &auditor, "cli").await,
            Err(Error::MissingEnv { .. })
        ));
        let outcomes: Vec<_> = sink
            .records()
            .into_iter()
            .map(|r| (r.action, r.outcome.starts_with("ok")))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("fetch".to_string(), true),
                ("validate".to_string(), true),
                ("fetch".to_string(), true),
                ("validate".to_string(), false),
                ("fetch".to_string(), false),
            ]
        );
    }
}
