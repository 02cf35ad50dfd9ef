//! Reading a channel's free-form settings table with errors that name the channel and key.

use std::collections::{BTreeMap, BTreeSet};

use gf_core::config::ChannelConfig;

use crate::Error;

/// Looks up an environment variable by name (a closure in tests, `std::env::var` in
/// production), so secrets named by `*_env` keys can be resolved without global state.
pub type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A channel's settings being consumed; keys never read are reported as unknown.
pub(crate) struct Settings<'a> {
    name: &'a str,
    table: &'a BTreeMap<String, toml::Value>,
    env: &'a EnvLookup,
    used: BTreeSet<&'static str>,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(config: &'a ChannelConfig, env: &'a EnvLookup) -> Self {
        Self {
            name: &config.name,
            table: &config.settings,
            env,
            used: BTreeSet::new(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.name
    }

    pub(crate) fn invalid(&self, key: &str, reason: String) -> Error {
        Error::ChannelConfig {
            channel: self.name.to_owned(),
            key: key.to_owned(),
            reason,
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.used.insert(key);
        self.table.get(key)
    }

    pub(crate) fn opt_str(&mut self, key: &'static str) -> Result<Option<String>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(toml::Value::String(_)) => Err(self.invalid(key, "must not be empty".into())),
            Some(other) => {
                Err(self.invalid(key, format!("must be a string, found {}", other.type_str())))
            }
        }
    }

    /// A setting whose values are a closed set: an unknown one is refused naming every
    /// allowed value.
    pub(crate) fn opt_enum<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &'static str,
    ) -> Result<Option<T>, Error> {
        self.get(key)
            .map(|v| {
                T::deserialize(v.clone()).map_err(|e| self.invalid(key, e.message().to_owned()))
            })
            .transpose()
    }

    pub(crate) fn req_str(&mut self, key: &'static str) -> Result<String, Error> {
        self.opt_str(key)?
            .ok_or_else(|| self.invalid(key, "missing".into()))
    }

    /// A string or an array of strings, at least one.
    pub(crate) fn req_strings(&mut self, key: &'static str) -> Result<Vec<String>, Error> {
        let bad = |s: &Self| s.invalid(key, "must be a string or an array of strings".into());
        let out = match self.get(key) {
            None => return Err(self.invalid(key, "missing".into())),
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(items)) => {
                let mut v = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => v.push(s.clone()),
                        _ => return Err(bad(self)),
                    }
                }
                v
            }
            Some(_) => return Err(bad(self)),
        };
        if out.is_empty() || out.iter().any(|s| s.trim().is_empty()) {
            return Err(self.invalid(key, "must list at least one non-empty value".into()));
        }
        Ok(out)
    }

    pub(crate) fn u64_or(&mut self, key: &'static str, default: u64) -> Result<u64, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(toml::Value::Integer(i)) => u64::try_from(*i)
                .map_err(|_| self.invalid(key, format!("must not be negative, found {i}"))),
            Some(other) => Err(self.invalid(
                key,
                format!("must be an integer, found {}", other.type_str()),
            )),
        }
    }

    /// An `http://` or `https://` URL.
    pub(crate) fn url(&mut self, key: &'static str) -> Result<reqwest::Url, Error> {
        let raw = self.req_str(key)?;
        let url =
            reqwest::Url::parse(&raw).map_err(|e| self.invalid(key, format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.invalid(key, "must be an http:// or https:// URL with a host".into()));
        }
        Ok(url)
    }

    /// A secret named by an `*_env` key: the variable must be set and not empty.
    pub(crate) fn secret(&mut self, key: &'static str) -> Result<Option<String>, Error> {
        let Some(var) = self.opt_str(key)? else {
            return Ok(None);
        };
        match (self.env)(&var) {
            Some(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(self.invalid(key, format!("environment variable {var} is not set"))),
        }
    }

    pub(crate) fn req_secret(&mut self, key: &'static str) -> Result<String, Error> {
        self.secret(key)?.ok_or_else(|| {
            self.invalid(
                key,
                "missing (name the environment variable holding it)".into(),
            )
        })
    }

    pub(crate) fn reject_unused(&self) -> Result<(), Error> {
        match self.table.keys().find(|k| !self.used.contains(k.as_str())) {
            Some(k) => Err(self.invalid(k, "unknown setting for this channel kind".into())),
            None => Ok(()),
        }
    }
}
