//! `cargo xtask mutants`: mutation testing of the code that decides whether an order may go
//! out and when trading halts — the gate, gf-halt's machine, checklist, conditions and
//! coordinator, gf-risk's drawdown and pre-trade checks — with cargo-mutants.
//!
//! Each [`Area`] is one cargo-mutants run over exactly its files, one mutant at a time
//! (`--jobs 1`), in cargo-mutants' scratch copy of the tree; builds go to their own
//! persistent target directory (`target/mutants/build`, no debug info) so that the
//! dependencies are built once, not once per run, and never contend with the workspace's
//! own `target/debug`. Results land in `target/mutants/<area>/mutants.out/`; the score
//! is read from its `outcomes.json`.
//!
//! Property tests run with `PROPTEST_CASES=32` unless the environment says otherwise.
//!
//! Score = caught / (caught + missed), where **timeouts count as caught** (a mutant that
//! makes the tests hang is detected; they are also printed separately) and unviable
//! mutants (that do not compile) are left out. Equivalent mutants — ones no test can tell
//! apart from the original — are listed in `.cargo/mutants.toml` (`exclude_re`), each with
//! a one-line reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// One run of cargo-mutants and the goal it must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    /// Name on the command line and in the report.
    pub name: &'static str,
    /// Files to mutate, relative to the workspace root.
    pub files: &'static [&'static str],
    /// When set, only mutants whose name matches (cargo-mutants `--re`).
    pub examine_re: Option<&'static str>,
    /// Build and run only the package's unit tests (`--lib`): each mutant then relinks
    /// one test binary instead of one per integration test. The score is a lower bound of
    /// the whole suite's (a mutant the unit tests catch, the suite catches too).
    pub lib_only: bool,
    /// Minimum score, percent.
    pub goal: f64,
}

/// The safety core, in the order the runs go (cheapest first).
pub const AREAS: &[Area] = &[
    Area {
        name: "gate",
        files: &["crates/gf-core/src/gate.rs"],
        examine_re: None,
        lib_only: false,
        goal: 90.0,
    },
    Area {
        name: "halt",
        files: &[
            "crates/gf-halt/src/machine.rs",
            "crates/gf-halt/src/checklist.rs",
            "crates/gf-halt/src/condition.rs",
        ],
        examine_re: None,
        // Pure code with its unit tests beside it; the integration tests drive it through
        // the coordinator, which the next area measures.
        lib_only: true,
        goal: 90.0,
    },
    Area {
        name: "coordinator",
        files: &["crates/gf-halt/src/coordinator.rs"],
        examine_re: None,
        lib_only: false,
        goal: 90.0,
    },
    Area {
        name: "risk",
        files: &[
            "crates/gf-risk/src/pretrade.rs",
            "crates/gf-risk/src/portfolio.rs",
        ],
        // All of the pre-trade checks; of the portfolio, only what computes drawdowns
        // (the peak, the day's start, the percentages and their cap).
        examine_re: Some(
            r"^crates/gf-risk/src/(pretrade\.rs|portfolio\.rs:\d+:\d+: .*\b(pct_of|roll_day|set_equity|DailyEquity::start|peak_equity|total_drawdown_pct|daily_drawdown_pct|max_drawdown_pct)\b)",
        ),
        // The bus feed's integration test is not about these checks.
        lib_only: true,
        goal: 80.0,
    },
];

/// What `cargo xtask mutants` was asked to do.
#[derive(Debug, Default, PartialEq)]
struct Options {
    /// Areas to run; all when empty.
    areas: Vec<String>,
    /// Only read the last results, run nothing.
    report_only: bool,
    /// Re-test only mutants not caught last time (cargo-mutants `--iterate`).
    iterate: bool,
    /// Passed to cargo-mutants as they are.
    extra: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--area" => {
                let name = it.next().context("--area needs a name")?;
                if !AREAS.iter().any(|a| a.name == name) {
                    bail!("unknown area {name:?} (known: {})", area_names());
                }
                o.areas.push(name.clone());
            }
            "--report" => o.report_only = true,
            "--iterate" => o.iterate = true,
            "--" => {
                o.extra.extend(it.by_ref().cloned());
            }
            other => bail!(
                "unknown mutants flag {other:?} (known: --area NAME, --report, --iterate, -- ARGS)"
            ),
        }
    }
    Ok(o)
}

fn area_names() -> String {
    AREAS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// Where an area's results go (cargo-mutants adds `mutants.out/`).
fn out_dir(root: &Path, area: &Area) -> PathBuf {
    root.join("target/mutants").join(area.name)
}

/// The cargo-mutants arguments for `area` (after `cargo`).
fn mutants_args(area: &Area, out: &Path, iterate: bool, extra: &[String]) -> Vec<String> {
    // --gitignore=true: the scratch copy leaves out what git ignores (fuzz corpora that
    // change under the copy, other build directories).
    let mut args: Vec<String> = [
        "mutants",
        "--no-shuffle",
        "--gitignore=true",
        "--jobs",
        "1",
        "--output",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(out.display().to_string());
    args.extend(filter_args(area));
    if area.lib_only {
        args.push("--cargo-arg=--lib".into());
    }
    if iterate {
        args.push("--iterate".into());
    }
    args.extend(extra.iter().cloned());
    args
}

/// The cargo-mutants arguments that pick the area's mutants.
fn filter_args(area: &Area) -> Vec<String> {
    let mut args = Vec::new();
    for file in area.files {
        args.push("--file".into());
        args.push((*file).to_owned());
    }
    if let Some(re) = area.examine_re {
        args.push("--re".into());
        args.push(re.to_owned());
    }
    args
}

/// Counts of one run's mutant outcomes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Tests failed: the mutant was detected.
    pub caught: u64,
    /// Tests passed: nothing noticed the change.
    pub missed: u64,
    /// Tests hung past the timeout (counted as caught in the score).
    pub timeout: u64,
    /// The mutant did not compile (left out of the score).
    pub unviable: u64,
    /// Not tested yet (left out of the score, reported).
    pub untested: u64,
}

impl Tally {
    /// Viable mutants examined.
    #[must_use]
    pub fn viable(&self) -> u64 {
        self.caught + self.missed + self.timeout
    }

    /// Percent of viable mutants caught, timeouts counting as caught; 100 with none.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn score(&self) -> f64 {
        match self.viable() {
            0 => 100.0,
            n => (self.caught + self.timeout) as f64 * 100.0 / n as f64,
        }
    }
}

/// The `(name, summary)` of every mutant in cargo-mutants' `outcomes.json`.
fn outcomes(json: &serde_json::Value) -> Result<Vec<(String, String)>> {
    let outcomes = json["outcomes"]
        .as_array()
        .context("outcomes.json has no `outcomes` array")?;
    let mut out = Vec::new();
    for outcome in outcomes {
        // The baseline's scenario is the string "Baseline"; mutants are objects.
        let Some(mutant) = outcome["scenario"].get("Mutant") else {
            continue;
        };
        let summary = outcome["summary"].as_str().unwrap_or_default();
        out.push((mutant_name(mutant), summary.to_owned()));
    }
    Ok(out)
}

/// Tallies the latest outcome of each of `current` (the mutants the area has now) from
/// `history` (name → summary, newest wins), and lists the missed ones.
fn tally(current: &[String], history: &BTreeMap<String, String>) -> Result<(Tally, Vec<String>)> {
    let mut t = Tally::default();
    let mut missed = Vec::new();
    for name in current {
        match history.get(name).map(String::as_str) {
            Some("CaughtMutant") => t.caught += 1,
            Some("MissedMutant") => {
                t.missed += 1;
                missed.push(name.clone());
            }
            Some("Timeout") => t.timeout += 1,
            Some("Unviable") => t.unviable += 1,
            None => t.untested += 1,
            Some(other) => bail!("unexpected mutant outcome {other:?} for {name}"),
        }
    }
    Ok((t, missed))
}

fn mutant_name(m: &serde_json::Value) -> String {
    if let Some(name) = m["name"].as_str() {
        return name.to_owned();
    }
    let file = m["file"].as_str().unwrap_or("?");
    let line = m["span"]["start"]["line"].as_u64().unwrap_or(0);
    let function = m["function"]["function_name"].as_str().unwrap_or("?");
    let replacement = m["replacement"].as_str().unwrap_or("?");
    format!("{file}:{line}: {function}: replace with {replacement}")
}

fn ensure_cargo_mutants() -> Result<()> {
    let have = Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        println!("cargo-mutants: missing, installing (cargo install cargo-mutants --locked)");
        crate::run_tool("cargo", &["install", "cargo-mutants", "--locked"])?;
    }
    Ok(())
}

/// Runs cargo-mutants over the chosen areas, prints the score of each and fails when one
/// is under its goal.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let root = crate::root();
    let areas = selected(&opts);
    if !opts.report_only {
        ensure_cargo_mutants()?;
        for area in &areas {
            let out = out_dir(&root, area);
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            // Keep what earlier runs found before cargo-mutants moves their results aside.
            history(&out)?;
            let args = mutants_args(area, &out, opts.iterate, &opts.extra);
            eprintln!("xtask: [{}] cargo {}", area.name, args.join(" "));
            // A missed mutant makes cargo-mutants exit non-zero; the score decides.
            let status = Command::new("cargo")
                .args(&args)
                .current_dir(&root)
                .envs(run_env(&root, std::env::var("PROPTEST_CASES").ok()))
                .status()
                .context("running cargo mutants")?;
            eprintln!("xtask: [{}] cargo-mutants exited with {status}", area.name);
        }
    }
    report(&root, &areas)
}

/// The areas to run, in [`AREAS`] order: the named ones, or all.
fn selected(opts: &Options) -> Vec<&'static Area> {
    AREAS
        .iter()
        .filter(|a| opts.areas.is_empty() || opts.areas.iter().any(|n| n == a.name))
        .collect()
}

/// The environment of a cargo-mutants run: its own target directory without debug info,
/// and `PROPTEST_CASES` (`proptest_cases`: the caller's, if set).
fn run_env(root: &Path, proptest_cases: Option<String>) -> Vec<(&'static str, String)> {
    vec![
        (
            "CARGO_TARGET_DIR",
            root.join("target/mutants/build").display().to_string(),
        ),
        ("CARGO_PROFILE_DEV_DEBUG", "0".to_owned()),
        // Property tests run every mutant: fewer cases keep a run within the hour (the
        // unit tests around them pin the exact cases).
        (
            "PROPTEST_CASES",
            proptest_cases.unwrap_or_else(|| "32".into()),
        ),
    ]
}

/// The mutant names of `cargo mutants --list` output, one a line.
fn parse_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The mutants the area has now (names as in `outcomes.json`), after the exclusions of
/// `.cargo/mutants.toml`.
fn list_mutants(root: &Path, area: &Area) -> Result<Vec<String>> {
    let mut args = vec!["mutants".to_owned(), "--list".to_owned()];
    args.extend(filter_args(area));
    let out = Command::new("cargo")
        .args(&args)
        .current_dir(root)
        .output()
        .context("running cargo mutants --list")?;
    if !out.status.success() {
        bail!(
            "cargo mutants --list failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Every outcome seen for the area, newest last: the kept history, then the results a
/// `--iterate` run moved aside (`mutants.out.old`), then the latest run. Saved back, so
/// that `--iterate` runs (which re-test only what was not caught) add up.
fn history(dir: &Path) -> Result<BTreeMap<String, String>> {
    let kept = dir.join("history.json");
    let mut history: BTreeMap<String, String> = match std::fs::read(&kept) {
        Ok(text) => {
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", kept.display()))?
        }
        Err(_) => BTreeMap::new(),
    };
    for run in ["mutants.out.old", "mutants.out"] {
        let path = dir.join(run).join("outcomes.json");
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let json: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        history.extend(outcomes(&json)?);
    }
    std::fs::write(&kept, serde_json::to_vec_pretty(&history)?)
        .with_context(|| format!("writing {}", kept.display()))?;
    Ok(history)
}

fn report(root: &Path, areas: &[&Area]) -> Result<()> {
    print!("{}", report_header());
    let mut failures = Vec::new();
    for area in areas {
        let dir = out_dir(root, area);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let current = list_mutants(root, area)?;
        let (t, missed) = tally(&current, &history(&dir)?)?;
        let (text, failure) = report_area(area, &t, &missed);
        print!("{text}");
        failures.extend(failure);
    }
    verdict(&failures)
}

/// The head of the score table.
fn report_header() -> String {
    format!(
        "mutation scores (timeouts count as caught; unviable mutants left out)\n\
         {:<12} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>5} {:>5}\n",
        "area", "caught", "missed", "timeout", "unviable", "untested", "score", "goal", ""
    )
}

/// An area's row of the score table and its missed mutants, and the failure when it is
/// under its goal or has untested mutants.
fn report_area(area: &Area, t: &Tally, missed: &[String]) -> (String, Option<String>) {
    let ok = t.score() >= area.goal && t.untested == 0;
    let mut text = format!(
        "{:<12} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7.2}% {:>4.0}% {:>5}\n",
        area.name,
        t.caught,
        t.missed,
        t.timeout,
        t.unviable,
        t.untested,
        t.score(),
        area.goal,
        if ok { "ok" } else { "UNDER" }
    );
    for name in missed {
        text.push_str(&format!("    missed: {name}\n"));
    }
    let failure = (!ok).then(|| {
        format!(
            "{} {:.2}% (goal {:.0}%, {} untested)",
            area.name,
            t.score(),
            area.goal,
            t.untested
        )
    });
    (text, failure)
}

/// `Ok` when every area met its goal.
///
/// # Errors
/// Every area under its goal.
fn verdict(failures: &[String]) -> Result<()> {
    if !failures.is_empty() {
        bail!("mutation score under the goal: {}", failures.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_areas_flags_and_passthrough() {
        let o = parse(&own(&[
            "--area",
            "gate",
            "--iterate",
            "--",
            "--timeout",
            "60",
        ]))
        .unwrap();
        assert_eq!(o.areas, ["gate"]);
        assert!(o.iterate);
        assert!(!o.report_only);
        assert_eq!(o.extra, ["--timeout", "60"]);
        assert!(parse(&own(&["--area", "nope"])).is_err());
        assert!(parse(&own(&["--area"])).is_err());
        assert!(parse(&own(&["--bogus"])).is_err());
        assert!(parse(&own(&["--report"])).unwrap().report_only);
    }

    #[test]
    fn runs_each_file_one_job_at_a_time() {
        let risk = AREAS.iter().find(|a| a.name == "risk").unwrap();
        let args = mutants_args(risk, Path::new("/w/target/mutants/risk"), true, &[]);
        assert_eq!(
            &args[..6],
            [
                "mutants",
                "--no-shuffle",
                "--gitignore=true",
                "--jobs",
                "1",
                "--output"
            ]
        );
        assert_eq!(args[6], "/w/target/mutants/risk");
        assert!(
            args.windows(2)
                .any(|w| w == ["--file", "crates/gf-risk/src/pretrade.rs"])
        );
        assert!(args.iter().any(|a| a == "--re"));
        assert_eq!(args.last().unwrap(), "--iterate");
        assert!(args.iter().any(|a| a == "--cargo-arg=--lib"));
        let coordinator = AREAS.iter().find(|a| a.name == "coordinator").unwrap();
        let args = mutants_args(coordinator, Path::new("/w/c"), false, &[]);
        assert!(!args.iter().any(|a| a == "--cargo-arg=--lib"));
        assert!(!args.iter().any(|a| a == "--iterate" || a == "--re"));
    }

    #[test]
    fn areas_are_chosen_by_name_in_table_order() {
        let all = selected(&Options::default());
        assert_eq!(all.len(), AREAS.len());
        let opts = parse(&own(&["--area", "risk", "--area", "gate"])).unwrap();
        let names: Vec<&str> = selected(&opts).iter().map(|a| a.name).collect();
        assert_eq!(names, ["gate", "risk"]);
    }

    #[test]
    fn runs_build_apart_without_debug_info_and_with_few_proptest_cases() {
        let env = run_env(Path::new("/w"), None);
        assert_eq!(
            env,
            [
                ("CARGO_TARGET_DIR", "/w/target/mutants/build".to_owned()),
                ("CARGO_PROFILE_DEV_DEBUG", "0".to_owned()),
                ("PROPTEST_CASES", "32".to_owned()),
            ]
        );
        let env = run_env(Path::new("/w"), Some("256".into()));
        assert_eq!(env[2], ("PROPTEST_CASES", "256".to_owned()));
    }

    #[test]
    fn the_list_has_one_mutant_a_line() {
        assert_eq!(
            parse_list(
                "a.rs:1:1: replace f with ()\n\n  \nb.rs:2:3: replace g -> bool with true\n"
            ),
            [
                "a.rs:1:1: replace f with ()",
                "b.rs:2:3: replace g -> bool with true"
            ]
        );
        assert!(parse_list("").is_empty());
    }

    #[test]
    fn an_area_under_its_goal_or_with_untested_mutants_fails_by_name() {
        let gate = AREAS.iter().find(|a| a.name == "gate").unwrap();
        let good = Tally {
            caught: 9,
            missed: 1,
            ..Tally::default()
        };
        let (text, failure) = report_area(gate, &good, &["m1".to_owned()]);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["gate", "9", "1", "0", "0", "0", "90.00%", "90%", "ok"],
                vec!["missed:", "m1"],
            ]
        );
        assert_eq!(failure, None);
        let (text, failure) = report_area(
            gate,
            &Tally {
                caught: 8,
                missed: 2,
                ..Tally::default()
            },
            &[],
        );
        assert!(text.trim_end().ends_with("UNDER"), "{text}");
        assert_eq!(
            failure.as_deref(),
            Some("gate 80.00% (goal 90%, 0 untested)")
        );
        let untested = Tally {
            caught: 10,
            untested: 1,
            ..Tally::default()
        };
        assert_eq!(
            report_area(gate, &untested, &[]).1.as_deref(),
            Some("gate 100.00% (goal 90%, 1 untested)")
        );
        assert!(verdict(&[]).is_ok());
        let err = verdict(&["gate x".to_owned(), "risk y".to_owned()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mutation score under the goal: gate x; risk y"
        );
        let header = report_header();
        assert!(header.starts_with("mutation scores"));
        let head: Vec<&str> = header.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            [
                "area", "caught", "missed", "timeout", "unviable", "untested", "score", "goal"
            ]
        );
    }

    /// Results of successive runs add up: the kept history, the run an `--iterate` moved
    /// aside, then the latest run, newest winning; and the sum is saved back.
    #[test]
    fn history_adds_up_runs_newest_last_and_is_kept() {
        let dir = std::env::temp_dir().join(format!(
            "xtask-mutants-history-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mutants.out.old")).unwrap();
        std::fs::create_dir_all(dir.join("mutants.out")).unwrap();
        let mutant = |name: &str, summary: &str| serde_json::json!({"scenario": {"Mutant": {"name": name}}, "summary": summary});
        std::fs::write(
            dir.join("history.json"),
            r#"{"a": "MissedMutant", "b": "MissedMutant", "c": "Timeout"}"#,
        )
        .unwrap();
        let old = serde_json::json!({"outcomes": [mutant("a", "CaughtMutant"), mutant("b", "MissedMutant")]});
        std::fs::write(dir.join("mutants.out.old/outcomes.json"), old.to_string()).unwrap();
        let new = serde_json::json!({"outcomes": [
            {"scenario": "Baseline", "summary": "Success"},
            mutant("b", "CaughtMutant"),
            mutant("d", "Unviable"),
        ]});
        std::fs::write(dir.join("mutants.out/outcomes.json"), new.to_string()).unwrap();
        let h = history(&dir).unwrap();
        let expected: BTreeMap<String, String> = [
            ("a", "CaughtMutant"),
            ("b", "CaughtMutant"),
            ("c", "Timeout"),
            ("d", "Unviable"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(h, expected);
        // Saved: with the runs gone, the history still holds.
        std::fs::remove_dir_all(dir.join("mutants.out")).unwrap();
        std::fs::remove_dir_all(dir.join("mutants.out.old")).unwrap();
        assert_eq!(history(&dir).unwrap(), expected);
        // A corrupt run is an error, not an empty history.
        std::fs::create_dir_all(dir.join("mutants.out")).unwrap();
        std::fs::write(dir.join("mutants.out/outcomes.json"), "{").unwrap();
        assert!(history(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unnamed_mutants_are_named_from_their_parts_and_odd_outcomes_refused() {
        let m = serde_json::json!({
            "file": "src/a.rs",
            "span": {"start": {"line": 7}},
            "function": {"function_name": "f"},
            "replacement": "true"
        });
        assert_eq!(mutant_name(&m), "src/a.rs:7: f: replace with true");
        assert_eq!(
            mutant_name(&serde_json::json!({})),
            "?:0: ?: replace with ?"
        );
        let history: BTreeMap<String, String> = [("x".to_owned(), "Exploded".to_owned())]
            .into_iter()
            .collect();
        let err = tally(&["x".to_owned()], &history).unwrap_err().to_string();
        assert!(err.contains("Exploded"), "{err}");
        assert_eq!(
            out_dir(Path::new("/w"), &AREAS[0]),
            PathBuf::from("/w/target/mutants/gate")
        );
    }

    #[test]
    fn scores_count_timeouts_as_caught_and_leave_unviable_and_untested_out() {
        let json = serde_json::json!({"outcomes": [
            {"scenario": "Baseline", "summary": "Success"},
            {"scenario": {"Mutant": {"name": "a.rs:1:1: replace f with ()"}}, "summary": "CaughtMutant"},
            {"scenario": {"Mutant": {"name": "a.rs:2:1: replace g with ()"}}, "summary": "MissedMutant"},
            {"scenario": {"Mutant": {"name": "a.rs:3:1: replace h with ()"}}, "summary": "Timeout"},
            {"scenario": {"Mutant": {"name": "a.rs:4:1: replace i with ()"}}, "summary": "MissedMutant"},
            {"scenario": {"Mutant": {"name": "a.rs:5:1: replace j with ()"}}, "summary": "Unviable"},
            {"scenario": {"Mutant": {"name": "a.rs:9:1: replace gone with ()"}}, "summary": "MissedMutant"},
        ]});
        let mut history: BTreeMap<String, String> = outcomes(&json).unwrap().into_iter().collect();
        assert_eq!(history.len(), 6, "the baseline is no mutant");
        // A later --iterate run caught g.
        let later = serde_json::json!({"outcomes": [
            {"scenario": {"Mutant": {"name": "a.rs:2:1: replace g with ()"}}, "summary": "CaughtMutant"},
        ]});
        history.extend(outcomes(&later).unwrap());
        // The area now: "gone" no longer exists (excluded or edited away), k is new.
        let current: Vec<String> = ["f", "g", "h", "i", "j", "k"]
            .iter()
            .zip(1..)
            .map(|(f, line)| format!("a.rs:{line}:1: replace {f} with ()"))
            .collect();
        let current = [&current[..5], &["a.rs:6:1: replace k with ()".to_owned()]].concat();
        let (t, missed) = tally(&current, &history).unwrap();
        assert_eq!(
            t,
            Tally {
                caught: 2,
                missed: 1,
                timeout: 1,
                unviable: 1,
                untested: 1,
            }
        );
        assert_eq!(missed, ["a.rs:4:1: replace i with ()"]);
        assert!((t.score() - 75.0).abs() < 1e-9);
        assert!((Tally::default().score() - 100.0).abs() < 1e-9);
        assert!(outcomes(&serde_json::json!({})).is_err());
    }
}
