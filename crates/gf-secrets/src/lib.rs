//! Secret providers (env, age file, Vault, AWS), validation, rotation and audit.
//!
//! gf-secrets is the only crate that sees plaintext exchange credentials. It fetches a
//! named secret set from the provider chosen in `[secrets]`, checks its shape, hands
//! it to gf-exec through a [`gf_core::CredentialHandle`] that lends the key and decoded
//! secret for one signature at a time, and rotates it without a restart.
//!
//! - [`provider::SecretProvider`]: the seam (with `MockSecretProvider` behind the
//!   `mocks` feature); implementations [`env::EnvProvider`] (development),
//!   [`file::AgeFileProvider`] (an [age](https://age-encryption.org) file, openable
//!   with the standard `age` tool), [`vault::VaultProvider`] (KV v2; token or AppRole;
//!   token renewal) and [`aws::AwsProvider`] (Secrets Manager `GetSecretValue`).
//! - [`secret`]: [`secret::SecretSet`] and validated [`secret::Credentials`]; values in
//!   `secrecy` boxes — zeroized on drop, redacted in `Debug`, never serialised.
//! - [`rotation`]: [`rotation::RotatingCredentials`] (the handle gf-exec reads per
//!   request) and [`rotation::Rotator`] (poll, validate, test, swap; alert on failure).
//! - [`audit`]: every access and rotation as `Payload::SecretAudit` on the bus and in
//!   any [`audit::AuditSink`] (gf-halt's journal).
//! - [`cli`]: what `gf-daemon secrets encrypt|check|rotate` calls.
//! - [`sigv4`]: AWS Signature Version 4, by hand over `hmac`/`sha2` rather than the
//!   `aws-sigv4` crate: one request shape to sign, no second HTTP type stack in the
//!   crate holding our keys, time from our `Clock`; verified against AWS's published
//!   test vectors and against moto's signature checks.
//!
//! This crate is an **API boundary** for the daemon and research harnesses that need
//! live credentials; nothing else should depend on it.
//!
//! ```
//! use std::sync::Arc;
//! use futures::future::BoxFuture;
//! use gf_core::{CredentialHandle, EventBus, EventKind, KindSet, ManualClock};
//! use gf_secrets::audit::Auditor;
//! use gf_secrets::env::{EnvProvider, env_from_pairs};
//! use gf_secrets::rotation::{FnCheck, RotatingCredentials, RotationOutcome, Rotator};
//! use gf_secrets::secret::Credentials;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use base64::Engine as _;
//! let key = "K".repeat(56); // Kraken keys are 56 base64-alphabet characters
//! let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
//! let provider = EnvProvider::new(env_from_pairs([
//!     ("KRAKEN_API_KEY", key.as_str()),
//!     ("KRAKEN_API_SECRET", secret.as_str()),
//! ]));
//! let bus = EventBus::new(64);
//! let mut audit = bus.subscribe(KindSet::of(&[EventKind::SecretAudit]));
//! let handle = Arc::new(RotatingCredentials::empty());
//! // The daemon's check signs a private Balance call; this one accepts everything.
//! let check = Arc::new(FnCheck(|_c: Arc<Credentials>| {
//!     Box::pin(async { Ok(()) }) as BoxFuture<'static, Result<(), String>>
//! }));
//! let rotator = Rotator::new(
//!     Arc::new(provider),
//!     "kraken",
//!     handle.clone(),
//!     check,
//!     Auditor::new(Arc::new(ManualClock::default())).with_bus(bus),
//! );
//! assert_eq!(rotator.load("startup").await.unwrap(), RotationOutcome::Loaded { version: None });
//! // gf-exec signs with whatever is current, one request at a time.
//! assert!(handle.with_credentials(&mut |api_key, secret_bytes| {
//!     assert_eq!(api_key.len(), 56);
//!     assert_eq!(secret_bytes.len(), 64);
//! }));
//! assert_eq!(audit.recv().await.unwrap().kind(), EventKind::SecretAudit);
//! # });
//! ```

pub mod audit;
pub mod aws;
pub mod cli;
pub mod env;
pub mod error;
pub mod file;
pub mod http;
pub mod provider;
pub mod rotation;
pub mod secret;
pub mod sigv4;
pub mod vault;

pub use error::{Error, Result};
#[cfg(any(test, feature = "mocks"))]
pub use provider::MockSecretProvider;
pub use provider::SecretProvider;
pub use rotation::{CredentialCheck, RotatingCredentials, Rotator};
pub use secret::{Credentials, SecretSet};
