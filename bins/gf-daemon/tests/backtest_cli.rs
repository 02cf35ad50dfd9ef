//! `gf-daemon backtest` as a user runs it: the real binary, in a temporary directory with
//! `HOME` and the XDG directories pointed into it. Same input ⇒ byte-identical output
//! across processes; `--data FILE` is the bundled scenario when it holds the same bytes;
//! sweeps print their grid in order; bad input gives one clear line and a failure; and a
//! recording that spans UTC midnight rolls the daily drawdown at midnight of event time.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, Duration, TimeZone, Utc};
use gf_core::{Config, Level, Pair};
use gf_market::checksum::checksum;
use gf_strategy::StrategyKind;
use gf_strategy::backtest::{Backtest, Run};
use rust_decimal::Decimal;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gf-daemon");

/// `gf-daemon backtest ARGS` run in `root`, with nothing of the real `$HOME` in reach.
fn backtest(root: &Path, args: &[&str]) -> Output {
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    Command::new(BIN)
        .current_dir(root)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("GF_JOURNAL__KEY_FILE", root.join("keys/journal.key"))
        .env("GF_JOURNAL__WITNESS_DIR", root.join("keys/witness"))
        .env_remove("GF_TOKEN")
        .arg("backtest")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Asserts success, showing stderr otherwise.
fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "gf-daemon backtest failed ({}): {}",
        out.status,
        stderr(&out)
    );
    out
}

// ------------------------------------------------------------------ (1) determinism

#[test]
fn two_processes_give_byte_identical_journal_report_and_stdout() {
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let report = dir.path().join("report.html");
        let out = ok(backtest(
            dir.path(),
            &[
                "--scenario",
                "crash",
                "--journal",
                journal.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
                "--json",
            ],
        ));
        outputs.push((
            std::fs::read(&journal).unwrap(),
            std::fs::read(&report).unwrap(),
            out.stdout,
        ));
    }
    let (a, b) = (&outputs[0], &outputs[1]);
    assert!(!a.0.is_empty() && !a.1.is_empty() && !a.2.is_empty());
    assert!(a.0 == b.0, "the journals differ between processes");
    assert!(a.1 == b.1, "the HTML reports differ between processes");
    assert!(a.2 == b.2, "stdout differs between processes");

    // And what was compared is the crash's halt, not an empty run.
    let json: Value = serde_json::from_slice(&a.2).unwrap();
    assert_eq!(json["run"]["halts"][0]["source"], "auto:max_daily_drawdown");
    let journal = String::from_utf8(a.0.clone()).unwrap();
    assert!(journal.lines().count() > 1, "{journal}");
    assert!(journal.contains("max_daily_drawdown"), "{journal}");
    let html = String::from_utf8(a.1.clone()).unwrap();
    assert!(html.contains("auto:max_daily_drawdown"));
}

// ------------------------------------------------------------------ (2) --data FILE

/// The report without the recording's name (which says where the bytes came from).
fn without_name(stdout: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(stdout).unwrap();
    let name = v
        .as_object_mut()
        .unwrap()
        .remove("recording")
        .expect("the report names its recording");
    assert!(name.is_string());
    v
}

#[test]
fn a_recording_file_backtests_like_the_bundled_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crash-copy.jsonl");
    std::fs::write(&file, gf_market::bundled::CRASH).unwrap();
    let bundled = ok(backtest(dir.path(), &["--scenario", "crash", "--json"]));
    let from_file = ok(backtest(
        dir.path(),
        &[
            "--data",
            file.to_str().unwrap(),
            "--strategy",
            "hold_long",
            "--json",
        ],
    ));
    let named: Value = serde_json::from_slice(&from_file.stdout).unwrap();
    assert_eq!(named["recording"], "crash-copy.jsonl");
    let (a, b) = (
        without_name(&bundled.stdout),
        without_name(&from_file.stdout),
    );
    assert_eq!(a["run"]["halts"][0]["source"], "auto:max_daily_drawdown");
    assert!(
        a == b,
        "--data with the crash's bytes differs from --scenario crash"
    );

    // The summary names the file.
    let text = ok(backtest(
        dir.path(),
        &["--data", file.to_str().unwrap(), "--strategy", "hold_long"],
    ));
    let summary = stdout(&text);
    assert!(
        summary.starts_with("backtest crash-copy.jsonl with hold_long"),
        "{summary}"
    );
    assert!(summary.contains("auto:max_daily_drawdown"), "{summary}");
}

// ------------------------------------------------------------------ (3) sweeps

/// The time of a sweep point's first halt (`"<rfc3339> <source>"`).
fn first_halt(point: &Value) -> DateTime<Utc> {
    let text = point["first_halt"]
        .as_str()
        .unwrap_or_else(|| panic!("{point}"));
    let (at, source) = text.split_once(' ').unwrap();
    assert_eq!(source, "auto:max_daily_drawdown", "{text}");
    DateTime::parse_from_rfc3339(at)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn a_sweep_prints_its_grid_in_order_and_a_tighter_threshold_halts_earlier() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = "halt.max_daily_drawdown_pct=1,2,3";
    let out = ok(backtest(
        dir.path(),
        &["--scenario", "crash", "--sweep", sweep, "--jobs", "2"],
    ));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows: {text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header.first(),
        Some(&"halt.max_daily_drawdown_pct"),
        "{text}"
    );
    assert!(header.contains(&"first_halt"), "{text}");
    let firsts: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(firsts, ["1", "2", "3"], "grid order: {text}");

    let out = ok(backtest(
        dir.path(),
        &[
            "--scenario",
            "crash",
            "--sweep",
            sweep,
            "--jobs",
            "2",
            "--json",
        ],
    ));
    let points: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(points.len(), 3);
    for (p, v) in points.iter().zip(["1", "2", "3"]) {
        assert_eq!(p["settings"][0][1], v);
    }
    let times: Vec<DateTime<Utc>> = points.iter().map(first_halt).collect();
    assert!(times[0] < times[1] && times[1] < times[2], "{times:?}");
}

#[test]
fn a_two_key_sweep_prints_the_product_of_its_axes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--scenario",
        "crash",
        "--sweep",
        "halt.max_daily_drawdown_pct=1,3",
        "--sweep",
        "halt.max_total_drawdown_pct=10,15,20",
        "--jobs",
        "2",
    ];
    let text = stdout(&ok(backtest(dir.path(), &args)));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().take(2).collect();
    assert_eq!(
        header,
        ["halt.max_daily_drawdown_pct", "halt.max_total_drawdown_pct"]
    );
    let cells: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap(), w.next().unwrap())
        })
        .collect();
    assert_eq!(
        cells,
        [
            ("1", "10"),
            ("1", "15"),
            ("1", "20"),
            ("3", "10"),
            ("3", "15"),
            ("3", "20")
        ]
    );
}

// ------------------------------------------------------------------ (4) bad input

/// Fails with exactly one non-empty line on stderr containing every `expected` part, and
/// nothing on stdout.
fn refused(root: &Path, args: &[&str], expected: &[&str]) {
    let out = backtest(root, args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line on stderr, got {err:?}");
    assert!(
        lines[0].starts_with("gf-daemon: error: "),
        "{args:?}: {err}"
    );
    for part in expected {
        assert!(lines[0].contains(part), "{args:?}: {part:?} in {err:?}");
    }
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", stdout(&out));
}

#[test]
fn bad_input_fails_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let missing = root.join("no-such-recording.jsonl");
    refused(
        root,
        &["--data", missing.to_str().unwrap()],
        &["cannot read the recording", "no-such-recording.jsonl"],
    );

    let untimed = root.join("untimed.jsonl");
    std::fs::write(
        &untimed,
        "{\"channel\":\"status\",\"type\":\"update\",\"data\":[{\"system\":\"online\"}]}\n\
         {\"channel\":\"heartbeat\"}\n",
    )
    .unwrap();
    refused(
        root,
        &["--data", untimed.to_str().unwrap()],
        &["no message with a timestamp"],
    );

    refused(
        root,
        &["--scenario", "crash", "--sweep", "nokey"],
        &["--sweep", "nokey", "KEY=V1,V2"],
    );
    refused(
        root,
        &["--scenario", "crash", "--sweep", "halt.no_such_key=1"],
        &["halt.no_such_key"],
    );
    refused(
        root,
        &[
            "--scenario",
            "crash",
            "--sweep",
            "halt.max_daily_drawdown_pct=1,2",
            "--sweep",
            "halt.max_total_drawdown_pct=10",
            "--sweep",
            "risk.risk_per_trade_pct=1",
        ],
        &["one or two keys"],
    );
}

// ------------------------------------------------------------------ (5) UTC midnight

/// A one-pair book recording, every message checksummed with gf-market's own CRC32 code:
/// a snapshot, then an update every two seconds with the mid at each price in `mids`
/// (one level a side, a hundredth of a cent either side of the mid).
fn recording(pair: &str, start: DateTime<Utc>, mids: &[Decimal]) -> Vec<u8> {
    let qty = |i: usize| Decimal::new(100_000_000_000_000 + i64::try_from(i % 2).unwrap(), 8);
    let tick = Decimal::new(10, 5);
    let level = |price: Decimal, qty: Decimal| Level { price, qty };
    let json = |levels: &[Level]| {
        let parts: Vec<String> = levels
            .iter()
            .map(|l| format!(r#"{{"price":{},"qty":{}}}"#, l.price, l.qty))
            .collect();
        format!("[{}]", parts.join(","))
    };
    let mut out = String::new();
    let mut prev: Option<(Level, Level)> = None;
    for (i, mid) in mids.iter().enumerate() {
        let mid = mid.round_dp(5);
        let (bid, ask) = (level(mid - tick, qty(i)), level(mid + tick, qty(i)));
        let ck = checksum(&[ask], &[bid], None);
        let at = (start + Duration::seconds(2 * i64::try_from(i).unwrap()))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let (kind, bids, asks) = match prev {
            None => ("snapshot", vec![bid], vec![ask]),
            Some((pb, pa)) => {
                // Kraken's updates: the changed level, and the old one removed (`qty` 0)
                // when the price moved.
                let side = |old: Level, new: Level| {
                    if old.price == new.price {
                        vec![new]
                    } else {
                        vec![level(old.price, Decimal::ZERO), new]
                    }
                };
                ("update", side(pb, bid), side(pa, ask))
            }
        };
        let _ = writeln!(
            out,
            r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"{pair}","bids":{},"asks":{},"checksum":{ck},"timestamp":"{at}"}}]}}"#,
            json(&bids),
            json(&asks),
        );
        prev = Some((bid, ask));
    }
    out.into_bytes()
}

/// The price path: flat while `HoldLong` buys, down `drop_pct` %, flat for `flat` messages
/// (across midnight in the two-day recording), down `drop_pct` % again, flat.
fn path(drop_pct: i64, flat: usize) -> Vec<Decimal> {
    let drop = Decimal::new(drop_pct, 2);
    let mut p = Decimal::TWO;
    let mut mids = vec![p; 40];
    for leg in 0..2 {
        let start = p;
        for k in 1..=150 {
            mids.push(start - start * drop * Decimal::from(k) / Decimal::from(150));
        }
        p = start * (Decimal::ONE - drop);
        mids.extend(std::iter::repeat_n(p, if leg == 0 { flat } else { 20 }));
    }
    mids
}

/// One pair watched and traded (the recording has no other), and the other conditions out
/// of the way: only the drawdowns are under test.
fn one_pair_config() -> Config {
    let mut config = Config::default();
    config.market.pairs = vec![Pair::new("XRP/USD").unwrap()];
    config.halt.max_volatility_pct = Decimal::from(90);
    config.halt.max_daily_drawdown_pct = Decimal::TWO;
    config.halt.max_total_drawdown_pct = Decimal::from(15);
    config
}

fn run(bytes: &[u8]) -> Run {
    let run = Backtest::new(&one_pair_config(), bytes, StrategyKind::HoldLong)
        .run()
        .unwrap();
    assert_eq!(
        run.checksum_mismatches, 0,
        "the recording's checksums verify"
    );
    run
}

/// The equity at the last point at or before `at`.
fn equity_at(run: &Run, at: DateTime<Utc>) -> Decimal {
    run.equity
        .iter()
        .take_while(|p| p.at <= at)
        .last()
        .map(|p| p.equity)
        .unwrap()
}

#[test]
fn the_daily_drawdown_rolls_at_utc_midnight_of_event_time() {
    let mids = path(6, 140);
    // 40 + 150 messages (380 s) before the flat stretch: starting at 23:50 the first drop
    // ends at 23:56:20 and the flat stretch (280 s) crosses midnight; the second drop is on
    // the next UTC day.
    let two_days = Utc.with_ymd_and_hms(2026, 3, 2, 23, 50, 0).unwrap();
    let midnight = Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).unwrap();
    let one_day = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();

    let across = run(&recording("XRP/USD", two_days, &mids));
    assert!(across.end > midnight && across.start < midnight);
    assert_eq!(
        across.fills.len(),
        1,
        "HoldLong bought once: {:?}",
        across.fills
    );
    let start = across.starting_equity;
    let before_midnight = equity_at(&across, midnight);
    let day1_loss = (start - before_midnight) / start * Decimal::ONE_HUNDRED;
    let day2_loss =
        (before_midnight - across.final_equity) / before_midnight * Decimal::ONE_HUNDRED;
    let total_loss = (start - across.final_equity) / start * Decimal::ONE_HUNDRED;
    eprintln!("day 1 {day1_loss:.3} %, day 2 {day2_loss:.3} %, total {total_loss:.3} %");
    // Each day loses under the daily threshold; together they lose more than it (and less
    // than the total threshold).
    assert!(
        day1_loss > Decimal::ONE && day1_loss < Decimal::TWO,
        "{day1_loss}"
    );
    assert!(
        day2_loss > Decimal::ONE && day2_loss < Decimal::TWO,
        "{day2_loss}"
    );
    assert!(
        total_loss > Decimal::TWO && total_loss < Decimal::from(15),
        "{total_loss}"
    );
    assert!(
        across.halts.is_empty(),
        "no daily-drawdown halt across midnight: {:?}",
        across.halts
    );

    // The same messages on one UTC day: the same loss is one day's, and it halts.
    let same_day = run(&recording("XRP/USD", one_day, &mids));
    let halt = same_day.halts.first().expect("a halt on one day");
    assert_eq!(
        halt.source, "auto:max_daily_drawdown",
        "{:?}",
        same_day.halts
    );
    assert!(halt.value.unwrap() >= Decimal::TWO, "{halt:?}");
    assert_eq!(halt.closure_flat, Some(true), "{halt:?}");
    // It fired during the second drop, which the two-day run spent on the next day.
    let second_drop = one_day + Duration::seconds(2 * (40 + 150 + 140));
    assert!(halt.at > second_drop, "{} vs {second_drop}", halt.at);
}
