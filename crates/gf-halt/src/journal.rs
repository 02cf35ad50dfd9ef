//! The persistent, append-only journal (SQLite, WAL, `synchronous=FULL`), chained with
//! HMAC-SHA256 under a key kept outside the data directory and witnessed outside it.
//!
//! **The chain.** Every record carries `mac = HMAC-SHA256(key, prev_mac ‖ id ‖ ts ‖ kind ‖
//! actor ‖ detail ‖ snapshot)` over length-prefixed fields, and `prev_mac` = the previous
//! record's MAC (64 zeros for the first). Ids are consecutive from 1, and a one-row
//! `journal_head` table remembers the last id and MAC. Without the key ([`JournalKey`])
//! nobody can recompute a valid chain: an edited row, a chain recomputed with plain
//! SHA-256 or under another key, a row deleted in the middle or from the end is detected
//! by [`Journal::verify`], which names the first record that fails. SQLite triggers refuse
//! `UPDATE` and `DELETE` on the journal table; they stop mistakes, the MACs detect
//! deliberate tampering.
//!
//! **Transactions.** [`Journal::append_batch`] writes several records and the state
//! snapshot in one SQLite transaction: a halt's trigger, state change and snapshot are on
//! disk together or not at all.
//!
//! **The data directory.** [`Journal::open_data_dir`] binds the journal to a
//! [`DataDir`]: the first launch writes a `genesis` record with the directory's identity
//! (and the directory's `IDENTITY` marker); later launches check that the journal is that
//! directory's own. After every commit the head (id + MAC) is written to the [`Witness`]
//! outside the data directory, and [`Journal::verify`] compares: a witness ahead of the
//! journal, or a MAC at the witnessed id that differs, is a rollback. A journal missing,
//! empty or replaced in a directory that has run before fails with [`Error::Missing`].
//! Once a verification has failed, the witness is no longer advanced, so the problem is
//! found again at every start until an administrator runs [`adopt`].
//!
//! **Risk snapshots** are chained records too (kind [`RISK_SNAPSHOT`]); the latest one
//! restores drawdown and peak equity.
//!
//! All methods block on SQLite (a journal write waits for `fsync`); async callers should
//! use `tokio::task::spawn_blocking`, as the coordinator does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::Mac as _;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use gf_core::{HaltBehaviour, HaltSource, SharedClock};

use crate::checklist::ItemSpec;
use crate::datadir::{ARCHIVE_DIR, DataDir, Identity};
use crate::error::{Error, validate_operator};
use crate::key::{JournalKey, create_private_dir};
use crate::machine::{Machine, Trigger};
use crate::witness::{UnjournaledHalt, Witness, WitnessRecord, witnesses_of_path};

/// `prev_mac` of the first record.
pub const GENESIS_MAC: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Kind of the first record of a data directory's journal.
pub const GENESIS: &str = "genesis";
/// Kind of a gf-risk snapshot record.
pub const RISK_SNAPSHOT: &str = "risk_snapshot";
/// Kind of the record an adoption starts a journal with.
pub const ADOPTED: &str = "journal_adopted";

/// The journal format this version writes (stored in `journal_meta`).
pub const FORMAT: &str = "2";

/// Domain separation for the MAC (changes with the format).
const MAC_DOMAIN: &[u8] = b"gal-friday journal v2";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    detail    TEXT NOT NULL,
    snapshot  TEXT,
    prev_mac  TEXT NOT NULL,
    mac       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_kind ON journal (kind, id);
CREATE TABLE IF NOT EXISTS journal_head (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    mac     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO journal_meta (key, value) VALUES ('format', '2');
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
";

/// Whether every table, index and trigger [`SCHEMA`] creates and its format row exist,
/// so that opening need not run it (one query instead of seven statements to parse).
/// When anything is missing — a trigger dropped, say — the schema runs and restores it.
fn schema_complete(conn: &Connection) -> Result<bool, Error> {
    let objects: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('journal', 'journal_by_kind',
         'journal_head', 'journal_meta', 'journal_no_update', 'journal_no_delete')",
        )?
        .query_row([], |r| r.get(0))?;
    if objects != 6 {
        return Ok(false);
    }
    let format: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM journal_meta WHERE key = 'format'")?
        .query_row([], |r| r.get(0))?;
    Ok(format == 1)
}

/// One record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// What happened.
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// Structured detail.
    pub detail: serde_json::Value,
}

impl Entry {
    /// An entry.
    pub fn new(
        kind: impl Into<String>,
        actor: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            kind: kind.into(),
            actor: actor.into(),
            detail,
        }
    }
}

/// One journal record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Consecutive id, from 1.
    pub id: i64,
    /// When it was written, from the coordinator's clock; `None` when the stored text is
    /// not a timestamp (the row was tampered with; see [`JournalRecord::ts_malformed`]).
    pub ts: Option<DateTime<Utc>>,
    /// The stored timestamp text, only when it does not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_malformed: Option<String>,
    /// What happened (`genesis`, `halt_triggered`, `state_changed`, `checklist_step`,
    /// `risk_snapshot`, … or an API mutation kind chosen by the daemon).
    pub kind: String,
    /// Who did it (an operator, `auto:<condition>`, `system`).
    pub actor: String,
    /// Structured detail. A stored detail that is not JSON is returned as a JSON string.
    pub detail: serde_json::Value,
    /// The previous record's MAC.
    pub prev_mac: String,
    /// This record's MAC.
    pub mac: String,
}

/// Result of a successful [`Journal::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalSummary {
    /// Records checked.
    pub records: u64,
    /// Id of the last record (0 when empty).
    pub head_id: i64,
    /// MAC of the last record ([`GENESIS_MAC`] when empty).
    pub head_mac: String,
    /// The data directory's identity, for a journal bound to one.
    pub data_dir_id: Option<String>,
    /// The record id the witness holds (`None`: no witness, or none yet).
    pub witnessed_id: Option<i64>,
    /// A halt the witness says was in force but could not be journaled.
    pub unjournaled_halt: Option<UnjournaledHalt>,
}

type HeadObserver = Arc<dyn Fn(i64) + Send + Sync>;
type FailureHook = Arc<dyn Fn(&str) + Send + Sync>;

struct Inner {
    conn: Connection,
    /// Last committed (id, MAC).
    head: (i64, String),
    /// A halt in force that could not be journaled (kept in the witness until a snapshot
    /// is committed).
    pending_halt: Option<UnjournaledHalt>,
    /// Once a verification failed, the witness keeps the last head it saw.
    witness_frozen: bool,
}

struct Binding {
    /// Holds the data directory's lock for the journal's lifetime.
    dir: DataDir,
    identity: Identity,
    witness: Witness,
    /// Evidence that the directory has run before (its marker, a witness).
    ran_before: Option<String>,
}

/// The journal database. Cheap to share behind an `Arc`; calls are serialised internally.
pub struct Journal {
    inner: Mutex<Inner>,
    clock: SharedClock,
    key: JournalKey,
    path: PathBuf,
    read_only: bool,
    binding: Option<Binding>,
    head_id: AtomicI64,
    write_failure: Mutex<Option<String>>,
    witness_problem: Mutex<Option<String>>,
    head_observer: Mutex<Option<HeadObserver>>,
    failure_hook: Mutex<Option<FailureHook>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::too_many_arguments)]
fn mac_state(
    key: &JournalKey,
    prev_mac: &str,
    id: i64,
    ts: &str,
    kind: &str,
    actor: &str,
    detail: &str,
    snapshot: Option<&str>,
) -> hmac::Hmac<sha2::Sha256> {
    let mut m = key.mac();
    let mut field = |bytes: &[u8]| {
        m.update(&(bytes.len() as u64).to_le_bytes());
        m.update(bytes);
    };
    field(MAC_DOMAIN);
    field(prev_mac.as_bytes());
    field(&id.to_le_bytes());
    field(ts.as_bytes());
    field(kind.as_bytes());
    field(actor.as_bytes());
    field(detail.as_bytes());
    match snapshot {
        Some(s) => {
            field(b"1");
            field(s.as_bytes());
        }
        None => field(b"0"),
    }
    m
}

fn parse_ts(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn read_head(conn: &Connection) -> Result<Option<(i64, String)>, rusqlite::Error> {
    conn.prepare_cached("SELECT last_id, mac FROM journal_head WHERE one = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Whether the database holds a journal of the first, unkeyed format (a `hash` column).
fn is_legacy(conn: &Connection) -> Result<bool, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT name FROM pragma_table_info('journal')")?;
    let cols: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(cols.iter().any(|c| c == "hash") && !cols.iter().any(|c| c == "mac"))
}

/// Restricts the database and its WAL files to the owner (`0600`).
fn restrict_files(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut names = vec![path.to_owned()];
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            names.push(PathBuf::from(p));
        }
        for p in names {
            if p.exists() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn missing(reason: String) -> Error {
    Error::Missing { reason }
}

impl Journal {
    fn open_conn(
        path: &Path,
        clock: SharedClock,
        key: JournalKey,
        read_only: bool,
    ) -> Result<Self, Error> {
        let memory = path == Path::new(":memory:");
        let conn = if read_only {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?
        } else {
            if !memory && !path.exists() {
                // Created by us with mode 0600, so SQLite's WAL files inherit it.
                crate::key::private_file_options()
                    .truncate(false)
                    .open(path)
                    .map_err(|e| {
                        Error::Database(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                            Some(format!("cannot create {}: {e}", path.display())),
                        ))
                    })?;
            }
            Connection::open(path)?
        };
        Self::over_conn(conn, path, clock, key, read_only)
    }

    /// The journal over an open connection to `path` (`:memory:` for an in-memory one).
    fn over_conn(
        conn: Connection,
        path: &Path,
        clock: SharedClock,
        key: JournalKey,
        read_only: bool,
    ) -> Result<Self, Error> {
        let memory = path == Path::new(":memory:");
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let legacy_path = || Error::LegacyFormat {
            path: path.to_owned(),
        };
        if read_only {
            if is_legacy(&conn)? {
                return Err(legacy_path());
            }
        } else {
            // `journal_mode` answers with a row; an in-memory database answers "memory".
            let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            if is_legacy(&conn)? {
                return Err(legacy_path());
            }
            if !schema_complete(&conn)? {
                conn.execute_batch(SCHEMA)?;
            }
            if !memory {
                restrict_files(path);
            }
        }
        let head = if read_only
            && conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'journal_head'",
                [],
                |r| r.get::<_, i64>(0),
            )? == 0
        {
            None
        } else {
            read_head(&conn)?
        };
        let head = head.unwrap_or((0, GENESIS_MAC.to_owned()));
        Ok(Self {
            head_id: AtomicI64::new(head.0),
            inner: Mutex::new(Inner {
                conn,
                head,
                pending_halt: None,
                witness_frozen: false,
            }),
            clock,
            key,
            path: path.to_owned(),
            read_only,
            binding: None,
            write_failure: Mutex::new(None),
            witness_problem: Mutex::new(None),
            head_observer: Mutex::new(None),
            failure_hook: Mutex::new(None),
        })
    }

    /// Opens (creating if needed) a journal at `path` that belongs to no data directory:
    /// chained under `key`, without genesis record, identity or witness (research,
    /// backtests, tests). The path `:memory:` gives an in-memory journal.
    ///
    /// # Errors
    /// [`Error::Database`] when the file cannot be opened or the schema created;
    /// [`Error::LegacyFormat`] for a journal of the first, unkeyed format.
    pub fn open(path: &Path, clock: SharedClock, key: JournalKey) -> Result<Self, Error> {
        Self::open_conn(path, clock, key, false)
    }

    /// A journal over a connection the caller opened (the schema is created when
    /// missing), bound to no data directory, as [`Journal::open`] gives. For fuzzing the
    /// reader over databases built in memory; with [`Journal::into_connection`] a harness
    /// can tamper with the rows between two openings.
    ///
    /// # Errors
    /// As [`Journal::open`].
    #[doc(hidden)]
    pub fn from_connection(
        conn: Connection,
        clock: SharedClock,
        key: JournalKey,
    ) -> Result<Self, Error> {
        Self::over_conn(conn, Path::new(":memory:"), clock, key, false)
    }

    /// The journal's connection, for a harness that tampers with the rows (see
    /// [`Journal::from_connection`]).
    #[doc(hidden)]
    #[must_use]
    pub fn into_connection(self) -> Connection {
        self.inner.into_inner().conn
    }

    /// An in-memory journal under a random key (backtests and research).
    ///
    /// # Errors
    /// [`Error::Database`] when SQLite cannot set it up.
    pub fn in_memory(clock: SharedClock) -> Result<Self, Error> {
        Self::open(Path::new(":memory:"), clock, JournalKey::random())
    }

    /// The clock the journal stamps its records with (the coordinator's default clock).
    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Opens the journal of a data directory, bound to its identity and its witness under
    /// `witness_dir`. With a locked `dir` ([`DataDir::open`]) it is the daemon's journal:
    /// created if needed, and on the directory's first launch it starts with a `genesis`
    /// record and the directory's identity marker is written. With an unlocked one
    /// ([`DataDir::inspect`]) it is opened read-only and nothing is created.
    ///
    /// A journal that is missing or empty in a directory that has run before, or that is
    /// another directory's, is still opened (so that the daemon can start halted); its
    /// [`Journal::verify`] fails with [`Error::Missing`]. Read-only, a missing journal is
    /// that error at once.
    ///
    /// # Errors
    /// [`Error::DataDir`] when `witness_dir` lies inside the data directory or the marker
    /// cannot be written; [`Error::Witness`]; [`Error::Missing`] (read-only only);
    /// [`Error::Database`]; [`Error::LegacyFormat`].
    pub fn open_data_dir(
        dir: DataDir,
        clock: SharedClock,
        key: JournalKey,
        witness_dir: &Path,
    ) -> Result<Self, Error> {
        dir.refuse_inside("journal.witness_dir", witness_dir)?;
        let path = dir.journal_path();
        let marker = dir.identity().cloned();
        let by_path = witnesses_of_path(witness_dir, dir.root())?;
        let file_len = std::fs::metadata(&path).ok().map(|m| m.len());
        let mut evidence = match (&marker, by_path.first()) {
            (Some(m), _) => Some(format!("its identity marker names {}", m.id)),
            (None, Some(w)) => Some(format!(
                "the witness {}{} saw record {}",
                w.data_dir_id,
                crate::witness::WITNESS_SUFFIX,
                w.record_id
            )),
            (None, None) => None,
        };
        let read_only = !dir.is_locked();
        if read_only && file_len.unwrap_or(0) == 0 {
            let state = if file_len.is_some() {
                "empty (0 bytes)"
            } else {
                "missing"
            };
            return Err(match evidence {
                Some(ev) => missing(format!(
                    "the journal {} is {state}, but this data directory has run before ({ev})",
                    path.display()
                )),
                None => Error::DataDir {
                    path: dir.root().to_owned(),
                    reason: format!("no journal at {} (never launched?)", path.display()),
                },
            });
        }
        let mut journal = Self::open_conn(&path, clock.clone(), key, read_only)?;
        let genesis = journal.genesis()?;
        let empty = journal.len()? == 0;
        // The marker is gone and the journal is not the one a witness says this path ran
        // with: the directory's own journal was replaced along with its marker.
        let conflicting = match (&marker, &genesis) {
            (None, Some(g)) => by_path.iter().find(|w| w.data_dir_id != g.id).cloned(),
            _ => None,
        };
        if let Some(w) = &conflicting {
            evidence = Some(format!(
                "a witness says this directory ran as {} up to record {}",
                w.data_dir_id, w.record_id
            ));
        }
        let witnessed = |w: &WitnessRecord| Identity {
            id: w.data_dir_id.clone(),
            created_at: w.written_at,
        };
        // Whose journal is this? The marker says; else the genesis record; else a witness
        // left for this path.
        let known = conflicting
            .as_ref()
            .map(witnessed)
            .or_else(|| marker.clone())
            .or_else(|| genesis.clone())
            .or_else(|| by_path.first().map(witnessed));
        let fresh = empty && evidence.is_none();
        let identity = match known {
            Some(i) if !fresh => i,
            _ if read_only => {
                return Err(Error::DataDir {
                    path: dir.root().to_owned(),
                    reason: format!("no journal at {} (never launched?)", path.display()),
                });
            }
            _ => Identity::generate(clock.now()),
        };
        let repair_marker = !read_only
            && marker.is_none()
            && conflicting.is_none()
            && (fresh || genesis.as_ref().is_some_and(|g| g.id == identity.id));
        let witness = Witness::new(witness_dir, &identity.id, dir.root());
        let root = dir.root().to_owned();
        journal.binding = Some(Binding {
            dir,
            identity: identity.clone(),
            witness,
            ran_before: evidence,
        });
        if fresh {
            // First launch: genesis, then its witness (written by the append), then the
            // marker. A crash before the marker is repaired at the next start.
            journal.append(
                GENESIS,
                "system",
                &serde_json::json!({
                    "data_dir_id": identity.id,
                    "data_dir": root.display().to_string(),
                    "created_at": identity.created_at,
                }),
            )?;
            tracing::info!(data_dir = %root.display(), id = %identity.id, "new data directory: genesis written");
        }
        if repair_marker && let Some(b) = journal.binding.as_mut() {
            b.dir.write_identity(&identity)?;
        }
        Ok(journal)
    }

    /// The data directory identity the genesis record names, if record 1 is a genesis.
    fn genesis(&self) -> Result<Option<Identity>, Error> {
        let inner = self.inner.lock();
        let row: Option<(String, String)> = match inner
            .conn
            .query_row("SELECT kind, detail FROM journal WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        {
            Ok(row) => row,
            // A read-only handle on a database without the table.
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => None,
            Err(e) => return Err(e.into()),
        };
        Ok(row.and_then(|(kind, detail)| {
            if kind != GENESIS {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(&detail).ok()?;
            Some(Identity {
                id: v.get("data_dir_id")?.as_str()?.to_owned(),
                created_at: serde_json::from_value(v.get("created_at")?.clone()).ok()?,
            })
        }))
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data directory's identity, for a journal bound to one.
    #[must_use]
    pub fn data_dir_id(&self) -> Option<&str> {
        self.binding.as_ref().map(|b| b.identity.id.as_str())
    }

    /// The witness file, for a journal bound to a data directory.
    #[must_use]
    pub fn witness_path(&self) -> Option<PathBuf> {
        self.binding.as_ref().map(|b| b.witness.path())
    }

    /// Id of the last record committed through this handle (or found at open).
    #[must_use]
    pub fn head_id(&self) -> i64 {
        self.head_id.load(Ordering::SeqCst)
    }

    /// The first write failure seen, if any (the journal is unwritable).
    #[must_use]
    pub fn write_failure(&self) -> Option<String> {
        self.write_failure.lock().clone()
    }

    /// The last witness write failure, if the latest one failed.
    #[must_use]
    pub fn witness_problem(&self) -> Option<String> {
        self.witness_problem.lock().clone()
    }

    /// Calls `f` with the head id after every commit (and once now), e.g. to export it as
    /// a metric. Runs with the journal locked: keep it quick.
    pub fn observe_head(&self, f: impl Fn(i64) + Send + Sync + 'static) {
        f(self.head_id());
        *self.head_observer.lock() = Some(Arc::new(f));
    }

    /// Calls `f` with the error text whenever a write fails (the coordinator halts on it).
    /// Runs after the journal is unlocked; it must not block.
    pub fn on_write_failure(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        *self.failure_hook.lock() = Some(Arc::new(f));
    }

    /// Caps the database at `pages` pages (SQLite's `max_page_count`, never below the
    /// current size) on this connection, so that writes needing more fail with
    /// `SQLITE_FULL` as on a full disk: for fault-injection tests and drills. Returns the
    /// cap in force.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn set_max_pages(&self, pages: u64) -> Result<u64, Error> {
        // SQLite ignores 0 (and raises any cap to the current size).
        let pages = pages.max(1);
        let inner = self.inner.lock();
        let n: i64 =
            inner
                .conn
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Appends a record and returns it once it is durable.
    ///
    /// # Errors
    /// [`Error::Database`] when the write fails.
    pub fn append(
        &self,
        kind: &str,
        actor: &str,
        detail: &serde_json::Value,
    ) -> Result<JournalRecord, Error> {
        self.append_with_snapshot(kind, actor, detail, None)
    }

    /// Appends a record carrying a state snapshot (the coordinator's restore point).
    ///
    /// # Errors
    /// [`Error::Database`] when the write fails.
    pub fn append_with_snapshot(
        &self,
        kind: &str,
        actor: &str,
        detail: &serde_json::Value,
        snapshot: Option<&str>,
    ) -> Result<JournalRecord, Error> {
        let mut out = self.append_batch(&[Entry::new(kind, actor, detail.clone())], snapshot)?;
        out.pop()
            .ok_or_else(|| Error::Worker("the journal wrote nothing".into()))
    }

    /// Appends `entries` in one transaction, the last one carrying `snapshot`, and returns
    /// them once durable: all of them are committed, or none.
    ///
    /// # Errors
    /// [`Error::Database`] when the write fails (nothing was written).
    pub fn append_batch(
        &self,
        entries: &[Entry],
        snapshot: Option<&str>,
    ) -> Result<Vec<JournalRecord>, Error> {
        let result = self.append_batch_locked(entries, snapshot);
        if let Err(e) = &result {
            let text = e.to_string();
            self.write_failure
                .lock()
                .get_or_insert_with(|| text.clone());
            let hook = self.failure_hook.lock().clone();
            if let Some(hook) = hook {
                hook(&text);
            }
        }
        result
    }

    fn append_batch_locked(
        &self,
        entries: &[Entry],
        snapshot: Option<&str>,
    ) -> Result<Vec<JournalRecord>, Error> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let ts = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut inner = self.inner.lock();
        let tx = inner.conn.transaction()?;
        let (mut last_id, mut prev_mac) = read_head(&tx)?.unwrap_or((0, GENESIS_MAC.to_owned()));
        let last = entries.len() - 1;
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let snap = if i == last { snapshot } else { None };
            let detail = e.detail.to_string();
            let id = last_id + 1;
            let mac = hex::encode(
                mac_state(
                    &self.key, &prev_mac, id, &ts, &e.kind, &e.actor, &detail, snap,
                )
                .finalize()
                .into_bytes(),
            );
            tx.prepare_cached(
                "INSERT INTO journal (id, ts, kind, actor, detail, snapshot, prev_mac, mac)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id, ts, e.kind, e.actor, detail, snap, prev_mac, mac
            ])?;
            out.push(JournalRecord {
                id,
                ts: Some(now),
                ts_malformed: None,
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                detail: e.detail.clone(),
                prev_mac: std::mem::replace(&mut prev_mac, mac.clone()),
                mac,
            });
            last_id = id;
        }
        tx.prepare_cached(
            "INSERT INTO journal_head (one, last_id, mac) VALUES (1, ?1, ?2)
             ON CONFLICT(one) DO UPDATE SET last_id = excluded.last_id, mac = excluded.mac",
        )?
        .execute(params![last_id, prev_mac])?;
        tx.commit()?;
        inner.head = (last_id, prev_mac);
        self.head_id.store(last_id, Ordering::SeqCst);
        if snapshot.is_some() {
            // The snapshot carries the halt state: the journal knows it now.
            inner.pending_halt = None;
        }
        self.write_witness(&inner);
        let observer = self.head_observer.lock().clone();
        if let Some(f) = observer {
            f(last_id);
        }
        Ok(out)
    }

    fn write_witness(&self, inner: &Inner) {
        let Some(b) = &self.binding else { return };
        if inner.witness_frozen || self.read_only {
            return;
        }
        let result = b.witness.write(
            inner.head.0,
            &inner.head.1,
            self.clock.now(),
            inner.pending_halt.clone(),
        );
        let mut problem = self.witness_problem.lock();
        match result {
            Ok(()) => *problem = None,
            Err(e) => {
                tracing::error!(cause = %e, "journal witness not written");
                *problem = Some(e.to_string());
            }
        }
    }

    /// Records in the witness that a halt is in force although the journal could not
    /// record it, so that a restart comes back halted. Kept until a snapshot is
    /// committed.
    pub fn note_unjournaled_halt(&self, halt: UnjournaledHalt) {
        let mut inner = self.inner.lock();
        if inner.pending_halt.is_none() {
            inner.pending_halt = Some(halt);
        }
        self.write_witness(&inner);
    }

    /// The latest `limit` records, oldest first. A record whose timestamp does not parse
    /// is returned with `ts: None` and the stored text in `ts_malformed`.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn records(&self, limit: usize) -> Result<Vec<JournalRecord>, Error> {
        self.select(
            "SELECT id, ts, kind, actor, detail, prev_mac, mac FROM journal
             ORDER BY id DESC LIMIT ?1",
            limit,
        )
    }

    /// The latest `limit` records whose kind is one of `kinds`, oldest first (what a
    /// component re-reads of its own records at start).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn records_of_kinds(
        &self,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<JournalRecord>, Error> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        // The kinds are quoted SQL string literals: `'` doubled.
        let list = kinds
            .iter()
            .map(|k| format!("'{}'", k.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        self.select(
            &format!(
                "SELECT id, ts, kind, actor, detail, prev_mac, mac FROM journal
                 WHERE kind IN ({list}) ORDER BY id DESC LIMIT ?1"
            ),
            limit,
        )
    }

    /// Runs a `SELECT` of whole records, newest first with `LIMIT ?1`; oldest first out.
    fn select(&self, sql: &str, limit: usize) -> Result<Vec<JournalRecord>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let inner = self.inner.lock();
        let mut stmt = inner.conn.prepare_cached(sql)?;
        let rows = stmt.query_map([limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, ts_text, kind, actor, detail, prev_mac, mac) = row?;
            let ts = parse_ts(&ts_text);
            out.push(JournalRecord {
                id,
                ts_malformed: ts.is_none().then_some(ts_text),
                ts,
                kind,
                actor,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                prev_mac,
                mac,
            });
        }
        out.reverse();
        Ok(out)
    }

    /// Number of records.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn len(&self) -> Result<u64, Error> {
        let n: i64 = self
            .inner
            .lock()
            .conn
            .prepare_cached("SELECT COUNT(*) FROM journal")?
            .query_row([], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `true` when no record was ever written.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Walks the whole chain, checks the head, the data directory's identity and the
    /// witness. A failure stops the witness from advancing (see the module docs).
    ///
    /// # Errors
    /// [`Error::Missing`] when the journal is empty, missing or replaced in a data
    /// directory that has run before; [`Error::Tampered`] naming the first record that
    /// fails (edited, deleted, re-chained without the key, rolled back behind the
    /// witness); [`Error::Witness`] when the witness cannot be read; [`Error::Database`].
    pub fn verify(&self) -> Result<JournalSummary, Error> {
        let result = self.verify_inner();
        if result.is_err() && self.binding.is_some() {
            self.inner.lock().witness_frozen = true;
        }
        result
    }

    fn verify_inner(&self) -> Result<JournalSummary, Error> {
        // The witness first: it is written after the commit, so whatever it says is
        // already in the journal read below.
        let witness: Option<WitnessRecord> = match &self.binding {
            Some(b) => b.witness.read()?,
            None => None,
        };
        let genesis = self.genesis()?;
        let inner = self.inner.lock();
        // One read transaction: a daemon writing meanwhile cannot make the rows and the
        // head disagree.
        let tx = inner.conn.unchecked_transaction()?;
        let walked = self.walk_chain(&tx, witness.as_ref().map(|w| w.record_id))?;
        drop(tx);
        drop(inner);
        if let Some(b) = &self.binding {
            let path = self.path.display();
            match (walked.count, &genesis) {
                (0, _) => {
                    if let Some(ev) = &b.ran_before {
                        return Err(missing(format!(
                            "the journal {path} is empty or was missing, but this data directory has run before ({ev})"
                        )));
                    }
                }
                (_, None) => {
                    return Err(missing(format!(
                        "record 1 of {path} is not this data directory's genesis record (the journal was replaced)"
                    )));
                }
                (_, Some(g)) if g.id != b.identity.id => {
                    return Err(missing(format!(
                        "the journal {path} belongs to data directory {}, not to this one ({}) (replaced)",
                        g.id, b.identity.id
                    )));
                }
                _ => {}
            }
        }
        if let Some(w) = &witness {
            if w.record_id > walked.last_id {
                return Err(Error::Tampered {
                    record_id: walked.last_id + 1,
                    reason: format!(
                        "record missing: the journal ends at record {} but the witness saw record {} (rolled back or truncated)",
                        walked.last_id, w.record_id
                    ),
                });
            }
            if w.record_id > 0 && walked.mac_at_witness.as_deref() != Some(w.mac.as_str()) {
                return Err(Error::Tampered {
                    record_id: w.record_id,
                    reason: "does not carry the MAC the witness saw (the journal was replaced or rolled back)".into(),
                });
            }
        }
        Ok(JournalSummary {
            records: walked.count,
            head_id: walked.last_id,
            head_mac: walked.running,
            data_dir_id: self.data_dir_id().map(str::to_owned),
            witnessed_id: witness.as_ref().map(|w| w.record_id),
            unjournaled_halt: witness.and_then(|w| w.unjournaled_halt),
        })
    }

    fn walk_chain(&self, conn: &Connection, witness_id: Option<i64>) -> Result<Walked, Error> {
        let mut stmt = conn.prepare_cached(
            "SELECT id, ts, kind, actor, detail, snapshot, prev_mac, mac FROM journal
             ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let mut expected_id = 1_i64;
        let mut running = GENESIS_MAC.to_owned();
        let mut count = 0_u64;
        let mut mac_at_witness = None;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let text = |i: usize| -> Result<Option<String>, rusqlite::Error> { r.get(i) };
            if id != expected_id {
                return Err(Error::Tampered {
                    record_id: expected_id,
                    reason: format!("record missing (deleted); next stored record is {id}"),
                });
            }
            let (Some(ts), Some(kind), Some(actor), Some(detail), Some(prev), Some(mac)) =
                (text(1)?, text(2)?, text(3)?, text(4)?, text(6)?, text(7)?)
            else {
                return Err(Error::Tampered {
                    record_id: id,
                    reason: "a field is null".into(),
                });
            };
            let snapshot = text(5)?;
            if prev != running {
                return Err(Error::Tampered {
                    record_id: id,
                    reason: "prev_mac does not match the previous record's MAC".into(),
                });
            }
            let given = hex::decode(&mac).unwrap_or_default();
            let state = mac_state(
                &self.key,
                &prev,
                id,
                &ts,
                &kind,
                &actor,
                &detail,
                snapshot.as_deref(),
            );
            if state.verify_slice(&given).is_err() {
                return Err(Error::Tampered {
                    record_id: id,
                    reason: "MAC does not verify under this journal key (edited, re-chained without the key, or the wrong key file)".into(),
                });
            }
            if Some(id) == witness_id {
                mac_at_witness = Some(mac.clone());
            }
            running = mac;
            expected_id += 1;
            count += 1;
        }
        let last_id = expected_id - 1;
        match read_head(conn)? {
            None if count == 0 => {}
            None => {
                return Err(Error::Tampered {
                    record_id: last_id,
                    reason: "journal head is missing".into(),
                });
            }
            Some((head_id, _)) if head_id > last_id => {
                return Err(Error::Tampered {
                    record_id: last_id + 1,
                    reason: format!("record missing (deleted from the end); head is {head_id}"),
                });
            }
            Some((head_id, head_mac)) if head_id != last_id || head_mac != running => {
                return Err(Error::Tampered {
                    record_id: last_id,
                    reason: format!("journal head ({head_id}) does not match the last record"),
                });
            }
            Some(_) => {}
        }
        Ok(Walked {
            count,
            last_id,
            running,
            mac_at_witness,
        })
    }

    /// The newest snapshot written with [`Journal::append_with_snapshot`] or
    /// [`Journal::append_batch`], with its id.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn last_snapshot(&self) -> Result<Option<(i64, String)>, Error> {
        Ok(self
            .inner
            .lock()
            .conn
            .prepare_cached(
                "SELECT id, snapshot FROM journal WHERE snapshot IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The newest record of `kind`.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn last_of_kind(&self, kind: &str) -> Result<Option<JournalRecord>, Error> {
        let id: Option<i64> = self
            .inner
            .lock()
            .conn
            .prepare_cached("SELECT id FROM journal WHERE kind = ?1 ORDER BY id DESC LIMIT 1")?
            .query_row([kind], |r| r.get(0))
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        self.record(id)
    }

    /// The record with this id.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn record(&self, id: i64) -> Result<Option<JournalRecord>, Error> {
        let inner = self.inner.lock();
        let row = inner
            .conn
            .prepare_cached(
                "SELECT ts, kind, actor, detail, prev_mac, mac FROM journal WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .optional()?;
        Ok(row.map(|(ts_text, kind, actor, detail, prev_mac, mac)| {
            let ts = parse_ts(&ts_text);
            JournalRecord {
                id,
                ts_malformed: ts.is_none().then_some(ts_text),
                ts,
                kind,
                actor,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                prev_mac,
                mac,
            }
        }))
    }

    /// The newest `halt_triggered` record not followed by a resume (a `state_changed` to
    /// `running`): a halt the journal says is in force, whatever the snapshots say.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn unresolved_halt(&self) -> Result<Option<JournalRecord>, Error> {
        let (halt, resume): (Option<i64>, Option<i64>) = {
            let inner = self.inner.lock();
            let halt = inner
                .conn
                .prepare_cached("SELECT MAX(id) FROM journal WHERE kind = ?1")?
                .query_row([crate::coordinator::kinds::HALT_TRIGGERED], |r| r.get(0))?;
            let resume = inner
                .conn
                .prepare_cached(
                    "SELECT MAX(id) FROM journal WHERE kind = ?1 AND
                 (CASE WHEN json_valid(detail) THEN json_extract(detail, '$.to') END) = 'running'",
                )?
                .query_row([crate::coordinator::kinds::STATE_CHANGED], |r| r.get(0))?;
            (halt, resume)
        };
        match halt {
            Some(h) if resume.is_none_or(|r| r < h) => self.record(h),
            _ => Ok(None),
        }
    }

    /// Journals gf-risk's snapshot as a chained [`RISK_SNAPSHOT`] record.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn save_risk_snapshot(&self, data: &serde_json::Value) -> Result<(), Error> {
        self.append(RISK_SNAPSHOT, "system", data).map(|_| ())
    }

    /// The newest risk snapshot, if any.
    ///
    /// # Errors
    /// [`Error::Database`]; [`Error::Json`] when the stored text is not JSON.
    pub fn load_risk_snapshot(&self) -> Result<Option<serde_json::Value>, Error> {
        match self.last_of_kind(RISK_SNAPSHOT)? {
            None => Ok(None),
            Some(r) if r.detail.is_string() => Err(Error::Json {
                record_id: r.id,
                message: "risk snapshot is not a JSON object".into(),
            }),
            Some(r) => Ok(Some(r.detail)),
        }
    }
}

struct Walked {
    count: u64,
    last_id: i64,
    running: String,
    mac_at_witness: Option<String>,
}

/// What [`adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptReport {
    /// Where the previous journal now is (`None` when there was none).
    pub archived_to: Option<PathBuf>,
    /// Records the previous journal held (0 when none or unreadable).
    pub previous_records: u64,
    /// What verifying the previous journal said.
    pub previous_verification: String,
    /// Whether the previous journal's newest risk snapshot was carried over.
    pub risk_snapshot_carried: bool,
    /// The data directory's identity.
    pub data_dir_id: String,
    /// The new journal's head.
    pub head_id: i64,
}

/// Adopts a new journal for a data directory, deliberately: the administrator's way out
/// of `journal_missing` and `journal_integrity` (and of a lost key). Needs the
/// directory's lock (the daemon stopped).
///
/// The current journal (if any) is moved to `archive/` unchanged, for review. A new one
/// starts with the directory's genesis record (same identity), a [`ADOPTED`] record naming
/// `operator`, the previous journal's location, size and verification, and a halted
/// state: the next launch comes back halted with the item `review_adopted_journal`. The
/// previous journal's newest risk snapshot (unverified) is carried over so that peak
/// equity and drawdowns are not reset. The witness is re-based on the new head.
///
/// # Errors
/// [`Error::InvalidOperator`]; [`Error::DataDir`] when `dir` is not locked or files cannot
/// be moved; the journal's and the witness's errors.
pub fn adopt(
    mut dir: DataDir,
    clock: SharedClock,
    key: JournalKey,
    witness_dir: &Path,
    operator: &str,
) -> Result<AdoptReport, Error> {
    validate_operator(operator)?;
    if !dir.is_locked() {
        return Err(Error::DataDir {
            path: dir.root().to_owned(),
            reason: "adopting a journal needs the data directory's lock".into(),
        });
    }
    dir.refuse_inside("journal.witness_dir", witness_dir)?;
    let now = clock.now();
    let path = dir.journal_path();
    let exists = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
    let (previous_records, previous_verification, risk) = if exists {
        inspect_previous(&path, clock.clone(), key.clone())
    } else {
        (0, "no journal (missing or empty)".to_owned(), None)
    };
    let archived_to = if std::fs::symlink_metadata(&path).is_ok() {
        let archive = dir.root().join(ARCHIVE_DIR);
        create_private_dir(&archive).map_err(|reason| Error::DataDir {
            path: archive.clone(),
            reason,
        })?;
        let stamp = now.format("%Y%m%dT%H%M%S%.fZ");
        let target = archive.join(format!("gal-friday-{stamp}.sqlite"));
        let move_file = |suffix: &str| -> Result<(), Error> {
            let mut from = path.as_os_str().to_owned();
            from.push(suffix);
            let mut to = target.as_os_str().to_owned();
            to.push(suffix);
            match std::fs::rename(&from, &to) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => Ok(()),
                Err(e) => Err(Error::DataDir {
                    path: PathBuf::from(from),
                    reason: format!("cannot archive: {e}"),
                }),
            }
        };
        // The WAL goes with its database (it may hold committed records); the shared
        // memory index is rebuilt from them.
        move_file("-wal")?;
        move_file("")?;
        let mut shm = path.as_os_str().to_owned();
        shm.push("-shm");
        let _ = std::fs::remove_file(PathBuf::from(shm));
        Some(target)
    } else {
        None
    };
    let identity = match dir.identity().cloned() {
        Some(i) => i,
        None => {
            let from_witness = witnesses_of_path(witness_dir, dir.root())?;
            from_witness.first().map_or_else(
                || Identity::generate(now),
                |w| Identity {
                    id: w.data_dir_id.clone(),
                    created_at: w.written_at,
                },
            )
        }
    };
    dir.write_identity(&identity)?;
    // Witnesses this path left under another identity would flag the new journal.
    for w in witnesses_of_path(witness_dir, dir.root())? {
        if w.data_dir_id != identity.id {
            let stale = Witness::new(witness_dir, &w.data_dir_id, dir.root()).path();
            let mut retired = stale.as_os_str().to_owned();
            retired.push(format!(".retired-{}", now.format("%Y%m%dT%H%M%SZ")));
            let _ = std::fs::rename(&stale, PathBuf::from(retired));
        }
    }
    let root = dir.root().to_owned();
    let mut journal = Journal::open_conn(&path, clock, key, false)?;
    journal.binding = Some(Binding {
        witness: Witness::new(witness_dir, &identity.id, &root),
        identity: identity.clone(),
        dir,
        ran_before: None,
    });
    journal.append(
        GENESIS,
        "system",
        &serde_json::json!({
            "data_dir_id": identity.id,
            "data_dir": root.display().to_string(),
            "created_at": identity.created_at,
            "adopted_at": now,
        }),
    )?;
    let mut machine = Machine::default();
    machine.restore_halted(Trigger {
        source: HaltSource::Auto("journal_adopted".into()),
        reason: format!(
            "journal adopted by {operator}; review the previous journal ({}) before resuming",
            archived_to
                .as_ref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
        ),
        behaviour: HaltBehaviour::Hold,
        condition: Some("journal_adopted".into()),
        items: vec![ItemSpec::new(
            "review_adopted_journal",
            "Review the archived journal and why a new one was adopted",
        )],
        at: now,
    });
    let snapshot = serde_json::to_string(machine.snapshot()).map_err(|e| Error::Json {
        record_id: 0,
        message: e.to_string(),
    })?;
    let mut entries = vec![Entry::new(
        ADOPTED,
        operator,
        serde_json::json!({
            "archived_to": archived_to,
            "previous_records": previous_records,
            "previous_verification": previous_verification,
            "risk_snapshot_carried": risk.is_some(),
        }),
    )];
    if let Some(r) = &risk {
        entries.insert(0, Entry::new(RISK_SNAPSHOT, "system", r.clone()));
    }
    let written = journal.append_batch(&entries, Some(&snapshot))?;
    if let Some(p) = journal.witness_problem() {
        return Err(Error::Witness {
            path: journal.witness_path().unwrap_or_default(),
            reason: p,
        });
    }
    Ok(AdoptReport {
        archived_to,
        previous_records,
        previous_verification,
        risk_snapshot_carried: risk.is_some(),
        data_dir_id: identity.id,
        head_id: written.last().map_or(0, |r| r.id),
    })
}

/// Best effort: what the journal at `path` holds, whether it verifies (chain only), and
/// its newest risk snapshot, of either format.
fn inspect_previous(
    path: &Path,
    clock: SharedClock,
    key: JournalKey,
) -> (u64, String, Option<serde_json::Value>) {
    let Ok(conn) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return (0, "unreadable".into(), None);
    };
    let count: u64 = conn
        .query_row("SELECT COUNT(*) FROM journal", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| u64::try_from(n).unwrap_or(0));
    let legacy = is_legacy(&conn).unwrap_or(false);
    let risk_text: Option<String> = if legacy {
        conn.query_row("SELECT data FROM risk_snapshot WHERE one = 1", [], |r| {
            r.get(0)
        })
        .ok()
    } else {
        conn.query_row(
            "SELECT detail FROM journal WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
            [RISK_SNAPSHOT],
            |r| r.get(0),
        )
        .ok()
    };
    drop(conn);
    let verification = if legacy {
        "format 1 (unkeyed SHA-256 chain, written by an older version)".to_owned()
    } else {
        match Journal::open_conn(path, clock, key, true).and_then(|j| j.verify()) {
            Ok(s) => format!("chain intact under the current key ({} records)", s.records),
            Err(e) => e.to_string(),
        }
    };
    let risk = risk_text
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(serde_json::Value::is_object);
    (count, verification, risk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::ManualClock;
    use serde_json::json;

    fn key() -> JournalKey {
        JournalKey::from_bytes([7; 32])
    }

    fn open(dir: &tempfile::TempDir) -> Journal {
        Journal::open(
            &dir.path().join("gf.sqlite"),
            Arc::new(ManualClock::default()),
            key(),
        )
        .unwrap()
    }

    fn raw(dir: &tempfile::TempDir) -> Connection {
        let c = Connection::open(dir.path().join("gf.sqlite")).unwrap();
        c.execute_batch(
            "DROP TRIGGER IF EXISTS journal_no_update; DROP TRIGGER IF EXISTS journal_no_delete;",
        )
        .unwrap();
        c
    }

    /// The fuzz target's way in: a journal over an in-memory connection, handed back,
    /// tampered with and opened again, is read the way a file is.
    #[test]
    fn a_journal_over_a_given_connection_finds_tampering_after_reopening() {
        let clock: SharedClock = Arc::new(ManualClock::default());
        let j =
            Journal::from_connection(Connection::open_in_memory().unwrap(), clock.clone(), key())
                .unwrap();
        j.append("api_halt", "alice", &json!({"reason": "drill"}))
            .unwrap();
        j.append("api_resume", "bob", &json!({})).unwrap();
        assert_eq!(j.verify().unwrap().records, 2);
        let conn = j.into_connection();
        conn.execute_batch("DROP TRIGGER journal_no_update;")
            .unwrap();
        conn.execute("UPDATE journal SET actor = 'mallory' WHERE id = 2", [])
            .unwrap();
        let j = Journal::from_connection(conn, clock, key()).unwrap();
        assert_eq!(j.head_id(), 2);
        match j.verify() {
            Err(Error::Tampered { record_id, .. }) => assert_eq!(record_id, 2),
            other => panic!("tampering not found: {other:?}"),
        }
    }

    /// Opening skips the schema only when all of it is there: a dropped append-only
    /// trigger (or a deleted format row) is restored, and a complete one is left as is.
    #[test]
    fn reopening_restores_a_dropped_trigger_and_the_format_row() {
        let clock: SharedClock = Arc::new(ManualClock::default());
        let j =
            Journal::from_connection(Connection::open_in_memory().unwrap(), clock.clone(), key())
                .unwrap();
        j.append("api_halt", "alice", &json!({})).unwrap();
        let conn = j.into_connection();
        assert!(schema_complete(&conn).unwrap());
        conn.execute_batch("DROP TRIGGER journal_no_delete;")
            .unwrap();
        assert!(!schema_complete(&conn).unwrap());
        let j = Journal::from_connection(conn, clock.clone(), key()).unwrap();
        let conn = j.into_connection();
        assert!(schema_complete(&conn).unwrap());
        assert!(
            conn.execute("DELETE FROM journal WHERE id = 1", [])
                .is_err(),
            "the append-only trigger is back"
        );
        conn.execute("DELETE FROM journal_meta WHERE key = 'format'", [])
            .unwrap();
        assert!(!schema_complete(&conn).unwrap());
        let j = Journal::from_connection(conn, clock, key()).unwrap();
        assert_eq!(j.verify().unwrap().records, 1);
        let conn = j.into_connection();
        let format: String = conn
            .query_row(
                "SELECT value FROM journal_meta WHERE key = 'format'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(format, FORMAT);
    }

    #[test]
    fn append_chains_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&dir);
        assert!(j.is_empty().unwrap());
        assert_eq!(j.verify().unwrap().records, 0);
        let a = j
            .append("api_halt", "alice", &json!({"reason": "test"}))
            .unwrap();
        let b = j.append("api_resume", "bob", &json!({})).unwrap();
        assert_eq!(a.id, 1);
        assert_eq!(a.prev_mac, GENESIS_MAC);
        assert_eq!(b.prev_mac, a.mac);
        let summary = j.verify().unwrap();
        assert_eq!(summary.records, 2);
        assert_eq!(summary.head_mac, b.mac);
        let recs = j.records(10).unwrap();
        assert_eq!(recs, vec![a, b.clone()]);
        assert_eq!(j.records(1).unwrap(), vec![b]);
    }

    #[test]
    fn a_batch_is_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&dir);
        j.append("first", "a", &json!(1)).unwrap();
        // Fail the second insert of the batch.
        raw(&dir)
            .execute_batch(
                "CREATE TRIGGER fail_second BEFORE INSERT ON journal WHEN NEW.kind = 'second'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let err = j
            .append_batch(
                &[
                    Entry::new("ok", "a", json!(1)),
                    Entry::new("second", "a", json!(2)),
                ],
                Some("{}"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(j.len().unwrap(), 1, "nothing of the batch was committed");
        assert!(j.write_failure().unwrap().contains("injected failure"));
        j.verify().unwrap();
        raw(&dir)
            .execute_batch("DROP TRIGGER fail_second;")
            .unwrap();
        let batch = j
            .append_batch(
                &[
                    Entry::new("ok", "a", json!(1)),
                    Entry::new("second", "a", json!(2)),
                ],
                Some("{}"),
            )
            .unwrap();
        assert_eq!(batch.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(j.last_snapshot().unwrap(), Some((3, "{}".to_owned())));
        j.verify().unwrap();
    }

    #[test]
    fn updates_and_deletes_are_refused_by_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&dir);
        j.append("k", "a", &json!(1)).unwrap();
        let c = Connection::open(dir.path().join("gf.sqlite")).unwrap();
        let err = c
            .execute("UPDATE journal SET actor = 'mallory'", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert!(c.execute("DELETE FROM journal", []).is_err());
        j.verify().unwrap();
    }

    #[test]
    fn edited_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&dir);
        for i in 0..5 {
            j.append("k", "a", &json!({ "i": i })).unwrap();
        }
        raw(&dir)
            .execute("UPDATE journal SET detail = '{\"i\":99}' WHERE id = 3", [])
            .unwrap();
        match j.verify().unwrap_err() {
            Error::Tampered { record_id, reason } => {
                assert_eq!(record_id, 3);
                assert!(reason.contains("MAC does not verify"), "{reason}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn the_same_rows_under_another_key_fail_at_record_one() {
        let dir = tempfile::tempdir().unwrap();
        open(&dir).append("k", "a", &json!(1)).unwrap();
        let other = Journal::open(
            &dir.path().join("gf.sqlite"),
            Arc::new(ManualClock::default()),
            JournalKey::from_bytes([8; 32]),
        )
        .unwrap();
        assert!(matches!(
            other.verify().unwrap_err(),
            Error::Tampered { record_id: 1, .. }
        ));
    }

    #[test]
    fn deleted_records_are_named() {
        for (delete, expected) in [
            ("DELETE FROM journal WHERE id = 2", 2),
            ("DELETE FROM journal WHERE id = 1", 1),
            ("DELETE FROM journal WHERE id = 4", 4),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let j = open(&dir);
            for i in 0..4 {
                j.append("k", "a", &json!(i)).unwrap();
            }
            raw(&dir).execute(delete, []).unwrap();
            match j.verify().unwrap_err() {
                Error::Tampered { record_id, .. } => assert_eq!(record_id, expected, "{delete}"),
                other => panic!("unexpected {other}"),
            }
        }
    }

    #[test]
    fn rechained_head_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&dir);
        j.append("k", "a", &json!(1)).unwrap();
        raw(&dir)
            .execute("UPDATE journal_head SET mac = 'x'", [])
            .unwrap();
        assert!(matches!(
            j.verify().unwrap_err(),
            Error::Tampered { record_id: 1, .. }
        ));
        raw(&dir).execute("DELETE FROM journal_head", []).unwrap();
        assert!(matches!(
            j.verify().unwrap_err(),
            Error::Tampered { record_id: 1, .. }
        ));
    }

    #[test]
    fn malformed_detail_and_timestamp_still_list() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&dir);
        j.append("k", "a", &json!(1)).unwrap();
        j.append("k", "a", &json!(2)).unwrap();
        raw(&dir)
            .execute("UPDATE journal SET detail = 'not json {' WHERE id = 1", [])
            .unwrap();
        let recs = j.records(5).unwrap();
        assert_eq!(recs[0].detail, json!("not json {"));
        raw(&dir)
            .execute("UPDATE journal SET ts = 'yesterday' WHERE id = 1", [])
            .unwrap();
        let recs = j.records(5).unwrap();
        assert_eq!(recs.len(), 2, "one bad timestamp does not hide the list");
        assert_eq!(recs[0].ts, None);
        assert_eq!(recs[0].ts_malformed.as_deref(), Some("yesterday"));
        assert!(recs[1].ts.is_some() && recs[1].ts_malformed.is_none());
        let json = serde_json::to_value(&recs).unwrap();
        assert_eq!(json[0]["ts"], serde_json::Value::Null);
        assert!(json[1].get("ts_malformed").is_none());
    }

    #[test]
    fn risk_snapshots_are_chained_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open(&dir);
            assert_eq!(j.load_risk_snapshot().unwrap(), None);
            j.save_risk_snapshot(&json!({"peak_equity": "100000"}))
                .unwrap();
            j.save_risk_snapshot(&json!({"peak_equity": "120000"}))
                .unwrap();
        }
        let j = open(&dir);
        assert_eq!(
            j.load_risk_snapshot().unwrap(),
            Some(json!({"peak_equity": "120000"}))
        );
        assert_eq!(j.verify().unwrap().records, 2);
        raw(&dir)
            .execute(
                "UPDATE journal SET detail = '{\"peak_equity\":\"50000\"}' WHERE id = 2",
                [],
            )
            .unwrap();
        assert!(matches!(
            j.verify().unwrap_err(),
            Error::Tampered { record_id: 2, .. }
        ));
    }

    #[test]
    fn in_memory_journal_works() {
        let j = Journal::in_memory(Arc::new(ManualClock::default())).unwrap();
        j.append_with_snapshot("k", "a", &json!(null), Some("{}"))
            .unwrap();
        assert_eq!(j.last_snapshot().unwrap(), Some((1, "{}".to_owned())));
        assert_eq!(j.len().unwrap(), 1);
    }

    #[test]
    fn an_unkeyed_journal_of_the_old_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("gf.sqlite")).unwrap();
        c.execute_batch(
            "CREATE TABLE journal (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL,
             actor TEXT NOT NULL, detail TEXT NOT NULL, snapshot TEXT, prev_hash TEXT NOT NULL,
             hash TEXT NOT NULL);",
        )
        .unwrap();
        drop(c);
        let err = Journal::open(
            &dir.path().join("gf.sqlite"),
            Arc::new(ManualClock::default()),
            key(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::LegacyFormat { .. }), "{err}");
        assert!(err.to_string().contains("journal adopt"), "{err}");
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use gf_core::ManualClock;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any single-field edit of any record is detected at exactly that record.
        #[test]
        fn prop_any_edit_is_named(
            n in 1usize..8,
            victim in 0usize..8,
            field in 0usize..3,
            text in "[a-z]{1,8}",
        ) {
            let victim = (victim % n) as i64 + 1;
            let j = Journal::in_memory(Arc::new(ManualClock::default())).unwrap();
            for i in 0..n {
                j.append("kind", "actor", &serde_json::json!({ "i": i })).unwrap();
            }
            let column = ["kind", "actor", "detail"][field];
            {
                let inner = j.inner.lock();
                inner.conn.execute_batch("DROP TRIGGER journal_no_update;").unwrap();
                inner.conn.execute(
                    &format!("UPDATE journal SET {column} = ?1 WHERE id = ?2"),
                    params![format!("x{text}"), victim],
                ).unwrap();
            }
            match j.verify() {
                Err(Error::Tampered { record_id, .. }) => prop_assert_eq!(record_id, victim),
                other => prop_assert!(false, "expected tampering, got {:?}", other),
            }
        }
    }
}
