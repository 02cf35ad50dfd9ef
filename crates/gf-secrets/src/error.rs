//! The error type of gf-secrets. Messages name the offending field, key, path or
//! version — never a secret value.

use std::io;
use std::path::PathBuf;

/// Errors raised by gf-secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[secrets]` setting is missing or malformed.
    #[error("secrets config: `{key}` {reason}")]
    Config {
        /// The config key, e.g. `secrets.vault_addr`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An environment variable the provider needs is not set.
    #[error("environment variable `{var}` is not set")]
    MissingEnv {
        /// The variable's name.
        var: String,
    },
    /// The secret set lacks a field.
    #[error("secret set `{set}` has no field `{field}`")]
    MissingField {
        /// The secret set.
        set: String,
        /// The missing field.
        field: String,
    },
    /// A field has the wrong shape (the value itself is never shown).
    #[error("secret set `{set}`: field `{field}` {reason}")]
    InvalidField {
        /// The secret set.
        set: String,
        /// The offending field.
        field: String,
        /// What is wrong with its shape.
        reason: String,
    },
    /// The secret's stored document is not what we expect (not JSON, not an object …).
    #[error("{source_name}: malformed secret document: {reason}")]
    Malformed {
        /// Where it came from (file path, vault path, secret id).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or identity that is readable by group or others.
    #[error(
        "{path}: permissions {mode:04o} let group or others read it; fix with `chmod 600 {path}`",
        path = path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An age file could not be decrypted (wrong passphrase or identity, truncated or
    /// tampered file).
    #[error("{path}: cannot decrypt: {reason}", path = path.display())]
    Decrypt {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// Encryption failed.
    #[error("cannot encrypt to {path}: {reason}", path = path.display())]
    Encrypt {
        /// The output file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No passphrase is available.
    #[error("no passphrase: set GF_MASTER_PASSWORD or run interactively (stdin is not a terminal)")]
    NoPassphrase,
    /// The provider could not be reached or did not answer in time.
    #[error("{provider}: {operation} failed: {reason}")]
    Transport {
        /// `vault` or `aws`.
        provider: &'static str,
        /// What was attempted (`read secret/data/kraken`, `GetSecretValue` …).
        operation: String,
        /// The transport error.
        reason: String,
    },
    /// The provider rejected our identity (bad token, bad signature, unknown key id).
    #[error("{provider}: authentication failed for {operation}: {code}: {message}")]
    Auth {
        /// `vault` or `aws`.
        provider: &'static str,
        /// What was attempted.
        operation: String,
        /// The provider's error code (HTTP status or AWS error code).
        code: String,
        /// The provider's message.
        message: String,
    },
    /// Our identity is valid but may not read the secret.
    #[error("{provider}: permission denied for {operation}: {message}")]
    Forbidden {
        /// `vault` or `aws`.
        provider: &'static str,
        /// What was attempted.
        operation: String,
        /// The provider's message.
        message: String,
    },
    /// The secret does not exist.
    #[error("{provider}: secret {name} not found")]
    NotFound {
        /// `vault` or `aws`.
        provider: &'static str,
        /// The path or secret id.
        name: String,
    },
    /// Any other error answer from the provider.
    #[error("{provider}: {operation} answered {status}: {message}")]
    Provider {
        /// `vault` or `aws`.
        provider: &'static str,
        /// What was attempted.
        operation: String,
        /// HTTP status, or the provider's error code.
        status: String,
        /// The provider's message.
        message: String,
    },
    /// A new credential version failed the caller's check and was not swapped in.
    #[error("credential check rejected version {version}: {reason}")]
    CheckFailed {
        /// The rejected version.
        version: String,
        /// Why the check failed.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed (network trouble, provider
    /// unavailable), as opposed to needing an operator (bad token, missing secret, bad
    /// shape).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Provider { status, .. } => {
                status.starts_with('5') || status == "429" || status == "ThrottlingException"
            }
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The result type of gf-secrets.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_only_for_transient_failures() {
        let transport = Error::Transport {
            provider: "vault",
            operation: "read".into(),
            reason: "timed out".into(),
        };
        assert!(transport.is_retryable());
        let unavailable = Error::Provider {
            provider: "vault",
            operation: "read".into(),
            status: "503".into(),
            message: "sealed".into(),
        };
        assert!(unavailable.is_retryable());
        let auth = Error::Auth {
            provider: "aws",
            operation: "GetSecretValue".into(),
            code: "InvalidClientTokenId".into(),
            message: "no".into(),
        };
        assert!(!auth.is_retryable());
    }

    #[test]
    fn insecure_permissions_message_says_how_to_fix() {
        let e = Error::InsecurePermissions {
            path: "/tmp/k.age".into(),
            mode: 0o644,
        };
        assert_eq!(
            e.to_string(),
            "/tmp/k.age: permissions 0644 let group or others read it; fix with `chmod 600 /tmp/k.age`"
        );
    }
}
