//! Fail closed on the journal: a halt is one transaction, an unwritable journal halts, a
//! journal that is missing, rolled back, truncated or re-chained without the key is
//! detected (naming the record) and the coordinator starts halted, the free disk of the
//! data directory is a halt condition, and an administrator can adopt a new journal.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{KeyInit, Mac};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

use common::{Env, FakeExchange, View, fast_cfg, halted, test_key};
use gf_core::{Clock, HaltBehaviour, HaltSource, HaltState, ManualClock};
use gf_halt::coordinator::{JOURNAL_INTEGRITY, JOURNAL_MISSING, JOURNAL_UNWRITABLE, kinds};
use gf_halt::datadir::JOURNAL_FILE;
use gf_halt::{DataDir, DiskSpace, Error, HaltCoordinator, Journal, JournalKey};

/// A data directory with its key and witness outside it, as the daemon lays them out.
struct Site {
    root: tempfile::TempDir,
    clock: ManualClock,
}

impl Site {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
            clock: ManualClock::default(),
        }
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn db(&self) -> PathBuf {
        self.data().join(JOURNAL_FILE)
    }

    fn witness_dir(&self) -> PathBuf {
        self.root.path().join("keys/witness")
    }

    fn journal_with(&self, key: JournalKey) -> Arc<Journal> {
        let dir = DataDir::open(&self.data(), self.clock.now()).unwrap();
        Arc::new(
            Journal::open_data_dir(dir, Arc::new(self.clock.clone()), key, &self.witness_dir())
                .unwrap(),
        )
    }

    fn journal(&self) -> Arc<Journal> {
        self.journal_with(test_key())
    }

    fn open(&self) -> Env {
        Env::open_journal(
            &fast_cfg(),
            self.journal(),
            FakeExchange::new(),
            View::new(),
            self.clock.clone(),
        )
    }

    /// A connection that may edit the journal (its append-only triggers dropped).
    fn raw(&self) -> Connection {
        let c = Connection::open(self.db()).unwrap();
        c.execute_batch(
            "DROP TRIGGER IF EXISTS journal_no_update; DROP TRIGGER IF EXISTS journal_no_delete;",
        )
        .unwrap();
        c
    }

    fn remove_journal(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.db().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn complete_everything(c: &HaltCoordinator) {
    c.begin_recovery("alice").await.unwrap();
    for item in c.checklist().unwrap().missing() {
        c.complete_item(&item, "alice", None).await.unwrap();
    }
    c.resume("alice").await.unwrap();
}

fn count_kind(db: &Path, kind: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM journal WHERE kind = ?1",
            [kind],
            |r| r.get(0),
        )
        .unwrap()
}

/// Halted with the gate closed, the journal problem reported and `item` on the
/// checklist; unless the journal held the tests' own halt (source `cli`), the halt is the
/// journal condition's.
fn assert_halted_by(env: &Env, condition: &str, item: &str) -> String {
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(!env.gate.is_open(), "the gate stays closed");
    let halt = env.coordinator.status().halt.unwrap();
    if halt.source != HaltSource::Cli {
        assert_eq!(halt.source, HaltSource::Auto(condition.into()));
    }
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&item.to_owned()),
        "{item} missing from the checklist"
    );
    env.coordinator.status().journal_problem.unwrap()
}

// ----------------------------------------------------------------- one transaction

#[tokio::test]
async fn a_failure_between_the_halts_records_commits_none_of_them_and_the_restart_is_halted() {
    let site = Site::new();
    {
        let env = site.open();
        assert_eq!(env.coordinator.state(), HaltState::Running);
        // The second insert of the halt's transaction fails.
        site.raw()
            .execute_batch(
                "CREATE TRIGGER torn BEFORE INSERT ON journal WHEN NEW.kind = 'state_changed'
                 BEGIN SELECT RAISE(ABORT, 'injected failure after halt_triggered'); END;",
            )
            .unwrap();
        let outcome = env.coordinator.halt(HaltSource::Cli, "drill").await;
        assert!(outcome.started);
        assert!(!outcome.durable, "{outcome:?}");
        assert!(!env.gate.is_open());
        assert_eq!(
            count_kind(&site.db(), kinds::HALT_TRIGGERED),
            0,
            "halt_triggered was committed without its state change"
        );
        halted(&env.coordinator).await;
    }
    site.raw().execute_batch("DROP TRIGGER torn;").unwrap();
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(!env.gate.is_open());
    env.coordinator.journal().verify().unwrap();
}

#[tokio::test]
async fn a_journal_holding_only_halt_triggered_reopens_halted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gf.sqlite");
    {
        let env = Env::open(&fast_cfg(), &db);
        env.coordinator.halt(HaltSource::Cli, "first").await;
        halted(&env.coordinator).await;
        complete_everything(&env.coordinator).await;
        assert_eq!(env.coordinator.state(), HaltState::Running);
        // A torn halt as an older version could leave it: the trigger without its state
        // change and snapshot.
        env.coordinator
            .journal()
            .append(
                kinds::HALT_TRIGGERED,
                "api:alice",
                &serde_json::json!({ "halt_id": 2, "source": HaltSource::Api("alice".into()),
                                     "reason": "torn halt", "behaviour": HaltBehaviour::ClosePositions }),
            )
            .unwrap();
    }
    let env = Env::open(&fast_cfg(), &db);
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(!env.gate.is_open(), "a halt without a resume is in force");
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.source, HaltSource::Api("alice".into()));
    assert!(halt.reason.contains("torn halt"), "{}", halt.reason);
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"confirm_orders_cancelled".to_owned())
    );
}

// ----------------------------------------------------------------- unwritable

/// Fills the journal up to a page cap so that the next write fails with SQLITE_FULL.
fn fill_to_the_brim(journal: &Journal) {
    let pages = journal.set_max_pages(1).unwrap();
    assert!(pages > 1, "capped at the current size, {pages} pages");
    for size in [4000, 1000, 300, 100, 30, 1] {
        let mut written = 0;
        while journal
            .append("filler", "test", &serde_json::json!("x".repeat(size)))
            .is_ok()
        {
            written += 1;
            assert!(written < 100, "the page cap is not enforced");
        }
    }
}

#[tokio::test]
async fn a_full_journal_halts_itself_answers_not_durable_and_the_restart_is_halted() {
    let site = Site::new();
    {
        let env = site.open();
        let journal = env.coordinator.journal().clone();
        fill_to_the_brim(&journal);
        assert!(journal.write_failure().unwrap().contains("full"));
        // The filler's failure already closed the gate and started a halt.
        assert!(!env.gate.is_open());
        halted(&env.coordinator).await;
        let problem = assert_halted_by(&env, JOURNAL_UNWRITABLE, "review_journal_storage");
        assert!(problem.contains("database or disk is full"), "{problem}");
        // An operator's halt now: in force, but not durable.
        let outcome = env
            .coordinator
            .halt(HaltSource::Api("bob".into()), "manual")
            .await;
        assert!(!outcome.durable);
        assert!(
            outcome.journal_error.unwrap().contains("full"),
            "the caller is told why"
        );
        // Write-ahead operations are refused, not applied.
        assert!(env.coordinator.begin_recovery("alice").await.is_err());
        assert_eq!(env.coordinator.state(), HaltState::Halted);
    }
    // The restart (the cap is gone with the connection) remembers the halt through the
    // witness, though the journal never recorded it.
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(!env.gate.is_open());
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.source, HaltSource::Auto(JOURNAL_UNWRITABLE.into()));
    assert!(halt.reason.contains("not journaled"), "{}", halt.reason);
    // Now journaled: the next restart needs no witness note.
    drop(env);
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    env.coordinator.journal().verify().unwrap();
}

#[tokio::test]
async fn a_failed_write_of_a_mere_record_halts_too() {
    let site = Site::new();
    let env = site.open();
    site.raw()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON journal
             BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END;",
        )
        .unwrap();
    let err = env
        .coordinator
        .record("api_token_created", "admin", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "journal_database");
    assert!(!env.gate.is_open(), "closed at once");
    halted(&env.coordinator).await;
    assert_halted_by(&env, JOURNAL_UNWRITABLE, "review_journal_storage");
}

// ----------------------------------------------------------------- missing, replaced

#[tokio::test]
async fn a_deleted_journal_in_a_dir_that_ran_before_starts_halted_journal_missing() {
    let site = Site::new();
    drop(site.open());
    site.remove_journal();
    let env = site.open();
    let problem = assert_halted_by(&env, JOURNAL_MISSING, "review_journal_missing");
    assert!(problem.contains("has run before"), "{problem}");
    assert!(matches!(
        env.coordinator.journal().verify(),
        Err(Error::Missing { .. })
    ));
    drop(env);
    // Still halted at the next start: a missing journal is not forgotten by restarting.
    let env = site.open();
    assert_halted_by(&env, JOURNAL_MISSING, "review_journal_missing");
}

#[tokio::test]
async fn an_empty_journal_file_starts_halted_journal_missing() {
    let site = Site::new();
    {
        let env = site.open();
        env.coordinator.halt(HaltSource::Cli, "was halted").await;
        halted(&env.coordinator).await;
    }
    site.remove_journal();
    std::fs::write(site.db(), b"").unwrap();
    let env = site.open();
    assert_halted_by(&env, JOURNAL_MISSING, "review_journal_missing");
}

#[tokio::test]
async fn a_journal_and_marker_both_deleted_are_recognised_by_the_witness() {
    let site = Site::new();
    drop(site.open());
    site.remove_journal();
    std::fs::remove_file(site.data().join("IDENTITY")).unwrap();
    let env = site.open();
    let problem = assert_halted_by(&env, JOURNAL_MISSING, "review_journal_missing");
    assert!(problem.contains("witness"), "{problem}");
}

#[tokio::test]
async fn another_directorys_journal_is_a_replacement() {
    let (a, b) = (Site::new(), Site::new());
    drop(a.open());
    drop(b.open());
    b.remove_journal();
    std::fs::copy(a.db(), b.db()).unwrap();
    let env = b.open();
    let problem = assert_halted_by(&env, JOURNAL_MISSING, "review_journal_missing");
    assert!(problem.contains("replaced"), "{problem}");
}

// ----------------------------------------------------------------- rollback, rechaining

#[tokio::test]
async fn a_copy_of_an_older_journal_is_a_rollback_naming_the_first_missing_record() {
    let site = Site::new();
    let old = site.root.path().join("old.sqlite");
    let old_last;
    {
        let env = site.open();
        env.coordinator
            .record("api_token_created", "admin", serde_json::json!({}))
            .await
            .unwrap();
        old_last = env.coordinator.journal().head_id();
    }
    // A copy taken while running, a complete and valid journal in itself…
    std::fs::copy(site.db(), &old).unwrap();
    {
        let env = site.open();
        env.coordinator.halt(HaltSource::Cli, "halted").await;
        halted(&env.coordinator).await;
    }
    // … put back to make the halted daemon forget its halt.
    site.remove_journal();
    std::fs::copy(&old, site.db()).unwrap();
    let env = site.open();
    let problem = assert_halted_by(&env, JOURNAL_INTEGRITY, "review_journal_integrity");
    assert_eq!(
        env.coordinator.status().halt.unwrap().source,
        HaltSource::Auto(JOURNAL_INTEGRITY.into())
    );
    assert!(
        problem.contains(&format!("journal record {}", old_last + 1)),
        "{problem}"
    );
    assert!(problem.contains("witness"), "{problem}");
}

#[tokio::test]
async fn rows_cut_from_the_end_with_the_head_fixed_up_are_detected() {
    let site = Site::new();
    let last;
    {
        let env = site.open();
        env.coordinator.halt(HaltSource::Cli, "halted").await;
        halted(&env.coordinator).await;
        last = env.coordinator.journal().head_id();
    }
    // Cut back to the genesis record: the halt is gone, the rows left are a valid chain.
    let cut_to = 1;
    assert!(last > 3);
    {
        let raw = site.raw();
        let mac: String = raw
            .query_row("SELECT mac FROM journal WHERE id = ?1", [cut_to], |r| {
                r.get(0)
            })
            .unwrap();
        raw.execute("DELETE FROM journal WHERE id > ?1", [cut_to])
            .unwrap();
        raw.execute(
            "UPDATE journal_head SET last_id = ?1, mac = ?2",
            params![cut_to, mac],
        )
        .unwrap();
    }
    let env = site.open();
    let problem = assert_halted_by(&env, JOURNAL_INTEGRITY, "review_journal_integrity");
    assert!(
        problem.contains(&format!("journal record {}", cut_to + 1)),
        "{problem}"
    );
}

/// Edits `victim` and recomputes the chain from it with `mac` (what someone without the
/// journal key can do), fixing up the head.
fn rechain(site: &Site, victim: i64, mac: impl Fn(&str, i64, &[String]) -> String) {
    let raw = site.raw();
    raw.execute(
        "UPDATE journal SET actor = 'mallory' WHERE id = ?1",
        [victim],
    )
    .unwrap();
    let rows: Vec<(i64, Vec<String>, Option<String>)> = {
        let mut stmt = raw
            .prepare("SELECT id, ts, kind, actor, detail, snapshot FROM journal WHERE id >= ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([victim], |r| {
            Ok((
                r.get(0)?,
                vec![r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let mut prev: String = raw
        .query_row(
            "SELECT prev_mac FROM journal WHERE id = ?1",
            [victim],
            |r| r.get(0),
        )
        .unwrap();
    for (id, mut fields, snapshot) in rows {
        fields.push(snapshot.unwrap_or_default());
        let m = mac(&prev, id, &fields);
        raw.execute(
            "UPDATE journal SET prev_mac = ?1, mac = ?2 WHERE id = ?3",
            params![prev, m, id],
        )
        .unwrap();
        prev = m;
    }
    raw.execute("UPDATE journal_head SET mac = ?1", [prev])
        .unwrap();
}

fn length_prefixed(prev: &str, id: i64, fields: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut field = |b: &[u8]| {
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
    };
    field(prev.as_bytes());
    field(&id.to_le_bytes());
    for f in fields {
        field(f.as_bytes());
    }
    out
}

async fn halted_site_with_records() -> Site {
    let site = Site::new();
    let env = site.open();
    env.coordinator.halt(HaltSource::Cli, "halted").await;
    halted(&env.coordinator).await;
    assert!(env.coordinator.journal().head_id() > 4);
    site
}

#[tokio::test]
async fn a_chain_recomputed_with_plain_sha256_is_detected_at_the_edited_record() {
    let site = halted_site_with_records().await;
    rechain(&site, 3, |prev, id, fields| {
        hex::encode(Sha256::digest(length_prefixed(prev, id, fields)))
    });
    let env = site.open();
    let problem = assert_halted_by(&env, JOURNAL_INTEGRITY, "review_journal_integrity");
    assert!(problem.contains("journal record 3 "), "{problem}");
}

#[tokio::test]
async fn a_chain_recomputed_under_another_key_is_detected_at_the_edited_record() {
    let site = halted_site_with_records().await;
    rechain(&site, 4, |prev, id, fields| {
        let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&[9; 32]).unwrap();
        m.update(&length_prefixed(prev, id, fields));
        hex::encode(m.finalize().into_bytes())
    });
    let env = site.open();
    let problem = assert_halted_by(&env, JOURNAL_INTEGRITY, "review_journal_integrity");
    assert!(problem.contains("journal record 4 "), "{problem}");
}

#[tokio::test]
async fn the_wrong_key_file_fails_at_record_one() {
    let site = Site::new();
    drop(site.open());
    let env = Env::open_journal(
        &fast_cfg(),
        site.journal_with(JournalKey::from_bytes([1; 32])),
        FakeExchange::new(),
        View::new(),
        site.clock.clone(),
    );
    let problem = assert_halted_by(&env, JOURNAL_INTEGRITY, "review_journal_integrity");
    assert!(problem.contains("journal record 1 "), "{problem}");
}

#[tokio::test]
async fn an_edited_risk_snapshot_is_detected() {
    let site = Site::new();
    let id;
    {
        let env = site.open();
        env.coordinator
            .save_risk_snapshot(serde_json::json!({"peak_equity": "120000"}))
            .await
            .unwrap();
        id = env.coordinator.journal().head_id();
        // Unchanged snapshots are not journaled again.
        env.coordinator
            .save_risk_snapshot(serde_json::json!({"peak_equity": "120000"}))
            .await
            .unwrap();
        assert_eq!(env.coordinator.journal().head_id(), id);
    }
    site.raw()
        .execute(
            "UPDATE journal SET detail = '{\"peak_equity\":\"90000\"}' WHERE id = ?1",
            [id],
        )
        .unwrap();
    let env = site.open();
    let problem = assert_halted_by(&env, JOURNAL_INTEGRITY, "review_journal_integrity");
    assert!(
        problem.contains(&format!("journal record {id} ")),
        "{problem}"
    );
}

// ----------------------------------------------------------------- the data directory

#[tokio::test]
async fn a_second_journal_on_a_locked_data_dir_is_refused_and_verify_reads_beside_it() {
    let site = Site::new();
    let env = site.open();
    env.coordinator
        .record("k", "a", serde_json::json!(1))
        .await
        .unwrap();
    match DataDir::open(&site.data(), site.clock.now()) {
        Err(Error::DataDirLocked { holder, .. }) => {
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            );
        }
        other => panic!("a second daemon got the data directory: {other:?}"),
    }
    // A reader needs no lock, and the witness agrees with the running journal.
    let reader = Journal::open_data_dir(
        DataDir::inspect(&site.data()).unwrap(),
        Arc::new(site.clock.clone()),
        test_key(),
        &site.witness_dir(),
    )
    .unwrap();
    let summary = reader.verify().unwrap();
    assert_eq!(summary.head_id, env.coordinator.journal().head_id());
    assert_eq!(summary.witnessed_id, Some(summary.head_id));
    drop(env);
    DataDir::open(&site.data(), site.clock.now()).unwrap();
}

#[tokio::test]
async fn adopting_a_new_journal_archives_the_old_one_and_starts_halted_once() {
    let site = Site::new();
    {
        let env = site.open();
        env.coordinator
            .save_risk_snapshot(serde_json::json!({"peak_equity": "120000"}))
            .await
            .unwrap();
    }
    site.remove_journal();
    drop(site.open()); // halted: journal_missing
    let report = gf_halt::adopt(
        DataDir::open(&site.data(), site.clock.now()).unwrap(),
        Arc::new(site.clock.clone()),
        test_key(),
        &site.witness_dir(),
        "carol",
    )
    .unwrap();
    let archived = report.archived_to.clone().unwrap();
    assert!(archived.starts_with(site.data().join("archive")));
    assert!(archived.exists());
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert!(env.coordinator.status().journal_problem.is_none());
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.source, HaltSource::Auto("journal_adopted".into()));
    assert!(halt.reason.contains("carol"), "{}", halt.reason);
    let records = env.coordinator.journal().records(10).unwrap();
    assert_eq!(records[0].kind, gf_halt::journal::GENESIS);
    assert!(
        records
            .iter()
            .any(|r| r.kind == gf_halt::journal::ADOPTED && r.actor == "carol")
    );
    env.coordinator.journal().verify().unwrap();
    complete_everything(&env.coordinator).await;
    drop(env);
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Running);
    assert!(env.gate.is_open());
}

#[tokio::test]
async fn a_fresh_data_dir_gets_genesis_marker_and_witness() {
    let site = Site::new();
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Running);
    let journal = env.coordinator.journal();
    let genesis = journal.records(1).unwrap().remove(0);
    assert_eq!(genesis.kind, gf_halt::journal::GENESIS);
    let id = journal.data_dir_id().unwrap().to_owned();
    assert_eq!(genesis.detail["data_dir_id"], id.as_str());
    let marker = std::fs::read_to_string(site.data().join("IDENTITY")).unwrap();
    assert!(marker.contains(&id));
    let witness = std::fs::read_to_string(journal.witness_path().unwrap()).unwrap();
    assert!(witness.contains(&genesis.mac), "{witness}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for p in [site.db(), site.data().join("IDENTITY")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
}

// ----------------------------------------------------------------- free disk

#[tokio::test]
async fn low_free_space_on_the_data_dir_halts_before_the_disk_is_full() {
    let site = Site::new();
    let env = site.open();
    let free = Arc::new(AtomicU64::new(10 * 1024 * 1024 * 1024));
    let sampled = Arc::clone(&free);
    env.coordinator.register_condition(
        Box::new(DiskSpace::new(
            256,
            Box::new(move || Some(sampled.load(Ordering::SeqCst))),
        )),
        HaltBehaviour::CancelOnly,
    );
    assert!(env.coordinator.sweep().await.is_empty());
    assert_eq!(env.coordinator.state(), HaltState::Running);
    free.store(100 * 1024 * 1024, Ordering::SeqCst);
    let outcomes = env.coordinator.sweep().await;
    assert_eq!(outcomes.len(), 1);
    assert!(
        outcomes[0].durable,
        "the halt fits on the disk it warns about"
    );
    halted(&env.coordinator).await;
    let halt = env.coordinator.status().halt.unwrap();
    assert_eq!(halt.source, HaltSource::Auto("disk_space_low".into()));
    assert!(
        halt.reason.contains("100 MiB free, 256 MiB required"),
        "{}",
        halt.reason
    );
    assert!(
        env.coordinator
            .checklist()
            .unwrap()
            .missing()
            .contains(&"free_disk_space".to_owned())
    );
    // Resume is refused while the disk is still short.
    env.coordinator.begin_recovery("alice").await.unwrap();
    for item in env.coordinator.checklist().unwrap().missing() {
        env.coordinator
            .complete_item(&item, "alice", None)
            .await
            .unwrap();
    }
    assert!(env.coordinator.resume("alice").await.is_err());
}

#[tokio::test]
async fn a_witness_note_under_a_journaled_halt_is_journaled_once_on_restart() {
    let site = Site::new();
    {
        let env = site.open();
        env.coordinator.halt(HaltSource::Cli, "drill").await;
        halted(&env.coordinator).await;
        // A later halt that the journal could not record, kept only in the witness.
        env.coordinator
            .journal()
            .note_unjournaled_halt(gf_halt::UnjournaledHalt {
                source: HaltSource::Api("bob".into()),
                reason: "manual".into(),
                at: site.clock.now(),
            });
    }
    // Halted before and after: the note alone is worth a record, which clears it.
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    let restored = env.coordinator.journal().records(1).unwrap().pop().unwrap();
    assert_eq!(restored.kind, kinds::RESTORED);
    assert_eq!(restored.detail["from"], "halted");
    assert_eq!(restored.detail["to"], "halted");
    assert_eq!(restored.detail["unjournaled_halt"]["reason"], "manual");
    drop(env);
    let env = site.open();
    assert_eq!(env.coordinator.state(), HaltState::Halted);
    assert_eq!(count_kind(&site.db(), kinds::RESTORED), 1);
}
