//! The seam between gf-secrets (which holds exchange credentials) and gf-exec (which signs
//! requests with them): a handle that lends the key and the decoded secret to a closure for
//! the duration of one signature, so no plaintext copy outlives the signing call.

use std::fmt;

/// Lends credentials for one signing operation. Implemented by gf-secrets' rotating
/// handle (and by simple fixed handles in tests); read by gf-exec on every request, so a
/// rotation takes effect on the next request without a restart.
pub trait CredentialHandle: Send + Sync + fmt::Debug {
    /// Calls `sign` with the API key and the decoded (raw bytes) API secret. Returns
    /// `false` when no credentials are loaded (then `sign` is not called).
    fn with_credentials(&self, sign: &mut dyn FnMut(&str, &[u8])) -> bool;

    /// The version of the credentials currently lent (provider-specific), for audit.
    fn version(&self) -> Option<String>;
}
