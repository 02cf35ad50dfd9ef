//! The `env` provider (development): `<SET>_API_KEY` / `<SET>_API_SECRET`, e.g.
//! `KRAKEN_API_KEY` / `KRAKEN_API_SECRET` for the set `kraken`, and optionally
//! `<SET>_JOURNAL_KEY` (the field `journal_key`: the journal key in live mode). A NATS
//! credential set (`[fleet] auth`) reads `<SET>_TOKEN` or `<SET>_USER`/`<SET>_PASSWORD`
//! instead, e.g. `NATS_TOKEN` for the set `nats`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::provider::SecretProvider;
use crate::secret::{API_KEY_FIELD, API_SECRET_FIELD, SecretSet};

/// A lookup of environment variables (the process environment, or a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment as an [`EnvLookup`].
#[must_use]
pub fn process_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// A fixed map as an [`EnvLookup`] (tests, embedding).
#[must_use]
pub fn env_from_pairs<I, K, V>(pairs: I) -> EnvLookup
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let map: HashMap<String, String> = pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    Arc::new(move |name| map.get(name).cloned())
}

/// Reads `<SET>_API_KEY` and `<SET>_API_SECRET`. The environment cannot change under a
/// running process, so the version is always `None` and the watcher never rotates it.
#[derive(Clone)]
pub struct EnvProvider {
    lookup: EnvLookup,
}

impl fmt::Debug for EnvProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvProvider").finish_non_exhaustive()
    }
}

impl EnvProvider {
    /// A provider over the given lookup.
    #[must_use]
    pub fn new(lookup: EnvLookup) -> Self {
        Self { lookup }
    }

    /// A provider over the process environment.
    #[must_use]
    pub fn from_process() -> Self {
        Self::new(process_env())
    }

    /// The variable names used for `set`.
    #[must_use]
    pub fn var_names(set: &str) -> (String, String) {
        let prefix: String = set
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        (format!("{prefix}_API_KEY"), format!("{prefix}_API_SECRET"))
    }
}

#[async_trait]
impl SecretProvider for EnvProvider {
    fn kind(&self) -> &'static str {
        "env"
    }

    async fn fetch(&self, set: &str) -> Result<SecretSet> {
        let (key_var, secret_var) = Self::var_names(set);
        let journal_var = format!("{}_JOURNAL_KEY", key_var.trim_end_matches("_API_KEY"));
        let prefix = key_var.trim_end_matches("_API_KEY").to_owned();
        let mut out = SecretSet::new(set, "env", None);
        // A NATS set (`[fleet] auth`): `<SET>_TOKEN`, or `<SET>_USER` and `<SET>_PASSWORD`.
        for field in NATS_FIELDS {
            if let Some(value) = (self.lookup)(&format!("{prefix}_{}", field.to_uppercase())) {
                out.insert(*field, value);
            }
        }
        let nats_only = out.field_names().next().is_some()
            && (self.lookup)(&key_var).is_none()
            && (self.lookup)(&secret_var).is_none();
        if !nats_only {
            for (var, field) in [(key_var, API_KEY_FIELD), (secret_var, API_SECRET_FIELD)] {
                let value = (self.lookup)(&var).ok_or(Error::MissingEnv { var })?;
                out.insert(field, value);
            }
        }
        // Optional: the journal key of live mode (`<SET>_JOURNAL_KEY`, 64 hex characters).
        if let Some(value) = (self.lookup)(&journal_var) {
            out.insert(JOURNAL_KEY_FIELD, value);
        }
        Ok(out)
    }
}

/// The fields of a NATS credential set (`[fleet] auth`), read from `<SET>_TOKEN`,
/// `<SET>_USER` and `<SET>_PASSWORD`; a set with any of them and neither exchange-key
/// variable needs no exchange key.
pub const NATS_FIELDS: &[&str] = &["token", "user", "password"];

/// The optional field of a secret set that holds the journal key in live mode.
pub const JOURNAL_KEY_FIELD: &str = "journal_key";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Credentials;

    #[tokio::test]
    async fn a_nats_set_needs_no_exchange_key() {
        let p = EnvProvider::new(env_from_pairs([("NATS_TOKEN", "s3cret")]));
        let set = p.fetch("nats").await.unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(set.get("token").unwrap()),
            "s3cret"
        );
        assert!(set.get(API_KEY_FIELD).is_none());
        let p = EnvProvider::new(env_from_pairs([("NATS_USER", "u")]));
        assert!(p.fetch("nats").await.unwrap().get("user").is_some());
        let p = EnvProvider::new(env_from_pairs([("OTHER", "x")]));
        assert!(matches!(
            p.fetch("nats").await,
            Err(Error::MissingEnv { var }) if var == "NATS_API_KEY"
        ));
    }
    use crate::secret::tests::sample_pair;

    #[tokio::test]
    async fn reads_kraken_vars() {
        let (key, secret) = sample_pair(2);
        let p = EnvProvider::new(env_from_pairs([
            ("KRAKEN_API_KEY", key.as_str()),
            ("KRAKEN_API_SECRET", secret.as_str()),
        ]));
        let set = p.fetch("kraken").await.unwrap();
        assert_eq!(set.provider(), "env");
        assert_eq!(set.version(), None);
        Credentials::from_set(&set).unwrap();
    }

    #[tokio::test]
    async fn missing_var_is_named() {
        let p = EnvProvider::new(env_from_pairs([("KRAKEN_API_KEY", "x")]));
        let err = p.fetch("kraken").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `KRAKEN_API_SECRET` is not set"
        );
    }

    #[test]
    fn var_names_follow_the_set() {
        assert_eq!(
            EnvProvider::var_names("kraken-sub"),
            ("KRAKEN_SUB_API_KEY".into(), "KRAKEN_SUB_API_SECRET".into())
        );
    }
}
