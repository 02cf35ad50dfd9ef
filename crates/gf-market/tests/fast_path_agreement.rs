//! The fast path (hand scanner, integer books) and the general serde path agree on every
//! message, valid or not: same result or error, same events (compared as JSON, so the
//! decimals' scales count), same counters, resyncs and book state after each message.

#![allow(clippy::unwrap_used)]

use gf_core::{Pair, Payload};
use gf_market::fixtures::book_stream;
use gf_market::{BookSide, FeedProcessor};
use proptest::prelude::*;

/// Bytes that matter to the scanner and to JSON.
const INTERESTING: &[u8] = b"0123456789.-+eE\"\\,:{}[] aZ/\t";

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at a position with an interesting one.
    Replace(usize, u8),
    /// Delete the byte at a position.
    Delete(usize),
    /// Insert an interesting byte.
    Insert(usize, u8),
    /// Append digits after the digit at or after a position (more than the precision).
    MoreDigits(usize),
    /// Corrupt the checksum's last digit.
    Checksum,
    /// Drop the message.
    Drop,
    /// Send it twice.
    Twice,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop::sample::select(INTERESTING.to_vec());
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(p, b)| Mutation::Replace(p, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), byte).prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::MoreDigits),
        Just(Mutation::Checksum),
        Just(Mutation::Drop),
        Just(Mutation::Twice),
    ]
}

fn mutate(line: &str, m: &Mutation) -> Vec<String> {
    let mut b = line.as_bytes().to_vec();
    let at = |p: usize| p % b.len().max(1);
    match m {
        Mutation::Replace(p, c) => {
            let i = at(*p);
            b[i] = *c;
        }
        Mutation::Delete(p) => {
            let i = at(*p);
            b.remove(i);
        }
        Mutation::Insert(p, c) => {
            let i = at(*p);
            b.insert(i, *c);
        }
        Mutation::MoreDigits(p) => {
            let start = at(*p);
            if let Some(i) = b[start..].iter().position(u8::is_ascii_digit) {
                b.splice(start + i + 1..start + i + 1, *b"0000000001");
            }
        }
        Mutation::Checksum => {
            let text = String::from_utf8(b).unwrap();
            return vec![match text.find(r#""checksum":"#) {
                Some(i) => {
                    let digit = i + r#""checksum":"#.len();
                    let mut t = text.into_bytes();
                    t[digit] = if t[digit] == b'9' { b'1' } else { t[digit] + 1 };
                    String::from_utf8(t).unwrap()
                }
                None => text,
            }];
        }
        Mutation::Drop => return Vec::new(),
        Mutation::Twice => return vec![line.to_owned(), line.to_owned()],
    }
    // Mutations may split a UTF-8 sequence: only ASCII goes in, so this is lossless.
    vec![String::from_utf8_lossy(&b).into_owned()]
}

/// The instrument line with other precisions, or none at all.
fn precision_variant(instrument: &str, variant: u8) -> Option<String> {
    let with = |p: u32, q: u32| {
        instrument
            .replace(
                r#""price_precision":5"#,
                &format!(r#""price_precision":{p}"#),
            )
            .replace(r#""qty_precision":8"#, &format!(r#""qty_precision":{q}"#))
    };
    match variant {
        0 => Some(instrument.to_owned()),
        1 => None,              // precision unknown: numbers count as written
        2 => Some(with(3, 4)),  // fewer digits than the wire: decimal books
        3 => Some(with(7, 10)), // more digits: values fit, checksums differ
        _ => Some(with(19, 8)), // beyond what the integer form holds
    }
}

fn json(out: &[Payload]) -> Vec<String> {
    out.iter()
        .map(|p| serde_json::to_string(p).unwrap())
        .collect()
}

fn book_state(feed: &FeedProcessor, pair: &Pair) -> Option<(Vec<String>, u32)> {
    let book = feed.book(pair)?;
    let show = |side| -> Vec<String> {
        book.side_iter(side)
            .map(|l| format!("{}@{}", l.qty, l.price))
            .collect()
    };
    let mut levels = show(BookSide::Bid);
    levels.push("|".into());
    levels.extend(show(BookSide::Ask));
    // The incremental checksum equals the readable one.
    let asks = book.top(BookSide::Ask, 10);
    let bids = book.top(BookSide::Bid, 10);
    assert_eq!(
        book.checksum(),
        gf_market::checksum::checksum(&asks, &bids, book.precision())
    );
    Some((levels, book.checksum()))
}

/// Feeds `lines` through a fast and a general processor and asserts they agree after
/// every line; both with and without events.
fn assert_agree(lines: &[String], auto_depth: bool) {
    let new = |fast: bool| {
        let mut f = if auto_depth {
            FeedProcessor::with_auto_depth(None)
        } else {
            FeedProcessor::new(10, None)
        };
        f.set_fast_path(fast);
        f
    };
    let (mut fast, mut general, mut quiet) = (new(true), new(false), new(true));
    let pair: Pair = "XRP/USD".parse().unwrap();
    let (mut out_f, mut out_g) = (Vec::new(), Vec::new());
    for (n, line) in lines.iter().enumerate() {
        out_f.clear();
        out_g.clear();
        let rf = fast.process(line, &mut out_f).map_err(|e| e.to_string());
        let rg = general.process(line, &mut out_g).map_err(|e| e.to_string());
        let rq = quiet
            .process_without_events(line)
            .map_err(|e| e.to_string());
        assert_eq!(rf, rg, "line {n}: {line}");
        assert_eq!(rq, rg.map(|_| ()), "line {n}: {line}");
        assert_eq!(json(&out_f), json(&out_g), "line {n}: {line}");
        assert_eq!(fast.stats(), general.stats(), "line {n}: {line}");
        assert_eq!(quiet.stats(), general.stats(), "line {n}: {line}");
        assert_eq!(fast.depth(), general.depth());
        let resyncs = general.take_resyncs();
        assert_eq!(fast.take_resyncs(), resyncs, "line {n}");
        assert_eq!(quiet.take_resyncs(), resyncs, "line {n}");
        let state = book_state(&general, &pair);
        assert_eq!(book_state(&fast, &pair), state, "line {n}: {line}");
        assert_eq!(book_state(&quiet, &pair), state, "line {n}: {line}");
    }
}

fn stream_lines(depth: usize, updates: usize, seed: u64, variant: u8) -> Vec<String> {
    let s = book_stream(depth, updates, seed);
    let mut lines = vec![s.header[0].clone()];
    lines.extend(precision_variant(&s.header[1], variant));
    lines.push(s.snapshot);
    lines.extend(s.updates);
    lines
}

#[test]
fn clean_streams_agree_at_every_depth_and_precision() {
    for depth in [10, 25, 100, 1000] {
        for variant in 0..5 {
            let lines = stream_lines(depth, 200, depth as u64 + u64::from(variant), variant);
            assert_agree(&lines, true);
            assert_agree(&lines, false);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn prop_fast_and_general_paths_agree_on_mutated_streams(
        seed in any::<u64>(),
        depth in prop::sample::select(vec![10usize, 25, 100]),
        variant in 0u8..5,
        auto_depth in any::<bool>(),
        mutations in prop::collection::vec((0usize..40, mutation()), 0..12),
    ) {
        let clean = stream_lines(depth, 30, seed, variant);
        let mut lines: Vec<Vec<String>> = clean.iter().map(|l| vec![l.clone()]).collect();
        for (at, m) in &mutations {
            let i = at % lines.len();
            let base = lines[i].first().cloned().unwrap_or_else(|| clean[i].clone());
            lines[i] = mutate(&base, m);
        }
        let lines: Vec<String> = lines.into_iter().flatten().collect();
        assert_agree(&lines, auto_depth);
    }

    #[test]
    fn prop_arbitrary_book_shaped_text_agrees(
        bids in prop::collection::vec((number(), number()), 0..4),
        asks in prop::collection::vec((number(), number()), 0..3),
        checksum in prop_oneof![Just("0".to_owned()), "[0-9-]{1,11}"],
        timestamp in prop_oneof![
            Just(String::new()),
            Just(r#","timestamp":"2026-03-02T14:00:00.5Z""#.to_owned()),
            r#","timestamp":"[0-9TZ:.+-]{0,30}""#,
        ],
        kind in prop::sample::select(vec!["update", "snapshot", "Update"]),
    ) {
        let levels = |v: &[(String, String)]| -> String {
            v.iter()
                .map(|(p, q)| format!(r#"{{"price":{p},"qty":{q}}}"#))
                .collect::<Vec<_>>()
                .join(",")
        };
        let s = book_stream(10, 1, 1);
        let msg = format!(
            r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"XRP/USD","bids":[{}],"asks":[{}],"checksum":{checksum}{timestamp}}}]}}"#,
            levels(&bids),
            levels(&asks),
        );
        let lines = vec![s.header[1].clone(), s.snapshot.clone(), msg.clone(), s.snapshot, msg];
        assert_agree(&lines, false);
    }
}

/// Numbers as the wire may carry them, with the edge cases near the scanner's limits.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u64..300_000, 0u32..7).prop_map(|(m, s)| {
            rust_decimal::Decimal::new(i64::try_from(m).unwrap(), s).to_string()
        }),
        1 => prop::sample::select(vec![
            "0", "0.0", "00", "-0", "0.00000000", "1e5", "1E-8", "-1", "2.", ".5", "1.000000001",
            "\"2.5\"", "18446744073709551615", "184467440737.09551616", "99999999999.99999999",
            "1.234567890123456789", "2.18450", "2.184500000",
        ])
        .prop_map(str::to_owned),
        1 => "[0-9.eE+-]{1,22}",
    ]
}
