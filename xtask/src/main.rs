//! `cargo xtask`: project automation that is easier to keep right in Rust than in shell.
//!
//! - `cargo xtask ci` runs exactly what `.ci/run` runs (fmt, clippy, the README test
//!   command).
//! - `cargo xtask coverage [--min PCT]` runs the workspace tests under `cargo-llvm-cov`
//!   (installing it and `llvm-tools-preview` when missing), prints a per-crate table,
//!   writes an HTML report to `target/coverage/html`, and fails under the threshold.
//! - `cargo xtask gen-fixtures` regenerates the market-data recordings under
//!   `fixtures/market/` with gf-market's seeded generator (`gf_market::fixtures`); the
//!   output is reproducible byte for byte, and gf-market's tests check the committed
//!   files against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// The test command written in README.md; `.ci/run` calls it too.
const TEST_COMMAND: &[&str] = &["test", "--workspace", "--locked"];

/// Default line-coverage threshold, percent.
const DEFAULT_MIN_COVERAGE: f64 = 80.0;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("coverage") => coverage(&args[1..]),
        Some("gen-fixtures") => gen_fixtures(),
        Some("help" | "--help" | "-h") | None => {
            println!("usage: cargo xtask <ci | coverage [--min PCT] | gen-fixtures>");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}; try `cargo xtask help`"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(TEST_COMMAND)
}

fn gen_fixtures() -> Result<()> {
    let dir = root().join("fixtures/market");
    for path in gf_market::fixtures::write_all(&dir)? {
        let report = gf_market::verify::verify_recording(&path)?;
        anyhow::ensure!(
            report.passed(),
            "{} does not verify:\n{report}",
            path.display()
        );
        let bytes = std::fs::metadata(&path)?.len();
        println!(
            "{}: {bytes} bytes, {} lines, {} updates verified",
            path.display(),
            report.lines,
            report.updates_verified()
        );
    }
    Ok(())
}

fn coverage(args: &[String]) -> Result<()> {
    let mut min = DEFAULT_MIN_COVERAGE;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--min" => {
                let v = it.next().context("--min needs a percentage")?;
                min = v
                    .parse()
                    .with_context(|| format!("--min {v:?} is not a number"))?;
            }
            other => bail!("unknown coverage flag {other:?} (known: --min PCT)"),
        }
    }
    ensure_llvm_cov()?;
    cargo(&["llvm-cov", "clean", "--workspace"])?;
    cargo(&["llvm-cov", "--workspace", "--locked", "--no-report"])?;
    let out_dir = root().join("target/coverage");
    std::fs::create_dir_all(&out_dir)?;
    let json_path = out_dir.join("summary.json");
    cargo(&[
        "llvm-cov",
        "report",
        "--json",
        "--summary-only",
        "--output-path",
        json_path.to_str().context("non-UTF-8 target path")?,
    ])?;
    cargo(&[
        "llvm-cov",
        "report",
        "--html",
        "--output-dir",
        out_dir.to_str().context("non-UTF-8 target path")?,
    ])?;
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&json_path).with_context(|| format!("reading {}", json_path.display()))?,
    )?;
    let table = per_crate(&json, &root())?;
    let (mut covered, mut count) = (0u64, 0u64);
    println!(
        "{:<14} {:>8} {:>8} {:>8}",
        "crate", "lines", "covered", "percent"
    );
    for (name, (c, n)) in &table {
        covered += c;
        count += n;
        println!("{name:<14} {n:>8} {c:>8} {:>7.2}%", pct(*c, *n));
    }
    let total = pct(covered, count);
    println!("{:<14} {count:>8} {covered:>8} {total:>7.2}%", "TOTAL");
    println!("html report: {}", out_dir.join("html/index.html").display());
    if total < min {
        bail!("line coverage {total:.2}% is under the threshold {min:.2}%");
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn pct(covered: u64, count: u64) -> f64 {
    if count == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / count as f64
    }
}

/// Sums line counts per crate (`crates/X`, `bins/X`, `xtask`, `tests`) from llvm-cov's
/// JSON export.
fn per_crate(json: &serde_json::Value, root: &Path) -> Result<BTreeMap<String, (u64, u64)>> {
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

fn ensure_llvm_cov() -> Result<()> {
    let have = Command::new("cargo")
        .args(["llvm-cov", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        run_tool("rustup", &["component", "add", "llvm-tools-preview"])?;
        run_tool("cargo", &["install", "cargo-llvm-cov", "--locked"])?;
    } else {
        // The component may be missing even when the cargo tool is installed.
        run_tool("rustup", &["component", "add", "llvm-tools-preview"])?;
    }
    Ok(())
}

fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: {tool} {}", args.join(" "));
    let status = Command::new(tool)
        .args(args)
        .status()
        .with_context(|| format!("running {tool}"))?;
    if !status.success() {
        bail!("{tool} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_files_by_crate() {
        let json = serde_json::json!({"data": [{"files": [
            {"filename": "/w/crates/gf-core/src/bus.rs", "summary": {"lines": {"count": 10, "covered": 9}}},
            {"filename": "/w/crates/gf-core/src/gate.rs", "summary": {"lines": {"count": 10, "covered": 7}}},
            {"filename": "/w/bins/gf-daemon/src/main.rs", "summary": {"lines": {"count": 4, "covered": 0}}},
            {"filename": "/w/xtask/src/main.rs", "summary": {"lines": {"count": 2, "covered": 1}}},
        ]}]});
        let t = per_crate(&json, Path::new("/w")).unwrap();
        assert_eq!(t["gf-core"], (16, 20));
        assert_eq!(t["gf-daemon"], (0, 4));
        assert_eq!(t["xtask"], (1, 2));
        assert!((pct(16, 20) - 80.0).abs() < 1e-9);
    }
}
