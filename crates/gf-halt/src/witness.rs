//! The journal's witness: the head of the chain (record id and MAC), written outside the
//! data directory after every commit, so that a journal rolled back to an older copy, cut
//! short, or replaced is detected even when its own rows are consistent.
//!
//! One small JSON file per data directory, named by the data directory's identity, under
//! the witness directory (by default beside the journal key). It is replaced atomically
//! (temporary file, `fsync`, rename, `fsync` of the directory), so a crash leaves the old
//! or the new head, never a torn one. A witness *behind* the journal is normal (a crash
//! between the commit and the witness write); one *ahead* of it, or naming a MAC the
//! journal does not hold at that id, is a rollback.
//!
//! The witness also carries a halt that could not be journaled (the journal was
//! unwritable): a restart honours it, so a halt accepted in memory is not forgotten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use gf_core::HaltSource;

use crate::error::Error;
use crate::key::{create_private_dir, private_file_options, sync_dir};

/// File-name suffix of witness files.
pub const WITNESS_SUFFIX: &str = ".witness.json";

/// A halt that was in force in memory but could not be journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnjournaledHalt {
    /// Who or what triggered it.
    pub source: HaltSource,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a witness file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessRecord {
    /// The data directory's identity (its `IDENTITY` marker and genesis record).
    pub data_dir_id: String,
    /// The data directory's path when it was written (to recognise a data directory whose
    /// identity marker was removed).
    pub data_dir: String,
    /// Id of the last record committed.
    pub record_id: i64,
    /// Its MAC.
    pub mac: String,
    /// When this witness was written.
    pub written_at: DateTime<Utc>,
    /// A halt in force that the journal could not record.
    #[serde(default)]
    pub unjournaled_halt: Option<UnjournaledHalt>,
}

/// Where one data directory's witness lives.
#[derive(Debug, Clone)]
pub struct Witness {
    dir: PathBuf,
    data_dir_id: String,
    data_dir: String,
}

fn witness_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Witness {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl Witness {
    /// The witness of the data directory `data_dir` (identity `data_dir_id`) under `dir`.
    #[must_use]
    pub fn new(dir: &Path, data_dir_id: &str, data_dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            data_dir_id: data_dir_id.to_owned(),
            data_dir: data_dir.display().to_string(),
        }
    }

    /// The witness file.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.dir
            .join(format!("{}{WITNESS_SUFFIX}", self.data_dir_id))
    }

    /// The data directory's identity.
    #[must_use]
    pub fn data_dir_id(&self) -> &str {
        &self.data_dir_id
    }

    /// Reads the witness; `None` when there is none yet.
    ///
    /// # Errors
    /// [`Error::Witness`] when it exists but cannot be read or parsed, or names another
    /// data directory identity.
    pub fn read(&self) -> Result<Option<WitnessRecord>, Error> {
        let path = self.path();
        let rec = match read_witness(&path)? {
            None => return Ok(None),
            Some(r) => r,
        };
        if rec.data_dir_id != self.data_dir_id {
            return Err(witness_error(
                &path,
                format!(
                    "names data directory identity {}, expected {}",
                    rec.data_dir_id, self.data_dir_id
                ),
            ));
        }
        Ok(Some(rec))
    }

    /// Writes the witness atomically.
    ///
    /// # Errors
    /// [`Error::Witness`] when the directory or the file cannot be written.
    pub fn write(
        &self,
        record_id: i64,
        mac: &str,
        now: DateTime<Utc>,
        unjournaled_halt: Option<UnjournaledHalt>,
    ) -> Result<(), Error> {
        let path = self.path();
        create_private_dir(&self.dir).map_err(|e| witness_error(&path, e))?;
        let rec = WitnessRecord {
            data_dir_id: self.data_dir_id.clone(),
            data_dir: self.data_dir.clone(),
            record_id,
            mac: mac.to_owned(),
            written_at: now,
            unjournaled_halt,
        };
        let text =
            serde_json::to_vec_pretty(&rec).map_err(|e| witness_error(&path, e.to_string()))?;
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", self.data_dir_id, std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f = private_file_options().open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(witness_error(&path, e.to_string()));
        }
        sync_dir(&self.dir);
        Ok(())
    }
}

fn read_witness(path: &Path) -> Result<Option<WitnessRecord>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(witness_error(path, e.to_string())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| witness_error(path, format!("unreadable: {e}")))
}

/// Every witness under `dir` that was written for the data directory at `data_dir` (by
/// path), whatever its identity. A missing witness directory holds none.
///
/// # Errors
/// [`Error::Witness`] when the directory cannot be listed.
pub fn witnesses_of_path(dir: &Path, data_dir: &Path) -> Result<Vec<WitnessRecord>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(witness_error(dir, e.to_string())),
    };
    let want = data_dir.display().to_string();
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(WITNESS_SUFFIX) {
            continue;
        }
        // A witness that cannot be read is not evidence either way.
        if let Ok(Some(rec)) = read_witness(&entry.path())
            && rec.data_dir == want
        {
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = Witness::new(&dir.path().join("w"), "abc", Path::new("/srv/data"));
        assert_eq!(w.read().unwrap(), None);
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        w.write(7, "mac7", now, None).unwrap();
        let rec = w.read().unwrap().unwrap();
        assert_eq!((rec.record_id, rec.mac.as_str()), (7, "mac7"));
        w.write(8, "mac8", now, None).unwrap();
        assert_eq!(w.read().unwrap().unwrap().record_id, 8);
        let found = witnesses_of_path(&dir.path().join("w"), Path::new("/srv/data")).unwrap();
        assert_eq!(found.len(), 1);
        assert!(
            witnesses_of_path(&dir.path().join("w"), Path::new("/srv/other"))
                .unwrap()
                .is_empty()
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("w"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["abc.witness.json"], "no temporary file left");
    }
}
