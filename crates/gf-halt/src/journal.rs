//! The persistent, append-only, hash-chained journal (SQLite, WAL, `synchronous=FULL`).
//!
//! Every record carries `hash = SHA-256(prev_hash, id, ts, kind, actor, detail, snapshot)`
//! over length-prefixed fields, and `prev_hash` = the previous record's hash (64 zeros for
//! the first). Ids are consecutive from 1, and a one-row `journal_head` table remembers the
//! last id and hash, so [`Journal::verify`] detects an edited row, a row deleted in the
//! middle and a row deleted from the end, and names the first record that fails.
//! SQLite triggers refuse `UPDATE` and `DELETE` on the journal table; they stop mistakes,
//! the hash chain detects deliberate tampering.
//!
//! The same database holds the latest risk snapshot from gf-risk (an opaque JSON value), so
//! that a restart keeps the daily and total drawdown.
//!
//! All methods block on SQLite (a journal write waits for `fsync`); async callers should
//! use `tokio::task::spawn_blocking`, as the coordinator does.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use gf_core::SharedClock;

use crate::error::Error;

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    detail    TEXT NOT NULL,
    snapshot  TEXT,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_head (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    hash    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS risk_snapshot (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    ts   TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
";

/// One journal record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Consecutive id, from 1.
    pub id: i64,
    /// When it was written, from the coordinator's clock.
    pub ts: DateTime<Utc>,
    /// What happened (`halt_triggered`, `state_changed`, `checklist_step`, … or an API
    /// mutation kind chosen by the daemon).
    pub kind: String,
    /// Who did it (an operator, `auto:<condition>`, `system`).
    pub actor: String,
    /// Structured detail. A stored detail that is not JSON is returned as a JSON string.
    pub detail: serde_json::Value,
    /// The previous record's hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// Result of a successful [`Journal::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalSummary {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record ([`GENESIS_HASH`] when empty).
    pub head_hash: String,
}

/// The journal database. Cheap to share behind an `Arc`; calls are serialised internally.
pub struct Journal {
    conn: Mutex<Connection>,
    clock: SharedClock,
    path: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn hash_record(
    prev_hash: &str,
    id: i64,
    ts: &str,
    kind: &str,
    actor: &str,
    detail: &str,
    snapshot: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
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
    hex::encode(h.finalize())
}

fn parse_ts(id: i64, text: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Json {
            record_id: id,
            message: format!("timestamp {text:?}: {e}"),
        })
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`. The path `:memory:` gives an
    /// in-memory journal, for backtests and research.
    ///
    /// # Errors
    /// [`Error::Database`] when the file cannot be opened or the schema created.
    pub fn open(path: &Path, clock: SharedClock) -> Result<Self, Error> {
        let conn = Connection::open(path)?;
        // `journal_mode` answers with a row; an in-memory database answers "memory".
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            clock,
            path: path.to_owned(),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
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
        let detail_text = detail.to_string();
        let now = self.clock.now();
        let ts = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let head: Option<(i64, String)> = tx
            .query_row(
                "SELECT last_id, hash FROM journal_head WHERE one = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (last_id, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        let id = last_id + 1;
        let hash = hash_record(&prev_hash, id, &ts, kind, actor, &detail_text, snapshot);
        tx.execute(
            "INSERT INTO journal (id, ts, kind, actor, detail, snapshot, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![id, ts, kind, actor, detail_text, snapshot, prev_hash, hash],
        )?;
        tx.execute(
            "INSERT INTO journal_head (one, last_id, hash) VALUES (1, ?1, ?2)
             ON CONFLICT(one) DO UPDATE SET last_id = excluded.last_id, hash = excluded.hash",
            params![id, hash],
        )?;
        tx.commit()?;
        Ok(JournalRecord {
            id,
            ts: now,
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            detail: detail.clone(),
            prev_hash,
            hash,
        })
    }

    /// The latest `limit` records, oldest first.
    ///
    /// # Errors
    /// [`Error::Database`]; [`Error::Json`] for a record whose timestamp does not parse.
    pub fn records(&self, limit: usize) -> Result<Vec<JournalRecord>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, ts, kind, actor, detail, prev_hash, hash FROM journal
             ORDER BY id DESC LIMIT ?1",
        )?;
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
            let (id, ts, kind, actor, detail, prev_hash, hash) = row?;
            out.push(JournalRecord {
                id,
                ts: parse_ts(id, &ts)?,
                kind,
                actor,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                prev_hash,
                hash,
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
            .conn
            .lock()
            .query_row("SELECT COUNT(*) FROM journal", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `true` when no record was ever written.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Walks the whole chain.
    ///
    /// # Errors
    /// [`Error::Tampered`] naming the first record that fails (edited, deleted, or
    /// re-chained); [`Error::Database`] when the database cannot be read.
    pub fn verify(&self) -> Result<JournalSummary, Error> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, ts, kind, actor, detail, snapshot, prev_hash, hash FROM journal
             ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let mut expected_id = 1_i64;
        let mut running = GENESIS_HASH.to_owned();
        let mut count = 0_u64;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let text = |i: usize| -> Result<Option<String>, rusqlite::Error> { r.get(i) };
            if id != expected_id {
                return Err(Error::Tampered {
                    record_id: expected_id,
                    reason: format!("record missing (deleted); next stored record is {id}"),
                });
            }
            let (Some(ts), Some(kind), Some(actor), Some(detail), Some(prev), Some(hash)) =
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
                    reason: "prev_hash does not match the previous record".into(),
                });
            }
            let computed = hash_record(&prev, id, &ts, &kind, &actor, &detail, snapshot.as_deref());
            if computed != hash {
                return Err(Error::Tampered {
                    record_id: id,
                    reason: "content does not match its hash (edited)".into(),
                });
            }
            running = hash;
            expected_id += 1;
            count += 1;
        }
        let head: Option<(i64, String)> = conn
            .query_row(
                "SELECT last_id, hash FROM journal_head WHERE one = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let last_id = expected_id - 1;
        match head {
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
            Some((head_id, head_hash)) if head_id != last_id || head_hash != running => {
                return Err(Error::Tampered {
                    record_id: last_id,
                    reason: format!("journal head ({head_id}) does not match the last record"),
                });
            }
            Some(_) => {}
        }
        Ok(JournalSummary {
            records: count,
            head_hash: running,
        })
    }

    /// The newest snapshot written with [`Journal::append_with_snapshot`], with its id.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn last_snapshot(&self) -> Result<Option<(i64, String)>, Error> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, snapshot FROM journal WHERE snapshot IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Stores gf-risk's snapshot (replacing the previous one).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn save_risk_snapshot(&self, data: &serde_json::Value) -> Result<(), Error> {
        let ts = self.clock.now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        self.conn.lock().execute(
            "INSERT INTO risk_snapshot (one, ts, data) VALUES (1, ?1, ?2)
             ON CONFLICT(one) DO UPDATE SET ts = excluded.ts, data = excluded.data",
            params![ts, data.to_string()],
        )?;
        Ok(())
    }

    /// The stored risk snapshot, if any.
    ///
    /// # Errors
    /// [`Error::Database`]; [`Error::Json`] when the stored text is not JSON.
    pub fn load_risk_snapshot(&self) -> Result<Option<serde_json::Value>, Error> {
        let text: Option<String> = self
            .conn
            .lock()
            .query_row("SELECT data FROM risk_snapshot WHERE one = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| Error::Json {
                record_id: 0,
                message: format!("risk snapshot: {e}"),
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::ManualClock;
    use serde_json::json;
    use std::sync::Arc;

    fn open(dir: &tempfile::TempDir) -> Journal {
        Journal::open(
            &dir.path().join("gf.sqlite"),
            Arc::new(ManualClock::default()),
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
        assert_eq!(a.prev_hash, GENESIS_HASH);
        assert_eq!(b.prev_hash, a.hash);
        let summary = j.verify().unwrap();
        assert_eq!(summary.records, 2);
        assert_eq!(summary.head_hash, b.hash);
        let recs = j.records(10).unwrap();
        assert_eq!(recs, vec![a, b.clone()]);
        assert_eq!(j.records(1).unwrap(), vec![b]);
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
                assert!(reason.contains("edited"), "{reason}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn deleted_records_are_named() {
        struct Case {
            delete: &'static str,
            expected: i64,
        }
        for case in [
            Case {
                delete: "DELETE FROM journal WHERE id = 2",
                expected: 2,
            },
            Case {
                delete: "DELETE FROM journal WHERE id = 1",
                expected: 1,
            },
            Case {
                delete: "DELETE FROM journal WHERE id = 4",
                expected: 4,
            },
        ] {
            let dir = tempfile::tempdir().unwrap();
            let j = open(&dir);
            for i in 0..4 {
                j.append("k", "a", &json!(i)).unwrap();
            }
            raw(&dir).execute(case.delete, []).unwrap();
            match j.verify().unwrap_err() {
                Error::Tampered { record_id, .. } => {
                    assert_eq!(record_id, case.expected, "{}", case.delete);
                }
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
            .execute("UPDATE journal_head SET hash = 'x'", [])
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
    fn malformed_detail_reads_back_as_string() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&dir);
        j.append("k", "a", &json!(1)).unwrap();
        raw(&dir)
            .execute("UPDATE journal SET detail = 'not json {' WHERE id = 1", [])
            .unwrap();
        let recs = j.records(5).unwrap();
        assert_eq!(recs[0].detail, json!("not json {"));
        raw(&dir)
            .execute("UPDATE journal SET ts = 'yesterday' WHERE id = 1", [])
            .unwrap();
        assert!(matches!(
            j.records(5).unwrap_err(),
            Error::Json { record_id: 1, .. }
        ));
    }

    #[test]
    fn risk_snapshot_round_trips_and_persists() {
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
    }

    #[test]
    fn in_memory_journal_works() {
        let j = Journal::open(Path::new(":memory:"), Arc::new(ManualClock::default())).unwrap();
        j.append_with_snapshot("k", "a", &json!(null), Some("{}"))
            .unwrap();
        assert_eq!(j.last_snapshot().unwrap(), Some((1, "{}".to_owned())));
        assert_eq!(j.len().unwrap(), 1);
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use gf_core::ManualClock;
    use proptest::prelude::*;
    use std::sync::Arc;

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
            let j = Journal::open(Path::new(":memory:"), Arc::new(ManualClock::default())).unwrap();
            for i in 0..n {
                j.append("kind", "actor", &serde_json::json!({ "i": i })).unwrap();
            }
            let column = ["kind", "actor", "detail"][field];
            {
                let conn = j.conn.lock();
                conn.execute_batch("DROP TRIGGER journal_no_update;").unwrap();
                conn.execute(
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
