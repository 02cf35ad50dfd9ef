//! `verify` reads, cuts and scans on one thread and applies the books on another; the
//! report must be exactly the one the single-threaded path gives for the same bytes,
//! whatever the bytes: generated recordings with random edits (broken checksums, broken
//! numbers, broken structure, invalid UTF-8, extra whitespace and empty lines) read in
//! reads of random sizes.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use gf_market::fixtures::book_stream;
use gf_market::verify::{verify_bytes, verify_reader};
use proptest::prelude::*;

/// A reader that returns at most `step` bytes per read.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(self.0.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

impl std::io::BufRead for Trickle<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let n = self.1.min(self.0.len());
        Ok(&self.0[..n])
    }
    fn consume(&mut self, amt: usize) {
        self.0 = &self.0[amt..];
    }
}

/// Bytes an edit writes: the ones that matter to the scanner, and any byte.
fn edit_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => proptest::sample::select(b"0123456789.,:{}[]\" \n-eEZ\\".to_vec()),
        1 => any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn two_threads_report_what_one_does(
        seed in 0u64..1_000,
        depth in prop::sample::select(vec![10usize, 25, 100]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit_byte()), 0..40),
        line_edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..6), 0..6),
        step in prop::sample::select(vec![1usize, 97, 4096, 1 << 22]),
    ) {
        let recording = book_stream(depth, 120, seed).recording();
        let mut lines: Vec<String> = recording.lines().map(str::to_owned).collect();
        for (at, op) in &line_edits {
            let i = at.index(lines.len());
            match op {
                0 => lines[i].insert_str(0, " \t"),
                1 => lines[i].push_str("  "),
                2 => lines.insert(i, String::new()),
                // Without the subscription acknowledgement the depth is learnt from the
                // first snapshot; without the instrument message the precision is unknown.
                3 => {
                    lines.retain(|l| !l.contains(r#""method":"subscribe""#));
                }
                // An update before the snapshot (the book exists before its depth is
                // known when the acknowledgement is gone too).
                5 => {
                    if let Some(j) = lines.iter().position(|l| l.contains(r#""type":"snapshot""#))
                        && j + 1 < lines.len()
                    {
                        lines.swap(j, j + 1);
                    }
                }
                _ => {
                    lines.remove(1.min(lines.len() - 1));
                }
            }
        }
        let mut bytes = lines.join("\n").into_bytes();
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        let one = verify_bytes(&bytes);
        let two = verify_reader(Trickle(&bytes, step)).unwrap();
        prop_assert_eq!(&two, &one);
        if edits.is_empty() && line_edits.iter().all(|(_, op)| *op < 3) {
            prop_assert!(one.passed(), "{}", one);
        }
    }
}
