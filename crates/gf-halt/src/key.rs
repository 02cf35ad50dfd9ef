//! The journal key: 32 secret bytes that key the journal's HMAC-SHA256 chain.
//!
//! The key never lives in the data directory, so someone who can rewrite the data
//! directory cannot recompute the chain. Paper and live mode read it from a key file
//! elsewhere (by default `$XDG_CONFIG_HOME/gal-friday/journal.key`), created at the first
//! launch as 64 hex characters with mode `0600` in a `0700` directory. A key file that
//! group or others may read, or that does not hold exactly 32 bytes, is refused.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit};
use rand::RngExt as _;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::Error;

/// Key length in bytes.
pub const KEY_LEN: usize = 32;

/// The journal key. Its bytes never appear in `Debug` output and are zeroed on drop.
#[derive(Clone)]
pub struct JournalKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalKey(..)")
    }
}

fn key_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::KeyFile {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl JournalKey {
    /// A key from its bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A fresh random key (in-memory journals, tests).
    #[must_use]
    pub fn random() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// The HMAC-SHA256 state keyed with this key.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.bytes[..])
            .expect("HMAC accepts keys of any length")
    }

    /// Reads the key file at `path`.
    ///
    /// # Errors
    /// [`Error::KeyFile`] when it is missing, unreadable, readable or writable by group or
    /// others, or not 64 hex characters.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let meta = std::fs::metadata(path).map_err(|e| key_error(path, e.to_string()))?;
        if !meta.is_file() {
            return Err(key_error(path, "not a regular file"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(key_error(
                    path,
                    format!(
                        "mode {mode:04o} lets group or others use it; it must be 0600 (chmod 600)"
                    ),
                ));
            }
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?,
        );
        Self::parse_hex(&text).map_err(|reason| key_error(path, reason))
    }

    /// A key handed over by a secret provider (live mode: the field `journal_key` of the
    /// credentials' secret set), as 64 hex characters. `source` names where it came from
    /// in errors (e.g. `secret set kraken, field journal_key`); the value never appears.
    ///
    /// # Errors
    /// [`Error::KeyFile`] naming `source` when the text is not 64 hex characters.
    pub fn from_hex(source: &str, text: &str) -> Result<Self, Error> {
        Self::parse_hex(text).map_err(|reason| key_error(Path::new(source), reason))
    }

    fn parse_hex(text: &str) -> Result<Self, String> {
        let hex_text = text.trim();
        if hex_text.len() != 2 * KEY_LEN {
            return Err(format!(
                "expected {} hex characters ({KEY_LEN} bytes), found {}",
                2 * KEY_LEN,
                hex_text.len()
            ));
        }
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(hex_text, &mut bytes).map_err(|_| "not hexadecimal".to_owned())?;
        Ok(Self::from_bytes(bytes))
    }

    /// Reads the key file at `path`, creating it first (32 random bytes, hex, mode
    /// `0600`; its directory `0700` when created here) when there is none. Safe against
    /// two processes creating it at once: the file appears whole or not at all.
    ///
    /// # Errors
    /// As [`JournalKey::load`], and [`Error::KeyFile`] when it cannot be created.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(key_error(path, e.to_string())),
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        create_private_dir(&dir).map_err(|e| key_error(path, e))?;
        let key = Self::random();
        let tmp = dir.join(format!(
            ".journal-key.{}.{:016x}.tmp",
            std::process::id(),
            rand::rng().random::<u64>()
        ));
        let written = (|| -> std::io::Result<()> {
            let mut f = private_file_options().open(&tmp)?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(&key.bytes[..])));
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            // hard_link never replaces: a key another process created first wins.
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        written.map_err(|e| key_error(path, format!("cannot create: {e}")))?;
        sync_dir(&dir);
        Self::load(path)
    }
}

/// Creates `dir` (and missing parents); the directory itself gets mode `0700` when it is
/// created here. An existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Open options for a new file only its owner may read (`0600`), truncating.
pub(crate) fn private_file_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o
}

/// Makes a rename or link in `dir` durable (best effort: not every platform can).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provider_key_is_64_hex_and_errors_name_the_source_not_the_value() {
        let hex_key = "ab".repeat(32);
        let a =
            super::JournalKey::from_hex("secret set kraken, field journal_key", &hex_key).unwrap();
        let b = super::JournalKey::from_bytes([0xab; 32]);
        assert_eq!(a.bytes[..], b.bytes[..]);
        let err = super::JournalKey::from_hex("secret set kraken, field journal_key", "abc123")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field journal_key") && err.contains("64 hex"),
            "{err}"
        );
        assert!(!err.contains("abc123"), "{err}");
        let err = super::JournalKey::from_hex("s", &"zz".repeat(32))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not hexadecimal"), "{err}");
    }

    use super::*;

    #[test]
    fn created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/gal-friday/journal.key");
        let a = JournalKey::load_or_create(&path).unwrap();
        let b = JournalKey::load_or_create(&path).unwrap();
        assert_eq!(a.bytes[..], b.bytes[..]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert_eq!(format!("{a:?}"), "JournalKey(..)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dmode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dmode, 0o700);
        }
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_and_bad_lengths_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.key");
        JournalKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = JournalKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("0640") && err.contains("journal.key"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "abcd\n").unwrap();
        let err = JournalKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("expected 64 hex characters"), "{err}");
        std::fs::write(&path, format!("{}\n", "zz".repeat(32))).unwrap();
        let err = JournalKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("not hexadecimal"), "{err}");
    }
}
