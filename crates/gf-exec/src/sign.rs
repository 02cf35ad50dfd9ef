//! Kraken private-request signing, the strictly increasing millisecond nonce with its
//! persisted high-water mark, and a fixed credential handle for tests and the mock server.
//!
//! `API-Sign` = base64( HMAC-SHA512( key = base64-decoded secret,
//! message = URI path ‖ SHA-256( nonce ‖ POST body ) ) ), exactly as Kraken documents in
//! "Spot REST Authentication".

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// At most one `fsync` of the nonce file per this interval (see [`NonceSource`]).
pub const NONCE_FSYNC_EVERY: Duration = Duration::from_secs(1);

/// A strictly increasing nonce in milliseconds: `max(clock in ms, last + 1)`, and (with
/// [`NonceSource::with_file`]) above every nonce handed out before a restart, even if the
/// wall clock went backwards — without ever jumping ahead of the clock.
///
/// # Persistence
///
/// The high-water mark is written (temporary file + rename) on every nonce, and `fsync`ed
/// at most once per [`NONCE_FSYNC_EVERY`]. A crashed process loses nothing (the page cache
/// survives it). A crashed host may lose the last second of marks; it cannot restart
/// within that second, and nonces only run ahead of the clock during bursts of more than
/// one request per millisecond (tens of milliseconds at most, with Kraken's rate limits),
/// so the clock at restart is past them. Private calls are a few per second at most (the
/// REST counter decays at 0.33–1/s), so a write per nonce costs little; an `fsync` per
/// nonce would put a disk flush in front of every request, a halt's cancels included.
///
/// Nonces are assigned in the order callers ask; putting requests on the wire in that
/// order is the caller's job (the Kraken client serialises "assign, sign, write").
pub struct NonceSource {
    last: Mutex<u64>,
    clock: SharedClock,
    persist: Option<Mutex<Persist>>,
}

struct Persist {
    path: PathBuf,
    synced_at: Option<Instant>,
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSource")
            .field("last", &*self.last.lock())
            .field(
                "file",
                &self.persist.as_ref().map(|p| p.lock().path.clone()),
            )
            .finish()
    }
}

impl NonceSource {
    /// A nonce source without persistence (nonces still follow the clock).
    #[must_use]
    pub fn new(clock: SharedClock) -> Self {
        Self {
            last: Mutex::new(0),
            clock,
            persist: None,
        }
    }

    /// A nonce source that keeps a high-water mark in `path` (created if missing). The
    /// first nonce is `max(clock in ms, mark + 1)`: no jump ahead at start.
    ///
    /// # Errors
    /// [`Error::NonceFile`] when the file exists but cannot be read or does not hold a
    /// number.
    pub fn with_file(clock: SharedClock, path: &Path) -> Result<Self, Error> {
        let file_err = |message: String| Error::NonceFile {
            path: path.display().to_string(),
            message,
        };
        let mark = match std::fs::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|e| file_err(format!("not a nonce {:?}: {e}", text.trim())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(file_err(e.to_string())),
        };
        Ok(Self {
            last: Mutex::new(mark),
            clock,
            persist: Some(Mutex::new(Persist {
                path: path.to_owned(),
                synced_at: None,
            })),
        })
    }

    fn clock_millis(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp_millis()).unwrap_or(0)
    }

    /// The next nonce, strictly greater than every nonce returned before.
    ///
    /// # Errors
    /// [`Error::NonceFile`] when the high-water mark cannot be written (the nonce is not
    /// used then, and not consumed, so no restart can repeat a nonce that was sent).
    pub fn next(&self) -> Result<u64, Error> {
        let mut last = self.last.lock();
        let nonce = self.clock_millis().max(last.saturating_add(1));
        if let Some(persist) = &self.persist {
            let mut p = persist.lock();
            let sync = p
                .synced_at
                .is_none_or(|at| at.elapsed() >= NONCE_FSYNC_EVERY);
            write_atomically(&p.path, nonce, sync).map_err(|e| Error::NonceFile {
                path: p.path.display().to_string(),
                message: e.to_string(),
            })?;
            if sync {
                p.synced_at = Some(Instant::now());
            }
        }
        *last = nonce;
        Ok(nonce)
    }

    /// The last nonce handed out (0 before the first).
    #[must_use]
    pub fn last(&self) -> u64 {
        *self.last.lock()
    }
}

fn write_atomically(path: &Path, value: u64, sync: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(value.to_string().as_bytes())?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
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
        let start = u64::try_from(clock.now().timestamp_millis()).unwrap();
        assert_eq!(source.next().unwrap(), start);
        assert_eq!(source.next().unwrap(), start + 1);
        clock.advance(chrono::Duration::seconds(-10));
        assert_eq!(
            source.next().unwrap(),
            start + 2,
            "clock going back is ignored"
        );
        clock.advance(chrono::Duration::seconds(20));
        assert_eq!(source.next().unwrap(), start + 10_000);
    }

    #[test]
    fn nonce_survives_restart_with_clock_set_back_and_never_jumps_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonce");
        let clock = ManualClock::default();
        let now_ms = |c: &ManualClock| u64::try_from(c.now().timestamp_millis()).unwrap();
        let first = NonceSource::with_file(Arc::new(clock.clone()), &path).unwrap();
        let mut last = 0;
        for _ in 0..5 {
            last = first.next().unwrap();
        }
        assert_eq!(last, now_ms(&clock) + 4, "five in the same millisecond");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), last.to_string());
        drop(first);
        // Restart with the clock moved on: the first nonce is the clock, not a reserve.
        clock.advance(chrono::Duration::seconds(3));
        let second = NonceSource::with_file(Arc::new(clock.clone()), &path).unwrap();
        assert_eq!(second.next().unwrap(), now_ms(&clock), "no jump at start");
        // Three quick restarts do not drift ahead either.
        for _ in 0..3 {
            let again = NonceSource::with_file(Arc::new(clock.clone()), &path).unwrap();
            last = again.next().unwrap();
        }
        assert_eq!(last, now_ms(&clock) + 3);
        // The clock set back an hour: above the mark, one at a time.
        clock.advance(chrono::Duration::hours(-1));
        let third = NonceSource::with_file(Arc::new(clock.clone()), &path).unwrap();
        assert_eq!(third.next().unwrap(), last + 1);
        std::fs::write(&path, "garbage").unwrap();
        let err = NonceSource::with_file(Arc::new(clock), &path).unwrap_err();
        assert!(err.to_string().contains("garbage"));
    }

    #[test]
    fn unwritable_mark_refuses_the_nonce_and_does_not_consume_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("nonce");
        let clock = ManualClock::default();
        let source = NonceSource::with_file(Arc::new(clock), &path).unwrap();
        assert!(matches!(source.next(), Err(Error::NonceFile { .. })));
        assert_eq!(source.last(), 0);
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
