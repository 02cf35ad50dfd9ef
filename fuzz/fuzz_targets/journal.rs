//! The journal reader: a journal is written with arbitrary records (some with a state
//! snapshot), then tampered with as someone with the file could (cells set to any text,
//! number, blob or NULL, rows deleted or inserted, the head and the format changed, the
//! append-only triggers dropped or bypassed), and opened again. Verifying, listing and
//! reading records, the newest snapshot (decoded as the coordinator decodes it), the
//! unresolved halt and the risk snapshot must answer or fail with a typed error, never
//! panic; an untampered journal must verify.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use chrono::{TimeZone, Utc};
use gf_core::{ManualClock, SharedClock};
use gf_halt::machine::Snapshot;
use gf_halt::{Journal, JournalKey};
use libfuzzer_sys::fuzz_target;
use rusqlite::config::DbConfig;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, MAIN_DB};

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<Record>,
    tampers: Vec<Tamper>,
}

#[derive(Arbitrary, Debug)]
struct Record {
    kind: Kind,
    actor: String,
    detail: String,
    snapshot: Option<String>,
    advance_ms: u16,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Halt,
    StateChanged,
    Risk,
    Genesis,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Column {
    Id,
    Ts,
    Kind,
    Actor,
    Detail,
    Snapshot,
    PrevMac,
    Mac,
}

#[derive(Arbitrary, Debug)]
enum Cell {
    Text(String),
    Int(i64),
    Real(f64),
    Blob(Vec<u8>),
    Null,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    Set {
        id: u8,
        column: Column,
        value: Cell,
    },
    Delete {
        id: u8,
    },
    Insert {
        id: i64,
        cells: [Cell; 7],
    },
    Head {
        id: i64,
        mac: Cell,
    },
    DropHead,
    Format(Cell),
    /// Drops the append-only triggers (the next opening must restore them).
    DropTriggers,
}

fn kind_text(kind: &Kind) -> &str {
    match kind {
        Kind::Halt => "halt_triggered",
        Kind::StateChanged => "state_changed",
        Kind::Risk => gf_halt::journal::RISK_SNAPSHOT,
        Kind::Genesis => gf_halt::journal::GENESIS,
        Kind::Other(s) => s,
    }
}

fn column_name(c: Column) -> &'static str {
    match c {
        Column::Id => "id",
        Column::Ts => "ts",
        Column::Kind => "kind",
        Column::Actor => "actor",
        Column::Detail => "detail",
        Column::Snapshot => "snapshot",
        Column::PrevMac => "prev_mac",
        Column::Mac => "mac",
    }
}

fn sql(cell: &Cell) -> Sql {
    match cell {
        Cell::Text(s) => Sql::Text(s.clone()),
        Cell::Int(i) => Sql::Integer(*i),
        Cell::Real(f) => Sql::Real(*f),
        Cell::Blob(b) => Sql::Blob(b.clone()),
        Cell::Null => Sql::Null,
    }
}

fn tamper(conn: &Connection, t: &Tamper) {
    // Errors (a constraint, a type SQLite refuses) just leave the row as it was.
    let _ = match t {
        Tamper::Set { id, column, value } => conn.execute(
            &format!(
                "UPDATE journal SET {} = ?1 WHERE id = ?2",
                column_name(*column)
            ),
            rusqlite::params![sql(value), i64::from(*id)],
        ),
        Tamper::Delete { id } => {
            conn.execute("DELETE FROM journal WHERE id = ?1", [i64::from(*id)])
        }
        Tamper::Insert { id, cells } => conn.execute(
            "INSERT INTO journal (id, ts, kind, actor, detail, snapshot, prev_mac, mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                id,
                sql(&cells[0]),
                sql(&cells[1]),
                sql(&cells[2]),
                sql(&cells[3]),
                sql(&cells[4]),
                sql(&cells[5]),
                sql(&cells[6])
            ],
        ),
        Tamper::Head { id, mac } => conn.execute(
            "INSERT OR REPLACE INTO journal_head (one, last_id, mac) VALUES (1, ?1, ?2)",
            rusqlite::params![id, sql(mac)],
        ),
        Tamper::DropHead => conn.execute("DELETE FROM journal_head", []),
        Tamper::Format(v) => conn.execute(
            "UPDATE journal_meta SET value = ?1 WHERE key = 'format'",
            [sql(v)],
        ),
        Tamper::DropTriggers => conn
            .execute_batch(
                "DROP TRIGGER IF EXISTS journal_no_update;
                 DROP TRIGGER IF EXISTS journal_no_delete;",
            )
            .map(|()| 0),
    };
}

fn read_everything(journal: &Journal) {
    let _ = journal.verify();
    let _ = journal.len();
    if let Ok(records) = journal.records(1000) {
        for r in records.iter().take(8) {
            let _ = journal.record(r.id);
        }
    }
    let _ = journal.record(0);
    let _ = journal.record(i64::MAX);
    if let Ok(Some((_, text))) = journal.last_snapshot() {
        let _ = serde_json::from_str::<Snapshot>(&text);
    }
    let _ = journal.unresolved_halt();
    let _ = journal.load_risk_snapshot();
    let _ = journal.last_of_kind("halt_triggered");
}

/// A new journal's database as bytes: made once, copied into every input's connection
/// (creating the schema for each input was most of the cost).
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let clock: SharedClock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, 0).unwrap(),
        ));
        let conn = Connection::open_in_memory().unwrap();
        let journal =
            Journal::from_connection(conn, clock, JournalKey::from_bytes([7; 32])).unwrap();
        let mut conn = journal.into_connection();
        conn.serialize(MAIN_DB).unwrap().to_vec()
    })
}

fuzz_target!(|input: Input| {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, 0).unwrap());
    let shared: SharedClock = Arc::new(clock.clone());
    let key = JournalKey::from_bytes([7; 32]);
    let bytes = template();
    let mut conn = Connection::open_in_memory().unwrap();
    conn.deserialize_read_exact(MAIN_DB, bytes, bytes.len(), false)
        .unwrap();
    let journal = Journal::from_connection(conn, shared.clone(), key.clone()).unwrap();
    let mut written = 0;
    for r in input.records.iter().take(16) {
        clock.advance(chrono::TimeDelta::milliseconds(i64::from(r.advance_ms)));
        let detail = serde_json::from_str(&r.detail)
            .unwrap_or_else(|_| serde_json::Value::String(r.detail.clone()));
        if journal
            .append_with_snapshot(kind_text(&r.kind), &r.actor, &detail, r.snapshot.as_deref())
            .is_ok()
        {
            written += 1;
        }
    }
    let summary = journal.verify();
    assert!(
        summary.as_ref().is_ok_and(|s| s.records == written),
        "an untampered journal of {written} records does not verify: {summary:?}"
    );
    if input.tampers.is_empty() {
        read_everything(&journal);
        return;
    }
    let conn = journal.into_connection();
    // Someone with the file can bypass the append-only triggers: off while tampering, on
    // again for the reopening (`Tamper::DropTriggers` removes them for good).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
        .unwrap();
    for t in input.tampers.iter().take(8) {
        tamper(&conn, t);
    }
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)
        .unwrap();
    if let Ok(journal) = Journal::from_connection(conn, shared, key) {
        read_everything(&journal);
    }
});
