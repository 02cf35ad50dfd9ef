//! API tokens: bearer tokens with roles, stored as SHA-256 hashes in `<data_dir>/tokens.json`
//! (mode 0600), compared in constant time.
//!
//! A token is shown once, when it is created; only its hash is kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do. Higher roles include the lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also halt, complete checklist items and resume.
    Operator,
    /// Also configuration and secrets.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(AuthError::BadRole(other.to_owned())),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The operator's name, as journaled.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read or written.
    #[error("token store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file is not valid JSON of the expected shape.
    #[error("token store {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Unknown role name.
    #[error("unknown role {0:?}: expected viewer, operator or admin")]
    BadRole(String),
    /// Operator names must be short printable identifiers.
    #[error("invalid operator name {0:?}: use 1-64 letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    role: Role,
    sha256: String,
    created_at: String,
}

/// The set of valid tokens for one data directory.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    entries: Vec<(Entry, [u8; 32])>,
}

const FILE: &str = "tokens.json";

impl TokenStore {
    /// Opens (or starts empty) the store in `data_dir`.
    ///
    /// # Errors
    /// [`AuthError`] when the file is unreadable or corrupt.
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(FILE);
        let entries = match fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<Entry> =
                    serde_json::from_slice(&bytes).map_err(|e| AuthError::Corrupt {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                list.into_iter()
                    .map(|e| {
                        let mut hash = [0u8; 32];
                        hex::decode_to_slice(&e.sha256, &mut hash).map_err(|err| {
                            AuthError::Corrupt {
                                path: path.clone(),
                                message: format!("entry {:?}: bad sha256: {err}", e.name),
                            }
                        })?;
                        Ok((e, hash))
                    })
                    .collect::<Result<_, _>>()?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(AuthError::Io { path, source }),
        };
        Ok(Self { path, entries })
    }

    /// Whether any token of at least `role` exists.
    #[must_use]
    pub fn has_role(&self, role: Role) -> bool {
        self.entries.iter().any(|(e, _)| e.role >= role)
    }

    /// Number of tokens.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when no token exists.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Creates a token, stores its hash and returns the token (shown once).
    ///
    /// # Errors
    /// [`AuthError`] on a bad name or when the file cannot be written.
    pub fn create(&mut self, name: &str, role: Role, now: &str) -> Result<String, AuthError> {
        let name_ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
        if !name_ok {
            return Err(AuthError::BadName(name.to_owned()));
        }
        let mut raw = [0u8; 32];
        rand::rng().fill(&mut raw);
        let token = format!("gf_{}", hex::encode(raw));
        let hash = sha256(&token);
        self.entries.push((
            Entry {
                name: name.to_owned(),
                role,
                sha256: hex::encode(hash),
                created_at: now.to_owned(),
            },
            hash,
        ));
        self.save()?;
        Ok(token)
    }

    /// The identity behind a presented token, comparing against every stored hash in
    /// constant time.
    #[must_use]
    pub fn authenticate(&self, presented: &str) -> Option<Identity> {
        let hash = sha256(presented);
        let mut found: Option<&Entry> = None;
        for (entry, stored) in &self.entries {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(entry);
            }
        }
        found.map(|e| Identity {
            name: e.name.clone(),
            role: e.role,
        })
    }

    fn save(&self) -> Result<(), AuthError> {
        let io = |source| AuthError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let list: Vec<&Entry> = self.entries.iter().map(|(e, _)| e).collect();
        let json = serde_json::to_vec_pretty(&list).expect("entries serialise");
        let tmp = self.path.with_extension("json.tmp");
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }
}

fn sha256(token: &str) -> [u8; 32] {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_and_persist_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        assert!(store.is_empty());
        let op = store.create("alice", Role::Operator, "t").unwrap();
        let viewer = store.create("bob", Role::Viewer, "t").unwrap();
        assert_eq!(
            store.authenticate(&op),
            Some(Identity {
                name: "alice".into(),
                role: Role::Operator
            })
        );
        assert_eq!(store.authenticate(&viewer).unwrap().role, Role::Viewer);
        assert_eq!(store.authenticate("gf_nope"), None);
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            !text.contains(&op) && !text.contains(&op[3..]),
            "plaintext token stored"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "token file readable by others: {mode:o}");
        }
        let reopened = TokenStore::open(dir.path()).unwrap();
        assert_eq!(reopened.authenticate(&op).unwrap().name, "alice");
        assert!(reopened.has_role(Role::Operator));
        assert!(!reopened.has_role(Role::Admin));
    }

    #[test]
    fn bad_names_roles_and_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.create("", Role::Viewer, "t"),
            Err(AuthError::BadName(_))
        ));
        assert!(matches!(
            store.create("a b", Role::Viewer, "t"),
            Err(AuthError::BadName(_))
        ));
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .to_string()
                .contains("root")
        );
        fs::write(dir.path().join(FILE), "{not json").unwrap();
        let err = TokenStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
