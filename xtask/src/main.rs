//! `cargo xtask`: project automation that is easier to keep right in Rust than in shell.
//!
//! - `cargo xtask test [ARGS…]` is the README's test command: it checks every test peer
//!   ([`peers::PEERS`]), installs what is missing (Debian packages with apt-get as root or
//!   with sudo, Python packages into a venv under `target/`), says in one line per peer
//!   what it did, then runs `cargo test --workspace --locked [ARGS…]` with the venv on PATH.
//!   `cargo xtask peers` does only the checking and installing.
//! - `cargo xtask ci` runs exactly what `.ci/run` runs (fmt, clippy, `cargo xtask test`).
//! - `cargo xtask coverage [--min PCT]` runs the workspace tests under `cargo-llvm-cov`
//!   (installing it and `llvm-tools-preview` when missing), prints a per-crate table,
//!   writes an HTML report to `target/coverage/html`, and fails under the threshold.
//! - `cargo xtask gen-fixtures` regenerates the market-data recordings under
//!   `fixtures/market/` with gf-market's seeded generator (`gf_market::fixtures`); the
//!   output is reproducible byte for byte, and gf-market's tests check the committed
//!   files against it.
//! - `cargo xtask fuzz [--secs N] [TARGET…]` runs the cargo-fuzz targets of `fuzz/` (see
//!   [`fuzz`]) one after the other for `N` seconds each from the seeds in `fixtures/fuzz/`,
//!   installing nightly and cargo-fuzz when missing; fails when a target crashes.
//! - `cargo xtask mutants [--area NAME]… [--iterate] [--report] [-- ARGS]` runs cargo-mutants
//!   over the safety core (see [`mutants`]), installing it when missing, and prints the
//!   mutation score per area; fails under the goals. Not part of `cargo xtask test`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod fuzz;
mod mutants;
mod peers;

/// What `cargo xtask test` runs once the peers are there.
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
        Some("test") => test(&args[1..]),
        Some("peers") => ensure_peers().map(|(venv, _)| {
            println!("python peers: {}", venv.display());
        }),
        Some("coverage") => coverage(&args[1..]),
        Some("gen-fixtures") => gen_fixtures(),
        Some("fuzz") => fuzz::fuzz(&root(), &args[1..]),
        Some("mutants") => mutants::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!(
                "usage: cargo xtask <test [CARGO TEST ARGS…] | peers | ci | coverage [--min PCT] | gen-fixtures | fuzz [--secs N] [TARGET…] | mutants [--area NAME]… [--iterate] [--report] [-- ARGS]>"
            );
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
    test(&[])
}

/// The machine as it is.
struct RealProbe {
    venv: PathBuf,
}

impl peers::Probe for RealProbe {
    fn has_program(&self, program: &str, path: &std::ffi::OsString) -> bool {
        peers::on_path(program, path)
    }

    fn has_module(&self, module: &str) -> bool {
        let python = self.venv.join("bin").join("python3");
        python.exists()
            && Command::new(python)
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
    }
}

fn privilege() -> peers::Privilege {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref() == Some("0") {
        peers::Privilege::Root
    } else if Command::new("sudo")
        .args(["-n", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        peers::Privilege::Sudo
    } else {
        peers::Privilege::None
    }
}

fn run_step(step: &peers::Step) -> Result<()> {
    eprintln!("xtask: {}", step.display());
    let output = Command::new(&step.program)
        .args(&step.args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("running {}", step.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{} failed ({}): {}",
            step.display(),
            output.status,
            tail.join(" | ")
        );
    }
    Ok(())
}

/// Checks and installs the test peers, then runs the workspace tests with them on PATH.
fn test(extra: &[String]) -> Result<()> {
    let root = root();
    let (venv, path) = ensure_peers()?;
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = test_args(extra);
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo_bin)
        .args(&args)
        .current_dir(&root)
        .env("PATH", &path)
        .env("VIRTUAL_ENV", &venv)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `cargo test` arguments: [`TEST_COMMAND`] with `extra` appended, except that naming a
/// package (`-p`/`--package`) replaces `--workspace`, which would otherwise win.
fn test_args(extra: &[String]) -> Vec<&str> {
    let names_package = extra
        .iter()
        .any(|a| a == "-p" || a == "--package" || a.starts_with("--package="));
    let mut args: Vec<&str> = TEST_COMMAND
        .iter()
        .copied()
        .filter(|a| !(names_package && *a == "--workspace"))
        .collect();
    args.extend(extra.iter().map(String::as_str));
    args
}

/// Checks every test peer and installs the missing ones; returns the venv and the PATH the
/// tests must run with.
fn ensure_peers() -> Result<(PathBuf, std::ffi::OsString)> {
    let root = root();
    let venv = peers::venv_dir(&root);
    let path = peers::test_path(&venv, std::env::var_os("PATH").as_ref());
    let probe = RealProbe { venv: venv.clone() };
    let before: Vec<bool> = peers::PEERS
        .iter()
        .map(|p| peers::is_present(p, &probe, &path))
        .collect();
    let missing = peers::missing(peers::PEERS, &probe, &path);
    if !missing.is_empty() {
        let privilege = privilege();
        let venv_exists = venv.join("bin").join("python3").exists();
        let mut plan = peers::install_plan(&missing, privilege, &venv, venv_exists)
            .map_err(anyhow::Error::msg)?;
        // Debian's own python3 creates venvs only with python3-venv installed.
        let creates_venv = plan
            .iter()
            .any(|s| s.args.first().is_some_and(|a| a == "-m"));
        let has_ensurepip = Command::new("python3")
            .args(["-c", "import ensurepip"])
            .output()
            .is_ok_and(|o| o.status.success());
        if creates_venv && !has_ensurepip {
            let venv_pkg = peers::Peer {
                name: "python3-venv",
                used_by: "the venv of the Python peers",
                detect: peers::Detect::Programs(&[]),
                install: peers::Install::Apt(&["python3-venv"]),
            };
            let extra_steps = peers::install_plan(&[&venv_pkg], privilege, &venv, true)
                .map_err(anyhow::Error::msg)?;
            plan.splice(0..0, extra_steps);
        }
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        for step in &plan {
            run_step(step)?;
        }
    }
    let mut still_missing = Vec::new();
    for (peer, was) in peers::PEERS.iter().zip(before) {
        let now = was || peers::is_present(peer, &probe, &path);
        println!("{}", peers::report_line(peer, was, now));
        if !now {
            still_missing.push(peer.name);
        }
    }
    if !still_missing.is_empty() {
        bail!(
            "test peer(s) still missing after installing: {}",
            still_missing.join(", ")
        );
    }
    Ok((venv, path))
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
    fn test_args_narrow_to_a_package_when_one_is_named() {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
        assert_eq!(test_args(&[]), ["test", "--workspace", "--locked"]);
        assert_eq!(
            test_args(&own(&["--no-fail-fast"])),
            ["test", "--workspace", "--locked", "--no-fail-fast"]
        );
        assert_eq!(
            test_args(&own(&["-p", "gf-halt"])),
            ["test", "--locked", "-p", "gf-halt"]
        );
        assert_eq!(
            test_args(&own(&["--package=gf-core", "gate"])),
            ["test", "--locked", "--package=gf-core", "gate"]
        );
    }

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
