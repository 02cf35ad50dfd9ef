//! Kraken private-request signing, the strictly increasing nonce, and a fixed credential
//! handle for tests and the mock server.
//!
//! `API-Sign` = base64( HMAC-SHA512( key = base64-decoded secret,
//! message = URI path ‖ SHA-256( nonce ‖ POST body ) ) ), exactly as Kraken documents in
//! "Spot REST Authentication".

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gf_core::{CredentialHandle, SharedClock};
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::Error;

/// Computes Kraken's `API-Sign` header value.
///
/// `uri_path` is the part of the URL starting with `/0/private`, `post_data` the exact
/// url-encoded body (which contains `nonce=<nonce>`), `secret` the base64-decoded API secret.
///
/// ```
/// use base64::Engine as _;
/// let secret = base64::engine::general_purpose::STANDARD.decode(
///     "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
/// ).unwrap();
/// let sig = gf_exec::sign::api_sign(
///     "/0/private/AddOrder",
///     1616492376594,
///     "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
///     &secret,
/// );
/// assert_eq!(sig, "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==");
/// ```
#[must_use]
pub fn api_sign(uri_path: &str, nonce: u64, post_data: &str, secret: &[u8]) -> String {
    let mut inner = Sha256::new();
    inner.update(nonce.to_string().as_bytes());
    inner.update(post_data.as_bytes());
    let digest = inner.finalize();
    let mut mac =
        <Hmac<Sha512> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(uri_path.as_bytes());
    mac.update(&digest);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Verifies an `API-Sign` value in constant time (used by the mock server).
#[must_use]
pub fn verify_api_sign(
    uri_path: &str,
    nonce: u64,
    post_data: &str,
    secret: &[u8],
    api_sign: &str,
) -> bool {
    let Ok(given) = BASE64.decode(api_sign.trim()) else {
        return false;
    };
    let mut inner = Sha256::new();
    inner.update(nonce.to_string().as_bytes());
    inner.update(post_data.as_bytes());
    let digest = inner.finalize();
    let Ok(mut mac) = <Hmac<Sha512> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(uri_path.as_bytes());
    mac.update(&digest);
    mac.verify_slice(&given).is_ok()
}

/// Nonces are reserved on disk in blocks of this many microseconds, so a restart never
/// reuses one and a file write happens only once per block.
pub const NONCE_RESERVE: u64 = 10_000_000;

/// A strictly increasing nonce: `max(last + 1, clock in microseconds)`, lock-free across
/// concurrent requests, and (with [`NonceSource::with_file`]) above every nonce handed
/// out before a restart, even if the wall clock went backwards.
pub struct NonceSource {
    last: AtomicU64,
    clock: SharedClock,
    persist: Option<Mutex<Persist>>,
}

struct Persist {
    path: PathBuf,
    reserved: u64,
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSource")
            .field("last", &self.last.load(Ordering::Relaxed))
            .field(
                "persisted",
                &self.persist.as_ref().map(|p| p.lock().reserved),
            )
            .finish()
    }
}

impl NonceSource {
    /// A nonce source without persistence (nonces still follow the clock).
    #[must_use]
    pub fn new(clock: SharedClock) -> Self {
        Self {
            last: AtomicU64::new(0),
            clock,
            persist: None,
        }
    }

    /// A nonce source that keeps a high-water mark in `path` (created if missing).
    ///
    /// # Errors
    /// [`Error::NonceFile`] when the file exists but cannot be read or does not hold a
    /// number.
    pub fn with_file(clock: SharedClock, path: &Path) -> Result<Self, Error> {
        let file_err = |message: String| Error::NonceFile {
            path: path.display().to_string(),
            message,
        };
        let reserved = match std::fs::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|e| file_err(format!("not a nonce {:?}: {e}", text.trim())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(file_err(e.to_string())),
        };
        Ok(Self {
            last: AtomicU64::new(reserved),
            clock,
            persist: Some(Mutex::new(Persist {
                path: path.to_owned(),
                reserved,
            })),
        })
    }

    fn clock_micros(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp_micros()).unwrap_or(0)
    }

    /// The next nonce, strictly greater than every nonce returned before.
    ///
    /// # Errors
    /// [`Error::NonceFile`] when the high-water mark cannot be persisted (the nonce is not
    /// used then, so no restart can repeat it).
    pub fn next(&self) -> Result<u64, Error> {
        let now = self.clock_micros();
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|v| v);
        let nonce = now.max(previous.saturating_add(1));
        if let Some(persist) = &self.persist {
            let mut p = persist.lock();
            if nonce >= p.reserved {
                let reserved = nonce.saturating_add(NONCE_RESERVE);
                write_atomically(&p.path, reserved).map_err(|e| Error::NonceFile {
                    path: p.path.display().to_string(),
                    message: e.to_string(),
                })?;
                p.reserved = reserved;
            }
        }
        Ok(nonce)
    }

    /// The last nonce handed out (0 before the first).
    #[must_use]
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
}

fn write_atomically(path: &Path, value: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value.to_string())?;
    std::fs::rename(&tmp, path)
}

/// A credential handle holding one fixed key pair (tests, the mock server, research).
/// The secret is zeroized on drop and never printed.
pub struct FixedCredentials {
    key: String,
    secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for FixedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedCredentials")
            .field("key", &"<redacted>")
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FixedCredentials {
    /// From the API key and the secret as Kraken shows it (base64).
    ///
    /// # Errors
    /// [`Error::Config`] when the secret is not base64 or is empty (the secret itself is
    /// not echoed).
    pub fn from_base64(key: &str, secret_b64: &str) -> Result<Self, Error> {
        let secret = BASE64
            .decode(secret_b64.trim())
            .map_err(|e| Error::Config {
                key: "api_secret".into(),
                value: "<redacted>".into(),
                reason: format!("not valid base64: {e}"),
            })?;
        if secret.is_empty() || key.is_empty() {
            return Err(Error::Config {
                key: "api_key".into(),
                value: "<redacted>".into(),
                reason: "key and secret must not be empty".into(),
            });
        }
        Ok(Self {
            key: key.to_owned(),
            secret: Zeroizing::new(secret),
        })
    }

    /// From raw secret bytes.
    #[must_use]
    pub fn from_raw(key: &str, secret: Vec<u8>) -> Self {
        Self {
            key: key.to_owned(),
            secret: Zeroizing::new(secret),
        }
    }
}

impl CredentialHandle for FixedCredentials {
    fn with_credentials(&self, sign: &mut dyn FnMut(&str, &[u8])) -> bool {
        sign(&self.key, &self.secret);
        true
    }

    fn version(&self) -> Option<String> {
        Some("fixed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{Clock, ManualClock};
    use std::sync::Arc;

    const DOC_SECRET: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
    const DOC_BODY: &str =
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
    const DOC_SIGN: &str =
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";

    #[test]
    fn signing_reproduces_krakens_documented_example() {
        let secret = BASE64.decode(DOC_SECRET).unwrap();
        let sig = api_sign("/0/private/AddOrder", 1_616_492_376_594, DOC_BODY, &secret);
        assert_eq!(sig, DOC_SIGN);
        assert!(verify_api_sign(
            "/0/private/AddOrder",
            1_616_492_376_594,
            DOC_BODY,
            &secret,
            DOC_SIGN
        ));
    }

    #[test]
    fn verification_rejects_any_change() {
        let secret = BASE64.decode(DOC_SECRET).unwrap();
        let path = "/0/private/AddOrder";
        assert!(!verify_api_sign(
            path,
            1_616_492_376_595,
            DOC_BODY,
            &secret,
            DOC_SIGN
        ));
        assert!(!verify_api_sign(
            "/0/private/Balance",
            1_616_492_376_594,
            DOC_BODY,
            &secret,
            DOC_SIGN
        ));
        assert!(!verify_api_sign(
            path,
            1_616_492_376_594,
            "nonce=1",
            &secret,
            DOC_SIGN
        ));
        assert!(!verify_api_sign(
            path,
            1_616_492_376_594,
            DOC_BODY,
            b"other",
            DOC_SIGN
        ));
        assert!(!verify_api_sign(
            path,
            1_616_492_376_594,
            DOC_BODY,
            &secret,
            "%%%not base64"
        ));
    }

    #[test]
    fn fixed_credentials_lend_key_and_secret_and_redact_debug() {
        let creds = FixedCredentials::from_base64("my-key", DOC_SECRET).unwrap();
        let mut seen = None;
        assert!(creds.with_credentials(&mut |k, s| seen = Some((k.to_owned(), s.len()))));
        assert_eq!(seen, Some(("my-key".to_owned(), 64)));
        let debug = format!("{creds:?}");
        assert!(!debug.contains("my-key") && !debug.contains("kQH5"));
        let err = FixedCredentials::from_base64("k", "not base64!").unwrap_err();
        assert!(err.to_string().contains("api_secret"));
        assert!(FixedCredentials::from_base64("", DOC_SECRET).is_err());
    }

    #[test]
    fn nonce_follows_clock_and_never_repeats_when_clock_stands_still() {
        let clock = ManualClock::default();
        let source = NonceSource::new(Arc::new(clock.clone()));
        let start = u64::try_from(clock.now().timestamp_micros()).unwrap();
        assert_eq!(source.next().unwrap(), start);
        assert_eq!(source.next().unwrap(), start + 1);
        clock.advance(chrono::Duration::seconds(-10));
        assert_eq!(
            source.next().unwrap(),
            start + 2,
            "clock going back is ignored"
        );
        clock.advance(chrono::Duration::seconds(20));
        assert_eq!(source.next().unwrap(), start + 10_000_000);
    }

    #[test]
    fn nonce_survives_restart_with_clock_set_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonce");
        let clock = ManualClock::default();
        let first = NonceSource::with_file(Arc::new(clock.clone()), &path).unwrap();
        let mut last = 0;
        for _ in 0..5 {
            last = first.next().unwrap();
        }
        drop(first);
        clock.advance(chrono::Duration::hours(-1));
        let second = NonceSource::with_file(Arc::new(clock.clone()), &path).unwrap();
        assert!(second.next().unwrap() > last);
        std::fs::write(&path, "garbage").unwrap();
        let err = NonceSource::with_file(Arc::new(clock), &path).unwrap_err();
        assert!(err.to_string().contains("garbage"));
    }

    #[test]
    fn nonce_unique_and_increasing_per_thread_under_concurrency() {
        let source = Arc::new(NonceSource::new(Arc::new(ManualClock::default())));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let source = source.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::with_capacity(1000);
                    for _ in 0..1000 {
                        seen.push(source.next().unwrap());
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let seen = h.join().unwrap();
            assert!(seen.windows(2).all(|w| w[0] < w[1]));
            all.extend(seen);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "no nonce handed out twice");
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_sign_then_verify_roundtrips(
            path in "/0/private/[A-Za-z]{1,20}",
            nonce in any::<u64>(),
            body in "[a-z0-9=&.]{0,64}",
            secret in proptest::collection::vec(any::<u8>(), 1..128),
        ) {
            let sig = api_sign(&path, nonce, &body, &secret);
            prop_assert!(verify_api_sign(&path, nonce, &body, &secret, &sig));
            prop_assert!(!verify_api_sign(&path, nonce.wrapping_add(1), &body, &secret, &sig));
        }

        #[test]
        fn prop_verify_never_panics_on_garbage(sign in ".{0,200}", body in ".{0,100}") {
            let _ = verify_api_sign("/0/private/Balance", 1, &body, b"k", &sign);
        }
    }
}
