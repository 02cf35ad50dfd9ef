//! The `file` provider: an [age](https://age-encryption.org/v1) file holding a JSON
//! object (`{"api_key": "…", "api_secret": "…"}`, optionally `"version"`), encrypted
//! to a passphrase (scrypt) or to X25519 recipients. The same file opens with the
//! standard `age` tool: `age -d -i key.txt kraken.age`. Binary and ASCII-armored files
//! are both read.
//!
//! The file (and the identity file) must not be readable by group or others.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::armor::ArmoredReader;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provider::SecretProvider;
use crate::secret::{API_KEY_FIELD, API_SECRET_FIELD, SecretSet, validate_kraken};

/// Largest plaintext or ciphertext accepted, bytes (a credentials file is tiny).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// How the age file is unlocked.
pub enum Unlock {
    /// A passphrase (scrypt recipient).
    Passphrase(SecretString),
    /// An age identity file (`AGE-SECRET-KEY-1…` lines, as written by `age-keygen`).
    IdentityFile(PathBuf),
}

impl fmt::Debug for Unlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unlock::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
            Unlock::IdentityFile(p) => f.debug_tuple("IdentityFile").field(p).finish(),
        }
    }
}

/// Whom an age file is encrypted to.
pub enum EncryptTo {
    /// A passphrase; `work_factor` is scrypt's log2(N) (age picks ~1 s of work when
    /// `None`).
    Passphrase {
        /// The passphrase.
        passphrase: SecretString,
        /// scrypt log2(N), 1..=30; `None` lets age calibrate.
        work_factor: Option<u8>,
    },
    /// One or more X25519 recipients (`age1…`).
    Recipients(Vec<String>),
}

impl fmt::Debug for EncryptTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncryptTo::Passphrase { work_factor, .. } => f
                .debug_struct("Passphrase")
                .field("work_factor", work_factor)
                .finish_non_exhaustive(),
            EncryptTo::Recipients(r) => f.debug_tuple("Recipients").field(r).finish(),
        }
    }
}

/// Reads secret sets from an age-encrypted file.
#[derive(Debug, Clone)]
pub struct AgeFileProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    unlock: Unlock,
}

impl AgeFileProvider {
    /// A provider for `path`, unlocked by `unlock`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, unlock: Unlock) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: path.into(),
                unlock,
            }),
        }
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads and decrypts the file now (blocking; scrypt takes about a second).
    ///
    /// # Errors
    /// [`Error::InsecurePermissions`], [`Error::Io`], [`Error::Decrypt`],
    /// [`Error::Malformed`].
    pub fn fetch_blocking(&self, set: &str) -> Result<SecretSet> {
        let inner = &self.inner;
        let ciphertext = read_private_file(&inner.path)?;
        let plaintext = decrypt(&inner.path, &ciphertext, &inner.unlock)?;
        // Version: the document's own "version" field, else a digest of the ciphertext
        // (public, changes whenever the file is re-encrypted).
        let digest = Sha256::digest(&ciphertext);
        let fallback = format!("sha256:{}", hex::encode(&digest[..8]));
        let mut out = SecretSet::from_json(
            set,
            "file",
            None,
            &inner.path.display().to_string(),
            &plaintext,
        )?;
        if out.version().is_none() {
            out.set_version(fallback);
        }
        Ok(out)
    }
}

#[async_trait]
impl SecretProvider for AgeFileProvider {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn fetch(&self, set: &str) -> Result<SecretSet> {
        let this = self.clone();
        let set = set.to_owned();
        tokio::task::spawn_blocking(move || this.fetch_blocking(&set))
            .await
            .map_err(|e| Error::Decrypt {
                path: self.inner.path.clone(),
                reason: format!("decryption task failed: {e}"),
            })?
    }
}

/// Opens `path`, refuses it when group or others have any permission on it (checked
/// on the opened file, so it cannot be swapped in between), and returns its content.
fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    refuse_open_modes(path, &meta)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Malformed {
            source_name: path.display().to_string(),
            reason: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    Ok(buf)
}

fn refuse_open_modes(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Errors unless `path` has no group/other permission bits.
///
/// # Errors
/// [`Error::Io`] when it cannot be inspected, [`Error::InsecurePermissions`] when its
/// mode has any of `0o077`.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    refuse_open_modes(path, &meta)
}

fn decrypt(path: &Path, ciphertext: &[u8], unlock: &Unlock) -> Result<Zeroizing<Vec<u8>>> {
    let fail = |reason: String| Error::Decrypt {
        path: path.to_owned(),
        reason,
    };
    let start = ciphertext.trim_ascii_start();
    if !start.starts_with(b"age-encryption.org/")
        && !start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    {
        return Err(fail("not an age file (no age header)".into()));
    }
    let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(ciphertext))
        .map_err(|e| fail(describe_decrypt_error(&e, unlock)))?;
    let identities: Vec<Box<dyn age::Identity>> = match unlock {
        Unlock::Passphrase(pass) => {
            if !decryptor.is_scrypt() {
                return Err(fail(
                    "the file is encrypted to recipients, not a passphrase; configure secrets.file_identity"
                        .into(),
                ));
            }
            let copy = SecretString::from(pass.expose_secret().to_owned());
            vec![Box::new(age::scrypt::Identity::new(copy))]
        }
        Unlock::IdentityFile(id_path) => {
            let text = read_private_file(id_path)?;
            let file = age::IdentityFile::from_buffer(&text[..]).map_err(|e| Error::Decrypt {
                path: id_path.clone(),
                reason: format!("unreadable identity file: {}", e.kind()),
            })?;
            file.into_identities()
                .map_err(|e| Error::Decrypt {
                    path: id_path.clone(),
                    reason: format!("unusable identity file: {e}"),
                })?
                .into_iter()
                .map(|b| b as Box<dyn age::Identity>)
                .collect()
        }
    };
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| fail(describe_decrypt_error(&e, unlock)))?;
    let mut plain = Zeroizing::new(Vec::new());
    (&mut reader)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut plain)
        .map_err(|e| {
            fail(format!(
                "the payload does not authenticate (truncated or modified file): {e}"
            ))
        })?;
    if plain.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!(
            "plaintext larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(plain)
}

fn describe_decrypt_error(e: &age::DecryptError, unlock: &Unlock) -> String {
    match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => match unlock {
            Unlock::Passphrase(_) => "wrong passphrase".into(),
            Unlock::IdentityFile(_) => {
                "no identity in the identity file matches the file's recipients".into()
            }
        },
        age::DecryptError::KeyDecryptionFailed => "wrong passphrase or identity".into(),
        age::DecryptError::InvalidHeader => "not an age file, or its header is damaged".into(),
        age::DecryptError::InvalidMac => "the header was modified (MAC mismatch)".into(),
        age::DecryptError::UnknownFormat => "unknown age format version".into(),
        age::DecryptError::ExcessiveWork { required, target } => {
            format!("the passphrase work factor {required} is far above this machine's {target}")
        }
        age::DecryptError::Io(io) => format!("truncated or unreadable file ({})", io.kind()),
        other => format!("{other}"),
    }
}

/// Encrypts the JSON document at `plain` to `out` (written with mode 0600, atomically
/// through a temporary file beside it). The document must be a JSON object of string
/// fields; if it has `api_key` and `api_secret` their Kraken shape is validated first.
/// The plaintext file is left alone; see [`shred_file`].
///
/// # Errors
/// [`Error::Io`], [`Error::Malformed`], [`Error::InvalidField`], [`Error::Encrypt`].
pub fn encrypt_file(plain: &Path, out: &Path, to: &EncryptTo) -> Result<()> {
    let text = Zeroizing::new(read_limited(plain)?);
    let set = SecretSet::from_json("file", "file", None, &plain.display().to_string(), &text)?;
    if let (Some(k), Some(s)) = (set.get(API_KEY_FIELD), set.get(API_SECRET_FIELD)) {
        validate_kraken("file", k.expose_secret(), s.expose_secret())?;
    }
    let fail = |reason: String| Error::Encrypt {
        path: out.to_owned(),
        reason,
    };
    let encryptor = match to {
        EncryptTo::Passphrase {
            passphrase,
            work_factor,
        } => {
            if passphrase.expose_secret().is_empty() {
                return Err(fail("the passphrase is empty".into()));
            }
            let mut recipient = age::scrypt::Recipient::new(SecretString::from(
                passphrase.expose_secret().to_owned(),
            ));
            if let Some(n) = work_factor {
                if !(1..=30).contains(n) {
                    return Err(fail(format!("work factor {n} outside 1..=30")));
                }
                recipient.set_work_factor(*n);
            }
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| fail(e.to_string()))?
        }
        EncryptTo::Recipients(list) => {
            if list.is_empty() {
                return Err(fail("no recipients given".into()));
            }
            let parsed = list
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.trim().parse::<age::x25519::Recipient>().map_err(|_| {
                        fail(format!("recipient #{} is not an age1… X25519 key", i + 1))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| fail(e.to_string()))?
        }
    };

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .ok_or_else(|| fail("the output path has no file name".into()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        let mut writer = encryptor
            .wrap_output(file)
            .map_err(|e| Error::io(&tmp, e))?;
        writer.write_all(&text).map_err(|e| Error::io(&tmp, e))?;
        let file = writer.finish().map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Malformed {
            source_name: path.display().to_string(),
            reason: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    Ok(buf)
}

/// Overwrites a plaintext file with zeros, syncs it and removes it. On journaling or
/// copy-on-write file systems old blocks may survive; this is best effort.
///
/// # Errors
/// [`Error::Io`].
pub fn shred_file(path: &Path) -> Result<()> {
    let len = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all(&zeros[..n])
            .map_err(|e| Error::io(path, e))?;
        left -= n as u64;
    }
    file.sync_all().map_err(|e| Error::io(path, e))?;
    drop(file);
    fs::remove_file(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Credentials;
    use crate::secret::tests::sample_pair;

    fn write_plain(dir: &Path, doc: &str) -> PathBuf {
        let p = dir.join("plain.json");
        fs::write(&p, doc).unwrap();
        p
    }

    fn pass(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn doc(seed: u8) -> String {
        let (k, s) = sample_pair(seed);
        format!(r#"{{"api_key":"{k}","api_secret":"{s}"}}"#)
    }

    #[tokio::test]
    async fn passphrase_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let plain = write_plain(dir.path(), &doc(1));
        let out = dir.path().join("k.age");
        encrypt_file(
            &plain,
            &out,
            &EncryptTo::Passphrase {
                passphrase: pass("correct horse"),
                work_factor: Some(10),
            },
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let p = AgeFileProvider::new(&out, Unlock::Passphrase(pass("correct horse")));
        let set = p.fetch("kraken").await.unwrap();
        assert!(set.version().unwrap().starts_with("sha256:"));
        Credentials::from_set(&set).unwrap();

        let wrong = AgeFileProvider::new(&out, Unlock::Passphrase(pass("battery staple")));
        let err = wrong.fetch("kraken").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: cannot decrypt: wrong passphrase", out.display())
        );
    }

    #[tokio::test]
    async fn group_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plain = write_plain(dir.path(), &doc(2));
        let out = dir.path().join("k.age");
        encrypt_file(
            &plain,
            &out,
            &EncryptTo::Passphrase {
                passphrase: pass("pw"),
                work_factor: Some(10),
            },
        )
        .unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).unwrap();
        let err = AgeFileProvider::new(&out, Unlock::Passphrase(pass("pw")))
            .fetch("kraken")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InsecurePermissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[tokio::test]
    async fn truncated_and_bit_flipped_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let plain = write_plain(dir.path(), &doc(3));
        let out = dir.path().join("k.age");
        encrypt_file(
            &plain,
            &out,
            &EncryptTo::Passphrase {
                passphrase: pass("pw"),
                work_factor: Some(10),
            },
        )
        .unwrap();
        let good = fs::read(&out).unwrap();

        struct Case {
            name: &'static str,
            bytes: Vec<u8>,
            reason: &'static str,
        }
        let mut flipped_payload = good.clone();
        let last = flipped_payload.len() - 5;
        flipped_payload[last] ^= 0x01;
        let mut flipped_header = good.clone();
        flipped_header[40] ^= 0x01;
        let cases = [
            Case {
                name: "truncated payload",
                bytes: good[..good.len() - 10].to_vec(),
                reason: "truncated or modified",
            },
            Case {
                name: "truncated header",
                bytes: good[..30].to_vec(),
                reason: "cannot decrypt",
            },
            Case {
                name: "flipped payload",
                bytes: flipped_payload,
                reason: "truncated or modified",
            },
            Case {
                name: "flipped header",
                bytes: flipped_header,
                reason: "cannot decrypt",
            },
            Case {
                name: "empty",
                bytes: Vec::new(),
                reason: "cannot decrypt",
            },
            Case {
                name: "garbage",
                bytes: b"not an age file at all\n".to_vec(),
                reason: "not an age file",
            },
        ];
        for case in cases {
            let path = dir.path().join("bad.age");
            fs::write(&path, &case.bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = AgeFileProvider::new(&path, Unlock::Passphrase(pass("pw")))
                .fetch("kraken")
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Decrypt { .. }), "{}: {err}", case.name);
            assert!(
                err.to_string().contains(case.reason),
                "{}: {err}",
                case.name
            );
        }
    }

    #[tokio::test]
    async fn identity_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let id_path = dir.path().join("key.txt");
        fs::write(
            &id_path,
            format!("{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
        fs::set_permissions(&id_path, fs::Permissions::from_mode(0o600)).unwrap();
        let plain = write_plain(dir.path(), &doc(4).replace('}', r#","version":"v9"}"#));
        let out = dir.path().join("k.age");
        encrypt_file(
            &plain,
            &out,
            &EncryptTo::Recipients(vec![identity.to_public().to_string()]),
        )
        .unwrap();
        let p = AgeFileProvider::new(&out, Unlock::IdentityFile(id_path.clone()));
        let set = p.fetch("kraken").await.unwrap();
        assert_eq!(set.version(), Some("v9"));
        // A passphrase cannot open a recipients file.
        let err = AgeFileProvider::new(&out, Unlock::Passphrase(pass("x")))
            .fetch("kraken")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("configure secrets.file_identity"),
            "{err}"
        );
        // A group-readable identity file is refused, naming that file.
        fs::set_permissions(&id_path, fs::Permissions::from_mode(0o644)).unwrap();
        match p.fetch("kraken").await.unwrap_err() {
            Error::InsecurePermissions { path, mode } => {
                assert_eq!((path, mode), (id_path.clone(), 0o644));
            }
            other => panic!("unexpected {other}"),
        }
        fs::set_permissions(&id_path, fs::Permissions::from_mode(0o600)).unwrap();
        // Another identity cannot either.
        let other = age::x25519::Identity::generate();
        fs::write(&id_path, format!("{}\n", other.to_string().expose_secret())).unwrap();
        let err = p.fetch("kraken").await.unwrap_err();
        assert!(err.to_string().contains("no identity"), "{err}");
    }

    #[test]
    fn encrypt_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k.age");
        let bad_shape = write_plain(dir.path(), r#"{"api_key":"short","api_secret":"c2VjcmV0"}"#);
        let err = encrypt_file(&bad_shape, &out, &EncryptTo::Recipients(vec![])).unwrap_err();
        assert!(err.to_string().contains("field `api_key`"), "{err}");
        let ok = write_plain(dir.path(), &doc(5));
        let err =
            encrypt_file(&ok, &out, &EncryptTo::Recipients(vec!["age1nope".into()])).unwrap_err();
        assert!(err.to_string().contains("recipient #1"), "{err}");
        let err = encrypt_file(
            &ok,
            &out,
            &EncryptTo::Passphrase {
                passphrase: pass(""),
                work_factor: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn shred_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_plain(dir.path(), &doc(6));
        shred_file(&p).unwrap();
        assert!(!p.exists());
        assert!(matches!(shred_file(&p).unwrap_err(), Error::Io { .. }));
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn prop_garbage_never_panics_the_decryptor(
            prefix in prop_oneof![Just(&b"age-encryption.org/v1\n"[..]), Just(&b"-----BEGIN AGE ENCRYPTED FILE-----\n"[..]), Just(&b""[..])],
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(&tail);
            let unlock = Unlock::Passphrase(SecretString::from("pw"));
            let err = decrypt(Path::new("x.age"), &bytes, &unlock).unwrap_err();
            let is_decrypt = matches!(err, Error::Decrypt { .. });
            prop_assert!(is_decrypt);
        }
    }
}
