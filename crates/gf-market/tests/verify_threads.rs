//! `verify` reads, cuts and scans on one thread and applies the books on another; the
//! report must be exactly the one the single-threaded path gives for the same bytes,
//! whatever the bytes: generated recordings with random edits (broken checksums, broken
//! numbers, broken structure, invalid UTF-8, extra whitespace and empty lines) read in
//! reads of uneven sizes.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use gf_market::fixtures::book_stream;
use gf_market::verify::{verify_bytes, verify_reader};
use proptest::prelude::*;

/// A reader whose reads return uneven amounts: `sizes` in turn (each at least 1).
struct Uneven<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Uneven<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = size.min(self.data.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl std::io::BufRead for Uneven<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        Ok(self.data)
    }
    fn consume(&mut self, amt: usize) {
        self.data = &self.data[amt..];
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
        sizes in prop::collection::vec(prop_oneof![1usize..300, Just(1 << 22)], 1..5),
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
        let two = verify_reader(Uneven { data: &bytes, sizes, turn: 0 }).unwrap();
        prop_assert_eq!(&two, &one);
        if edits.is_empty() && line_edits.iter().all(|(_, op)| *op < 3) {
            prop_assert!(one.passed(), "{}", one);
        }
    }
}
