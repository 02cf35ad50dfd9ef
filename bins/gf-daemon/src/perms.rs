//! File permissions of the daemon's private state: the data directory is 0700 and the
//! files in it (journal and its `-wal`/`-shm`, tokens, nonce, markers) at most 0600.
//!
//! [`private_umask`] makes everything the process creates private to its user;
//! [`secure_data_dir`] fixes data directories made before that was enforced. Neither adds a
//! permission bit; both only take group and other bits away.

use std::io;
use std::path::{Path, PathBuf};

/// Sets the process umask to 0o077, so every file and directory this process creates is
/// private to its user (SQLite's `-wal`/`-shm` follow the database file's mode). A no-op
/// where there is no umask.
pub fn private_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// One permission change [`secure_data_dir`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The directory or file.
    pub path: PathBuf,
    /// Its mode before (permission bits).
    pub from: u32,
    /// Its mode now.
    pub to: u32,
}

/// Creates `dir` if needed, then takes group and other permissions away from it (0700) and
/// from every regular file directly inside it (0600 for the usual 0644). Symbolic links
/// are not followed. Returns what changed, for the log.
///
/// # Errors
/// When the directory cannot be created or read, or a mode cannot be changed (e.g. a file
/// owned by another user): the daemon does not start on state it cannot make private.
pub fn secure_data_dir(dir: &Path) -> io::Result<Vec<Tightened>> {
    std::fs::create_dir_all(dir)?;
    let mut changed = Vec::new();
    #[cfg(unix)]
    {
        tighten(dir, &mut changed)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                tighten(&entry.path(), &mut changed)?;
            }
        }
    }
    Ok(changed)
}

#[cfg(unix)]
fn tighten(path: &Path, changed: &mut Vec<Tightened>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let from = meta.permissions().mode() & 0o7777;
    let to = from & !0o077;
    if to != from {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(to)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("making {} private (mode {to:o}): {e}", path.display()),
            )
        })?;
        changed.push(Tightened {
            path: path.to_owned(),
            from,
            to,
        });
    }
    Ok(())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_old_install_is_made_private_and_a_private_one_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, m) in [
            ("gal-friday.sqlite", 0o644),
            ("gal-friday.sqlite-wal", 0o644),
            ("gal-friday.sqlite-shm", 0o664),
            ("kraken.nonce", 0o644),
            ("tokens.json", 0o600),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, b"x").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        // A link to a file outside is not followed.
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        let changed = secure_data_dir(&dir).unwrap();
        assert_eq!(changed.len(), 5, "{changed:#?}");
        assert_eq!(mode(&dir), 0o700);
        for name in [
            "gal-friday.sqlite",
            "gal-friday.sqlite-wal",
            "gal-friday.sqlite-shm",
            "kraken.nonce",
            "tokens.json",
        ] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        assert_eq!(mode(&outside), 0o644);
        assert!(secure_data_dir(&dir).unwrap().is_empty());

        let fresh = root.path().join("a/b");
        secure_data_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
    }
}
