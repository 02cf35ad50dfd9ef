//! Verifying a recording: replay every line through the books and check every checksum.
//! Backs `gf-daemon market verify FILE`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

use gf_core::Pair;

use crate::error::{Error, excerpt};
use crate::feed::{FeedProcessor, FeedStats, PairStats};

/// A line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The outcome of [`verify_recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Non-empty lines read.
    pub lines: u64,
    /// Per pair: messages, verified snapshots and updates, mismatches.
    pub pairs: BTreeMap<Pair, PairStats>,
    /// Lines that did not parse, with their numbers.
    pub unparseable: Vec<BadLine>,
    /// Lines whose message failed its checksum, with their numbers.
    pub mismatch_lines: Vec<u64>,
    /// The book depth used.
    pub depth: usize,
    /// All feed counters.
    pub stats: FeedStats,
}

impl VerifyReport {
    /// `true` when every checksum verified and every line parsed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.unparseable.is_empty() && self.mismatches() == 0
    }

    /// Checksum mismatches over all pairs.
    #[must_use]
    pub fn mismatches(&self) -> u64 {
        self.pairs.values().map(|p| p.mismatches).sum()
    }

    /// Verified updates over all pairs.
    #[must_use]
    pub fn updates_verified(&self) -> u64 {
        self.pairs.values().map(|p| p.updates_verified).sum()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>9} {:>10} {:>8}",
            "pair", "messages", "snapshots", "updates", "mismatches", "skipped"
        )?;
        for (pair, s) in &self.pairs {
            writeln!(
                f,
                "{:<12} {:>9} {:>9} {:>9} {:>10} {:>8}",
                pair.as_str(),
                s.messages,
                s.snapshots_verified,
                s.updates_verified,
                s.mismatches,
                s.updates_skipped
            )?;
        }
        writeln!(
            f,
            "lines: {}, depth: {}, unparseable: {}",
            self.lines,
            self.depth,
            self.unparseable.len()
        )?;
        for bad in &self.unparseable {
            writeln!(f, "  line {}: {}", bad.line, bad.reason)?;
        }
        for line in &self.mismatch_lines {
            writeln!(f, "  line {line}: checksum mismatch")?;
        }
        write!(f, "result: {}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

/// Verifies the recording at `path` (JSON lines, one raw v2 message per line). The book
/// depth is learnt from the recording (subscription ack or first snapshot).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("rec.jsonl");
/// std::fs::write(&path, "{\"channel\":\"heartbeat\"}\nnot json\n").unwrap();
/// let report = gf_market::verify::verify_recording(&path).unwrap();
/// assert!(!report.passed());
/// assert_eq!(report.unparseable[0].line, 2);
/// println!("{report}");
/// ```
///
/// # Errors
/// [`Error::Io`] when the file cannot be read. Bad lines are reported, not errors.
pub fn verify_recording(path: &Path) -> Result<VerifyReport, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    verify_reader(std::io::BufReader::new(file)).map_err(|e| Error::io(path, e))
}

/// Verifies a recording from any reader.
///
/// # Errors
/// The reader's I/O error.
pub fn verify_reader(mut reader: impl BufRead) -> Result<VerifyReport, std::io::Error> {
    let mut feed = FeedProcessor::with_auto_depth(None);
    let mut unparseable = Vec::new();
    let mut mismatch_lines = Vec::new();
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let (mut number, mut lines) = (0u64, 0u64);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        number += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        lines += 1;
        let before = feed.mismatches();
        events.clear();
        if let Err(err) = feed.process(text, &mut events) {
            unparseable.push(BadLine {
                line: number,
                reason: format!("{err}; text: {}", excerpt(text)),
            });
        }
        if feed.mismatches() > before {
            mismatch_lines.push(number);
        }
    }
    let stats = feed.stats();
    Ok(VerifyReport {
        lines,
        pairs: stats.pairs.clone(),
        unparseable,
        mismatch_lines,
        depth: feed.depth(),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0.00100000}],"checksum":2383917627}]}"#;

    #[test]
    fn reports_per_pair_counts_bad_lines_and_mismatches() {
        let corrupted = SNAP.replace("2383917627", "2383917628");
        let text = format!(
            "{SNAP}\n\n{{\"channel\":\"heartbeat\"}}\n{{broken\n{corrupted}\n\u{0}\u{fffd}\n"
        );
        let report = verify_reader(text.as_bytes()).unwrap();
        assert_eq!(report.lines, 5);
        assert!(!report.passed());
        let btc = &report.pairs[&"BTC/USD".parse::<Pair>().unwrap()];
        assert_eq!(
            (btc.messages, btc.snapshots_verified, btc.mismatches),
            (2, 1, 1)
        );
        assert_eq!(report.mismatch_lines, vec![5]);
        let lines: Vec<u64> = report.unparseable.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![4, 6]);
        let shown = report.to_string();
        assert!(shown.contains("BTC/USD"), "{shown}");
        assert!(shown.contains("line 4:"), "{shown}");
        assert!(shown.contains("line 5: checksum mismatch"), "{shown}");
        assert!(shown.ends_with("result: FAIL"), "{shown}");
    }

    #[test]
    fn clean_recording_passes() {
        let report = verify_reader(format!("{SNAP}\n").as_bytes()).unwrap();
        assert!(report.passed());
        assert_eq!(report.depth, 10);
        assert!(report.to_string().ends_with("result: PASS"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = verify_recording(Path::new("/nonexistent/rec.jsonl")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rec.jsonl"));
    }
}
