//! Verifying a recording: replay every line through the books and check every checksum.
//! Backs `gf-daemon market verify FILE`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Read};
use std::ops::Range;
use std::path::Path;

use gf_core::Pair;

use crate::error::{Error, excerpt};
use crate::fast::{self, RawLevel, TimestampCache};
use crate::feed::{FeedProcessor, FeedStats, PairStats};
use crate::message::DataKind;

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
    verify_read(file).map_err(|e| Error::io(path, e))
}

/// Verifies a recording from any reader.
///
/// # Errors
/// The reader's I/O error.
pub fn verify_reader(reader: impl BufRead + Send) -> Result<VerifyReport, std::io::Error> {
    verify_read(reader)
}

/// Bytes read at a time: large reads into reused buffers, no copy per line.
const CHUNK: usize = 1 << 18;

/// A chunk of whole lines, as the reading thread hands it over.
enum Chunk {
    /// Valid UTF-8 (checked on the reading thread; the buffer moved, not copied), its
    /// lines cut and book messages scanned there too.
    Text(Scanned),
    /// Not valid UTF-8: each line is converted on its own, invalid bytes replaced.
    Bytes(Vec<u8>),
}

/// The lines of a chunk of text as the reading thread saw them.
#[derive(Default)]
struct Scanned {
    text: String,
    /// Every line, empty ones too (they count for line numbers).
    lines: Vec<ScannedLine>,
    /// The levels of all scanned book messages, in order.
    levels: Vec<RawLevel>,
}

/// One line: its text without surrounding whitespace, and what the scanner read.
struct ScannedLine {
    text: Range<usize>,
    scan: Option<LineScan>,
}

/// A book message in the fast path's layout, its levels as written.
struct LineScan {
    kind: DataKind,
    symbol: Range<usize>,
    body: fast::Body,
    /// Its levels in [`Scanned::levels`], the first `bids` of them bids.
    levels: Range<usize>,
    bids: usize,
}

impl Scanned {
    /// Cuts `text` into lines and scans each (on the reading thread).
    fn of(text: String, mut into: Scanned, cache: &mut TimestampCache) -> Scanned {
        into.lines.clear();
        into.levels.clear();
        let mut scratch = (Vec::new(), Vec::new());
        let mut hint = fast::Hint::default();
        each_line(&text, |start, raw| {
            let line = trimmed(raw);
            // Whatever was trimmed at the front (nothing when the line starts with `{`).
            let at = start + (raw.len() - raw.trim_start().len());
            let first = into.levels.len();
            let scan = fast::prescan(
                line.as_bytes(),
                &mut into.levels,
                &mut scratch,
                cache,
                &mut hint,
            )
            .map(|(kind, symbol, body, bids)| LineScan {
                kind,
                symbol: at + symbol.start..at + symbol.end,
                body,
                levels: first..into.levels.len(),
                bids,
            });
            into.lines.push(ScannedLine {
                text: at..at + line.len(),
                scan,
            });
        });
        into.text = text;
        into
    }
}

/// Calls `f` with each line of `text` and where it starts (a final newline ends the last
/// line, it does not start another; nothing for empty text). Newlines are found with SIMD
/// (memchr); `\n` is ASCII, so every cut is on a character boundary.
fn each_line(text: &str, mut f: impl FnMut(usize, &str)) {
    if text.is_empty() {
        return;
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len())) {
        f(start, &text[start..end]);
        start = end + 1;
    }
}

/// A line without surrounding whitespace: a recorded message starts with `{` and ends
/// with `}`, and then there is nothing to trim.
fn trimmed(text: &str) -> &str {
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'{') && bytes.last() == Some(&b'}') {
        text
    } else {
        text.trim()
    }
}

/// Reads in large chunks on one thread and verifies their complete lines on this one:
/// reading (the kernel's copy), the UTF-8 check and the books overlap. A line longer
/// than a buffer grows it; buffers go back to the reader for reuse.
fn verify_read<R: Read + Send>(reader: R) -> Result<VerifyReport, std::io::Error> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Scanned>();
    std::thread::scope(|scope| {
        let reading = scope.spawn(move || read_chunks(reader, &full_tx, &empty_rx));
        let mut check = Check::new();
        for chunk in full_rx {
            let buf = match chunk {
                Chunk::Text(scanned) => {
                    check.scanned(&scanned);
                    scanned
                }
                Chunk::Bytes(bytes) => {
                    check.lossy(&bytes);
                    Scanned {
                        text: String::from_utf8(bytes).unwrap_or_default(),
                        ..Scanned::default()
                    }
                }
            };
            // The reader may have finished; then the buffer is simply dropped.
            let _ = empty_tx.send(buf);
        }
        match reading.join() {
            Ok(result) => result.map(|()| check.report()),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The reading thread: fills buffers, cuts each after its last newline (the rest starts
/// the next one), checks UTF-8, cuts the lines and scans the book messages, and sends
/// them on, until the end or an error.
fn read_chunks(
    mut reader: impl Read,
    full: &std::sync::mpsc::SyncSender<Chunk>,
    empty: &std::sync::mpsc::Receiver<Scanned>,
) -> Result<(), std::io::Error> {
    let mut rest: Vec<u8> = Vec::new();
    let mut cache = TimestampCache::default();
    loop {
        let mut recycled = empty.try_recv().unwrap_or_default();
        // A recycled buffer is overwritten, not cleared: only bytes beyond its old length
        // are zeroed (reads fill it anyway).
        let mut buf = std::mem::take(&mut recycled.text).into_bytes();
        buf.resize(buf.len().max(rest.len()), 0);
        buf[..rest.len()].copy_from_slice(&rest);
        buf.resize(CHUNK.max(2 * rest.len()), 0);
        let mut filled = rest.len();
        rest.clear();
        // Fill the buffer (small reads, as from a pipe, are gathered), then cut after
        // its last newline; a buffer without one grows.
        let mut eof = false;
        let end = loop {
            if filled == buf.len() {
                match memchr::memrchr(b'\n', &buf[..filled]) {
                    Some(i) => break i + 1,
                    None => buf.resize(buf.len() * 2, 0),
                }
            }
            let n = match reader.read(&mut buf[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                eof = true;
                break filled;
            }
            filled += n;
        };
        rest.extend_from_slice(&buf[end..filled]);
        buf.truncate(end);
        if !buf.is_empty() {
            let chunk = match String::from_utf8(buf) {
                Ok(text) => Chunk::Text(Scanned::of(text, recycled, &mut cache)),
                Err(e) => Chunk::Bytes(e.into_bytes()),
            };
            if full.send(chunk).is_err() {
                return Ok(()); // the verifier stopped
            }
        }
        if eof {
            return Ok(());
        }
    }
}

/// Verifies a recording held in memory: one message per line, surrounding whitespace
/// ignored.
#[must_use]
pub fn verify_bytes(bytes: &[u8]) -> VerifyReport {
    let mut check = Check::new();
    check.lines(bytes);
    check.report()
}

struct Check {
    feed: FeedProcessor,
    unparseable: Vec<BadLine>,
    mismatch_lines: Vec<u64>,
    /// Non-empty lines.
    lines: u64,
    /// Lines seen, empty ones too (line numbers).
    number: u64,
}

impl Check {
    fn new() -> Self {
        Check {
            feed: FeedProcessor::with_auto_depth(None),
            unparseable: Vec::new(),
            mismatch_lines: Vec::new(),
            lines: 0,
            number: 0,
        }
    }

    /// Whole lines (a final newline ends the last one, it does not start another). The
    /// text is checked as UTF-8 once; only when that fails is each line converted on its
    /// own (invalid bytes replaced), so bad lines are still reported by number.
    fn lines(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.text(text),
            Err(_) => self.lossy(bytes),
        }
    }

    /// [`Self::lines`] of text known to be UTF-8.
    fn text(&mut self, text: &str) {
        each_line(text, |_, line| {
            self.number += 1;
            self.line(self.number, line);
        });
    }

    /// [`Self::lines`] of bytes that are not all UTF-8.
    fn lossy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        for line in bytes.split(|b| *b == b'\n') {
            self.number += 1;
            self.line(self.number, &String::from_utf8_lossy(line));
        }
    }

    /// The lines of a chunk the reading thread cut and scanned.
    fn scanned(&mut self, s: &Scanned) {
        for line in &s.lines {
            self.number += 1;
            let text = &s.text[line.text.clone()];
            let scan = line.scan.as_ref().map(|l| {
                let (bids, asks) = s.levels[l.levels.clone()].split_at(l.bids);
                fast::Prescan {
                    kind: l.kind,
                    symbol: &s.text.as_bytes()[l.symbol.clone()],
                    body: l.body,
                    bids,
                    asks,
                }
            });
            self.line_with(self.number, text, |feed, text| {
                feed.process_prescanned(text, scan.as_ref())
            });
        }
    }

    fn line(&mut self, number: u64, text: &str) {
        self.line_with(number, text, FeedProcessor::process_without_events);
    }

    /// One line through `process` (the feed's quiet processing), its outcome recorded.
    fn line_with(
        &mut self,
        number: u64,
        text: &str,
        process: impl FnOnce(&mut FeedProcessor, &str) -> Result<(), Error>,
    ) {
        let text = trimmed(text);
        if text.is_empty() {
            return;
        }
        self.lines += 1;
        let before = self.feed.mismatches();
        if let Err(err) = process(&mut self.feed, text) {
            self.unparseable.push(BadLine {
                line: number,
                reason: format!("{err}; text: {}", excerpt(text)),
            });
        }
        if self.feed.mismatches() > before {
            self.mismatch_lines.push(number);
        }
    }

    fn report(self) -> VerifyReport {
        let Check {
            feed,
            unparseable,
            mismatch_lines,
            lines,
            ..
        } = self;
        let stats = feed.stats();
        VerifyReport {
            lines,
            pairs: stats.pairs.clone(),
            unparseable,
            mismatch_lines,
            depth: feed.depth(),
            stats,
        }
    }
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

    /// A reader that returns a few bytes at a time, so lines straddle reads.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn chunking_and_line_numbers_do_not_depend_on_reads() {
        let corrupted = SNAP.replace("2383917627", "2383917628");
        let text = format!(
            "{SNAP}\n\n{{\"channel\":\"heartbeat\"}}\n{{broken\n{corrupted}\n\u{0}\u{fffd}\n\n{SNAP}"
        );
        let whole = verify_bytes(text.as_bytes());
        assert_eq!(whole.lines, 6);
        assert_eq!(whole.mismatch_lines, vec![5]);
        for step in [1, 7, 100, 4096] {
            let report = verify_read(Trickle(text.as_bytes(), step)).unwrap();
            assert_eq!(report, whole, "reads of {step} bytes");
        }
        // Invalid UTF-8 is reported on its own line; the other lines still verify.
        let mut bytes = format!("{SNAP}\n").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        bytes.extend_from_slice(SNAP.as_bytes());
        let report = verify_read(Trickle(&bytes, 5)).unwrap();
        let lines: Vec<u64> = report.unparseable.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2]);
        assert_eq!(report.pairs.values().next().unwrap().snapshots_verified, 2);
    }

    /// Many chunks' worth, a line longer than a chunk in the middle, read from a real
    /// file by the reading thread: the same report as verifying the bytes in memory.
    #[test]
    fn multi_chunk_file_with_a_giant_line_equals_in_memory() {
        let corrupted = SNAP.replace("2383917627", "2383917628");
        let mut text = String::new();
        for i in 0..12_000 {
            text.push_str(if i == 7_777 { &corrupted } else { SNAP });
            text.push('\n');
            if i == 5_000 {
                text.push_str(&format!(
                    "{{\"x\":\"{}\"}}\n",
                    "a".repeat(CHUNK + CHUNK / 2)
                ));
            }
        }
        assert!(text.len() > 3 * CHUNK);
        let whole = verify_bytes(text.as_bytes());
        assert_eq!(whole.lines, 12_001);
        assert_eq!(whole.mismatch_lines, vec![7_779]);
        let bad: Vec<u64> = whole.unparseable.iter().map(|b| b.line).collect();
        assert_eq!(bad, vec![5_002]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(verify_recording(&path).unwrap(), whole);
        // No final newline: the last line still counts.
        let trimmed = text.trim_end();
        assert_eq!(verify_reader(trimmed.as_bytes()).unwrap(), whole);
    }

    /// A reader that fails half-way: the error comes back; nothing hangs or panics.
    #[test]
    fn a_read_error_half_way_is_returned() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk went away"));
                }
                let line = format!("{SNAP}\n");
                let n = line.len().min(buf.len());
                buf[..n].copy_from_slice(&line.as_bytes()[..n]);
                self.0 -= 1;
                Ok(n)
            }
        }
        for good_reads in [0, 1, 20_000] {
            let err = verify_read(Failing(good_reads)).unwrap_err();
            assert!(err.to_string().contains("disk went away"), "{err}");
        }
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
