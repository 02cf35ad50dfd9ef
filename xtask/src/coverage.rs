//! `cargo xtask coverage [--min PCT]`: the workspace tests under `cargo-llvm-cov`, a
//! per-crate line-coverage table checked against the targets of [`TABLE`]
//! (`xtask/coverage.toml`) and the overall floor.
//!
//! The table places every crate in a class (core, business logic, external interfaces,
//! utilities, …); a class has a target or none (reported, not enforced). The run fails
//! naming every crate under its class's target, every crate the coverage data names that
//! the table does not place, and a total under `--min` (default [`DEFAULT_MIN_COVERAGE`]).
//!
//! Everything but [`coverage()`] itself is pure: parsing the table and the arguments,
//! grouping llvm-cov's JSON by crate, the verdicts and the printed report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Default overall line-coverage floor, percent.
pub const DEFAULT_MIN_COVERAGE: f64 = 80.0;

/// The table of classes and targets, relative to the workspace root.
pub const TABLE: &str = "xtask/coverage.toml";

/// One class of crates and the line coverage each of them must reach.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    /// Name, printed next to each crate.
    pub name: String,
    /// What kind of code the class holds (documentation only).
    #[serde(default)]
    pub about: String,
    /// Minimum line coverage of each crate, percent; `None`: reported, not enforced.
    pub target: Option<f64>,
    /// The crates (directory names under `crates/` or `bins/`, or top-level directories).
    pub crates: Vec<String>,
}

/// The parsed `xtask/coverage.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    classes: Vec<Class>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    class: Vec<Class>,
}

impl Table {
    /// Reads the table's TOML text.
    ///
    /// # Errors
    /// Text that is not TOML of the expected shape, a target outside 0–100, a class name
    /// used twice or a crate listed twice.
    pub fn parse(text: &str) -> Result<Self> {
        let file: TableFile = toml::from_str(text).context("coverage table")?;
        let mut names = BTreeSet::new();
        let mut placed: BTreeMap<&str, &str> = BTreeMap::new();
        for class in &file.class {
            if !names.insert(class.name.as_str()) {
                bail!("coverage table: class {:?} appears twice", class.name);
            }
            if let Some(t) = class.target
                && !(0.0..=100.0).contains(&t)
            {
                bail!(
                    "coverage table: class {:?} has target {t}, not a percentage",
                    class.name
                );
            }
            for krate in &class.crates {
                if let Some(other) = placed.insert(krate, &class.name) {
                    bail!(
                        "coverage table: crate {krate:?} is in both {other:?} and {:?}",
                        class.name
                    );
                }
            }
        }
        Ok(Self {
            classes: file.class,
        })
    }

    /// The class `krate` is placed in.
    #[must_use]
    pub fn class_of(&self, krate: &str) -> Option<&Class> {
        self.classes
            .iter()
            .find(|c| c.crates.iter().any(|k| k == krate))
    }

    /// Every crate the table places, in table order.
    pub fn crates(&self) -> impl Iterator<Item = &str> {
        self.classes
            .iter()
            .flat_map(|c| c.crates.iter().map(String::as_str))
    }
}

/// Reads `[--min PCT]`; returns the overall floor.
///
/// # Errors
/// An unknown flag, a missing value, or a value that is not a percentage.
pub fn parse_args(args: &[String]) -> Result<f64> {
    let mut min = DEFAULT_MIN_COVERAGE;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--min" => {
                let v = it.next().context("--min needs a percentage")?;
                min = v
                    .parse()
                    .with_context(|| format!("--min {v:?} is not a number"))?;
                if !(0.0..=100.0).contains(&min) {
                    bail!("--min {v:?} is not a percentage");
                }
            }
            other => bail!("unknown coverage flag {other:?} (known: --min PCT)"),
        }
    }
    Ok(min)
}

/// The `cargo` command lines of a run (after `cargo`): clean, test without a report, the
/// JSON summary to `json_path`, the HTML report under `html_dir`.
#[must_use]
pub fn commands(json_path: &str, html_dir: &str) -> Vec<Vec<String>> {
    let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    vec![
        own(&["llvm-cov", "clean", "--workspace"]),
        own(&["llvm-cov", "--workspace", "--locked", "--no-report"]),
        own(&[
            "llvm-cov",
            "report",
            "--json",
            "--summary-only",
            "--output-path",
            json_path,
        ]),
        own(&["llvm-cov", "report", "--html", "--output-dir", html_dir]),
    ]
}

/// `covered` of `count` in percent; 100 when there is nothing to cover.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn pct(covered: u64, count: u64) -> f64 {
    if count == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / count as f64
    }
}

/// Sums line counts per crate (`crates/X`, `bins/X`, `xtask`, `tests`) from llvm-cov's
/// JSON export: crate → (covered, count).
///
/// # Errors
/// JSON without `data[0].files`, or a file entry without a filename.
pub fn per_crate(json: &serde_json::Value, root: &Path) -> Result<BTreeMap<String, (u64, u64)>> {
    let files = json["data"][0]["files"]
        .as_array()
        .context("llvm-cov JSON has no data[0].files")?;
    let mut table: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for file in files {
        let name = file["filename"].as_str().context("file without filename")?;
        let rel = Path::new(name)
            .strip_prefix(root)
            .unwrap_or(Path::new(name));
        let mut parts = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let krate = match parts.next().as_deref() {
            Some("crates" | "bins") => parts.next().unwrap_or_default(),
            Some(top) => top.to_owned(),
            None => continue,
        };
        let lines = &file["summary"]["lines"];
        let entry = table.entry(krate).or_default();
        entry.0 += lines["covered"].as_u64().unwrap_or(0);
        entry.1 += lines["count"].as_u64().unwrap_or(0);
    }
    Ok(table)
}

/// How one crate fares against its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// At or over its class's target.
    Ok,
    /// Under its class's target.
    Under,
    /// Its class has no target.
    NotEnforced,
    /// The table places it in no class.
    Unclassified,
}

/// One crate's line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Crate name.
    pub name: String,
    /// Lines covered.
    pub covered: u64,
    /// Lines counted.
    pub count: u64,
    /// Its class, when the table places it.
    pub class: Option<String>,
    /// Its class's target.
    pub target: Option<f64>,
    /// The verdict.
    pub status: Status,
}

impl Row {
    /// Line coverage, percent.
    #[must_use]
    pub fn percent(&self) -> f64 {
        pct(self.covered, self.count)
    }
}

/// The per-crate figures judged against the table and the floor.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// One row per measured crate, by name.
    pub rows: Vec<Row>,
    /// Crates the table lists that the coverage data does not name.
    pub unmeasured: Vec<String>,
    /// The overall floor, percent.
    pub min: f64,
}

impl Report {
    /// Judges `figures` (crate → (covered, count), as [`per_crate`] returns them).
    #[must_use]
    pub fn new(table: &Table, figures: &BTreeMap<String, (u64, u64)>, min: f64) -> Self {
        let rows = figures
            .iter()
            .map(|(name, &(covered, count))| {
                let class = table.class_of(name);
                let target = class.and_then(|c| c.target);
                let status = match (class, target) {
                    (None, _) => Status::Unclassified,
                    (Some(_), None) => Status::NotEnforced,
                    (Some(_), Some(t)) if pct(covered, count) < t => Status::Under,
                    (Some(_), Some(_)) => Status::Ok,
                };
                Row {
                    name: name.clone(),
                    covered,
                    count,
                    class: class.map(|c| c.name.clone()),
                    target,
                    status,
                }
            })
            .collect();
        let unmeasured = table
            .crates()
            .filter(|k| !figures.contains_key(*k))
            .map(str::to_owned)
            .collect();
        Self {
            rows,
            unmeasured,
            min,
        }
    }

    /// (covered, count) over every crate.
    #[must_use]
    pub fn totals(&self) -> (u64, u64) {
        self.rows
            .iter()
            .fold((0, 0), |(c, n), r| (c + r.covered, n + r.count))
    }

    /// Overall line coverage, percent.
    #[must_use]
    pub fn total(&self) -> f64 {
        let (c, n) = self.totals();
        pct(c, n)
    }

    /// Every reason the run fails, empty when it passes: all crates under their target,
    /// all unclassified crates, the total under the floor.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let under: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Under)
            .map(|r| {
                format!(
                    "{} {:.2}% < {:.0}% ({})",
                    r.name,
                    r.percent(),
                    r.target.unwrap_or_default(),
                    r.class.as_deref().unwrap_or_default()
                )
            })
            .collect();
        if !under.is_empty() {
            out.push(format!("under target: {}", under.join(", ")));
        }
        let unclassified: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Unclassified)
            .map(|r| r.name.as_str())
            .collect();
        if !unclassified.is_empty() {
            out.push(format!(
                "not in any class of {TABLE} (place each in a class): {}",
                unclassified.join(", ")
            ));
        }
        let total = self.total();
        if total < self.min {
            out.push(format!(
                "line coverage {total:.2}% is under the threshold {:.2}%",
                self.min
            ));
        }
        out
    }

    /// The printed table: each crate's lines, figure, target and class, then the total.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<14} {:>8} {:>8} {:>8} {:>7}  {:<20} verdict",
            "crate", "lines", "covered", "percent", "target", "class"
        );
        for r in &self.rows {
            let target = r
                .target
                .map_or_else(|| "-".to_owned(), |t| format!("{t:.0}%"));
            let verdict = match r.status {
                Status::Ok => "ok",
                Status::Under => "UNDER",
                Status::NotEnforced => "not enforced",
                Status::Unclassified => "UNCLASSIFIED",
            };
            let _ = writeln!(
                s,
                "{:<14} {:>8} {:>8} {:>7.2}% {target:>7}  {:<20} {verdict}",
                r.name,
                r.count,
                r.covered,
                r.percent(),
                r.class.as_deref().unwrap_or("?"),
            );
        }
        let (covered, count) = self.totals();
        let total = self.total();
        let _ = writeln!(
            s,
            "{:<14} {count:>8} {covered:>8} {total:>7.2}% {:>7}  {:<20} {}",
            "TOTAL",
            format!("{:.0}%", self.min),
            "(floor)",
            if total < self.min { "UNDER" } else { "ok" }
        );
        if !self.unmeasured.is_empty() {
            let _ = writeln!(
                s,
                "note: in {TABLE} but not in the coverage data: {}",
                self.unmeasured.join(", ")
            );
        }
        s
    }

    /// `Ok` when nothing fails.
    ///
    /// # Errors
    /// Every failure of [`Report::failures`], in one message.
    pub fn verdict(&self) -> Result<()> {
        let failures = self.failures();
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("coverage: {}", failures.join("; "))
        }
    }
}

/// Runs the workspace tests under llvm-cov, prints the report and judges it.
///
/// # Errors
/// A bad flag or table, a cargo step that fails, or a failing [`Report::verdict`].
pub fn coverage(root: &Path, args: &[String]) -> Result<()> {
    let min = parse_args(args)?;
    let table_path = root.join(TABLE);
    let table = Table::parse(
        &std::fs::read_to_string(&table_path)
            .with_context(|| format!("reading {}", table_path.display()))?,
    )
    .with_context(|| format!("in {}", table_path.display()))?;
    ensure_llvm_cov()?;
    // The tests need their peers (browser, SMTP, Vault, …) exactly as `cargo xtask test`
    // does: installed when missing, the Python ones from the venv on PATH.
    let (venv, path) = crate::ensure_peers()?;
    let out_dir = root.join("target/coverage");
    std::fs::create_dir_all(&out_dir)?;
    let json_path = out_dir.join("summary.json");
    for args in commands(
        json_path.to_str().context("non-UTF-8 target path")?,
        out_dir.to_str().context("non-UTF-8 target path")?,
    ) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cargo_with_peers(&args, &venv, &path)?;
    }
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&json_path).with_context(|| format!("reading {}", json_path.display()))?,
    )?;
    let report = Report::new(&table, &per_crate(&json, root)?, min);
    print!("{}", report.render());
    println!("html report: {}", out_dir.join("html/index.html").display());
    report.verdict()
}

fn ensure_llvm_cov() -> Result<()> {
    let have = std::process::Command::new("cargo")
        .args(["llvm-cov", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        crate::run_tool("rustup", &["component", "add", "llvm-tools-preview"])?;
        crate::run_tool("cargo", &["install", "cargo-llvm-cov", "--locked"])?;
    } else {
        // The component may be missing even when the cargo tool is installed.
        crate::run_tool("rustup", &["component", "add", "llvm-tools-preview"])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    const SMALL: &str = r#"
        [[class]]
        name = "core"
        target = 95.0
        crates = ["gf-core"]

        [[class]]
        name = "utilities"
        target = 70
        crates = ["xtask"]

        [[class]]
        name = "test harness"
        crates = ["tests"]
    "#;

    fn figures(v: &[(&str, u64, u64)]) -> BTreeMap<String, (u64, u64)> {
        v.iter()
            .map(|(n, c, t)| ((*n).to_owned(), (*c, *t)))
            .collect()
    }

    #[test]
    fn groups_files_by_crate() {
        let json = serde_json::json!({"data": [{"files": [
            {"filename": "/w/crates/gf-core/src/bus.rs", "summary": {"lines": {"count": 10, "covered": 9}}},
            {"filename": "/w/crates/gf-core/src/gate.rs", "summary": {"lines": {"count": 10, "covered": 7}}},
            {"filename": "/w/bins/gf-daemon/src/main.rs", "summary": {"lines": {"count": 4, "covered": 0}}},
            {"filename": "/w/xtask/src/main.rs", "summary": {"lines": {"count": 2, "covered": 1}}},
            {"filename": "/w/tests/src/lib.rs", "summary": {"lines": {"count": 3, "covered": 3}}},
        ]}]});
        let t = per_crate(&json, Path::new("/w")).unwrap();
        assert_eq!(t["gf-core"], (16, 20));
        assert_eq!(t["gf-daemon"], (0, 4));
        assert_eq!(t["xtask"], (1, 2));
        assert_eq!(t["tests"], (3, 3));
        assert!((pct(16, 20) - 80.0).abs() < 1e-9);
        assert!((pct(0, 0) - 100.0).abs() < 1e-9);
        assert!(per_crate(&serde_json::json!({}), Path::new("/w")).is_err());
        let nameless = serde_json::json!({"data": [{"files": [{"summary": {}}]}]});
        assert!(per_crate(&nameless, Path::new("/w")).is_err());
    }

    #[test]
    fn the_table_places_crates_in_classes_with_targets() {
        let t = Table::parse(SMALL).unwrap();
        let core = t.class_of("gf-core").unwrap();
        assert_eq!(core.name, "core");
        assert_eq!(core.target, Some(95.0));
        assert_eq!(t.class_of("xtask").unwrap().target, Some(70.0));
        assert_eq!(t.class_of("tests").unwrap().target, None);
        assert!(t.class_of("gf-new").is_none());
        assert_eq!(
            t.crates().collect::<Vec<_>>(),
            ["gf-core", "xtask", "tests"]
        );
    }

    #[test]
    fn a_malformed_table_is_refused_with_the_reason() {
        let cases = [
            (
                "[[class]]\nname = \"a\"\ncrates = [\"x\"]\n[[class]]\nname = \"b\"\ncrates = [\"x\"]\n",
                "\"x\" is in both \"a\" and \"b\"",
            ),
            (
                "[[class]]\nname = \"a\"\ncrates = []\n[[class]]\nname = \"a\"\ncrates = []\n",
                "\"a\" appears twice",
            ),
            (
                "[[class]]\nname = \"a\"\ntarget = 120\ncrates = []\n",
                "not a percentage",
            ),
            (
                "[[class]]\nname = \"a\"\ntarget = -1\ncrates = []\n",
                "not a percentage",
            ),
            ("[[class]]\nname = \"a\"\n", "crates"),
            (
                "[[class]]\nname = \"a\"\ncrates = []\ntraget = 90\n",
                "traget",
            ),
            ("class = 3\n", "class"),
        ];
        for (text, reason) in cases {
            let err = format!("{:#}", Table::parse(text).unwrap_err());
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    /// The committed table is valid, uses the seed's targets, and places every workspace
    /// member: adding a crate to the workspace without a class fails here already.
    #[test]
    fn the_committed_table_places_every_workspace_member() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let table = Table::parse(&std::fs::read_to_string(root.join(TABLE)).unwrap()).unwrap();
        let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let members = manifest["workspace"]["members"].as_array().unwrap();
        assert!(members.len() >= 10, "{members:?}");
        for member in members {
            let dir = member.as_str().unwrap();
            let krate = dir.rsplit('/').next().unwrap();
            assert!(
                table.class_of(krate).is_some(),
                "workspace member {dir} is not placed in {TABLE}"
            );
        }
        for (krate, target) in [
            ("gf-core", Some(95.0)),
            ("gf-risk", Some(90.0)),
            ("gf-halt", Some(90.0)),
            ("gf-exec", Some(80.0)),
            ("gf-market", Some(80.0)),
            ("gf-secrets", Some(80.0)),
            ("gf-monitor", Some(80.0)),
            ("gf-daemon", Some(80.0)),
            ("gf-console", Some(80.0)),
            ("xtask", Some(70.0)),
            ("tests", None),
        ] {
            assert_eq!(table.class_of(krate).unwrap().target, target, "{krate}");
        }
    }

    #[test]
    fn min_is_read_and_checked() {
        assert!((parse_args(&[]).unwrap() - DEFAULT_MIN_COVERAGE).abs() < 1e-9);
        assert!((parse_args(&own(&["--min", "85.5"])).unwrap() - 85.5).abs() < 1e-9);
        for bad in [
            &["--min"][..],
            &["--min", "x"],
            &["--min", "101"],
            &["--max", "3"],
        ] {
            assert!(parse_args(&own(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_run_cleans_tests_then_writes_both_reports() {
        let cmds = commands("/w/target/coverage/summary.json", "/w/target/coverage");
        let lines: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "llvm-cov clean --workspace",
                "llvm-cov --workspace --locked --no-report",
                "llvm-cov report --json --summary-only --output-path /w/target/coverage/summary.json",
                "llvm-cov report --html --output-dir /w/target/coverage",
            ]
        );
    }

    #[test]
    fn every_crate_under_its_target_is_named_not_just_the_first() {
        let table = Table::parse(SMALL).unwrap();
        let report = Report::new(
            &table,
            &figures(&[
                ("gf-core", 899, 1000),
                ("tests", 0, 10),
                ("xtask", 213, 1000),
            ]),
            10.0,
        );
        let status: Vec<(&str, Status)> = report
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.status))
            .collect();
        assert_eq!(
            status,
            [
                ("gf-core", Status::Under),
                ("tests", Status::NotEnforced),
                ("xtask", Status::Under)
            ]
        );
        let failures = report.failures();
        assert_eq!(
            failures,
            ["under target: gf-core 89.90% < 95% (core), xtask 21.30% < 70% (utilities)"]
        );
        let err = report.verdict().unwrap_err().to_string();
        assert!(err.contains("gf-core") && err.contains("xtask"), "{err}");
    }

    #[test]
    fn a_crate_at_its_target_passes_and_one_line_under_fails() {
        let table = Table::parse(SMALL).unwrap();
        let at = Report::new(&table, &figures(&[("gf-core", 95, 100)]), 80.0);
        assert_eq!(at.rows[0].status, Status::Ok);
        assert!(at.verdict().is_ok());
        let under = Report::new(&table, &figures(&[("gf-core", 1899, 2000)]), 80.0);
        assert_eq!(under.rows[0].status, Status::Under);
        assert!(under.verdict().is_err());
    }

    #[test]
    fn an_unclassified_crate_fails_the_run_by_name() {
        let table = Table::parse(SMALL).unwrap();
        let report = Report::new(
            &table,
            &figures(&[("gf-core", 100, 100), ("gf-strategy", 100, 100)]),
            80.0,
        );
        assert_eq!(report.rows[1].status, Status::Unclassified);
        assert_eq!(report.rows[1].class, None);
        let failures = report.failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("gf-strategy"), "{failures:?}");
        assert!(failures[0].contains(TABLE), "{failures:?}");
    }

    #[test]
    fn the_overall_floor_still_holds_when_every_class_passes() {
        let table = Table::parse(SMALL).unwrap();
        // The test harness has no target, but its lines count in the total.
        let report = Report::new(
            &table,
            &figures(&[("gf-core", 100, 100), ("tests", 0, 100)]),
            80.0,
        );
        assert!((report.total() - 50.0).abs() < 1e-9);
        assert_eq!(report.totals(), (100, 200));
        assert_eq!(
            report.failures(),
            ["line coverage 50.00% is under the threshold 80.00%"]
        );
    }

    #[test]
    fn the_report_prints_each_target_next_to_its_figure() {
        let table = Table::parse(SMALL).unwrap();
        let report = Report::new(
            &table,
            &figures(&[
                ("gf-core", 899, 1000),
                ("new-crate", 5, 10),
                ("tests", 1, 2),
            ]),
            80.0,
        );
        assert_eq!(report.unmeasured, ["xtask"]);
        let text = report.render();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no line for {name} in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("gf-core"), "gf-core 1000 899 89.90% 95% core UNDER");
        assert_eq!(line("new-crate"), "new-crate 10 5 50.00% - ? UNCLASSIFIED");
        assert_eq!(
            line("tests"),
            "tests 2 1 50.00% - test harness not enforced"
        );
        assert_eq!(line("TOTAL"), "TOTAL 1012 905 89.43% 80% (floor) ok");
        assert!(text.contains("not in the coverage data: xtask"), "{text}");
    }
}
