//! API tokens: bearer tokens with roles, stored as SHA-256 hashes in `<data_dir>/tokens.json`
//! (mode 0600), compared in constant time.
//!
//! A token is shown once, when it is created; only its hash is kept.
//!
//! The running daemon follows the file: [`watch`] reloads it when it changes (checked every
//! second) and SIGHUP reloads it at once, so a token created or revoked with
//! `gf-daemon token create|revoke` works, or stops working, without a restart. A file that
//! cannot be read or parsed keeps the tokens already loaded (and logs an error); a file
//! that is gone revokes every token.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do. Viewer, operator and admin each include the one before; a trader
/// stands apart ([`Role::includes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also halt, complete checklist items and resume.
    Operator,
    /// Also configuration and secrets.
    Admin,
    /// An external strategy: places and cancels its own orders and reads them, its fills,
    /// the halt status and the conditions — nothing else. It may not halt, resume or
    /// complete checklist items (operators do), and no other role may place orders.
    Trader,
}

impl Role {
    /// Whether a token of this role may do what `needed` may: viewer ⊂ operator ⊂ admin,
    /// and trader only what a trader may.
    #[must_use]
    pub fn includes(self, needed: Role) -> bool {
        match needed {
            Role::Viewer => matches!(self, Role::Viewer | Role::Operator | Role::Admin),
            Role::Operator => matches!(self, Role::Operator | Role::Admin),
            Role::Admin => self == Role::Admin,
            Role::Trader => self == Role::Trader,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Trader => "trader",
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
            "trader" => Ok(Role::Trader),
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
    #[error("unknown role {0:?}: expected viewer, trader, operator or admin")]
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

/// The token file's name inside the data directory.
pub const FILE: &str = "tokens.json";

/// What a reload changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// Tokens valid now.
    pub tokens: usize,
    /// Tokens that were not valid before.
    pub added: usize,
    /// Tokens that are no longer valid.
    pub removed: usize,
}

fn read_entries(path: &Path) -> Result<Vec<(Entry, [u8; 32])>, AuthError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuthError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let list: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|e| AuthError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    list.into_iter()
        .map(|e| {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&e.sha256, &mut hash).map_err(|err| AuthError::Corrupt {
                path: path.to_owned(),
                message: format!("entry {:?}: bad sha256: {err}", e.name),
            })?;
            Ok((e, hash))
        })
        .collect()
}

impl TokenStore {
    /// Opens (or starts empty) the store in `data_dir`.
    ///
    /// # Errors
    /// [`AuthError`] when the file is unreadable or corrupt.
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(FILE);
        let entries = read_entries(&path)?;
        Ok(Self { path, entries })
    }

    /// The token file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file: tokens created since are valid, tokens removed from it are not
    /// (a missing file revokes every token). On error nothing changes.
    ///
    /// # Errors
    /// [`AuthError`] when the file is unreadable or corrupt; the loaded tokens stay.
    pub fn reload(&mut self) -> Result<Reloaded, AuthError> {
        let entries = read_entries(&self.path)?;
        Ok(self.replace(entries))
    }

    fn replace(&mut self, entries: Vec<(Entry, [u8; 32])>) -> Reloaded {
        let had = |hash: &[u8; 32], list: &[(Entry, [u8; 32])]| list.iter().any(|(_, h)| h == hash);
        let added = entries
            .iter()
            .filter(|(_, h)| !had(h, &self.entries))
            .count();
        let removed = self
            .entries
            .iter()
            .filter(|(_, h)| !had(h, &entries))
            .count();
        self.entries = entries;
        Reloaded {
            tokens: self.entries.len(),
            added,
            removed,
        }
    }

    /// Revokes every token of `name`: re-reads the file (so tokens others created since
    /// stay), removes them and saves. Returns how many were revoked.
    ///
    /// # Errors
    /// [`AuthError`] when the file cannot be read, parsed or written.
    pub fn revoke(&mut self, name: &str) -> Result<usize, AuthError> {
        self.reload()?;
        let before = self.entries.len();
        self.entries.retain(|(e, _)| e.name != name);
        let revoked = before - self.entries.len();
        if revoked > 0 {
            self.save()?;
        }
        Ok(revoked)
    }

    /// Whether any token of at least `role` exists.
    #[must_use]
    pub fn has_role(&self, role: Role) -> bool {
        self.entries.iter().any(|(e, _)| e.role.includes(role))
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
        // Start from the file, not from memory: tokens another process (the CLI, the
        // daemon) wrote since this store was opened must survive this save.
        self.reload()?;
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

/// Reloads a shared store from its file. The file is read outside the lock, so requests
/// keep authenticating meanwhile; on error the loaded tokens stay.
///
/// # Errors
/// [`AuthError`] when the file is unreadable or corrupt.
pub fn reload_shared(store: &RwLock<TokenStore>) -> Result<Reloaded, AuthError> {
    let path = store.read().path.clone();
    let entries = read_entries(&path)?;
    Ok(store.write().replace(entries))
}

/// Reloads `store` and logs the outcome, naming what asked for it (`SIGHUP`, `file
/// changed`). Never fails: a bad file is logged and the loaded tokens stay.
pub fn reload_logged(store: &RwLock<TokenStore>, why: &str) -> Option<Reloaded> {
    match reload_shared(store) {
        Ok(r) => {
            tracing::info!(
                trigger = why,
                tokens = r.tokens,
                added = r.added,
                removed = r.removed,
                "API tokens reloaded"
            );
            if r.tokens == 0 {
                tracing::warn!("the token file holds no token: every API request is refused");
            }
            Some(r)
        }
        Err(e) => {
            tracing::error!(trigger = why, cause = %e, "API tokens not reloaded; the loaded tokens stay valid");
            None
        }
    }
}

/// What identifies one version of a file: length, modification time and inode. The store
/// saves by rename, so every save changes the inode even within one mtime tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// How often [`watch`] looks at the token file.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Reloads `store` whenever its file changes (looked at every `every`), until `shutdown`.
pub async fn watch(store: Arc<RwLock<TokenStore>>, every: Duration, shutdown: CancellationToken) {
    let path = store.read().path.clone();
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        // Stamp before reading: a save racing the read changes the stamp again, so the
        // next look reloads once more.
        let now = stamp(&path);
        if now != seen {
            seen = now;
            reload_logged(&store, "file changed");
        }
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

    #[test]
    fn reload_follows_other_writers_and_keeps_tokens_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = RwLock::new(TokenStore::open(dir.path()).unwrap());
        let op = daemon.write().create("alice", Role::Operator, "t").unwrap();
        // The CLI, another process: its store was opened before the daemon's token existed.
        let mut cli = TokenStore::open(dir.path()).unwrap();
        let viewer = cli.create("bob", Role::Viewer, "t").unwrap();
        assert!(daemon.read().authenticate(&viewer).is_none());
        let r = reload_shared(&daemon).unwrap();
        assert_eq!(
            r,
            Reloaded {
                tokens: 2,
                added: 1,
                removed: 0
            }
        );
        assert_eq!(daemon.read().authenticate(&viewer).unwrap().name, "bob");
        assert_eq!(daemon.read().authenticate(&op).unwrap().name, "alice");

        // Creating in one store never drops what the other wrote.
        let admin = daemon.write().create("carol", Role::Admin, "t").unwrap();
        assert_eq!(cli.revoke("bob").unwrap(), 1);
        assert!(
            cli.authenticate(&admin).is_some(),
            "revoke re-read the file"
        );
        assert_eq!(reload_shared(&daemon).unwrap().removed, 1);
        assert!(daemon.read().authenticate(&viewer).is_none());
        assert!(daemon.read().authenticate(&admin).is_some());

        // A half-written or hand-broken file: the loaded tokens stay, nothing opens.
        fs::write(dir.path().join(FILE), "[{\"name\": \"mallory\"").unwrap();
        assert!(matches!(
            reload_shared(&daemon),
            Err(AuthError::Corrupt { .. })
        ));
        assert!(reload_logged(&daemon, "test").is_none());
        assert_eq!(daemon.read().len(), 2);
        assert!(daemon.read().authenticate(&op).is_some());
        assert!(daemon.read().authenticate("").is_none());

        // A deleted file revokes everything.
        fs::remove_file(dir.path().join(FILE)).unwrap();
        assert_eq!(reload_shared(&daemon).unwrap().tokens, 0);
        assert!(daemon.read().authenticate(&op).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn watch_reloads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RwLock::new(TokenStore::open(dir.path()).unwrap()));
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(watch(store.clone(), WATCH_EVERY, shutdown.clone()));
        // Paused time: each advance lets the watcher take one look, no real waiting. Two
        // looks before the change: the watcher has seen the file as it was.
        let look = || async {
            tokio::time::advance(WATCH_EVERY).await;
            tokio::task::yield_now().await;
        };
        look().await;
        look().await;
        let mut other = TokenStore::open(dir.path()).unwrap();
        let token = other.create("dave", Role::Viewer, "t").unwrap();
        let mut looks = 0;
        while store.read().authenticate(&token).is_none() {
            looks += 1;
            assert!(looks < 5, "the watcher never reloaded");
            look().await;
        }
        // Revoked by another process: refused after the next look.
        assert_eq!(other.revoke("dave").unwrap(), 1);
        let mut looks = 0;
        while store.read().authenticate(&token).is_some() {
            looks += 1;
            assert!(looks < 5, "the watcher never saw the revocation");
            look().await;
        }
        shutdown.cancel();
        watcher.await.unwrap();
    }
}
