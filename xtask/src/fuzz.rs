//! `cargo xtask fuzz [--secs N] [TARGET…]`: runs the cargo-fuzz targets of `fuzz/` one
//! after the other, each for `N` seconds (default [`DEFAULT_SECS`]) on one core, starting
//! from the seed corpus in `fixtures/fuzz/<target>/`.
//!
//! It installs what it needs first (the nightly toolchain with rustup, cargo-fuzz with
//! `cargo install --locked`), saying in one line per tool what it did. Each target's
//! libFuzzer output goes to `fuzz/target/logs/<target>.log`; the summary gives executions
//! and executions per second per target. A crash, panic, hang (an input slower than
//! [`TIMEOUT_SECS`]) or runaway memory fails the task, naming the target and the input
//! libFuzzer saved under `fuzz/artifacts/<target>/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The targets, in the order they run.
pub const TARGETS: &[&str] = &[
    "market_feed",
    "rest_response",
    "config",
    "journal",
    "api_request",
    "executions",
];

/// Seconds per target when `--secs` is not given.
pub const DEFAULT_SECS: u64 = 60;

/// One input taking longer than this is a hang.
pub const TIMEOUT_SECS: u64 = 10;

/// Memory limit of a fuzzing process, MiB.
const RSS_LIMIT_MB: u64 = 2048;

/// What `cargo xtask fuzz` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Seconds per target.
    pub secs: u64,
    /// Targets to run, in order.
    pub targets: Vec<String>,
}

/// Reads `[--secs N] [TARGET…]` (no target: all of [`TARGETS`]).
///
/// # Errors
/// An unknown flag or target, or a `--secs` that is not a positive number.
pub fn parse_args(args: &[String]) -> Result<Plan> {
    let mut secs = DEFAULT_SECS;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(v) = arg.strip_prefix("--secs=") {
            secs = parse_secs(v)?;
        } else if arg == "--secs" {
            secs = parse_secs(it.next().context("--secs needs a number of seconds")?)?;
        } else if arg.starts_with('-') {
            bail!("unknown fuzz flag {arg:?} (known: --secs N)");
        } else if TARGETS.contains(&arg.as_str()) {
            targets.push(arg.clone());
        } else {
            bail!(
                "unknown fuzz target {arg:?} (known: {})",
                TARGETS.join(", ")
            );
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok(Plan { secs, targets })
}

fn parse_secs(v: &str) -> Result<u64> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--secs {v:?} is not a positive number of seconds"),
    }
}

/// libFuzzer's final statistics (`-print_final_stats=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// `stat::number_of_executed_units`.
    pub executions: u64,
    /// `stat::average_exec_per_sec`.
    pub per_sec: u64,
}

/// The final statistics in a libFuzzer log (the last ones when it holds several), or
/// `None` when it has none (the run died before printing them).
#[must_use]
pub fn parse_stats(log: &str) -> Option<Stats> {
    let value = |name: &str| {
        log.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some(Stats {
        executions: value("stat::number_of_executed_units:")?,
        per_sec: value("stat::average_exec_per_sec:").unwrap_or(0),
    })
}

/// The input libFuzzer saved for a failure, from its log.
#[must_use]
pub fn artifact(log: &str) -> Option<&str> {
    log.lines().rev().find_map(|l| {
        let at = l.find("Test unit written to ")?;
        Some(l[at + "Test unit written to ".len()..].trim())
    })
}

/// The line `cargo xtask fuzz` prints for a tool it checked.
#[must_use]
pub fn tool_line(tool: &str, was_present: bool, how: &str) -> String {
    if was_present {
        format!("tool {tool:<10} present")
    } else {
        format!("tool {tool:<10} installed ({how})")
    }
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_quiet(program: &str, args: &[&str]) -> Result<()> {
    let shown = format!("{program} {}", args.join(" "));
    eprintln!("xtask: {shown}");
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            crate::stderr_tail(&output.stderr, 5)
        );
    }
    Ok(())
}

/// Installs the nightly toolchain and cargo-fuzz when missing, one line per tool.
///
/// # Errors
/// When an install fails.
pub fn ensure_tools() -> Result<()> {
    let nightly = succeeds("rustup", &["run", "nightly", "rustc", "--version"]);
    if !nightly {
        run_quiet(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    println!(
        "{}",
        tool_line(
            "nightly",
            nightly,
            "rustup toolchain install nightly --profile minimal"
        )
    );
    let cargo_fuzz = succeeds("cargo", &["+nightly", "fuzz", "--version"]);
    if !cargo_fuzz {
        run_quiet("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    println!(
        "{}",
        tool_line(
            "cargo-fuzz",
            cargo_fuzz,
            "cargo install cargo-fuzz --locked"
        )
    );
    Ok(())
}

/// `cargo fuzz run` arguments for one target: sanitizers off (the workspace forbids
/// `unsafe`; coverage-guided search is what finds panics), debug assertions on (overflow
/// checks), one process, the working corpus under `fuzz/corpus/` first and the seeds.
#[must_use]
pub fn run_args(target: &str, secs: u64, corpus: &Path, seeds: &Path) -> Vec<String> {
    vec![
        "+nightly".into(),
        "fuzz".into(),
        "run".into(),
        "--sanitizer=none".into(),
        "--debug-assertions".into(),
        target.into(),
        corpus.display().to_string(),
        seeds.display().to_string(),
        "--".into(),
        format!("-max_total_time={secs}"),
        format!("-timeout={TIMEOUT_SECS}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        "-print_final_stats=1".into(),
    ]
}

/// Runs the plan; fails when a target crashed.
///
/// # Errors
/// A tool that cannot be installed, a target that fails to build or crashes.
pub fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let plan = parse_args(args)?;
    ensure_tools()?;
    let logs = root.join("fuzz/target/logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for target in &plan.targets {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = seeds_dir(root, target);
        let log_path = logs.join(format!("{target}.log"));
        eprintln!(
            "xtask: fuzzing {target} for {} s (log: {})",
            plan.secs,
            log_path.display()
        );
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let status = Command::new("cargo")
            .args(run_args(target, plan.secs, &corpus, &seeds))
            .current_dir(root)
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let stats = parse_stats(&text);
        let failure = (!status.success()).then(|| status.to_string());
        if failure.is_some() {
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            for line in tail.into_iter().rev() {
                eprintln!("  {line}");
            }
        }
        let (result, failure) = judge(target, failure.as_deref(), &text);
        failed.extend(failure);
        rows.push((target.clone(), stats.unwrap_or_default(), result));
    }
    print!("{}", summary(plan.secs, &rows));
    verdict(&failed)
}

/// The result column of a target's run (`failure`: the exit status of a failed run) and,
/// when it failed, the entry naming it and the input libFuzzer saved.
#[must_use]
pub fn judge(target: &str, failure: Option<&str>, log: &str) -> (String, Option<String>) {
    match failure {
        None => ("ok".to_owned(), None),
        Some(status) => {
            let saved = artifact(log).map_or_else(String::new, |a| format!(", input {a}"));
            (
                format!("FAILED{saved}"),
                Some(format!("{target} ({status}{saved})")),
            )
        }
    }
}

/// The printed summary: one row per target (name, statistics, result).
#[must_use]
pub fn summary(secs: u64, rows: &[(String, Stats, String)]) -> String {
    let mut out = format!(
        "{:<14} {:>6} {:>14} {:>10}  result\n",
        "target", "secs", "executions", "exec/s"
    );
    for (target, stats, result) in rows {
        out.push_str(&format!(
            "{target:<14} {secs:>6} {:>14} {:>10}  {result}\n",
            stats.executions, stats.per_sec
        ));
    }
    out
}

/// `Ok` when no target failed.
///
/// # Errors
/// Every failed target, with how to reproduce.
pub fn verdict(failed: &[String]) -> Result<()> {
    if !failed.is_empty() {
        bail!(
            "fuzz target(s) failed: {}; reproduce with `cargo +nightly fuzz run --sanitizer=none --debug-assertions TARGET INPUT`",
            failed.join("; ")
        );
    }
    Ok(())
}

/// Where the seed corpus of `target` lives.
#[must_use]
pub fn seeds_dir(root: &Path, target: &str) -> PathBuf {
    root.join("fixtures/fuzz").join(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The targets declared in `fuzz/Cargo.toml` (its `[[bin]]` names).
    #[must_use]
    fn declared_targets(manifest: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_bin = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
                out.push(v.trim_matches('"').to_owned());
            }
        }
        out
    }

    #[test]
    fn no_argument_runs_every_target_for_the_default_time() {
        let plan = parse_args(&[]).unwrap();
        assert_eq!(plan.secs, DEFAULT_SECS);
        assert_eq!(plan.targets, own(TARGETS));
    }

    #[test]
    fn secs_and_targets_are_read_and_unknown_ones_refused() {
        let plan = parse_args(&own(&["--secs", "5", "config", "journal"])).unwrap();
        assert_eq!(plan.secs, 5);
        assert_eq!(plan.targets, own(&["config", "journal"]));
        assert_eq!(parse_args(&own(&["--secs=7"])).unwrap().secs, 7);
        for bad in [
            &["--secs"][..],
            &["--secs", "0"],
            &["--secs", "x"],
            &["--jobs", "2"],
            &["nope"],
        ] {
            assert!(parse_args(&own(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn final_stats_and_the_saved_input_are_read_from_the_log() {
        let log = "#2097152\tpulse  cov: 1 ft: 2 corp: 3 exec/s: 1000\n\
                   Done 123456 runs in 61 second(s)\n\
                   stat::number_of_executed_units: 123456\n\
                   stat::average_exec_per_sec:     2023\n\
                   stat::new_units_added:          17\n";
        assert_eq!(
            parse_stats(log),
            Some(Stats {
                executions: 123_456,
                per_sec: 2023
            })
        );
        assert_eq!(parse_stats("==1== ERROR: libFuzzer: deadly signal\n"), None);
        let crash = "thread panicked\n\
                     artifact_prefix='fuzz/artifacts/config/'; Test unit written to fuzz/artifacts/config/crash-abc\n";
        assert_eq!(artifact(crash), Some("fuzz/artifacts/config/crash-abc"));
        assert_eq!(artifact(log), None);
    }

    #[test]
    fn a_tool_line_says_what_was_done() {
        assert_eq!(tool_line("nightly", true, "x"), "tool nightly    present");
        assert_eq!(
            tool_line("cargo-fuzz", false, "cargo install cargo-fuzz --locked"),
            "tool cargo-fuzz installed (cargo install cargo-fuzz --locked)"
        );
    }

    #[test]
    fn the_run_is_single_process_time_boxed_and_starts_from_the_seeds() {
        let args = run_args("journal", 30, Path::new("c"), Path::new("s"));
        let pos = |a: &str| args.iter().position(|x| x == a).unwrap();
        assert!(pos("journal") < pos("c") && pos("c") < pos("s") && pos("s") < pos("--"));
        assert!(args.contains(&"-max_total_time=30".to_owned()));
        assert!(args.contains(&format!("-timeout={TIMEOUT_SECS}")));
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("-jobs") || a.starts_with("-workers"))
        );
    }

    #[test]
    fn a_crashed_target_is_named_with_its_saved_input_and_the_others_pass() {
        let crash = "Test unit written to fuzz/artifacts/config/crash-abc\n";
        assert_eq!(judge("journal", None, crash), ("ok".to_owned(), None));
        let (result, failure) = judge("config", Some("exit status: 77"), crash);
        assert_eq!(result, "FAILED, input fuzz/artifacts/config/crash-abc");
        assert_eq!(
            failure.as_deref(),
            Some("config (exit status: 77, input fuzz/artifacts/config/crash-abc)")
        );
        // A build failure saves no input.
        let (result, failure) = judge("config", Some("exit status: 101"), "error[E0425]\n");
        assert_eq!(result, "FAILED");
        assert_eq!(failure.as_deref(), Some("config (exit status: 101)"));
        assert!(verdict(&[]).is_ok());
        let err = verdict(&["a (x)".to_owned(), "b (y)".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("a (x); b (y)"), "{err}");
        assert!(err.contains("cargo +nightly fuzz run"), "{err}");
    }

    #[test]
    fn the_summary_has_a_row_per_target() {
        let rows = [
            (
                "config".to_owned(),
                Stats {
                    executions: 1000,
                    per_sec: 16,
                },
                "ok".to_owned(),
            ),
            ("journal".to_owned(), Stats::default(), "FAILED".to_owned()),
        ];
        let text = summary(60, &rows);
        let words: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            words,
            [
                vec!["target", "secs", "executions", "exec/s", "result"],
                vec!["config", "60", "1000", "16", "ok"],
                vec!["journal", "60", "0", "0", "FAILED"],
            ]
        );
    }

    #[test]
    fn quiet_commands_report_success_and_the_end_of_stderr() {
        assert!(succeeds("sh", &["-c", "exit 0"]));
        assert!(!succeeds("sh", &["-c", "exit 1"]));
        assert!(!succeeds("/nonexistent/xtask-program", &[]));
        run_quiet("sh", &["-c", "echo noise"]).unwrap();
        let err = run_quiet("sh", &["-c", "echo why >&2; exit 2"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("sh -c echo why >&2; exit 2 failed"),
            "{err}"
        );
        assert!(err.ends_with(": why"), "{err}");
    }

    /// Every declared target is run by default and has a seed corpus, and the other way
    /// round.
    #[test]
    fn targets_match_the_fuzz_crate_and_have_seeds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        let mut declared = declared_targets(&manifest);
        declared.sort();
        let mut ours = own(TARGETS);
        ours.sort();
        assert_eq!(declared, ours);
        for target in TARGETS {
            let seeds = std::fs::read_dir(seeds_dir(root, target))
                .unwrap_or_else(|e| panic!("{target}: no seed corpus: {e}"))
                .count();
            assert!(seeds > 0, "{target}: empty seed corpus");
        }
    }
}
