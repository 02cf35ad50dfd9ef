//! The data directory: one daemon at a time (an exclusive lock), and an identity that
//! outlives its journal.
//!
//! - `LOCK`: an advisory `flock` held for the life of the [`DataDir`] (the daemon's), with
//!   the holder's pid and start time inside. A second daemon on the same directory is
//!   refused with one line naming the holder. Readers (`journal verify`) take no lock.
//! - `IDENTITY`: a marker (mode `0600`) written at the first launch with the directory's
//!   random id, the same id the journal's `genesis` record carries and the witness is
//!   named by. A directory whose marker (or witness) says it has run before, but whose
//!   journal is missing, empty or another directory's, starts halted (`journal_missing`).
//! - `gal-friday.sqlite`: the journal (with `-wal` and `-shm` beside it while open).
//! - `archive/`: journals set aside by [`crate::journal::adopt`].
//!
//! The directory is created with mode `0700`.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::key::{private_file_options, sync_dir};

/// The journal database's file name.
pub const JOURNAL_FILE: &str = "gal-friday.sqlite";
/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";
/// The identity marker's name.
pub const IDENTITY_FILE: &str = "IDENTITY";
/// Where adopted-over journals are kept.
pub const ARCHIVE_DIR: &str = "archive";

/// The journal database inside `data_dir`.
#[must_use]
pub fn journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join(JOURNAL_FILE)
}

/// A data directory's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Random, 32 hex characters.
    pub id: String,
    /// When the directory was first launched.
    pub created_at: DateTime<Utc>,
}

impl Identity {
    /// A new random identity.
    #[must_use]
    pub fn generate(now: DateTime<Utc>) -> Self {
        let mut raw = [0u8; 16];
        rand::rng().fill(&mut raw);
        Self {
            id: hex::encode(raw),
            created_at: now,
        }
    }
}

fn dir_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::DataDir {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// An open data directory. Holds the lock (when opened with [`DataDir::open`]) until
/// dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    lock: Option<File>,
    identity: Option<Identity>,
}

impl DataDir {
    /// Creates the directory if needed (mode `0700`), takes its lock (writing this
    /// process's pid and `started_at` into it) and reads its identity marker.
    ///
    /// # Errors
    /// [`Error::DataDirLocked`] naming the holder when another process holds the lock;
    /// [`Error::DataDir`] when the directory, the lock or the marker cannot be used.
    pub fn open(root: &Path, started_at: DateTime<Utc>) -> Result<Self, Error> {
        if !root.is_dir() {
            std::fs::create_dir_all(root).map_err(|e| dir_error(root, e.to_string()))?;
        }
        let root = root
            .canonicalize()
            .map_err(|e| dir_error(root, e.to_string()))?;
        // Only its owner may look inside (an older version, or a tool, may have made it
        // with the umask's 0755).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&root)
                .map_err(|e| dir_error(&root, e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| dir_error(&root, format!("cannot make it private (0700): {e}")))?;
            }
        }
        let lock_path = root.join(LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut lock = opts
            .open(&lock_path)
            .map_err(|e| dir_error(&lock_path, e.to_string()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::DataDirLocked {
                    path: root,
                    holder: if holder.is_empty() {
                        "a process that has not written its pid yet".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(dir_error(&lock_path, format!("cannot lock: {e}")));
            }
        }
        let stamp = format!(
            "pid {} started {}\n",
            std::process::id(),
            started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        (|| -> std::io::Result<()> {
            lock.set_len(0)?;
            lock.rewind()?;
            lock.write_all(stamp.as_bytes())?;
            lock.sync_all()
        })()
        .map_err(|e| dir_error(&lock_path, e.to_string()))?;
        let identity = read_identity(&root)?;
        Ok(Self {
            root,
            lock: Some(lock),
            identity,
        })
    }

    /// Looks at an existing directory without locking or creating anything (for
    /// `journal verify`, which may run beside a daemon).
    ///
    /// # Errors
    /// [`Error::DataDir`] when it does not exist or its marker cannot be read.
    pub fn inspect(root: &Path) -> Result<Self, Error> {
        let root = root
            .canonicalize()
            .map_err(|e| dir_error(root, e.to_string()))?;
        let identity = read_identity(&root)?;
        Ok(Self {
            root,
            lock: None,
            identity,
        })
    }

    /// The directory (canonical).
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The journal database in it.
    #[must_use]
    pub fn journal_path(&self) -> PathBuf {
        journal_path(&self.root)
    }

    /// The identity marker's content, when there is one.
    #[must_use]
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Whether this handle holds the directory's lock.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Writes the identity marker (mode `0600`, atomically).
    ///
    /// # Errors
    /// [`Error::DataDir`] when it cannot be written.
    pub(crate) fn write_identity(&mut self, identity: &Identity) -> Result<(), Error> {
        let path = self.root.join(IDENTITY_FILE);
        let text =
            serde_json::to_vec_pretty(identity).map_err(|e| dir_error(&path, e.to_string()))?;
        let tmp = self.root.join(format!(".{IDENTITY_FILE}.tmp"));
        (|| -> std::io::Result<()> {
            let mut f = private_file_options().open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })()
        .map_err(|e| dir_error(&path, e.to_string()))?;
        sync_dir(&self.root);
        self.identity = Some(identity.clone());
        Ok(())
    }

    /// Refuses `path` (the key file or the witness directory) when it lies inside this
    /// data directory: whoever can rewrite the data directory must not reach them.
    ///
    /// # Errors
    /// [`Error::DataDir`] naming the setting.
    pub fn refuse_inside(&self, setting: &str, path: &Path) -> Result<(), Error> {
        let resolved = resolve_existing_prefix(path);
        if resolved.starts_with(&self.root) {
            return Err(dir_error(
                &self.root,
                format!(
                    "{setting} {} is inside the data directory; it must live elsewhere (the journal key and witness protect the data directory, so they cannot be in it)",
                    path.display()
                ),
            ));
        }
        Ok(())
    }
}

/// `path` with its longest existing prefix canonicalised (the rest appended as is).
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_owned(), |d| d.join(path))
    };
    let mut tail = Vec::new();
    let mut cur = absolute.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.file_name(), cur.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name.to_owned());
                cur = parent;
            }
            _ => return absolute,
        }
    }
}

fn read_identity(root: &Path) -> Result<Option<Identity>, Error> {
    let path = root.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.is_empty() => Err(dir_error(&path, "identity marker is empty")),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| dir_error(&path, format!("unreadable identity marker: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(dir_error(&path, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let first = DataDir::open(&root, Utc::now()).unwrap();
        assert!(first.is_locked());
        match DataDir::open(&root, Utc::now()).unwrap_err() {
            Error::DataDirLocked { holder, .. } => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("unexpected {other}"),
        }
        // Readers need no lock.
        assert!(!DataDir::inspect(&root).unwrap().is_locked());
        drop(first);
        DataDir::open(&root, Utc::now()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
    }

    #[test]
    fn key_and_witness_inside_the_data_dir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let d = DataDir::open(&root, Utc::now()).unwrap();
        let err = d
            .refuse_inside("journal.key_file", &root.join("keys/journal.key"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("journal.key_file") && err.contains("inside"),
            "{err}"
        );
        d.refuse_inside("journal.key_file", &dir.path().join("keys/journal.key"))
            .unwrap();
    }

    #[test]
    fn identity_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DataDir::open(dir.path(), Utc::now()).unwrap();
        assert!(d.identity().is_none());
        let id = Identity::generate(Utc::now());
        d.write_identity(&id).unwrap();
        drop(d);
        assert_eq!(DataDir::inspect(dir.path()).unwrap().identity(), Some(&id));
        std::fs::write(dir.path().join(IDENTITY_FILE), "").unwrap();
        assert!(DataDir::inspect(dir.path()).is_err());
    }
}
