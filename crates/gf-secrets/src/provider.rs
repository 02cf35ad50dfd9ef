//! The [`SecretProvider`] seam: fetch a named secret set with its version.

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::secret::SecretSet;

/// A store of secret sets: the environment, an age file, Vault KV v2 or AWS Secrets
/// Manager. Implementations are cheap to call repeatedly: the rotation watcher polls
/// [`SecretProvider::fetch`] and compares versions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SecretProvider: Send + Sync + fmt::Debug {
    /// Short provider name for audit records: `env`, `file`, `vault`, `aws`.
    fn kind(&self) -> &'static str;

    /// Fetches the current version of the secret set `set`.
    ///
    /// Cancellation-safe: dropping the future leaves the provider usable.
    ///
    /// # Errors
    /// Provider-specific; see [`crate::Error`]. Messages never contain secret values.
    async fn fetch(&self, set: &str) -> Result<SecretSet>;
}
